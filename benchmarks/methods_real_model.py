"""Every 2025–26 method for two GRPO steps on the real SmolLM2-135M-Instruct: does it run, what does it cost?

    python benchmarks/methods_real_model.py [--arms majority_vote,evol_rl,...] [--steps 2] [--out runs/methods_real]

Each arm of :data:`urlvr.experiments.methods.ARMS` is a fresh ``urlvr train`` subprocess (the real CLI)
on the built-in ``model=smollm2`` with its chat template and LoRA (rank 16, all linear layers), on
2-digit addition from the testbed's arithmetic task (answers read from ``\\boxed{}``, else "the answer
is", else the last number, so most groups have answers to vote on), 2 prompts x 4 completions, 48 new
tokens. Baseline: the ``majority_vote`` arm, run side by side in the same invocation. Prints one row per
arm: step time and its ratio to majority vote, generation time, reward mean, answer rate, and the
method's own logged components; writes ``results.json`` in ``--out``. This measures that each method
runs on a real vocabulary (49k tokens), real hidden size (576) and chat template; two steps of a 135M
model show nothing about learning.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = ["model=smollm2", "task=arithmetic", "task_options={digits: 2, ops: '+', fallback: [answer_is, last_number]}",
        "chat=auto", "train_problems=32", "val_problems=0", "prompts_per_step=2", "n_votes=4", "n_train=4",
        "max_new_tokens=48", "lora_rank=16", "lora_alpha=32", "lora_targets=all-linear", "lr=5e-5",
        "micro_batch_size=4", "save_every=0", "sample_every=0"]


def overrides(settings: dict) -> list[str]:
    return [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in settings.items()]


def main() -> int:
    from urlvr.experiments.methods import ARMS
    from urlvr.io import read_jsonl, write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/methods_real")
    args = ap.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if "majority_vote" not in arms:
        arms.insert(0, "majority_vote")
    out = Path(args.out)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    results = {}
    for arm in arms:
        run = out / arm
        if run.exists():
            import shutil

            shutil.rmtree(run)
        cmd = [sys.executable, "-m", "urlvr", "train", *BASE, f"steps={args.steps}", *overrides(ARMS[arm]),
               f"out_dir={run}", "--quiet"]
        t = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        wall = time.time() - t
        if proc.returncode:
            results[arm] = {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "wall_s": wall}
            print(f"{arm:<16} FAILED: {results[arm]['error']}", flush=True)
            continue
        rows = [r for r in read_jsonl(run / "metrics.jsonl") if r["step"] > 0]
        mean = lambda k: sum(r.get(k) or 0.0 for r in rows) / len(rows)  # noqa: E731
        own = sorted({k for r in rows for k in r if k.startswith(("reward/" + ARMS[arm]["reward"] + "/", "adv/"))
                      or k in ("policy/fork_share", "loss/band")})
        results[arm] = {"step_s": mean("time/step_s"), "generate_s": mean("time/generate_s"),
                        "reward_mean": mean("reward/mean"), "answer_rate": 1 - mean("rollout/unparsable_rate"),
                        "components": {k: mean(k) for k in own}, "wall_s": wall}
        print(f"{arm:<16} step {results[arm]['step_s']:6.1f} s  generate {results[arm]['generate_s']:5.1f} s  "
              f"reward {results[arm]['reward_mean']:+.3f}", flush=True)
    base = results.get("majority_vote", {}).get("step_s")
    print(f"\nSmolLM2-135M-Instruct, LoRA r16, 2 prompts x 4 completions, 48 tokens, {args.steps} steps, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.2f}")
    print("| method | s/step | vs majority vote | generate s | reward mean | answer rate | its own metrics |")
    print("|---|---|---|---|---|---|---|")
    for arm, r in results.items():
        if "error" in r:
            print(f"| {arm} | failed | | | | | {r['error']} |")
            continue
        comps = ", ".join(f"{k.split('/', 1)[1]} {v:.3g}" for k, v in r["components"].items()) or "-"
        ratio = f"{r['step_s'] / base:.2f}x" if base else "-"
        print(f"| {arm} | {r['step_s']:.1f} | {ratio} | {r['generate_s']:.1f} | {r['reward_mean']:+.3f} | "
              f"{r['answer_rate']:.2f} | {comps} |")
    write_json(out / "results.json", {"arms": results, "settings": BASE, "steps": args.steps})
    return 0


if __name__ == "__main__":
    sys.exit(main())
