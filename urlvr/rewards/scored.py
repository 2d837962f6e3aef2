r"""Rewards that score given continuations with the policy: CoVo and the label-free RLPR probability reward.

Both build on the group's answers (family ``ensemble``) and are registered with ``needs_scorer=True``:
the trainer calls them with ``scorer=`` (whose ``score(prompts, continuations, temperature)`` returns
the policy's per-token statistics of each given continuation after its prompt, no grad, one batched
forward; :meth:`urlvr.rollout.HFSampler.score`) and ``settings=`` (the run's sampling settings). Each
reward makes one ``score`` call per group (RLPR: one more, on the *initial* policy, for a baseline it
has not seen yet).

**CoVo** (METHODS-2026 §5, sastpg/CoVo): a completion's reasoning is cut into at most 15 steps
(:func:`split_steps`); ``D[t, k]`` is the perplexity of ``"\nThe answer is: " + y_k`` after the prompt
and the first t steps, for the group's K distinct answers ``y_k`` (:func:`covo_distances`). With ``o``
the completion's own answer: ``Con = mean_t 1[D[t,o] < min_{k≠o} D[t,k]]`` and ``Vol = 1 − (trailing
steps with D[t,o] ≤ min_{k≠o} D[t,k]) / T`` (:func:`con_vol`); per answer cluster
``RiV = ‖mean (Con cos Vol, Con sin Vol)‖`` or ``RiL = mean Con − mean Vol`` (:func:`riv`, :func:`ril`);
every completion of a cluster with ``RiV ≥ 0.5`` (``RiL ≥ 0.05``) gets 1, others 0.

**RLPR, label-free** (METHODS-2026 §7): ``y* = â``, the group's majority answer; each completion's
reasoning ``z`` (text before its last ``\boxed{``) is followed by ``\boxed{y*}`` and scored:
``P̄(y*|x,z) = mean_{t ∈ y*} p_t(y*_t)`` over the tokens overlapping ``y*``'s characters, debiased by
the initial policy's ``P̄(y*|x)`` (no reasoning), clipped to [0, 1]; VeriFree's product
``exp Σ_t log p_t`` is ``reduce="product"``.

>>> split_steps("First:\nadd 2\n\n\\[\n4\n\\]\nso \\boxed{4}")
['First:', 'add 2', '\\[\n4\n\\]', 'so \\boxed{4}']
>>> D = torch.tensor([[2.0, 1.0], [1.0, 3.0], [1.0, 2.0]])  # (T=3 states, K=2 answers)
>>> con_vol(D, own=0)  # closer to its own answer at steps 2 and 3: the last stray is at step 1
(0.6666666666666666, 0.33333333333333337)
>>> round(riv([1.0, 0.5], [0.0, 0.0]), 4), ril([1.0, 0.5], [0.0, 0.5])
(0.75, 0.5)
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from typing import Any, Sequence

import torch
from torch import Tensor

from urlvr.answers import majority
from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.types import Group, RewardOutput, SamplingSettings

__all__ = ["covo", "rlpr", "split_steps", "covo_distances", "con_vol", "riv", "ril", "step_curiosity",
           "answer_token_mask", "is_repetitive", "COVO_AGGREGATIONS", "COVO_ANSWER_TEXTS", "RLPR_REDUCES",
           "RLPR_SPANS", "MAX_STEPS", "ANSWER_PREFIX"]

MAX_STEPS = 15
"""CoVo's cap on intermediate states per trajectory (the official ``process_thoughts``)."""
ANSWER_PREFIX = "\nThe answer is: "
"""What CoVo appends to a state before an answer (the official code)."""
COVO_AGGREGATIONS = ("riv", "ril")
COVO_ANSWER_TEXTS = ("boxed", "plain")
RLPR_REDUCES = ("mean", "product")
RLPR_SPANS = ("answer", "block")
BOXED = "\\boxed{"


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UrlvrError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def _temperature(temperature: float | None, settings: SamplingSettings | None) -> float:
    t = temperature if temperature is not None else (settings.temperature if settings is not None else 1.0)
    if not t > 0:
        raise UrlvrError(f"scoring temperature must be > 0, got {t}; use 1.0 for raw logits")
    return float(t)


