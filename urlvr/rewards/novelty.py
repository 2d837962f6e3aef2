r"""EVOL-RL: the majority vote picks the sign, novelty ranks responses inside each sign (METHODS-2026 §1).

Over all ``N`` completions of a group (urlvr's ``n_votes``; only the first ``n_train`` are trained on):

1. The *embedded text* of a response is what follows its first ``</think>``, else the whole response.
   *Valid*: that text has a ``\boxed{...}`` (innermost-brace match, ``\boxed\{[^}]*\}``) whose content
   has a digit (``validity="boxed_digit"``, the code's math-only test); ``validity="parsable"`` (ours,
   for non-numeric tasks): the completion has an answer the task can parse.
2. ``â`` = the majority answer over the group's parsable answers (the group's clusters, so ``≡`` is the
   task's equivalence; ties go to the answer seen first). Valid responses with ``ans ≡ â`` form the
   majority set M, the other valid ones the minority set m.
3. ``s_ij = clip(cos(e_i, e_j), 0, 1)`` between the embeddings of valid responses.
4. ``μ_i`` = mean of ``s_ij`` over the other members of i's own set (alone in its set: over all other
   valid responses); ``h_i = max_{j≠i} s_ij`` over all other valid responses; novelty
   ``u_i = 1 − (μ_i + h_i) / 2``.
5. ``r_i = 0.5 + 0.5·(u_i − min_M u)/(max_M u − min_M u)`` on M (range [0.5, 1]),
   ``r_i = −1 + 0.5·(u_i − min_m u)/(max_m u − min_m u)`` on m (range [−1, −0.5]), invalid → −1.

Edge cases (the code's, kept): a set with one member gets 1.0 (M) or −0.5 (m); constant novelty inside
a set gives 0.75 / −0.75; fewer than two valid responses → **every** response −1 (the single valid one
too); ``N ≤ 1`` → the plain 0/1 vote. "Constant" means a spread of at most :data:`NOVELTY_TOL`
(ours: the code compares exactly, but float noise between pooled states of identical texts is not
novelty, and min-max would blow it up to the whole [0.5, 1] range).

**Embeddings: urlvr's substitution, not the paper's.** The paper embeds the texts with
Qwen3-Embedding-4B served by vLLM. ``embedding="policy"`` (default) uses instead the rollout's own
final-layer hidden state after the final norm, mean-pooled over the generated tokens fed back during
decoding (``Completion.embedding``, from the sampling forwards: no extra pass), then L2-normalised here.
It pools over the whole response, ``</think>`` part included (the rollout does not know where the
embedded text starts). Policy states are anisotropic (cosines crowd near 1), so the [0, 1] clip rarely
binds; the within-set min-max makes the reward depend only on relative spacing. The component
``evol_rl/novelty_policy`` (``evol_rl/novelty_external`` otherwise) names the source in the logs.
``embedding="package.module:function"``: your embedder, called once per group with the list of embedded
texts of the *valid* responses (the only ones the code embeds), returning an ``(n, D)`` array or tensor.
``center=True`` (ours, default off) subtracts the mean embedding of the valid responses before the cosine.

Components (logged as ``reward/evol_rl/...``): ``valid`` (1/0), ``majority`` (1/0 on valid responses),
``novelty_<source>`` (``u_i`` on valid responses, when computed).

>>> import torch
>>> from urlvr.types import Completion, Group, Problem
>>> def c(text, e):
...     return Completion(text, text[7:-1], torch.zeros(1).long(), embedding=torch.tensor(e))
>>> g = Group(Problem("p", "1+1"), "1+1", (c("\\boxed{2}", [1.0, 0.0]), c("\\boxed{2}", [1.0, 1.0]),
...           c("\\boxed{2}", [0.0, 1.0]), c("\\boxed{3}", [1.0, 0.2])))
>>> [round(r, 3) for r in evol_rl(g).scores]
[0.714, 0.5, 1.0, -0.5]
"""

from __future__ import annotations

import importlib
import re

import torch

from urlvr.answers import majority
from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.types import Group, RewardOutput

__all__ = ["evol_rl", "embedded_text", "boxed_digit", "novelty", "set_rewards", "VALIDITY", "NOVELTY_TOL"]

VALIDITY = ("boxed_digit", "parsable")
NOVELTY_TOL = 1e-6
"""A set whose novelties spread by at most this much counts as constant (0.75 / −0.75)."""

_BOXED = re.compile(r"\\boxed\{([^}]*)\}")
_DIGIT = re.compile(r"\d")


def embedded_text(text: str) -> str:
    """What EVOL-RL embeds: the text after the first ``</think>``, else the whole text."""
    head, sep, tail = text.partition("</think>")
    return tail if sep else text


def boxed_digit(text: str) -> bool:
    r"""The code's validity test: some ``\boxed{...}`` (no nested brace) whose content has a digit."""
    return any(_DIGIT.search(m) for m in _BOXED.findall(text))


