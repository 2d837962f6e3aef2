"""Collapse detector: sees the fall coming from label-free signals only.

Intrinsic rewards sharpen the prior (METHODS.md §8): the majority ratio climbs to 1 while the token
entropy falls. Once the policy has put (almost) all its mass on one answer per prompt, nothing more
can be learned from agreement, and where that answer is wrong it is locked in. The detector smooths
``diag/majority_ratio`` and ``policy/entropy`` with an exponential moving average and fires when, for
``patience`` consecutive steps, the majority ratio is above ``ratio_threshold`` *and* the entropy is
below ``entropy_fraction`` of its initial value. It logs ``diag/collapse_fired`` (once), and tracks the
label-free best step (``diag/collapse_best_step``: the last step before saturation began).

This is urlvr's own label-free criterion, not the paper's Model Collapse Step (which needs labels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["CollapseDetector"]


@dataclass
class CollapseDetector:
    ratio_threshold: float = 0.95
    entropy_fraction: float = 0.25
    patience: int = 3
    smoothing: float = 0.5
    """EMA weight of the newest value."""
    state: dict = field(default_factory=lambda: {"ratio": None, "entropy": None, "entropy0": None, "streak": 0,
                                                 "fired_at": None, "best_step": 0})

    def update(self, step: int, metrics: dict) -> dict:
        """Feed one step's metrics; returns the ``diag/collapse_*`` entries to log."""
        s = self.state
        ratio, ent = metrics.get("diag/majority_ratio"), metrics.get("policy/entropy")
        if ratio is None or ent is None:
            return {}
        a = self.smoothing
        s["ratio"] = ratio if s["ratio"] is None else a * ratio + (1 - a) * s["ratio"]
        s["entropy"] = ent if s["entropy"] is None else a * ent + (1 - a) * s["entropy"]
        if s["entropy0"] is None:
            s["entropy0"] = max(ent, 1e-8)
        saturated = s["ratio"] >= self.ratio_threshold and s["entropy"] <= self.entropy_fraction * s["entropy0"]
        s["streak"] = s["streak"] + 1 if saturated else 0
        if not saturated:
            s["best_step"] = step
        out = {"diag/collapse_streak": s["streak"], "diag/collapse_best_step": s["best_step"],
               "diag/entropy_ratio": s["entropy"] / s["entropy0"]}
        if s["streak"] >= self.patience and s["fired_at"] is None:
            s["fired_at"] = step
            out["diag/collapse_fired"] = 1
        return out

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v)
