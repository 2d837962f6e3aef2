"""What a logit reward costs: trainer step time with ``self_certainty`` / ``token_entropy`` against ``gold``.

    python benchmarks/logit_reward_cost.py [--quick] [--size tiny] [--prompts 8] [--group 8] [--max-new-tokens 32]

Three :class:`urlvr.trainer.Trainer` instances on the same testbed model (random weights) and the same
settings, differing only in the reward, take steps in turn (``gold``, ``self_certainty``,
``token_entropy``, ``gold``, ...). The certainty rewards read the per-token statistics the sampler
computed while sampling (:mod:`urlvr.rollout`), so they need no extra forward pass; what they add is
reducing those statistics per completion. The learning rate is tiny (1e-7) so the three policies stay
alike and sample the same amount of work. Target: overhead ≤ 5 % of the gold step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness import add_common_args, machine, ratio, setup, summary, testbed_model

REWARDS = ("gold", "self_certainty", "token_entropy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=10, warmup=2)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.max_new_tokens = 6, 16
    setup(args.threads)

    from urlvr.config import config_from_dict
    from urlvr.trainer import Trainer

    tmp = Path(tempfile.mkdtemp(prefix="urlvr-logit-cost-"))
    path = testbed_model(args.size, tmp)
    trainers = {}
    for reward in REWARDS:
        cfg = config_from_dict(dict(
            model=path, task="arithmetic", train_problems=512, val_problems=0, reward=reward,
            prompts_per_step=args.prompts, n_votes=args.group, n_train=args.group,
            max_new_tokens=args.max_new_tokens, lr=1e-7, steps=10_000, seed=0, device="cpu",
            out_dir=str(tmp / reward)))
        trainers[reward] = Trainer(cfg, tmp / reward)
    step_of = dict.fromkeys(REWARDS, 0)
    times = {r: [] for r in REWARDS}
    tokens = {r: [] for r in REWARDS}

    def step(reward: str) -> None:
        tr, s = trainers[reward], step_of[reward]
        tr.step = s
        t0 = time.perf_counter()
        _, batch, _ = tr.train_step(s)
        times[reward].append(time.perf_counter() - t0)
        tokens[reward].append(int(batch.mask.sum()))
        step_of[reward] += 1

    for i in range(args.warmup + args.reps):
        for reward in REWARDS:
            step(reward)
    w = args.warmup
    print(f"machine: {machine()}")
    print(f"model testbed {args.size} (random weights); {args.prompts} prompts x {args.group} completions, "
          f"max_new_tokens {args.max_new_tokens}; {args.reps} steps each after {w} warm-up, interleaved")
    print(f"{'reward':<16} {'step ms':>22} {'tokens/step':>12} {'vs gold (paired)':>24}")
    gold = times["gold"][w:]
    for reward in REWARDS:
        t = times[reward][w:]
        r, lo, hi = ratio(t, gold)
        print(f"{reward:<16} {summary(t, 1e3, '{:.0f}'):>22} {sum(tokens[reward][w:]) / args.reps:>12.0f} "
              f"{(r - 1) * 100:>+8.1f}% [{(lo - 1) * 100:+.0f}%, {(hi - 1) * 100:+.0f}%]")
    worst = max(ratio(times[r][w:], gold)[0] for r in REWARDS[1:])
    print(f"logit-reward overhead: {(worst - 1) * 100:+.1f}% of the gold step (target <= 5%)")


if __name__ == "__main__":
    main()
