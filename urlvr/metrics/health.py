"""Label-free health metrics of a rollout batch (METHODS.md §7): safe to act on, no gold answers.

Inputs are the groups the reward saw and their scores; nothing here imports a gold answer.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

from urlvr.advantages import zero_std_fraction
from urlvr.rewards.base import Group
from urlvr.rewards.voting import cluster_entropy, cluster_ids, majority
from urlvr.stats import masked_mean

__all__ = ["group_clusters", "majority_ratio", "repetition_rate", "health_metrics"]


def group_clusters(groups: Sequence[Group]) -> list[list[int | None]]:
    """Answer-cluster ids of every group (the group's own equivalence)."""
    return [cluster_ids(g.answers, g.equivalence, g.canonical) for g in groups]


def majority_ratio(ids: Sequence[int | None]) -> float:
    """``count(â) / N`` with answer-less completions in the denominator (0 when none has an answer)."""
    _, n = majority(ids, empty="drop")
    return n / max(1, len(ids))


def repetition_rate(tokens: Sequence[int], n: int = 3) -> float:
    """Share of a sequence's n-grams that repeat an earlier n-gram (0 for short sequences).

    >>> repetition_rate([1, 2, 3, 1, 2, 3, 1, 2, 3], n=3)
    0.5714285714285714
    """
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def health_metrics(groups: Sequence[Group], rewards: torch.Tensor, valid: torch.Tensor,
                   clusters: Sequence[Sequence[int | None]] | None = None) -> dict[str, float]:
    """Per-step label-free metrics. rewards, valid: (G, N) over all n_votes completions."""
    clusters = clusters if clusters is not None else group_clusters(groups)
    comps = [c for g in groups for c in g.completions]
    lengths = torch.tensor([len(c.token_ids) for c in comps], dtype=torch.float32)
    ent = torch.cat([c.entropy for c in comps]) if comps else torch.zeros(0)
    sc = torch.cat([c.self_certainty for c in comps]) if comps else torch.zeros(0)
    r = rewards[valid]
    return {
        "reward/mean": float(r.mean()) if r.numel() else float("nan"),
        "reward/std": float(r.std()) if r.numel() > 1 else 0.0,
        "reward/failed": float((~valid).float().mean()),
        "reward/zero_std_frac": zero_std_fraction(rewards, valid),
        "rollout/length_mean": float(lengths.mean()),
        "rollout/length_max": float(lengths.max()),
        "rollout/truncation_rate": sum(c.truncated for c in comps) / len(comps),
        "rollout/unparsable_rate": sum(c.answer is None for c in comps) / len(comps),
        "rollout/repetition_rate": sum(repetition_rate(c.token_ids.tolist()) for c in comps) / len(comps),
        "policy/entropy": float(ent.mean()) if ent.numel() else 0.0,
        "policy/self_certainty": float(sc.mean()) if sc.numel() else 0.0,
        "diag/majority_ratio": sum(majority_ratio(ids) for ids in clusters) / len(clusters),
        "diag/cluster_entropy": sum(cluster_entropy(ids) for ids in clusters) / len(clusters),
        "diag/distinct_answers": sum(len(Counter(i for i in ids if i is not None)) for ids in clusters) / len(clusters),
    }
