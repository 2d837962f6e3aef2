"""SCOPE (urlvr/rewards/scope.py): steps, confidences, weighted votes, the g search, on hand-computed groups.

SCOPE is order-dependent by design (subgroups are consecutive responses; vote sets are drawn by
position), so there is no general order-invariance test: instead, the reward is a function of the seed,
the problem and the ordered completions, and it is invariant to order exactly where the rule is (one
subgroup voting on every response).
"""

import inspect
import random

import pytest
import torch

from rewards._groups import group
from urlvr.answers import extract_boxed
from urlvr.errors import UrlvrError
from urlvr.rewards import get_reward
from urlvr.rewards.scope import (choose_g, g_candidates, response_confidence, scope, step_spans, subgroup_labels,
                                 subgroup_rewards, weighted_vote)
from urlvr.types import Completion


def comp(text, surprisal=1.0, conf=1.0, tokens=None):
    """A completion, one token per character + EOS unless ``tokens`` ids are given; constant or per-token stats."""
    ids = tokens if tokens is not None else [0] * len(text) + [2]

    def per_token(x):
        return torch.as_tensor(x, dtype=torch.float32) if isinstance(x, list) else torch.full((len(ids),), float(x))

    stats = {"logprob": -per_token(surprisal), "confidence": per_token(conf)}
    return Completion(text, extract_boxed(text), torch.tensor(ids), stats)


def boxed(a):
    return "\\boxed{" + a + "}"


class Vocab:
    """A hand-made vocabulary: ``token_texts`` as the trainer's sampler gives it (each id decoded alone)."""

    def __init__(self, pieces):
        self.pieces = pieces

    def token_texts(self, ids):
        return [self.pieces[i] for i in ids]


# ---- steps and confidences -------------------------------------------------------------------------

@pytest.mark.parametrize("pieces, rule, spans", [
    (["a", ".\n\n", "b", "\n\n", "c"], "token", [(0, 2), (2, 4), (4, 5)]),
    (["a", "\n\n"], "token", [(0, 2)]),  # a closing mark leaves no remainder
    ([], "token", []),
    (["a", "\n", "\n", "b"], "token", [(0, 4)]),  # the code: a mark split over two tokens does not cut
    (["a", "\n", "\n", "b"], "text", [(0, 3), (3, 4)]),  # ours: it does, on the token where it ends
    (["\n", "\n", "\n", "x"], "text", [(0, 2), (2, 4)]),  # occurrences do not overlap
    (["a", "x\n\ny", "b"], "text", [(0, 2), (2, 3)]),
    (["</s>"], "token", [(0, 1)]),
])
def test_step_spans(pieces, rule, spans):
    assert step_spans(pieces, rule) == spans


def test_response_confidence_is_the_mean_of_step_means():
    assert response_confidence(torch.tensor([1.0, 2, 3, 4, 5]), [(0, 2), (2, 5)]) == pytest.approx((1.5 + 4) / 2)
    assert response_confidence(torch.tensor([1.0, 2, 3]), [(0, 3)]) == pytest.approx(2.0)
    assert response_confidence(torch.zeros(0), []) == 0.0  # an empty response


def test_the_confidence_component_per_rule_and_source():
    # "a\n\nb" + EOS: per-token C_t below; steps by characters (no scorer)
    text = "a\n\nb"
    per = [1.0, 2.0, 3.0, 4.0, 6.0]
    g = group([comp(text, surprisal=per, conf=[10 * x for x in per])])
    C = lambda **kw: scope(g, g=1, **kw).components["scope/confidence"][0]  # noqa: E731
    assert C() == pytest.approx(sum(per) / 5)  # one step: no single character holds "\n\n"
    assert C(steps="text") == pytest.approx(((1 + 2 + 3) / 3 + (4 + 6) / 2) / 2)  # cut after the second "\n"
    assert C(confidence="topk", steps="text") == pytest.approx(10 * ((1 + 2 + 3) / 3 + (4 + 6) / 2) / 2)
    assert scope(group([comp("", tokens=[])]), g=1).components["scope/confidence"] == [0.0]  # empty: C = 0


def test_steps_from_the_scorers_token_strings():
    vocab = Vocab(["x", ".\n\n", "y", "</s>"])
    c = comp("x.\n\ny", surprisal=[1.0, 3.0, 5.0, 7.0], tokens=[0, 1, 2, 3])  # 4 tokens for 5 characters
    out = scope(group([c]), g=1, scorer=vocab)
    assert out.components["scope/confidence"] == pytest.approx([((1 + 3) / 2 + (5 + 7) / 2) / 2])
    with pytest.raises(UrlvrError, match="pass scorer="):  # without the decoder it cannot be cut
        scope(group([c]), g=1)


