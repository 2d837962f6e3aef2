"""Tasks and the task registry.

A task generates (or reads) :class:`~urlvr.types.Example`\ s: a :class:`~urlvr.types.Problem` (what a
label-free reward may see) and, beside it, the gold answer. It says how answers are read and compared
through :meth:`Task.rules`, an :class:`~urlvr.types.AnswerRules` of plain functions that hold no task
object and no gold answer: that is what groups carry to label-free rewards. The gold check
(:meth:`Task.check`, batched :meth:`Task.check_many`) stays with the task, for the gold reward and the
oracle metrics only.

Answer convention, shared by every task: the answer is the content of the **last** ``\\boxed{...}``
in the completion (:func:`urlvr.answers.extract_boxed`).
"""

from __future__ import annotations

import functools
import inspect
import random
from typing import Any, Callable, ClassVar, Sequence

from urlvr.answers import FALLBACKS, boxed, extract_boxed, extract_with_fallbacks, strip_spaces
from urlvr.errors import UrlvrError
from urlvr.seeds import rng as seeded_rng
from urlvr.types import AnswerRules, Example, Problem

__all__ = [
    "Problem", "Example", "Task", "SPLITS", "register_task", "get_task", "get_task_class", "task_names",
    "extract_boxed", "boxed",
]

SPLITS = ("train", "validation", "test")


class Task:
    """A family of problems with checkable answers.

    Subclasses set ``name`` and implement :meth:`generate` (or override :meth:`examples`), and may
    override the answer handling. All randomness comes from the ``seed`` argument: the same
    (split, n, seed) always gives the same examples, and splits never share a problem.
    """

    name: ClassVar[str] = ""
    template: str = "{question}\n"
    """Prompt template; ``{question}`` is replaced by the problem's question."""
    fallback: tuple[str, ...] = ()
    """Answer fallbacks tried when the completion has no answer in the task's format
    (:data:`urlvr.answers.FALLBACKS`: ``answer_is``, ``last_number``); set with the task option ``fallback``."""

    # ---- problems -------------------------------------------------------------------------
    def examples(self, split: str, n: int, seed: int = 0) -> list[Example]:
        """``n`` labelled examples of ``split`` (one of train/validation/test), seeded."""
        if split not in SPLITS:
            raise UrlvrError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if n < 1:
            raise UrlvrError(f"number of problems must be >= 1, got {n}")
        return self.generate(split, n, seeded_rng(self.name, split, seed))

    def generate(self, split: str, n: int, rng: random.Random) -> list[Example]:
        raise NotImplementedError

    # ---- prompts and answers -------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        """The text fed to the model."""
        return self.template.format(question=problem.question)

    def answer_functions(self) -> dict[str, Callable]:
        """``extract``, ``canonical`` and ``verify`` as module-level functions (or partials of them over
        option values): never bound methods of the task, which may hold gold answers. Subclasses
        override this; the default is the last ``\\boxed{}``, whitespace-free keys, no verifier."""
        return {"extract": extract_boxed, "canonical": strip_spaces, "verify": None}

    def _functions(self) -> dict[str, Callable]:
        """:meth:`answer_functions` with the fallbacks folded into ``extract`` (still a partial of module functions)."""
        fns = self.answer_functions()
        if self.fallback:
            fns["extract"] = functools.partial(extract_with_fallbacks, primary=fns["extract"], fallbacks=self.fallback)
        return fns

    def rules(self, equivalence: str = "canonical", math: Callable | None = None) -> AnswerRules:
        """The answer rules a label-free group carries (no task object, no gold)."""
        return AnswerRules(**self._functions(), equivalence=equivalence, math=math)

    def extract(self, completion: str) -> str | None:
        """The answer stated in a completion, or None (malformed or no answer)."""
        return self._functions()["extract"](completion)

    def canonical(self, answer: str) -> str:
        """Voting key: equal keys mean the same answer."""
        return self.answer_functions()["canonical"](answer)

    def verify(self, problem: Problem, answer: str | None) -> bool | None:
        """Label-free programmatic check of ``answer`` against the *problem*; None when the task has none."""
        fn = self.answer_functions()["verify"]
        return None if fn is None else fn(problem, answer)

    def check(self, answer: str | None, gold: str) -> bool:
        """Gold check (supervised control and oracle metrics only)."""
        return answer is not None and self.canonical(answer) == self.canonical(gold)

    def check_many(self, answers: Sequence[str | None], golds: Sequence[str | None], grader: Any = None) -> list[bool]:
        """:meth:`check` for every ``(answer, gold)`` pair (a missing gold is False); tasks graded by
        math-verify send the whole batch to ``grader`` in one call."""
        return [bool(g is not None and self.check(a, g)) for a, g in zip(answers, golds)]

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


def get_task_class(name: str) -> Callable[..., Task]:
    """The registered task class called ``name``."""
    if name not in _REGISTRY:
        raise UrlvrError(f"unknown task {name!r}; choose one of: {', '.join(task_names())}")
    return _REGISTRY[name]


def check_template(template: Any, name: str) -> str:
    """``template`` if it is a prompt template (a string with ``{question}``, literal braces doubled), else one
    UrlvrError naming the setting ``name``."""
    try:
        ok = isinstance(template, str) and "{question}" in template and template.format(question="") is not None
    except (KeyError, IndexError, ValueError):
        ok = False
    if not ok:
        raise UrlvrError(f"{name} must contain {{question}} and write literal braces doubled, e.g. "
                         f"'{{question}}\\nPut the answer in \\\\boxed{{{{}}}}.', got {template!r}")
    return template


def get_task(name: str, **options: Any) -> Task:
    """Build a registered task; unknown names or options raise one clear UrlvrError.

    Every task takes the option ``fallback``: a fallback name or list of them (:attr:`Task.fallback`), and
    ``template``: the prompt template with ``{question}`` (:attr:`Task.template`; a few-shot prefix, say), so a
    training run renders its prompts as ``urlvr eval --template`` does.
    """
    if name not in _REGISTRY:
        raise UrlvrError(f"unknown task {name!r}; choose one of: {', '.join(task_names())}")
    template = None
    if "template" in options and "template" not in inspect.signature(_REGISTRY[name]).parameters:
        template = check_template(options.pop("template"), "task option template")
    fallback = options.pop("fallback", ())
    fallback = (fallback,) if isinstance(fallback, str) else tuple(fallback or ())
    unknown = [f for f in fallback if f not in FALLBACKS]
    if unknown:
        raise UrlvrError(f"unknown answer fallback {unknown[0]!r}; choose from: {', '.join(FALLBACKS)}")
    try:
        task = _REGISTRY[name](**options)
    except TypeError as e:
        raise UrlvrError(f"bad options for task {name!r}: {e}") from None
    task.fallback = fallback
    if template is not None:
        task.template = template
    return task
