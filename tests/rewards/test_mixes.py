"""Mixes and controls (METHODS §5b): weighted sums, gold on a labelled share, and the three controls."""

import dataclasses

import pytest

from rewards._groups import FakeSampler, answers_group
from urlvr.errors import UrlvrError
from urlvr.rewards import Group, LabeledGroup, get_reward
from urlvr.rewards.base import _REGISTRY, RewardSpec
from urlvr.rewards.controls import format_only, gold, random_reward
from urlvr.rewards.mixes import is_labelled, mix, semi_supervised
from urlvr.tasks.base import Problem

ANSWERS = ["2", "2", "3", None]


def test_mix_is_the_weighted_sum_and_logs_its_components():
    out = mix(answers_group(ANSWERS), rewards={"majority_vote": 1.0, "format_only": 0.5},
              options={"majority_vote": {"empty": "drop"}})
    assert out.scores == [1.5, 1.5, 0.5, 0.0]
    assert out.components["majority_vote"] == [1.0, 1.0, 0.0, 0.0]
    assert out.components["format_only"] == [1.0, 1.0, 1.0, 0.0]


def test_mix_propagates_none_and_nested_components():
    out = mix(answers_group(ANSWERS), rewards={"srt": 2.0, "format_only": 1.0}, options={"srt": {"threshold": 0.9}})
    assert out.scores == [None] * 4
    assert out.components["srt/accepted"] == [0.0] * 4


def test_mix_forwards_the_policy_to_components_that_query_it():
    sampler = FakeSampler(lambda p: "\\boxed{True}")
    out = mix(answers_group(ANSWERS), rewards={"self_verify": 1.0}, sampler=sampler, settings=None)
    assert out.scores == [1.0] * 4 and len(sampler.calls) == 1


@pytest.mark.parametrize("options,match", [
    ({"rewards": {"gold": 1.0}}, "needs gold answers.*semi_supervised"),
    ({}, "mapping"),
    ({"rewards": {"format_only": "heavy"}}, "must be a number"),
    ({"rewards": {"format_only": 1.0}, "options": {"srt": {}}}, "not in rewards"),
    ({"rewards": {"nope": 1.0}}, "unknown reward"),
])
def test_mix_refuses_bad_components(options, match):
    with pytest.raises(UrlvrError, match=match):
        mix(answers_group(ANSWERS), **options)


def labelled_group(pid="p1", gold_answer="3"):
    return answers_group(ANSWERS, problem=Problem(pid, "1+1"), gold=gold_answer)


def test_semi_supervised_uses_gold_on_the_labelled_share_and_intrinsic_elsewhere():
    g = labelled_group()
    assert isinstance(g, LabeledGroup)
    assert semi_supervised(g, alpha=1.0).scores == [0.0, 0.0, 1.0, 0.0]  # gold: answer 3
    assert semi_supervised(g, alpha=0.0).scores == [1.0, 1.0, 0.0, 0.0]  # majority vote
    assert semi_supervised(g, labelled=["p1"], alpha=0.0).components["labelled"] == [1.0] * 4
    assert semi_supervised(g, labelled=["other"], alpha=1.0).components["labelled"] == [0.0] * 4
    assert semi_supervised(labelled_group(gold_answer=None), alpha=1.0).scores == [1.0, 1.0, 0.0, 0.0]
    out = semi_supervised(g, alpha=0.0, intrinsic="srt", intrinsic_options={"mode": "soft"})
    assert out.scores == [0.5, 0.5, 0.25, 0.0] and out.components["srt/accepted"] == [1.0] * 4


def test_the_intrinsic_reward_never_receives_the_labeled_group(monkeypatch):
    seen = []

    def spy(group):
        seen.append(group)
        return [0.0] * len(group)

    monkeypatch.setitem(_REGISTRY, "_spy", RewardSpec("_spy", spy))
    original = labelled_group()
    semi_supervised(original, alpha=0.0, intrinsic="_spy")
    (g,) = seen
    assert type(g) is Group and not hasattr(g, "gold") and not hasattr(g, "check")
    assert g.completions is original.completions and g.problem is original.problem
    monkeypatch.setitem(_REGISTRY, "_gold_spy", RewardSpec("_gold_spy", spy, needs_gold=True))
    with pytest.raises(UrlvrError, match="needs gold"):
        semi_supervised(labelled_group(), alpha=0.0, intrinsic="_gold_spy")


def test_label_free_drops_gold_and_the_labelled_share_is_stable():
    assert type(labelled_group().label_free()) is Group
    share = sum(is_labelled(f"q{i}", 0.2) for i in range(2000)) / 2000
    assert share == pytest.approx(0.2, abs=0.03)
    assert [is_labelled(f"q{i}", 0.2) for i in range(50)] == [is_labelled(f"q{i}", 0.2) for i in range(50)]
    with pytest.raises(UrlvrError, match="alpha"):
        semi_supervised(labelled_group(), alpha=2.0)


def test_controls():
    g = labelled_group()
    assert get_reward("gold").needs_gold and not get_reward("random").needs_gold
    assert gold(g) == [0.0, 0.0, 1.0, 0.0]
    assert gold(labelled_group(gold_answer=None)) == [None] * 4
    assert format_only(g) == [1.0, 1.0, 1.0, 0.0]
    c = g.completions[0]
    many = dataclasses.replace(g, completions=tuple(dataclasses.replace(c, text=str(i)) for i in range(400)))
    flips = random_reward(many, p=0.3)
    assert set(flips) == {0.0, 1.0} and sum(flips) / 400 == pytest.approx(0.3, abs=0.08)
    assert random_reward(g, seed=1) == random_reward(g, seed=1)
