"""Ensemble rewards: agreement among the N completions of one prompt (METHODS.md §3)."""

from __future__ import annotations

from urlvr.rewards.base import Group, register_reward
from urlvr.rewards.voting import cluster_ids, majority

__all__ = ["majority_vote"]


@register_reward("majority_vote", family="ensemble", needs_group=True, source="TTRL (2504.16084)")
def majority_vote(group: Group, equivalence: str | None = None, empty: str = "candidate") -> list[float]:
    """TTRL: ``r_i = 1[ans(y_i) ≡ â]`` with ``â`` the most frequent answer in the group.

    ``equivalence``: ``canonical`` (the task's key) or ``math`` (math-verify classes); default: the
    group's setting. Ties go to the answer seen first. ``empty="candidate"`` (TTRL): answer-less
    completions vote together; ``"drop"`` (SRT): they do not vote. An answer-less completion is never
    rewarded; if no completion has an answer (or the answer-less candidate wins) all rewards are 0.
    """
    ids = cluster_ids(group.answers, equivalence or group.equivalence, group.canonical)
    winner, _ = majority(ids, empty)
    return [float(winner is not None and i == winner) for i in ids]
