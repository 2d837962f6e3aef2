"""``urlvr report RUN_DIR [RUN_DIR ...]``: one folder with an HTML page, a Markdown page and PNG plots.

The folder opens anywhere (no server, no network): ``index.html`` and ``report.md`` link the plots in
``plots/`` by relative paths (``--embed`` also puts them into the HTML as base64, so the page alone is
enough). Several runs are overlaid, one colour per run. The plots, each against the training step:

| plot | metrics |
|---|---|
| ``reward_accuracy.png`` | ``reward/mean`` (what trains) above ``oracle/accuracy`` (gold, what it should buy) |
| ``label_reward_accuracy.png`` | ``oracle/label_accuracy`` (solid), ``oracle/reward_accuracy`` (dashed) |
| ``majority_ratio.png`` | ``diag/majority_ratio`` |
| ``entropy.png`` | ``policy/entropy`` |
| ``length.png`` | ``rollout/length_mean`` |
| ``kl_initial.png`` | ``policy/kl_initial`` |
| ``validation.png`` | ``val/avg@K`` (solid), ``val/maj@K`` (dashed) |

Per-step curves are drawn faint as logged and solid as a trailing mean (:func:`smooth`). The steps at
which the collapse detector fired (``diag/collapse_fired``, :mod:`urlvr.watch.detector`) are dotted
vertical lines in the run's colour on every plot. A plot whose metrics no run logged is left out and
named in the page. Below the plots: the summary table (``summary.json``; recomputed from
``metrics.jsonl`` for a run still in progress), the settings that differ between runs, each run's
full config, and the before/after evaluation of a test-time-training run (``ttt.json``, written by
``urlvr ttt``, :mod:`urlvr.evaluation.ttt`).

>>> smooth([0.0, 1.0, 2.0, 3.0], window=2)
[0.0, 0.5, 1.5, 2.5]
>>> smooth([1.0, None, 3.0], window=2)
[1.0, None, 2.0]
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from urlvr.errors import UrlvrError

__all__ = ["Run", "Panel", "PANELS", "load_run", "smooth", "build_report", "markdown_table"]


@dataclass
class Run:
    """One run folder, read: its label in the plots, config, metric rows, summary and TTT evaluation."""

    path: Path
    label: str
    config: dict[str, Any]
    rows: list[dict]
    summary: dict[str, Any]
    ttt: dict[str, Any] | None = None

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """Steps and values of ``key`` where it was logged (None and missing values skipped)."""
        pts = [(r["step"], r[key]) for r in self.rows if isinstance(r.get(key), (int, float))]
        return [s for s, _ in pts], [float(v) for _, v in pts]

    def collapse_steps(self) -> list[int]:
        return [r["step"] for r in self.rows if r.get("diag/collapse_fired")]


@dataclass(frozen=True)
class Series:
    key: str
    """Metric key, or a prefix ending in ``@`` (``val/avg@`` matches ``val/avg@4``)."""
    label: str
    style: str = "-"
    dense: bool = True
    """Logged every step (drawn faint + smoothed) rather than every few steps (markers)."""


@dataclass(frozen=True)
class Panel:
    name: str
    """File stem of the PNG."""
    title: str
    axes: tuple[tuple[Series, ...], ...]
    """One tuple of series per stacked sub-plot."""
    ylabels: tuple[str, ...]
    caption: str = ""


PANELS: tuple[Panel, ...] = (
    Panel("reward_accuracy", "Intrinsic reward vs gold accuracy",
          ((Series("reward/mean", "reward"),), (Series("oracle/accuracy", "gold accuracy"),)),
          ("reward/mean\n(training signal)", "oracle/accuracy\n(gold, monitoring)"),
          "Top: the reward the policy is trained on. Bottom: gold accuracy of the same rollouts."),
    Panel("label_reward_accuracy", "Label accuracy and reward accuracy",
          ((Series("oracle/label_accuracy", "label acc."), Series("oracle/reward_accuracy", "reward acc.", "--")),),
          ("accuracy",), "Solid: majority answer is right (per prompt). Dashed: reward equals gold reward."),
    Panel("majority_ratio", "Majority ratio", ((Series("diag/majority_ratio", "majority ratio"),),),
          ("diag/majority_ratio",), "count(majority answer) / N per prompt: 1 = every completion agrees."),
    Panel("entropy", "Token entropy", ((Series("policy/entropy", "entropy"),),), ("policy/entropy (nats)",),
          "Entropy of the rollout policy's next-token distribution, mean over tokens."),
    Panel("length", "Response length", ((Series("rollout/length_mean", "length"),),), ("tokens",),
          "Mean completion length (EOS included)."),
    Panel("kl_initial", "KL to the initial policy", ((Series("policy/kl_initial", "KL"),),), ("per-token KL (k3)",),
          "How far the rollout policy has moved from the base model."),
    Panel("validation", "Validation accuracy",
          ((Series("val/avg@", "avg@k", "-", False), Series("val/maj@", "maj@k", "--", False)),), ("accuracy",),
          "Held-out validation problems. Solid: avg@k. Dashed: maj@k."),
)
"""The plots of a report, in page order."""


def smooth(values: Sequence[float | None], window: int) -> list[float | None]:
    """Trailing mean over the last ``window`` values (None stays None and is not counted)."""
    out, seen = [], []
    for v in values:
        if v is None:
            out.append(None)
            continue
        seen.append(v)
        tail = seen[-window:]
        out.append(sum(tail) / len(tail))
    return out


def smoothing_window(n_steps: int) -> int:
    """The trailing-mean window for a curve of ``n_steps`` points: about 1/25 of it, at least 1."""
    return max(1, n_steps // 25)


# ---------------------------------------------------------------------------------------------------
# reading runs
# ---------------------------------------------------------------------------------------------------
def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read a run folder (``metrics.jsonl`` required; ``config.yaml``, ``summary.json``, ``ttt.json`` optional)."""
    import yaml

    from urlvr.io import read_json, read_jsonl

    p = Path(path)
    if not (p / "metrics.jsonl").is_file():
        raise UrlvrError(f"{p} is not a run folder (no metrics.jsonl); give the out_dir of a 'urlvr train' run")
    rows = read_jsonl(p / "metrics.jsonl")
    if not rows:
        raise UrlvrError(f"{p}/metrics.jsonl has no rows yet (the run has not logged step 0); report it once it has")
    config = {}
    if (p / "config.yaml").is_file():
        try:
            config = yaml.safe_load((p / "config.yaml").read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise UrlvrError(f"{p}/config.yaml cannot be read ({type(e).__name__}); restore it from the run") from None
    if (p / "summary.json").is_file():
        summary = read_json(p / "summary.json")
    else:
        summary = _summary_in_progress(rows, config)
    ttt = read_json(p / "ttt.json") if (p / "ttt.json").is_file() else None
    return Run(p, label or p.name, config, rows, summary, ttt)


def _summary_in_progress(rows: list[dict], config: dict) -> dict:
    """The trainer's summary of a run without summary.json (still running, or killed)."""
    from urlvr.config import TrainConfig
    from urlvr.trainer import summarize_run

    try:
        cfg = TrainConfig.from_dict(config) if config else TrainConfig()
    except UrlvrError:
        cfg = TrainConfig()
    return summarize_run(rows, cfg, "in progress (no summary.json)")


def _labels(paths: Sequence[Path]) -> list[str]:
    """Folder names, with parent folders added until they are unique."""
    for depth in range(1, 6):
        labels = ["/".join(p.resolve().parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i}:{p.name}" for i, p in enumerate(paths)]


# ---------------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------------
def _resolve_key(runs: Sequence[Run], key: str) -> str | None:
    """``val/avg@`` -> the first ``val/avg@K`` any run logged; other keys as they are if logged."""
    for run in runs:
        for row in run.rows:
            for k in row:
                if (k.startswith(key) if key.endswith("@") else k == key) and row[k] is not None:
                    return k
    return None


def plot_panel(panel: Panel, runs: Sequence[Run], path: Path) -> bool:
    """Draw ``panel`` for ``runs`` into ``path`` (PNG); False (nothing written) when no run logged it."""
    keys = [[_resolve_key(runs, s.key) for s in axis] for axis in panel.axes]
    if not any(k for axis in keys for k in axis):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n_ax = len(panel.axes)
    fig, axes = plt.subplots(n_ax, 1, figsize=(7.5, 2.4 + 1.7 * n_ax), sharex=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for a, (ax, series, resolved, ylabel) in enumerate(zip(axes[:, 0], panel.axes, keys, panel.ylabels)):
        for i, run in enumerate(runs):
            color = colors[i % len(colors)]
            for s, key in zip(series, resolved):
                if key is None:
                    continue
                steps, values = run.series(key)
                if not steps:
                    continue
                if s.dense and len(steps) > 3:
                    ax.plot(steps, values, color=color, ls=s.style, lw=0.6, alpha=0.25)
                    ax.plot(steps, smooth(values, smoothing_window(len(steps))), color=color, ls=s.style, lw=1.4)
                else:
                    ax.plot(steps, values, color=color, ls=s.style, lw=1.4, marker="o", ms=3)
            for step in run.collapse_steps():
                ax.axvline(step, color=color, ls=":", lw=1.2)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        if a == 0:
            handles = [Line2D([], [], color=colors[i % len(colors)], lw=1.4, label=run.label)
                       for i, run in enumerate(runs)]
            if len(series) > 1:
                handles += [Line2D([], [], color="black", ls=s.style, lw=1.0,
                                   label=(k or s.key).split("/")[-1]) for s, k in zip(series, resolved)]
            if any(run.collapse_steps() for run in runs):
                handles.append(Line2D([], [], color="black", ls=":", lw=1.2, label="collapse detector fired"))
            ax.legend(handles=handles, fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("training step")
    axes[0, 0].set_title(panel.title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------
def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def _model_name(model: str) -> str:
    return Path(model).name if "/" in str(model) else str(model)


def summary_table(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: validation before / peak / end, oracle and health at the end, collapse step."""
    header = ["run", "reward", "model", "steps", "stop", "val before", "val peak (step)", "val end",
              "label acc. end", "accuracy end", "majority ratio end", "KL end", "collapse fired at"]
    rows = []
    for run in runs:
        s = run.summary
        peak = f"{_fmt(s.get('val_peak'))} ({_fmt(s.get('val_peak_step'))})" if "val_peak" in s else "-"
        rows.append([run.label, _fmt(s.get("reward", run.config.get("reward"))), _model_name(s.get("model", "-")),
                     _fmt(s.get("steps")), _fmt(s.get("stop_reason")), _fmt(s.get("val_before")), peak,
                     _fmt(s.get("val_end")), _fmt(s.get("label_accuracy_end")), _fmt(s.get("accuracy_end")),
                     _fmt(s.get("majority_ratio_end")), _fmt(s.get("kl_initial_end")), _fmt(s.get("collapse_step"))])
    return header, rows


def config_differences(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the config keys whose values differ between runs (out_dir left out)."""
    keys = []
    for run in runs:
        keys += [k for k in run.config if k not in keys and k != "out_dir"]
    header = ["setting", *(run.label for run in runs)]
    rows = []
    for k in keys:
        values = [run.config.get(k, "-") for run in runs]
        if len(runs) == 1 or any(v != values[0] for v in values):
            rows.append([k, *(_fmt(v) if not isinstance(v, str) else v for v in values)])
    return header, rows


def ttt_table(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the before/after evaluations of test-time-training runs."""
    header = ["run", "benchmark", "split", "metric", "base", "after TTT", "diff", "95% CI", "p"]
    rows = []
    for run in runs:
        for c in (run.ttt or {}).get("comparisons", []):
            rows.append([run.label, c["benchmark"], c.get("split", "-"), c["metric"], f"{c['base']:.3f}",
                         f"{c['trained']:.3f}", f"{c['diff']:+.3f}", f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]",
                         f"{c['p_value']:.4f}"])
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cell = lambda x: str(x).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------------------------------------------
# the pages
# ---------------------------------------------------------------------------------------------------
_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}"
        "th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}"
        "figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}img{max-width:100%}"
        "pre{background:#f7f7f7;padding:0.6em;font-size:12px;overflow-x:auto}code{font-size:12px}")


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path, title: str | None = None,
                 embed: bool = False) -> dict[str, Any]:
    """Write ``index.html``, ``report.md`` and ``plots/*.png`` for ``run_dirs`` into ``out_dir``.

    Returns ``{"html", "markdown", "plots", "missing"}``: the page paths, the plot paths written and
    the names of plots no run had metrics for.
    """
    import yaml

    from urlvr.io import write_text

    if not run_dirs:
        raise UrlvrError("give at least one run folder")
    paths = [Path(p) for p in run_dirs]
    runs = [load_run(p, label) for p, label in zip(paths, _labels(paths))]
    out = Path(out_dir)
    plots, missing = [], []
    for panel in PANELS:
        target = out / "plots" / f"{panel.name}.png"
        (plots.append((panel, target)) if plot_panel(panel, runs, target) else missing.append(panel.name))
    title = title or ("urlvr report: " + ", ".join(run.label for run in runs))
    created = time.strftime("%Y-%m-%d %H:%M:%S")
    tables = [("Summary", summary_table(runs)), ("Settings that differ" if len(runs) > 1 else "Settings",
                                                  config_differences(runs))]
    ttt = ttt_table(runs)
    if ttt[1]:
        tables.insert(1, ("Test-time training: evaluation before and after (paired over problems)", ttt))
    note = (f"Plots without data in any run (left out): {', '.join(missing)}." if missing else "")
    collapse = "Dotted vertical lines: steps at which the collapse detector fired (diag/collapse_fired)."

    md = [f"# {title}", "", f"Created {created}. Runs:", ""]
    md += [f"- `{run.label}`: `{run.path}`" for run in runs]
    for name, (header, rows) in tables[:-1]:
        md += ["", f"## {name}", "", markdown_table(header, rows)]
    md += ["", "## Plots", "", collapse + (" " + note if note else ""), ""]
    for panel, target in plots:
        md += [f"### {panel.title}", "", f"![{panel.title}](plots/{target.name})", "", panel.caption, ""]
    name, (header, rows) = tables[-1]
    md += [f"## {name}", "", markdown_table(header, rows), "", "## Full configs", ""]
    for run in runs:
        md += [f"### {run.label}", "", "```yaml", yaml.safe_dump(run.config, sort_keys=False).rstrip(), "```", ""]
    write_text(out / "report.md", "\n".join(md) + "\n")

    e = html.escape
    body = [f"<h1>{e(title)}</h1>", f"<p>Created {e(created)}. Runs:</p><ul>"]
    body += [f"<li><code>{e(run.label)}</code>: <code>{e(str(run.path))}</code></li>" for run in runs]
    body.append("</ul>")
    for name, (header, rows) in tables[:-1]:
        body += [f"<h2>{e(name)}</h2>", html_table(header, rows)]
    body += ["<h2>Plots</h2>", f"<p>{e(collapse)} {e(note)}</p>"]
    for panel, target in plots:
        src = f"plots/{target.name}"
        if embed:
            src = "data:image/png;base64," + base64.b64encode(target.read_bytes()).decode("ascii")
        body.append(f'<figure><img src="{e(src)}" alt="{e(panel.title)}"><figcaption>{e(panel.caption)}'
                    "</figcaption></figure>")
    name, (header, rows) = tables[-1]
    body += [f"<h2>{e(name)}</h2>", html_table(header, rows), "<h2>Full configs</h2>"]
    for run in runs:
        body.append(f"<details><summary>{e(run.label)}</summary><pre>"
                    f"{e(yaml.safe_dump(run.config, sort_keys=False))}</pre></details>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    write_text(out / "index.html", page)
    for path in (out / "index.html", out / "report.md"):
        path.chmod(0o644)  # atomic writes create private files; a report is for sharing
    return {"html": out / "index.html", "markdown": out / "report.md", "plots": [t for _, t in plots],
            "missing": missing}
