"""The policy-gradient loss (PPO-clip), the k3 KL estimator and the token aggregations they share.

Per response token, with ratio ``r_t = exp(log π_θ(y_t) - log π_old(y_t))`` and the sequence's
advantage ``A`` broadcast to its tokens::

    l_t = -min(r_t · A, clip(r_t, 1 - eps_low, 1 + eps_high) · A)

An aggregation turns a per-token ``(B, T)`` quantity into the scalar loss as ``numerator / normaliser``
(registered in :data:`LOSS_AGGREGATIONS`, one code path for the policy, KL and entropy terms):

- ``token_mean``:          ``Σ_{b,t} m·x / Σ_{b,t} m``          (all valid tokens of the batch weigh the same)
- ``seq_mean_token_mean``: ``Σ_b [Σ_t m·x / Σ_t m] / #seqs``    (sequences with ≥ 1 valid token)
- ``constant``:            ``Σ_{b,t} m·x / (B · max_tokens)``   (Dr.GRPO; ``max_tokens`` required)

Gradient accumulation: the numerator is a sum over sequences, so splitting a mini-batch into
micro-batches and giving every micro-batch the *mini-batch's* normaliser
(:func:`loss_normaliser` on the full mask) makes the summed micro-batch losses, and their gradients,
equal to the one-big-batch loss::

    norm = loss_normaliser(mask_full, "token_mean")
    for mb in micro_batches:
        loss, info = policy_loss(mb.logprob, mb.old_logprob, mb.adv, mb.mask, normaliser=norm)
        loss.backward()

>>> x = torch.tensor([[1.0, 3.0], [5.0, 0.0]]); m = torch.tensor([[True, True], [True, False]])
>>> aggregate(x, m, "token_mean"), aggregate(x, m, "seq_mean_token_mean")
(tensor(3.), tensor(3.5000))
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from urlvr.errors import UrlvrError, lookup
from urlvr.stats import masked_mean

__all__ = [
    "Aggregation", "LOSS_AGGREGATIONS", "get_loss_aggregation", "loss_normaliser", "aggregate",
    "policy_loss", "kl_k3", "forking_mask", "entropy_band_penalty", "FORK_SCOPES", "LOSS_SIDE_METHODS",
]

FORK_SCOPES = ("batch", "response")

LOSS_SIDE_METHODS: dict[str, tuple[str, str]] = {
    "spine": ("regulariser", "SPINE: policy loss and KL on the top-rho entropy (forking) tokens only, plus an "
                             "entropy band on them (spine_rho=0.2, spine_band_coef)"),
}
"""Methods that act in the loss rather than the reward: name -> (family, summary). Set by config keys."""


class Aggregation(NamedTuple):
    """A loss aggregation, split so that micro-batches can share one global normaliser."""

    numerator: Callable[[Tensor, Tensor], Tensor]
    """``(x (B, T), mask (B, T) bool) -> scalar``: a sum over sequences (additive across micro-batches)."""
    normaliser: Callable[[Tensor, "int | None"], float]
    """``(mask (B, T) bool of the whole mini-batch, max_tokens) -> float``."""


def _masked_sum(x: Tensor, mask: Tensor) -> Tensor:
    """``Σ_{b,t} m·x``; masked-out entries never propagate. (B, T) -> ()."""
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum()


def _seq_token_means_sum(x: Tensor, mask: Tensor) -> Tensor:
    """``Σ_b Σ_t m·x / Σ_t m`` (an empty sequence contributes 0). (B, T) -> ()."""
    per_seq = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)  # (B,)
    return (per_seq / mask.sum(dim=1).clamp(min=1).to(x.dtype)).sum()


def _n_tokens(mask: Tensor, max_tokens: int | None) -> float:
    return float(mask.sum().item())


def _n_seqs(mask: Tensor, max_tokens: int | None) -> float:
    return float(mask.any(dim=1).sum().item())


def _constant(mask: Tensor, max_tokens: int | None) -> float:
    if max_tokens is None or max_tokens < 1:
        raise UrlvrError("loss aggregation 'constant' needs max_tokens >= 1 (the maximum response length); "
                         "set it or choose 'token_mean'")
    return float(mask.shape[0] * max_tokens)


LOSS_AGGREGATIONS: dict[str, Aggregation] = {
    "token_mean": Aggregation(_masked_sum, _n_tokens),
    "seq_mean_token_mean": Aggregation(_seq_token_means_sum, _n_seqs),
    "constant": Aggregation(_masked_sum, _constant),
}
"""Name -> :class:`Aggregation`; the loss is ``numerator(x, mask) / normaliser(mask_minibatch, max_tokens)``."""


def get_loss_aggregation(name: str) -> Aggregation:
    """The registered aggregation called ``name``; :class:`UrlvrError` listing the valid names otherwise."""
    return lookup(LOSS_AGGREGATIONS, name, "loss aggregation")


def loss_normaliser(mask: Tensor, agg: str = "token_mean", max_tokens: int | None = None) -> float:
    """The denominator of aggregation ``agg`` for a whole mini-batch.

    Args:
        mask: (B, T) bool response mask of the *full* mini-batch (all its micro-batches).
        agg: a name in :data:`LOSS_AGGREGATIONS`.
        max_tokens: the maximum response length (``constant`` only).

    Returns:
        Number of valid tokens (``token_mean``), of sequences with a valid token
        (``seq_mean_token_mean``) or ``B · max_tokens`` (``constant``); at least 1.
    """
    return max(get_loss_aggregation(agg).normaliser(mask.bool(), max_tokens), 1.0)


def aggregate(x: Tensor, mask: Tensor, agg: str = "token_mean", normaliser: float | None = None,
              max_tokens: int | None = None) -> Tensor:
    """Reduce a per-token quantity to a scalar loss term: ``numerator(x, mask) / normaliser``.

    Args:
        x: (B, T) per-token values (policy loss, k3 KL, entropy).
        mask: (B, T) bool response mask (0/1 numbers accepted).
        agg: a name in :data:`LOSS_AGGREGATIONS`.
        normaliser: the mini-batch's :func:`loss_normaliser` when this is one micro-batch of it;
            None = compute it from this batch's ``mask``.
        max_tokens: the maximum response length (``constant`` only, when ``normaliser`` is None).

    Returns:
        () scalar in ``x``'s dtype, differentiable w.r.t. ``x``.
    """
    if x.shape != mask.shape:
        raise ValueError(f"x {tuple(x.shape)} and mask {tuple(mask.shape)} must both be (B, T)")
    mask = mask.bool()
    aggregation = get_loss_aggregation(agg)
    if normaliser is None:
        normaliser = loss_normaliser(mask, agg, max_tokens)
    return aggregation.numerator(x, mask) / normaliser


def policy_loss(logprob: Tensor, old_logprob: Tensor, advantages: Tensor, mask: Tensor,
                eps_low: float = 0.2, eps_high: float = 0.2, agg: str = "token_mean",
                max_tokens: int | None = None, normaliser: float | None = None
                ) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip policy-gradient loss, aggregated with ``agg``.

    Args:
        logprob: (B, T) ``log π_θ(y_t)`` with grad (:func:`urlvr.stats.sampled_logprobs`).
        old_logprob: (B, T) ``log π_old(y_t)`` of the rollout policy (no grad).
        advantages: (B,) one advantage per sequence, broadcast to its tokens; or (B, J): J advantage
            columns whose clipped surrogates are summed per token (RESTRAIN's per-candidate losses).
        mask: (B, T) bool response mask.
        eps_low, eps_high: clip range ``[1 - eps_low, 1 + eps_high]`` (DAPO raises eps_high).
        agg, max_tokens, normaliser: see :func:`aggregate`.

    Returns:
        ``(loss, info)``: the () loss and detached floats over this batch's valid tokens:
        ``clip_fraction`` (share of tokens where the clipped term is the active one),
        ``ratio_mean`` and ``approx_kl`` (k3 estimate of KL(π_old ‖ π_θ): mean of ``r - 1 - log r``).
    """
    if eps_low < 0 or eps_high < 0:
        raise UrlvrError(f"clip ranges must be >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    if advantages.shape[:1] != logprob.shape[:1] or advantages.dim() > 2 or old_logprob.shape != logprob.shape:
        raise ValueError(f"expected logprob/old_logprob (B, T) and advantages (B,) or (B, J); got "
                         f"{tuple(logprob.shape)}, {tuple(old_logprob.shape)}, {tuple(advantages.shape)}")
    mask = mask.bool()
    log_ratio = logprob - old_logprob.detach()  # (B, T)
    ratio = log_ratio.exp()  # (B, T)
    adv = advantages.detach().to(ratio.dtype).reshape(len(ratio), 1, -1)  # (B, 1, J)
    unclipped = -adv * ratio.unsqueeze(-1)  # (B, T, J)
    clipped = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high).unsqueeze(-1)  # (B, T, J)
    per_token = torch.maximum(unclipped, clipped).sum(-1)  # (B, T) = -Σ_j min(r·A_j, clip(r)·A_j)
    loss = aggregate(per_token, mask, agg, normaliser, max_tokens)
    with torch.no_grad():
        info = {
            "clip_fraction": masked_mean((clipped > unclipped).to(ratio.dtype).mean(-1), mask).item(),
            "ratio_mean": masked_mean(ratio, mask).item(),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask).item(),
        }
    return loss, info


