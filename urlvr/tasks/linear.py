r"""``linear``: solve ``a x + b = c`` for an integer ``x``, e.g. ``3x+5=20`` -> ``5``.

``a`` in ``2..max_a``, ``b`` a non-zero integer in ``[-max_b, max_b]``, root ``x`` in
``[-max_x, max_x]``, ``c = a x + b``. ``Problem.data = {"a", "b", "c"}`` is public: the verifier
substitutes the proposed root, ``a x + b == c`` in exact rational arithmetic, so it needs no stored
answer (generation-verification asymmetry, METHODS §4). Answers may be written ``5``, ``x=5``,
``-3/2``, ``1.5`` or ``\frac{3}{2}``; anything else is unparsable (never evaluated as code).

Kinds: ``b_pos`` / ``b_neg`` (sign of ``b``).

Systematic error, *sign error when moving b*: ``x' = (c + b) / a`` instead of ``(c - b) / a``. It
applies exactly when ``a`` divides ``2b`` (then ``x'`` is an integer, and ``x' != x`` since
``b != 0``), so the affected subset is known from ``data`` alone; elsewhere None.

>>> task = LinearTask()
>>> p = Problem("3x+5=20", "3x+5=20", "b_pos", {"a": 3, "b": 5, "c": 20})
>>> task.verify(p, "5"), task.verify(p, "x = 5"), task.verify(p, "15/3"), task.verify(p, "6")
(True, True, True, False)
>>> task.systematic_error(Example(Problem("2x+4=10", "2x+4=10", "b_pos", {"a": 2, "b": 4, "c": 10}), "3"))
'7'
"""

from __future__ import annotations

import random
import re
from fractions import Fraction

from urlvr.errors import UrlvrError
from urlvr.answers import extract_boxed
from urlvr.tasks.arithmetic import split_of
from urlvr.tasks.base import Example, Problem, Task, register_task

__all__ = ["LinearTask", "parse_number", "number_key", "substitute_root"]

_FRAC = re.compile(r"([+-]?)\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:/[0-9]+)?")


def parse_number(answer: str | None) -> Fraction | None:
    r"""An integer, decimal, ``p/q`` or ``\frac{p}{q}`` (optionally after ``x=``) as a Fraction, else None.

    >>> parse_number("x=-3/2"), parse_number("\\frac{6}{4}"), parse_number("0.50"), parse_number("2+2")
    (Fraction(-3, 2), Fraction(3, 2), Fraction(1, 2), None)
    """
    if answer is None:
        return None
    s = "".join(answer.split()).strip("$")
    if s.startswith("x="):
        s = s[2:]
    s = _FRAC.sub(lambda m: f"{m[1]}{m[2]}/{m[3]}", s)
    if len(s) > 40 or not _NUMBER.fullmatch(s):
        return None
    num, _, den = s.partition("/")
    if den and int(den) == 0:
        return None
    return Fraction(num) / (Fraction(den) if den else 1)


def number_key(answer: str) -> str:
    """Voting key: a parsable number's reduced form (``6/4`` -> ``3/2``, ``x=5`` -> ``5``); else the text."""
    value = parse_number(answer)
    return str(value) if value is not None else "".join(answer.split())


def substitute_root(problem: Problem, answer: str | None) -> bool:
    """The verifier: substitute the proposed root, ``a x + b == c`` exactly; unparsable -> False."""
    x = parse_number(answer)
    d = problem.data
    return x is not None and d["a"] * x + d["b"] == d["c"]


@register_task("linear")
class LinearTask(Task):
    """Solve ``3x+5=20`` -> ``5``, checked by substituting the root; see the module docstring."""

    def __init__(self, max_a: int = 9, max_b: int = 20, max_x: int = 9):
        for name, value, low in (("max_a", max_a, 2), ("max_b", max_b, 1), ("max_x", max_x, 1)):
            if not isinstance(value, int) or not low <= value <= 10_000:
                raise UrlvrError(f"linear: {name} must be an integer in {low}..10000, got {value!r}")
        self.max_a, self.max_b, self.max_x = max_a, max_b, max_x
        self._pools: dict[str, int] = {}

    # ---- problems -----------------------------------------------------------------------------
    def generate(self, split: str, n: int, rng: random.Random) -> list[Example]:
        """Draw ``(a, b, x)`` uniformly, keep those hashed into ``split``, no repeats."""
        available = self._pool_size(split)
        if n > available:
            raise UrlvrError(
                f"linear: only {available} {split} problems exist with max_a={self.max_a}, max_b={self.max_b}, "
                f"max_x={self.max_x}; ask for fewer or raise max_b / max_x"
            )
        seen: set[str] = set()
        out = []
        while len(out) < n:
            a = rng.randint(2, self.max_a)
            b = rng.choice([-1, 1]) * rng.randint(1, self.max_b)
            x = rng.randint(-self.max_x, self.max_x)
            question = _equation(a, b, a * x + b)
            if question in seen or split_of(question) != split:
                continue
            seen.add(question)
            problem = Problem(id=question, question=question, kind="b_pos" if b > 0 else "b_neg",
                              data={"a": a, "b": b, "c": a * x + b})
            out.append(Example(problem, str(x)))
        return out

    def _pool_size(self, split: str) -> int:
        """Distinct problems in ``split`` (exact count when the space is small, else its hashed share)."""
        if split not in self._pools:
            total = (self.max_a - 1) * 2 * self.max_b * (2 * self.max_x + 1)
            if total > 200_000:
                self._pools[split] = int(total * (0.8 if split == "train" else 0.1) * 0.9)
            else:
                self._pools[split] = sum(
                    split_of(_equation(a, s * b, a * x + s * b)) == split
                    for a in range(2, self.max_a + 1) for b in range(1, self.max_b + 1) for s in (-1, 1)
                    for x in range(-self.max_x, self.max_x + 1)
                )
        return self._pools[split]

    # ---- answers ------------------------------------------------------------------------------
    def answer_functions(self) -> dict:
        return {"extract": extract_boxed, "canonical": number_key, "verify": substitute_root}

    def check(self, answer: str | None, gold: str) -> bool:
        """Numeric equality with the gold root."""
        value = parse_number(answer)
        return value is not None and value == parse_number(gold)

    def systematic_error(self, example: Example) -> str | None:
        """Sign error moving ``b``: ``(c + b) / a`` when that is an integer, else None."""
        d = example.problem.data
        top = d["c"] + d["b"]
        return str(top // d["a"]) if top % d["a"] == 0 else None


def _equation(a: int, b: int, c: int) -> str:
    """``3x+5=20`` / ``3x-5=10``."""
    return f"{a}x{b:+d}={c}"
