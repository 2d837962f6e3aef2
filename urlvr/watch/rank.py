r"""Ranking base models by how much RL can give them: MCS, its label-free twin, GT Gain, pass@k gain.

:func:`rank_models` measures every indicator of :mod:`urlvr.watch.collapse` for each model (the MCS
over several seeds), correlates them (Spearman and Kendall, tie-corrected, no scipy) and counts the
tokens each cost; :func:`format_ranking` is the Markdown of ``ranking.md``.

>>> spearman([1, 2, 3, 4], [10, 20, 40, 30]), kendall([1, 2, 3, 4], [10, 20, 40, 30])
(0.8, 0.6666666666666666)
"""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path
from typing import Callable, Sequence

from urlvr.config import GainConfig, MCSConfig
from urlvr.errors import UrlvrError
from urlvr.io import write_json, write_text
from urlvr.loading import resolve_model
from urlvr.watch.collapse import OnStep, collapse_run, gt_gain, passk_gain, plot_curves, slug

__all__ = ["spearman", "kendall", "rank_models", "format_ranking"]


# ---------------------------------------------------------------------------------------------------
# rank correlations (no scipy)
# ---------------------------------------------------------------------------------------------------
def _ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, ties get the mean of the ranks they span."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks; nan when either is constant."""
    if len(x) != len(y):
        raise ValueError("spearman needs two sequences of the same length")
    rx, ry = _ranks(x), _ranks(y)
    n = len(x)
    if n < 2:
        return float("nan")
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else float("nan")


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either sequence corrected); nan when either is constant."""
    if len(x) != len(y):
        raise ValueError("kendall needs two sequences of the same length")
    conc = disc = tx = ty = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif (dx > 0) == (dy > 0):
            conc += 1
        else:
            disc += 1
    denom = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / denom if denom else float("nan")


# ---------------------------------------------------------------------------------------------------
# ranking models
# ---------------------------------------------------------------------------------------------------
def rank_models(models: Sequence[str], task: str, task_options: dict | None = None,
                mcs: MCSConfig | None = None, gain: GainConfig | None = None, with_gt: bool = True,
                seeds: int = 1, out_dir: str | Path = "runs/rank", on_event: Callable[[str], None] | None = None,
                on_step: OnStep | None = None) -> dict:
    """MCS (and its label-free twin), GT Gain and pass@k gain of every model; correlations; token costs.

    With ``seeds > 1`` the MCS run is repeated with seeds ``seed, seed+1, ...`` and the model's MCS and
    label-free step are the means over seeds (a censored seed counts as the cap), its tokens the sum.
    """
    if len(models) < 2:
        raise UrlvrError("rank needs at least two models")
    if len(set(models)) != len(models):
        raise UrlvrError("rank: a model is listed twice")
    if seeds < 1:
        raise UrlvrError(f"seeds must be >= 1, got {seeds}")
    mcs, gain = mcs or MCSConfig(), gain or GainConfig()
    out = Path(out_dir)
    say = on_event or (lambda msg: None)
    rows, curves = [], {}
    for name in models:
        say(f"[rank] {name}: building / loading ...")
        resolve_model(name, task, task_options)
        say(f"[rank] {name}: Model Collapse Step ({seeds} seed{'s' if seeds > 1 else ''}) ...")
        runs = [collapse_run(name, task, task_options, mcs.replace(seed=mcs.seed + i),
                             out / slug(name) / f"seed{mcs.seed + i}", on_step) for i in range(seeds)]
        row = _mean_runs(name, [r for r, _ in runs])
        curves[name] = (runs[0][1], runs[0][0])
        if with_gt:
            say(f"[rank] {name}: GT Gain ({gain.steps} gold steps) ...")
            row.update(gt_gain(name, task, task_options, gain, out / slug(name) / "gt", on_step))
        if gain.passk:
            say(f"[rank] {name}: pass@{gain.passk} gain ...")
            row.update(passk_gain(name, task, task_options, gain, out / slug(name) / "passk"))
        rows.append(row)
    plot_curves(curves, out / "mcs_curves.png", mcs)
    result = {"task": task, "task_options": dict(task_options or {}), "mcs_settings": mcs.to_dict(),
              "seeds": seeds, "gain_settings": gain.to_dict(), "models": rows,
              "correlations": _correlations(rows), "tokens": _token_totals(rows, seeds)}
    write_json(out / "ranking.json", result)
    write_text(out / "ranking.md", format_ranking(result) + "\n")
    return result


def _mean_runs(name: str, runs: list[dict]) -> dict:
    """One row from the MCS runs of several seeds: mean steps, summed tokens, per-seed values kept."""
    n = len(runs)
    return {"model": name, "mcs": sum(r["mcs"] for r in runs) / n, "censored": all(r["censored"] for r in runs),
            "tokens": sum(r["tokens"] for r in runs),
            "label_free_step": sum(r["label_free_step"] for r in runs) / n,
            "label_free_censored": all(r["label_free_censored"] for r in runs),
            "label_free_tokens": sum(r["label_free_tokens"] for r in runs),
            "mcs_per_seed": [r["mcs"] for r in runs], "label_free_per_seed": [r["label_free_step"] for r in runs],
            "censored_per_seed": [r["censored"] for r in runs], "curves": [r["curve"] for r in runs]}


_LABELS = {"mcs": "MCS", "label_free_step": "label-free step", "passk_gain": "pass@k gain", "gt_gain": "GT Gain",
           "acc_after": "accuracy after GT run", "base_maj": "base maj@k"}
_PAIRS = [(a, b) for b in ("gt_gain", "acc_after", "base_maj") for a in ("mcs", "label_free_step", "passk_gain")]
_PAIRS.append(("label_free_step", "mcs"))


def _correlations(rows: list[dict]) -> list[dict]:
    """Spearman and Kendall of each indicator against the references (and label-free against MCS)."""
    out = []
    for a, b in _PAIRS:
        if all(r.get(a) is not None and r.get(b) is not None for r in rows):
            x, y = [r[a] for r in rows], [r[b] for r in rows]
            out.append({"a": _LABELS[a], "b": _LABELS[b], "spearman": _clean(spearman(x, y)),
                        "kendall": _clean(kendall(x, y))})
    return out


def _token_totals(rows: list[dict], seeds: int = 1) -> dict:
    """Tokens per indicator over all models; GT Gain's cost over MCS's (all seeds, and per MCS seed)."""
    t = {k: sum(r.get(k, 0) for r in rows) for k in ("tokens", "label_free_tokens", "gt_tokens", "passk_tokens")}
    ok = t["tokens"] and t["gt_tokens"]
    t["gt_over_mcs"] = t["gt_tokens"] / t["tokens"] if ok else None
    t["gt_over_mcs_one_seed"] = t["gt_tokens"] / (t["tokens"] / seeds) if ok else None
    return t


def _clean(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def _fmt(x, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _steps(row: dict, key: str, censored: str) -> str:
    """``412`` / ``600+`` (censored) / ``301 (118, 600+, 185)`` (mean over seeds, then each seed)."""
    per = row.get({"mcs": "mcs_per_seed", "label_free_step": "label_free_per_seed"}[key]) or []
    marks = row.get("censored_per_seed") if key == "mcs" else None
    text = f"{row[key]:.0f}{'+' if row[censored] else ''}"
    if len(per) < 2:
        return text
    return text + " (" + ", ".join(f"{v:.0f}{'+' if marks and marks[i] else ''}" for i, v in enumerate(per)) + ")"


def format_ranking(result: dict) -> str:
    """Markdown: one row per model (sorted by MCS), the correlations, the token costs."""
    rows = sorted(result["models"], key=lambda r: (-r["mcs"], r["model"]))
    k = result["gain_settings"]["passk"]
    lines = ["| model | MCS | label-free step | GT Gain (before -> after) | pass@k gain | base maj@k "
             "| tokens: MCS / GT / pass@k |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        m, lf = _steps(r, "mcs", "censored"), _steps(r, "label_free_step", "label_free_censored")
        gt = (f"{r['gt_gain']:+.3f} ({r['acc_before']:.3f} -> {r['acc_after']:.3f})" if "gt_gain" in r else "-")
        pk = f"{r['passk_gain']:+.3f}" if "passk_gain" in r else "-"
        toks = f"{r['tokens']} / {r.get('gt_tokens', '-')} / {r.get('passk_tokens', '-')}"
        lines.append(f"| {r['model']} | {m} | {lf} | {gt} | {pk} | {_fmt(r.get('base_maj'))} | {toks} |")
    seeds = result.get("seeds", 1)
    lines += ["", f"MCS `+` = censored at the cap ({result['mcs_settings']['max_steps']} steps) in every seed; "
              f"{seeds} seed(s) per model{', mean (then each seed)' if seeds > 1 else ''}. pass@k: k = {k}.",
              "", "| indicators | Spearman | Kendall |", "|---|---|---|"]
    lines += [f"| {c['a']} vs {c['b']} | {_fmt(c['spearman'])} | {_fmt(c['kendall'])} |" for c in result["correlations"]]
    t = result["tokens"]
    lines += ["", f"Tokens generated, all models: MCS {t['tokens']}, label-free step {t['label_free_tokens']}, "
              f"GT Gain {t['gt_tokens']}, pass@k gain {t['passk_tokens']}; GT Gain / MCS = {_fmt(t['gt_over_mcs'], '.2f')}x"
              + (f" ({_fmt(t.get('gt_over_mcs_one_seed'), '.2f')}x against one MCS seed)." if seeds > 1 else ".")]
    return "\n".join(lines)
