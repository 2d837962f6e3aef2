"""The reproduction's figures: seed-mean curves with ± std bands, one PNG per experiment."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Sequence

from urlvr.config import Plan

__all__ = ["plot_grid", "plot_sizes", "plot_mcs"]


def _band(ax, c: dict, color, label: str) -> None:
    """The seed-mean curve and its ± std band (none with one seed)."""
    steps, mean = c["steps"], c["mean"]
    ax.plot(steps, mean, color=color, lw=1.5, label=label)
    seeds = c.get("curves")
    if seeds and len(seeds) > 1:
        sd = [statistics.stdev(col) for col in zip(*seeds)]
        ax.fill_between(steps, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)], color=color,
                        alpha=0.2, lw=0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    _pyplot().close(fig)
    return path


def plot_grid(curves: dict, rewards: Sequence[str], priors: Sequence[str], path: Path, title: str, ylabel: str,
               by: str = "reward") -> Path:
    """One sub-plot per reward (priors overlaid), or per prior (rewards overlaid) with ``by="prior"``."""
    plt = _pyplot()
    panels, lines = (rewards, priors) if by == "reward" else (priors, rewards)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows + 0.6), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, panel in enumerate(panels):
        ax = axes[i // cols][i % cols]
        for j, line in enumerate(lines):
            key = (line, panel) if by == "reward" else (panel, line)
            if key in curves:
                _band(ax, curves[key], colors[j % len(colors)], line)
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    for i in range(len(panels), rows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_sizes(on_set: dict, held_out: dict, path: Path, n_seeds: int, window: int, k: int) -> Path:
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, n in enumerate(on_set):
        _band(a1, on_set[n], colors[i % len(colors)], f"{n} problems")
        _band(a2, held_out[n], colors[i % len(colors)], f"{n} problems")
    a1.set_title(f"accuracy on the unlabeled set itself (means of {window} steps)", fontsize=9)
    a2.set_title(f"held-out validation avg@{k} (transfer)", fontsize=9)
    for ax in (a1, a2):
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"2. Majority vote by dataset size (mean ± std over {n_seeds} seeds)", fontsize=10)
    return _save(fig, path)


def plot_mcs(rows: list[dict], path: Path, p: Plan) -> Path:
    plt = _pyplot()
    n = 2 if p.passk else 1
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.8), squeeze=False)
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    ax = axes[0][0]
    for x in rows:
        ax.errorbar(statistics.fmean(x["mcs"]), statistics.fmean(x["gt_gain"]), xerr=sd(x["mcs"]),
                    yerr=sd(x["gt_gain"]), fmt="o", capsize=3)
        ax.annotate(x["model"].removeprefix("testbed:"), (statistics.fmean(x["mcs"]), statistics.fmean(x["gt_gain"])),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"Model Collapse Step (cap {p.mcs_max_steps})", fontsize=8)
    ax.set_ylabel("GT Gain", fontsize=8)
    ax.grid(alpha=0.3)
    if p.passk:
        ax = axes[0][1]
        for x in rows:
            ax.errorbar(x["passk_gain"], statistics.fmean(x["gt_gain"]), yerr=sd(x["gt_gain"]), fmt="s", capsize=3)
            ax.annotate(x["model"].removeprefix("testbed:"), (x["passk_gain"], statistics.fmean(x["gt_gain"])),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(f"pass@{p.passk} gain", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("3. MCS vs GT Gain per prior (mean ± std over seeds)", fontsize=10)
    return _save(fig, path)
