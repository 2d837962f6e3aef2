"""One GRPO step in urlvr against TRL's ``GRPOTrainer`` on the same work, side by side in one process.

    python benchmarks/step_vs_trl.py [--quick] [--size tiny] [--prompts 8] [--group 8] [--max-new-tokens 32]

Same testbed model (random weights, saved once and loaded by both), same arithmetic prompts per step,
group size, maximum completion length, τ = 1 with no top-k / top-p, no KL term (TRL's default β = 0;
urlvr's default ``kl_coef = 0``), one optimiser step per generation (AdamW, constant learning rate),
token-mean loss (TRL ``loss_type="dapo"``), and an equivalent reward: the gold check of the task's
answer (urlvr's registered ``gold``; for TRL a reward function doing the same extract-and-check).

The arms alternate step by step: a ``TrainerCallback`` times each TRL step (``on_step_begin`` →
``on_step_end``: generation, reward, advantages, loss, backward, optimiser; TRL's logging afterwards
is not counted) and then runs and times one step of ``urlvr.trainer.Trainer.steps`` (generation with
per-token statistics, reward, advantages, update, and the label-free and oracle metrics). Each arm's
generation time is reported too (urlvr: ``time/generate_s``; TRL: its ``model.generate`` call, timed
by a wrapper). Warm-up steps are not counted. Target: urlvr ≤ 0.5× TRL's time per step.

urlvr does work TRL does not here: it computes the per-token statistics during sampling and a
forward pass of the initial model for ``policy/kl_initial`` even when ``kl_coef = 0``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import add_common_args, add_workload_args, machine, ratio, setup, summary, testbed_model, trl_trainer, \
    urlvr_trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=6, warmup=2)
    add_workload_args(ap)
    ap.add_argument("--lr", type=float, default=1e-5)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.max_new_tokens = 4, 16
    setup(args.threads)

    from transformers import TrainerCallback

    tmp = Path(tempfile.mkdtemp(prefix="urlvr-step-vs-trl-"))
    path = testbed_model(args.size, tmp)
    steps = args.warmup + args.reps
    work = dict(prompts=args.prompts, group=args.group, max_new_tokens=args.max_new_tokens, lr=args.lr)

    urlvr = urlvr_trainer(path, tmp / "urlvr", **work).steps()
    u_step, u_gen = [], []

    def urlvr_step(step: int) -> None:
        t0 = time.perf_counter()
        result = next(urlvr)
        u_step.append(time.perf_counter() - t0)
        u_gen.append(result.metrics["time/generate_s"])

    t_step, t_gen, t0 = [], [0.0] * steps, [0.0]

    class SideBySide(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            t0[0] = time.perf_counter()

        def on_step_end(self, *a, **kw):
            t_step.append(time.perf_counter() - t0[0])
            urlvr_step(len(t_step) - 1)  # then one urlvr step: the arms alternate

    trl = trl_trainer(path, tmp / "trl", steps=steps, callbacks=[SideBySide()], **work)
    model = trl.model
    generate = model.generate

    def timed_generate(*a, **kw):
        start = time.perf_counter()
        out = generate(*a, **kw)
        t_gen[len(t_step)] += time.perf_counter() - start
        return out

    model.generate = timed_generate  # TRL generates with this very module (one process, no wrapping)
    trl.train()

    w = args.warmup
    u, t = u_step[w:], t_step[w:]
    print(f"machine: {machine()}")
    print(f"model testbed {args.size} ({sum(p.numel() for p in model.parameters()):,} parameters, random weights); "
          f"{args.prompts} prompts x {args.group} completions, max_new_tokens {args.max_new_tokens}; "
          f"{len(u)} steps each after {w} warm-up, alternating; ms median [min-max]")
    print(f"{'':<7} {'step ms':>24} {'generation ms':>24}")
    print(f"{'urlvr':<7} {summary(u, 1e3, '{:.0f}'):>24} {summary(u_gen[w:], 1e3, '{:.0f}'):>24}")
    print(f"{'TRL':<7} {summary(t, 1e3, '{:.0f}'):>24} {summary(t_gen[w:len(t_step)], 1e3, '{:.0f}'):>24}")
    r, lo, hi = ratio(u, t)
    print(f"urlvr / TRL time per step: {r:.2f}x [{lo:.2f}-{hi:.2f}] (target <= 0.5x); "
          f"generation {statistics.median(u_gen[w:]) / statistics.median(t_gen[w:len(t_step)]):.2f}x")


if __name__ == "__main__":
    main()
