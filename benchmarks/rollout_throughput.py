"""Rollout throughput: urlvr's sampler against ``model.generate`` and the bare forward loop, fp32 and bf16.

    python benchmarks/rollout_throughput.py [--quick] [--sizes tiny small smollm2] [--batches 64 256 1024]
        [--precisions fp32 bf16] [--before FILE [--before-stats FILE]] [--lora] [--no-drift]

Models: the testbed sizes (``tiny``, ``small``: random weights, the 100-token char vocabulary, arithmetic
prompts in groups of 8, ``--batches`` rows, ``--max-new-tokens``) and ``smollm2`` (SmolLM2-135M-Instruct,
real weights: ``--real-prompts`` MATH-500 problems through the model's chat template, 8 completions each,
``--real-tokens`` new tokens; arithmetic prompts if the MATH-500 file is missing). Sampling at τ = 1 with
no top-k / top-p. The arms:

- ``urlvr``: :class:`urlvr.rollout.HFSampler` (one seed per group), which also computes every per-token
  statistic (log-prob, entropy, self-certainty, top-2 gap, confidence) of every sampled token;
- ``generate``: ``model.generate(do_sample=True, top_k=0)``, plain: no scores, no statistics;
- ``forward``: the model's forward calls alone, as a decoding loop makes them (the prompts, then one
  token per row and step with the model's default cache, every row to the last step, no sampling);
- ``before``: another version of ``urlvr/rollout.py`` (``--before``), e.g. from git, with the
  ``urlvr/stats.py`` of the same version (``--before-stats``) so that it runs as it did:
  ``git show REV:urlvr/rollout.py > /tmp/rollout_before.py; git show REV:urlvr/stats.py > /tmp/stats_before.py``;
- ``--lora`` (SmolLM2 only): the same model with LoRA adapters (peft, rank 16, all-linear, random
  nonzero B), sampled by urlvr (adapters merged for the rollout), by ``before`` (unmerged) and by
  ``generate`` (peft's model, unmerged); fixed length.

Precisions: ``fp32``, and ``bf16`` = every arm inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the
weights stay float32, as the trainer's ``dtype=bfloat16``).

Two regimes:

- **fixed length**: no sequence can end (a stop id no token has), so every arm produces batch ×
  max_new_tokens tokens: the per-token cost of the same work.
- **stop at EOS**: the model's stop tokens end a sequence (EOS; SmolLM2 also ``<|im_end|>``); throughput
  counts the tokens really generated (up to and including the stop). ``generate`` keeps computing ended
  rows until all have ended; urlvr drops them from the batch.

Every arm of one model and batch, both precisions, runs in one interleaved loop (after a warm-up),
so ratios are paired by round. Target: urlvr ≥ 1.5× generate.

Drift (unless ``--no-drift``): one bf16 rollout per model (stop at EOS) and the fp32 teacher-forced forward
of the same tokens (:func:`urlvr.rollout.completion_logprobs`, no autocast): max and mean absolute
difference of the per-token log-probs and of the sequence log-probs (sums over each completion),
beside the same figures for an fp32 rollout (the floor), against a bf16 teacher-forced forward too
(what a bf16 update would compute) and, with ``--lora``, for LoRA rollouts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
from pathlib import Path

from harness import REPO, add_common_args, bench_model, interleaved, machine, setup, summary

MATH500 = REPO.parent / "shared" / "data" / "math500.jsonl"
NEVER = (-1,)
"""A stop set no token is in: the fixed-length regime."""


def load_rollout(path: str, stats: str | None = None):
    """Another version of ``urlvr/rollout.py``, imported from a file; with ``stats``, the ``urlvr.stats`` it imports."""
    saved = sys.modules.get("urlvr.stats")
    if stats:
        spec = importlib.util.spec_from_file_location("stats_before", stats)
        old = importlib.util.module_from_spec(spec)
        sys.modules["stats_before"] = old
        spec.loader.exec_module(old)
        sys.modules["urlvr.stats"] = old  # the rollout's `from urlvr.stats import ...` binds to it
    try:
        spec = importlib.util.spec_from_file_location("rollout_before", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["rollout_before"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        if saved is not None:
            sys.modules["urlvr.stats"] = saved
    return module


def prompts_for(batch: int, group: int = 8) -> list[str]:
    n = max(1, batch // group)
    return [f"{(7 * i) % 97}+{(13 * i) % 89}\n" for i in range(n) for _ in range(group)][:batch]


def real_prompts(tok, n: int, group: int = 8) -> list[str]:
    """``n`` MATH-500 problems through the model's chat template (as the recipes render them), ``group`` copies each."""
    if not MATH500.is_file():
        return prompts_for(n * group, group)
    from urlvr.prompts import Renderer
    from urlvr.tasks import get_task

    task = get_task("jsonl", path=str(MATH500), grader="math")
    render = Renderer(task.prompt, tok, "auto")
    return [render(e.problem) for e in task.examples("test", n, seed=0) for _ in range(group)]


