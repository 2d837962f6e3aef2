"""``urlvr demo``: the paper's central finding on the built-in testbed, in a few minutes on a CPU.

Builds (or reuses) an *aligned* and a *misaligned* base model on 2-digit arithmetic, trains each with
``majority_vote`` (label-free, TTRL-style) and with ``gold`` (the supervised control) under identical
settings, and writes a table of validation accuracy before / at its peak / at the end and the label
accuracy of each run to ``runs/demo/summary.md``. Expected: majority vote improves the aligned model
and degrades the misaligned one (it sharpens the prior, right or wrong); gold improves both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from urlvr.experiments.runner import Bars, Runner
from urlvr.io import read_json, write_json, write_text
from urlvr.testbed.priors import format_card

__all__ = ["run_demo", "DEMO_SETTINGS", "DEMO_MODELS"]

DEMO_SETTINGS = dict(
    task="arithmetic", task_options={"digits": 2, "ops": "+"}, train_problems=512, val_problems=200,
    prompts_per_step=16, n_votes=8, n_train=8, max_new_tokens=12, temperature=1.0, steps=60, lr=2e-4,
    val_every=10, val_k=4, save_every=20, sample_every=10, seed=0,
)
"""Settings shared by all four runs (only the model and the reward differ)."""

DEMO_MODELS = {"aligned": "testbed:aligned", "misaligned": "testbed:misaligned"}
"""The two base models (testbed names, built for the demo's task and cached)."""

REWARDS = ("majority_vote", "gold")


def run_demo(out_dir: str = "runs/demo", steps: int | None = None, progress: bool = True,
             say: Callable[[str], None] | None = None, jobs: int = 2, models: dict[str, str] | None = None,
             settings: dict | None = None) -> str:
    """Build (or reuse) the two base models, train the four runs, write ``summary.md``; returns its text.

    ``say(line)`` receives the progress lines (the command prints them); ``progress`` draws bars. The
    builds, then the runs, go ``jobs`` at a time in worker processes of one CPU thread each (the testbed's
    models are too small for a second thread to pay). ``models`` (prior -> model name) and ``settings``
    override :data:`DEMO_MODELS` and :data:`DEMO_SETTINGS` (the tests run it on tiny models). The runs
    are retrained every time (their folders replaced); the base models are cached.
    """
    say = say or (lambda line: None)
    out = Path(out_dir)
    models = dict(models or DEMO_MODELS)
    base = {**DEMO_SETTINGS, **(settings or {})}
    if steps is not None:
        base["steps"] = steps
    t0 = time.time()
    bars = Bars(2, progress, label="demo")
    runner = Runner(out, None, bars, fresh=True, jobs=jobs)
    try:
        say(f"[demo] base models with the {' and '.join(models)} priors (built once, then cached) ...")
        bars.experiment("base models", len(models))
        paths = dict(zip(models, runner.models(list(models.values()), base["task"], base["task_options"])))
        bars.experiment_done()
        for prior, name in models.items():
            card = runner.card(name, base["task"], base["task_options"])
            if card is not None:
                say(format_card(card, f"{prior} prior: {paths[prior]}"))
        grid = [(f"{prior}_{reward}", dict(base, model=paths[prior], reward=reward))
                for prior in models for reward in REWARDS]
        say(f"[demo] {len(grid)} runs ({', '.join(n for n, _ in grid)}), {base['steps']} steps each ...")
        bars.experiment("runs", len(grid))
        runner.train_runs(".", grid, keep_checkpoints=True)
        bars.experiment_done()
    finally:
        runner.close()
        bars.close()
    rows = [(prior, reward, read_json(out / f"{prior}_{reward}" / "summary.json"))
            for prior in models for reward in REWARDS]
    table = _table(rows, base["val_k"])
    verdict = _verdict(rows)
    text = (f"# urlvr demo: label-free RL sharpens the prior\n\n{table}\n\n{verdict}\n\n"
            f"Validation: avg@{base['val_k']} on {base['val_problems']} held-out problems. "
            f"Label accuracy: share of training prompts whose majority answer is right (last 20% of steps).\n"
            f"Settings: {base}\nTotal time: {time.time() - t0:.0f} s\n")
    write_text(out / "summary.md", text)
    write_json(out / "summary.json", {"runs": [{"prior": p, "reward": r, **s} for p, r, s in rows]})
    return text


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _table(rows, k) -> str:
    lines = ["| prior | reward | val before | val peak (step) | val end | change | label acc. |",
             "|---|---|---|---|---|---|---|"]
    for prior, reward, s in rows:
        change = s["val_end"] - s["val_before"]
        lines.append(f"| {prior} | {reward} | {_fmt(s['val_before'])} | {_fmt(s['val_peak'])} ({s['val_peak_step']}) "
                     f"| {_fmt(s['val_end'])} | {change:+.3f} | {_fmt(s.get('label_accuracy_end'))} |")
    return "\n".join(lines)


def _verdict(rows) -> str:
    d = {(p, r): s["val_end"] - s["val_before"] for p, r, s in rows}
    checks = [
        ("majority vote improves the aligned model", d[("aligned", "majority_vote")] > 0),
        ("majority vote degrades the misaligned model", d[("misaligned", "majority_vote")] < 0),
        ("gold improves the aligned model", d[("aligned", "gold")] > 0),
        ("gold improves the misaligned model", d[("misaligned", "gold")] > 0),
    ]
    return "\n".join(f"- [{'x' if ok else ' '}] {what}" for what, ok in checks)
