"""Builders for reward tests: completions whose per-token statistics come from hand-made logits."""

from __future__ import annotations

import pytest
import torch

from urlvr.answers import extract_boxed
from urlvr.stats import token_stats
from urlvr.types import AnswerRules, Completion, Group, LabeledGroup, Problem

V = 4  # vocabulary of the hand-made logits
EOS = 2
UNIFORM = [0.0] * V
PEAKED = [20.0, 0.0, 0.0, 0.0]  # near one-hot: H ≈ 0, top-2 gap ≈ 1, log p(0) ≈ 0


def completion(text: str, rows: list[list[float]] | None = None, *, ids: list[int] | None = None,
               eos: bool = True, answer=..., temperature: float = 1.0) -> Completion:
    """A completion of ``text``; by default one token per character (+ EOS), uniform logits.

    ``rows``: one logits row (V,) per token; ``ids``: the token ids (default: 0 for each character).
    """
    ids = list(ids) if ids is not None else [0] * len(text) + ([EOS] if eos else [])
    rows = rows if rows is not None else [UNIFORM] * len(ids)
    assert len(rows) == len(ids)
    tokens = torch.tensor([ids])  # (1, T)
    s = token_stats(torch.tensor([rows]), tokens % V, temperature)  # (1, T) each
    return Completion(text=text, answer=extract_boxed(text) if answer is ... else answer, token_ids=tokens[0],
                      stats={k: v[0] for k, v in s.items()}, truncated=not eos, ends_with_eos=eos)


def group(completions, problem: Problem | None = None, prompt: str | None = None, gold=..., **rules) -> Group:
    """A label-free group (or a LabeledGroup when ``gold`` is given, None included) of ``completions``.

    ``rules``: fields of its :class:`AnswerRules` (``canonical=``, ``verify=``, ``equivalence=``).
    """
    problem = problem or Problem("p1", "1+1", data={"a": 1, "op": "+", "b": 1})
    kw = dict(problem=problem, prompt=prompt if prompt is not None else problem.question + "\n",
              completions=tuple(completions), rules=AnswerRules(**rules), vocab_size=V, eos_token_id=EOS)
    if gold is ...:
        return Group(**kw)
    return LabeledGroup(**kw, gold=gold, check=lambda a, g: a is not None and a.strip() == g)


def answers_group(answers, **kw) -> Group:
    """A group whose completions state ``answers`` (None: no ``\\boxed{}``)."""
    return group([completion("?" if a is None else "\\boxed{" + a + "}") for a in answers], **kw)


class FakeSampler:
    """A policy stand-in: ``respond(prompt) -> text``; records every generate call."""

    def __init__(self, respond):
        self.respond, self.calls = respond, []

    def generate(self, prompts, settings, seed):
        self.calls.append((list(prompts), settings, seed))

        class Batch:
            texts = [self.respond(p) for p in prompts]
            mask = torch.ones(len(prompts), 1)  # one generated token per text, for rewards that count cost

        return Batch()


@pytest.fixture
def one_thread():
    """Tiny models and MLPs: thread hand-offs cost more than the work (100x on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
