"""The reward interface: a group of completions in, one score per completion out.

Every reward has one signature::

    reward(group: Group, **options) -> list[float | None] | RewardOutput

``group`` holds the completions of *one* prompt: texts, extracted answers, token ids and the rollout
policy's per-token log-probs, entropies, self-certainties and top-2 gaps. ``None`` means "not
applicable / failed" and removes that completion from the loss. A reward may return named
``components`` that are logged as ``reward/<name>/<component>``.

Gold answers are unreachable from label-free rewards by construction: a :class:`Group` carries the
:class:`~urlvr.tasks.base.Problem` (which has no answer field) and the task's public answer
functions, never an :class:`~urlvr.tasks.base.Example`. Only rewards registered with
``needs_gold=True`` receive a :class:`LabeledGroup`, which adds ``gold``.

Rewards are registered by name (:func:`register_reward`); a dotted path ``package.module:function``
loads a user's own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from urlvr.errors import UrlvrError
from urlvr.tasks.base import Problem

__all__ = [
    "Completion", "Group", "LabeledGroup", "RewardOutput", "RewardSpec", "register_reward", "get_reward",
    "reward_names", "call_reward", "check_options",
]


def _strip_spaces(answer: str) -> str:
    return "".join(answer.split())


def _no_verifier(problem: Problem, answer: str | None) -> bool | None:
    return None


def _no_check(answer: str | None, gold: str) -> bool:
    raise UrlvrError("this group has no gold check; build it with the task's check")


@dataclass(frozen=True)
class Completion:
    """One sampled completion and the rollout policy's per-token statistics (length T, no padding)."""

    text: str
    answer: str | None
    """Extracted final answer (last ``\\boxed{}``), None if absent."""
    token_ids: torch.Tensor  # (T,) int64, EOS included when produced
    logprob: torch.Tensor  # (T,) log p_t(y_t) at the sampling temperature
    entropy: torch.Tensor  # (T,) H(p_t)
    self_certainty: torch.Tensor  # (T,) KL(U || p_t), true KL (>= 0)
    top2_gap: torch.Tensor  # (T,) p_t^(1) - p_t^(2)
    truncated: bool = False
    """Stopped at max_new_tokens without EOS."""
    ends_with_eos: bool = True


@dataclass(frozen=True)
class Group:
    """All completions of one prompt, as a label-free reward sees them."""

    problem: Problem
    prompt: str
    completions: tuple[Completion, ...]
    canonical: Callable[[str], str] = field(default=_strip_spaces, repr=False)
    """The task's voting key for an answer (equal keys = same answer)."""
    verify: Callable[[Problem, str | None], bool | None] = field(default=_no_verifier, repr=False)
    """The task's programmatic check against the problem (None: the task has none)."""
    equivalence: str = "canonical"
    """How answers are compared when voting: ``canonical`` (task key) or ``math`` (math-verify classes)."""
    vocab_size: int = 0
    eos_token_id: int | None = None

    def __len__(self) -> int:
        return len(self.completions)

    @property
    def answers(self) -> list[str | None]:
        return [c.answer for c in self.completions]


@dataclass(frozen=True)
class LabeledGroup(Group):
    """A group with its gold answer: given only to rewards registered with ``needs_gold=True``."""

    gold: str | None = None
    check: Callable[[str | None, str], bool] = field(default=_no_check, repr=False)
    """The task's gold check ``check(answer, gold)``."""


@dataclass
class RewardOutput:
    scores: list[float | None]
    components: dict[str, list[float | None]] = field(default_factory=dict)


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
    """The reward queries the policy (e.g. self-verification): it is called with ``sampler=`` (a
    :class:`~urlvr.rollout.Sampler` serving the current policy) and ``settings=`` the run's sampling
    settings, and batches its own generations through it."""
    source: str = ""


_REGISTRY: dict[str, RewardSpec] = {}


def register_reward(name: str, *, family: str = "other", needs_gold: bool = False, needs_logits: bool = False,
                    needs_group: bool = False, needs_policy: bool = False, source: str = "") -> Callable:
    """Function decorator: register a reward under ``name``."""

    def deco(fn):
        _REGISTRY[name] = RewardSpec(name, fn, family, needs_gold, needs_logits, needs_group, needs_policy, source)
        return fn

    return deco


def reward_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    import urlvr.rewards  # noqa: F401  (registers the built-in rewards)


def get_reward(name: str) -> RewardSpec:
    """A registered reward by name, or a user's function by dotted path ``pkg.module:function``."""
    _load_builtins()
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
                          needs_group=True)
    raise UrlvrError(f"unknown reward {name!r}; choose one of: {', '.join(sorted(_REGISTRY))} "
                     "or give a dotted path 'package.module:function'")


def check_options(spec: RewardSpec, options: dict[str, Any]) -> None:
    """Fail at once, with the accepted names, when ``options`` do not fit the reward's signature."""
    import inspect

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

