"""Peak memory and time of one GRPO step on the real SmolLM2-135M-Instruct: full fine-tune vs LoRA.

    python benchmarks/real_model_memory.py [--arms full,lora,lora_gc,full_gc] [--malloc default,fixed]
                                           [--max-new-tokens 128] [--threads 2]

Each arm is a fresh subprocess that runs ``urlvr train recipes/smollm2_math500_majority_vote.yaml
steps=1`` (4 MATH-500 prompts x 4 completions, chat template, micro-batches of 4) with the arm's
overrides and reports its peak resident set size (``ru_maxrss``: model, optimiser, rollout, update and
the grader's parent side) and the step's time split from metrics.jsonl. Baseline: the ``full`` arm
(every weight trains, and a frozen copy of the model is the reference). The built-in model must have
been converted once (any ``model=smollm2`` run does it).

``--malloc``: ``default`` is glibc's dynamic mmap threshold (urlvr's default, the baseline); ``fixed``
sets ``URLVR_MMAP_THRESHOLD=1048576`` (the CLI fixes the threshold at 1 MiB, so freed activation blocks
go back to the system).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "smollm2_math500_majority_vote.yaml"
ARMS = {
    "full": ["lora_rank=0"],
    "lora": [],  # the recipe: rank 16, all linear layers
    "lora_gc": ["gradient_checkpointing=true"],
    "full_gc": ["lora_rank=0", "gradient_checkpointing=true"],
}


def child(arm: str, out: Path, max_new_tokens: int) -> None:
    from urlvr.cli import main

    data = REPO.parent / "shared" / "data" / "math500.jsonl"
    rc = main(["train", str(RECIPE), "steps=1", f"out_dir={out}", f"max_new_tokens={max_new_tokens}",
               f"task_options={{path: {data}, grader: math, fallback: [answer_is]}}", "--quiet", *ARMS[arm]])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    print(json.dumps({"rc": rc, "peak_rss_mb": peak_mb, "step_s": row["time/step_s"],
                      "generate_s": row["time/generate_s"], "tokens": row.get("rollout/length_mean")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", default="full,lora,lora_gc")
    ap.add_argument("--malloc", default="default,fixed")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        return child(args.arm, Path(args.out), args.max_new_tokens)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; torch threads {args.threads}; "
          f"SmolLM2-135M-Instruct, 4 prompts x 4 completions, {args.max_new_tokens} new tokens, micro-batch 4")
    results = {}
    for arm in args.arms.split(","):
        for malloc in args.malloc.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1",
                           URLVR_MMAP_THRESHOLD="0" if malloc == "default" else str(1 << 20))
                done = subprocess.run([sys.executable, __file__, "--arm", arm, "--out", str(Path(tmp) / "run"),
                                       "--max-new-tokens", str(args.max_new_tokens)], env=env, capture_output=True,
                                      text=True)
                if done.returncode != 0:
                    sys.exit(f"arm {arm} failed: {done.stderr.strip().splitlines()[-1:]}")
                results[arm, malloc] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results.get(("full", "default"))
    print(f"{'arm':<9} {'malloc':<8} {'peak RSS MB':>12} {'vs full/default':>16} {'step s':>8} {'generate s':>11} "
          f"{'update+score s':>15}")
    for (arm, malloc), r in results.items():
        ratio = f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x" if base else "-"
        print(f"{arm:<9} {malloc:<8} {r['peak_rss_mb']:>12.0f} {ratio:>16} {r['step_s']:>8.1f} {r['generate_s']:>11.1f} "
              f"{r['step_s'] - r['generate_s']:>15.1f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
