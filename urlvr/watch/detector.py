"""Collapse detector: sees the fall coming from label-free signals only (METHODS.md §7–§8).

Intrinsic rewards sharpen the prior: the majority ratio climbs to 1 while the token entropy falls, and
the policy tends to the *initial* policy conditioned on its *initial* majority answer (§8). Two
label-free facts follow, and the detector watches both over a trailing window of ``window`` steps:

- **Saturation.** Once the smoothed majority ratio is at least ``ratio_threshold`` and the token entropy
  has fallen to ``entropy_fraction`` of its starting level (or the response length to
  ``length_fraction`` of its own: length collapse), there is nothing left to gain from agreement; from
  here on the run can only lose (repetition, length or gradual collapse).
- **Drift beyond sharpening.** Pure sharpening moves the policy a bounded distance from where it
  started: the KL of the initial policy conditioned on its answer ``â`` to the initial policy is
  ``−log π₀(â)`` nats per sequence, estimated by ``−log r₀`` with ``r₀`` the starting majority ratio. The trainer logs
  the per-token KL to the initial model (``policy/kl_initial``); times the mean length it estimates
  the per-sequence KL (measured every ``kl_every`` steps when ``kl_coef = 0``; between measurements the
  last value holds). When that exceeds ``kl_margin × max(−log r₀, kl_floor)``, the policy is no
  longer sharpening its prior but rewriting its answers: on the testbed this is how an aligned model
  driven with too large a learning rate talks itself into wrong majorities.

``diag/collapse_best`` marks a new label-free best step: the smoothed majority ratio improved by at
least ``min_delta`` while neither condition held (the trainer saves that checkpoint as
``checkpoints/best`` when ``collapse_keep_best`` is set). ``diag/collapse_peak`` flags the first step
at which a condition holds: the label-free peak has passed, and it was ``diag/collapse_best_step``.
When a condition holds for ``patience`` consecutive steps the detector fires, once
(``diag/collapse_fired``; the run stops there with ``collapse_stop``).

Logged every step: ``diag/entropy_slope`` (least-squares slope of ``policy/entropy`` per step over
the window), ``diag/entropy_ratio`` and ``diag/length_ratio`` (smoothed value over its baseline),
``diag/kl_budget_ratio`` (smoothed per-sequence KL over its budget), ``diag/collapse_streak`` and
``diag/collapse_best_step``. Baselines are the means of the first ``window`` steps.

This is urlvr's own label-free criterion, not the paper's Model Collapse Step, which needs labels
(:mod:`urlvr.watch.collapse`). Like every label-free signal it cannot tell sharpening a right answer from
sharpening a wrong one: on a confidently wrong prior it fires only once the drift shows, after the
true peak (see docs/diagnostics.md for measured leads).

>>> d = CollapseDetector(window=3, patience=2)
>>> ev = [d.update(s, {"diag/majority_ratio": r, "policy/entropy": h})
...       for s, (r, h) in enumerate([(.5, 1.0), (.6, 1.0), (.7, .9), (1, .1), (1, .1), (1, .1), (1, .1)], 1)]
>>> [s for s, e in enumerate(ev, 1) if e.get("diag/collapse_best")], d.state["peak_at"], d.state["fired_at"]
([1, 2, 3, 4, 5], 6, 7)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from urlvr.errors import UrlvrError

__all__ = ["CollapseDetector", "window_slope"]

_SIGNALS = {"ratio": "diag/majority_ratio", "entropy": "policy/entropy", "length": "rollout/length_mean",
            "kl": "policy/kl_initial"}


def window_slope(values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against their index (per step); 0 for fewer than two.

    >>> window_slope([3.0, 2.0, 1.0])
    -1.0
    >>> window_slope([5.0])
    0.0
    """
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    sxx = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (v - my) for i, v in enumerate(values)) / sxx


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _initial_state() -> dict:
    return {"history": {k: [] for k in _SIGNALS}, "baseline": {k: [] for k in _SIGNALS}, "streak": 0,
            "best_ratio": None, "best_step": 0, "peak_at": None, "fired_at": None}