# ---- the vote ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ids, conf, members, pairing, label", [
    ([0, 0, 1], [0.1, 0.1, 0.5], [0, 1, 2], "own", 1),  # weight beats count
    ([0, 1, 1], [1.0, 0.5, 0.5], [0, 1, 2], "own", 0),  # a tie: the answer seen first
    ([0, 1, 1], [1.0, 0.5, 0.5], [2, 1, 0], "own", 1),  # first seen in the draw order
    ([None, 0, 1], [5.0, 1.0, 2.0], [0, 1, 2], "own", 1),  # answer-less responses do not vote
    ([None, 0, 1], [5.0, 1.0, 2.0], [0, 1, 2], "code", 0),  # the code: answers zipped with unfiltered weights
    ([None, None], [1.0, 1.0], [0, 1], "own", None),  # no parsable answer: no label
    ([0, 1, 2], [1.0, 9.0, 1.0], [0, 2], "own", 0),  # only the vote set counts
])
def test_weighted_vote(ids, conf, members, pairing, label):
    assert weighted_vote(ids, conf, members, pairing) == label


def test_subgroup_rewards_follow_their_own_label():
    assert subgroup_rewards([0, 1, 1, None], [0, 1], 2) == [1.0, 0.0, 1.0, 0.0]
    assert subgroup_rewards([0, 0], [None], 2) == [0.0, 0.0]  # no label: 0


def test_vote_sets_are_drawn_without_replacement_from_all_responses():
    ids, conf = [0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0]
    seen = []
    r = random.Random(0)
    for _ in range(50):
        labels = subgroup_labels(ids, conf, 1, 4, r)  # V = N: every subgroup votes on everything
        assert labels == [3, 3, 3, 3]
        seen += subgroup_labels(ids, conf, 1, 2, r)  # V = 2: the heavier of two distinct responses
    assert set(seen) == {1, 2, 3}  # 0 can never win against another response; all others do


# ---- choosing g ---------------------------------------------------------------------------------------

def test_g_candidates_are_powers_of_two_dividing_n_and_n():
    assert g_candidates(64) == [1, 2, 4, 8, 16, 32, 64]
    assert g_candidates(12) == [1, 2, 4, 12]
    assert g_candidates(6) == [1, 2, 6]
    assert g_candidates(1) == [1]


ROWS = [(1, 0.5, 4.0), (2, 0.6, 3.0), (4, 0.55, 2.0), (8, 0.9, 1.0)]  # g=4 is dominated by g=2


@pytest.mark.parametrize("rows, lam, g", [
    # front {1, 2, 8}; R̃ = 0, 1/4, 1; D̃ = 1, 2/3, 0
    (ROWS, 0.7, 8),  # distances √0.7 = .837, √(.7·.5625 + .3·.111) = .654, √0.3 = .548
    (ROWS, 0.3, 2),  # √0.3 = .548, √(.3·.5625 + .7·.111) = .497, √0.7 = .837
    (ROWS, 1.0, 8), (ROWS, 0.0, 1),
    ([(1, 0.5, 2.0), (2, 0.5, 2.0), (4, 0.5, 2.0)], 0.7, 1),  # all equal: ties go to the smaller g
    ([(1, 0.2, 1.0), (2, 0.4, 1.0)], 0.0, 2),  # g=1 is dominated (same D, lower R): off the front
])
def test_choose_g_pareto_min_max_weighted_distance(rows, lam, g):
    assert choose_g(rows, lam) == g


# ---- whole groups -------------------------------------------------------------------------------------

def test_sampled_confidence_is_a_surprisal_and_topk_is_a_confidence():
    comps = [comp(boxed("2"), surprisal=0.1, conf=2.0), comp(boxed("2"), surprisal=0.1, conf=2.0),
             comp(boxed("3"), surprisal=0.5, conf=3.0), comp("?", surprisal=9.0, conf=9.0)]
    g = group(comps)
    assert scope(g, g=4).scores == [0.0, 0.0, 1.0, 0.0]  # code: 0.5 > 0.1 + 0.1, the less certain wins
    assert scope(g, g=4, confidence="topk").scores == [1.0, 1.0, 0.0, 0.0]  # paper: 2 + 2 > 3
    assert scope(g, g=4).components["scope/g"] == [4.0] * 4
    assert scope(g, g=4).components["scope/labels"] == [1.0] * 4


