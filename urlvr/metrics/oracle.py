"""Oracle metrics (METHODS.md §7): need gold answers, for monitoring only, never fed to a reward.

- accuracy: mean gold correctness of the completions;
- label accuracy: share of prompts whose pseudo-label (majority answer) is gold-correct;
- reward accuracy: share of completions whose (binary) reward equals their gold reward;
- pseudo-label accuracy: gold correctness of each group's highest-reward completion;
- point-biserial correlation between a (continuous) reward and gold correctness.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from urlvr.rewards.voting import majority

__all__ = ["oracle_metrics", "point_biserial"]


def point_biserial(scores: Sequence[float], correct: Sequence[bool]) -> float:
    """Pearson correlation between a score and a 0/1 correctness (nan when either is constant)."""
    x = torch.tensor(scores, dtype=torch.float64)
    y = torch.tensor([float(c) for c in correct], dtype=torch.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(((x - x.mean()) * (y - y.mean())).mean() / (x.std(unbiased=False) * y.std(unbiased=False)))


def oracle_metrics(correct: Sequence[Sequence[bool]], clusters: Sequence[Sequence[int | None]],
                   rewards: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """correct[g][i]: gold correctness of completion i of group g; rewards, valid: (G, N)."""
    n_groups = len(correct)
    flat_c = [c for g in correct for c in g]
    label_ok, pseudo_ok, reward_match, n_match = 0, 0, 0, 0
    for g, (cor, ids) in enumerate(zip(correct, clusters)):
        winner, _ = majority(ids, empty="drop")
        label_ok += winner is not None and cor[ids.index(winner)]
        vals = [(float(rewards[g, i]), i) for i in range(len(cor)) if valid[g, i]]
        if vals:
            pseudo_ok += cor[max(vals, key=lambda t: (t[0], -t[1]))[1]]
        for r, i in vals:
            if r in (0.0, 1.0):
                reward_match += (r == 1.0) == cor[i]
                n_match += 1
    scores = [float(rewards[g, i]) for g in range(n_groups) for i in range(len(correct[g])) if valid[g, i]]
    corr = [correct[g][i] for g in range(n_groups) for i in range(len(correct[g])) if valid[g, i]]
    out = {
        "oracle/accuracy": sum(flat_c) / max(1, len(flat_c)),
        "oracle/label_accuracy": label_ok / max(1, n_groups),
        "oracle/pseudo_label_accuracy": pseudo_ok / max(1, n_groups),
        "oracle/reward_accuracy": reward_match / n_match if n_match else float("nan"),
        "oracle/reward_correlation": point_biserial(scores, corr),
    }
    return {k: (v if not (isinstance(v, float) and math.isnan(v)) else None) for k, v in out.items()}