def with_lora(model):
    """``model`` wrapped with LoRA adapters (rank 16, all-linear), B random so that the update is not zero."""
    import torch
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    return policy.eval()


def autocast(precision: str):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=5)
    ap.add_argument("--sizes", "--size", dest="sizes", nargs="+", default=["tiny", "small"],
                    help="testbed sizes and/or smollm2 (default tiny small)")
    ap.add_argument("--batches", nargs="+", type=int, default=[64, 256, 1024], help="testbed batches")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="testbed response length")
    ap.add_argument("--real-prompts", type=int, default=4, help="smollm2: MATH-500 prompts (x 8 completions)")
    ap.add_argument("--real-tokens", type=int, default=64, help="smollm2: response length")
    ap.add_argument("--real-reps", type=int, default=3, help="smollm2: timed repetitions")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--before", metavar="FILE", help="another rollout.py to compare (an extra arm)")
    ap.add_argument("--before-stats", metavar="FILE", help="the stats.py that --before imports")
    ap.add_argument("--lora", action="store_true", help="smollm2: LoRA arms (urlvr merged, before, generate)")
    ap.add_argument("--no-drift", action="store_true", help="skip the bf16 log-prob drift")
    args = ap.parse_args()
    if args.quick:
        args.batches, args.max_new_tokens, args.reps = [64, 256], 16, 3
        args.real_prompts, args.real_tokens, args.real_reps = 2, 16, 2
    setup(args.threads)

    import torch

    import urlvr.rollout as now
    from urlvr.loading import load_model
    from urlvr.rollout import HFSampler, SamplingSettings

    before = load_rollout(args.before, args.before_stats) if args.before else None
    rows: list[dict] = []
    drift: list[str] = []
    for size in args.sizes:
        real = size == "smollm2"
        path = bench_model(size)
        model, tok = load_model(path, device="cpu", dtype="float32")
        lora = with_lora(load_model(path, device="cpu", dtype="float32")[0]) if real and args.lora else None
        stop = HFSampler(model, tok).stop_ids
        T = args.real_tokens if real else args.max_new_tokens
        reps = args.real_reps if real else args.reps
        for batch in [args.real_prompts * 8] if real else args.batches:
            prompts = real_prompts(tok, batch // 8) if real else prompts_for(batch)
            seeds = [i // 8 for i in range(len(prompts))]
            enc = tok(prompts, return_tensors="pt", padding=True)
            counts: dict[str, list[int]] = {}

            def sampler_arm(key, module, m, regime, precision):
                sampler = module.HFSampler(m, tok, stop_ids=NEVER if regime == "fixed" else stop)

                def make(n):
                    settings = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=n)

                    def run():
                        with autocast(precision):
                            out = sampler.generate(prompts, settings, seed=seeds)
                        counts.setdefault(key, []).append(int(out.mask.sum()))
                    return run
                return make

            def generate_arm(key, m, regime, precision):
                eos = list(stop) if regime == "eos" else -1  # -1: never ends (transformers warns once)

                def make(n):
                    def run():
                        with torch.no_grad(), autocast(precision):
                            out = m.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                             max_new_tokens=n, eos_token_id=eos, pad_token_id=tok.pad_token_id)
                        new = out[:, enc["input_ids"].shape[1]:]  # (B, n)
                        ended = torch.isin(new, torch.tensor(stop if regime == "eos" else NEVER))
                        lengths = torch.where(ended.any(1), ended.int().argmax(1) + 1, new.shape[1])  # (B,)
                        counts.setdefault(key, []).append(int(lengths.sum()))
                    return run
                return make

            def forward_arm(key, precision):
                def make(n):
                    def run():
                        with torch.no_grad(), autocast(precision):
                            att = enc["attention_mask"]
                            pos = (att.cumsum(-1) - 1).clamp(min=0)
                            out = model(**enc, position_ids=pos, use_cache=True, logits_to_keep=1)
                            step = torch.randint(3, len(tok), (len(prompts), 1))
                            for t in range(1, n):
                                att = torch.cat([att, att.new_ones((len(prompts), 1))], dim=1)
                                out = model(input_ids=step, attention_mask=att, position_ids=pos[:, -1:] + t,
                                            past_key_values=out.past_key_values, use_cache=True)
                        counts.setdefault(key, []).append(len(prompts) * n)
                    return run
                return make

            makers = {}
            for precision in args.precisions:
                for regime in ("fixed", "eos"):
                    makers[f"urlvr {regime} {precision}"] = sampler_arm(
                        f"urlvr {regime} {precision}", now, model, regime, precision)
                    makers[f"generate {regime} {precision}"] = generate_arm(
                        f"generate {regime} {precision}", model, regime, precision)
                    if before:
                        makers[f"before {regime} {precision}"] = sampler_arm(
                            f"before {regime} {precision}", before, model, regime, precision)
                makers[f"forward fixed {precision}"] = forward_arm(f"forward fixed {precision}", precision)
                if lora is not None:
                    makers[f"lora-urlvr fixed {precision}"] = sampler_arm(
                        f"lora-urlvr fixed {precision}", now, lora, "fixed", precision)
                    makers[f"lora-generate fixed {precision}"] = generate_arm(
                        f"lora-generate fixed {precision}", lora, "fixed", precision)
                    if before:
                        makers[f"lora-before fixed {precision}"] = sampler_arm(
                            f"lora-before fixed {precision}", before, lora, "fixed", precision)
            if real:  # warm-up: a short rollout of every arm (a full one would cost minutes)
                interleaved({k: make(4) for k, make in makers.items()}, 1, 0)
                times = interleaved({k: make(T) for k, make in makers.items()}, reps, 0)
            else:
                times = interleaved({k: make(T) for k, make in makers.items()}, reps, args.warmup)
            tps = {k: [n / t for n, t in zip(counts[k][-reps:], times[k])] for k in times}
            rows.append({"size": size, "batch": batch, "T": T, "tps": tps})
        if not args.no_drift and "bf16" in args.precisions:
            drift += drift_lines(size, model, tok, lora, stop, real, args)

    print(f"machine: {machine()}")
    print(f"tau 1.0, no top-k/top-p; testbeds {args.max_new_tokens} new tokens, {args.reps} interleaved rounds after "
          f"{args.warmup} warm-up; smollm2 {args.real_tokens} new tokens, {args.real_reps} rounds after a short "
          f"warm-up; tokens/s median [min-max]; ratios are per-round (paired) medians [min-max]")
    for precision in args.precisions:
        for regime, name in (("fixed", "fixed length (every row generates max_new_tokens tokens)"),
                             ("eos", "stop at EOS (tokens really generated)")):
            print(f"\n{precision}, {name}")
            cols = ["urlvr", "generate", "urlvr/generate"]
            cols += ["forward", "forward/generate"] if regime == "fixed" else []
            cols += ["before", "urlvr/before"] if before else []
            print(f"{'model':<8} {'batch':>5} {'T':>4}  " + "  ".join(f"{c:>21}" for c in cols))
            for r in rows:
                tps = r["tps"]
                u, g = tps[f"urlvr {regime} {precision}"], tps[f"generate {regime} {precision}"]
                cells = [tok_s(u), tok_s(g), ratio_cell(u, g)]
                if regime == "fixed":
                    f = tps[f"forward fixed {precision}"]
                    cells += [tok_s(f), ratio_cell(f, g)]
                if before:
                    b = tps[f"before {regime} {precision}"]
                    cells += [tok_s(b), ratio_cell(u, b)]
                print(f"{r['size']:<8} {r['batch']:>5} {r['T']:>4}  " + "  ".join(f"{c:>21}" for c in cells))
    if len(args.precisions) == 2:
        print("\nbf16 autocast / fp32, same arm (tokens/s ratio, paired)")
        arms = ["urlvr fixed", "urlvr eos", "generate fixed", "forward fixed"] + (["before fixed"] if before else [])
        print(f"{'model':<8} {'batch':>5}  " + "  ".join(f"{a:>21}" for a in arms))
        for r in rows:
            tps = r["tps"]
            print(f"{r['size']:<8} {r['batch']:>5}  " + "  ".join(
                f"{ratio_cell(tps[f'{a} bf16'], tps[f'{a} fp32']):>21}" for a in arms))
    lora_rows = [r for r in rows if any(k.startswith("lora-") for k in r["tps"])]
    if lora_rows:
        print("\nLoRA r16 all-linear (fixed length): urlvr merges the adapters for the rollout")
        cols = ["lora urlvr", "lora generate", "urlvr/generate", "lora urlvr/full urlvr"]
        cols += ["lora before", "urlvr/before"] if before else []
        print(f"{'model':<8} {'prec':>5}  " + "  ".join(f"{c:>21}" for c in cols))
        for r in lora_rows:
            tps = r["tps"]
            for precision in args.precisions:
                u, g = tps[f"lora-urlvr fixed {precision}"], tps[f"lora-generate fixed {precision}"]
                cells = [tok_s(u), tok_s(g), ratio_cell(u, g), ratio_cell(u, tps[f"urlvr fixed {precision}"])]
                if before:
                    b = tps[f"lora-before fixed {precision}"]
                    cells += [tok_s(b), ratio_cell(u, b)]
                print(f"{r['size']:<8} {precision:>5}  " + "  ".join(f"{c:>21}" for c in cells))
    for regime, name in (("fixed", "fixed length"), ("eos", "stop at EOS")):
        for precision in args.precisions:
            s = [statistics.median([a / b for a, b in zip(r["tps"][f"urlvr {regime} {precision}"],
                                                          r["tps"][f"generate {regime} {precision}"])]) for r in rows]
            print(f"urlvr/generate, {name}, {precision}: {min(s):.2f}x to {max(s):.2f}x (target >= 1.5x)")
    if drift:
        print("\nlog-prob drift of the rollout against a teacher-forced forward of the same tokens, fp32 (the "
              "reference) or bf16 autocast (a bf16 update's view); abs differences over generated tokens, sequence = "
              "sum over a completion")
        print(f"{'model':<8} {'rollout':<20} {'against':<13} {'tokens':>6}  {'token max':>10} {'token mean':>10}  "
              f"{'seq max':>10} {'seq mean':>10}  {'|seq logp| mean':>15}")
        print("\n".join(drift))
    print(f"\nmachine at the end: {machine()}")