def test_the_default_confidence_is_the_codes():
    assert inspect.signature(scope).parameters["confidence"].default == "sampled"


def test_every_subgroup_votes_on_all_responses_when_v_is_n():
    comps = [comp(boxed(a), surprisal=s) for a, s in [("2", 1.0), ("3", 0.4), ("2", 1.0), ("3", 0.4)]]
    out = scope(group(comps), g=1, votes=99)  # V capped at N = 4
    assert out.scores == [1.0, 0.0, 1.0, 0.0] and out.components["scope/labels"] == [1.0] * 4


def test_a_unanimous_group_searches_to_g_1():
    # every g: R = 1, D = 1 -> the whole front ties -> the smallest g
    out = scope(group([comp(boxed("5")) for _ in range(8)]), votes=3)
    assert out.scores == [1.0] * 8 and out.components["scope/g"] == [1.0] * 8


def test_no_parsable_answer_gives_zeros():
    out = scope(group([comp("?") for _ in range(4)]), votes=2)
    assert out.scores == [0.0] * 4 and out.components["scope/labels"] == [1.0] * 4  # "no label" is one label


def split_group():
    """Eight responses, half 2 and half 3, confidences close enough that small vote sets disagree."""
    answers = ["2", "3", "2", "3", "3", "2", "3", "2"]
    return group([comp(boxed(a), surprisal=1.0 + 0.01 * k) for k, a in enumerate(answers)])


def test_the_reward_is_a_function_of_seed_problem_and_ordered_texts():
    g = split_group()
    first = scope(g, votes=3, seed=1)
    assert scope(split_group(), votes=3, seed=1).scores == first.scores  # the same group draws the same
    outcomes = {tuple(scope(g, votes=3, seed=s).scores) for s in range(12)}
    assert len(outcomes) > 1, "the seed changes the vote sets"
    assert set(first.components["scope/g"]) <= {1.0, 2.0, 4.0, 8.0} and len(set(first.components["scope/g"])) == 1


def test_redraw_false_reuses_the_search_draw_for_the_chosen_g():
    g = split_group()
    outcomes = set()
    for s in range(12):
        a, b = scope(g, votes=3, seed=s), scope(g, votes=3, seed=s, redraw=False)
        assert a.components["scope/g"] == b.components["scope/g"]  # the same search, only the final draw differs
        outcomes.add(a.scores != b.scores)
    assert True in outcomes, "a fresh draw must be able to change the labels"


def test_invariant_to_order_where_the_rule_is():
    # one subgroup voting on every response: the label is the weighted argmax (no tie), whatever the order
    comps = [comp(boxed(a), surprisal=s) for a, s in [("2", 0.3), ("3", 0.5), ("2", 0.3), ("4", 0.2), ("?", 5.0)]]
    base = scope(group(comps), g=5, votes=5).scores
    for trial in range(4):
        perm = list(range(5))
        random.Random(trial).shuffle(perm)
        assert scope(group([comps[i] for i in perm]), g=5, votes=5).scores == [base[i] for i in perm]


@pytest.mark.parametrize("options, match", [
    ({"g": 3}, "must be a positive integer dividing the group size 4"),
    ({"votes": 0}, "votes must be a positive integer"),
    ({"lam": 1.5}, "lam must be in"),
    ({"confidence": "mean"}, "unknown scope confidence"),
    ({"steps": "lines"}, "unknown scope steps rule"),
    ({"pairing": "shifted"}, "unknown scope pairing"),
])
def test_bad_options_fail_with_one_line(options, match):
    with pytest.raises(UrlvrError, match=match):
        scope(group([comp(boxed("2")) for _ in range(4)]), **options)


def test_topk_needs_the_confidence_statistic():
    c = Completion(boxed("2"), "2", torch.zeros(9).long(), {"logprob": torch.zeros(9)})
    with pytest.raises(UrlvrError, match="per-token statistic 'confidence'"):
        scope(group([c]), g=1, confidence="topk")


def test_registered_with_logits_and_scorer():
    spec = get_reward("scope")
    assert (spec.family, spec.needs_group, spec.needs_logits, spec.needs_scorer, spec.needs_gold) == \
        ("ensemble", True, True, True, False)
