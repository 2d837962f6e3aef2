"""Every label-free reward as a plug-in (see :mod:`urlvr.rewards.base` for the interface).

Importing this package registers the built-in rewards: controls (:mod:`~urlvr.rewards.controls`),
certainty (:mod:`~urlvr.rewards.certainty`), ensemble (:mod:`~urlvr.rewards.ensemble`, Self-Harmony in
:mod:`~urlvr.rewards.harmony`, the SNR reward of :mod:`~urlvr.rewards.certified`), external
(:mod:`~urlvr.rewards.external`, with :mod:`~urlvr.rewards.sandbox`), mixes
(:mod:`~urlvr.rewards.mixes`), scored by the policy (:mod:`~urlvr.rewards.scored`: CoVo, RLPR) and the
experimental ones (:mod:`urlvr.experimental`).
``docs/rewards.md`` tables them all.
"""

from urlvr.rewards.base import (Completion, Group, LabeledGroup, RewardOutput, RewardSpec, call_reward, get_reward,
                                register_reward, reward_names)
from urlvr.rewards import certainty, certified, controls, ensemble, external, harmony, mixes, novelty, scope, scored  # noqa: F401,E501  (register the rewards)
from urlvr.rewards.external import guarded
import urlvr.experimental  # noqa: F401,E402  (registers the experimental rewards)

__all__ = ["Completion", "Group", "LabeledGroup", "RewardOutput", "RewardSpec", "call_reward", "get_reward",
           "register_reward", "reward_names", "guarded"]
