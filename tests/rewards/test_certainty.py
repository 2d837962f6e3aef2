"""Certainty rewards against the published formulas, on hand-computed logits (METHODS §2)."""

import math

import pytest
import torch

from rewards._groups import EOS, PEAKED, UNIFORM, V, completion, group
from urlvr.errors import UrlvrError
from urlvr.rewards.certainty import (answer_span, answer_token_positions, probability, probability_disparity,
                                     self_certainty, token_entropy, trajectory_entropy)

LOG_V = math.log(V)
TINY = 1e-6  # near one-hot residue: H, KL gap and log p at logits (20, 0, 0, 0) are ~1e-7
SURE = [PEAKED, PEAKED, [0.0, 0.0, 20.0, 0.0]]  # near one-hot on the sampled tokens "a", "b" (id 0), EOS (id 2)


def scores(reward, texts_rows, **options):
    return reward(group([completion(t, rows) for t, rows in texts_rows]), **options)


# (reward, options, rows of one 3-token response (2 chars + EOS), expected)
CASES = [
    (self_certainty, {}, [UNIFORM] * 3, 0.0),  # true KL(U || U) = 0
    (self_certainty, {"form": "kl_plus_log_v"}, [UNIFORM] * 3, LOG_V),  # logsumexp(z) - mean(z)
    (self_certainty, {}, SURE, 15 - LOG_V),  # -mean_v log p(v) - log V, log p = (20, 0, 0, 0) - 20
    (token_entropy, {}, [UNIFORM] * 3, -LOG_V),  # H(uniform) = log V
    (token_entropy, {}, SURE, 0.0),
    (trajectory_entropy, {}, [UNIFORM] * 3, -3 * LOG_V),  # EM-RL: sum
    (trajectory_entropy, {"reduce": "mean"}, [UNIFORM] * 3, -LOG_V),  # URLVR code: mean
    (probability, {}, [UNIFORM] * 3, V ** -3),
    (probability, {"log_space": True}, [UNIFORM] * 3, -3 * LOG_V),
    (probability, {}, SURE, 1.0),
    (probability_disparity, {}, [UNIFORM] * 3, 0.0),
    (probability_disparity, {}, SURE, 1.0),
]


@pytest.mark.parametrize("reward,options,rows,expected", CASES,
                         ids=[f"{c[0].__name__}-{c[1]}-{'uniform' if c[2][0] == UNIFORM else 'peaked'}" for c in CASES])
def test_hand_computed_values(reward, options, rows, expected):
    (got,) = scores(reward, [("ab", rows)], **options)
    tolerance = 1e-4 if expected == 0 or abs(expected) > 1e-3 else expected * 1e-4
    assert got == pytest.approx(expected, abs=max(tolerance, TINY))


def test_self_certainty_of_peaked_logits_is_the_uniform_cross_entropy_minus_log_v():
    logits = torch.tensor(PEAKED)
    expected = float(-torch.log_softmax(logits, -1).mean()) - LOG_V
    assert self_certainty(group([completion("ab", [PEAKED] * 3)]))[0] == pytest.approx(expected, rel=1e-5)


# ---- parity knobs on a response whose three positions have distinct statistics ------------------

ROWS = [UNIFORM, PEAKED, [2.0, 1.0, 0.0, 0.0]]  # the EOS position is the third


def entropies():
    return [float(v) for v in completion("ab", ROWS).entropy]


@pytest.mark.parametrize("options,eos,pick", [
    ({}, True, [0, 1, 2]),
    ({"include_eos": False}, True, [0, 1]),
    ({"include_eos": False}, False, [0, 1, 2]),  # truncated: no EOS position to drop
    ({"alignment": "shifted"}, True, [1, 2]),  # s_2..s_T: the statistic after the last token is not kept
    ({"alignment": "shifted", "include_eos": False}, True, [1, 2]),
])
def test_alignment_and_eos_select_positions(options, eos, pick):
    h = entropies()
    text = "ab" if eos else "abc"
    got = token_entropy(group([completion(text, ROWS, ids=[0, 0, EOS] if eos else [0, 0, 0], eos=eos)]),
                        **options)[0]
    assert got == pytest.approx(-sum(h[i] for i in pick) / len(pick), abs=1e-6)
    total = token_entropy(group([completion(text, ROWS, ids=[0, 0, EOS] if eos else [0, 0, 0], eos=eos)]),
                          reduce="sum", **options)[0]
    assert total == pytest.approx(-sum(h[i] for i in pick), abs=1e-6)