def novelty(emb: torch.Tensor, in_majority: list[bool], center: bool = False) -> torch.Tensor:
    """``u_i = 1 − (μ_i + h_i) / 2`` for n ≥ 2 valid responses. (n, D), n flags -> (n,) float64.

    ``μ_i``: mean clipped cosine to the other members of i's set (all others when i is alone in it);
    ``h_i``: max clipped cosine to all others.
    """
    e = emb.double()  # (n, D)
    if center:
        e = e - e.mean(0, keepdim=True)
    e = e / e.norm(dim=1, keepdim=True).clamp(min=1e-8)  # the code's guard: a zero vector has cosine 0
    s = (e @ e.T).clamp(0.0, 1.0)  # (n, n)
    n = len(in_majority)
    side = torch.tensor(in_majority)
    other = ~torch.eye(n, dtype=torch.bool)  # (n, n)
    same = (side[:, None] == side[None, :]) & other  # (n, n)
    alone = same.sum(1) == 0  # (n,)
    peers = torch.where(alone[:, None], other, same)  # (n, n)
    mu = (s * peers).sum(1) / peers.sum(1)  # (n,)
    h = s.masked_fill(~other, float("-inf")).amax(1)  # (n,)
    return 1.0 - 0.5 * (mu + h)


def set_rewards(u: list[float], low: float, tol: float = NOVELTY_TOL) -> list[float]:
    """Min-max of one set's novelties into ``[low, low + 0.5]``; one member → ``low + 0.5``; constant → midpoint."""
    if len(u) == 1:
        return [low + 0.5]
    lo, hi = min(u), max(u)
    if hi - lo <= tol:
        return [low + 0.25] * len(u)
    return [low + 0.5 * (x - lo) / (hi - lo) for x in u]


def _external(path: str):
    mod, _, attr = path.partition(":")
    if not mod or not attr:
        raise UrlvrError(f"evol_rl embedding {path!r} is neither 'policy' nor 'package.module:function'; fix "
                         "reward_options.embedding")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise UrlvrError(f"cannot load evol_rl embedding {path!r} ({e}); give 'package.module:function'") from None


def _embeddings(group: Group, idx: list[int], texts: list[str], embedding: str) -> torch.Tensor:
    """The (n, D) embeddings of the valid responses ``idx``."""
    if embedding == "policy":
        return torch.stack([group.completions[i].embedding.float() for i in idx])
    out = torch.as_tensor(_external(embedding)(texts), dtype=torch.float32)
    if out.ndim != 2 or out.shape[0] != len(texts):
        raise UrlvrError(f"evol_rl embedding {embedding!r} returned shape {tuple(out.shape)} for {len(texts)} texts; "
                         "it must return an (N, D) array, one row per text")
    return out


@register_reward("evol_rl", family="ensemble", needs_group=True, needs_embeddings=True, source="EVOL-RL (2509.15194)")
def evol_rl(group: Group, validity: str = "boxed_digit", embedding: str = "policy", center: bool = False,
            equivalence: str | None = None) -> RewardOutput:
    """EVOL-RL: majority sign, within-sign novelty rank: M → [0.5, 1], minority → [−1, −0.5], invalid −1.

    ``u_i = 1 − (μ_i + h_i)/2`` from clipped cosines of the responses' embeddings, min-maxed inside
    each set (module docstring: the formula, every edge case). ``validity``: ``boxed_digit`` (code) or
    ``parsable`` (ours, non-numeric tasks). ``embedding``: ``policy`` (urlvr's substitution: the
    rollout's pooled final hidden states) or ``package.module:function`` (texts → (N, D)).
    ``center``: subtract the mean embedding first (ours). ``equivalence``: how answers vote
    (default: the group's).
    """
    if validity not in VALIDITY:
        raise UrlvrError(f"unknown evol_rl validity {validity!r}; choose one of: {', '.join(VALIDITY)}")
    source = "policy" if embedding == "policy" else "external"
    if source == "external":
        _external(embedding)  # a bad path fails on the first group, whatever the group holds
    n = len(group)
    ids = group.cluster_ids(equivalence)
    winner, _ = majority(ids, empty="drop")
    vote = [winner is not None and i == winner for i in ids]
    if n <= 1:
        return RewardOutput([float(v) for v in vote])
    if source == "policy":
        missing = [i for i, c in enumerate(group.completions) if c.embedding is None]
        if missing:
            raise UrlvrError(f"evol_rl needs each completion's embedding, and completion {missing[0]} of problem "
                             f"{group.problem.id!r} has none; sample with SamplingSettings(embed=True) (the trainer "
                             "does for rewards registered with needs_embeddings) or set embedding to "
                             "'package.module:function'")
    texts = [embedded_text(c.text) for c in group.completions]
    valid = [boxed_digit(t) if validity == "boxed_digit" else c.answer is not None
             for t, c in zip(texts, group.completions)]
    idx = [i for i in range(n) if valid[i]]
    scores = [-1.0] * n
    comps: dict[str, list[float | None]] = {
        "evol_rl/valid": [float(v) for v in valid],
        "evol_rl/majority": [float(vote[i]) if valid[i] else None for i in range(n)],
    }
    if len(idx) < 2:
        return RewardOutput(scores, comps)
    side = [vote[i] for i in idx]
    u = novelty(_embeddings(group, idx, [texts[i] for i in idx], embedding), side, center).tolist()  # (n_valid,)
    for flag, low in ((True, 0.5), (False, -1.0)):
        members = [k for k in range(len(idx)) if side[k] == flag]
        if members:
            for k, r in zip(members, set_rewards([u[k] for k in members], low)):
                scores[idx[k]] = r
    comps[f"evol_rl/novelty_{source}"] = [None] * n
    for k, i in enumerate(idx):
        comps[f"evol_rl/novelty_{source}"][i] = u[k]
    return RewardOutput(scores, comps)
