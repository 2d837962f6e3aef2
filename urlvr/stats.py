"""Per-token statistics of the next-token distribution: log-prob, entropy, self-certainty, top-2 gap.

Notation (METHODS §2): logits ``z_t`` of shape ``(V,)`` at position t are the logits that *produced*
token ``y_t``; the distribution is ``p_t = softmax(z_t / τ)``. Callers align the tensors: for a causal
LM whose output at position ``i`` predicts token ``i + 1``, pass ``logits[:, :-1]`` with
``tokens[:, 1:]`` (sliced to the response span). ``V`` is the logits' last dimension: if the model pads
its vocabulary beyond the tokenizer's, slice the logits first, since padded entries change entropy and
self-certainty.

Quantities, all of shape ``(B, T)``:

- ``logprob``        ``log p_t(y_t)``
- ``entropy``        ``H(p_t) = -Σ_v p_t(v) log p_t(v)`` (full distribution; ``log V`` for uniform)
- ``self_certainty`` ``KL(U ‖ p_t) = -(1/V) Σ_v log p_t(v) - log V`` (``>= 0``; 0 for uniform). The
  common code form ``logsumexp(z) - mean(z)`` equals this **plus** ``log V`` (select it with
  ``form="kl_plus_log_v"``; see :data:`SELF_CERTAINTY_FORMS`). A vocabulary entry with ``p = 0`` (a ``-inf``
  logit) makes the true KL infinite, and it is returned as ``inf``.
- ``top2_gap``       ``p_t^(1) - p_t^(2)``, top-1 minus top-2 probability (``p^(1)`` when ``V = 1``)
- ``confidence``     ``-(1/k) Σ_{j<=k} log p_t^(j)`` over the k = min(:data:`CONFIDENCE_K`, V) most probable
  tokens (DeepConf's token confidence, SCOPE's ``C_t``; higher = more peaked; ``log V`` for uniform at k = V)

Everything is computed in at least float32 (bf16/fp16 logits are upcast; float64 stays float64) via
``log_softmax``, so no ``log(0)`` is ever taken. The functions are pure and differentiable; callers
that only score rollouts wrap them in ``torch.no_grad()``.

>>> import torch
>>> s = token_stats(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]))
>>> [round(v, 4) for v in s.entropy[0].tolist()], s.self_certainty[0].tolist()
([1.3863, 1.3863], [0.0, 0.0])
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from urlvr.errors import UrlvrError

__all__ = [
    "STAT_NAMES", "TOKEN_STATS", "TokenStats", "token_stats", "stats_from_log_probs", "sampled_logprobs",
    "token_entropy", "self_certainty", "top2_gap", "SELF_CERTAINTY_FORMS", "masked_mean", "CONFIDENCE_K",
    "top_k_confidence",
]

CONFIDENCE_K = 20
"""k of the ``confidence`` statistic (DeepConf's default top-k; SCOPE's k is not stated)."""

SELF_CERTAINTY_FORMS = ("kl", "kl_plus_log_v")
"""Self-certainty forms. ``"kl"``: the true ``KL(U ‖ p) = -(1/V) Σ_v log p(v) - log V`` (paper form,
default; 0 for uniform). ``"kl_plus_log_v"``: ``logsumexp(z) - mean(z) = KL(U ‖ p) + log V``, the form
common code computes. The two are identical after group normalisation of a reward, different when
thresholded, logged or mixed with another reward.
"""


class TokenStats(dict):
    """Per-token statistics by name (:data:`STAT_NAMES`); every value has the same shape, e.g. ``(B, T)``.

    A ``dict`` whose entries also read as attributes: ``s["entropy"]`` is ``s.entropy``.
    """

    def __getattr__(self, name: str) -> Tensor:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    """``log softmax(z / τ)`` in at least float32. (..., V) -> (..., V)."""
    if not temperature > 0:
        raise UrlvrError(f"temperature must be > 0, got {temperature}; use 1.0 for raw logits")
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if temperature != 1.0:
        z = z / temperature
    return torch.log_softmax(z, dim=-1)


def _check_form(form: str) -> None:
    if form not in SELF_CERTAINTY_FORMS:
        raise UrlvrError(f"unknown self-certainty form {form!r}; choose one of: {', '.join(SELF_CERTAINTY_FORMS)}")


def _entropy(logp: Tensor, probs: Tensor | None = None) -> Tensor:
    """``-Σ p log p`` with ``0 · log 0 = 0``. (..., V) -> (...). ``probs``: ``logp.exp()``, if the caller has it.

    One dot product per row; a ``-inf`` log-prob (``p = 0``) enters as the lowest finite value, so its
    term is ``0 · (-3.4e38) = 0`` instead of ``nan``.
    """
    p = logp.exp() if probs is None else probs
    if torch.is_autocast_enabled(logp.device.type):  # a dot product is an autocast op: keep it in float32
        with torch.autocast(logp.device.type, enabled=False):
            return -torch.linalg.vecdot(p, logp.clamp(min=torch.finfo(logp.dtype).min))
    return -torch.linalg.vecdot(p, logp.clamp(min=torch.finfo(logp.dtype).min))


def _self_certainty(logp: Tensor, form: str) -> Tensor:
    """``-(1/V) Σ_v log p(v) - log V`` (+ ``log V`` for ``kl_plus_log_v``). (..., V) -> (...)."""
    sc = -logp.mean(dim=-1)  # = logsumexp(z) - mean(z)
    if form == "kl":
        sc = sc - math.log(logp.shape[-1])
    return sc


def _top2_gap(logp: Tensor) -> Tensor:
    """``p^(1) - p^(2)``; ``p^(2) = 0`` when ``V = 1``. (..., V) -> (...)."""
    top1, idx = logp.max(dim=-1, keepdim=True)  # (..., 1); max + masked max: several times faster than topk(2)
    if logp.shape[-1] == 1:
        return top1.squeeze(-1).exp()
    top2 = logp.scatter(-1, idx, float("-inf")).amax(dim=-1, keepdim=True)  # (..., 1)
    return (top1.exp() - top2.exp()).squeeze(-1)


def _top_k_confidence(logp: Tensor, k: int = CONFIDENCE_K) -> Tensor:
    """``-(1/k) Σ_{j<=k} log p^(j)`` over the k most probable entries (k capped at V). (..., V) -> (...)."""
    return _confidence_of(_top_values(logp, min(k, logp.shape[-1])))


def _confidence_of(top: Tensor) -> Tensor:
    """Token confidence from the k largest log-probs (..., k), sorted or not. -> (...)."""
    return -top.clamp(min=torch.finfo(top.dtype).min).mean(dim=-1)


def _gap_of(top: Tensor) -> Tensor:
    """``p^(1) - p^(2)`` from the largest log-probs (..., k) in descending order (``p^(2) = 0`` when k = 1)."""
    if top.shape[-1] == 1:
        return top[..., 0].exp()
    return top[..., 0].exp() - top[..., 1].exp()


TOPK_BLOCK = 256
"""Block size of :func:`_top_values` on large vocabularies."""


def _top_values(logp: Tensor, k: int) -> Tensor:
    """``logp.topk(k).values`` (..., k), descending; on a large vocabulary, by blocks of :data:`TOPK_BLOCK`.

    Exact: an entry outside the k blocks with the largest maxima is at most each of those k maxima, so
    the k largest values all lie in those blocks (and the tail that fills no whole block). A top-k over
    ``V`` entries costs several passes; the block maxima (one ``amax``) and a top-k over ``k`` blocks
    cost about one (6.5 ms -> 1.9 ms for 64 rows of 49152, one thread).
    """
    V = logp.shape[-1]
    G = V // TOPK_BLOCK
    if G < 8 * k or logp.numel() == 0:
        return logp.topk(k, dim=-1).values
    flat = logp.reshape(-1, V)  # (N, V)
    blocks = flat[:, : G * TOPK_BLOCK].view(-1, G, TOPK_BLOCK)  # (N, G, block)
    best = blocks.amax(dim=-1).topk(k, dim=-1).indices  # (N, k): the blocks holding the k largest values
    cand = blocks.gather(1, best.unsqueeze(-1).expand(-1, -1, TOPK_BLOCK)).flatten(1)  # (N, k * block)
    if G * TOPK_BLOCK < V:
        cand = torch.cat([cand, flat[:, G * TOPK_BLOCK :]], dim=1)
    return cand.topk(k, dim=-1).values.reshape(*logp.shape[:-1], k)


def _logprob_stat(logp: Tensor, tokens: Tensor) -> Tensor:
    return logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def _entropy_stat(logp: Tensor, tokens: Tensor) -> Tensor:
    return _entropy(logp)


def _self_certainty_stat(logp: Tensor, tokens: Tensor) -> Tensor:
    return _self_certainty(logp, "kl")


def _top2_gap_stat(logp: Tensor, tokens: Tensor) -> Tensor:
    return _top2_gap(logp)


def _confidence_stat(logp: Tensor, tokens: Tensor) -> Tensor:
    return _top_k_confidence(logp)


TOKEN_STATS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "logprob": _logprob_stat,
    "entropy": _entropy_stat,
    "self_certainty": _self_certainty_stat,
    "top2_gap": _top2_gap_stat,
    "confidence": _confidence_stat,
}
"""The per-token statistics every rollout and every scoring pass computes, by name: ``fn(logp (..., V),
tokens (...)) -> (...)`` with ``logp = log softmax(z / τ)``. **The one place to add a statistic**: the
sampler, :meth:`~urlvr.rollout.HFSampler.score`, :class:`~urlvr.types.Completion` (``c.<name>``), the
trainer's groups and the TRL adapter all iterate over this table. (:func:`stats_from_log_probs` shares
work between the built-in entries: one top-k for ``top2_gap`` and ``confidence``; the sampler's
probabilities for ``entropy``.)"""

STAT_NAMES: tuple[str, ...] = tuple(TOKEN_STATS)
"""The names of :data:`TOKEN_STATS`, in order."""



def _check_aligned(logits: Tensor, tokens: Tensor) -> None:
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, T, V) and tokens (B, T); got {tuple(logits.shape)} and "
                         f"{tuple(tokens.shape)}")


def token_stats(logits: Tensor, tokens: Tensor, temperature: float = 1.0, form: str = "kl",
                chunk_size: int | None = None) -> TokenStats:
    """All per-token statistics of ``p_t = softmax(logits[:, t] / temperature)`` at once.

    Args:
        logits: (B, T, V) logits that produced ``tokens`` (``logits[:, t]`` produced ``tokens[:, t]``).
        tokens: (B, T) int token ids.
        temperature: τ applied before the softmax (the rollout temperature for the paper form).
        form: self-certainty form, one of :data:`SELF_CERTAINTY_FORMS`.
        chunk_size: process this many positions of T at a time to bound the (B, chunk, V) float32
            temporaries; ``None`` = all at once.

    Returns:
        :class:`TokenStats` of (B, T) tensors in at least float32, one per name in :data:`STAT_NAMES`.
    """
    _check_aligned(logits, tokens)
    _check_form(form)
    step = max(logits.shape[1], 1) if chunk_size is None else chunk_size
    if step < 1:
        raise UrlvrError(f"chunk_size must be >= 1, got {chunk_size}")
    parts = [stats_from_log_probs(_log_probs(logits[:, start:start + step], temperature),  # (B, t, V)
                                  tokens[:, start:start + step], form)
             for start in range(0, max(logits.shape[1], 1), step)]
    return TokenStats({name: torch.cat([p[name] for p in parts], dim=1) for name in STAT_NAMES})


def stats_from_log_probs(logp: Tensor, tokens: Tensor, form: str = "kl", probs: Tensor | None = None) -> TokenStats:
    """:func:`token_stats` from log-probabilities already computed, ``logp = log softmax(z / τ)``.

    For a caller that needs ``log p_t`` anyway (the sampler draws from ``exp(logp)``), so the softmax is
    taken once; ``probs``: ``exp(logp)`` if the caller has it too (the entropy reuses it). Shapes: ``logp``
    (..., V), ``tokens`` (...); every entry of the result has shape (...). The built-in statistics share
    their passes over V (one top-k for the top-2 gap and the confidence); an entry that a user replaced
    or added to :data:`TOKEN_STATS` runs as it is.
    """
    _check_form(form)
    out, top = TokenStats(), None
    for name, fn in TOKEN_STATS.items():
        if fn is _entropy_stat:
            out[name] = _entropy(logp, probs)
        elif fn is _top2_gap_stat or fn is _confidence_stat:
            if top is None:  # (..., k) descending
                top = _top_values(logp, min(CONFIDENCE_K, logp.shape[-1]))
            out[name] = _gap_of(top) if fn is _top2_gap_stat else _confidence_of(top)
        else:
            out[name] = fn(logp, tokens)
    if form != "kl":
        out["self_certainty"] = _self_certainty(logp, form)
    return out


def sampled_logprobs(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """Only ``log p_t(y_t)``: the cheap, differentiable path for the loss forward.

    ``z_t[y_t] / τ - logsumexp(z_t / τ)``, without materialising the full log-softmax.

    Args:
        logits: (B, T, V) logits that produced ``tokens``.
        tokens: (B, T) int token ids.

    Returns:
        (B, T) log-probs in at least float32.
    """
    _check_aligned(logits, tokens)
    if not temperature > 0:
        raise UrlvrError(f"temperature must be > 0, got {temperature}; use 1.0 for raw logits")
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if temperature != 1.0:
        z = z / temperature  # (B, T, V)
    picked = z.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(z, dim=-1)  # (B, T)


def token_entropy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``H(p_t) = -Σ_v p_t(v) log p_t(v)``, differentiable (for an entropy bonus). (B, T, V) -> (B, T)."""
    return _entropy(_log_probs(logits, temperature))