def _need_scorer(name: str, scorer: Any) -> None:
    if scorer is None or not hasattr(scorer, "score"):
        raise UrlvrError(f"reward {name!r} scores continuations with the policy and needs scorer= (the trainer "
                         "passes it); call it with scorer=HFSampler(model, tokenizer)")


# ---------------------------------------------------------------------------------------------------
# CoVo: steps, distances, features, aggregation
# ---------------------------------------------------------------------------------------------------
def _merge_colons(steps: list[str]) -> list[str]:
    """Each step ending in ``:`` merged with the next one (the official ``merge_colon_ended_elements``)."""
    out, i = [], 0
    while i < len(steps):
        if steps[i].endswith(":") and i + 1 < len(steps):
            out.append(steps[i] + "\n" + steps[i + 1])
            i += 2
        else:
            out.append(steps[i])
            i += 1
    return out


def _chunks(steps: list[str], n: int) -> list[str]:
    """Consecutive steps joined into exactly ``n`` chunks: sizes ``⌊T/n⌋``, the last ``T mod n`` one larger."""
    size, larger = divmod(len(steps), n)
    sizes = [size] * (n - larger) + [size + 1] * larger
    out, at = [], 0
    for s in sizes:
        out.append("\n".join(steps[at : at + s]))
        at += s
    return out


def split_steps(text: str, max_steps: int = MAX_STEPS) -> list[str]:
    r"""CoVo's reasoning steps of a completion (the official ``process_thoughts``).

    Non-empty stripped lines; lines from one opening ``\[`` to its closing ``\]`` (on lines of their
    own) form one step, joined by ``"\n"`` (an unclosed block's lines stay separate steps); with
    ``max_steps`` or more steps, each line ending in ``:`` is merged with the next; still that many,
    they are merged into exactly ``max_steps`` chunks (:func:`_chunks`).
    """
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    steps: list[str] = []
    block: list[str] = []
    in_block = False
    for line in lines:
        opens, closes = "\\[" in line, "\\]" in line
        if opens and not closes:
            in_block = True
            block.append(line)
        elif closes and not opens:
            in_block = False
            block.append(line)
            steps.append("\n".join(block))
            block = []
        elif in_block:
            block.append(line)
        else:
            steps.append(line)
    steps += block  # an unclosed display block: its lines as they are
    if len(steps) >= max_steps:
        steps = _merge_colons(steps)
    if len(steps) >= max_steps:
        steps = _chunks(steps, max_steps)
    return steps


def perplexity(logprob: Tensor) -> float:
    """``exp(−mean_t log p_t)`` of one continuation's token log-probs (T,); inf for none."""
    return math.exp(-float(logprob.double().mean())) if logprob.numel() else math.inf


def con_vol(D: Tensor, own: int) -> tuple[float, float]:
    """Consistency and volatility of one trajectory from its distance matrix ``D`` (T states, K answers).

    ``Con = mean_t 1[D[t,own] < min_{k≠own} D[t,k]]``; ``Vol = 1 − L/T`` with ``L`` the number of
    trailing states where ``D[t,own] ≤ min_{k≠own} D[t,k]``. K < 2 or T = 0 → (0, 0).
    """
    T, K = D.shape  # (T, K)
    if K < 2 or T == 0:
        return 0.0, 0.0
    mine = D[:, own]  # (T,)
    others = torch.cat([D[:, :own], D[:, own + 1 :]], dim=1).min(dim=1).values  # (T,)
    con = float((mine < others).double().mean())
    trailing = 0
    for t in range(T - 1, -1, -1):
        if mine[t] > others[t]:
            break
        trailing += 1
    return con, 1.0 - trailing / T


def riv(con: Sequence[float], vol: Sequence[float]) -> float:
    """``‖ mean_τ (Con_τ cos Vol_τ, Con_τ sin Vol_τ) ‖`` over one answer cluster (Vol in radians)."""
    if not con:
        return 0.0
    x = sum(c * math.cos(v) for c, v in zip(con, vol)) / len(con)
    y = sum(c * math.sin(v) for c, v in zip(con, vol)) / len(con)
    return math.hypot(x, y)


