r"""Certainty rewards: how sure the rollout policy was of its own trajectory (METHODS.md §2).

Each reward reduces one per-token statistic of a :class:`~urlvr.rewards.base.Completion` to a scalar:

=========================  =====================================================  ======================
reward                     formula (defaults)                                     source
=========================  =====================================================  ======================
``self_certainty``         ``mean_t KL(U ‖ p_t)``                                 Intuitor / RLIF
``token_entropy``          ``-mean_t H(p_t)`` (RENT: ``no_answer_penalty``)        EM-RL token, RENT
``trajectory_entropy``     ``Σ_t log p_t(y_t)`` (``reduce="mean"``: URLVR code)   EM-RL sequence
``probability``            ``exp Σ_t log p_t(y_t)`` (``log_space``: the sum)      RLSC
``probability_disparity``  ``mean_{t ∈ answer span} p_t^(1) - p_t^(2)``           RLSF
=========================  =====================================================  ======================

**Where the statistics come from.** The sampler computes them from the rollout (old) policy's logits
at the sampling temperature τ, ``p_t = softmax(z_t / τ)`` (the verl convention), in float32, without
gradient, while it samples. No logits reach a reward, so a reward cannot re-temper them: the
``temperature`` option accepts only ``None`` (use the statistics as given). For parity with code that
computes the statistic from *raw* logits, sample at ``temperature=1.0`` (then τ-scaled and raw agree).

**Parity knobs** (shared by every reward here, defaults = the paper form):

- ``alignment``: ``"aligned"`` (default): the value at response position t is the statistic of
  ``p_t``, the distribution that produced ``y_t``. ``"shifted"``: the value at position t is the
  statistic of ``p_{t+1}``, as code that forgets the causal shift computes it (open-r1 Intuitor, the
  Self-Certainty repo, one-shot EM read the logits *at* the response tokens). Precisely: for a response
  of T tokens with statistics ``s_1..s_T``, shifted gives ``s_2..s_T`` at positions ``1..T-1``; the
  value those codes put at position T (the distribution after the last token) is not in the rollout
  and is left out rather than invented, so shifted reduces over T-1 values.
- ``include_eos``: whether position T counts when the response ends with EOS (``ends_with_eos``). A
  truncated response has no EOS position. With ``"shifted"``, position T is already absent, so both
  settings give ``s_2..s_T``.
- ``reduce``: ``"mean"`` or ``"sum"`` over the selected positions. A mean over no position (a
  one-token response under ``"shifted"``, or a bare EOS without it) is None (not applicable);
  a sum over none is 0.

>>> import torch
>>> from urlvr.types import Completion
>>> s = torch.tensor([1.0, 2.0, 3.0])
>>> c = Completion("ab", None, torch.tensor([5, 6, 2]), {"logprob": -s, "entropy": s})
>>> token_values(c, s).tolist(), token_values(c, s, "shifted").tolist(), token_values(c, s, include_eos=False).tolist()
([1.0, 2.0, 3.0], [2.0, 3.0], [1.0, 2.0])
"""

from __future__ import annotations

import bisect
import functools
import math
from typing import Any, Callable, Sequence

import torch

from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.types import Completion, Group
from urlvr.stats import SELF_CERTAINTY_FORMS
from urlvr.answers import extract_boxed

__all__ = [
    "ALIGNMENTS", "REDUCTIONS", "SPANS", "token_values", "answer_span", "answer_token_positions", "self_certainty",
    "token_entropy", "trajectory_entropy", "probability", "probability_disparity",
]

ALIGNMENTS = ("aligned", "shifted")
SPANS = ("all", "answer")
"""Positions a distribution-level certainty reward reads: every response token, or the answer's (the content of
the last ``\\boxed{}``; :func:`answer_token_positions`, which needs ``tokenizer`` unless tokens are characters)."""
REDUCTIONS = ("mean", "sum")
_BOX = "\\boxed{"


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UrlvrError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def _check_knobs(alignment: str, reduce: str, temperature: float | None) -> None:
    _choice("alignment", alignment, ALIGNMENTS)
    _choice("reduce", reduce, REDUCTIONS)
    if temperature is not None:
        raise UrlvrError(
            f"temperature={temperature!r}: certainty rewards read the statistics the sampler computed from the "
            "rollout logits at the sampling temperature (no logits reach a reward); leave temperature unset, and "
            "for raw-logit parity sample with temperature=1.0")


def _positions(c: Completion, n: int, alignment: str, include_eos: bool) -> torch.Tensor:
    """Response positions (0-based) that carry a value, given ``n`` per-token statistics. (K,) int64."""
    keep = n - 1 if (c.ends_with_eos and not include_eos and n > 0) else n
    if alignment == "shifted":
        keep = min(keep, n - 1)  # the statistic after the last token is not in the rollout
    return torch.arange(max(keep, 0))


