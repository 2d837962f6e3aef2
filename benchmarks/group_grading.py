r"""Majority vote over a group of 64 math answers: urlvr's grader against naive pairwise math-verify.

    python benchmarks/group_grading.py [--quick] [--problems 12] [--group 64] [--workers 2]

Each group is 64 completions' answers to one MATH-500 problem (``../shared/data/math500.jsonl``): the
gold answer as written, equivalent rewrites of it (``\dfrac``, spaces, ``\left``/``\right`` dropped,
a decimal for a simple fraction; the forms of ``grading_throughput.py``) and wrong answers (other
problems' golds, the gold plus one), drawn at random in a fixed proportion (about 40 / 30 / 30 %). Both
arms compute the answer clusters and the majority answer of every group:

- ``urlvr``: :meth:`urlvr.grading.Grader.cluster` (what ``equivalence="math"`` voting calls): answers
  hashed by their canonical form first, math-verify only between distinct forms, in ``--workers``
  worker processes (started before timing: a one-off per run), then
  :func:`urlvr.answers.majority`;
- ``naive``: in this process, ``math_verify.parse`` of every completion once (no hashing, no
  deduplication) and ``verify`` both ways on every one of the N(N−1)/2 pairs, a completion joining the
  cluster of the first earlier completion it matches. (Parsing inside every comparison, the literal
  naive form, would cost about N/2 times more parses.)

Every repetition grades fresh problems in both arms (no warm caches). Reported: milliseconds per
completion (group time / N), the speed-up, and whether both arms pick an equivalent majority answer.
Targets: urlvr ≤ 2 ms per completion, ≥ 10× faster than naive.
"""

from __future__ import annotations

import argparse
import random
import time


from harness import add_common_args, cpu_seconds, machine, ratio, setup, summary


def make_group(gold: str, others: list[str], n: int, rng: random.Random) -> list[str]:
    from grading_throughput import variants

    forms = variants(gold, others)
    right = [v for v in forms if v not in others and v != f"{gold}+1"]
    wrong = [v for v in forms if v in others or v == f"{gold}+1"]
    out = []
    for _ in range(n):
        u = rng.random()
        out.append(gold if u < 0.4 or not right else rng.choice(right) if u < 0.7 else rng.choice(wrong))
    return out


def naive_vote(answers: list[str]) -> tuple[list[int], int]:
    """Cluster ids by pairwise math-verify (first earlier match) and the majority cluster."""
    from math_verify import parse, verify

    parsed = [parse(a if "\\boxed" in a else "\\boxed{" + a + "}") for a in answers]
    n = len(answers)
    same = {(i, j) for i in range(n) for j in range(i + 1, n)
            if verify(parsed[i], parsed[j]) or verify(parsed[j], parsed[i])}
    ids: list[int] = []
    for j in range(n):
        ids.append(next((ids[i] for i in range(j) if (i, j) in same), j))
    counts: dict[int, int] = {}
    for c in ids:  # a cluster's id is its first completion's index
        counts[c] = counts.get(c, 0) + 1
    return ids, max(counts, key=lambda c: (counts[c], -c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=3, warmup=0)
    ap.add_argument("--problems", type=int, default=12, help="groups (problems) per repetition")
    ap.add_argument("--group", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.problems, args.reps = 3, 2
    setup(args.threads)
    import logging

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)

    from grading_throughput import gold_answers

    from urlvr.grading import Grader
    from urlvr.answers import majority

    golds = gold_answers()
    rng = random.Random(0)
    order = rng.sample(range(len(golds)), len(golds))
    need = args.problems * (args.reps + 1)
    if need > len(golds):
        raise SystemExit(f"--problems x (--reps + 1) = {need} is more than the {len(golds)} problems")
    groups = [make_group(golds[i], rng.sample(golds, 3), args.group, random.Random(i)) for i in order[:need]]
    times = {"urlvr": [], "naive": []}
    cpu = {"urlvr": [], "naive": []}
    agree, calls = 0, 0
    with Grader(workers=args.workers, timeout=5.0) as grader:
        grader.cluster(["\\frac{1}{3}", "1/3", "x^2"])  # start the workers (not timed)
        naive_vote(["\\frac{1}{3}", "1/3"])  # import and warm math-verify in this process (not timed)
        for rep in range(args.reps):
            batch = groups[(rep + 1) * args.problems:(rep + 2) * args.problems]  # fresh problems each time
            n = len(batch) * args.group
            t0, c0, cpu0 = time.perf_counter(), grader.stats["calls"], cpu_seconds()
            ours = [grader.cluster(g) for g in batch]
            ours = [(ids, majority(ids)[0]) for ids in ours]
            times["urlvr"].append((time.perf_counter() - t0) / n)
            cpu["urlvr"].append((cpu_seconds() - cpu0) / n)
            calls += grader.stats["calls"] - c0
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            theirs = [naive_vote(g) for g in batch]
            times["naive"].append((time.perf_counter() - t0) / n)
            cpu["naive"].append((cpu_seconds() - cpu0) / n)
            for g, (ids, win), (_, nwin) in zip(batch, ours, theirs):
                agree += win is not None and grader.equivalent(g[ids.index(win)], g[nwin])
    n_groups = args.problems * args.reps
    print(f"machine: {machine()}")
    print(f"{n_groups} groups of {args.group} MATH-500 answers ({args.problems} fresh problems per repetition, "
          f"{args.reps} repetitions alternating); grader workers: {args.workers}")
    print("ms per completion, median [min-max]: wall time, and CPU time of all processes (less sensitive to load)")
    print(f"urlvr (canonical hashing + math-verify in workers): wall {summary(times['urlvr'], 1e3, '{:.2f}')}, "
          f"CPU {summary(cpu['urlvr'], 1e3, '{:.2f}')}; {calls / n_groups:.0f} math-verify comparisons per group")
    print(f"naive pairwise math-verify (in process):           wall {summary(times['naive'], 1e3, '{:.2f}')}, "
          f"CPU {summary(cpu['naive'], 1e3, '{:.2f}')}; {args.group * (args.group - 1) // 2} pairs per group")
    r, lo, hi = ratio(times["naive"], times["urlvr"])
    print(f"speed-up: {r:.0f}x [{lo:.0f}-{hi:.0f}] (target >= 10x); urlvr "
          f"{min(times['urlvr']) * 1e3:.2f}-{max(times['urlvr']) * 1e3:.2f} ms per completion (target <= 2 ms); "
          f"same majority answer in {agree}/{n_groups} groups")


if __name__ == "__main__":
    main()
