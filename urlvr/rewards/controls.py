"""Controls every study needs: the gold reward (supervised RLVR), random and format-only rewards."""

from __future__ import annotations


from urlvr.rewards.base import register_reward
from urlvr.seeds import rng
from urlvr.types import Group, LabeledGroup

__all__ = ["gold", "random_reward", "format_only"]


@register_reward("gold", family="control", needs_gold=True, source="supervised RLVR")
def gold(group: LabeledGroup) -> list[float]:
    """1 if the completion's answer passes the task's gold check, else 0 (the supervised control).

    For tasks with many correct answers (Countdown) the check verifies against the problem.
    """
    if group.gold is None:
        return [None] * len(group)
    if group.correct is not None:  # the step's batched gold verdicts
        return [float(ok) for ok in group.correct]
    return [float(group.check(c.answer, group.gold)) for c in group.completions]


@register_reward("random", family="control", source="Spurious Rewards (2506.10947)")
def random_reward(group: Group, p: float = 0.5, seed: int = 0) -> list[float]:
    """Bernoulli(p) per completion, seeded by the problem id and completion text (order-invariant)."""
    return [float(rng(seed, group.problem.id, c.text).random() < p) for c in group.completions]


@register_reward("format_only", family="control", source="Spurious Rewards (2506.10947)")
def format_only(group: Group) -> list[float]:
    """1 if the completion states an answer in the task's format (a ``\\boxed{}``), else 0."""
    return [float(c.answer is not None) for c in group.completions]