def ril(con: Sequence[float], vol: Sequence[float]) -> float:
    """``mean Con − mean Vol`` over one answer cluster."""
    if not con:
        return 0.0
    return sum(con) / len(con) - sum(vol) / len(vol)


def step_curiosity(logprob: Tensor) -> float:
    """CoVo's curiosity of one step from its tokens' log-probs ``ℓ`` (n,) given the previous state.

    ``exp(−mean ℓ) − log(KL(q ‖ U)^{1/3} + 1)`` with ``q = ℓ / Σℓ`` (surprisal shares) and ``U``
    uniform over the n entries; KL is 0 when ``Σℓ = 0`` (every token certain) or n = 1.
    """
    n = logprob.numel()
    if n == 0:
        return 0.0
    lp = logprob.double()
    total = float(lp.sum())
    kl = 0.0
    if total != 0.0:
        q = lp / total  # (n,) non-negative shares
        kl = float(torch.where(q > 0, q * torch.log(q * n), torch.zeros_like(q)).sum())
    return math.exp(-float(lp.mean())) - math.log(max(kl, 0.0) ** (1 / 3) + 1)


def covo_distances(prompt: str, steps: list[str], answers: list[str],
                   curiosity: bool = False) -> tuple[list[list[str]], list[list[str]]]:
    """The (prompt, continuation) pairs CoVo scores for one trajectory (no model call here).

    Returns ``answer_pairs`` (T·K: state ``prompt + "\\n".join(steps[:t])`` then
    ``ANSWER_PREFIX + y_k``) and ``step_pairs`` (T, when ``curiosity``: step t after state t−1).
    """
    answer_pairs, step_pairs = [], []
    for t in range(1, len(steps) + 1):
        state = prompt + "\n".join(steps[:t])
        answer_pairs += [[state, ANSWER_PREFIX + y] for y in answers]
        if curiosity:
            step_pairs.append([prompt + "\n".join(steps[: t - 1]), ("\n" if t > 1 else "") + steps[t - 1]])
    return answer_pairs, step_pairs


