"""bf16 autocast on the CPU against float32: step time (rollout and update) and the drift of log-probs.

    python benchmarks/bf16.py [--quick] [--size tiny|small|base|smollm2] [--prompts 8] [--group 8] [--max-new-tokens 32]

Two urlvr trainers on the same model and work (``dtype=float32`` and ``dtype=bfloat16``; weights stay
float32, autocast runs the matrix products in bf16; the harness's settings otherwise), their steps
interleaved: per arm the step, generation and update times (ms, median [min-max]) and the paired ratio
bf16 / fp32. Then the drift, on the float32 arm's last rollout (the same tokens for both): the
per-token log-probs of one forward under bf16 autocast against float32 (max and mean |Δ|), the
sequence log-probs (sum over a completion), and the PPO ratio ``exp(lp_bf16 − lp_fp32)`` a bf16
update would see for float32 old log-probs (its share of tokens outside the clip range 1 ± 0.2). The CPU
flags line says whether the CPU has native bf16 (``avx512_bf16`` / ``amx_bf16``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import add_common_args, add_workload_args, bench_model, machine, ratio, setup, summary, urlvr_trainer


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    have = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f" {f}" in flags]
    return ", ".join(have) or "no avx512/amx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=6, warmup=2)
    add_workload_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.max_new_tokens = 4, 16
    setup(args.threads)

    import torch

    from urlvr.rollout import completion_logprobs, pack

    tmp = Path(tempfile.mkdtemp(prefix="urlvr-bf16-"))
    path = bench_model(args.size, tmp)
    work = dict(prompts=args.prompts, group=args.group, max_new_tokens=args.max_new_tokens, lr=1e-7)
    trainers = {d: urlvr_trainer(path, tmp / d, dtype=d, **work) for d in ("float32", "bfloat16")}
    loops = {d: t.steps() for d, t in trainers.items()}
    times = {d: {"step": [], "generate": [], "update": []} for d in trainers}
    last = None
    for _ in range(args.warmup + args.reps):
        for d, loop in loops.items():
            t0 = time.perf_counter()
            result = next(loop)
            step = time.perf_counter() - t0
            times[d]["step"].append(step)
            times[d]["generate"].append(result.metrics["time/generate_s"])
            times[d]["update"].append(result.metrics["time/step_s"] - result.metrics["time/generate_s"])
            if d == "float32":
                last = result.batch
    w = args.warmup
    print(f"machine: {machine()}")
    print(f"CPU flags: {cpu_flags()}")
    model = trainers["float32"].policy
    print(f"model {args.size} ({sum(p.numel() for p in model.parameters()):,} parameters); {args.prompts} prompts x "
          f"{args.group} completions, max_new_tokens {args.max_new_tokens}; {args.reps} steps each after {w} warm-up, "
          "interleaved; ms median [min-max]")
    print(f"{'dtype':<10} {'step':>22} {'generation':>22} {'score + update':>22}")
    for d, t in times.items():
        print(f"{d:<10} {summary(t['step'][w:], 1e3, '{:.0f}'):>22} {summary(t['generate'][w:], 1e3, '{:.0f}'):>22} "
              f"{summary(t['update'][w:], 1e3, '{:.0f}'):>22}")
    for part in ("step", "generate", "update"):
        r, lo, hi = ratio(times["bfloat16"][part][w:], times["float32"][part][w:])
        print(f"bf16 / fp32 {part}: {r:.2f}x [{lo:.2f}-{hi:.2f}]")
    # drift: one forward of the same tokens, fp32 and bf16 autocast
    tok = trainers["float32"].tok
    ids, att, P = pack(last.prompt_ids, last.tokens, last.mask, tok.pad_token_id)
    with torch.no_grad():
        lp32 = completion_logprobs(model, ids, att, P, last.tokens, 1.0)[0].float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lp16 = completion_logprobs(model, ids, att, P, last.tokens, 1.0)[0].float()
    m = last.mask
    d = (lp16 - lp32).abs()[m]
    seq = ((lp16 - lp32) * m).sum(1).abs()
    ratio_t = torch.exp(lp16 - lp32)[m]
    print(f"log-prob drift (bf16 autocast vs fp32, {int(m.sum())} tokens): per token max {d.max():.4f}, mean "
          f"{d.mean():.4f}, median {d.median():.4f}; per sequence |Δ sum| max {seq.max():.4f}, mean {seq.mean():.4f}")
    print(f"PPO ratio exp(lp_bf16 - lp_fp32): min {ratio_t.min():.4f}, max {ratio_t.max():.4f}; tokens outside "
          f"[0.8, 1.2]: {float(((ratio_t < 0.8) | (ratio_t > 1.2)).float().mean()) * 100:.2f} %")
    print(f"rollout vs fp32 forward (same tokens; the sampler's own old log-probs): max "
          f"{(last.logprob - lp32).abs()[m].max():.2e}")


if __name__ == "__main__":
    main()
