"""Rollout throughput: urlvr's sampler against ``model.generate``, same model, batch and length.

    python benchmarks/rollout_throughput.py [--quick] [--sizes tiny small] [--batches 64 256 1024]

For each testbed model size (random weights, the 100-token char vocabulary) and batch size, the arms
sample up to ``--max-new-tokens`` tokens per sequence at τ = 1 with no top-k / top-p from the same
arithmetic prompts (groups of 8 copies, as in GRPO):

- ``urlvr``: :class:`urlvr.rollout.HFSampler` (one seed per group), which also computes the per-token
  log-prob, entropy, self-certainty and top-2 gap of every sampled token;
- ``generate``: ``model.generate(do_sample=True, top_k=0)``, plain: no scores, no statistics;
- ``forward``: the model's forward calls alone, as a decoding loop makes them (the prompts, then one
  token per row and step with the model's default cache, every row to the last step, no sampling).

Two regimes, all arms interleaved in one loop:

- **fixed length**: no sequence can end (an end-of-sequence id no token has), so every arm produces
  batch × max_new_tokens tokens: the per-token cost of the same work. ``forward / generate`` bounds
  what any sampler calling the model's forward once per token can gain over ``generate`` with its
  own code; urlvr can pass the bound only by skipping model work (one prompt forward per distinct
  prompt).
- **stop at EOS**: the model's own EOS ends a sequence (the random model says it with probability
  about 1/100 per token); throughput counts the tokens really generated (up to and including EOS).
  ``generate`` keeps computing ended rows until all have ended; urlvr drops them from the batch.

Target: urlvr ≥ 1.5× generate. ``--before FILE`` adds an arm with another version of
``urlvr/rollout.py`` (e.g. ``git show d87077f:urlvr/rollout.py > /tmp/rollout_before.py``), for
before/after figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys

from harness import add_common_args, interleaved, machine, setup, summary, testbed_model


class NoEOS:
    """A tokenizer as the sampler sees it, with an end-of-sequence id that no token has."""

    eos_token_id = -1

    def __init__(self, tokenizer):
        self._tok = tokenizer

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *args, **kwargs):
        return self._tok(*args, **kwargs)


def load_rollout(path: str):
    """Another version of ``urlvr/rollout.py``, imported from a file."""
    spec = importlib.util.spec_from_file_location("rollout_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["rollout_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def prompts_for(batch: int, group: int = 8) -> list[str]:
    n = max(1, batch // group)
    return [f"{(7 * i) % 97}+{(13 * i) % 89}\n" for i in range(n) for _ in range(group)][:batch]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=5)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    ap.add_argument("--batches", nargs="+", type=int, default=[64, 256, 1024])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--before", metavar="FILE", help="another rollout.py to compare (an extra arm)")
    args = ap.parse_args()
    if args.quick:
        args.batches, args.max_new_tokens, args.reps = [64, 256], 16, 3
    setup(args.threads)

    import torch

    from urlvr.loading import load_model
    from urlvr.rollout import HFSampler, SamplingSettings

    T = args.max_new_tokens
    settings = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=T)
    table: dict[str, list[str]] = {"fixed": [], "eos": []}
    speedups: dict[str, list[float]] = {"fixed": [], "eos": []}
    before = load_rollout(args.before) if args.before else None
    gains: dict[str, list[str]] = {"fixed": [], "eos": []}
    for size in args.sizes:
        model, tok = load_model(testbed_model(size), device="cpu", dtype="float32")
        samplers = {"eos": HFSampler(model, tok), "fixed": HFSampler(model, NoEOS(tok))}
        if before:
            samplers.update({"before eos": before.HFSampler(model, tok),
                             "before fixed": before.HFSampler(model, NoEOS(tok))})
        for batch in args.batches:
            prompts = prompts_for(batch)
            seeds = [i // 8 for i in range(len(prompts))]
            enc = tok(prompts, return_tensors="pt", padding=True)
            counts: dict[str, list[int]] = {}

            def urlvr(regime, version=""):
                def run():
                    out = samplers[version + regime].generate(prompts, settings, seed=seeds)
                    counts.setdefault(f"{version or 'urlvr '}{regime}", []).append(int(out.mask.sum()))
                return run

            def generate(regime):
                eos = tok.eos_token_id if regime == "eos" else -1  # -1: never ends (transformers warns once)

                def run():
                    with torch.no_grad():
                        out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                             max_new_tokens=T, eos_token_id=eos, pad_token_id=tok.pad_token_id)
                    new = out[:, enc["input_ids"].shape[1]:]  # (B, T)
                    ended = new == eos
                    lengths = torch.where(ended.any(1), ended.int().argmax(1) + 1, new.shape[1])  # (B,)
                    counts.setdefault(f"generate {regime}", []).append(int(lengths.sum()))
                return run

            def forward():
                with torch.no_grad():
                    att = enc["attention_mask"]
                    pos = (att.cumsum(-1) - 1).clamp(min=0)
                    out = model(**enc, position_ids=pos, use_cache=True, logits_to_keep=1)
                    step = torch.randint(3, len(tok), (len(prompts), 1))
                    for t in range(1, T):
                        att = torch.cat([att, att.new_ones((len(prompts), 1))], dim=1)
                        out = model(input_ids=step, attention_mask=att, position_ids=pos[:, -1:] + t,
                                    past_key_values=out.past_key_values, use_cache=True)
                counts.setdefault("forward", []).append(len(prompts) * T)

            arms = {f"{name} {regime}": make(regime) for regime in ("fixed", "eos")
                    for name, make in (("urlvr", urlvr), ("generate", generate))}
            arms["forward"] = forward
            if before:
                arms.update({f"before {regime}": urlvr(regime, "before ") for regime in ("fixed", "eos")})
            times = interleaved(arms, args.reps, args.warmup)
            tps = {k: [n / t for n, t in zip(counts[k][-args.reps:], times[k])] for k in times}
            for regime in ("fixed", "eos"):
                u, g = tps[f"urlvr {regime}"], tps[f"generate {regime}"]
                speed = [a / b for a, b in zip(u, g)]
                speedups[regime].append(statistics.median(speed))
                line = (f"{size:<6} {batch:>5}  {summary(u, fmt='{:.0f}'):>22}  {summary(g, fmt='{:.0f}'):>22}  "
                        f"{summary(speed, fmt='{:.2f}'):>18}x")
                if regime == "fixed":
                    bound = [f / b for f, b in zip(tps["forward"], g)]
                    line += f"  {summary(tps['forward'], fmt='{:.0f}'):>22}  {summary(bound, fmt='{:.2f}'):>18}x"
                table[regime].append(line)
                if before:
                    b = tps[f"before {regime}"]
                    gains[regime].append(f"{size:<6} {batch:>5}  {summary(b, fmt='{:.0f}'):>22}  "
                                         f"{summary(u, fmt='{:.0f}'):>22}  "
                                         f"{summary([x / y for x, y in zip(u, b)], fmt='{:.2f}'):>18}x")

    print(f"machine: {machine()}")
    print(f"max_new_tokens {T}, tau 1.0, {args.reps} interleaved repetitions after {args.warmup} warm-up; "
          f"tokens/s median [min-max]")
    head = f"{'model':<6} {'batch':>5}  {'urlvr tok/s':>22}  {'generate tok/s':>22}  {'urlvr/generate':>19}"
    print("\nfixed length (every row generates max_new_tokens tokens)")
    print(head + f"  {'forward-only tok/s':>22}  {'forward/generate':>19}")
    print("\n".join(table["fixed"]))
    print("\nstop at EOS (tokens really generated)")
    print(head)
    print("\n".join(table["eos"]))
    if before:
        for regime in ("fixed", "eos"):
            print(f"\nbefore ({args.before}) and now, {'fixed length' if regime == 'fixed' else 'stop at EOS'}")
            print(f"{'model':<6} {'batch':>5}  {'before tok/s':>22}  {'now tok/s':>22}  {'now/before':>19}")
            print("\n".join(gains[regime]))
    for regime, name in (("fixed", "fixed length"), ("eos", "stop at EOS")):
        s = speedups[regime]
        print(f"urlvr/generate, {name}: {min(s):.2f}x to {max(s):.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
