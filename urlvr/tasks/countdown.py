r"""``countdown``: reach a target from given numbers, each used **at most once**.

``24 from 3 5 8`` -> ``3*8`` is right; ``(8-5)*8`` is not (8 used twice), nor is ``3*5+9`` (9 not
given).

The question is short on purpose (a character-level model reads it): ``{target} from {numbers}``,
numbers ascending. ``Problem.data = {"numbers": [...], "target": t}``.

Answers are arithmetic expressions over the given numbers with ``+ - *`` (and ``/`` when
``division=True``) and parentheses. :func:`evaluate` parses them with :mod:`ast` and walks the tree:
only integer literals and those binary operators are allowed (no names, calls, unary minus, powers),
values are exact :class:`~fractions.Fraction`\ s, division by zero is invalid, and text over 200
characters is rejected before parsing. ``\times``, ``\cdot``, ``×`` read as ``*``, ``\div``/``÷`` as
``/``, and a trailing ``=target`` is allowed. The verifier does not impose classic Countdown's
"intermediate results are positive integers" rule.

Generation: ``n_numbers`` numbers drawn uniformly from ``1..max_number``; the target is drawn from
the values in ``[1, max_target]`` that an expression using **all** the numbers reaches with positive
integer intermediate results (exact division only), excluding the numbers themselves. The gold answer
is one such expression. Because it uses every number, :meth:`CountdownTask.check` recovers the whole
problem from the gold string (numbers = the gold's literals, target = its value) and accepts **any**
valid expression, exactly as :meth:`~CountdownTask.verify` does: gold-correctness is verification.

Splits: by a stable hash of the question (80/10/10 %), drawn without repeats; kind = ``n3``/``n4``.

Voting key (:func:`expression_key`): the normalised expression text without whitespace
(``3*8`` and ``8*3`` are different votes). No systematic error is defined (None).

>>> task = CountdownTask()
>>> p = Problem("24 from 3 5 8", "24 from 3 5 8", "n3", {"numbers": [3, 5, 8], "target": 24})
>>> task.verify(p, "3*8"), task.verify(p, "(8-5)*8"), task.verify(p, "3 \\times 8 = 24")
(True, False, True)
>>> task.check("8*3", "3*8"), task.check("(5-3)*8", "3*8"), task.check("3*8", "(8-5)*8")
(True, False, False)
"""

from __future__ import annotations

import ast
import functools
import random
import re
from collections import Counter
from fractions import Fraction
from typing import Iterator

from urlvr.errors import UrlvrError
from urlvr.answers import extract_boxed
from urlvr.tasks.arithmetic import split_of
from urlvr.tasks.base import Example, Problem, Task, register_task

__all__ = ["CountdownTask", "evaluate", "reachable", "expression_key", "reaches_target"]

_MAX_CHARS = 200
_INTEGER = re.compile(r"[0-9]{1,20}")
_ALIASES = (("\\times", "*"), ("\\cdot", "*"), ("×", "*"), ("·", "*"), ("\\div", "/"), ("÷", "/"))
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class _Invalid(Exception):
    """The expression breaks a rule."""


def _normalise(answer: str) -> str:
    s = answer.strip().strip("$")
    for alias, op in _ALIASES:
        s = s.replace(alias, op)
    return s


def evaluate(expression: str | None, division: bool = True) -> tuple[Fraction, Counter] | None:
    """``(value, multiset of literals used)`` of a safe arithmetic expression, or None if invalid.

    An optional ``= N`` suffix must equal the value.

    >>> evaluate("(8-5)*8")
    (Fraction(24, 1), Counter({8: 2, 5: 1}))
    >>> evaluate("2**99999"), evaluate("__import__('os')"), evaluate("-3+5"), evaluate("1/0")
    (None, None, None, None)
    """
    if expression is None:
        return None
    s, eq, rhs = _normalise(expression).partition("=")
    if (eq and not _INTEGER.fullmatch(rhs.strip())) or not s.strip() or len(s) > _MAX_CHARS:
        return None
    try:
        used: Counter = Counter()
        value = _walk(ast.parse(s.strip(), mode="eval").body, used, division)
    except (SyntaxError, ValueError, RecursionError, MemoryError, _Invalid, ZeroDivisionError):
        return None
    if eq and value != int(rhs):
        return None
    return value, used


def _walk(node: ast.AST, used: Counter, division: bool) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used[node.value] += 1
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        if isinstance(node.op, ast.Div) and not division:
            raise _Invalid("division is off")
        left, right = _walk(node.left, used, division), _walk(node.right, used, division)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        return left / right  # ZeroDivisionError -> invalid
    raise _Invalid(type(node).__name__)


# ---- generation ------------------------------------------------------------------------------

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _join(left: tuple[str, int], op: str, right: tuple[str, int]) -> tuple[str, int]:
    """Expression text with the parentheses precedence needs; items are ``(text, precedence)``."""
    p = _PREC[op]
    ltext = left[0] if left[1] >= p else f"({left[0]})"
    tight = right[1] > p or (right[1] == p and op in "+*")
    rtext = right[0] if tight else f"({right[0]})"
    return f"{ltext}{op}{rtext}", p


def reachable(numbers: tuple[int, ...], division: bool = False) -> dict[int, str]:
    """Every value an expression using **all** ``numbers`` reaches, with positive integer
    intermediate results, mapped to one such expression (deterministic).

    >>> reachable((3, 8))
    {11: '3+8', 24: '3*8', 5: '8-3'}
    """
    return {v: text for v, (text, _) in _combine(tuple(numbers), division).items()}


