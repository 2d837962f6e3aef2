"""The reproduction's figures: seed-mean curves with ± std bands, one PNG per experiment."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Sequence

from urlvr.config import Plan

__all__ = ["plot_grid", "plot_sizes", "plot_mcs", "plot_preferences", "plot_before_after"]


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


def plot_sizes(on_set: dict, held_out: dict, path: Path, n_seeds: int, window: int, k: int,
               kl_quarters: dict | None = None, budget: float | None = None) -> Path:
    """On-set and held-out curves per set size; with ``kl_quarters`` (size -> 4 seed-mean KLs) a third panel of the
    KL to the initial model per quarter of the run, against the sharpening ``budget`` per token."""
    plt = _pyplot()
    n = 3 if kl_quarters else 2
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6))
    a1, a2 = axes[0], axes[1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, size in enumerate(on_set):
        _band(a1, on_set[size], colors[i % len(colors)], f"{size} problems")
        _band(a2, held_out[size], colors[i % len(colors)], f"{size} problems")
    a1.set_title(f"accuracy on the unlabeled set itself (means of {window} steps)", fontsize=9)
    a2.set_title(f"held-out validation avg@{k} (transfer)", fontsize=9)
    if kl_quarters:
        a3 = axes[2]
        for i, (size, q) in enumerate(kl_quarters.items()):
            xs = [j + 1 for j, v in enumerate(q) if v is not None]
            a3.plot(xs, [v for v in q if v is not None], "o-", color=colors[i % len(colors)], lw=1.5,
                    label=f"{size} problems")
        if budget is not None and math.isfinite(budget):
            a3.axhline(budget, color="grey", ls="--", lw=1, label="sharpening budget")
        a3.set_yscale("log")
        a3.set_xticks([1, 2, 3, 4])
        a3.set_title("KL to the initial model per token (seed mean)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step" if ax is not axes[-1] or not kl_quarters else "quarter of the run", fontsize=8)
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


def plot_preferences(prefs: dict, rewards: Sequence[str], curves: dict, path: Path, k: int) -> Path:
    """Left: each reward's within-group AUC per model (0.5 = no preference). Right: validation curves of the
    self-certainty arms (seed mean ± std)."""
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.3, 1]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(1, len(prefs))
    for i, (model, res) in enumerate(prefs.items()):
        ys = [res["rewards"][r]["auc"] if res["rewards"][r]["auc"] is not None else float("nan") for r in rewards]
        a1.bar([j + i * width for j in range(len(rewards))], ys, width, color=colors[i % len(colors)], label=model)
    a1.axhline(0.5, color="grey", ls="--", lw=1)
    a1.set_xticks([j + width * (len(prefs) - 1) / 2 for j in range(len(rewards))])
    a1.set_xticklabels([r.replace("_", "\n") for r in rewards], fontsize=7)
    a1.set_ylim(0, 1.05)
    a1.set_ylabel("within-group AUC (correct ranked above wrong)", fontsize=8)
    a1.set_title("what each reward prefers inside a group, at step 0", fontsize=9)
    a1.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    for i, (arm, c) in enumerate(curves.items()):
        _band(a2, c, colors[i % len(colors)], arm)
    a2.set_title(f"self_certainty on the aligned prior: validation avg@{k}", fontsize=9)
    a2.set_xlabel("step", fontsize=8)
    a2.legend(fontsize=7)
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    fig.suptitle("5. Why self-certainty collapses on the testbed", fontsize=10)
    return _save(fig, path)


def plot_before_after(rows: dict, metric: str, path: Path, title: str) -> Path:
    """Per arm (rows: name -> list of comparisons with base, trained, ci_low, ci_high), before and after bars
    per run with the paired difference's 95% CI as the error bar of the after bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = 0
    ticks, labels = [], []
    for i, (arm, comps) in enumerate(rows.items()):
        for j, c in enumerate(comps):
            ax.bar(x, c["base"], 0.4, color="lightgrey", label="before" if x == 0 else None)
            err = [[c["diff"] - c["ci_low"]], [c["ci_high"] - c["diff"]]]
            ax.bar(x + 0.4, c["trained"], 0.4, color=colors[i % len(colors)], yerr=err, capsize=3,
                   label=arm if j == 0 else None)
            ticks.append(x + 0.2)
            labels.append(f"s{j}")
            x += 1.0
        x += 0.5
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel(metric, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