def _values_at(stat: torch.Tensor, pos: torch.Tensor, alignment: str) -> torch.Tensor:
    """The statistic shown at ``pos``: ``s_t`` (aligned) or ``s_{t+1}`` (shifted). (K,)."""
    return stat[pos + 1] if alignment == "shifted" else stat[pos]


def token_values(c: Completion, stat: torch.Tensor, alignment: str = "aligned",
                 include_eos: bool = True) -> torch.Tensor:
    """The per-position values of ``stat`` (T,) that a certainty reward reduces, per the knobs. (K,)."""
    return _values_at(stat, _positions(c, len(stat), alignment, include_eos), alignment)


def _reduce(values: torch.Tensor, reduce: str) -> float | None:
    if reduce == "sum":
        return float(values.sum())
    return float(values.mean()) if values.numel() else None


def _per_completion(group: Group, stat: Callable[[Completion], torch.Tensor], alignment: str, reduce: str,
                    include_eos: bool, temperature: float | None, span: str = "all",
                    tokenizer: Any = None) -> list[float | None]:
    _check_knobs(alignment, reduce, temperature)
    _choice("span", span, SPANS)
    out = []
    for c in group.completions:
        values = stat(c)
        pos = _positions(c, len(values), alignment, include_eos)
        if span == "answer":  # the answer's tokens only; a completion without one keeps every position
            answer = answer_token_positions(c, tokenizer)
            inside = None if answer is None else torch.isin(pos, answer)
            if inside is not None and bool(inside.any()):
                pos = pos[inside]
        out.append(_reduce(_values_at(values, pos, alignment), reduce))
    return out


@register_reward("self_certainty", family="certainty", needs_logits=True,
                 source="Intuitor (2505.19590), Self-certainty (2502.18581)")
def self_certainty(group: Group, form: str = "kl", alignment: str = "aligned", reduce: str = "mean",
                   include_eos: bool = True, temperature: float | None = None, span: str = "all",
                   tokenizer: Any = None) -> list[float | None]:
    """Self-certainty: ``mean_t KL(U ‖ p_t)`` (``form="kl"``, the paper's definition, 0 for uniform ``p_t``).

    ``form="kl_plus_log_v"`` adds ``log V`` per token, the ``logsumexp(z) - mean(z)`` that common code
    computes: identical after group normalisation, not when thresholded, logged or mixed. ``span="answer"``
    (ours) averages over the answer's tokens only (:data:`SPANS`).
    """
    _choice("self-certainty form", form, SELF_CERTAINTY_FORMS)
    offset = 0.0
    if form == "kl_plus_log_v":
        if group.vocab_size < 1:
            raise UrlvrError("self_certainty form='kl_plus_log_v' needs the group's vocab_size; use form='kl'")
        offset = math.log(group.vocab_size)
    return _per_completion(group, lambda c: c.self_certainty + offset, alignment, reduce, include_eos, temperature,
                           span, tokenizer)


@register_reward("token_entropy", family="certainty", needs_logits=True,
                 source="EM-RL token (2505.15134), RENT (2505.22660)")
def token_entropy(group: Group, no_answer_penalty: float | None = None, alignment: str = "aligned",
                  reduce: str = "mean", include_eos: bool = True, temperature: float | None = None,
                  span: str = "all", tokenizer: Any = None) -> list[float | None]:
    """Negative token entropy: ``-mean_t H(p_t)`` (0 for one-hot, ``-log V`` for uniform ``p_t``).

    ``no_answer_penalty`` (RENT uses -7): the reward of a completion without a ``\\boxed{}`` answer.
    ``span="answer"`` (ours) averages over the answer's tokens only (:data:`SPANS`).
    """
    scores = _per_completion(group, lambda c: -c.entropy, alignment, reduce, include_eos, temperature, span,
                             tokenizer)
    if no_answer_penalty is None:
        return scores
    return [float(no_answer_penalty) if c.answer is None else s for c, s in zip(group.completions, scores)]


@register_reward("trajectory_entropy", family="certainty", needs_logits=True,
                 source="EM-RL sequence (2505.15134); URLVR code (2603.08660)")
def trajectory_entropy(group: Group, reduce: str = "sum", alignment: str = "aligned", include_eos: bool = True,
                       temperature: float | None = None) -> list[float | None]:
    """Negative trajectory entropy estimate: ``Σ_t log p_t(y_t)`` (EM-RL paper; favours short outputs).

    ``reduce="mean"``: ``mean_t log p_t(y_t)``, as the URLVR code computes it.
    """
    return _per_completion(group, lambda c: c.logprob, alignment, reduce, include_eos, temperature)


