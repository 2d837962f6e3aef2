"""Peak memory of a short training run: urlvr against TRL's ``GRPOTrainer`` on the same work.

    python benchmarks/memory.py [--quick] [--size small] [--steps 6] [--prompts 8] [--group 8]

Each run is a fresh subprocess (``--arm urlvr`` or ``--arm trl``) that loads the same testbed model
(random weights), trains ``--steps`` GRPO steps with the settings of ``step_vs_trl.py`` (gold reward,
one optimiser step per generation, no KL term, no checkpoints, no validation) and reports its peak
resident set size (``ru_maxrss``) and its RSS before the first step (libraries imported, model,
optimiser and trainer built). The parent alternates the arms (``urlvr trl urlvr trl ...``) and prints
medians and spreads. Both processes import torch and transformers; TRL also imports its own stack
(datasets, accelerate's trainer machinery), which shows in the "before training" column.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import add_common_args, add_workload_args, machine, setup, summary, testbed_model, trl_trainer, \
    urlvr_trainer


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_urlvr(args, path: str, out: Path) -> float:
    trainer = urlvr_trainer(path, out, args.prompts, args.group, args.max_new_tokens)
    before = rss_mb()
    for result in trainer.steps():
        if result.step == args.steps:
            break
    return before


def run_trl(args, path: str, out: Path) -> float:
    from transformers import TrainerCallback

    before = [0.0]

    class Before(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            before[0] = rss_mb()

    trl_trainer(path, out, args.prompts, args.group, args.max_new_tokens, args.steps, callbacks=[Before()]).train()
    return before[0]


def child(args) -> None:
    setup(args.threads)
    out = Path(tempfile.mkdtemp(prefix=f"urlvr-memory-{args.arm}-"))
    t0 = time.perf_counter()
    before = (run_urlvr if args.arm == "urlvr" else run_trl)(args, args.model, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"arm": args.arm, "before_mb": before, "peak_mb": peak, "seconds": time.perf_counter() - t0}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=3, warmup=0)
    add_workload_args(ap, size="small")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--arm", choices=["urlvr", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.steps, args.max_new_tokens = 2, 3, 16
    if args.arm:
        return child(args)

    setup(args.threads)
    path = testbed_model(args.size)
    results: dict[str, list[dict]] = {"urlvr": [], "trl": []}
    for _ in range(args.reps):
        for arm in results:
            cmd = [sys.executable, __file__, "--arm", arm, "--model", path, "--threads", str(args.threads),
                   "--steps", str(args.steps), "--prompts", str(args.prompts), "--group", str(args.group),
                   "--max-new-tokens", str(args.max_new_tokens)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if proc.returncode:
                raise SystemExit(f"{arm} run failed:\n{proc.stderr[-3000:]}")
            results[arm].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"machine: {machine()}")
    print(f"testbed {args.size} (random weights); {args.steps} steps of {args.prompts} prompts x {args.group} "
          f"completions, max_new_tokens {args.max_new_tokens}; {args.reps} runs per arm, alternating; "
          f"MiB median [min-max]")
    print(f"{'arm':<6} {'before training':>22} {'peak RSS':>22} {'peak - before':>22} {'run s':>16}")
    for arm, rows in results.items():
        get = lambda k: [r[k] for r in rows]  # noqa: E731
        print(f"{arm:<6} {summary(get('before_mb'), fmt='{:.0f}'):>22} {summary(get('peak_mb'), fmt='{:.0f}'):>22} "
              f"{summary([r['peak_mb'] - r['before_mb'] for r in rows], fmt='{:.0f}'):>22} "
              f"{summary(get('seconds'), fmt='{:.1f}'):>16}")
    u = statistics.median(r["peak_mb"] for r in results["urlvr"])
    t = statistics.median(r["peak_mb"] for r in results["trl"])
    print(f"peak RSS urlvr / TRL: {u / t:.2f}x ({u:.0f} vs {t:.0f} MiB)")


if __name__ == "__main__":
    main()