def test_mean_over_no_position_is_none_and_sum_is_zero():
    bare_eos = group([completion("", [UNIFORM], ids=[EOS])])
    assert token_entropy(bare_eos, include_eos=False) == [None]
    assert token_entropy(bare_eos, alignment="shifted") == [None]
    assert token_entropy(bare_eos, include_eos=False, reduce="sum") == [0.0]


def test_rent_penalises_answer_less_completions():
    g = group([completion("\\boxed{2}"), completion("no answer")])
    assert token_entropy(g, no_answer_penalty=-7) == [pytest.approx(-LOG_V), -7.0]


def test_probability_underflows_to_zero_in_fp32_and_the_log_space_variant_does_not():
    long = group([completion("x" * 79, [UNIFORM] * 80)])  # Σ log p = -80 log 4 = -110.9 < -104
    assert probability(long) == [0.0]
    assert probability(long, log_space=True)[0] == pytest.approx(-80 * LOG_V, rel=1e-5)
    assert probability(long, log_space=True) == trajectory_entropy(long, reduce="sum")


def test_bad_knobs_raise_one_clear_error():
    g = group([completion("ab")])
    with pytest.raises(UrlvrError, match="temperature=0.7.*sampling temperature"):
        self_certainty(g, temperature=0.7)
    with pytest.raises(UrlvrError, match="alignment"):
        token_entropy(g, alignment="left")
    with pytest.raises(UrlvrError, match="reduce"):
        trajectory_entropy(g, reduce="max")
    with pytest.raises(UrlvrError, match="form"):
        self_certainty(g, form="kl_minus")


def test_statistics_follow_the_sampling_temperature():
    hot = completion("ab", SURE, temperature=100.0)  # τ flattens the distribution
    assert token_entropy(group([hot]))[0] < -1.3


# ---- probability disparity: the answer span --------------------------------------------------------

def test_answer_span_is_the_last_closed_box_content():
    text = "x \\boxed{1} y \\boxed{ 23 } \\boxed{4"
    start, end = answer_span(text)
    assert text[start:end] == "23" and text[start - 1] == " "
    assert answer_span("none") is None


def test_disparity_averages_over_the_answer_tokens_only():
    text = "ab\\boxed{12}"  # characters 9 and 10 are the answer
    rows = [PEAKED if i in (9, 10) else UNIFORM for i in range(len(text))] + [UNIFORM]
    g = group([completion(text, rows), completion("ab", [PEAKED, UNIFORM, UNIFORM])])
    span, no_answer = probability_disparity(g)
    assert span == pytest.approx(1.0, abs=TINY)
    assert no_answer == pytest.approx(1 / 3, abs=TINY)  # no answer: every token


@pytest.mark.parametrize("reward,peaked,uniform", [(self_certainty, 15 - LOG_V, 0.0), (token_entropy, 0.0, -LOG_V)])
def test_span_answer_reads_the_answer_tokens_only(reward, peaked, uniform):
    text = "ab\\boxed{12}"  # characters 9 and 10 are the answer
    rows = [SURE[0] if i in (9, 10) else UNIFORM for i in range(len(text))] + [UNIFORM]
    g = group([completion(text, rows), completion("ab", [UNIFORM, UNIFORM, UNIFORM])])
    answer, no_answer = reward(g, span="answer")
    assert answer == pytest.approx(peaked, abs=TINY)
    assert no_answer == pytest.approx(uniform, abs=TINY)  # no answer: every token
    everything = reward(g)[0]
    assert everything == pytest.approx((2 * peaked + 11 * uniform) / 13, abs=TINY)
    with pytest.raises(UrlvrError, match="unknown span"):
        reward(g, span="middle")


def test_disparity_with_a_multi_character_tokenizer():
    pieces = {10: "ab", 11: "\\boxed{", 12: "12", 13: "}", EOS: ""}

    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(pieces[i] for i in ids)

    c = completion("ab\\boxed{12}", [UNIFORM, UNIFORM, PEAKED, UNIFORM, UNIFORM], ids=[10, 11, 12, 13, EOS])
    assert answer_token_positions(c, Tok()).tolist() == [2]
    assert probability_disparity(group([c]), tokenizer=Tok())[0] == pytest.approx(1.0, abs=TINY)
    with pytest.raises(UrlvrError, match="tokenizer"):
        probability_disparity(group([c]))  # 5 tokens for 12 characters: cannot be located blind
