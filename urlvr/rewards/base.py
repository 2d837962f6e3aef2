"""The reward interface: a group of completions in, one score per completion out.

Every reward has one signature::

    reward(group: Group, **options) -> list[float | None] | RewardOutput

``group`` (:class:`~urlvr.types.Group`) holds the completions of *one* prompt: texts, extracted
answers, token ids and the rollout policy's per-token statistics (log-probs, entropies,
self-certainties, top-2 gaps). ``None`` means "not applicable / failed" and removes that completion
from the loss. A reward may return named ``components`` that are logged as ``reward/<name>/<component>``.

Gold answers are unreachable from label-free rewards by construction (see :mod:`urlvr.types`); only
rewards registered with ``needs_gold=True`` receive a :class:`~urlvr.types.LabeledGroup`. A reward
that queries the policy says so at registration: ``needs_policy`` (it samples:
``sampler.generate``) or ``needs_scorer`` (it scores given continuations: ``scorer.score``).

Rewards are registered by name (:func:`register_reward`); a dotted path ``package.module:function``
loads a user's own. Importing :mod:`urlvr.rewards` (which any import of this module does first)
registers the built-in ones.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from urlvr.errors import UrlvrError
from urlvr.types import Completion, Group, LabeledGroup, RewardOutput

__all__ = [
    "Completion", "Group", "LabeledGroup", "RewardOutput", "RewardSpec", "register_reward", "get_reward",
    "reward_names", "call_reward", "check_options", "FAMILIES",
]

FAMILIES = ("certainty", "ensemble", "external", "mix", "control", "experimental", "user", "other")
"""Reward families (``urlvr rewards`` groups by them)."""


@dataclass(frozen=True)
class RewardSpec:
    """A registered reward: the function and what it needs."""

    name: str
    fn: Callable[..., Any]
    family: str = "other"
    needs_gold: bool = False
    needs_logits: bool = False
    needs_group: bool = False
    needs_policy: bool = False
    """The reward samples from the policy (e.g. self-verification): it is called with ``sampler=`` (a
    :class:`~urlvr.rollout.Sampler` serving the current policy) and ``settings=`` the run's sampling
    settings, and batches its own generations through ``sampler.generate``."""
    needs_scorer: bool = False
    """The reward needs the policy's statistics of *given* continuations (CoVo, RLPR-style): it is
    called with ``scorer=`` (whose ``score(prompts, continuations, temperature)`` is
    :meth:`~urlvr.rollout.Sampler.score`) and ``settings=``."""
    source: str = ""

    @property
    def summary(self) -> str:
        """The first line of the reward's docstring."""
        doc = (self.fn.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


_REGISTRY: dict[str, RewardSpec] = {}


def register_reward(name: str, *, family: str = "other", needs_gold: bool = False, needs_logits: bool = False,
                    needs_group: bool = False, needs_policy: bool = False, needs_scorer: bool = False,
                    source: str = "") -> Callable:
    """Function decorator: register a reward under ``name``."""
    if family not in FAMILIES:
        raise UrlvrError(f"unknown reward family {family!r}; choose one of: {', '.join(FAMILIES)}")

    def deco(fn):
        _REGISTRY[name] = RewardSpec(name, fn, family, needs_gold, needs_logits, needs_group, needs_policy,
                                     needs_scorer, source)
        return fn

    return deco


def reward_names() -> list[str]:
    return sorted(_REGISTRY)


def get_reward(name: str) -> RewardSpec:
    """A registered reward by name, or a user's function by dotted path ``pkg.module:function``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name or "." in name:
        mod_name, _, attr = name.partition(":") if ":" in name else name.rpartition(".")
        try:
            fn = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise UrlvrError(f"cannot load reward {name!r} ({e}); use 'package.module:function'") from None
        for spec in _REGISTRY.values():
            if spec.fn is fn:
                return spec
        return RewardSpec(name, fn, family="user", needs_gold=bool(getattr(fn, "needs_gold", False)),
                          needs_group=True, needs_policy=bool(getattr(fn, "needs_policy", False)),
                          needs_scorer=bool(getattr(fn, "needs_scorer", False)))
    raise UrlvrError(f"unknown reward {name!r}; choose one of: {', '.join(sorted(_REGISTRY))} "
                     "or give a dotted path 'package.module:function'")


def check_options(spec: RewardSpec, options: dict[str, Any]) -> None:
    """Fail at once, with the accepted names, when ``options`` do not fit the reward's signature."""
    try:
        sig = inspect.signature(spec.fn)
    except (TypeError, ValueError):
        return
    params = list(sig.parameters.values())[1:]  # the first is the group
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(options) - names)
    if unknown:
        accepted = ", ".join(sorted(names)) or "none"
        raise UrlvrError(f"reward {spec.name!r} has no option {unknown[0]!r} (its options: {accepted}); "
                         "fix reward_options")


def call_reward(spec: RewardSpec, group: Group, options: dict[str, Any]) -> RewardOutput:
    """Call a reward and check its output: one float or None per completion."""
    out = spec.fn(group, **options)
    if not isinstance(out, RewardOutput):
        out = RewardOutput(list(out))
    if len(out.scores) != len(group):
        raise UrlvrError(f"reward {spec.name!r} returned {len(out.scores)} scores for a group of {len(group)}; "
                         "a reward must return one score (or None) per completion")
    out.scores = [None if s is None else float(s) for s in out.scores]
    return out