def kl_k3(logprob: Tensor, ref_logprob: Tensor) -> Tensor:
    """k3 estimator of ``KL(π_θ ‖ π_ref)`` per token: ``exp(q - p) - (q - p) - 1`` (``>= 0``; 0 when equal).

    ``p = logprob`` (policy, with grad), ``q = ref_logprob`` (reference, no grad). (B, T), (B, T) -> (B, T).
    Aggregate with :func:`aggregate` like the policy loss.
    """
    d = ref_logprob.detach() - logprob  # (B, T)
    return torch.expm1(d) - d  # = exp(d) - d - 1; expm1 keeps it >= 0 in floating point for tiny d


# ---- SPINE: the policy loss on forking tokens only, inside an entropy band ---------------------------------

def forking_mask(entropy: Tensor, mask: Tensor, rho: float, scope: str = "batch") -> Tensor:
    """SPINE's forking tokens: the top ``rho`` share of token entropies. (B, T), (B, T) -> (B, T) bool.

    ``scope="batch"``: the ``ceil(rho · n)`` highest-entropy tokens among all ``n`` valid tokens of the
    batch (the 80/20 recipe SPINE builds on); ``"response"``: the top ``ceil(rho · n_i)`` of each response.
    Ties at the threshold are broken by position (a stable sort), so exactly that many tokens are kept;
    ``rho >= 1`` keeps every valid token. Pass the *rollout's* entropies: the mask is then fixed for the
    step, whatever the micro-batching.

    >>> h = torch.tensor([[0.1, 0.9, 0.5, 0.0], [0.8, 0.2, 0.0, 0.0]]); m = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    >>> forking_mask(h, m, 0.4).int().tolist()     # 5 valid tokens -> the top 2: 0.9 and 0.8
    [[0, 1, 0, 0], [1, 0, 0, 0]]
    >>> forking_mask(h, m, 0.4, "response").int().tolist()  # top ceil(0.4 n_i) of each row
    [[0, 1, 1, 0], [1, 0, 0, 0]]
    """
    if scope not in FORK_SCOPES:
        raise UrlvrError(f"unknown forking-token scope {scope!r}; choose one of: {', '.join(FORK_SCOPES)}")
    mask = mask.bool()
    if rho >= 1:
        return mask.clone()
    x = torch.where(mask, entropy.detach().float(), torch.full_like(entropy, float("-inf"), dtype=torch.float32))
    out = torch.zeros_like(mask)
    rows = [x.reshape(1, -1)] if scope == "batch" else list(x.split(1))
    counts = [int(mask.sum())] if scope == "batch" else mask.sum(1).tolist()
    flat = out.reshape(len(rows), -1) if scope == "batch" else out
    for r, (row, n) in enumerate(zip(rows, counts)):
        k = math.ceil(rho * n) if n else 0
        if k:
            top = torch.sort(row[0], descending=True, stable=True).indices[:k]
            flat[r, top] = True
    return out.reshape(mask.shape) & mask


