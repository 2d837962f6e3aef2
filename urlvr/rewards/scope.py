r"""SCOPE: step-confidence-weighted votes over random subgroups (METHODS-2026 §2).

**Confidence of a response.** Token confidence ``C_t``: ``confidence="sampled"`` (default, the released
code: its rollout asks for no top log-probs, so only the sampled token's is there) ``C_t = −log p_t(y_t)``,
a surprisal that *grows* with uncertainty; ``confidence="topk"`` (the paper, DeepConf's form)
``C_t = −(1/k) Σ_{j≤k} log p_t^(j)`` over the top k = :data:`urlvr.stats.CONFIDENCE_K` (20, **unverified**
for SCOPE) log-probs, higher = more certain. Steps: the response is cut after every token whose own
string contains ``"\n\n"`` (``steps="token"``, the code); the remainder is the last step.
``C(y) = mean_steps(mean_{t∈step} C_t)``; an empty response has ``C = 0``. ``steps="text"`` (ours) also
cuts where a ``"\n\n"`` spans two tokens (``"\n"`` + ``"\n"``): the only way to cut steps with a
character tokenizer, such as the testbed's, whose single tokens never contain ``"\n\n"``.
Tokens are decoded one by one with ``scorer.token_texts`` (the trainer passes its sampler). Without a
scorer (a hand-built group) a completion with one token per character of its text (plus an optional
final EOS) is cut by characters; anything else is an error.

**Vote.** ``â(S) = argmax_a Σ_{i∈S, ans_i = a} C(y_i)`` over the parsable answers of S (answers compared
by the group's clusters: the task's equivalence), ties → first seen in S's draw order; no parsable
answer → no label. Each answer is paired with its own response's confidence (``pairing="own"``); the
code drops answer-less responses first and then zips the answers with the *unfiltered* confidences,
shifting them (``pairing="code"``, parity only).

**Subgroups.** For a group size g dividing N: N/g subgroups of *consecutive* responses; subgroup j's
vote set S_j is V = ``min(votes, N)`` responses drawn without replacement from **all** N; label
``ℓ_j = â(S_j)``; ``r_k = 1[ans_k ≡ ℓ_{⌊k/g⌋}]`` (0 without an answer or a label).

**Choosing g.** Candidates: the powers of two dividing N, and N itself. For each: R(g) = mean reward
of the group, D(g) = number of distinct subgroup labels ("no label" counts as one, as the code's
string ``"None"`` does). Keep the Pareto-optimal g (maximise both), min-max R and D over that front
(denominator + 1e-8), pick ``argmin sqrt(λ(1−R̃)² + (1−λ)(1−D̃)²)``, ties → smaller g; then draw fresh
vote sets for the chosen g (``redraw=True``, the code; ``False`` reuses the search draw).
**Deviation:** the official code picks one g for the whole batch of prompts (D(g) and R(g) are means
over prompts); a urlvr reward sees one group at a time, so g is chosen **per prompt**. ``g=<int>``
fixes it instead (no search).

**Randomness** is seeded by ``(seed, problem id, the group's texts in order, purpose)``: the same group
draws the same vote sets, in any batch or after a resume. The reward is **order-dependent by design**
(subgroups are consecutive responses, vote sets are drawn by position); it is a function of the
seed, the problem and the ordered completions only. The code requires N_vote = N_train; in urlvr the
reward sees all ``n_votes`` and only the first ``n_train`` are trained.

Components (``reward/scope/...``): ``g`` (the chosen group size), ``labels`` (distinct subgroup labels,
D(g)), ``confidence`` (C(y) per response).

>>> import torch
>>> from urlvr.types import Completion, Group, Problem
>>> def c(text, surprisal):
...     return Completion(text, text[7:-1], torch.zeros(len(text)).long(),
...                       {"logprob": torch.full((len(text),), -surprisal)})
>>> g = Group(Problem("p", "1+1"), "1+1", (c("\\boxed{2}", 0.1), c("\\boxed{2}", 0.1), c("\\boxed{3}", 0.5)))
>>> scope(g, g=3).scores  # one subgroup voting on all three: 0.5 > 0.1 + 0.1, the surprisal wins
[0.0, 0.0, 1.0]
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from typing import Any, Sequence

import torch

from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.seeds import rng
from urlvr.types import Completion, Group, RewardOutput

__all__ = ["scope", "step_spans", "response_confidence", "weighted_vote", "subgroup_labels", "subgroup_rewards",
           "choose_g", "g_candidates", "CONFIDENCES", "STEP_RULES", "PAIRINGS", "STEP_MARK"]

CONFIDENCES = ("sampled", "topk")
STEP_RULES = ("token", "text")
PAIRINGS = ("own", "code")
STEP_MARK = "\n\n"


def step_spans(pieces: Sequence[str], rule: str = "token") -> list[tuple[int, int]]:
    """``(start, end)`` token spans of the steps of a response given its tokens' strings.

    ``token``: a token whose string contains ``"\\n\\n"`` closes a step; ``text``: the token on which a
    ``"\\n\\n"`` of the joined text ends closes one (occurrences found left
    to right, not overlapping). The remainder is the last step; no tokens, no steps.
    """
    if rule == "token":
        cuts = [i for i, p in enumerate(pieces) if STEP_MARK in p]
    else:
        text, owner = "".join(pieces), [i for i, p in enumerate(pieces) for _ in p]  # owner[c]: token of char c
        cuts = sorted({owner[m.end() - 1] for m in re.finditer(STEP_MARK, text)})  # non-overlapping, left to right
    spans, start = [], 0
    for i in cuts:
        spans.append((start, i + 1))
        start = i + 1
    if start < len(pieces):
        spans.append((start, len(pieces)))
    return spans


def response_confidence(per_token: torch.Tensor, spans: Sequence[tuple[int, int]]) -> float:
    """``C(y) = mean_steps(mean_{t∈step} C_t)``; 0 without steps. (T,) -> float."""
    if not spans:
        return 0.0
    c = per_token.double()
    return sum(float(c[a:b].mean()) for a, b in spans) / len(spans)


def weighted_vote(ids: Sequence[int | None], conf: Sequence[float], members: Sequence[int],
                  pairing: str = "own") -> int | None:
    """``argmax_a Σ_{k∈members, ids[k]=a} conf[k]``; ties → first seen in ``members``; None without answers.

    ``pairing="code"``: the answers of ``members`` (answer-less dropped) zipped with the confidences of
    ``members`` unfiltered, as the released code does.
    """
    answers = [ids[k] for k in members if ids[k] is not None]
    weights = [conf[k] for k in members if ids[k] is not None] if pairing == "own" else [conf[k] for k in members]
    score: dict[int, float] = {}
    for a, w in zip(answers, weights):
        score[a] = score.get(a, 0.0) + w
    return max(score, key=score.get) if score else None  # max keeps the first of equal scores


def subgroup_labels(ids: Sequence[int | None], conf: Sequence[float], g: int, votes: int, draw: random.Random,
                    pairing: str = "own") -> list[int | None]:
    """One label per subgroup of ``g`` consecutive responses, each voted on ``votes`` responses drawn from all N."""
    n = len(ids)
    return [weighted_vote(ids, conf, draw.sample(range(n), votes), pairing) for _ in range(n // g)]


def subgroup_rewards(ids: Sequence[int | None], labels: Sequence[int | None], g: int) -> list[float]:
    """``r_k = 1[ids[k] = labels[k // g]]``, 0 without an answer or a label."""
    return [float(a is not None and a == labels[k // g]) for k, a in enumerate(ids)]


def g_candidates(n: int) -> list[int]:
    """The group sizes searched: powers of two dividing ``n``, then ``n``."""
    out = [1 << p for p in range(n.bit_length()) if n % (1 << p) == 0]
    return out if out[-1] == n else out + [n]


def choose_g(candidates: Sequence[tuple[int, float, float]], lam: float) -> int:
    """The g of ``(g, R, D)`` rows (ascending g) on the Pareto front closest to the ideal, λ-weighted.

    ``argmin sqrt(λ(1−R̃)² + (1−λ)(1−D̃)²)`` over the front, R̃ and D̃ min-maxed over it (+1e-8); ties → first.
    """
    def dominated(a, b):  # b at least as good in both, better in one
        return b[1] >= a[1] and b[2] >= a[2] and (b[1] > a[1] or b[2] > a[2])

    front = [c for c in candidates if not any(o[0] != c[0] and dominated(c, o) for o in candidates)]
    r_lo, r_hi = min(c[1] for c in front), max(c[1] for c in front)
    d_lo, d_hi = min(c[2] for c in front), max(c[2] for c in front)
    best, best_d = front[0][0], math.inf
    for g, r, d in front:
        rn, dn = (r - r_lo) / (r_hi - r_lo + 1e-8), (d - d_lo) / (d_hi - d_lo + 1e-8)
        dist = math.sqrt(lam * (1 - rn) ** 2 + (1 - lam) * (1 - dn) ** 2)
        if dist < best_d:
            best, best_d = g, dist
    return best


def _pieces(group: Group, scorer: Any) -> list[list[str]]:
    """Each completion's tokens as strings (decoded once per distinct id), or its characters without a scorer."""
    if scorer is not None:
        ids = [c.token_ids.tolist() for c in group.completions]
        distinct = sorted({t for row in ids for t in row})
        text = dict(zip(distinct, scorer.token_texts(distinct)))
        return [[text[t] for t in row] for row in ids]
    out = []
    for i, c in enumerate(group.completions):
        T, L = len(c.token_ids), len(c.text)
        if T == L or (T == L + 1 and c.ends_with_eos):
            out.append(list(c.text) + [""] * (T - L))
        else:
            raise UrlvrError(f"scope cannot cut completion {i} of problem {group.problem.id!r} into steps: it has {T} "
                             f"tokens for {L} characters and no scorer decodes them; pass scorer= (the trainer "
                             "passes its sampler) or build one token per character")
    return out


def _token_confidence(c: Completion, confidence: str) -> torch.Tensor:
    name = "logprob" if confidence == "sampled" else "confidence"
    if name not in c.stats:
        raise UrlvrError(f"scope confidence={confidence!r} needs the per-token statistic {name!r}, which this "
                         "completion lacks; build it with urlvr.stats.token_stats (or sample it with the trainer)")
    x = c.stats[name]
    return -x if confidence == "sampled" else x


def _check(votes: int, lam: float, g: int | None, confidence: str, steps: str, pairing: str, n: int) -> None:
    if confidence not in CONFIDENCES:
        raise UrlvrError(f"unknown scope confidence {confidence!r}; choose one of: {', '.join(CONFIDENCES)}")
    if steps not in STEP_RULES:
        raise UrlvrError(f"unknown scope steps rule {steps!r}; choose one of: {', '.join(STEP_RULES)}")
    if pairing not in PAIRINGS:
        raise UrlvrError(f"unknown scope pairing {pairing!r}; choose one of: {', '.join(PAIRINGS)}")
    if isinstance(votes, bool) or not isinstance(votes, int) or votes < 1:
        raise UrlvrError(f"scope votes must be a positive integer (responses per vote set), got {votes!r}")
    if not 0.0 <= lam <= 1.0:
        raise UrlvrError(f"scope lam must be in [0, 1] (the weight of the mean reward against diversity), got {lam}")
    if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 1 or n % g):
        raise UrlvrError(f"scope g={g!r} must be a positive integer dividing the group size {n}; fix "
                         "reward_options.g (or leave it None to search)")


@register_reward("scope", family="ensemble", needs_group=True, needs_logits=True, needs_scorer=True,
                 source="SCOPE (2512.15146)")
def scope(group: Group, votes: int = 32, lam: float = 0.7, g: int | None = None, confidence: str = "sampled",
          redraw: bool = True, seed: int = 0, steps: str = "token", pairing: str = "own",
          equivalence: str | None = None, scorer: Any = None, settings: Any = None) -> RewardOutput:
    """SCOPE: ``r_k = 1[ans_k ≡ ℓ_{⌊k/g⌋}]``, each subgroup's label a step-confidence-weighted vote on V random responses.

    ``votes`` V (capped at N), ``lam`` λ of the g search, ``g`` a fixed group size (None: searched per
    prompt, a deviation from the code's per-batch choice), ``confidence`` ``sampled`` (code) or ``topk``
    (paper), ``redraw`` fresh vote sets for the chosen g (code), ``seed``, ``steps`` ``token`` (code) or
    ``text`` (ours), ``pairing`` ``own`` (the spec's fix) or ``code``, ``equivalence`` (default: the
    group's). The module docstring has the formulas.
    """
    n = len(group)
    _check(votes, lam, g, confidence, steps, pairing, n)
    if n == 0:
        return RewardOutput([])
    v = min(votes, n)
    ids = group.cluster_ids(equivalence)
    pieces = _pieces(group, scorer)
    conf = [response_confidence(_token_confidence(c, confidence), step_spans(p, steps))
            for c, p in zip(group.completions, pieces)]
    digest = hashlib.sha256("\x00".join(c.text for c in group.completions).encode()).hexdigest()

    def draw(purpose: str, size: int) -> list[int | None]:
        draws = rng(seed, "scope", group.problem.id, digest, purpose, size)
        return subgroup_labels(ids, conf, size, v, draws, pairing)

    if g is None:
        search = {size: draw("search", size) for size in g_candidates(n)}
        rows = [(size, sum(subgroup_rewards(ids, labels, size)) / n, float(len(set(labels))))
                for size, labels in search.items()]
        g = choose_g(rows, lam)
        labels = draw("final", g) if redraw else search[g]
    else:
        labels = draw("final", g)
    distinct = float(len(set(labels)))
    return RewardOutput(subgroup_rewards(ids, labels, g),
                        {"scope/g": [float(g)] * n, "scope/labels": [distinct] * n, "scope/confidence": conf})
