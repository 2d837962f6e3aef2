r"""Pathological answers through the grader: seconds per vote group / gold batch, and what raised.

    python benchmarks/pathological_grading.py [--timeout 5] [--workers 2] [--grading PATH]

Each case runs on a fresh :class:`urlvr.grading.Grader` (cold caches, workers started before timing)
and prints its wall time, the verdicts or the exception it raised in this (the parent) process, and
the same call twice more on the warm grader (what the per-form negative cache saves). A *step* case
clusters many vote groups in one :meth:`Grader.cluster_many` call (one group at a time on a grader
without it). ``--grading`` loads
another copy of ``grading.py`` (e.g. the one before issue 17, from ``git show``) to measure it the
same way. Not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

HUGE = "2^{2^{2^{2^{30}}}}"  # sympy would spend minutes evaluating it
DIGITS = "7" * 5000  # over Python's 4,300-digit int-string limit
NORMAL = ["\\frac{1}{2}", "0.5", "3", "\\sqrt{2}", "x+1", "(1,2)", "\\pi", "12"]



def healthy_group(k: int) -> list[str | None]:
    """8 answers of an ordinary vote group: one value in three forms, four other answers, one missing."""
    return [str(k), f"\\frac{{{2 * k}}}{{2}}", f"\\sqrt{{{k * k}}}", f"{k}+x", f"x+{k}", f"({k},{k + 1})",
            f"\\frac{{1}}{{{k}}}", None]


CASES = [  # (name, kind, payload)
    ("8 distinct answers, 1 pathological (target <= 6 s)", "cluster", [HUGE, *NORMAL[1:]]),
    ("a step: that group and 15 ordinary groups of 8, clustered together", "step",
     [[HUGE, *NORMAL[1:]]] + [healthy_group(k) for k in range(2, 17)]),
    ("4 answers, 1 pathological (issue 15: 15 s)", "cluster", ["3", HUGE, "\\frac{1}{2}", "0.5"]),
    ("4 pathological answers in a group of 8", "cluster",
     [HUGE, "10^{10^{10}}", "9^{9^{9}}", "(10^{100})!", *NORMAL[:4]]),
    ("8 pathological answers", "cluster",
     [HUGE, "10^{10^{10}}", "9^{9^{9}}", "(10^{100})!", "2^{2^{2^{2^{30}}}}+1", "\\sin(10^{10^{10}})",
      "(2, 10^{10^{10}})", "{" * 3000 + "1" + "}" * 3000]),
    ("pathological gold vs 8 distinct predictions", "gold", [(HUGE, p) for p in NORMAL]),
    ("5,000-digit gold vs 5,000-digit predictions", "gold",
     [(DIGITS, DIGITS), (DIGITS, DIGITS + ".0"), (DIGITS, "8" + DIGITS[1:]), (DIGITS, "3")]),
    ("5,000-digit answers in a vote group", "cluster", [DIGITS, DIGITS + ".0", "3", "8" * 5000]),
    # light by the heavy check but slow to compare: what the strikes and the group budget bound
    ("3 light-but-slow answers in a group of 8 (group_budget)", "cluster",
     ["(x+y+z)^{100}", "(a+b+c)^{100}", "\\sin(10^{10^{6}})", *NORMAL[:5]]),
    ("light-but-slow gold vs 8 distinct predictions (strikes)", "gold", [("(x+y+z)^{100}", p) for p in NORMAL]),
]


def load(path: str | None):
    if path is None:
        import urlvr.grading as mod

        return mod
    spec = importlib.util.spec_from_file_location("grading_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def run(grader, kind, payload):
    t = time.monotonic()
    try:
        if kind == "step":  # a step's groups: in lockstep rounds where the grader can, else one by one
            many = getattr(grader, "cluster_many", None)
            out = many(payload) if many else [grader.cluster(g) for g in payload]
            out = f"{out[0]} and {len(out) - 1} more groups"
        else:
            out = grader.cluster(payload) if kind == "cluster" else grader.equivalent_many(payload)
    except Exception as e:  # what the old grader did with long integers
        out = f"raised {type(e).__name__}: {str(e)[:70]}"
    return time.monotonic() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--grading", default=None, help="path of another grading.py to measure")
    ap.add_argument("--only", type=int, default=None, help="run only case N (0-based)")
    args = ap.parse_args()
    mod = load(args.grading)
    print(f"grading: {mod.__file__}  timeout={args.timeout:g} s  workers={args.workers}")
    for i, (name, kind, payload) in enumerate(CASES):
        if args.only is not None and i != args.only:
            continue
        with mod.Grader(workers=args.workers, timeout=args.timeout) as g:
            g.equivalent("\\frac{1}{2}", "0.5")  # start the workers outside the timing
            cold, out = run(g, kind, payload)
            warm, _ = run(g, kind, payload)
            third, _ = run(g, kind, payload)
            stats = {k: v for k, v in g.stats.items() if v}
        print(f"{cold:7.2f} s cold {warm:6.2f} s warm {third:6.2f} s third  {name}\n          -> {out}  {stats}",
              flush=True)


if __name__ == "__main__":
    main()