@functools.lru_cache(maxsize=4096)
def _combine(numbers: tuple[int, ...], division: bool) -> dict[int, tuple[str, int]]:
    """``reachable`` with precedence-tagged texts; cached, so callers must not mutate the result."""
    if len(numbers) == 1:
        return {numbers[0]: (str(numbers[0]), 3)}
    out: dict[int, tuple[str, int]] = {}
    for left_idx in _halves(len(numbers)):
        left = _combine(tuple(numbers[i] for i in left_idx), division)
        right = _combine(tuple(numbers[i] for i in range(len(numbers)) if i not in left_idx), division)
        for (a, ea), (b, eb) in ((x, y) for x in sorted(left.items()) for y in sorted(right.items())):
            for value, text in _results(a, ea, b, eb, division):
                out.setdefault(value, text)
    return out


def _halves(k: int) -> Iterator[tuple[int, ...]]:
    """Index sets of the left operand over all ordered splits into two non-empty parts."""
    for mask in range(1, 2**k - 1):
        yield tuple(i for i in range(k) if mask >> i & 1)


def _results(a: int, ea, b: int, eb, division: bool) -> Iterator[tuple[int, tuple[str, int]]]:
    yield a + b, _join(ea, "+", eb)
    yield a * b, _join(ea, "*", eb)
    if a > b:
        yield a - b, _join(ea, "-", eb)
    if division and b > 1 and a % b == 0:
        yield a // b, _join(ea, "/", eb)


def expression_key(answer: str) -> str:
    """Voting key: the expression text with aliases (``\\times``) replaced and whitespace removed."""
    return "".join(_normalise(answer).split())


def reaches_target(problem: Problem, answer: str | None, division: bool = False) -> bool:
    """The verifier: a valid expression, each number used at most as often as given, exact value = target."""
    result = evaluate(answer, division)
    if result is None:
        return False
    value, used = result
    return value == problem.data["target"] and not used - Counter(problem.data["numbers"])


@register_task("countdown")
class CountdownTask(Task):
    """Reach a target from numbers, ``24 from 3 5 8`` -> ``3*8``, checked by evaluation; see the module."""

    def __init__(self, n_numbers: int = 3, max_number: int = 10, max_target: int = 100, division: bool = False):
        if not isinstance(n_numbers, int) or not 2 <= n_numbers <= 5:
            raise UrlvrError(f"countdown: n_numbers must be an integer in 2..5, got {n_numbers!r}")
        if not isinstance(max_number, int) or not 2 <= max_number <= 1000:
            raise UrlvrError(f"countdown: max_number must be an integer in 2..1000, got {max_number!r}")
        if not isinstance(max_target, int) or max_target < 2:
            raise UrlvrError(f"countdown: max_target must be an integer >= 2, got {max_target!r}")
        if not isinstance(division, bool):
            raise UrlvrError(f"countdown: division must be true or false, got {division!r}")
        self.n_numbers, self.max_number, self.max_target, self.division = n_numbers, max_number, max_target, division

    # ---- problems -----------------------------------------------------------------------------
    def generate(self, split: str, n: int, rng: random.Random) -> list[Example]:
        """Draw numbers, then a target among their non-trivial full-use values; keep ``split``'s."""
        seen: set[str] = set()
        out: list[Example] = []
        budget = 200 * n + 20_000
        while len(out) < n:
            budget -= 1
            if budget < 0:
                raise UrlvrError(
                    f"countdown: found only {len(out)} distinct {split} problems with n_numbers={self.n_numbers}, "
                    f"max_number={self.max_number}, max_target={self.max_target}; ask for fewer or raise "
                    "max_number / max_target"
                )
            numbers = tuple(sorted(rng.randint(1, self.max_number) for _ in range(self.n_numbers)))
            targets = {v: e for v, e in reachable(numbers, self.division).items()
                       if 1 <= v <= self.max_target and v not in numbers}
            if not targets:
                continue
            target = rng.choice(sorted(targets))
            question = f"{target} from {' '.join(map(str, numbers))}"
            if question in seen or split_of(question) != split:
                continue
            seen.add(question)
            problem = Problem(id=question, question=question, kind=f"n{self.n_numbers}",
                              data={"numbers": list(numbers), "target": target})
            out.append(Example(problem, targets[target]))
        return out

    # ---- answers ------------------------------------------------------------------------------
    def answer_functions(self) -> dict:
        return {"extract": extract_boxed, "canonical": expression_key,
                "verify": functools.partial(reaches_target, division=self.division)}

    def check(self, answer: str | None, gold: str) -> bool:
        """Any valid expression for the problem the gold expression solves (it uses every number)."""
        solved = evaluate(gold, division=True)
        if solved is None:  # not an expression: plain text comparison
            return answer is not None and self.canonical(answer) == self.canonical(gold)
        value, used = solved
        problem = Problem(id="", question="", data={"numbers": sorted(used.elements()), "target": value})
        return self.verify(problem, answer)

    def near_miss(self, example: Example, rng: random.Random) -> str:
        """A digit-perturbed gold expression that fails verification."""
        for _ in range(20):
            wrong = super().near_miss(example, rng)
            if not self.verify(example.problem, wrong):
                return wrong
        return (example.answer or "0") + "+1+1"
