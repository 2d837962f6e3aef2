"""Per-token statistics on hand-computed tensors (urlvr/stats.py)."""

import doctest
import math

import pytest
import torch

import urlvr.stats
from urlvr.errors import UrlvrError
from urlvr.stats import (
    STAT_NAMES, masked_mean, sampled_logprobs, self_certainty, token_entropy, token_stats, top2_gap,
)


def test_doctests():
    assert doctest.testmod(urlvr.stats).failed == 0


def test_uniform_logits_entropy_log_v_and_self_certainty_zero():
    V = 7
    logits = torch.full((2, 3, V), 0.3)
    tokens = torch.tensor([[0, 3, 6], [1, 2, 5]])
    s = token_stats(logits, tokens)
    torch.testing.assert_close(s.entropy, torch.full((2, 3), math.log(V)))
    torch.testing.assert_close(s.self_certainty, torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(s.logprob, torch.full((2, 3), -math.log(V)))
    torch.testing.assert_close(s.top2_gap, torch.zeros(2, 3))


def test_one_hot_like_logits_entropy_near_zero():
    logits = torch.tensor([[[50.0, 0.0, 0.0, 0.0]]])
    s = token_stats(logits, torch.tensor([[0]]))
    assert s.entropy.item() == pytest.approx(0.0, abs=1e-12)
    assert s.logprob.item() == pytest.approx(0.0, abs=1e-12)
    assert s.top2_gap.item() == pytest.approx(1.0, abs=1e-12)
    # KL(U || p) = -(1/V) Σ log p - log V = (0 + 3·50)/4 - log 4 (up to exp(-50) terms)
    assert s.self_certainty.item() == pytest.approx(150 / 4 - math.log(4), rel=1e-6)


def test_hand_computed_two_token_distribution():
    # p = (0.75, 0.25) from logits (log 3, 0)
    logits = torch.tensor([[[math.log(3.0), 0.0]]])
    s = token_stats(logits, torch.tensor([[1]]))
    assert s.logprob.item() == pytest.approx(math.log(0.25), rel=1e-6)
    assert s.entropy.item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), rel=1e-6)
    assert s.self_certainty.item() == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2 - math.log(2), rel=1e-6)
    assert s.top2_gap.item() == pytest.approx(0.5, rel=1e-6)


def test_logprob_equals_log_softmax_gather_and_sampled_logprobs():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 3
    tokens = torch.randint(0, 11, (3, 5), generator=g)
    expected = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(token_stats(logits, tokens).logprob, expected)
    torch.testing.assert_close(sampled_logprobs(logits, tokens), expected)
    ent = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(token_stats(logits, tokens).entropy, ent)
    torch.testing.assert_close(token_entropy(logits), ent)
    top = torch.softmax(logits, -1).topk(2, -1).values
    torch.testing.assert_close(top2_gap(logits), top[..., 0] - top[..., 1])


def test_temperature_divides_logits():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 9, generator=g)
    tokens = torch.randint(0, 9, (2, 4), generator=g)
    hot = token_stats(logits, tokens, temperature=0.5)
    ref = token_stats(logits * 2, tokens)
    for a, b in zip(hot.values(), ref.values()):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(sampled_logprobs(logits, tokens, temperature=0.5), ref.logprob)
    # and it is not a no-op
    assert not torch.allclose(hot.entropy, token_stats(logits, tokens).entropy)
    with pytest.raises(UrlvrError):
        token_stats(logits, tokens, temperature=0.0)


def test_self_certainty_plus_log_v_form():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 6, generator=g)
    tokens = torch.zeros(2, 3, dtype=torch.long)
    kl = token_stats(logits, tokens).self_certainty
    plus = token_stats(logits, tokens, form="kl_plus_log_v").self_certainty
    torch.testing.assert_close(plus, kl + math.log(6))
    torch.testing.assert_close(plus, torch.logsumexp(logits, -1) - logits.mean(-1))
    torch.testing.assert_close(self_certainty(logits, form="kl_plus_log_v"), plus)
    assert (kl >= 0).all()
    with pytest.raises(UrlvrError, match="kl_plus_log_v"):
        self_certainty(logits, form="klv")


