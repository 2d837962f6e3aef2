"""What a reward prefers inside a group: the numbers behind the certainty-reward findings (pure functions).

GRPO reads a reward only through its order inside each group (advantages are group-normalised), so the
question for any label-free reward is which completion of a group it ranks above which. Given, per group,
the reward of each completion (None = no reward) and whether it is correct (oracle):

- :func:`within_group_auc`: over every (correct, wrong) pair of completions *of the same group*, the share
  in which the correct one gets the higher reward (ties count ½). 0.5 = no preference, 1 = always the
  correct one, below 0.5 = the reward prefers wrong answers.
- :func:`within_group_diff`: the mean within-group gap between the correct and the wrong completions' rewards.
- :func:`top_choice_accuracy`: the share of groups whose highest-reward completion is correct (ties to the
  first), against the base rate of picking any completion, :func:`base_rate`.
- :func:`kl_uniform_parts`: self-certainty ``KL(U ‖ p_t) = (1/V) Σ_v log((1/V) / p_t(v))`` split into the part
  from the ``k`` most probable tokens of ``p_t`` (the *head*) and the rest of the vocabulary (the *tail*).
- :func:`span_contributions`: a completion's mean of a per-token statistic written as a sum over spans
  (``format`` tokens before the answer, ``answer`` tokens, ``end`` tokens after it): how much of the mean
  each span carries.

>>> within_group_auc([[1.0, 0.5, 0.2]], [[True, False, False]])
1.0
>>> within_group_auc([[0.1, 0.5, 0.5]], [[True, False, True]])
0.25
>>> top_choice_accuracy([[0.1, 0.5, 0.5], [2.0, 1.0]], [[True, False, True], [True, False]])
0.5
>>> round(base_rate([[True, False, True], [True, False]]), 4)
0.5833
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["within_group_auc", "within_group_diff", "top_choice_accuracy", "base_rate", "kl_uniform_parts",
           "span_contributions", "SPANS"]

SPANS = ("format", "answer", "end")
"""Token spans of a completion: before the answer, the answer (the content of the last ``\\boxed{}``), after it."""

Rewards = Sequence[Sequence[float | None]]
Correct = Sequence[Sequence[bool]]


def _sides(rewards: Rewards, correct: Correct):
    """Per group: the rewards of its correct completions and of its wrong ones (None rewards left out)."""
    for r, c in zip(rewards, correct):
        yield ([x for x, ok in zip(r, c) if ok and x is not None], [x for x, ok in zip(r, c) if not ok and x is not None])


def within_group_auc(rewards: Rewards, correct: Correct) -> float | None:
    """P(reward of a correct completion > reward of a wrong one of the same group), ties ½; None without a pair."""
    wins = pairs = 0.0
    for good, bad in _sides(rewards, correct):
        for a in good:
            for b in bad:
                pairs += 1
                wins += 1.0 if a > b else 0.5 if a == b else 0.0
    return wins / pairs if pairs else None


def within_group_diff(rewards: Rewards, correct: Correct) -> float | None:
    """Mean over groups with both kinds of (mean reward of the correct completions − mean of the wrong ones);
    None rewards are left out; None without such a group.

    >>> within_group_diff([[3.0, 1.0, 2.0], [5.0, None], [1.0, 1.0]], [[True, False, True], [True, False], [True, True]])
    1.5
    """
    diffs = []
    for good, bad in _sides(rewards, correct):
        if good and bad:
            diffs.append(sum(good) / len(good) - sum(bad) / len(bad))
    return sum(diffs) / len(diffs) if diffs else None


def top_choice_accuracy(rewards: Rewards, correct: Correct) -> float | None:
    """Share of groups whose highest-reward completion (ties to the first) is correct; groups without any
    reward are skipped; None without a group."""
    hits = n = 0
    for r, c in zip(rewards, correct):
        scored = [(x, -i) for i, x in enumerate(r) if x is not None]
        if not scored:
            continue
        n += 1
        hits += bool(c[-max(scored)[1]])
    return hits / n if n else None


def base_rate(correct: Correct) -> float | None:
    """Accuracy of picking a completion of each group at random: the mean over groups of their share correct."""
    shares = [sum(c) / len(c) for c in correct if len(c)]
    return sum(shares) / len(shares) if shares else None


def kl_uniform_parts(log_probs: Tensor, k: int = 3) -> tuple[Tensor, Tensor]:
    """Self-certainty ``KL(U ‖ p)`` of each distribution split into its top-``k`` (head) and other (tail) parts.

    ``log_probs`` (..., V) are ``log p``; returns ``(head, tail)``, each (...), with ``head + tail = KL(U ‖ p)``.
    Each vocabulary entry contributes ``(1/V)·(−log V − log p(v))``: negative for tokens more likely than
    uniform, large and positive for the improbable tail.

    >>> lp = torch.log_softmax(torch.tensor([4.0, 2.0, 0.0, -3.0, -3.0]), -1)
    >>> head, tail = kl_uniform_parts(lp, k=1)
    >>> round(float(head + tail), 4) == round(float((-math.log(5) - lp).mean()), 4), float(head) < 0 < float(tail)
    (True, True)
    """
    V = log_probs.shape[-1]
    terms = (-math.log(V) - log_probs.float()) / V  # (..., V)
    top = log_probs.topk(min(k, V), dim=-1).indices  # (..., k)
    head = terms.gather(-1, top).sum(-1)  # (...)
    return head, terms.sum(-1) - head


def span_contributions(values: Tensor, answer_positions: Tensor | None) -> dict[str, float]:
    """A completion's ``mean_t values_t`` (T,) as a sum over :data:`SPANS`: ``Σ_{t ∈ span} values_t / T`` each.

    ``answer_positions`` (K,): the answer's token positions (None: no answer, everything is ``format``).

    >>> span_contributions(torch.tensor([1.0, 1.0, 4.0, 2.0]), torch.tensor([2]))
    {'format': 0.5, 'answer': 1.0, 'end': 0.5}
    """
    T = len(values)
    span = torch.zeros(T, dtype=torch.long)  # 0 format, 1 answer, 2 end
    if answer_positions is not None and len(answer_positions):
        span[answer_positions] = 1
        span[int(answer_positions.max()) + 1 :] = 2
    return {name: float(values[span == i].sum()) / max(T, 1) for i, name in enumerate(SPANS)}
