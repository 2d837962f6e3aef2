"""How early does the label-free collapse detector fire, relative to the true validation-accuracy peak?

    python benchmarks/collapse_lead.py [--scenario NAME ...] [--seeds 3] [--out-dir runs/collapse_lead]

Trains testbed models (priors pinned to 1500 pretraining steps) with majority vote, one run per seed,
through the real ``urlvr.trainer.train`` (the detector runs online, ``collapse_keep_best`` on, no early
stop) long enough to rise and fall, validating every ``--val-every`` steps, and reports per run:

- the true peak: the validation step with the highest avg@k (oracle; what a label-free method is after);
- the detector's firing step and the lead ``peak − fired`` (negative = it fired after the peak);
- its label-free best step (``checkpoints/best``) and that checkpoint's validation avg@k, against the
  peak's and the end's: how much of the peak a label-free checkpoint choice keeps.

Scenarios (2-digit addition, the demo's settings, 16 prompts x 8 completions per step):

- ``aligned_rise_fall``: aligned prior (p_correct 0.8), lr 2.5e-4: rises, then falls;
- ``aligned_fast_fall``: the same prior, lr 5e-4: falls almost at once;
- ``misaligned``: misaligned prior (wrong_rate 0.75), lr 5e-4: sharpens a wrong majority from step 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from urlvr.cli import quiet_libraries  # noqa: E402

SCENARIOS = {
    "aligned_rise_fall": dict(model="testbed:aligned?p_correct=0.8&steps=1500", lr=2.5e-4, steps=200),
    "aligned_fast_fall": dict(model="testbed:aligned?p_correct=0.8&steps=1500", lr=5e-4, steps=80),
    "misaligned": dict(model="testbed:misaligned?wrong_rate=0.75&steps=1500", lr=5e-4, steps=80),
}


def run(name: str, seed: int, out: Path, val_every: int, val_problems: int, **extra) -> dict:
    """One scenario run; ``extra`` settings override the scenario's (e.g. ``kl_every=1``)."""
    from urlvr.config import config_from_dict
    from urlvr.experiments.demo import DEMO_SETTINGS
    from urlvr.io import read_jsonl
    from urlvr.loading import resolve_model
    from urlvr.trainer import Trainer, train

    sc = SCENARIOS[name]
    run_dir = out / f"{name}_seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    path = resolve_model(sc["model"], DEMO_SETTINGS["task"], DEMO_SETTINGS["task_options"])
    settings = dict(DEMO_SETTINGS, model=path, reward="majority_vote", lr=sc["lr"], steps=sc["steps"],
                    val_every=val_every, val_problems=val_problems, save_every=10**6, sample_every=10**6,
                    collapse_keep_best=True, seed=seed, out_dir=str(run_dir), **extra)
    t0 = time.time()
    train(config_from_dict(settings), progress=False)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    key = f"val/avg@{DEMO_SETTINGS['val_k']}"
    vals = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    peak_step, peak = max(vals, key=lambda t: (t[1], -t[0]))
    fired = next((r["step"] for r in rows if r.get("diag/collapse_fired")), None)
    best_file = run_dir / "checkpoints" / "best"  # absent when the fall was flagged at the very first step
    best_step = best_val = None
    if best_file.is_file():
        best_dir = best_file.parent / best_file.read_text().strip()
        best_step = int(best_dir.name.split("_")[1])
        # the same validation problems, seed and settings as the run's own validation
        best_cfg = config_from_dict(dict(settings, model=str(best_dir), out_dir=str(run_dir / "best_eval")))
        best_val = Trainer(best_cfg, best_dir).validate()[key]
    return {"scenario": name, "seed": seed, **sc, "val_start": vals[0][1], "peak_step": peak_step, "val_peak": peak,
            "fired_step": fired, "lead": None if fired is None else peak_step - fired,
            "val_at_fire": next((v for s, v in vals if fired is not None and s >= fired), None),
            "best_step": best_step, "val_best": best_val, "val_end": vals[-1][1], "seconds": round(time.time() - t0)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    p.add_argument("--seeds", type=int, default=3, help="runs per scenario (seeds 0..N-1)")
    p.add_argument("--val-every", type=int, default=10)
    p.add_argument("--val-problems", type=int, default=100)
    p.add_argument("--out-dir", default="runs/collapse_lead")
    args = p.parse_args()
    quiet_libraries()
    out = Path(args.out_dir)
    results = [run(name, seed, out, args.val_every, args.val_problems)
               for name in args.scenario or SCENARIOS for seed in range(args.seeds)]
    (out / "lead.json").write_text(json.dumps(results, indent=2))
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    print("| scenario | seed | lr | val start | peak (step) | fired | lead | val at fire | best step (val) | val end |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lead = "-" if r["lead"] is None else f"{r['lead']:+d}"
        print(f"| {r['scenario']} | {r['seed']} | {r['lr']:g} | {f(r['val_start'])} | {f(r['val_peak'])} ({r['peak_step']}) | "
              f"{r['fired_step'] or '-'} | {lead} | {f(r['val_at_fire'])} | {r['best_step'] or '-'} ({f(r['val_best'])}) "
              f"| {f(r['val_end'])} |")
    for name in args.scenario or SCENARIOS:
        rs = [r for r in results if r["scenario"] == name]
        leads = [r["lead"] for r in rs if r["lead"] is not None]
        kept = [r["val_best"] - r["val_end"] for r in rs if r["val_best"] is not None]
        print(f"{name}: lead {leads} (mean {sum(leads) / max(1, len(leads)):+.1f}, {len(rs) - len(leads)} never fired); "
              f"best checkpoint over the end: mean {sum(kept) / max(1, len(kept)):+.3f}; "
              f"peak over best: mean {sum(r['val_peak'] - (r['val_best'] or 0) for r in rs) / len(rs):+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
