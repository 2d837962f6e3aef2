"""Flips of the majority answer across visits (label-free): how often a prompt's pseudo-label changes.

A *visit* of a problem is a step in which it is in the batch. TTRL-Guard (METHODS-2026.md §3) observes
that the correct answer is often briefly the majority before a wrong one locks in; these diagnostics
show that churn on any run, whatever its reward. :class:`FlipTracker` is fed, each step, the problem
ids, each group's majority-answer key (the task's voting key of the majority answer over all
``n_votes``; None = no answer, a value like any other) and majority ratio, and returns:

| key | quantity |
|---|---|
| ``diag/flip_rate`` | share of this step's *revisited* problems whose majority key differs from their previous visit |
| ``diag/relock_rate`` | share of revisited problems that *re-lock*: a flip whose new key was the majority at some earlier visit (before the previous one) |
| ``diag/flip_majority_ratio`` | mean majority ratio of this step's flipped groups (None without a flip): a flip at high ratio is TTRL-Guard's contradiction signal |
| ``diag/revisited``, ``diag/flips``, ``diag/relocks`` | the counts |

Re-lock, precisely: at visit t, ``â_t ≠ â_{t−1}`` and ``â_t ∈ {â_s : s < t−1}`` — the problem held ``â_t``,
changed away from it, and returns to it. Every re-lock is a flip, so ``relock_rate ≤ flip_rate``.
Rates are None on a step without a revisited problem. A problem id appearing twice in one step counts
as two consecutive visits, in order.

The gold side (whether each visit's majority answer is correct) is kept apart, in
:class:`urlvr.watch.oracle.SolvedTransitions`.

>>> t = FlipTracker()
>>> t.update(["a", "b"], ["4", "7"], [0.5, 1.0])["diag/revisited"]
0
>>> t.update(["a", "b"], ["5", "7"], [0.75, 1.0])["diag/flip_rate"]
0.5
>>> m = t.update(["a"], ["4"], [0.5])
>>> m["diag/flip_rate"], m["diag/relock_rate"], m["diag/flip_majority_ratio"]
(1.0, 1.0, 0.5)
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

__all__ = ["FlipTracker"]


class FlipTracker:
    """Per problem id: the last majority key and every key held before it (state in checkpoints)."""

    def __init__(self) -> None:
        self.problems: dict[str, dict[str, Any]] = {}
        """Problem id -> {"last": key of the last visit, "held": keys of earlier visits, first-seen order}."""

    def update(self, problem_ids: Sequence[str], keys: Sequence[str | None],
               ratios: Sequence[float]) -> dict[str, float | int | None]:
        """Record one step's visits; the step's flip diagnostics. ``keys`` and ``ratios`` are (G,)."""
        if not len(problem_ids) == len(keys) == len(ratios):
            raise ValueError(f"{len(problem_ids)} problem ids, {len(keys)} keys and {len(ratios)} ratios; "
                             "give one of each per group")
        revisited = flips = relocks = 0
        flip_ratios: list[float] = []
        for pid, key, ratio in zip(problem_ids, keys, ratios):
            entry = self.problems.get(pid)
            if entry is None:
                self.problems[pid] = {"last": key, "held": []}
                continue
            revisited += 1
            if key != entry["last"]:
                flips += 1
                flip_ratios.append(float(ratio))
                relocks += key in entry["held"]
                if entry["last"] not in entry["held"]:
                    entry["held"].append(entry["last"])
                entry["last"] = key
        rate = (lambda n: n / revisited if revisited else None)  # noqa: E731
        return {"diag/flip_rate": rate(flips), "diag/relock_rate": rate(relocks),
                "diag/flip_majority_ratio": sum(flip_ratios) / len(flip_ratios) if flip_ratios else None,
                "diag/revisited": revisited, "diag/flips": flips, "diag/relocks": relocks}

    def state_dict(self) -> dict[str, Any]:
        return {"problems": copy.deepcopy(self.problems)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.problems = copy.deepcopy(dict(state.get("problems", {})))