def test_chunking_matches_unchunked():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 7, 5, generator=g)
    tokens = torch.randint(0, 5, (2, 7), generator=g)
    full = token_stats(logits, tokens)
    chunked = token_stats(logits, tokens, chunk_size=3)
    assert list(full) == list(chunked) == list(STAT_NAMES)
    for a, b in zip(full.values(), chunked.values()):
        assert a.shape == (2, 7)
        torch.testing.assert_close(a, b)


def test_numerically_stable_extreme_and_masked_logits():
    logits = torch.tensor([[[1e4, 0.0, -1e4], [0.0, float("-inf"), 1.0]]])
    s = token_stats(logits, torch.tensor([[0, 2]]))
    assert torch.isfinite(s.logprob).all() and torch.isfinite(s.entropy).all()
    assert torch.isfinite(s.top2_gap).all()
    assert s.entropy[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    p = torch.softmax(torch.tensor([0.0, 1.0]), -1)
    assert s.entropy[0, 1].item() == pytest.approx(-(p * p.log()).sum().item(), rel=1e-6)
    assert s.self_certainty[0, 1].item() == math.inf  # p(v) = 0 makes KL(U || p) infinite
    assert s.self_certainty[0, 0].item() == pytest.approx((0 + 1e4 + 2e4) / 3 - math.log(3), rel=1e-6)


def test_half_precision_upcast():
    logits = torch.randn(1, 3, 8).to(torch.bfloat16)
    tokens = torch.tensor([[1, 2, 3]])
    s = token_stats(logits, tokens)
    assert s.entropy.dtype == torch.float32
    torch.testing.assert_close(s.entropy, token_stats(logits.float(), tokens).entropy)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        token_stats(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0, float("inf")], [4.0, float("nan"), 6.0]])
    m = torch.tensor([[True, True, False], [True, False, True]])
    assert masked_mean(x, m).item() == pytest.approx(13 / 4)
    torch.testing.assert_close(masked_mean(x, m, dim=1), torch.tensor([1.5, 5.0]))
    torch.testing.assert_close(masked_mean(x, m.float(), dim=1), torch.tensor([1.5, 5.0]))
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0


@pytest.mark.parametrize("V", [100, 49152, 49152 + 77])
def test_shared_passes_give_each_statistic_of_the_table(V):
    """stats_from_log_probs (one top-k, by blocks on a large vocabulary; the caller's probabilities) equals each
    TOKEN_STATS entry computed on its own, with ties at the top and -inf entries."""
    from urlvr.stats import TOKEN_STATS, _log_probs, _top_values, stats_from_log_probs

    g = torch.Generator().manual_seed(V)
    z = torch.randn(3, 4, V, generator=g) * 3
    z[0, 0, :5] = 30.0  # a five-way tie for the top
    z[1, :, 7::11] = float("-inf")
    z[2, 1, V // 2] = 40.0  # one block holds everything
    logp = _log_probs(z, 0.8)
    tokens = torch.randint(0, 5, (3, 4), generator=g)
    for k in (1, 2, 20):
        assert torch.equal(_top_values(logp, k), logp.topk(k, dim=-1).values)
    got = stats_from_log_probs(logp, tokens, probs=logp.exp())
    assert list(got) == list(TOKEN_STATS)
    for name, fn in TOKEN_STATS.items():
        torch.testing.assert_close(got[name], fn(logp, tokens), atol=1e-6, rtol=1e-6, msg=name)
    assert got.top2_gap[0, 0].item() == 0.0


def test_statistics_stay_float32_under_autocast():
    """A sampler under bf16 autocast computes its statistics from float32 log-probs: no entry may drop to bf16."""
    from urlvr.stats import _log_probs, stats_from_log_probs

    logp = _log_probs(torch.randn(4, 300) * 2, 1.0)
    tokens = torch.arange(4)
    want = stats_from_log_probs(logp, tokens, probs=logp.exp())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = stats_from_log_probs(logp, tokens, probs=logp.exp())
        plain = token_stats(logp[:, None], tokens[:, None])
    for name in STAT_NAMES:
        assert got[name].dtype == plain[name].dtype == torch.float32, name
        assert torch.equal(got[name], want[name]), name
