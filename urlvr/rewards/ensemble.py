"""Ensemble rewards: agreement among the N completions of one prompt (METHODS.md §3).

All of them cluster the group's answers with :meth:`Group.cluster_ids <urlvr.types.Group.cluster_ids>`:
``canonical`` (the task's voting key) or ``math`` (math-verify equivalence classes, decided in worker
processes by :mod:`urlvr.grading`); the ``equivalence`` option overrides the group's setting. ``N`` is always the
whole group, answer-less completions included.

>>> import torch
>>> from urlvr.types import Completion, Problem
>>> z = torch.zeros(1)
>>> g = Group(Problem("p", "1+1"), "1+1", tuple(Completion(t, a, z.long())
...           for t, a in [("\\\\boxed{2}", "2"), ("\\\\boxed{2}", "2"), ("\\\\boxed{3}", "3"), ("?", None)]))
>>> majority_vote(g), srt(g, mode="soft").scores, semantic_cluster(g, empty="singleton")
([1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.25, 0.0], [0.5, 0.5, 0.25, 0.25])
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.types import Group, RewardOutput
from urlvr.answers import majority

__all__ = ["majority_vote", "srt", "semantic_cluster", "SRT_MODES", "CLUSTER_EMPTY_RULES"]

SRT_MODES = ("hard", "soft")
CLUSTER_EMPTY_RULES = ("zero", "singleton")


def _ids(group: Group, equivalence: str | None) -> list[int | None]:
    return group.cluster_ids(equivalence)


def _frequencies(ids: Sequence[int | None], empty: str = "zero") -> list[float]:
    """``|cluster(y_i)| / N``; an answer-less completion gets 0 (``zero``) or ``1 / N`` (``singleton``)."""
    counts, n = Counter(i for i in ids if i is not None), len(ids)
    return [(1 if empty == "singleton" else 0) / n if i is None else counts[i] / n for i in ids]


@register_reward("majority_vote", family="ensemble", needs_group=True, source="TTRL (2504.16084)")
def majority_vote(group: Group, equivalence: str | None = None, empty: str = "candidate") -> list[float]:
    """TTRL: ``r_i = 1[ans(y_i) ≡ â]`` with ``â`` the most frequent answer in the group.

    ``equivalence``: ``canonical`` (the task's key) or ``math`` (math-verify classes); default: the
    group's setting. Ties go to the answer seen first. ``empty="candidate"`` (TTRL): answer-less
    completions vote together; ``"drop"`` (SRT): they do not vote. An answer-less completion is never
    rewarded; if no completion has an answer (or the answer-less candidate wins) all rewards are 0.
    """
    ids = _ids(group, equivalence)
    winner, _ = majority(ids, empty)
    return [float(winner is not None and i == winner) for i in ids]


@register_reward("srt", family="ensemble", needs_group=True, source="SRT (2505.21444)")
def srt(group: Group, mode: str = "hard", threshold: float = 0.0, equivalence: str | None = None) -> RewardOutput:
    """SRT self-consistency: hard majority vote or soft cluster frequency, with an acceptance threshold.

    ``hard``: ``r_i = 1[ans(y_i) ≡ â]``, ``â`` the majority over *parsable* answers; ``soft``:
    ``r_i = |cluster(y_i)| / N``. Answer-less completions do not vote and get 0.

    ``threshold`` (acceptance, in [0, 1]): when the majority fraction ``count(â) / N`` is below it,
    every reward of the group is **None**, not 0: the prompt leaves the loss (and ``reward/mean``)
    entirely, as SRT's filter drops it, instead of entering as N equal zeros. Filtered completions
    count in ``reward/failed``, and a step whose groups are all filtered counts towards
    ``max_failed_steps``. Component ``accepted`` (1/0 per completion) logs the acceptance rate. With no
    parsable answer the fraction is 0, so any positive threshold filters the group; with
    ``threshold=0`` such a group scores all 0.
    """
    if mode not in SRT_MODES:
        raise UrlvrError(f"unknown srt mode {mode!r}; choose one of: {', '.join(SRT_MODES)}")
    if not 0.0 <= threshold <= 1.0:
        raise UrlvrError(f"srt threshold must be in [0, 1] (a majority fraction), got {threshold}")
    ids = _ids(group, equivalence)
    winner, count = majority(ids, empty="drop")
    accepted = count / len(ids) >= threshold
    if not accepted:
        scores: list[float | None] = [None] * len(ids)
    elif mode == "hard":
        scores = [float(winner is not None and i == winner) for i in ids]
    else:
        scores = _frequencies(ids, "zero")
    return RewardOutput(scores, {"accepted": [float(accepted)] * len(ids)})


@register_reward("semantic_cluster", family="ensemble", needs_group=True, source="EMPO (2504.05812)")
def semantic_cluster(group: Group, empty: str = "zero", equivalence: str | None = None) -> list[float]:
    """EMPO: ``r_i = |cluster(y_i)| / N`` over answer-equivalence clusters (minimises semantic entropy).

    Answer-less completions: ``empty="zero"`` gives them 0 (the trl variant); ``"singleton"`` makes
    each its own cluster, ``1 / N`` (the verl variant, as :func:`~urlvr.advantages.semantic_entropy`).
    """
    if empty not in CLUSTER_EMPTY_RULES:
        raise UrlvrError(f"unknown empty-answer rule {empty!r}; choose one of: {', '.join(CLUSTER_EMPTY_RULES)}")
    return _frequencies(_ids(group, equivalence), empty)
