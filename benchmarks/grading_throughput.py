r"""Completions graded per second by the math-verify worker pool (:class:`urlvr.grading.Grader`).

    python benchmarks/grading_throughput.py [--quick] [--workers 2] [--pairs 2000]

Builds (gold, prediction) pairs from the MATH-500 answers (``../shared/data/math500.jsonl``): the gold
in another written form (``\dfrac``, spaces, ``\left``/``\right`` dropped, a decimal for a simple
fraction) and wrong answers (three other problems' golds, the gold plus one), so that no pair is decided
by the grader's string shortcuts (those that would be are dropped) and each one is a real math-verify
call. It prints three figures:

- cold: distinct pairs, empty cache: the worst case, every completion a parse+verify in a worker;
- warm: the same pairs again (all cache hits);
- eval-like: 8 samples per AIME/AMC problem with integer answers, mostly decided by the shortcuts.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from urlvr.grading import Grader, _shortcut  # noqa: E402  (_shortcut: to keep only real math-verify calls)

DATA = REPO.parent / "shared" / "data"


def variants(gold: str, others: list[str]) -> list[str]:
    """Right answers in other forms, then wrong ones."""
    right = {gold.replace("\\frac", "\\dfrac"), gold.replace(",", ", "), re.sub(r"\\(left|right)", "", gold),
             " " + gold.replace("}{", "} {") + " "}
    m = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", gold)
    if m and int(m[2]) in (2, 4, 5, 8, 10):
        right.add(str(int(m[1]) / int(m[2])))
    right.discard(gold)
    return sorted(right) + others + [f"{gold}+1"]


def gold_answers() -> list[str]:
    path = DATA / "math500.jsonl"
    if not path.is_file():
        raise SystemExit(f"needs {path} (the shared benchmark data)")
    return [json.loads(line)["answer"] for line in path.open() if line.strip()]


def timed(grader: Grader, pairs: list[tuple[str, str]]) -> float:
    t0 = time.perf_counter()
    grader.equivalent_many(pairs)
    return len(pairs) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2, as default_grader)")
    ap.add_argument("--pairs", type=int, default=2000, help="at most this many distinct (gold, prediction) pairs for the cold run")
    ap.add_argument("--quick", action="store_true", help="300 pairs: a few seconds")
    args = ap.parse_args()
    if args.quick:
        args.pairs = min(args.pairs, 300)

    golds = gold_answers()
    rng = random.Random(0)
    pairs = sorted({(g, v) for g in golds for v in variants(g, rng.sample(golds, 3)) if _shortcut(g, v) is None})
    rng.shuffle(pairs)
    pairs = pairs[: args.pairs]
    ints = [str(rng.randrange(1000)) for _ in range(113)]  # AIME/AMC-style integer golds
    eval_like = [(g, rng.choice([g, f"{g}.0", str(int(g) + 1), f"\\frac{{{2 * int(g)}}}{{2}}", f"{g}^\\circ"]))
                 for g in ints for _ in range(8)]

    with Grader(workers=args.workers, timeout=5.0) as grader:
        grader.equivalent_many([("\\frac{1}{3}", "1/3"), ("x^2", "x*x")])  # start the workers
        cold = timed(grader, pairs)
        warm = timed(grader, pairs)
        mixed = timed(grader, eval_like)
        stats = dict(grader.stats)
    print(f"grader: {args.workers} workers; cold pairs: {len(pairs)}; stats {stats}")
    print(f"cold (distinct math-verify calls): {cold:8.0f} completions graded per second")
    print(f"warm (cache hits):                 {warm:8.0f} completions graded per second")
    print(f"eval-like (integer answers, 8 per problem): {mixed:8.0f} completions graded per second")


if __name__ == "__main__":
    main()
