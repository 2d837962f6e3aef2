"""Answer clusters and majority votes over a group, shared by the ensemble rewards and diagnostics.

Two equivalences: ``canonical`` groups answers whose task key is equal (fast, exact); ``math`` groups
answers that math-verify finds equivalent (``\\frac{1}{2}`` = ``0.5``), canonicalising and hashing
first and calling math-verify only between distinct forms, in worker processes.

>>> cluster_ids(["4", " 4", "5", None], "canonical")
[0, 0, 1, None]
>>> majority([0, 0, 1, None], empty="drop")
(0, 2)
>>> majority([None, None, 1], empty="candidate")
(None, 2)
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

from urlvr.advantages import semantic_entropy as cluster_entropy
from urlvr.errors import UrlvrError

__all__ = ["EQUIVALENCES", "EMPTY_RULES", "cluster_ids", "majority", "cluster_entropy"]

EQUIVALENCES = ("canonical", "math")
EMPTY_RULES = ("candidate", "drop")


def _strip(a: str) -> str:
    return "".join(a.split())


def cluster_ids(answers: Sequence[str | None], equivalence: str = "canonical",
                canonical: Callable[[str], str] = _strip) -> list[int | None]:
    """A cluster id per answer, numbered by first occurrence; None for answer-less completions."""
    if equivalence == "canonical":
        ids: dict[str, int] = {}
        return [None if a is None else ids.setdefault(canonical(a), len(ids)) for a in answers]
    if equivalence == "math":
        from urlvr.grading import default_grader

        return default_grader().cluster(list(answers))
    raise UrlvrError(f"unknown equivalence {equivalence!r}; choose one of: {', '.join(EQUIVALENCES)}")


def majority(ids: Sequence[int | None], empty: str = "drop") -> tuple[int | None, int]:
    """The winning cluster and its size; ties go to the cluster seen first.

    ``empty="drop"`` (SRT, Co-rewarding): answer-less completions do not vote. ``empty="candidate"``
    (TTRL): they vote together as one candidate; if it wins, the winner is None. With no answer at all
    the winner is None.
    """
    if empty not in EMPTY_RULES:
        raise UrlvrError(f"unknown empty-answer rule {empty!r}; choose one of: {', '.join(EMPTY_RULES)}")
    counts = Counter(ids if empty == "candidate" else [i for i in ids if i is not None])
    if not counts:
        return None, 0
    first = {c: ids.index(c) for c in counts}
    winner = max(counts, key=lambda c: (counts[c], -first[c]))
    return winner, counts[winner]
