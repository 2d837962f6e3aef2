"""Experimental rewards: RND novelty (stateful) and prompt-perturbation consistency."""

import pytest

from rewards._groups import FakeSampler, answers_group, completion, group, one_thread  # noqa: F401
from urlvr.errors import UrlvrError
from urlvr.experimental import perturb, reset_rnd
from urlvr.experimental.consistency import consistency
from urlvr.experimental.rnd import rnd_novelty
from urlvr.rollout import SamplingSettings
from urlvr.tasks.base import Problem


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def token_group(*id_lists):
    return group([completion("x" * (len(ids) - 1), ids=ids) for ids in id_lists])


def test_rnd_bonus_is_normalised_and_seen_completions_become_less_novel():
    reset_rnd()
    seen = token_group([5, 6, 7, 2], [9, 9, 2], [11, 12, 13, 14, 2])
    first = rnd_novelty(seen, updates=20, lr=3e-2)
    assert sum(first) / 3 == pytest.approx(1.0)  # the running mean of the first group is its own mean
    again = rnd_novelty(seen, updates=0, lr=3e-2)
    fresh = rnd_novelty(token_group([100, 200, 300, 2], [400, 2], [500, 600, 2]), updates=0, lr=3e-2)
    assert max(again) < min(fresh)


def test_rnd_is_deterministic_per_seed_and_reset_forgets():
    g = token_group([1, 2, 3], [4, 5])
    reset_rnd()
    a = rnd_novelty(g)
    reset_rnd()
    assert rnd_novelty(g) == a
    reset_rnd()
    assert rnd_novelty(g, seed=1) != a
    with pytest.raises(UrlvrError, match="rnd_novelty"):
        rnd_novelty(g, dim=0)


@pytest.mark.parametrize("problem,question", [
    (Problem("47+38", "47+38", data={"a": 47, "op": "+", "b": 38}), "38+47"),
    (Problem("6*7", "6*7", data={"a": 6, "op": "*", "b": 7}), "7*6"),
    (Problem("5+5", "5+5", data={"a": 5, "op": "+", "b": 5}), "5+5 "),  # a swap would change nothing
    (Problem("52-38", "52-38", data={"a": 52, "op": "-", "b": 38}), "52-38 "),  # not commutative
    (Problem("24 from 3 8", "24 from 3 8"), "24  from  3  8"),
])
def test_perturbations_keep_the_answer(problem, question):
    assert perturb(problem).question == question


def test_consistency_labels_the_original_completions_by_the_perturbed_majority():
    problem = Problem("47+38", "47+38", data={"a": 47, "op": "+", "b": 38})
    sampler = FakeSampler(lambda p: "\\boxed{85}" if p == "38+47\n" else "\\boxed{0}")
    g = answers_group(["75", "85", None, "75"], problem=problem)  # the original majority (75) is wrong
    settings = SamplingSettings(max_new_tokens=8)
    assert consistency(g, sampler=sampler, settings=settings) == [0.0, 1.0, 0.0, 0.0]
    (prompts, used, seed), = sampler.calls
    assert prompts == ["38+47\n"] * 4 and used is settings
    assert consistency(g, sampler=sampler, settings=settings, n=2) == [0.0, 1.0, 0.0, 0.0]
    assert len(sampler.calls[1][0]) == 2
    silent = FakeSampler(lambda p: "no idea")
    assert consistency(g, sampler=silent, settings=settings) == [0.0] * 4


def test_consistency_errors():
    g = answers_group(["2"], prompt="Solve it.\n")
    with pytest.raises(UrlvrError, match="verbatim"):
        consistency(g, sampler=FakeSampler(str), settings=SamplingSettings())
    with pytest.raises(UrlvrError, match="needs the policy"):
        consistency(answers_group(["2"]))
    with pytest.raises(UrlvrError, match="perturbation"):
        consistency(answers_group(["2"]), sampler=FakeSampler(str), settings=SamplingSettings(),
                    perturbation="no.such.module:fn")