def tok_s(xs: list[float]) -> str:
    return summary(xs, fmt="{:.0f}")


def ratio_cell(a: list[float], b: list[float]) -> str:
    return summary([x / y for x, y in zip(a, b)], fmt="{:.2f}") + "x"


def drift_lines(size, model, tok, lora, stop, real, args) -> list[str]:
    """Per-token and sequence log-prob differences of bf16 (and fp32) rollouts against the fp32 forward."""
    import torch

    from urlvr.rollout import HFSampler, SamplingSettings, completion_logprobs, pack

    prompts = real_prompts(tok, args.real_prompts) if real else prompts_for(64)
    T = args.real_tokens if real else args.max_new_tokens
    settings = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=T)
    seeds = [i // 8 for i in range(len(prompts))]
    arms = [("fp32", model, True), ("bf16 autocast", model, True)]
    if lora is not None:
        arms += [("lora fp32 merged", lora, True), ("lora bf16 merged", lora, True),
                 ("lora bf16 unmerged", lora, False)]
    lines = []
    for name, m, merge in arms:
        sampler = HFSampler(m, tok, stop_ids=stop)
        sampler.MERGE_LORA = merge
        with autocast("bf16" if "bf16" in name else "fp32"):
            batch = sampler.generate(prompts, settings, seed=seeds)
        ids, att, P = pack(batch.prompt_ids, batch.tokens, batch.mask, sampler.pad_id)
        mask = batch.mask
        seq = (batch.logprob * mask).sum(1)
        for ref_name in ("fp32", "bf16") if "bf16" in name else ("fp32",):
            with torch.no_grad(), autocast(ref_name):
                ref, _ = completion_logprobs(m, ids, att, P, batch.tokens, 1.0)  # (B, T), teacher-forced
            tok_diff = (batch.logprob - ref.float()).abs()[mask]
            seq_diff = (seq - (ref.float() * mask).sum(1)).abs()
            lines.append(f"{size:<8} {name:<20} {ref_name + ' forward':<13} {int(mask.sum()):>6}  "
                         f"{tok_diff.max():>10.2e} {tok_diff.mean():>10.2e}  {seq_diff.max():>10.2e} "
                         f"{seq_diff.mean():>10.2e}  {seq.abs().mean():>15.2f}")
    return lines


if __name__ == "__main__":
    main()
