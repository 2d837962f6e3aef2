"""Label-free health metrics of a rollout batch (METHODS.md §7): safe to act on, no gold answers.

Inputs are the groups the reward saw and their scores; nothing here imports a gold answer (a test
scans this module's imports). Every quantity is a small function, tested on hand-built groups;
:func:`health_metrics` gathers them under their logged names:

| key | quantity |
|---|---|
| ``reward/mean``, ``reward/std`` | over the valid rewards of the batch |
| ``reward/zero_std_frac`` | share of groups whose GRPO advantages are all zero (all rewards equal) |
| ``diag/majority_ratio`` | ``count(â)/N`` per group, answer-less completions in the denominator, mean over groups |
| ``diag/cluster_entropy`` | entropy of the answer clusters per group (nats; answer-less = singletons) |
| ``diag/distinct_answers`` | distinct answers per group (answer-less ones not counted) |
| ``policy/entropy`` | token entropy ``H(p_t)`` of the rollout policy, mean over *all tokens* of the batch |
| ``policy/self_certainty`` | ``KL(U ‖ p_t)`` (true KL, no ``+log V``), mean over all tokens |
| ``rollout/length_mean``, ``rollout/length_max`` | completion length in tokens (EOS included) |
| ``rollout/truncation_rate`` | share of completions that hit ``max_new_tokens`` without EOS |
| ``rollout/unparsable_rate`` | share of completions without an answer |
| ``rollout/repetition_rate`` | mean over completions of :func:`repetition_rate` (3-grams) |

The KL to the initial policy (``policy/kl_initial``) needs the reference model and is logged by the
trainer; the slope of the entropy over a window is stateful and logged by the collapse detector
(``diag/entropy_slope``, :mod:`urlvr.watch.detector`).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

from urlvr.advantages import semantic_entropy as cluster_entropy
from urlvr.advantages import zero_std_fraction
from urlvr.answers import majority
from urlvr.types import Completion, Group, cluster_groups

__all__ = ["group_clusters", "majority_ratio", "cluster_entropy", "distinct_answers", "token_mean",
           "repetition_rate", "truncation_rate", "health_metrics"]


def group_clusters(groups: Sequence[Group]) -> list[list[int | None]]:
    """Answer-cluster ids of every group (the group's own equivalence), all groups at once
    (:func:`urlvr.types.cluster_groups`; groups from :func:`urlvr.scoring.build_groups` are clustered already)."""
    return cluster_groups(groups)


def majority_ratio(ids: Sequence[int | None]) -> float:
    """``count(â) / N`` with answer-less completions in the denominator (0 when none has an answer).

    >>> majority_ratio([0, 0, 1, None])
    0.5
    """
    _, n = majority(ids, empty="drop")
    return n / max(1, len(ids))


def distinct_answers(ids: Sequence[int | None]) -> int:
    """Number of distinct answers in a group; answer-less completions are not an answer.

    >>> distinct_answers([0, 0, 1, None])
    2
    """
    return len(Counter(i for i in ids if i is not None))


def token_mean(per_token: Sequence[torch.Tensor]) -> float:
    """Mean of a per-token statistic over all tokens of all completions (long completions weigh more).

    >>> token_mean([torch.tensor([1.0, 3.0]), torch.tensor([5.0])])
    3.0
    """
    flat = torch.cat(list(per_token)) if per_token else torch.zeros(0)
    return float(flat.float().mean()) if flat.numel() else 0.0


def repetition_rate(tokens: Sequence[int], n: int = 3) -> float:
    """Share of a sequence's n-grams that repeat an earlier n-gram (0 for short sequences).

    >>> repetition_rate([1, 2, 3, 1, 2, 3, 1, 2, 3], n=3)
    0.5714285714285714
    """
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def truncation_rate(completions: Sequence[Completion]) -> float:
    """Share of completions stopped at ``max_new_tokens`` without EOS."""
    return sum(c.truncated for c in completions) / max(1, len(completions))


def health_metrics(groups: Sequence[Group], rewards: torch.Tensor, valid: torch.Tensor,
                   clusters: Sequence[Sequence[int | None]] | None = None) -> dict[str, float]:
    """Per-step label-free metrics (the table above). rewards, valid: (G, N) over all n_votes completions."""
    clusters = clusters if clusters is not None else group_clusters(groups)
    comps = [c for g in groups for c in g.completions]
    lengths = torch.tensor([len(c.token_ids) for c in comps], dtype=torch.float32)  # (G*N,)
    r = rewards[valid]
    n_comp, n_group = max(1, len(comps)), max(1, len(clusters))
    return {
        "reward/mean": float(r.mean()) if r.numel() else float("nan"),
        "reward/std": float(r.std()) if r.numel() > 1 else 0.0,
        "reward/failed": float((~valid).float().mean()),
        "reward/zero_std_frac": zero_std_fraction(rewards, valid),
        "rollout/length_mean": float(lengths.mean()),
        "rollout/length_max": float(lengths.max()),
        "rollout/truncation_rate": truncation_rate(comps),
        "rollout/unparsable_rate": sum(c.answer is None for c in comps) / n_comp,
        "rollout/repetition_rate": sum(repetition_rate(c.token_ids.tolist()) for c in comps) / n_comp,
        "policy/entropy": token_mean([c.entropy for c in comps]),
        "policy/self_certainty": token_mean([c.self_certainty for c in comps]),
        "diag/majority_ratio": sum(majority_ratio(ids) for ids in clusters) / n_group,
        "diag/cluster_entropy": sum(cluster_entropy(ids) for ids in clusters) / n_group,
        "diag/distinct_answers": sum(distinct_answers(ids) for ids in clusters) / n_group,
    }
