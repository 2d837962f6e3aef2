"""``urlvr demo``: the paper's central finding on the built-in testbed, in a few minutes on a CPU.

Builds (or reuses) an *aligned* and a *misaligned* base model on 2-digit arithmetic, trains each with
``majority_vote`` (label-free, TTRL-style) and with ``gold`` (the supervised control) under identical
settings, and writes a table of validation accuracy before / at its peak / at the end and the label
accuracy of each run to ``runs/demo/summary.md``. Expected: majority vote improves the aligned model
and degrades the misaligned one (it sharpens the prior, right or wrong); gold improves both.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from urlvr.config import PriorConfig, TrainConfig
from urlvr.io import write_json, write_text
from urlvr.testbed.priors import build_prior, format_card
from urlvr.trainer import train

__all__ = ["run_demo", "DEMO_SETTINGS"]

DEMO_SETTINGS = dict(
    task="arithmetic", task_options={"digits": 2, "ops": "+"}, train_problems=512, val_problems=200,
    prompts_per_step=16, n_votes=8, n_train=8, max_new_tokens=12, temperature=1.0, steps=60, lr=2e-4,
    val_every=10, val_k=4, save_every=20, sample_every=10, seed=0,
)
"""Settings shared by all four runs (only the model and the reward differ)."""


def run_demo(out_dir: str = "runs/demo", steps: int | None = None, progress: bool = True,
             say: Callable[[str], None] | None = None) -> str:
    """Build (or reuse) the two base models, train the four runs, write ``summary.md``; returns its text.

    ``say(line)`` receives the progress lines (the command prints them); ``progress`` draws step bars.
    """
    say = say or (lambda line: None)
    out = Path(out_dir)
    t0 = time.time()
    models = {}
    for prior in ("aligned", "misaligned"):
        spec = PriorConfig(prior=prior, task=DEMO_SETTINGS["task"], task_options=DEMO_SETTINGS["task_options"])
        say(f"[demo] base model with the {prior} prior ...")
        path, card, reused = build_prior(spec)
        models[prior] = (str(path), card)
        say(format_card(card, f"{prior} prior ({'cached' if reused else 'built'}): {path}"))
    rows = []
    for prior, (path, card) in models.items():
        for reward in ("majority_vote", "gold"):
            run_dir = out / f"{prior}_{reward}"
            settings = dict(DEMO_SETTINGS, model=path, reward=reward, out_dir=str(run_dir))
            if steps is not None:
                settings["steps"] = steps
            cfg = TrainConfig.from_dict(settings)
            say(f"[demo] {prior} prior + {reward} ...")
            shutil.rmtree(run_dir, ignore_errors=True)  # the demo's own folders: rerunning replaces them
            summary = train(cfg, progress=progress)
            rows.append((prior, reward, summary))
    table = _table(rows, DEMO_SETTINGS["val_k"])
    verdict = _verdict(rows)
    text = (f"# urlvr demo: label-free RL sharpens the prior\n\n{table}\n\n{verdict}\n\n"
            f"Validation: avg@{DEMO_SETTINGS['val_k']} on {DEMO_SETTINGS['val_problems']} held-out problems. "
            f"Label accuracy: share of training prompts whose majority answer is right (last 20% of steps).\n"
            f"Settings: {DEMO_SETTINGS}\nTotal time: {time.time() - t0:.0f} s\n")
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
