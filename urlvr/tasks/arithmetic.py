r"""``arithmetic``: one binary operation on integers, e.g. ``47+38`` -> ``85``.

Operands have exactly ``digits`` digits (0-9 when ``digits=1``); for ``-`` the larger operand comes
first, so answers are never negative. The question is the bare expression.

Kinds (for per-type reports): ``add/carry``, ``add/nocarry``, ``sub/borrow``, ``sub/noborrow``,
``mul``. A carry (borrow) happens iff some column has ``a_i + b_i >= 10`` (``a_i < b_i``).

Systematic error (for misaligned priors), on carry/borrow problems only:

- addition, *dropped carry*: each column written as ``(a_i + b_i) mod 10``, carries forgotten;
  ``47+38`` -> ``75`` (gold 85). Each dropped carry out of column i is worth ``10^(i+1)``, so the
  result is always smaller than gold.
- subtraction, *smaller-from-larger* (the classic column bug): each column written as
  ``|a_i - b_i|``, no borrowing; ``52-38`` -> ``26`` (gold 14). Each borrow column adds
  ``2 (b_i - a_i) 10^i``, so the result is always larger than gold.

Splits: each problem ``(a, op, b)`` goes to train/validation/test (80/10/10 %) by a stable hash of
its text, so splits never share a problem; within a split, problems are drawn without replacement.

>>> task = ArithmeticTask(digits=2, ops="+")
>>> ex = task.examples("test", 2, seed=0)
>>> [e.problem.question for e in ex] == [e.problem.question for e in task.examples("test", 2, seed=0)]
True
>>> task.systematic_error(Example(Problem("47+38", "47+38", "add/carry", {"a": 47, "op": "+", "b": 38}), "85"))
'75'
"""

from __future__ import annotations

import hashlib
import random
import re

from urlvr.errors import UrlvrError
from urlvr.answers import extract_boxed
from urlvr.tasks.base import SPLITS, Example, Problem, Task, register_task

__all__ = ["ArithmeticTask", "split_of", "integer_key"]

_SPLIT_BOUNDS = (0.8, 0.9)  # train below 0.8, validation below 0.9, test above
_ENUMERATE_LIMIT = 30_000
_INTEGER = re.compile(r"[+-]?[0-9]{1,50}")  # count pools exactly up to this many candidate problems


def split_of(key: str) -> str:
    """The split a problem belongs to, from a stable hash of its key (80/10/10 %).

    >>> split_of("47+38") in SPLITS
    True
    """
    u = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64
    return SPLITS[0] if u < _SPLIT_BOUNDS[0] else SPLITS[1] if u < _SPLIT_BOUNDS[1] else SPLITS[2]


def integer_key(answer: str) -> str:
    """Voting key: integers compare by value (``085`` = ``85``, ``+3`` = ``3``); anything else as text.

    >>> integer_key(" 085"), integer_key("+3"), integer_key("x")
    ('85', '3', 'x')
    """
    s = "".join(answer.split())
    return str(int(s)) if _INTEGER.fullmatch(s) else s


def _digits(x: int, width: int) -> list[int]:
    """Decimal digits of ``x``, least significant first, zero-padded to ``width``."""
    return [(x // 10**i) % 10 for i in range(width)]


def _from_digits(ds: list[int]) -> int:
    return sum(d * 10**i for i, d in enumerate(ds))


@register_task("arithmetic")
class ArithmeticTask(Task):
    """One integer operation, ``47+38`` -> ``85`` (options: digits, ops); see the module docstring."""

    def __init__(self, digits: int = 2, ops: str = "+-"):
        if not isinstance(digits, int) or not 1 <= digits <= 6:
            raise UrlvrError(f"arithmetic: digits must be an integer in 1..6, got {digits!r}")
        if not isinstance(ops, str) or not ops or set(ops) - set("+-*"):
            raise UrlvrError(f"arithmetic: ops must be a non-empty subset of '+-*' (e.g. '+-'), got {ops!r}")
        self.digits = digits
        self.ops = "".join(sorted(set(ops), key="+-*".index))
        self.lo, self.hi = (0, 9) if digits == 1 else (10 ** (digits - 1), 10**digits - 1)
        self._pool_sizes: dict[str, int] = {}

    # ---- problems -----------------------------------------------------------------------------
    def generate(self, split: str, n: int, rng: random.Random) -> list[Example]:
        """Draw ``(op, a, b)`` uniformly (op first), keep those hashed into ``split``, no repeats."""
        available = self._pool_size(split)
        if n > available:
            raise UrlvrError(
                f"arithmetic: only {available} {split} problems exist with digits={self.digits}, "
                f"ops={self.ops!r}; ask for fewer or raise digits"
            )
        seen: set[str] = set()
        out = []
        while len(out) < n:
            op = rng.choice(self.ops)
            a, b = rng.randint(self.lo, self.hi), rng.randint(self.lo, self.hi)
            if op == "-" and a < b:
                a, b = b, a
            question = f"{a}{op}{b}"
            if question in seen or split_of(question) != split:
                continue
            seen.add(question)
            out.append(self._example(a, op, b))
        return out

    def _pool_size(self, split: str) -> int:
        """How many distinct problems ``split`` holds (exact when small, else the hashed share)."""
        if split not in self._pool_sizes:
            self._pool_sizes[split] = self._count(split)
        return self._pool_sizes[split]

    def _count(self, split: str) -> int:
        width = self.hi - self.lo + 1
        per_op = {"+": width * width, "*": width * width, "-": width * (width + 1) // 2}
        total = sum(per_op[op] for op in self.ops)
        if total > _ENUMERATE_LIMIT:
            share = {"train": 0.8, "validation": 0.1, "test": 0.1}[split]
            return int(total * share * 0.9)  # a safe floor; only huge requests come near it
        count = 0
        for op in self.ops:
            for a in range(self.lo, self.hi + 1):
                for b in range(self.lo, (a if op == "-" else self.hi) + 1):
                    count += split_of(f"{a}{op}{b}") == split
        return count

    def _example(self, a: int, op: str, b: int) -> Example:
        question = f"{a}{op}{b}"
        value = a + b if op == "+" else a - b if op == "-" else a * b
        problem = Problem(id=question, question=question, kind=self._kind(a, op, b),
                          data={"a": a, "op": op, "b": b})
        return Example(problem, str(value))

    def _kind(self, a: int, op: str, b: int) -> str:
        if op == "*":
            return "mul"
        width = len(str(max(a, b)))
        da, db = _digits(a, width), _digits(b, width)
        if op == "+":
            return "add/carry" if any(x + y >= 10 for x, y in zip(da, db)) else "add/nocarry"
        return "sub/borrow" if any(x < y for x, y in zip(da, db)) else "sub/noborrow"

    # ---- answers ------------------------------------------------------------------------------
    def answer_functions(self) -> dict:
        return {"extract": extract_boxed, "canonical": integer_key, "verify": None}

    def systematic_error(self, example: Example) -> str | None:
        """Dropped carry (``+``) or smaller-from-larger (``-``) on carry/borrow problems, else None."""
        d, kind = example.problem.data, example.problem.kind
        if kind not in ("add/carry", "sub/borrow"):
            return None
        a, b = d["a"], d["b"]
        width = len(str(max(a, b)))
        da, db = _digits(a, width), _digits(b, width)
        if kind == "add/carry":
            wrong = _from_digits([(x + y) % 10 for x, y in zip(da, db)])
        else:
            wrong = _from_digits([abs(x - y) for x, y in zip(da, db)])
        return str(wrong)
