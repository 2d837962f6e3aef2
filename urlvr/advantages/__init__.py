"""Advantages: group-relative estimators (:mod:`.estimators`) and the modifiers that act after them
(:mod:`.modifiers`: the plug-in interface and SEED-GRPO; TTRL-Guard, RESTRAIN and the filters in
their own modules, registered on import)."""

from urlvr.advantages.estimators import (
    ADVANTAGE_ESTIMATORS, ADVANTAGE_SCALES, drgrpo_advantages, get_advantage_estimator, group_advantages,
    grpo_advantages, seed_grpo_scale, semantic_entropy, zero_std_fraction,
)
from urlvr.advantages.modifiers import (
    ADVANTAGE_MODIFIERS, AdvantageContext, AdvantageModifier, SeedGRPO, build_modifier, get_advantage_modifier,
    majority_of, modifier_names, register_modifier,
)
from urlvr.advantages import filters  # noqa: F401,E402  (registers std_filter)
from urlvr.advantages import restrain  # noqa: F401,E402  (registers the RESTRAIN modifier)
from urlvr.advantages import certified  # noqa: F401,E402  (registers certified_only)
from urlvr.advantages import ttrl_guard  # noqa: F401,E402  (registers the TTRL-Guard modifier)

__all__ = [
    "group_advantages", "grpo_advantages", "drgrpo_advantages", "ADVANTAGE_ESTIMATORS", "ADVANTAGE_SCALES",
    "get_advantage_estimator", "zero_std_fraction", "semantic_entropy", "seed_grpo_scale",
    "AdvantageContext", "AdvantageModifier", "register_modifier", "ADVANTAGE_MODIFIERS", "get_advantage_modifier",
    "build_modifier", "modifier_names", "SeedGRPO", "majority_of",
]