@register_reward("covo", family="ensemble", needs_group=True, needs_scorer=True, source="CoVo (2506.08745)")
def covo(group: Group, aggregation: str = "riv", riv_threshold: float = 0.5, ril_threshold: float = 0.05,
         curiosity: bool = False, curiosity_threshold: float = 2.0, curiosity_bonus: float = 0.4,
         answer_text: str = "boxed", max_steps: int = MAX_STEPS, temperature: float = 1.0,
         equivalence: str | None = None, scorer: Any = None, settings: SamplingSettings | None = None) -> RewardOutput:
    r"""CoVo: 1 for the completions of an answer cluster whose states stay close to, and settle on, that answer.

    ``D[t,k]`` = perplexity (``exp`` of the mean NLL) of the appended ``"\nThe answer is: " + y_k``
    tokens after ``prompt + "\n".join(steps[:t])`` (steps: :func:`split_steps`, at most
    ``max_steps``), for the group's K distinct answers in order of first appearance
    (``equivalence``: how answers are compared; default the group's). Features :func:`con_vol`;
    per cluster :func:`riv` (``aggregation="riv"``, pass if ``≥ riv_threshold``) or :func:`ril`
    (``"ril"``, ``≥ ril_threshold``). K = 1 → Con = Vol = 0 (nothing passes); no answer → 0.
    ``curiosity`` (off in the released script): ``+curiosity_bonus`` when the mean over steps of
    :func:`step_curiosity` (step t's tokens given state t−1) exceeds ``curiosity_threshold``.

    Knobs where paper and code differ (defaults: the code): ``answer_text="boxed"`` appends
    ``\boxed{y_k}`` (the official code appends the extracted ``\boxed{...}`` string), ``"plain"`` the
    bare answer; scoring at ``temperature`` 1.0 (raw logits, as vLLM's prompt log-probs). Not
    reproduced: vLLM's extra log-prob of one greedily generated token folded into each perplexity;
    the paper's token-level states and continuous (unthresholded) aggregation.

    Work: one ``scorer.score`` call per group with ``T·K`` (+ ``T`` with curiosity) rows per answered
    trajectory, ``T ≤ max_steps``. Components: ``con``, ``vol``, ``passed`` (1/0, None without an
    answer), ``k`` (distinct answers), ``curiosity`` (with ``curiosity``).

    >>> from urlvr.types import Completion, Problem
    >>> g = Group(Problem("p", "1+1"), "1+1=", (Completion("\\boxed{2}", "2", torch.zeros(1).long()),) * 2)
    >>> covo(g, scorer=object()).scores  # one distinct answer: nothing to be consistent against
    [0.0, 0.0]
    """
    _choice("covo aggregation", aggregation, COVO_AGGREGATIONS)
    _choice("covo answer_text", answer_text, COVO_ANSWER_TEXTS)
    if max_steps < 1:
        raise UrlvrError(f"covo max_steps must be >= 1, got {max_steps}")
    ids = group.cluster_ids(equivalence)
    n = len(ids)
    reps: dict[int, str] = {}
    for i, c in enumerate(ids):
        if c is not None and c not in reps:
            reps[c] = group.completions[i].answer or ""
    K = len(reps)
    order = sorted(reps)  # cluster ids are numbered by first occurrence: the answer columns
    column = {c: j for j, c in enumerate(order)}
    texts = [BOXED + reps[c] + "}" if answer_text == "boxed" else reps[c] for c in order]
    answered = [i for i, c in enumerate(ids) if c is not None]
    steps = {i: split_steps(group.completions[i].text, max_steps) for i in answered}
    with_answers = K >= 2  # K = 1: Con = Vol = 0, no distance needed
    pairs: list[list[str]] = []
    spans: dict[int, tuple[int, int, int]] = {}  # i -> (start, n_answer_rows, n_step_rows)
    for i in answered:
        a, s = covo_distances(group.prompt, steps[i], texts if with_answers else [], curiosity)
        spans[i] = (len(pairs), len(a), len(s))
        pairs += a + s
    stats = []
    if pairs:
        _need_scorer("covo", scorer)
        stats = scorer.score([p for p, _ in pairs], [c for _, c in pairs], _temperature(temperature, None))
    con: list[float | None] = [None] * n
    vol: list[float | None] = [None] * n
    cur: list[float | None] = [None] * n
    for i in answered:
        start, na, ns = spans[i]
        T = len(steps[i])
        if with_answers and T:
            D = torch.tensor([perplexity(stats[start + r].logprob) for r in range(na)],
                             dtype=torch.float64).view(T, K)  # (T, K)
            con[i], vol[i] = con_vol(D, column[ids[i]])
        else:
            con[i], vol[i] = 0.0, 0.0
        if curiosity:
            vals = [step_curiosity(stats[start + na + r].logprob) for r in range(ns)]
            cur[i] = sum(vals) / len(vals) if vals else 0.0
    passed: list[float | None] = [None] * n
    threshold = riv_threshold if aggregation == "riv" else ril_threshold
    agg = riv if aggregation == "riv" else ril
    for c in order:
        members = [i for i in answered if ids[i] == c]
        ok = float(agg([con[i] for i in members], [vol[i] for i in members]) >= threshold)
        for i in members:
            passed[i] = ok
    scores = [0.0 if p is None else p for p in passed]
    if curiosity:
        scores = [s + (curiosity_bonus if cur[i] is not None and cur[i] > curiosity_threshold else 0.0)
                  for i, s in enumerate(scores)]
    components: dict[str, list[float | None]] = {"con": con, "vol": vol, "passed": passed, "k": [float(K)] * n}
    if curiosity:
        components["curiosity"] = cur
    return RewardOutput(scores, components)


# ---------------------------------------------------------------------------------------------------
# RLPR-style probability reward (label-free: y* = the group's majority answer)
# ---------------------------------------------------------------------------------------------------
REPEAT_WINDOW, REPEAT_COUNT = 10, 10
"""The released RLPR recipe's repetition check: some window of 10 words recurring 10 or more times."""


