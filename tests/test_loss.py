"""PPO-clip loss, aggregations, k3 KL and micro-batch invariance (urlvr/loss.py)."""

import doctest
import math

import pytest
import torch

import urlvr.loss
from urlvr.errors import UrlvrError
from urlvr.loss import LOSS_AGGREGATIONS, aggregate, get_loss_aggregation, kl_k3, loss_normaliser, policy_loss
from urlvr.stats import sampled_logprobs, token_entropy

RATIOS = [0.5, 0.95, 1.2, 1.5]


def test_doctests():
    assert doctest.testmod(urlvr.loss).failed == 0


def _ratios_batch():
    """Two sequences with ratios 0.5, 0.95, 1.2, 1.5 and advantages +2, -1."""
    logprob = torch.log(torch.tensor([RATIOS, RATIOS], dtype=torch.float64)).requires_grad_()
    old = torch.zeros(2, 4, dtype=torch.float64)
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    mask = torch.ones(2, 4, dtype=torch.bool)
    return logprob, old, adv, mask


def test_clipped_loss_by_hand_asymmetric_eps():
    logprob, old, adv, mask = _ratios_batch()
    # eps_low 0.1 -> lower bound 0.9; eps_high 0.3 -> upper bound 1.3
    # A = +2: r=0.5 -> -min(1.0, 1.8) = -1.0 | 0.95 -> -1.9 | 1.2 -> -2.4 | 1.5 -> -min(3.0, 2.6) = -2.6 (clipped)
    # A = -1: r=0.5 -> -min(-0.5, -0.9) = 0.9 (clipped) | 0.95 -> 0.95 | 1.2 -> 1.2 | 1.5 -> -min(-1.5, -1.3) = 1.5
    per_token = torch.tensor([[-1.0, -1.9, -2.4, -2.6], [0.9, 0.95, 1.2, 1.5]], dtype=torch.float64)
    loss, info = policy_loss(logprob, old, adv, mask, eps_low=0.1, eps_high=0.3)
    assert loss.item() == pytest.approx(per_token.mean().item(), rel=1e-12)
    assert info["clip_fraction"] == pytest.approx(2 / 8)
    assert info["ratio_mean"] == pytest.approx(sum(RATIOS) / 4)
    assert info["approx_kl"] == pytest.approx(sum(r - 1 - math.log(r) for r in RATIOS) / 4)
    assert all(isinstance(v, float) for v in info.values())
    # gradient w.r.t. log π: -A·r where the unclipped term is active, 0 where clipping holds it
    loss.backward()
    expected = torch.tensor([[-2 * 0.5, -2 * 0.95, -2 * 1.2, 0.0], [0.0, 0.95, 1.2, 1.5]], dtype=torch.float64) / 8
    torch.testing.assert_close(logprob.grad, expected)


def test_symmetric_default_clip_differs():
    logprob, old, adv, mask = _ratios_batch()
    # eps 0.2 both sides: A=+2, r=1.5 -> -2.4; A=-1, r=0.5 -> 0.8
    per_token = torch.tensor([[-1.0, -1.9, -2.4, -2.4], [0.8, 0.95, 1.2, 1.5]], dtype=torch.float64)
    loss, _ = policy_loss(logprob, old, adv, mask)
    assert loss.item() == pytest.approx(per_token.mean().item(), rel=1e-12)


def test_ratio_one_gives_minus_advantage():
    logprob = torch.zeros(3, 2)
    adv = torch.tensor([1.0, -2.0, 0.5])
    loss, info = policy_loss(logprob, logprob, adv, torch.ones(3, 2, dtype=torch.bool), agg="seq_mean_token_mean")
    assert loss.item() == pytest.approx(-adv.mean().item())
    assert info == {"clip_fraction": 0.0, "ratio_mean": 1.0, "approx_kl": 0.0}


X = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
M = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize("agg, max_tokens, expected, norm", [
    ("token_mean", None, 10 / 4, 4.0),                  # 10 over 4 valid tokens
    ("seq_mean_token_mean", None, (2 + 4) / 2, 2.0),    # token means 2 and 4; the empty sequence is skipped
    ("constant", 4, 10 / (3 * 4), 12.0),                # B · max_tokens
])
def test_aggregations_by_hand(agg, max_tokens, expected, norm):
    assert aggregate(X, M, agg, max_tokens=max_tokens).item() == pytest.approx(expected)
    assert loss_normaliser(M, agg, max_tokens) == norm
    given = aggregate(X, M.float(), agg, normaliser=5.0, max_tokens=max_tokens)
    assert given.item() == pytest.approx(expected * norm / 5)


def test_aggregation_errors():
    with pytest.raises(UrlvrError, match="max_tokens"):
        aggregate(X, M, "constant")
    with pytest.raises(UrlvrError, match="constant, seq_mean_token_mean, token_mean"):
        get_loss_aggregation("sum")
    with pytest.raises(ValueError):
        aggregate(X, M[:, :3], "token_mean")
    assert set(LOSS_AGGREGATIONS) == {"token_mean", "seq_mean_token_mean", "constant"}


def test_masked_tokens_ignored_even_if_nonfinite():
    logprob = torch.tensor([[0.1, float("nan")], [0.0, 50.0]])
    old = torch.zeros(2, 2)
    mask = torch.tensor([[True, False], [True, False]])
    loss, info = policy_loss(logprob, old, torch.tensor([1.0, 1.0]), mask)
    assert math.isfinite(loss.item()) and all(math.isfinite(v) for v in info.values())


