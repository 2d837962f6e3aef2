"""Rollout throughput: urlvr's sampler against ``model.generate``, same model, batch and length.

    python benchmarks/rollout_throughput.py [--quick] [--sizes tiny small] [--batches 64 256 1024]

For each testbed model size (random weights, the 100-token char vocabulary) and batch size, both arms
sample ``--max-new-tokens`` tokens per sequence at τ = 1 with no top-k / top-p, stopping a sequence at
EOS, from the same arithmetic prompts (groups of 8 copies, as in GRPO):

- ``urlvr``: :class:`urlvr.rollout.HFSampler` (one seed per group), which also computes the per-token
  log-prob, entropy, self-certainty and top-2 gap of every sampled token;
- ``generate``: ``model.generate(do_sample=True, top_k=0)``, plain: no scores, no statistics;
- ``forward``: the model's forward calls alone, as a decoding loop makes them (the prompt, then one
  token per row and step with the model's default cache, every row to the last step, no sampling):
  the work both arms share, so ``generate / forward`` bounds what any sampler built on the model's
  forward can gain over ``generate`` by its own code (urlvr can beat it only by skipping work:
  one prefill per distinct prompt, dropping ended rows).

Throughput counts the tokens each arm really generated (up to and including EOS; padding after it is
not counted), divided by the arm's wall time; the forward arm counts batch × steps. Target: urlvr ≥
1.5× generate.
"""

from __future__ import annotations

import argparse
import statistics

from harness import add_common_args, interleaved, machine, setup, summary, testbed_model


def prompts_for(batch: int, group: int = 8) -> list[str]:
    n = max(1, batch // group)
    return [f"{(7 * i) % 97}+{(13 * i) % 89}\n" for i in range(n) for _ in range(group)][:batch]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=5)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    ap.add_argument("--batches", nargs="+", type=int, default=[64, 256, 1024])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args()
    if args.quick:
        args.batches, args.max_new_tokens, args.reps = [64, 256], 16, 3
    setup(args.threads)

    import torch

    from urlvr.loading import load_model
    from urlvr.rollout import HFSampler, SamplingSettings

    print(f"machine: {machine()}")
    print(f"max_new_tokens {args.max_new_tokens}, tau 1.0, {args.reps} interleaved repetitions after {args.warmup} "
          f"warm-up; tokens/s median [min-max]")
    print(f"{'model':<6} {'batch':>5}  {'urlvr tok/s':>22}  {'generate tok/s':>22}  {'forward-only tok/s':>22}  "
          f"{'urlvr/generate':>19}  {'forward/generate':>19}")
    rows = []
    for size in args.sizes:
        model, tok = load_model(testbed_model(size), device="cpu", dtype="float32")
        sampler = HFSampler(model, tok)
        settings = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens)
        for batch in args.batches:
            prompts = prompts_for(batch)
            seeds = [i // 8 for i in range(len(prompts))]
            enc = tok(prompts, return_tensors="pt", padding=True)
            n_tokens = {"urlvr": [], "generate": []}

            def run_urlvr():
                out = sampler.generate(prompts, settings, seed=seeds)
                n_tokens["urlvr"].append(int(out.mask.sum()))

            def run_generate():
                with torch.no_grad():
                    out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                         max_new_tokens=args.max_new_tokens, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id)
                new = out[:, enc["input_ids"].shape[1]:]  # (B, T)
                eos = new == tok.eos_token_id
                # tokens up to and including the first EOS (all T when there is none)
                lengths = torch.where(eos.any(1), eos.int().argmax(1) + 1, new.shape[1])  # (B,)
                n_tokens["generate"].append(int(lengths.sum()))

            def run_forward():
                with torch.no_grad():
                    att = enc["attention_mask"]
                    pos = (att.cumsum(-1) - 1).clamp(min=0)
                    out = model(**enc, position_ids=pos, use_cache=True, logits_to_keep=1)
                    step = torch.randint(3, len(tok), (len(prompts), 1))
                    for t in range(1, args.max_new_tokens):
                        att = torch.cat([att, att.new_ones((len(prompts), 1))], dim=1)
                        out = model(input_ids=step, attention_mask=att, position_ids=pos[:, -1:] + t,
                                    past_key_values=out.past_key_values, use_cache=True)
                n_tokens["forward"].append(len(prompts) * args.max_new_tokens)

            n_tokens["forward"] = []
            times = interleaved({"urlvr": run_urlvr, "generate": run_generate, "forward": run_forward},
                                args.reps, args.warmup)
            tps = {k: [n / t for n, t in zip(n_tokens[k][-args.reps:], times[k])] for k in times}
            speed = [u / g for u, g in zip(tps["urlvr"], tps["generate"])]
            bound = [f / g for f, g in zip(tps["forward"], tps["generate"])]
            rows.append((size, batch, statistics.median(speed)))
            print(f"{size:<6} {batch:>5}  {summary(tps['urlvr'], fmt='{:.0f}'):>22}  "
                  f"{summary(tps['generate'], fmt='{:.0f}'):>22}  {summary(tps['forward'], fmt='{:.0f}'):>22}  "
                  f"{summary(speed, fmt='{:.2f}'):>18}x  {summary(bound, fmt='{:.2f}'):>18}x")
    worst = min(r[2] for r in rows)
    print(f"urlvr/generate throughput: worst {worst:.2f}x, best {max(r[2] for r in rows):.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
