r"""A MATH-500 training step's grading (gold checks + answer clusters of every group): before vs after batching.

    python benchmarks/step_grading.py [--quick] [--reps 9] [--prompts 16] [--group 8] [--workers 2]
                                      [--before /tmp/grading_before.py]

A step is ``--prompts`` MATH-500 problems (``../shared/data/math500.jsonl``) × ``--group`` completions,
built with a fixed seed: each answer is the gold as written (30 %), an equivalent rewrite (25 %: the forms
of ``grading_throughput.py``), a wrong answer (30 %: other problems' golds, the gold plus one) or no
answer (15 %). Both arms grade it the way a training step with ``equivalence=math`` does, each on its own
:class:`Grader` (``--workers`` processes, started before timing):

- ``before``: ``grading.py`` before issue 15 (``--before``, default: ``git show abb76e4:urlvr/grading.py``)
  with the call pattern of that trainer: the step's gold checks in one ``equivalent_many``
  (``task.check_many``), then one ``Clusterer`` call per group (the reward's ``cluster_ids``) and one more
  per group (the metrics' ``group_clusters``, all cache hits);
- ``after``: this tree: the same gold checks, then :func:`urlvr.types.cluster_groups` over the step's
  groups (what ``build_groups`` does: :meth:`Clusterer.cluster_many`, every group's class heads in
  lockstep rounds), after which the reward and the metrics read the remembered clusters.

Every repetition grades a fresh step (new problems, cold caches) in both arms, the arms' order swapped
each time (``A B, B A, ...``), after ``--warmup`` untimed steps. Reported per step: wall and CPU time (this
process and the workers) as median [min–max], and per phase the worker round-trips (one ``_Pool.run``:
a batch spread over the workers and waited for), batch messages sent, verdict messages received,
``wait`` calls, math-verify comparisons, answer parses in the workers (answers a worker had not been
sent before; ``answers``: those no worker had been sent, so ``parses / answers`` is how often an answer
is parsed), counted the same way in every arm (a counting ``Connection`` and ``wait`` installed in each
module). Both arms must give the same gold verdicts and clusters.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path


from harness import REPO, add_common_args, cpu_seconds, machine, ratio, summary

PHASES = ("gold", "clusters")
COUNTS = ("rounds", "sent", "received", "waits", "comparisons", "parses", "answers")


def load(path: str, name: str):
    """A copy of ``grading.py`` as its own module, instrumented: counts in ``mod.COUNTS`` (a Counter)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    counts: collections.Counter = collections.Counter()
    sent_before: set = set()  # every answer sent to a worker of this module so far

    class Counting(Connection):  # the parent's ends of the worker pipes (start-up "ready" included: 0 in a step)
        def send(self, obj):
            counts["sent"] += 1
            if isinstance(obj, list):  # a batch: the worker parses each answer it has not seen (one cache per worker)
                seen = self.__dict__.setdefault("forms", set())
                forms = {f for item in obj for f in item[1:]}
                counts["parses"] += len(forms - seen)
                seen |= forms
                counts["answers"] += len(forms - sent_before)  # answers no worker had been sent
                sent_before.update(forms)
            super().send(obj)

        def recv(self):
            counts["received"] += 1
            return super().recv()

    real_wait, real_run = mod.wait, mod._Pool.run

    def counting_wait(*a, **kw):
        counts["waits"] += 1
        return real_wait(*a, **kw)

    def counting_run(self, items, *a, **kw):  # one round
        counts["rounds"] += 1
        counts["comparisons"] += len(items)
        return real_run(self, items, *a, **kw)

    mod.Connection, mod.wait, mod._Pool.run, mod.COUNTS = Counting, counting_wait, counting_run, counts
    return mod


