"""Problems, tasks and the task registry.

A :class:`Problem` is what a label-free reward may see: an id, the question, its type and the public
data a programmatic verifier needs (the numbers and target of a Countdown, the equation). The gold
answer lives only in :class:`Example`, beside the problem, so code that holds a ``Problem`` cannot
reach it.

Answer convention, shared by every task: the answer is the content of the **last** ``\\boxed{...}``
in the completion (braces may nest). A completion without one has no answer (``None``).

>>> extract_boxed("so \\\\boxed{12} then \\\\boxed{4{2}}")
'4{2}'
>>> extract_boxed("no answer") is None
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from urlvr.errors import UrlvrError

__all__ = [
    "Problem", "Example", "Task", "SPLITS", "register_task", "get_task", "task_names", "extract_boxed",
    "boxed",
]

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Problem:
    """A problem without its answer: all a label-free reward or verifier may read."""

    id: str
    """Stable identifier, unique within a task and split."""
    question: str
    """The question text, before any prompt template."""
    kind: str = ""
    """Problem type, for per-type reports (e.g. ``add/carry``)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Public structured data for verifiers (e.g. ``{"numbers": [...], "target": 24}``)."""


@dataclass(frozen=True)
class Example:
    """A problem and, when labelled, its gold answer (only gold rewards and oracle metrics read it)."""

    problem: Problem
    answer: str | None = None


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


class Task:
    """A family of problems with checkable answers.

    Subclasses set ``name`` and implement :meth:`generate` (or override :meth:`examples`), and may
    override the answer handling. All randomness comes from the ``seed`` argument: the same
    (split, n, seed) always gives the same examples, and splits never share a problem.
    """

    name: ClassVar[str] = ""
    template: str = "{question}\n"
    """Prompt template; ``{question}`` is replaced by the problem's question."""

    # ---- problems -------------------------------------------------------------------------
    def examples(self, split: str, n: int, seed: int = 0) -> list[Example]:
        """``n`` labelled examples of ``split`` (one of train/validation/test), seeded."""
        if split not in SPLITS:
            raise UrlvrError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if n < 1:
            raise UrlvrError(f"number of problems must be >= 1, got {n}")
        return self.generate(split, n, random.Random(f"{self.name}/{split}/{seed}"))

    def generate(self, split: str, n: int, rng: random.Random) -> list[Example]:
        raise NotImplementedError

    # ---- prompts and answers -------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        """The text fed to the model."""
        return self.template.format(question=problem.question)

    def extract(self, completion: str) -> str | None:
        """The answer stated in a completion, or None (malformed or no answer)."""
        return extract_boxed(completion)

    def canonical(self, answer: str) -> str:
        """Voting key: equal keys mean the same answer (whitespace-insensitive by default)."""
        return "".join(answer.split())

    def check(self, answer: str | None, gold: str) -> bool:
        """Gold check (supervised control and oracle metrics only)."""
        return answer is not None and self.canonical(answer) == self.canonical(gold)

    def verify(self, problem: Problem, answer: str | None) -> bool | None:
        """Label-free programmatic check of ``answer`` against the *problem* (never a stored answer).

        Returns None when the task has no such check.
        """
        return None

    # ---- what the testbed pretrains on ---------------------------------------------------------
    def target(self, example: Example) -> str:
        """Completion text a supervised model is trained to produce for ``example``."""
        if example.answer is None:
            raise UrlvrError(f"problem {example.problem.id} has no answer to train on")
        return boxed(example.answer)

    def systematic_error(self, example: Example) -> str | None:
        """Answer under the task's systematic wrong rule, or None if this problem is unaffected.

        Used to build *misaligned* priors (confidently wrong on a share of problems).
        """
        return None

    def near_miss(self, example: Example, rng: random.Random) -> str:
        """A random wrong answer close to the gold one (noise for *aligned* priors)."""
        gold = example.answer or "0"
        digits = [i for i, c in enumerate(gold) if c.isdigit()]
        if not digits:
            return gold + "0"
        i = rng.choice(digits)
        new = rng.choice([d for d in "0123456789" if d != gold[i]])
        return gold[:i] + new + gold[i + 1 :]


_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str) -> Callable:
    """Class decorator: make a task constructible by name via :func:`get_task`."""

    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task(name: str, **options: Any) -> Task:
    """Build a registered task; unknown names or options raise one clear UrlvrError."""
    import urlvr.tasks  # noqa: F401  (registers the built-in tasks)

    if name not in _REGISTRY:
        raise UrlvrError(f"unknown task {name!r}; choose one of: {', '.join(task_names())}")
    try:
        return _REGISTRY[name](**options)
    except TypeError as e:
        raise UrlvrError(f"bad options for task {name!r}: {e}") from None
