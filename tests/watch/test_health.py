"""Label-free health metrics on hand-built groups with known values."""

import ast
import math
from pathlib import Path

import pytest
import torch

from urlvr.watch import health
from urlvr.watch.health import (cluster_entropy, distinct_answers, group_clusters, health_metrics, majority_ratio,
                                  repetition_rate, token_mean, truncation_rate)
from urlvr.types import Completion, Group, Problem


def completion(answer, tokens=(5, 6, 2), entropy=None, sc=None, truncated=False):
    t = torch.tensor(tokens, dtype=torch.long)
    ent = torch.tensor(entropy if entropy is not None else [1.0] * len(tokens))
    stats = {"logprob": torch.zeros(len(tokens)), "entropy": ent,
             "self_certainty": torch.tensor(sc if sc is not None else [0.5] * len(tokens)),
             "top2_gap": torch.zeros(len(tokens))}
    return Completion(text="" if answer is None else "\\boxed{" + answer + "}", answer=answer, token_ids=t,
                      stats=stats, truncated=truncated)


def group(*comps):
    return Group(problem=Problem("p", "1+1"), prompt="1+1=", completions=tuple(comps))


@pytest.mark.parametrize("ids, ratio, n_distinct", [
    ([0, 0, 0, 0], 1.0, 1),
    ([0, 0, 1, None], 0.5, 2),  # the answer-less completion stays in the denominator
    ([0, 1, 2, 3], 0.25, 4),
    ([None, None, None, None], 0.0, 0),
    ([None, None, 1, 2], 0.25, 2),  # answer-less completions do not vote
])
def test_majority_ratio_and_distinct_answers(ids, ratio, n_distinct):
    assert majority_ratio(ids) == ratio
    assert distinct_answers(ids) == n_distinct


@pytest.mark.parametrize("ids, expected", [
    ([0, 0, 0, 0], 0.0),
    ([0, 0, 1, 1], math.log(2)),
    ([0, 1, 2, 3], math.log(4)),
    ([0, 0, None, None], -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))),  # None = singletons
])
def test_cluster_entropy(ids, expected):
    assert cluster_entropy(ids) == pytest.approx(expected)


def test_repetition_rate():
    assert repetition_rate([1, 2, 3, 4, 5]) == 0.0
    assert repetition_rate([7] * 6) == pytest.approx(3 / 4)  # four 3-grams, one distinct
    assert repetition_rate([1, 2]) == 0.0  # no 3-gram at all
    assert repetition_rate([1, 2, 1, 2], n=2) == pytest.approx(1 / 3)


def test_token_mean_weighs_tokens_not_completions():
    assert token_mean([torch.tensor([0.0, 0.0, 0.0]), torch.tensor([4.0])]) == 1.0
    assert token_mean([]) == 0.0


def test_truncation_rate():
    assert truncation_rate([completion("1", truncated=True), completion("1"), completion("2"), completion(None)]) == 0.25
    assert truncation_rate([]) == 0.0


def test_health_metrics_on_a_hand_built_batch():
    g1 = group(completion("2", tokens=(5, 2), entropy=[1.0, 3.0], sc=[0.0, 2.0]),
               completion("2", tokens=(5, 2), entropy=[1.0, 1.0], sc=[1.0, 1.0]),
               completion("3", tokens=(5, 2), entropy=[1.0, 1.0], sc=[1.0, 1.0]),
               completion(None, tokens=(7, 7, 7, 7, 7, 7), entropy=[0.5] * 6, sc=[1.0] * 6, truncated=True))
    g2 = group(*[completion("4", tokens=(6, 2), entropy=[0.0, 0.0], sc=[3.0, 3.0]) for _ in range(4)])
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    valid = torch.ones(2, 4, dtype=torch.bool)
    m = health_metrics([g1, g2], rewards, valid)
    assert m["reward/mean"] == pytest.approx(6 / 8)
    assert m["reward/zero_std_frac"] == 0.5  # g2 is unanimous: no advantage
    assert m["diag/majority_ratio"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["diag/cluster_entropy"] == pytest.approx((-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) + 0) / 2)
    assert m["diag/distinct_answers"] == 1.5
    assert m["rollout/length_mean"] == pytest.approx((2 * 3 + 6 + 2 * 4) / 8)
    assert m["rollout/length_max"] == 6
    assert m["rollout/truncation_rate"] == 1 / 8
    assert m["rollout/unparsable_rate"] == 1 / 8
    assert m["rollout/repetition_rate"] == pytest.approx((3 / 4) / 8)
    # token-weighted: 20 tokens, entropy sum 1+3+1+1+1+1+3 = 11; self-certainty sum 2+2+2+6+24 = 36
    assert m["policy/entropy"] == pytest.approx(11 / 20)
    assert m["policy/self_certainty"] == pytest.approx(36 / 20)


def test_invalid_rewards_are_left_out_and_counted():
    g = group(completion("1"), completion("1"), completion("2"))
    m = health_metrics([g], torch.tensor([[1.0, float("nan"), 0.0]]), torch.tensor([[True, False, True]]))
    assert m["reward/mean"] == 0.5 and m["reward/failed"] == pytest.approx(1 / 3)


def test_group_clusters_uses_the_group_equivalence():
    g = group(completion("12"), completion(" 12"), completion("3"), completion(None))
    assert group_clusters([g]) == [[0, 0, 1, None]]


def test_health_never_imports_gold_or_oracle():
    tree = ast.parse(Path(health.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("oracle" in n or n.startswith("urlvr.tasks") for n in names if n), names
    assert "LabeledGroup" not in Path(health.__file__).read_text()