def before_file() -> str:
    fd, name = tempfile.mkstemp(prefix="grading_before_", suffix=".py")  # two runs at once: two files
    os.close(fd)
    path = Path(name)
    try:
        text = subprocess.run(["git", "show", "abb76e4:urlvr/grading.py"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"could not read grading.py at abb76e4 from git ({e}); pass --before PATH") from None
    path.write_text(text, encoding="utf-8")
    return str(path)


def make_steps(n_steps: int, prompts: int, group: int) -> list[list[tuple[str, list[str | None]]]]:
    """``n_steps`` steps of ``prompts`` distinct problems each (no problem in two steps): (gold, answers)."""
    from grading_throughput import gold_answers, variants

    golds = gold_answers()
    order = random.Random(0).sample(range(len(golds)), len(golds))
    if n_steps * prompts > len(golds):
        raise SystemExit(f"{n_steps} steps x {prompts} prompts is more than the {len(golds)} problems; "
                         "fewer --reps or --prompts")
    steps = []
    for s in range(n_steps):
        step = []
        for i in order[s * prompts:(s + 1) * prompts]:
            rng, gold = random.Random(i), golds[i]
            forms = variants(gold, rng.sample(golds, 3))
            wrong = forms[-4:]  # three other golds and gold+1
            right = [f for f in forms[:-4] if f not in wrong]
            answers: list[str | None] = []
            for _ in range(group):
                u = rng.random()
                answers.append(gold if u < 0.3 or (u < 0.55 and not right) else rng.choice(right) if u < 0.55
                               else rng.choice(wrong) if u < 0.85 else None)
            step.append((gold, answers))
        steps.append(step)
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, reps=9, warmup=1)
    ap.add_argument("--prompts", type=int, default=16, help="groups per step (default 16)")
    ap.add_argument("--group", type=int, default=8, help="completions per group (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="grader worker processes per arm (default 2)")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--before", default=None, help="grading.py before (default: git show abb76e4:urlvr/grading.py)")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.warmup = 3, 1
    import torch

    from urlvr.answers import majority
    from urlvr.tasks import get_task
    from urlvr.types import Completion, Group, Problem, cluster_groups

    old = load(args.before or before_file(), "grading_before")
    new = load(str(REPO / "urlvr" / "grading.py"), "grading_after")
    task = get_task("jsonl", path=str(REPO.parent / "shared" / "data" / "math500.jsonl"), grader="math")
    steps = make_steps(args.warmup + args.reps, args.prompts, args.group)
    one = torch.tensor([1])

    def grade_before(grader, step):
        answers = [a for _, group in step for a in group]
        correct = task.check_many(answers, [g for g, group in step for _ in group], grader)
        yield "gold", correct
        clusterer = grader.clusterer()
        ids = [clusterer(group) for _, group in step]  # the reward: cluster_ids per group
        [majority(x) for x in ids]
        ids = [clusterer(group) for _, group in step]  # the metrics: group_clusters (cache hits)
        yield "clusters", ids

    def grade_after(grader, step):
        answers = [a for _, group in step for a in group]
        correct = task.check_many(answers, [g for g, group in step for _ in group], grader)
        yield "gold", correct
        rules = task.rules("math", grader.clusterer())
        groups = [Group(Problem(str(k), ""), "", tuple(Completion("", a, one) for a in group), rules)
                  for k, (_, group) in enumerate(step)]
        cluster_groups(groups)  # build_groups: the step's clusters, decided once
        [majority(g.cluster_ids()) for g in groups]  # the reward
        ids = [g.cluster_ids() for g in groups]  # the metrics
        yield "clusters", ids

    arms = {"before": (old, grade_before), "after": (new, grade_after)}
    times = {a: {"wall": [], "cpu": [], **{p: [] for p in PHASES}} for a in arms}
    counts = {a: {p: collections.Counter() for p in PHASES} for a in arms}
    results: dict[str, list] = {a: [] for a in arms}
    graders = {a: mod.Grader(workers=args.workers, timeout=args.timeout) for a, (mod, _) in arms.items()}
    try:
        for g in graders.values():
            g.cluster(["\\frac{1}{3}", "1/3", "x^2"])  # start the workers (not timed)
        for k, step in enumerate(steps):
            order = list(arms) if k % 2 == 0 else list(arms)[::-1]  # A B, B A, ...
            for name in order:
                mod, fn = arms[name]
                timed = k >= args.warmup
                mod.COUNTS.clear()
                t0, c0 = time.perf_counter(), cpu_seconds()
                out, t_phase = {}, t0
                for phase, value in fn(graders[name], step):
                    now = time.perf_counter()
                    out[phase] = value
                    if timed:
                        times[name][phase].append(now - t_phase)
                        counts[name][phase].update(mod.COUNTS)
                    mod.COUNTS.clear()
                    t_phase = now
                if timed:
                    times[name]["wall"].append(time.perf_counter() - t0)
                    times[name]["cpu"].append(cpu_seconds() - c0)
                    results[name].append(out)
    finally:
        for g in graders.values():
            g.close()

    n = args.reps
    same = sum(a == b for a, b in zip(results["before"], results["after"]))
    forms = statistics.mean(len({new.canonical_answer(a) for a in group if a is not None})
                            for step in steps[args.warmup:] for _, group in step)
    print(f"machine: {machine()}")
    print(f"step: {args.prompts} MATH-500 prompts x {args.group} completions ({forms:.1f} distinct answer forms per "
          f"group), {n} fresh steps per arm, arms alternating (A B, B A, ...) after {args.warmup} untimed; "
          f"{args.workers} grader workers per arm, timeout {args.timeout:g} s")
    print("ms per step, median [min-max]; counts per step, mean over the steps (gold checks / clusters)")
    print(f"{'arm':10} {'wall':>22} {'CPU':>22} {'gold':>20} {'clusters':>20}   "
          + "  ".join(f"{c:>11}" for c in COUNTS))
    for name in arms:
        t = times[name]
        cells = "  ".join(f"{counts[name]['gold'][c] / n:>4.0f} / {counts[name]['clusters'][c] / n:<4.0f}"
                          for c in COUNTS)
        print(f"{name:10} {summary(t['wall'], 1e3):>22} {summary(t['cpu'], 1e3):>22} {summary(t['gold'], 1e3):>20} "
              f"{summary(t['clusters'], 1e3):>20}   {cells}")
    r, lo, hi = ratio(times["before"]["wall"], times["after"]["wall"])
    rc, lc, hc = ratio(times["before"]["clusters"], times["after"]["clusters"])
    rg, lg, hg = ratio(times["before"]["gold"], times["after"]["gold"])
    print(f"before/after, paired per step: whole step {r:.2f}x [{lo:.2f}-{hi:.2f}], gold {rg:.2f}x "
          f"[{lg:.2f}-{hg:.2f}], clusters {rc:.2f}x [{lc:.2f}-{hc:.2f}]; same gold verdicts and clusters in "
          f"{same}/{n} steps")


if __name__ == "__main__":
    main()
