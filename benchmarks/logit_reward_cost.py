"""What a logit reward costs: trainer step time with ``self_certainty`` / ``token_entropy`` against ``gold``.

    python benchmarks/logit_reward_cost.py [--quick] [--size tiny] [--prompts 8] [--group 8] [--max-new-tokens 32]

Three :class:`urlvr.trainer.Trainer` instances on the same testbed model (random weights) and the same
settings, differing only in the reward, take steps in turn (``gold``, ``self_certainty``,
``token_entropy``, ``gold``, ...). The certainty rewards read the per-token statistics the sampler
computed while sampling (:mod:`urlvr.rollout`), so they need no extra forward pass; what they add is
reducing those statistics per completion. The learning rate is tiny (1e-7) so the three policies stay
alike and sample the same amount of work.

Two figures per reward: the whole step against the gold step (paired by round; on a shared machine
its spread is about ±15 %, wider than the effect), and the reward scoring itself (the trainer's
``score_groups``, timed by a wrapper), whose difference to gold's is the reward's own extra cost,
measured without the noise of the rest of the step. Target: overhead ≤ 5 % of the gold step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import add_common_args, add_workload_args, bench_model, machine, ratio, setup, summary, urlvr_trainer

REWARDS = ("gold", "self_certainty", "token_entropy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=10, warmup=2)
    add_workload_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.max_new_tokens = 8, 16
    setup(args.threads)

    import urlvr.trainer

    tmp = Path(tempfile.mkdtemp(prefix="urlvr-logit-cost-"))
    path = bench_model(args.size, tmp)
    trainers = {r: urlvr_trainer(path, tmp / r, args.prompts, args.group, args.max_new_tokens, reward=r, lr=1e-7).steps()
                for r in REWARDS}
    times = {r: [] for r in REWARDS}
    tokens = {r: [] for r in REWARDS}
    scoring = {r: [] for r in REWARDS}
    score_groups = urlvr.trainer.score_groups

    def timed_score_groups(*a, **kw):
        t0 = time.perf_counter()
        out = score_groups(*a, **kw)
        scoring[current[0]].append(time.perf_counter() - t0)
        return out

    urlvr.trainer.score_groups = timed_score_groups  # the trainer calls it by this module-level name
    current = [""]

    def step(reward: str) -> None:
        current[0] = reward
        t0 = time.perf_counter()
        result = next(trainers[reward])
        times[reward].append(time.perf_counter() - t0)
        tokens[reward].append(int(result.batch.mask.sum()))

    for i in range(args.warmup + args.reps):
        for reward in REWARDS:
            step(reward)
    w = args.warmup
    print(f"machine: {machine()}")
    print(f"model {args.size}; {args.prompts} prompts x {args.group} completions, "
          f"max_new_tokens {args.max_new_tokens}; {args.reps} steps each after {w} warm-up, interleaved")
    print(f"{'reward':<16} {'step ms':>18} {'tokens/step':>12} {'step vs gold (paired)':>24} {'scoring ms':>20} "
          f"{'extra scoring':>14}")
    gold, gold_step = times["gold"][w:], statistics.median(times["gold"][w:])
    gold_scoring = statistics.median(scoring["gold"][w:])
    extra = {}
    for reward in REWARDS:
        t = times[reward][w:]
        r, lo, hi = ratio(t, gold)
        extra[reward] = (statistics.median(scoring[reward][w:]) - gold_scoring) / gold_step
        print(f"{reward:<16} {summary(t, 1e3, '{:.0f}'):>18} {sum(tokens[reward][w:]) / args.reps:>12.0f} "
              f"{(r - 1) * 100:>+8.1f}% [{(lo - 1) * 100:+.0f}%, {(hi - 1) * 100:+.0f}%] "
              f"{summary(scoring[reward][w:], 1e3, '{:.2f}'):>20} {extra[reward] * 100:>+13.2f}%")
    name = max(REWARDS[1:], key=lambda r: extra[r])
    print(f"logit-reward overhead: {extra[name] * 100:+.2f}% of the gold step from scoring ({name}; whole-step "
          f"medians {(ratio(times[name][w:], gold)[0] - 1) * 100:+.1f}%); target <= 5%")


if __name__ == "__main__":
    main()
