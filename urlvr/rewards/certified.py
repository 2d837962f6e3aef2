"""The SNR reward of certified self-consistency (2510.17472, METHODS-2026.md §9 "SNR reward").

The group's answer signal-to-noise ratio, with N1, N2 the two largest answer-cluster sizes (ties by
first occurrence: of two equal clusters the one seen first is N1) and n the group size, answer-less
completions included::

    SNR(N1, N2, n) = (N1 − N2)² / (n (N1 + N2))

A completion's reward is its marginal contribution, ``SNR − SNR(without it)``: for a completion of
the majority cluster ``SNR(N1 − 1, N2, n − 1)``, of the runner-up ``SNR(N1, N2 − 1, n − 1)``, of any
other cluster ``SNR(N1, N2, n − 1)`` (the roles are kept, as in the source, not re-ranked). An
answer-less completion gets ``no_answer`` (−10 in the source). Guard: the source divides by zero when
``N1 + N2 = 0`` (no answer left); urlvr defines SNR = 0 there (no signal), so a group whose only
answered completion is removed has SNR(without it) = 0, and a group without any answer scores
``no_answer`` everywhere. Component ``snr`` logs the group's SNR.

>>> import torch
>>> from urlvr.types import Completion, Group, Problem
>>> z = torch.zeros(1)
>>> g = Group(Problem("p", "1+1"), "1+1", tuple(Completion(t, a, z.long())
...           for t, a in [("\\\\boxed{2}", "2"), ("\\\\boxed{2}", "2"), ("\\\\boxed{3}", "3"), ("?", None)]))
>>> [round(s, 4) for s in snr(g).scores]  # SNR = 1/12; without a 2: 0; without the 3: 4/6
[0.0833, 0.0833, -0.5833, -10.0]
"""

from __future__ import annotations

import math
from collections import Counter

from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.types import Group, RewardOutput

__all__ = ["snr", "snr_value"]


def snr_value(n1: int, n2: int, n: int) -> float:
    """``(n1 − n2)² / (n (n1 + n2))``; 0 when ``n1 + n2 = 0`` (the source divides by zero there).

    >>> snr_value(3, 1, 4), snr_value(0, 0, 3)
    (0.25, 0.0)
    """
    if n1 + n2 == 0:
        return 0.0
    return (n1 - n2) ** 2 / (n * (n1 + n2))


@register_reward("snr", family="ensemble", needs_group=True, source="Certified Self-Consistency (2510.17472)")
def snr(group: Group, no_answer: float = -10.0, equivalence: str | None = None) -> RewardOutput:
    """Certified self-consistency's SNR reward: ``SNR − SNR(without y_i)`` (module docstring).

    ``no_answer``: the reward of an answer-less completion (source: −10). ``equivalence``:
    ``canonical`` or ``math`` answer clusters (default: the group's).
    """
    if not math.isfinite(no_answer):
        raise UrlvrError(f"snr no_answer must be a finite number (the reward of an answer-less completion), "
                         f"got {no_answer}")
    ids = group.cluster_ids(equivalence)  # (N,)
    n = len(ids)
    counts = Counter(i for i in ids if i is not None)
    first = {c: ids.index(c) for c in counts}
    ranked = sorted(counts, key=lambda c: (-counts[c], first[c]))  # ties by first occurrence
    top = ranked[0] if ranked else None
    second = ranked[1] if len(ranked) > 1 else None
    n1 = counts[top] if top is not None else 0
    n2 = counts[second] if second is not None else 0
    full = snr_value(n1, n2, n)
    scores = []
    for i in ids:
        if i is None:
            scores.append(float(no_answer))
        elif i == top:
            scores.append(full - snr_value(n1 - 1, n2, n - 1))
        elif i == second:
            scores.append(full - snr_value(n1, n2 - 1, n - 1))
        else:
            scores.append(full - snr_value(n1, n2, n - 1))
    return RewardOutput(scores, {"snr": [full] * n})
