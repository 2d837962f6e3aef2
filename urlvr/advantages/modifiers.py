"""Advantage modifiers: plug-ins that act on a step's group advantages after the estimator.

A modifier is a class registered by name (:func:`register_modifier`). The trainer builds one instance
per run with the options of ``advantage_options[name]`` and, every step, calls it with the step's
advantages and an :class:`AdvantageContext` (label-free: answers, answer clusters and rewards over all
``n_votes`` completions, problem ids, the step). It returns the new advantages::

    modifier(adv (G, n_train), ctx) -> (G, n_train)        # e.g. SEED-GRPO, TTRL-Guard, std filtering
                                    or (G, n_train, J)     # J advantage columns (RESTRAIN's candidates)

J columns mean J PPO-clip surrogates summed per token (:func:`urlvr.loss.policy_loss`): with clipping a
sum of surrogates is not the surrogate of the summed advantage. Modifiers chain in the order of
``advantage_modifier`` (``"ttrl_guard,std_filter"``); a chain may produce J columns only at its end.

A modifier that keeps state across steps (TTRL-Guard's per-prompt history, an EMA) returns it from
:meth:`AdvantageModifier.state_dict` (plain Python values and tensors); the trainer saves it with every
checkpoint and gives it back on resume, so a resumed run continues exactly. A modifier that needs the
*frozen base* policy's votes on every training problem before step 0 (RESTRAIN's offline prompt
weights) sets ``base_votes`` to the number of completions per problem; the trainer samples them once
with the initial model and calls :meth:`AdvantageModifier.prepare`. Metrics go into ``ctx.metrics``
under ``adv/<name>/<key>``.

Gold answers cannot reach a modifier: the context is built from the label-free groups only.

>>> import torch
>>> ctx = AdvantageContext(step=0, seed=0, problem_ids=["p"], clusters=[[0, 0, 1, None]],
...                        answers=[["4", "4", "5", None]], rewards=torch.tensor([[1.0, 1, 0, 0]]),
...                        valid=torch.ones(1, 4, dtype=torch.bool), n_train=4)
>>> adv = torch.tensor([[0.5, 0.5, -0.5, -0.5]])
>>> build_modifier("seed_grpo", {"alpha": 1.0})(adv, ctx)  # SE 1.0397 of {4, 4}, {5}, {None}: scale 1 - 1.0397 / log 4
tensor([[ 0.1250,  0.1250, -0.1250, -0.1250]])
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from urlvr.advantages.estimators import seed_grpo_scale, semantic_entropy
from urlvr.answers import strip_spaces
from urlvr.errors import UrlvrError

__all__ = ["AdvantageContext", "AdvantageModifier", "register_modifier", "ADVANTAGE_MODIFIERS", "get_advantage_modifier",
           "build_modifier", "modifier_names", "SeedGRPO", "majority_of"]


@dataclass
class AdvantageContext:
    """What a modifier may read about one step: label-free values only."""

    step: int
    """0-based step."""
    seed: int
    """The run's seed: draw with ``urlvr.seeds.rng(seed, "<name>", step)`` so a resume draws the same."""
    problem_ids: list[str]
    """(G,) stable problem ids (the same problem has the same id on every visit)."""
    clusters: list[list[int | None]]
    """(G, n_votes) answer-cluster id per completion under the run's equivalence; None = no answer."""
    answers: list[list[str | None]]
    """(G, n_votes) extracted answers."""
    rewards: Tensor
    """(G, n_votes) float rewards (0 where invalid)."""
    valid: Tensor
    """(G, n_votes) bool, False = no score."""
    n_train: int
    """Advantages cover the first ``n_train`` completions of each group."""
    canonical: Callable[[str], str] = strip_spaces
    """The task's voting key of an answer: equal keys = the same answer across steps (cluster ids are per group)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Modifiers log here (``adv/<name>/<key>``)."""


class AdvantageModifier:
    """Base class: stateless by default, no preparation."""

    name = ""
    family = "other"
    base_votes = 0
    """> 0: completions per training problem the trainer samples once with the initial policy before step 0."""

    def __call__(self, adv: Tensor, ctx: AdvantageContext) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare(self, base_clusters: dict[str, list[int | None]]) -> None:
        """Called once before step 0 with each training problem's ``base_votes`` answer clusters."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


ADVANTAGE_MODIFIERS: dict[str, type[AdvantageModifier]] = {}
"""Name -> modifier class (``cls(**options)``)."""


def register_modifier(name: str, family: str = "other"):
    """Class decorator: register an :class:`AdvantageModifier` subclass under ``name``."""

    def deco(cls):
        cls.name, cls.family = name, family
        ADVANTAGE_MODIFIERS[name] = cls
        return cls

    return deco


def modifier_names() -> list[str]:
    return sorted(ADVANTAGE_MODIFIERS)


def get_advantage_modifier(name: str) -> type[AdvantageModifier]:
    """The registered modifier class called ``name``; :class:`UrlvrError` listing the valid names otherwise."""
    if name not in ADVANTAGE_MODIFIERS:
        raise UrlvrError(f"unknown advantage modifier {name!r}; choose one of: {', '.join(modifier_names())}")
    return ADVANTAGE_MODIFIERS[name]


def build_modifier(name: str, options: dict[str, Any] | None = None) -> AdvantageModifier:
    """An instance of modifier ``name`` with ``options``; an unknown option is one line naming the accepted ones."""
    cls = get_advantage_modifier(name)
    options = dict(options or {})
    params = inspect.signature(cls.__init__).parameters
    names = [p for p in params if p != "self" and params[p].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                                      inspect.Parameter.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise UrlvrError(f"advantage modifier {name!r} has no option {unknown[0]!r} (its options: "
                         f"{', '.join(names) or 'none'}); fix advantage_options.{name}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise UrlvrError(f"advantage_options.{name}: {e}") from None


def majority_of(clusters: list[int | None]) -> tuple[int | None, int]:
    """The majority cluster (ties: first occurrence) and its count; ``(None, 0)`` without any answer.

    >>> majority_of([None, 2, 1, 2, 1]), majority_of([None, None])
    ((2, 2), (None, 0))
    """
    counts: dict[int, int] = {}
    for c in clusters:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    if not counts:
        return None, 0
    best = max(counts.values())
    for c in clusters:  # first occurrence among the tied
        if c is not None and counts[c] == best:
            return c, best
    raise AssertionError("unreachable")


@register_modifier("seed_grpo", family="ensemble")
class SeedGRPO(AdvantageModifier):
    """SEED-GRPO: scale each group's advantages by ``1 - alpha · SE_g / log n_train`` (answer uncertainty)."""

    def __init__(self, alpha: float = 1.0):
        if not 0 <= alpha:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha

    def __call__(self, adv: Tensor, ctx: AdvantageContext) -> Tensor:
        ent = [semantic_entropy(ids[: ctx.n_train]) for ids in ctx.clusters]  # (G,)
        ctx.metrics["adv/seed_grpo/semantic_entropy"] = sum(ent) / max(1, len(ent))
        return seed_grpo_scale(adv, torch.tensor(ent, dtype=adv.dtype), ctx.n_train, alpha=self.alpha)