@register_reward("probability", family="certainty", needs_logits=True, source="RLSC (2506.06395)")
def probability(group: Group, log_space: bool = False, alignment: str = "aligned", include_eos: bool = True,
                temperature: float | None = None) -> list[float | None]:
    """Sequence probability ``exp Σ_t log p_t(y_t)``, computed faithfully in float32.

    In float32 it is denormal below ``Σ_t log p_t(y_t) = -87`` and exactly 0 below ``-104`` (100
    tokens at ``p = 0.35``): every long response then gets the same reward 0 and only short ones are
    told apart, a documented cause of *length collapse*. It is kept faithful on purpose.
    ``log_space=True`` returns ``Σ_t log p_t(y_t)`` instead (same ranking within a group, different
    advantages, no underflow; equal to ``trajectory_entropy`` with ``reduce="sum"``).
    """
    sums = _per_completion(group, lambda c: c.logprob, alignment, "sum", include_eos, temperature)
    if log_space:
        return sums
    return [float(torch.exp(torch.tensor(s, dtype=torch.float32))) for s in sums]


# ---- the answer span ------------------------------------------------------------------------------

def answer_span(text: str) -> tuple[int, int] | None:
    r"""Character span ``[start, end)`` of the answer: the stripped content of the last closed ``\boxed{}``.

    The same box that :func:`~urlvr.answers.extract_boxed` reads; None without an answer.

    >>> t = "so \\boxed{1} or \\boxed{ 42 }"
    >>> span = answer_span(t); span, t[span[0]:span[1]]
    ((24, 26), '42')
    """
    k = len(text)
    while (k := text.rfind(_BOX, 0, k)) != -1:
        content = extract_boxed(text[k:])  # None unless the box at k closes
        if content is not None:
            body = text[k + len(_BOX):]
            start = k + len(_BOX) + len(body) - len(body.lstrip())
            return start, start + len(content)
    return None


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001  (any loader failure is a bad option)
        raise UrlvrError(f"answer span: cannot load tokenizer {path!r} ({e}); "
                         "give the model's folder") from None


def answer_token_positions(c: Completion, tokenizer: Any = None) -> torch.Tensor | None:
    """Response positions (0-based) of the tokens that overlap the answer span; None without an answer.

    Token ``k`` covers characters ``[end_{k-1}, end_k)`` of the text, ``end_k`` the decoded length of the
    first ``k + 1`` tokens (special tokens decode to nothing). With a ``tokenizer`` (an object with
    ``decode`` or a folder path) ``end_k`` is found by decoding prefixes, located by bisection
    (``O(log T)`` decodes per boundary). Without one, the tokens must map one-to-one onto characters
    (the testbed's character tokenizer: the text has as many characters as the response has tokens,
    bar a final EOS); anything else raises a :class:`UrlvrError` asking for the tokenizer.
    """
    span = answer_span(c.text)
    if span is None:
        return None
    ids = c.token_ids.tolist()
    T = len(ids)
    if tokenizer is None:
        if len(c.text) != T - int(c.ends_with_eos):
            raise UrlvrError(
                f"answer span: a response has {T} tokens for {len(c.text)} characters, so its answer span "
                "cannot be located without the tokenizer; set reward_options.tokenizer to the model's folder")

        def end_of(k: int) -> int:
            return min(k + 1, len(c.text))
    else:
        tok = _load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer

        @functools.lru_cache(maxsize=None)
        def end_of(k: int) -> int:
            return len(tok.decode(ids[: k + 1], skip_special_tokens=True))

        if end_of(T - 1) != len(c.text):
            raise UrlvrError("answer span: the tokenizer does not decode the response back to its text; "
                             "give the tokenizer of the model that sampled it")
    first = bisect.bisect_right(range(T), span[0], key=end_of)  # first token ending after the span start
    last = bisect.bisect_left(range(T), span[1], key=end_of)  # first token reaching the span end
    return torch.arange(first, min(last, T - 1) + 1)


@register_reward("probability_disparity", family="certainty", needs_logits=True, source="RLSF")
def probability_disparity(group: Group, tokenizer: Any = None, alignment: str = "aligned", reduce: str = "mean",
                          include_eos: bool = True, temperature: float | None = None) -> list[float | None]:
    """Probability disparity: ``mean_{t ∈ answer} p_t^(1) - p_t^(2)`` over the answer-span tokens.

    The answer span is the tokens overlapping the content of the last ``\\boxed{}``
    (:func:`answer_token_positions`; ``tokenizer`` is needed unless tokens are characters). A
    completion without an answer, or whose span holds no selected position, uses all its tokens.
    """
    return _per_completion(group, lambda c: c.top2_gap, alignment, reduce, include_eos, temperature, "answer",
                           tokenizer)
