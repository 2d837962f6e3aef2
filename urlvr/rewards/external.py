r"""External rewards: checks from outside the model's beliefs, without labels (METHODS.md §4).

- ``verifier``: the task's programmatic check of the answer against the *problem* (Countdown:
  valid expression, numbers used at most once, value = target; linear equation: substitute the root).
- ``self_verify``: the policy judges each of its own completions (``\boxed{True}``/``\boxed{False}``).
- ``code_tests``: run the completion's code against the problem's tests in a :mod:`sandbox
  <urlvr.rewards.sandbox>`; reward = fraction of tests passed.

Rewards that loop over completions isolate failures per completion with :func:`guarded`: an
exception while scoring one completion makes *that* score None (it leaves the loss and counts in
``reward/failed``), while a :class:`~urlvr.errors.UrlvrError` (a configuration mistake) still stops the
run with its message.

>>> parse_verdict("so \\boxed{True}"), parse_verdict("I think it is incorrect."), parse_verdict("hmm")
(True, False, None)
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.rewards.sandbox import Sandbox, SandboxError, extract_code
from urlvr.answers import extract_boxed
from urlvr.seeds import derive_seed
from urlvr.types import Completion, Group, RewardOutput, SamplingSettings

__all__ = ["guarded", "verifier", "self_verify", "code_tests", "parse_verdict", "JUDGE_TEMPLATE"]

T = TypeVar("T")

JUDGE_TEMPLATE = ("{prompt}{completion}\n\nIs the final answer above correct? "
                  "Answer \\boxed{{True}} or \\boxed{{False}}.\n")
"""Default self-verification prompt. Fields: ``{prompt}`` (the original prompt), ``{question}``,
``{completion}`` (the full completion text), ``{answer}`` (its extracted answer, "" if none); write
literal braces doubled."""

_VERDICTS = {"true": True, "yes": True, "correct": True, "false": False, "no": False, "incorrect": False}
_VERDICT_WORD = re.compile(r"\b(true|false|yes|no|correct|incorrect)\b", re.I)
_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")


def guarded(fn: Callable[[Completion], T]) -> Callable[[Completion], T | None]:
    """Per-completion failure isolation: ``fn(c)``, or None when it raises (a UrlvrError propagates)."""

    def wrapper(c: Completion) -> T | None:
        try:
            return fn(c)
        except UrlvrError:
            raise
        except Exception:  # noqa: BLE001  (an environment fault for this completion, not a verdict)
            return None

    return wrapper


# ---- programmatic verifier -----------------------------------------------------------------------

@register_reward("verifier", family="external", source="URLVR §4 (generation-verification asymmetry)")
def verifier(group: Group) -> list[float | None]:
    """``1`` if the task's verifier accepts the answer for this *problem*, else ``0`` (no answer: 0).

    Many correct answers may exist (any valid Countdown expression). A task without a verifier (its
    ``verify`` returns None) raises a :class:`UrlvrError` at the first call.
    """

    def one(c: Completion) -> float:
        verdict = group.verify(group.problem, c.answer)
        if verdict is None:
            raise UrlvrError(f"reward 'verifier': the task of problem {group.problem.id!r} has no programmatic "
                             "verifier; use a task that has one (countdown, linear) or another reward")
        return float(verdict)

    return [guarded(one)(c) for c in group.completions]


# ---- self-verification ---------------------------------------------------------------------------

def parse_verdict(text: str) -> bool | None:
    r"""The judge's verdict: the last ``\boxed{}`` if it holds true/false (or yes/no, correct/incorrect),
    else the last of those words anywhere (case-insensitive); None if there is none."""
    boxed = extract_boxed(text)
    if boxed is not None:
        word = _WRAPPER.sub(r"\1", boxed).strip(" .$").lower()
        if word in _VERDICTS:
            return _VERDICTS[word]
    hits = _VERDICT_WORD.findall(text)
    return _VERDICTS[hits[-1].lower()] if hits else None


def _judge_prompt(template: str, group: Group, c: Completion) -> str:
    try:
        return template.format(prompt=group.prompt, question=group.problem.question, completion=c.text,
                               answer=c.answer or "")
    except (KeyError, IndexError, ValueError) as e:
        raise UrlvrError(f"self_verify: bad judge template ({e!r}); use the fields {{prompt}}, {{question}}, "
                         "{completion}, {answer} and double literal braces") from None


@register_reward("self_verify", family="external", needs_group=True, needs_policy=True,
                 source="URLVR §4 self-verification")
def self_verify(group: Group, sampler: Any = None, settings: Any = None, template: str = JUDGE_TEMPLATE,
                temperature: float = 0.5, max_new_tokens: int | None = None, seed: int = 0) -> RewardOutput:
    r"""The policy judges each completion once: reward 1 for a ``True`` verdict, 0 otherwise.

    One judge prompt per distinct completion (:data:`JUDGE_TEMPLATE`), all of a group sampled in one
    ``sampler.generate`` call at ``temperature`` (0.5) and the run's ``max_new_tokens`` unless given,
    seeded from ``seed``, the problem id and the completion texts (identical completions share their
    judgement; the result does not depend on completion order). An unparsable verdict counts as
    *not verified* (0), not None: a judge that stops answering must not silently drop the prompt.
    Component ``judge_parsed`` logs the parsable-verdict rate.
    """
    if sampler is None:
        raise UrlvrError("self_verify needs the policy: it is called by the trainer with sampler= and settings=")
    texts = sorted({c.text for c in group.completions})
    by_text = {c.text: c for c in group.completions}
    judge = SamplingSettings(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens or (
        settings.max_new_tokens if settings is not None else 16))
    batch = sampler.generate([_judge_prompt(template, group, by_text[t]) for t in texts], judge,
                             seed=derive_seed(seed, "self_verify", group.problem.id, *texts))
    verdicts = dict(zip(texts, map(parse_verdict, batch.texts)))
    scores = [float(verdicts[c.text] is True) for c in group.completions]
    return RewardOutput(scores, {"judge_parsed": [float(verdicts[c.text] is not None) for c in group.completions]})


# ---- code with tests -----------------------------------------------------------------------------

@register_reward("code_tests", family="external", source="URLVR §4 code with tests")
def code_tests(group: Group, timeout_s: float = 5.0, cpu_s: int = 5, memory_mb: int = 1024, network: str = "auto",
               workers: int = 4) -> list[float | None]:
    """Fraction of the problem's tests that the completion's code passes, run in a sandbox.

    Tests are ``problem.data["tests"]``, Python snippets such as ``assert f(2) == 4``, run after the
    code in a :class:`~urlvr.rewards.sandbox.Sandbox`.
    The code is the last ```` ```python ```` block, else the last fenced block, else the whole text.
    A sandbox failure (not the code's) gives None for that completion; code that times out or crashes
    keeps the tests it passed before. Up to ``workers`` sandboxes run at once.
    """
    tests = group.problem.data.get("tests")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise UrlvrError(f"reward 'code_tests': problem {group.problem.id!r} has no tests; its task must put a "
                         "non-empty list of Python test snippets in Problem.data['tests']")
    box = Sandbox(timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb, network=network)

    def one(c: Completion) -> float | None:
        try:
            return box.run(extract_code(c.text), tests).fraction
        except SandboxError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(group)))) as pool:
        return list(pool.map(guarded(one), group.completions))
