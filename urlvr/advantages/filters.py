"""Advantage filters: modifiers that drop whole prompts from the update.

``std_filter`` (RLPR, METHODS-2026 §7): a prompt whose rewards barely vary carries little signal (a
probability reward almost never ties exactly, so GRPO's zero-std rule rarely fires). Each step the
unbiased std ``σ_g`` of every prompt's valid rewards over the first ``n_train`` completions is
computed; their mean over the prompts with at least two valid rewards updates an EMA
(``ema ← decay·ema + (1 − decay)·mean σ``, the first step sets it); after ``warmup`` steps a prompt
with ``σ_g < beta·ema`` has its advantages zeroed. **Deviation from RLPR:** RLPR replaces filtered
prompts with freshly sampled ones until the batch is full; here they are only zeroed (the step trains
on fewer prompts). The EMA and the step count are saved with checkpoints.

>>> import torch
>>> from urlvr.advantages.modifiers import AdvantageContext
>>> f = StdFilter(beta=1.0, warmup=0)
>>> r = torch.tensor([[1.0, 0, 1, 0], [1.0, 1, 1, 0.8]])  # σ = 0.577, 0.1: mean 0.339
>>> ctx = AdvantageContext(step=0, seed=0, problem_ids=["a", "b"], clusters=[[None] * 4] * 2,
...                        answers=[[None] * 4] * 2, rewards=r, valid=torch.ones(2, 4, dtype=torch.bool), n_train=4)
>>> f(torch.ones(2, 4), ctx)
tensor([[1., 1., 1., 1.],
        [0., 0., 0., 0.]])
>>> ctx.metrics["adv/std_filter/kept"]
0.5
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from urlvr.advantages.modifiers import AdvantageContext, AdvantageModifier, register_modifier

__all__ = ["StdFilter", "group_reward_std"]


def group_reward_std(rewards: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Unbiased std of each row's valid rewards and whether it has at least two: ``(G,) float, (G,) bool``.

    ``rewards``, ``valid``: (G, N). Rows with fewer than two valid rewards get std 0.
    """
    v = valid.to(rewards.dtype)  # (G, N)
    count = v.sum(1)  # (G,)
    mean = (rewards * v).sum(1) / count.clamp(min=1)  # (G,)
    var = (((rewards - mean[:, None]) ** 2) * v).sum(1) / (count - 1).clamp(min=1)  # (G,)
    enough = count >= 2
    return torch.where(enough, var.sqrt(), torch.zeros_like(var)), enough


@register_modifier("std_filter", family="regulariser")
class StdFilter(AdvantageModifier):
    """RLPR's std filter: zero the advantages of prompts whose reward std is below ``beta`` × its EMA."""

    def __init__(self, beta: float = 0.5, decay: float = 0.99, warmup: int = 5):
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0 steps, got {warmup}")
        self.beta, self.decay, self.warmup = float(beta), float(decay), int(warmup)
        self.ema: float | None = None
        self.steps = 0
        """Steps seen (EMA updates attempted); the filter acts once ``steps >= warmup`` before the update."""

    def __call__(self, adv: Tensor, ctx: AdvantageContext) -> Tensor:
        n = ctx.n_train
        std, enough = group_reward_std(ctx.rewards[:, :n].to(torch.float64), ctx.valid[:, :n])  # (G,), (G,)
        active = self.steps >= self.warmup
        if enough.any():
            step_mean = float(std[enough].mean())
            self.ema = step_mean if self.ema is None else self.decay * self.ema + (1 - self.decay) * step_mean
        self.steps += 1
        if not active or self.ema is None:
            ctx.metrics["adv/std_filter/kept"] = 1.0
            if self.ema is not None:
                ctx.metrics["adv/std_filter/ema"] = self.ema
            return adv
        threshold = self.beta * self.ema
        keep = std >= threshold  # (G,)
        ctx.metrics.update({"adv/std_filter/kept": float(keep.double().mean()) if len(keep) else 1.0,
                            "adv/std_filter/ema": self.ema, "adv/std_filter/threshold": threshold})
        return adv * keep.to(adv.dtype).view(-1, *[1] * (adv.dim() - 1))

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = state.get("ema")
        self.steps = int(state.get("steps", 0))
