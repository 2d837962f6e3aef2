r"""Answers: the shared ``\boxed{}`` convention, voting keys, answer clusters and majority votes.

Answer convention, shared by every task: the answer is the content of the **last** ``\boxed{...}``
in the completion (braces may nest). A completion without one has no answer (``None``).

Two equivalences group answers into clusters: ``canonical`` (equal task keys, fast and exact) and
``math`` (math-verify equivalence classes, decided in worker processes by :mod:`urlvr.grading`; the
caller passes the clustering function). Everything here is a pure function of answer strings: no
gold answer is ever an input.

>>> extract_boxed("so \\boxed{12} then \\boxed{4{2}}")
'4{2}'
>>> extract_boxed("no answer") is None
True
>>> cluster_by_key(["4", " 4", "5", None])
[0, 0, 1, None]
>>> majority([0, 0, 1, None], empty="drop")
(0, 2)
>>> majority([None, None, 1], empty="candidate")
(None, 2)

Real models do not always box their answer. A task may name **fallbacks**, tried in order when the
completion has no ``\boxed{}`` (the box always wins; the unparsable rate is reported either way):

>>> extract_with_fallbacks("So the final answer is 42.", extract_boxed, ("answer_is", "last_number"))
'42'
>>> extract_with_fallbacks("3 apples and 4 pears make 7", extract_boxed, ("last_number",))
'7'
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Sequence

from urlvr.errors import UrlvrError

__all__ = ["EQUIVALENCES", "EMPTY_RULES", "FALLBACKS", "boxed", "extract_boxed", "strip_spaces", "cluster_by_key",
           "majority", "visit_majority", "answer_is", "last_number", "first_number", "extract_with_fallbacks"]

EQUIVALENCES = ("canonical", "math")
"""How answers are compared when voting: the task's key, or math-verify classes."""
EMPTY_RULES = ("candidate", "drop")


def boxed(answer: str) -> str:
    r"""The completion text that states ``answer`` in the shared convention: ``\boxed{answer}``."""
    return "\\boxed{" + answer + "}"


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces allowed), stripped; None if absent/unclosed."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i, depth = start + len("\\boxed{"), 1
        j = i
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        if depth == 0:
            return text[i : j - 1].strip()
        start = text.rfind("\\boxed{", 0, start)
    return None


def strip_spaces(answer: str) -> str:
    """The default voting key: the answer without whitespace."""
    return "".join(answer.split())


def cluster_by_key(answers: Sequence[str | None], key: Callable[[str], str] = strip_spaces) -> list[int | None]:
    """A cluster id per answer (equal keys share one), numbered by first occurrence; None stays None."""
    ids: dict[str, int] = {}
    return [None if a is None else ids.setdefault(key(a), len(ids)) for a in answers]


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


def visit_majority(clusters: Sequence[int | None], answers: Sequence[str | None],
                   canonical: Callable[[str], str]) -> tuple[str | None, float, int | None]:
    """One group's majority answer in a form comparable across steps (cluster ids are per group):
    ``(key, MR, cluster)`` with ``key`` the voting key (``canonical``) of the majority cluster's first
    answer, ``MR = count / len(clusters)`` (answer-less completions do not vote but are in the
    denominator; ties to the first cluster seen); ``(None, 0.0, None)`` without any answer.

    >>> visit_majority([0, 1, 1, None], ["4", " 5", "5", None], lambda a: a.strip())
    ('5', 0.5, 1)
    """
    winner, count = majority(clusters, empty="drop")
    if winner is None:
        return None, 0.0, None
    return canonical(answers[list(clusters).index(winner)]), count / max(1, len(clusters)), winner


_ANSWER_IS = re.compile(r"(?i)\banswer\s*(?:is|:)\s*:?\s*\$*\s*([^\n$]*?)\s*\$*\s*(?:\.\s*)?(?:\n|$)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def answer_is(text: str) -> str | None:
    """The text after the last "answer is" / "answer:" on its line (a trailing full stop and ``$`` dropped)."""
    hits = [m[1].strip() for m in _ANSWER_IS.finditer(text) if m[1].strip()]
    return hits[-1] if hits else None


def last_number(text: str) -> str | None:
    """The last number in the text (``1,234`` read as ``1234``; decimals and ``p/q`` kept)."""
    hits = _NUMBER.findall(text)
    return hits[-1].replace(",", "") if hits else None


def first_number(text: str) -> str | None:
    """The first number in the text: the answer of an answer-first format (a few-shot ``2+3=5`` that goes on
    with more examples of its own).

    >>> first_number("12\\n4+4=8"), first_number("no digits")
    ('12', None)
    """
    m = _NUMBER.search(text)
    return m[0].replace(",", "") if m else None


FALLBACKS: dict[str, Callable[[str], str | None]] = {"answer_is": answer_is, "last_number": last_number,
                                                     "first_number": first_number}
"""Answer fallbacks by name, tried in order when the primary extraction finds nothing."""


def extract_with_fallbacks(text: str, primary: Callable[[str], str | None], fallbacks: Sequence[str] = ()) -> str | None:
    """``primary(text)``, else the first fallback that finds an answer, else None."""
    answer = primary(text)
    for name in fallbacks:
        if answer is not None:
            break
        answer = FALLBACKS[name](text)
    return answer
