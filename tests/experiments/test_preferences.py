"""What a reward prefers inside a group (urlvr.experiments.preferences), on hand-built groups: pairs only
inside a group, ties, completions without a reward, groups without a pair, the self-certainty head/tail split
and the span split. No model is trained here."""

import math

import pytest
import torch

from urlvr.experiments.preferences import (base_rate, kl_uniform_parts, span_contributions, top_choice_accuracy,
                                           within_group_auc)


def test_auc_compares_only_completions_of_the_same_group():
    # across groups the correct 0.1 would lose to the wrong 5.0; inside each group the correct one wins
    rewards = [[0.1, 0.0], [6.0, 5.0]]
    correct = [[True, False], [True, False]]
    assert within_group_auc(rewards, correct) == 1.0
    assert within_group_auc([[0.0, 0.1], [5.0, 6.0]], correct) == 0.0


def test_auc_counts_ties_half_and_skips_missing_rewards_and_one_sided_groups():
    assert within_group_auc([[1.0, 1.0]], [[True, False]]) == 0.5
    # None rewards drop out of the pairs: only (2.0 correct, 1.0 wrong) is left
    assert within_group_auc([[2.0, None, 1.0, None]], [[True, True, False, False]]) == 1.0
    # an all-correct group has no pair; with no pair anywhere the AUC is undefined
    assert within_group_auc([[1.0, 2.0]], [[True, True]]) is None
    assert within_group_auc([[1.0, 2.0], [3.0, 1.0]], [[True, True], [False, True]]) == 0.0  # group 2 alone


def test_top_choice_takes_the_first_of_tied_maxima_and_skips_unscored_groups():
    assert top_choice_accuracy([[1.0, 1.0]], [[False, True]]) == 0.0
    assert top_choice_accuracy([[1.0, 1.0]], [[True, False]]) == 1.0
    assert top_choice_accuracy([[None, None], [None, 3.0, 2.0]], [[True, True], [True, False, True]]) == 0.0
    assert top_choice_accuracy([[None]], [[True]]) is None


def test_base_rate_is_the_mean_of_group_shares_not_of_completions():
    assert base_rate([[True], [False, False, False]]) == 0.5  # per completion it would be 0.25
    assert base_rate([]) is None


def test_kl_uniform_parts_sum_to_self_certainty_and_split_head_from_tail():
    torch.manual_seed(0)
    lp = torch.log_softmax(torch.randn(3, 5, 40) * 3, -1)
    head, tail = kl_uniform_parts(lp, k=3)
    kl = (-math.log(40) - lp).mean(-1)  # KL(U ‖ p) per position
    assert head.shape == tail.shape == (3, 5)
    assert torch.allclose(head + tail, kl, atol=1e-5)
    assert (tail > 0).all()  # the tail is below uniform on average
    top1, _ = kl_uniform_parts(lp, k=1)
    assert (top1 <= 0).all()  # the most probable token is never below uniform
    uniform = torch.full((7,), -math.log(7))
    h, t = kl_uniform_parts(uniform, k=2)
    assert abs(float(h)) < 1e-6 and abs(float(t)) < 1e-6  # a uniform p has KL 0 in both parts


def test_span_contributions_sum_to_the_mean_and_follow_the_answer():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    parts = span_contributions(values, torch.tensor([1, 2]))
    assert parts == pytest.approx({"format": 0.2, "answer": 1.0, "end": 1.8})
    assert sum(parts.values()) == pytest.approx(float(values.mean()))
    assert span_contributions(values, None) == pytest.approx({"format": 3.0, "answer": 0.0, "end": 0.0})
    assert span_contributions(values, torch.tensor([], dtype=torch.long))["format"] == pytest.approx(3.0)
