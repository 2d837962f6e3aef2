"""One GRPO step in urlvr against TRL's ``GRPOTrainer`` on the same work, side by side in one process.

    python benchmarks/step_vs_trl.py [--quick] [--size tiny|small|base|smollm2] [--trl best,default]
                                     [--prompts 8] [--group 8] [--max-new-tokens 32] [--profile]

Same model (a random-weight testbed size, or ``smollm2``: SmolLM2-135M-Instruct with its real weights),
loaded by both from one folder; same arithmetic prompts per step as plain text; same group size, maximum
completion length, τ = 1 with no top-k / top-p; no KL term (β = 0, urlvr's ``kl_coef = 0``); one
optimiser step per generation (AdamW, constant learning rate); token-mean loss (TRL ``loss_type="dapo"``);
an equivalent reward (urlvr's ``gold``; for TRL a function doing the same extract-and-check).

TRL runs once per preset of ``harness.TRL_PRESETS``: ``best`` (no gradient checkpointing, float32 like
urlvr) and ``default`` (GRPOConfig's own defaults: gradient checkpointing and bf16 autocast on). Within
each TRL run the arms alternate step by step: a ``TrainerCallback`` times each TRL step (``on_step_begin``
→ ``on_step_end``: generation, reward, advantages, loss, backward, optimiser; TRL's logging afterwards is
not counted) and then runs and times one step of ``urlvr.trainer.Trainer.steps`` (generation with
per-token statistics, reward, advantages, update, label-free and oracle metrics, as a user runs it:
default settings, so the initial model's forward for ``policy/kl_initial`` runs every ``kl_every`` = 5
steps; the mean over steps includes it, the median mostly not). Each arm's generation time is reported
too (urlvr: ``time/generate_s``; TRL: its ``model.generate`` call, timed by a wrapper). Warm-up steps are
not counted. Target: urlvr ≤ 0.5× TRL's time per step at its best settings.

``--profile`` adds, per arm, a cProfile breakdown of the timed steps into generation, the loss forward,
backward, optimiser and the rest (seconds per step), which is what explains the ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from harness import TRL_PRESETS, add_common_args, add_workload_args, bench_model, machine, ratio, setup, summary, \
    trl_trainer, urlvr_trainer

TOP_LEVEL = ("generation", "loss forward (+ reference)", "backward", "optimiser")
"""The phases that do not overlap; "checkpointed forwards" (the recomputation inside backward) and autocast
entries are shown as parts of them."""


def breakdown(prof: cProfile.Profile, steps: int) -> dict[str, float]:
    """Seconds per step in the phases that matter, from a profile of ``steps`` steps."""
    st = pstats.Stats(prof)
    out: dict[str, float] = {}
    for (file, _, name), (_, _, _, cum, _) in st.stats.items():  # type: ignore[attr-defined]
        if name == "generate" and ("generation/utils.py" in file or "rollout.py" in file):
            out["generation"] = max(out.get("generation", 0.0), cum / steps)
        elif name == "backward" and file.endswith("torch/_tensor.py"):
            out["backward"] = out.get("backward", 0.0) + cum / steps
        elif name == "step" and "torch/optim/" in file:
            out["optimiser"] = max(out.get("optimiser", 0.0), cum / steps)
        elif name in ("completion_logprobs",) and "rollout.py" in file:
            out["loss forward (+ reference)"] = out.get("loss forward (+ reference)", 0.0) + cum / steps
        elif name in ("_get_per_token_logps_and_entropies",) and "grpo_trainer.py" in file:
            out["loss forward (+ reference)"] = out.get("loss forward (+ reference)", 0.0) + cum / steps
        elif name == "checkpoint" and file.endswith("torch/utils/checkpoint.py"):
            out["checkpointed forwards"] = out.get("checkpointed forwards", 0.0) + cum / steps
        elif name == "autocast_decorator" or (name == "__enter__" and "autocast_mode" in file):
            out["autocast entries"] = out.get("autocast entries", 0.0) + cum / steps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=6, warmup=2)
    add_workload_args(ap)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--trl", default="best,default", help="TRL presets to run, in order (harness.TRL_PRESETS)")
    ap.add_argument("--profile", action="store_true", help="cProfile breakdown of each arm's timed steps")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.max_new_tokens = 4, 16
    presets = [p.strip() for p in args.trl.split(",") if p.strip()]
    unknown = [p for p in presets if p not in TRL_PRESETS]
    if unknown:
        raise SystemExit(f"unknown TRL preset(s) {unknown}; choose from {', '.join(TRL_PRESETS)}")
    setup(args.threads)

    from transformers import TrainerCallback

    tmp = Path(tempfile.mkdtemp(prefix="urlvr-step-vs-trl-"))
    path = bench_model(args.size, tmp)
    steps = args.warmup + args.reps
    work = dict(prompts=args.prompts, group=args.group, max_new_tokens=args.max_new_tokens, lr=args.lr)
    urlvr = urlvr_trainer(path, tmp / "urlvr", **work).steps()
    print(f"machine: {machine()}")
    for preset in presets:
        u_step, u_gen, t_step, t_gen, t0 = [], [], [], [0.0] * steps, [0.0]
        profs = {"urlvr": cProfile.Profile(), "TRL": cProfile.Profile()} if args.profile else {}

        def urlvr_step() -> None:
            timed = args.profile and len(u_step) >= args.warmup
            if timed:
                profs["urlvr"].enable()
            start = time.perf_counter()
            result = next(urlvr)
            u_step.append(time.perf_counter() - start)
            if timed:
                profs["urlvr"].disable()
            u_gen.append(result.metrics["time/generate_s"])

        class SideBySide(TrainerCallback):
            def on_step_begin(self, *a, **kw):
                if args.profile and len(t_step) >= args.warmup:
                    profs["TRL"].enable()
                t0[0] = time.perf_counter()

            def on_step_end(self, *a, **kw):
                t_step.append(time.perf_counter() - t0[0])
                if args.profile:
                    profs["TRL"].disable()
                urlvr_step()  # then one urlvr step: the arms alternate

        trl = trl_trainer(path, tmp / f"trl-{preset}", steps=steps, callbacks=[SideBySide()], preset=preset, **work)
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
        n_params = sum(p.numel() for p in model.parameters())
        print(f"\nTRL preset {preset!r} {TRL_PRESETS[preset] or '(GRPOConfig defaults)'}: model {args.size} "
              f"({n_params:,} parameters); {args.prompts} prompts x {args.group} completions, max_new_tokens "
              f"{args.max_new_tokens}; {len(u)} steps each after {w} warm-up, alternating; ms median [min-max]")
        print(f"{'':<7} {'step ms':>26} {'mean':>8} {'generation ms':>26}")
        print(f"{'urlvr':<7} {summary(u, 1e3, '{:.0f}'):>26} {statistics.fmean(u) * 1e3:>8.0f} "
              f"{summary(u_gen[w:], 1e3, '{:.0f}'):>26}")
        print(f"{'TRL':<7} {summary(t, 1e3, '{:.0f}'):>26} {statistics.fmean(t) * 1e3:>8.0f} "
              f"{summary(t_gen[w:len(t_step)], 1e3, '{:.0f}'):>26}")
        r, lo, hi = ratio(u, t)
        gen = statistics.median(u_gen[w:]) / statistics.median(t_gen[w:len(t_step)])
        print(f"urlvr / TRL[{preset}] time per step: {r:.2f}x [{lo:.2f}-{hi:.2f}] (paired median; ratio of means "
              f"{statistics.fmean(u) / statistics.fmean(t):.2f}x; target <= 0.5x vs best); generation {gen:.2f}x")
        if args.profile:
            for arm, prof in profs.items():
                parts = breakdown(prof, len(u))
                total = statistics.fmean(u if arm == "urlvr" else t)
                parts["rest"] = total - sum(v for k, v in parts.items() if k in TOP_LEVEL)
                print(f"  profile {arm}: step {total * 1e3:.0f} ms = " + ", ".join(
                    f"{k} {v * 1e3:.0f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])) + " ms")


if __name__ == "__main__":
    main()
