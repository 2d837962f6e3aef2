r"""``consistency``: a perturbed prompt's completions label the original's (UDA 1904.12848, Co-rewarding-I).

Majority vote labels a group with its own samples, so a confident mistake confirms itself. Here the
policy answers a *perturbed* version of the prompt that has the same answer; the majority answer over
those completions is the pseudo-label, and each original completion gets ``1[ans(y_i) ≡ â_perturbed]``
(0 without an answer, all 0 when no perturbed completion has one). Only the original completions are
scored (the "vice versa" direction of Co-rewarding, training on the perturbed prompt, is not done).

Perturbations (:func:`perturb`; the task interface has no hook for them, so they live here):

- arithmetic ``a+b`` / ``a*b`` (``Problem.data`` with ``a``, ``op``, ``b`` and the bare question):
  swap the operands, ``47+38`` -> ``38+47``;
- anything else: a whitespace change, every space doubled, or a trailing space when there is none.

``perturbation="package.module:function"`` plugs in your own ``function(problem, rng) -> Problem``.
The perturbed prompt is the original prompt with the question replaced, so the question must appear
verbatim in the prompt. Answers of the perturbed completions are read with the group's answer rules
(the task's extraction), and clustered together with the original answers under the group's equivalence.

Experimental: it costs N extra generations per prompt (one ``sampler.generate`` call per group,
seeded from ``seed`` and the problem id) and is not yet validated.

>>> from urlvr.types import Group, Problem
>>> perturb(Problem("47+38", "47+38", data={"a": 47, "op": "+", "b": 38})).question
'38+47'
>>> perturb(Problem("24 from 3 8", "24 from 3 8")).question, perturb(Problem("3x+5=20", "3x+5=20")).question
('24  from  3  8', '3x+5=20 ')
"""

from __future__ import annotations

import dataclasses
import importlib
import random
from typing import Any, Callable

from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.answers import majority
from urlvr.seeds import derive_seed, rng
from urlvr.types import Group, Problem

__all__ = ["consistency", "perturb"]


def perturb(problem: Problem, rng: random.Random | None = None) -> Problem:
    """The built-in answer-preserving perturbation (see the module docstring); ``rng`` is unused."""
    d = problem.data
    if d.get("op") in ("+", "*") and problem.question == f"{d.get('a')}{d['op']}{d.get('b')}" and d["a"] != d["b"]:
        return dataclasses.replace(problem, question=f"{d['b']}{d['op']}{d['a']}", data={**d, "a": d["b"], "b": d["a"]})
    q = problem.question
    return dataclasses.replace(problem, question=q.replace(" ", "  ") if " " in q else q + " ")


def _load(path: str) -> Callable[[Problem, random.Random], Problem]:
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise UrlvrError(f"consistency: cannot load perturbation {path!r} ({e}); "
                         "use 'package.module:function'") from None


@register_reward("consistency", family="experimental", needs_group=True, needs_policy=True,
                 source="UDA (1904.12848), Co-rewarding (2508.00410)")
def consistency(group: Group, sampler: Any = None, settings: Any = None, n: int | None = None,
                perturbation: str | None = None, equivalence: str | None = None, seed: int = 0) -> list[float]:
    """``1[ans(y_i) ≡ â]``, ``â`` the majority answer of ``n`` (default N) completions of the perturbed prompt."""
    if sampler is None or settings is None:
        raise UrlvrError("consistency needs the policy: it is called by the trainer with sampler= and settings=")
    problem = group.problem
    other = (_load(perturbation) if perturbation else perturb)(problem, rng(seed, "consistency", problem.id))
    if problem.question not in group.prompt:
        raise UrlvrError("consistency: the question does not appear verbatim in the prompt, so the perturbed "
                         "prompt cannot be built; use a prompt template that contains {question}")
    prompt = group.prompt.replace(problem.question, other.question, 1)
    k = n or len(group)
    batch = sampler.generate([prompt] * k, settings, seed=derive_seed(seed, "consistency", problem.id))
    ids = group.rules.cluster([group.rules.extract(t) for t in batch.texts] + group.answers, equivalence)
    label, _ = majority(ids[:k], empty="drop")
    return [float(label is not None and i == label) for i in ids[k:]]