def is_repetitive(text: str, window: int = REPEAT_WINDOW, count: int = REPEAT_COUNT) -> bool:
    """True when some run of ``window`` consecutive words occurs at least ``count`` times in ``text``.

    >>> is_repetitive("a b " * 60, window=2, count=10), is_repetitive("one two three", window=2, count=2)
    (True, False)
    """
    words = text.split()
    if len(words) < window:
        return False
    seen = Counter(tuple(words[i : i + window]) for i in range(len(words) - window + 1))
    return max(seen.values()) >= count


def _tokenizer(scorer: Any) -> Any:
    tok = getattr(scorer, "tokenizer", None)
    if tok is None:
        raise UrlvrError("rlpr locates y* by token offsets and needs the scorer's tokenizer (scorer.tokenizer, as "
                         "urlvr.rollout.HFSampler has); pass an HFSampler as scorer")
    return tok


def _token_ends(scorer: Any, ids: list[int], text: str) -> list[int]:
    """The end character offset in ``text`` of each token of ``ids`` (the tokenisation of ``text``).

    Tokens decoded one by one (``scorer.token_texts``) when they concatenate back to ``text``;
    otherwise (SentencePiece spaces, split multi-byte characters) from decoding each prefix.
    """
    pieces = scorer.token_texts(ids) if hasattr(scorer, "token_texts") else None
    if pieces is not None and "".join(pieces) == text:
        ends, at = [], 0
        for p in pieces:
            at += len(p)
            ends.append(at)
        return ends
    tok = _tokenizer(scorer)
    ends = [len(tok.decode(ids[: k + 1])) for k in range(len(ids))]
    if tok.decode(ids) != text:
        raise UrlvrError(f"rlpr: the tokenizer does not decode {text!r} back to itself; y* cannot be located")
    return ends


def answer_token_mask(ends: Sequence[int], start: int, stop: int) -> Tensor:
    """(L,) bool: the tokens (ending at ``ends``) whose characters overlap ``[start, stop)``.

    >>> answer_token_mask([7, 8, 9, 10], 7, 9)  # "\\boxed{" "1" "2" "}": the tokens of "12"
    tensor([False,  True,  True, False])
    """
    begins = [0, *ends[:-1]]
    return torch.tensor([b < stop and e > start for b, e in zip(begins, ends)], dtype=torch.bool)


def _span_probability(logprob: Tensor, mask: Tensor, reduce: str) -> float:
    """Mean token probability (``mean``) or sequence probability (``product``) over the masked tokens; 0 for none."""
    lp = logprob[mask].double()  # (m,)
    if lp.numel() == 0:
        return 0.0
    return float(lp.exp().mean()) if reduce == "mean" else math.exp(float(lp.sum()))


_BASELINES: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
"""Per *initial scorer object* (one per run): ``(prompt, y*, temperature, reduce, span) -> P̄(y*|x)``.
Keyed weakly by the run's scorer, so nothing outlives or leaks between runs; a resumed run recomputes
(the initial policy is frozen: the same values)."""


def _baseline_cache(initial_scorer: Any) -> dict:
    try:
        return _BASELINES.setdefault(initial_scorer, {})
    except TypeError:  # an object that cannot be weakly referenced: no cache, recomputed every call
        return {}


@register_reward("rlpr", family="ensemble", needs_group=True, needs_scorer=True,
                 source="RLPR (2506.18254), VeriFree (2505.21493); label-free y* = â")