def self_certainty(logits: Tensor, temperature: float = 1.0, form: str = "kl") -> Tensor:
    """``KL(U ‖ p_t)`` (``form="kl"``) or ``logsumexp(z) - mean(z)`` (``"kl_plus_log_v"``). (B, T, V) -> (B, T)."""
    _check_form(form)
    return _self_certainty(_log_probs(logits, temperature), form)


def top_k_confidence(logits: Tensor, temperature: float = 1.0, k: int = CONFIDENCE_K) -> Tensor:
    """DeepConf/SCOPE token confidence ``-(1/k) Σ_{j<=k} log p_t^(j)``. (B, T, V) -> (B, T).

    >>> round(float(top_k_confidence(torch.zeros(1, 1, 4), k=2)), 4)  # uniform over 4: -log(1/4)
    1.3863
    """
    return _top_k_confidence(_log_probs(logits, temperature), k)


def top2_gap(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``p_t^(1) - p_t^(2)``, the probability disparity of RLSF. (B, T, V) -> (B, T)."""
    return _top2_gap(_log_probs(logits, temperature))


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``x`` over entries where ``mask`` is true; 0 where nothing is selected.

    Masked-out entries never propagate (an ``inf`` or ``nan`` under a false mask is ignored).

    Args:
        x: (B, T) values (any shape broadcastable with ``mask``).
        mask: (B, T) bool, or 0/1 numbers.
        dim: reduce over these dims; ``None`` = all, returning a scalar.

    >>> masked_mean(torch.tensor([[1.0, 3.0, float("nan")]]), torch.tensor([[True, True, False]]))
    tensor(2.)
    """
    mask = mask.bool()
    total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    count = mask.to(x.dtype)
    if dim is None:
        return total.sum() / count.sum().clamp(min=1)
    return total.sum(dim=dim) / count.sum(dim=dim).clamp(min=1)
