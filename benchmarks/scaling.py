"""How step time grows when the group size, the prompt count or the response length doubles.

    python benchmarks/scaling.py [--quick] [--size tiny]

Two parts, each doubling one setting at a time from a base of 4 prompts x 8 completions x 16 tokens,
and fitting the growth exponent ``k`` of ``time ∝ x^k`` (least squares on log-log; ``k = 1``: linear):

1. **Whole step** (one step of :meth:`urlvr.trainer.Trainer.steps`, testbed model with random weights,
   ``majority_vote`` reward): the time of the sampler (model), of the update (model) and of the rest
   (urlvr's own code: groups, reward, advantages, metrics), from wrappers around the first two.
2. **urlvr's own code alone**, over a wider range: the same loop with a scripted sampler
   that returns completions carrying answers (no model; per group a majority and a minority answer,
   many answers of their own, and answer-less completions) and the update skipped, so the vote, the
   advantages and every metric run on answer clusters whose number grows with the group.

The model's work (its FLOPs) grows linearly with the number of completions and at least linearly with
the length; on a tiny CPU model its *time* grows more slowly (fixed per-call costs). The check: urlvr's
own code grows with ``k <= 1.15`` on every axis, i.e. no faster than the model's work.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from harness import add_common_args, bench_model, machine, setup, urlvr_trainer

BASE = {"prompts": 4, "group": 8, "tokens": 16}
LIMIT = 1.15


def exponent(xs: list[float], ts: list[float]) -> float:
    """Least-squares slope of log t against log x."""
    return statistics.linear_regression([math.log(x) for x in xs], [math.log(t) for t in ts]).slope


class ScriptedSampler:
    """Completions with answers, no model: per group a majority answer (40 %), a minority one (15 %), one
    answer of its own per completion (35 %, so the number of clusters grows with the group) and
    answer-less ones (10 %)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer

    def generate(self, prompts, settings, seed):
        import random

        import torch

        from urlvr.types import RolloutBatch

        T, B = settings.max_new_tokens, len(prompts)
        texts = []
        for i, p in enumerate(prompts):
            u = random.Random(f"{p}/{seed[i] if isinstance(seed, list) else seed}/{i}").random()
            box = "" if u < 0.1 else "\\boxed{%d}" % (7 if u < 0.5 else 8 if u < 0.65 else 100 + i)
            texts.append(("1+1=2 " * T)[: max(0, T - 1 - len(box))] + box)
        ids = self.tok(texts, add_special_tokens=False)["input_ids"]
        tokens = torch.full((B, T), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.bool)
        for i, row in enumerate(ids):
            row = row[: T - 1] + [self.tok.eos_token_id]
            tokens[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        stat = lambda: torch.rand(B, T) * mask  # noqa: E731
        enc = self.tok(prompts, add_special_tokens=True)["input_ids"]
        return RolloutBatch(prompt_ids=enc, tokens=tokens, mask=mask,
                            stats={"logprob": -stat(), "entropy": stat(), "self_certainty": stat(), "top2_gap": stat()},
                            texts=texts, truncated=torch.zeros(B, dtype=torch.bool))


def measure(trainer, steps: int, warmup: int, scripted: bool) -> dict[str, float]:
    """Median seconds per step of: step, generate, update, other (= step - generate - update)."""
    spent = {"generate": 0.0, "update": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            spent[name] += time.perf_counter() - t0
            return out
        return wrapper

    if scripted:
        trainer.sampler = ScriptedSampler(trainer.tok)
        trainer.update = lambda batch, adv, keep, step: {}
    trainer.sampler.generate = timed("generate", trainer.sampler.generate)
    trainer.update = timed("update", trainer.update)
    rows = []
    loop = trainer.steps()
    for s in range(warmup + steps):
        spent.update(generate=0.0, update=0.0)
        t0 = time.perf_counter()
        next(loop)
        total = time.perf_counter() - t0
        if s >= warmup:
            rows.append({"step": total, **spent, "other": total - spent["generate"] - spent["update"]})
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def sweep(path: str, tmp: Path, axis: str, values: list[int], steps: int, warmup: int, scripted: bool):
    out = []
    for v in values:
        kw = dict(BASE, **{axis: v})
        trainer = urlvr_trainer(path, tmp / f"{axis}-{v}-{scripted}", kw["prompts"], kw["group"], kw["tokens"],
                                reward="majority_vote", lr=1e-6)
        out.append((v, measure(trainer, steps, warmup, scripted)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=3, warmup=1)
    ap.add_argument("--size", default="tiny")
    args = ap.parse_args()
    model_axes = {"group": [4, 8, 16, 32, 64], "prompts": [2, 4, 8, 16, 32], "tokens": [8, 16, 32, 64, 128]}
    code_axes = {"group": [4, 16, 64, 256, 1024], "prompts": [2, 8, 32, 128, 512], "tokens": [16, 64, 256, 1024]}
    if args.quick:
        args.reps = 2
        model_axes = {k: v[:4] for k, v in model_axes.items()}
        code_axes = {"group": [4, 16, 64, 256], "prompts": [2, 8, 32, 128], "tokens": [16, 64, 256]}
    setup(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="urlvr-scaling-"))
    path = bench_model(args.size, tmp)
    print(f"machine: {machine()}")
    print(f"base {BASE['prompts']} prompts x {BASE['group']} completions x {BASE['tokens']} tokens; "
          f"model {args.size}; median of {args.reps} steps after {args.warmup} warm-up per point")
    worst = []
    print("\n1. whole step (ms per step; k = growth exponent)")
    for axis, values in model_axes.items():
        res = sweep(path, tmp, axis, values, args.reps, args.warmup, scripted=False)
        print(f"  {axis:<8} " + "  ".join(f"{v:>5}: {r['step'] * 1e3:6.0f}" for v, r in res))
        ks = {k: exponent(values, [r[k] for _, r in res]) for k in ("step", "generate", "update", "other")}
        print(f"  {'':<8} k: step {ks['step']:.2f}, generate {ks['generate']:.2f}, update {ks['update']:.2f}, "
              f"urlvr code {ks['other']:.2f}")
        worst.append((f"whole step, {axis}, urlvr code", ks["other"]))
    print("\n2. urlvr's own code alone (scripted completions with answers, no model; ms per step)")
    for axis, values in code_axes.items():
        res = sweep(path, tmp, axis, values, args.reps, args.warmup, scripted=True)
        print(f"  {axis:<8} " + "  ".join(f"{v:>5}: {r['other'] * 1e3:7.1f}" for v, r in res))
        ts = [r["other"] for _, r in res]
        k = exponent(values, ts)
        print(f"  {'':<8} k = {k:.2f} (between the two largest points: {exponent(values[-2:], ts[-2:]):.2f})")
        worst.append((f"urlvr code alone, {axis}", k))
    name, k = max(worst, key=lambda t: t[1])
    bad = [n for n, k in worst if k > LIMIT]
    print(f"\nlargest exponent of urlvr's own code: {k:.2f} ({name}); "
          + ("none above " if not bad else f"ABOVE {LIMIT} in: {', '.join(bad)}; limit ") + f"{LIMIT}")


if __name__ == "__main__":
    main()