def test_kl_k3():
    p = torch.tensor([[-1.0, -2.0, -0.5, -3.0]])
    q = torch.tensor([[-1.0, -1.0, -2.0, -3.0 + 1e-7]])
    k = kl_k3(p, q)
    d = q - p
    torch.testing.assert_close(k, d.exp() - d - 1)
    assert (k >= 0).all()
    assert k[0, 0].item() == 0.0
    assert k[0, 1].item() == pytest.approx(math.e - 2)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 20, generator=g), torch.randn(50, 20, generator=g) * 1e-4
    assert (kl_k3(a, a + b) >= 0).all()
    assert (kl_k3(a, a) == 0).all()


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "constant"])
def test_micro_batches_with_global_normaliser_match_full_batch(agg):
    torch.manual_seed(0)
    B, T, H, V, max_tokens = 6, 5, 4, 10, 5
    model = torch.nn.Linear(H, V)
    feats = torch.randn(B, T, H)
    tokens = torch.randint(0, V, (B, T))
    lengths = torch.tensor([1, 5, 3, 2, 4, 5])
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    with torch.no_grad():
        base = sampled_logprobs(model(feats), tokens)
    old = base + 0.4 * torch.randn(B, T)  # ratios far enough from 1 that some tokens clip
    ref = base + 0.3 * torch.randn(B, T)
    adv = torch.randn(B)

    def objective(sl, normaliser):
        logits = model(feats[sl])
        logp = sampled_logprobs(logits, tokens[sl])
        pg, info = policy_loss(logp, old[sl], adv[sl], mask[sl], eps_low=0.2, eps_high=0.28, agg=agg,
                               max_tokens=max_tokens, normaliser=normaliser)
        kl = aggregate(kl_k3(logp, ref[sl]), mask[sl], agg, normaliser, max_tokens)
        ent = aggregate(token_entropy(logits), mask[sl], agg, normaliser, max_tokens)
        return pg + 0.01 * kl - 0.001 * ent, info

    model.zero_grad()
    full_loss, info = objective(slice(None), None)
    full_loss.backward()
    full_grads = [p.grad.clone() for p in model.parameters()]
    assert info["clip_fraction"] > 0

    model.zero_grad()
    norm = loss_normaliser(mask, agg, max_tokens)
    total = 0.0
    for sl in (slice(0, 2), slice(2, 3), slice(3, 6)):  # uneven micro-batches
        loss, _ = objective(sl, norm)
        loss.backward()
        total += loss.item()
    assert total == pytest.approx(full_loss.item(), abs=1e-6)
    for g_full, p in zip(full_grads, model.parameters()):
        torch.testing.assert_close(p.grad, g_full, atol=1e-6, rtol=0)

    if agg == "token_mean":  # a per-micro-batch normaliser (averaged) is *not* the same update
        model.zero_grad()
        for sl in (slice(0, 2), slice(2, 3), slice(3, 6)):
            (objective(sl, None)[0] / 3).backward()
        assert not torch.allclose(model.weight.grad, full_grads[0], atol=1e-6)


# ---- SPINE ---------------------------------------------------------------------------------------------

def test_forking_mask_keeps_the_top_share_per_batch_or_per_response():
    from urlvr.loss import forking_mask

    h = torch.tensor([[0.3, 0.1, 0.7, 0.7, 9.0], [0.2, 0.6, 0.5, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]).bool()  # the 9.0 is padding: never chosen
    # 7 valid tokens, rho 0.3 -> ceil(2.1) = 3: 0.7, 0.7 and 0.6; ties broken by position
    assert forking_mask(h, m, 0.3).int().tolist() == [[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]]
    # per response: ceil(1.2) = 2 of row 0 (the two 0.7), ceil(0.9) = 1 of row 1
    assert forking_mask(h, m, 0.3, "response").int().tolist() == [[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]]
    assert forking_mask(h, m, 0.5, "response").int().tolist() == [[0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]  # 2 of 4, 2 of 3
    assert torch.equal(forking_mask(h, m, 1.0), m) and not forking_mask(h, m & False, 0.2).any()
    with pytest.raises(UrlvrError, match="batch, response"):
        forking_mask(h, m, 0.2, "token")


def test_entropy_band_penalty_by_hand_and_its_gradient_pushes_into_the_band():
    from urlvr.loss import entropy_band_penalty

    h = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 0.0, 0.0, 0.0]], requires_grad=True)
    f = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]).bool()
    pen = entropy_band_penalty(h, f, 0.25, 0.75)
    # row 0: quantiles 1 and 3 -> (1 + 1) / 5; row 1: both 5 -> band [5, 5], nothing outside
    torch.testing.assert_close(pen.detach(), torch.tensor([0.4, 0.0]))
    pen.sum().backward()
    torch.testing.assert_close(h.grad[0], torch.tensor([-0.2, 0.0, 0.0, 0.0, 0.2]))  # raise the low, lower the high
    assert h.grad[1].abs().sum() == 0
    empty = entropy_band_penalty(torch.ones(1, 3), torch.zeros(1, 3, dtype=torch.bool))
    assert empty.tolist() == [0.0]