def rlpr(group: Group, reduce: str = "mean", debias: bool | None = None, span: str = "answer",
         format_coef: float = 0.1, repetition_penalty: float = 1.0, temperature: float | None = None,
         equivalence: str | None = None, scorer: Any = None, initial_scorer: Any = None,
         settings: SamplingSettings | None = None) -> RewardOutput:
    r"""RLPR made label-free: how probable the group's majority answer is after each completion's own reasoning.

    ``y* = â`` (majority over parsable answers, ties: first seen; ``equivalence`` as the group's by
    default). ``z`` = the completion's text before its last ``\boxed{`` (its full text when it has
    none: the block is appended); the continuation ``\boxed{y*}`` is scored after ``prompt + z``:
    ``P = mean_{t ∈ y*} p_t(y*_t)`` over the tokens overlapping ``y*``'s characters
    (``reduce="mean"``, RLPR) or ``exp Σ_{t ∈ y*} log p_t`` (``"product"``, VeriFree); ``span="block"``
    takes every token of ``\boxed{y*}`` instead (VeriFree scores its whole answer block).
    ``debias`` (default: on for ``mean``, off for ``product``): ``r = clip(P − P̄, 0, 1)`` with ``P̄``
    the same quantity with ``y*`` right after the prompt under the **initial** policy
    (``initial_scorer``), cached per (prompt, y*) for the run. Then RLPR's format mix
    ``r ← (1 − format_coef)·r + format_coef·1[the completion has a parsable answer]``
    (``format_coef=-1``: ``r`` if it has one else −1; 0: off) and the released recipe's repetition
    penalty: ``−repetition_penalty`` where some 10-word window recurs ≥ 10 times and ``r ≠ 0``.
    No parsable answer in the group → every reward 0. Scored at ``temperature`` (default: the run's
    sampling temperature, as verl's old log-probs).

    Work: one ``scorer.score`` call of N rows per group, plus one ``initial_scorer.score`` row the first
    time a (prompt, y*) is seen. Components: ``prob`` (P), ``baseline`` (P̄), ``format``.

    >>> from urlvr.types import Completion, Problem
    >>> g = Group(Problem("p", "1+1"), "1+1=", (Completion("?", None, torch.zeros(1).long()),) * 2)
    >>> rlpr(g, scorer=object()).scores  # no answer, no y*
    [0.0, 0.0]
    """
    _choice("rlpr reduce", reduce, RLPR_REDUCES)
    _choice("rlpr span", span, RLPR_SPANS)
    if not (0.0 <= format_coef <= 1.0 or format_coef == -1):
        raise UrlvrError(f"rlpr format_coef must be in [0, 1] or -1 (RLPR's 'format or -1'), got {format_coef}")
    debias = (reduce == "mean") if debias is None else bool(debias)
    ids = group.cluster_ids(equivalence)
    n = len(ids)
    winner, _ = majority(ids, "drop")
    if winner is None:
        zeros = [0.0] * n
        return RewardOutput(zeros, {"prob": [None] * n, "baseline": [None] * n, "format": [0.0] * n})
    star = group.completions[ids.index(winner)].answer or ""
    _need_scorer("rlpr", scorer)
    tau = _temperature(temperature, settings)
    cont = BOXED + star + "}"
    tok = _tokenizer(scorer)
    cont_ids = list(tok(cont, add_special_tokens=False)["input_ids"])  # (L,)
    if span == "answer":
        mask = answer_token_mask(_token_ends(scorer, cont_ids, cont), len(BOXED), len(BOXED) + len(star))  # (L,)
    else:
        mask = torch.ones(len(cont_ids), dtype=torch.bool)
    prefixes = []
    for c in group.completions:
        cut = c.text.rfind(BOXED)
        prefixes.append(group.prompt + (c.text[:cut] if cut >= 0 else c.text))
    stats = scorer.score(prefixes, [cont_ids] * n, tau)
    prob = [_span_probability(s.logprob, mask, reduce) for s in stats]
    base = 0.0
    if debias:
        if initial_scorer is None:
            raise UrlvrError("rlpr's debiasing needs the initial policy (initial_scorer=, which the trainer passes); "
                             "pass it or set reward_options.debias=false")
        cache = _baseline_cache(initial_scorer)
        key = (group.prompt, star, tau, reduce, span)
        if key not in cache:
            (s0,) = initial_scorer.score([group.prompt], [cont_ids], tau)
            cache[key] = _span_probability(s0.logprob, mask, reduce)
        base = cache[key]
    fmt = [float(a is not None) for a in group.answers]
    scores = []
    for i, c in enumerate(group.completions):
        r = min(max(prob[i] - base, 0.0), 1.0)
        if format_coef == -1:
            r = r if fmt[i] else -1.0
        else:
            r = (1 - format_coef) * r + format_coef * fmt[i]
        if repetition_penalty and r != 0 and is_repetitive(c.text):
            r -= repetition_penalty
        scores.append(r)
    return RewardOutput(scores, {"prob": prob, "baseline": [base if debias else None] * n, "format": fmt})