def entropy_band_penalty(entropy: Tensor, fork: Tensor, low: float = 0.1, high: float = 0.5) -> Tensor:
    """SPINE's entropy band per response: ``mean_{t∈F_i} [max(0, H_t − H_high) + max(0, H_low − H_t)]``.

    ``H_low``, ``H_high`` are the ``low`` and ``high`` quantiles of the response's forking-token entropies,
    taken as constants (detached); the gradient flows through ``H_t`` (pass the training forward's
    entropies), pulling too-high entropies down and too-low ones up. A response without forking
    tokens gives 0. (B, T), (B, T) bool -> (B,).

    >>> h = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]); f = torch.ones(1, 5, dtype=torch.bool)
    >>> entropy_band_penalty(h, f, 0.25, 0.75)  # band [1, 3]: 1 below (0.0), 1 above (4.0), over 5 tokens
    tensor([0.4000])
    """
    out = []
    for h_i, f_i in zip(entropy, fork.bool()):
        h = h_i[f_i]  # (n_i,)
        if h.numel() == 0:
            out.append(h_i.sum() * 0.0)
            continue
        q = torch.quantile(h.detach().float(), torch.tensor([low, high], dtype=torch.float32, device=h.device))
        out.append((torch.relu(h - q[1]) + torch.relu(q[0] - h)).mean())  # relu: no pull at the band edges
    return torch.stack(out) if out else entropy.new_zeros(0)
