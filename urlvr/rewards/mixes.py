"""Mixes: a weighted sum of label-free rewards, and gold on a labelled share of prompts (METHODS.md §5b).

- ``mix``: ``r_i = Σ_k w_k r_i^(k)`` over named rewards (label-free only: a component that needs gold
  answers is refused, since a label-free mix never sees them; use ``semi_supervised``).
- ``semi_supervised``: the gold reward on a fraction ``alpha`` of prompts (chosen by a stable hash of
  the problem id) or on a given labelled subset of ids, an intrinsic reward on the rest. The intrinsic
  reward receives the plain :class:`~urlvr.types.Group` view without the gold fields
  (:meth:`LabeledGroup.label_free <urlvr.types.LabeledGroup.label_free>`), never the labelled group.

Both forward ``sampler=``/``settings=`` to components that query the policy, so they are registered
with ``needs_policy=True``. Components' scores are logged as ``reward/<name>`` components.

>>> import torch
>>> from urlvr.types import Completion, Problem
>>> z = torch.zeros(1)
>>> g = Group(Problem("p", "1+1"), "1+1", tuple(Completion("", a, z.long()) for a in ["2", "2", None]))
>>> mix(g, rewards={"majority_vote": 1.0, "format_only": 0.5}).scores
[1.5, 1.5, 0.0]
"""

from __future__ import annotations

from typing import Any, Mapping

from urlvr.errors import UrlvrError
from urlvr.rewards.base import call_reward, get_reward, register_reward
from urlvr.types import Group, LabeledGroup, RewardOutput
from urlvr.rewards.controls import gold
from urlvr.seeds import rng

__all__ = ["mix", "semi_supervised", "is_labelled"]


def _component(name: str, group: Group, options: Mapping[str, Any] | None, sampler: Any, settings: Any,
               owner: str) -> RewardOutput:
    """Call the label-free reward ``name`` on ``group``, forwarding the policy when it needs it."""
    spec = get_reward(name)
    if spec.needs_gold:
        raise UrlvrError(f"{owner}: component {name!r} needs gold answers, which a label-free reward never sees; "
                         "use reward=semi_supervised for gold on a labelled share of prompts")
    if options is not None and not isinstance(options, Mapping):
        raise UrlvrError(f"{owner}: options of {name!r} must be a mapping, got {options!r}")
    opts = dict(options or {})
    if spec.needs_policy:
        opts.update(sampler=sampler, settings=settings)
    return call_reward(spec, group, opts)


@register_reward("mix", family="mix", needs_group=True, needs_policy=True, source="URLVR §5b weighted sum")
def mix(group: Group, rewards: Mapping[str, float] | None = None, options: Mapping[str, Mapping] | None = None,
        sampler: Any = None, settings: Any = None) -> RewardOutput:
    """Weighted sum ``Σ_k w_k r^(k)`` of label-free rewards.

    ``rewards: {name: weight}``; each component is called with ``options[name]``. A completion that
    any component scores None is None.
    """
    if not isinstance(rewards, Mapping) or not rewards:
        raise UrlvrError("mix needs reward_options.rewards, a mapping {reward name: weight}, "
                         "e.g. {majority_vote: 1.0, self_certainty: 0.1}")
    options = options or {}
    unknown = set(options) - set(rewards)
    if unknown:
        raise UrlvrError(f"mix: options given for {sorted(unknown)}, which are not in rewards {sorted(rewards)}")
    totals: list[float | None] = [0.0] * len(group)
    components: dict[str, list[float | None]] = {}
    for name, weight in rewards.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UrlvrError(f"mix: the weight of {name!r} must be a number, got {weight!r}")
        out = _component(name, group, options.get(name), sampler, settings, "mix")
        totals = [None if t is None or s is None else t + weight * s for t, s in zip(totals, out.scores)]
        components[name] = out.scores
        components.update({f"{name}/{k}": v for k, v in out.components.items()})
    return RewardOutput(totals, components)


def is_labelled(problem_id: str, alpha: float, seed: int = 0) -> bool:
    """Whether a problem is in the labelled share: a stable hash of ``(seed, id)`` below ``alpha``.

    >>> sum(is_labelled(str(i), 0.25) for i in range(1000))
    247
    """
    return rng(seed, "semi_supervised", problem_id).random() < alpha


@register_reward("semi_supervised", family="mix", needs_gold=True, needs_group=True, needs_policy=True,
                 source="URLVR §5b semi-supervised")
def semi_supervised(group: LabeledGroup, alpha: float = 0.1, labelled: list[str] | None = None,
                    intrinsic: str = "majority_vote", intrinsic_options: Mapping[str, Any] | None = None,
                    seed: int = 0, sampler: Any = None, settings: Any = None) -> RewardOutput:
    """Gold reward on labelled prompts, the ``intrinsic`` reward (with ``intrinsic_options``) on the rest.

    Labelled: the problem id is in ``labelled`` when that list is given (``alpha`` is then unused),
    else :func:`is_labelled` with ``alpha`` and ``seed`` (the same prompts every step and run). A
    labelled prompt without a gold answer gets the intrinsic reward. Component ``labelled`` (1/0)
    logs the share that used gold.
    """
    if not 0.0 <= alpha <= 1.0:
        raise UrlvrError(f"semi_supervised: alpha must be in [0, 1] (the labelled fraction), got {alpha}")
    pid = group.problem.id
    chosen = pid in set(map(str, labelled)) if labelled is not None else is_labelled(pid, alpha, seed)
    use_gold = chosen and group.gold is not None
    if use_gold:
        out = RewardOutput(gold(group))
    else:
        out = _component(intrinsic, group.label_free(), intrinsic_options, sampler, settings, "semi_supervised")
    components = {f"{intrinsic}/{k}": v for k, v in out.components.items()}
    components["labelled"] = [float(use_gold)] * len(group)
    return RewardOutput(out.scores, components)
