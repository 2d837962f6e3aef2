"""One GRPO step in urlvr against TRL's ``GRPOTrainer`` on the same work, side by side in one process.

    python benchmarks/step_vs_trl.py [--quick] [--size tiny] [--prompts 8] [--group 8] [--max-new-tokens 32]

Same testbed model (random weights, saved once and loaded by both), same arithmetic prompts per step,
group size, maximum completion length, τ = 1 with no top-k / top-p, no KL term (TRL's default β = 0;
urlvr's default ``kl_coef = 0``), one optimiser step per generation (AdamW, constant learning rate),
token-mean loss (TRL ``loss_type="dapo"``), and an equivalent reward: the gold check of the task's
answer (urlvr's registered ``gold``; for TRL a reward function doing the same extract-and-check).

The arms alternate step by step: a ``TrainerCallback`` times each TRL step (``on_step_begin`` →
``on_step_end``: generation, reward, advantages, loss, backward, optimiser; TRL's logging afterwards
is not counted) and then runs and times one ``urlvr.trainer.Trainer.train_step`` (generation with
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

from harness import add_common_args, machine, ratio, setup, summary, testbed_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=6, warmup=2)
    ap.add_argument("--size", default="tiny", help="testbed model size: tiny, small, base")
    ap.add_argument("--prompts", type=int, default=8, help="prompts (groups) per step")
    ap.add_argument("--group", type=int, default=8, help="completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-5)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.max_new_tokens = 4, 16
    setup(args.threads)

    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from urlvr.config import config_from_dict
    from urlvr.loading import load_model
    from urlvr.tasks import get_task
    from urlvr.trainer import Trainer

    tmp = Path(tempfile.mkdtemp(prefix="urlvr-step-vs-trl-"))
    path = testbed_model(args.size, tmp)
    task = get_task("arithmetic")
    n_problems = 512
    steps = args.warmup + args.reps

    # ---- urlvr ----
    cfg = config_from_dict(dict(
        model=path, task="arithmetic", train_problems=n_problems, val_problems=0, reward="gold",
        prompts_per_step=args.prompts, n_votes=args.group, n_train=args.group, max_new_tokens=args.max_new_tokens,
        temperature=1.0, top_p=1.0, lr=args.lr, steps=steps, seed=0, device="cpu", out_dir=str(tmp / "urlvr")))
    urlvr = Trainer(cfg, tmp / "urlvr")
    u_step, u_gen = [], []

    def urlvr_step(step: int) -> None:
        urlvr.step = step
        t0 = time.perf_counter()
        metrics, _, _ = urlvr.train_step(step)
        u_step.append(time.perf_counter() - t0)
        u_gen.append(metrics["time/generate_s"])

    # ---- TRL ----
    def gold(prompts, completions, answer, **kw):
        return [float(task.check(task.extract(c), a)) for c, a in zip(completions, answer)]

    rows = [{"prompt": task.prompt(e.problem), "answer": e.answer} for e in task.examples("train", n_problems, seed=0)]
    model, tok = load_model(path, device="cpu", dtype="float32")
    targs = GRPOConfig(
        output_dir=str(tmp / "trl"), per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group, max_completion_length=args.max_new_tokens, learning_rate=args.lr,
        lr_scheduler_type="constant", max_steps=steps, temperature=1.0, top_p=1.0, top_k=0, beta=0.0,
        loss_type="dapo", gradient_accumulation_steps=1, num_iterations=1, disable_dropout=True,
        logging_steps=steps + 1, disable_tqdm=True, save_strategy="no", report_to="none", use_cpu=True, seed=0,
        dataloader_num_workers=0)
    t_step, t_gen, t0 = [], [0.0] * steps, [0.0]
    generate = model.generate

    def timed_generate(*a, **kw):
        start = time.perf_counter()
        out = generate(*a, **kw)
        t_gen[len(t_step)] += time.perf_counter() - start
        return out

    model.generate = timed_generate

    class SideBySide(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            t0[0] = time.perf_counter()

        def on_step_end(self, *a, **kw):
            t_step.append(time.perf_counter() - t0[0])
            urlvr_step(len(t_step) - 1)  # then one urlvr step: the arms alternate

    trl = GRPOTrainer(model=model, reward_funcs=[gold], args=targs, processing_class=tok,
                      train_dataset=Dataset.from_list(rows), callbacks=[SideBySide()])
    trl.remove_callback(PrinterCallback)  # its end-of-training summary line
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