@dataclass
class CollapseDetector:
    window: int = 10
    """Steps in the trailing window (smoothing, slope) and in the baseline."""
    patience: int = 3
    """Consecutive steps a collapse condition must hold before the detector fires."""
    ratio_threshold: float = 0.95
    """Saturation: smoothed majority ratio at least this."""
    entropy_fraction: float = 0.3
    """Saturation: smoothed token entropy at most this fraction of its baseline ..."""
    length_fraction: float = 0.5
    """... or smoothed response length at most this fraction of its baseline (length collapse)."""
    kl_margin: float = 2.0
    """Drift: smoothed per-sequence KL to the initial policy above this many times the sharpening budget."""
    kl_floor: float = 0.05
    """Smallest sharpening budget in nats (a prior already unanimous has a budget near 0)."""
    min_delta: float = 0.01
    """A new best step needs the smoothed majority ratio to improve by at least this."""
    state: dict = field(default_factory=_initial_state)

    def __post_init__(self):
        if self.window < 1 or self.patience < 1:
            raise UrlvrError(f"collapse window and patience must be >= 1, got {self.window}, {self.patience}")
        for name in ("ratio_threshold", "entropy_fraction", "length_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UrlvrError(f"collapse {name} must be in [0, 1], got {getattr(self, name)}")
        if self.kl_margin <= 0:
            raise UrlvrError(f"collapse kl_margin must be > 0, got {self.kl_margin}")

    @classmethod
    def from_config(cls, cfg) -> "CollapseDetector":
        """The detector a :class:`~urlvr.config.TrainConfig` asks for (its ``collapse_*`` fields)."""
        return cls(window=cfg.collapse_window, patience=cfg.collapse_patience, ratio_threshold=cfg.collapse_ratio,
                   entropy_fraction=cfg.collapse_entropy_fraction, kl_margin=cfg.collapse_kl_margin)

    def update(self, step: int, metrics: dict) -> dict:
        """Feed one step's metrics; returns the ``diag/*`` entries to log (empty without the signals)."""
        s = self.state
        values = {k: metrics.get(key) for k, key in _SIGNALS.items()}
        if values["ratio"] is None or values["entropy"] is None:
            return {}
        if values["kl"] is None and s["history"]["kl"]:  # measured every kl_every steps: hold the last value
            values["kl"] = s["history"]["kl"][-1]
        for k, v in values.items():
            if v is None or not math.isfinite(v):
                continue
            s["history"][k] = (s["history"][k] + [float(v)])[-self.window :]
            if len(s["baseline"][k]) < self.window:
                s["baseline"][k].append(float(v))
        smooth = {k: _mean(h) for k, h in s["history"].items() if h}
        base = {k: _mean(b) for k, b in s["baseline"].items() if b}
        out = {"diag/entropy_slope": window_slope(s["history"]["entropy"])}
        out["diag/entropy_ratio"] = smooth["entropy"] / max(base["entropy"], 1e-8)
        saturated = smooth["ratio"] >= self.ratio_threshold and out["diag/entropy_ratio"] <= self.entropy_fraction
        if "length" in smooth:
            out["diag/length_ratio"] = smooth["length"] / max(base["length"], 1e-8)
            saturated = saturated or (smooth["ratio"] >= self.ratio_threshold
                                      and out["diag/length_ratio"] <= self.length_fraction)
        drift = False
        if "kl" in smooth:
            budget = max(-math.log(max(base["ratio"], 1e-3)), self.kl_floor)
            out["diag/kl_budget_ratio"] = smooth["kl"] * smooth.get("length", 1.0) / budget
            drift = out["diag/kl_budget_ratio"] > self.kl_margin
        collapsing = saturated or drift
        s["streak"] = s["streak"] + 1 if collapsing else 0
        if collapsing and s["peak_at"] is None:
            s["peak_at"] = step
            out["diag/collapse_peak"] = 1
        if s["peak_at"] is None and (s["best_ratio"] is None or smooth["ratio"] >= s["best_ratio"] + self.min_delta):
            s["best_ratio"], s["best_step"] = smooth["ratio"], step
            out["diag/collapse_best"] = 1
        out.update({"diag/collapse_streak": s["streak"], "diag/collapse_best_step": s["best_step"],
                    "diag/collapse_saturated": int(saturated), "diag/collapse_drift": int(drift)})
        if s["streak"] >= self.patience and s["fired_at"] is None:
            s["fired_at"] = step
            out["diag/collapse_fired"] = 1
        return out

    def state_dict(self) -> dict:
        """What the detector has seen (not its settings: those come from the run's config)."""
        return {"state": self.state}

    def load_state_dict(self, d: dict) -> None:
        self.state = d["state"]
