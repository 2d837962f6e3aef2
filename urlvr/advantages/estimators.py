"""Group-relative advantage estimators (GRPO, Dr.GRPO), semantic entropy and the SEED-GRPO scale.

Rewards arrive as a ``(G, N)`` grid: G groups (prompts) × N completions. A completion whose reward is
``None`` (not applicable, failed) is marked ``valid = False``: it is left out of its group's mean and
std and gets advantage 0, so it neither pulls nor pushes the policy.

- ``grpo``:   ``A_i = (r_i - mean_g) / (std_g + eps)``, ``std_g`` the *unbiased* std over valid entries.
- ``drgrpo``: ``A_i = r_i - mean_g`` (Dr.GRPO: no std division).

In both, a group whose valid rewards are all equal (zero std), or that has fewer than two valid
rewards, gets advantage exactly 0 (no rounding residue divided by ``eps``).

SEED-GRPO (a modifier, applied after the estimator) scales each group's advantages by its answer
uncertainty: ``A_i · (1 - α · SE_g / log N)``, SE_g the semantic entropy of the group's answer clusters.

>>> group_advantages(torch.tensor([[1.0, 0.0, 1.0, 0.0]]), scale="none")
tensor([[ 0.5000, -0.5000,  0.5000, -0.5000]])
>>> round(semantic_entropy([7, 7, None, None]), 4)  # clusters {7, 7}, {None}, {None}
1.0397
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Sequence

import torch
from torch import Tensor

from urlvr.errors import UrlvrError, lookup

__all__ = [
    "group_advantages", "grpo_advantages", "drgrpo_advantages", "ADVANTAGE_ESTIMATORS",
    "get_advantage_estimator", "zero_std_fraction", "semantic_entropy", "seed_grpo_scale",
]

ADVANTAGE_SCALES = ("std", "none")


def _valid_mask(rewards: Tensor, valid: Tensor | None) -> Tensor:
    """(G, N) bool mask; every entry valid when ``valid`` is None."""
    if rewards.dim() != 2:
        raise ValueError(f"expected rewards (G, N), got shape {tuple(rewards.shape)}")
    if valid is None:
        return torch.ones_like(rewards, dtype=torch.bool)
    if valid.shape != rewards.shape:
        raise ValueError(f"valid {tuple(valid.shape)} must match rewards {tuple(rewards.shape)}")
    return valid.bool()


def _degenerate_groups(r: Tensor, valid: Tensor) -> Tensor:
    """(G,) bool: groups with < 2 valid rewards or all valid rewards equal. ``r`` (G, N) zeroed where invalid."""
    big = torch.finfo(r.dtype).max
    hi = torch.where(valid, r, torch.full_like(r, -big)).amax(dim=1)  # (G,)
    lo = torch.where(valid, r, torch.full_like(r, big)).amin(dim=1)  # (G,)
    return (valid.sum(dim=1) < 2) | (hi == lo)


def group_advantages(rewards: Tensor, valid: Tensor | None = None, scale: str = "std",
                     eps: float = 1e-6) -> Tensor:
    """Group-relative advantages over the valid entries of each group.

    Args:
        rewards: (G, N) float rewards; values at invalid entries are ignored (may be NaN).
        valid: (G, N) bool, False = no reward (excluded from the group statistics, advantage 0);
            None = all valid.
        scale: ``"std"`` (GRPO: divide by unbiased std + eps) or ``"none"`` (Dr.GRPO).
        eps: added to the std (verl 1e-6, TRL 1e-4).

    Returns:
        (G, N) advantages, 0 at invalid entries and in degenerate groups.
    """
    if scale not in ADVANTAGE_SCALES:
        raise UrlvrError(f"unknown advantage scale {scale!r}; choose one of: {', '.join(ADVANTAGE_SCALES)}")
    valid = _valid_mask(rewards, valid)  # (G, N)
    r = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    r = torch.where(valid, r, torch.zeros_like(r))  # (G, N)
    n = valid.sum(dim=1, keepdim=True).to(r.dtype)  # (G, 1)
    mean = r.sum(dim=1, keepdim=True) / n.clamp(min=1)  # (G, 1)
    centred = torch.where(valid, r - mean, torch.zeros_like(r))  # (G, N)
    adv = centred
    if scale == "std":
        std = (centred.pow(2).sum(dim=1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()  # (G, 1) unbiased
        adv = centred / (std + eps)  # (G, N)
    degenerate = _degenerate_groups(r, valid).unsqueeze(1)  # (G, 1)
    return torch.where(degenerate | ~valid, torch.zeros_like(adv), adv)


def grpo_advantages(rewards: Tensor, valid: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """GRPO: ``(r - mean_g) / (std_g + eps)``, unbiased std. (G, N) -> (G, N)."""
    return group_advantages(rewards, valid, scale="std", eps=eps)


def drgrpo_advantages(rewards: Tensor, valid: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """Dr.GRPO: ``r - mean_g`` (``eps`` is accepted for a uniform signature and unused). (G, N) -> (G, N)."""
    return group_advantages(rewards, valid, scale="none", eps=eps)


AdvantageEstimator = Callable[..., Tensor]

ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {
    "grpo": grpo_advantages,
    "drgrpo": drgrpo_advantages,
}
"""Name -> ``estimator(rewards (G, N), valid=None, eps=1e-6) -> (G, N)``."""


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """The registered estimator called ``name``; :class:`UrlvrError` listing the valid names otherwise."""
    return lookup(ADVANTAGE_ESTIMATORS, name, "advantage estimator")


def zero_std_fraction(rewards: Tensor, valid: Tensor | None = None) -> float:
    """Fraction of groups whose advantages are all zero: every valid reward equal, or < 2 valid rewards.

    Args:
        rewards: (G, N) float rewards.
        valid: (G, N) bool, or None = all valid.

    Returns:
        A float in [0, 1]; 0.0 when G = 0.
    """
    valid = _valid_mask(rewards, valid)
    if rewards.shape[0] == 0:
        return 0.0
    r = torch.where(valid, rewards, torch.zeros_like(rewards))
    return _degenerate_groups(r, valid).float().mean().item()


def semantic_entropy(cluster_ids: Sequence[int | None]) -> float:
    """Semantic entropy of one group's answer clusters: ``-Σ_c (n_c/N) log(n_c/N)`` (natural log).

    ``cluster_ids[i]`` is the answer-equivalence cluster of completion i. ``None`` (no answer) counts as
    its own singleton cluster (the verl/EMPO variant), so answer-less completions raise the entropy.
    ``N`` is ``len(cluster_ids)``; an empty group has entropy 0. Range: ``[0, log N]``.

    >>> semantic_entropy([1, 1, 1, 1]), round(semantic_entropy([1, 2, 3, 4]), 4)
    (0.0, 1.3863)
    """
    n = len(cluster_ids)
    if n == 0:
        return 0.0
    counts = Counter(c for c in cluster_ids if c is not None)
    sizes = list(counts.values()) + [1] * sum(c is None for c in cluster_ids)
    return max(0.0, -sum((k / n) * math.log(k / n) for k in sizes))


def seed_grpo_scale(advantages: Tensor, entropies: Tensor | Sequence[float], n: int,
                    alpha: float = 1.0) -> Tensor:
    """SEED-GRPO: ``A_i · (1 - alpha · SE_g / SE_max)`` with ``SE_max = log n``.

    Confident groups (SE = 0) keep their full advantages; maximally uncertain ones (all answers
    different, SE = log n) are scaled by ``1 - alpha``. For ``n = 1`` the scale is 1.

    Args:
        advantages: (G, N) advantages from an estimator.
        entropies: (G,) semantic entropy of each group (:func:`semantic_entropy`).
        n: the group size the entropies were computed over (``SE_max = log n``).
        alpha: strength; 0 = no change, in [0, 1] keeps the scale non-negative.

    Returns:
        (G, N) scaled advantages.
    """
    se = torch.as_tensor(entropies, dtype=advantages.dtype, device=advantages.device)  # (G,)
    if se.shape != advantages.shape[:1]:
        raise ValueError(f"entropies {tuple(se.shape)} must be (G,) for advantages {tuple(advantages.shape)}")
    if n <= 1:
        return advantages.clone()
    scale = 1.0 - alpha * se / math.log(n)  # (G,)
    return advantages * scale.unsqueeze(1)  # (G, N)
