r"""RESTRAIN (arXiv 2510.02172): soft pseudo-labels over every answer, self-penalisation of low-consensus
prompts, offline prompt weights from the frozen base policy (METHODS-2026.md §6, paper-level).

No public code exists; every item the description leaves open is an option (below). The modifier
**ignores the incoming advantages**: the run's ``reward`` (e.g. ``majority_vote``) is only logged. For a
group of ``N`` rollouts (``n_votes``; answer-less ones count in ``N`` unless ``empty_in_n=False``) with
distinct answers ``a_j`` of counts ``c_j`` (answer clusters under the run's equivalence, over all
``n_votes``), ``f_j = c_j / N``::

    g(f)   = exp(-(f - center)^2 / (2 sigma^2))                      Gaussian shaping
    w_j    = g(f_j) / sum_l g(f_l)                                   pseudo-label weights, sum to 1
    r_ij   = 1[ans_i == a_j]                 i over the first n_train   candidate rewards
    A~_ij  = GRPO advantage of r_.j within the group                 (urlvr.advantages.grpo_advantages)
    column j = u_x * w_j * A~_ij                                     (G, n_train, J), J = the step's max

The trainer's loss sums the PPO-clip surrogates over the last dimension; since ``u_x w_j >= 0``,
``-min(r·c·A, clip(r)·c·A) = c · (-min(r·A, clip(r)·A))``, so the loss is exactly
``u_x Σ_j w_j L_GRPO(x, a_j)`` with clipping **per candidate** (not the surrogate of the summed
advantage). Columns past a group's own candidates are zero.

**Negative rollout penalisation:** ``M(x) = max_j c_j``; when ``M(x) < kappa · N`` (``kappa`` is a
*fraction* of ``N``, so one value fits every group size; the paper writes ``M(x) < κ`` with a count) the
group gets a single column ``-delta`` for every rollout (times ``u_x`` when ``weight_penalty``: the
paper's total ``u_x Σ_j w_j L̃`` with every candidate's advantage ``-δ`` and ``Σ_j w_j = 1``), all other
columns zero.

**Prompt weighting** (``prompt_weighting="offline"``): ``u_x = g(c_ref / N_ref)`` with ``c_ref`` the
majority count of the frozen base policy's ``base_votes`` answers on problem x (the trainer samples them
once before step 0 and calls :meth:`Restrain.prepare`; the weights live in :meth:`state_dict`, so a
resumed run uses the same). ``normalise_u`` divides by the mean weight over the training problems. A
problem without a base vote (not in the training set) gets ``u_x = 1``; ``adv/restrain/base_seen`` logs
the share of groups that had one. ``"off"``: ``u_x = 1`` everywhere (no base votes are drawn).

**Unverified items, all options** (urlvr's defaults, none from the paper's code): ``kappa=0.2``,
``delta=0.5``, ``sigma=0.5``, ``center=1.0`` (the description calls g monotone in f: centre at 1, so
small σ tends to majority voting), ``empty_in_n=True`` (answer-less rollouts stay in ``N``),
``empty_candidate=False`` (they are not a candidate label), ``normalise_u=False``,
``weight_penalty=True``, ``base_votes=8``; the prompt weight uses the same ``g`` as the labels.

Metrics (``adv/restrain/``): ``penalised`` (share of groups), ``candidates`` (mean J of the unpenalised
groups), ``top_weight`` (mean ``max_j w_j``), ``prompt_weight`` (mean ``u_x``), ``base_seen``.

>>> import torch
>>> from urlvr.advantages.modifiers import AdvantageContext
>>> ctx = AdvantageContext(step=0, seed=0, problem_ids=["p"], clusters=[[0, 0, 0, 1]], answers=[["4", "4", "4", "5"]],
...                        rewards=torch.zeros(1, 4), valid=torch.ones(1, 4, dtype=torch.bool), n_train=4)
>>> adv = Restrain(prompt_weighting="off")(torch.zeros(1, 4), ctx)  # w = g(3/4), g(1/4) normalised
>>> adv.shape, [round(w, 4) for w in gaussian_weights([0.75, 0.25])]
(torch.Size([1, 4, 2]), [0.7311, 0.2689])
>>> adv[0, :, 0]  # w_0 · GRPO advantage of 1[ans == "4"] = 0.7311 · [0.5, 0.5, 0.5, -1.5]
tensor([ 0.3655,  0.3655,  0.3655, -1.0966])
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from urlvr.advantages.estimators import grpo_advantages
from urlvr.advantages.modifiers import AdvantageContext, AdvantageModifier, majority_of, register_modifier

__all__ = ["Restrain", "gaussian", "gaussian_weights", "candidate_counts", "PROMPT_WEIGHTINGS"]

PROMPT_WEIGHTINGS = ("offline", "off")


def gaussian(f: float, center: float, sigma: float) -> float:
    """``g(f) = exp(-(f - center)^2 / (2 sigma^2))``."""
    return math.exp(-((f - center) ** 2) / (2 * sigma**2))


def gaussian_weights(freqs: Sequence[float], center: float = 1.0, sigma: float = 0.5) -> list[float]:
    """``w_j = g(f_j) / Σ_l g(f_l)`` (empty in, empty out).

    >>> gaussian_weights([0.5, 0.5]), gaussian_weights([1.0])
    ([0.5, 0.5], [1.0])
    """
    g = [gaussian(f, center, sigma) for f in freqs]
    total = sum(g)
    if not g:
        return []
    return [x / total for x in g] if total > 0 else [1.0 / len(g)] * len(g)


def candidate_counts(clusters: Sequence[int | None], empty_candidate: bool = False) -> dict[int | None, int]:
    """Count of each candidate label, in order of first occurrence; answer-less rollouts (None) form a
    candidate only when ``empty_candidate``.

    >>> candidate_counts([None, 2, 1, 2]), candidate_counts([None, 2], empty_candidate=True)
    ({2: 2, 1: 1}, {None: 1, 2: 1})
    """
    counts: dict[int | None, int] = {}
    for c in clusters:
        if c is not None or empty_candidate:
            counts[c] = counts.get(c, 0) + 1
    return counts


@register_modifier("restrain", family="ensemble")
class Restrain(AdvantageModifier):
    """RESTRAIN: J candidate-label advantage columns ``u_x · w_j · Ã_ij``; ``-δ`` below the consensus floor."""

    def __init__(self, kappa: float = 0.2, delta: float = 0.5, sigma: float = 0.5, center: float = 1.0,
                 prompt_weighting: str = "offline", normalise_u: bool = False, base_votes: int = 8,
                 empty_in_n: bool = True, empty_candidate: bool = False, weight_penalty: bool = True,
                 eps: float = 1e-6):
        if not 0.0 <= kappa <= 1.0:
            raise ValueError(f"kappa is a fraction of the group size in [0, 1], got {kappa}")
        if delta < 0:
            raise ValueError(f"delta is the penalty size (>= 0; the advantage is -delta), got {delta}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if not 0.0 <= center <= 1.0:
            raise ValueError(f"center is a frequency in [0, 1], got {center}")
        if prompt_weighting not in PROMPT_WEIGHTINGS:
            raise ValueError(f"prompt_weighting must be one of {', '.join(PROMPT_WEIGHTINGS)}, "
                             f"got {prompt_weighting!r}")
        if prompt_weighting == "offline" and (not isinstance(base_votes, int) or base_votes < 1):
            raise ValueError(f"base_votes must be an int >= 1 with prompt_weighting='offline', got {base_votes!r}")
        self.kappa, self.delta, self.sigma, self.center = kappa, delta, sigma, center
        self.prompt_weighting, self.normalise_u = prompt_weighting, normalise_u
        self.empty_in_n, self.empty_candidate, self.weight_penalty, self.eps = (
            empty_in_n, empty_candidate, weight_penalty, eps)
        self.base_votes = base_votes if prompt_weighting == "offline" else 0  # 0: the trainer draws none
        self.weights: dict[str, float] = {}
        """problem id -> u_x from the base policy's votes (empty until :meth:`prepare` or a resume)."""

    # ---- offline prompt weights --------------------------------------------------------------------
    def group_size(self, clusters: Sequence[int | None]) -> int:
        """``N``: every rollout, or (``empty_in_n=False``) those with an answer; an answer-less candidate
        (``empty_candidate``) always counts."""
        if self.empty_in_n or self.empty_candidate:
            return len(clusters)
        return sum(c is not None for c in clusters)

    def prompt_weight(self, clusters: Sequence[int | None]) -> float:
        """``g(c_ref / N)`` of one problem's base votes (``c_ref`` the majority count; answer-less votes never
        form the majority here)."""
        n = self.group_size(clusters)
        _, c_ref = majority_of(list(clusters))
        return gaussian(c_ref / n if n else 0.0, self.center, self.sigma)

    def prepare(self, base_clusters: dict[str, list[int | None]]) -> None:
        """Before step 0: ``u_x`` of every training problem from the frozen base policy's answer clusters."""
        if self.prompt_weighting == "off":
            return
        weights = {pid: self.prompt_weight(ids) for pid, ids in base_clusters.items()}
        if self.normalise_u and weights:
            mean = sum(weights.values()) / len(weights)
            weights = {pid: u / mean for pid, u in weights.items()} if mean > 0 else weights
        self.weights = weights

    def state_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = {str(k): float(v) for k, v in state.get("weights", {}).items()}

    # ---- the step ----------------------------------------------------------------------------------
    def __call__(self, adv: Tensor, ctx: AdvantageContext) -> Tensor:
        G, n_train = adv.shape
        per_group = [self._group(ids, ctx.n_train) for ids in ctx.clusters]  # (labels, weights, penalised)
        J = max([1] + [len(labels) for labels, _, pen in per_group if not pen])
        rewards = torch.zeros(G, J, n_train, dtype=adv.dtype)  # r_ij, one row of n_train per candidate column
        scale = torch.zeros(G, J, dtype=adv.dtype)  # u_x · w_j
        penalty = torch.zeros(G, dtype=adv.dtype)  # -δ (· u_x) for penalised groups
        u = torch.tensor([self._u(pid) for pid in ctx.problem_ids], dtype=adv.dtype)  # (G,)
        for g, (labels, w, pen) in enumerate(per_group):
            if pen:
                penalty[g] = -self.delta * (float(u[g]) if self.weight_penalty else 1.0)
                continue
            train_ids = ctx.clusters[g][:n_train]
            for j, (label, wj) in enumerate(zip(labels, w)):
                rewards[g, j] = torch.tensor([float(c == label) for c in train_ids], dtype=adv.dtype)
                scale[g, j] = u[g] * wj
        valid = ctx.valid[:, :n_train].unsqueeze(1).expand(G, J, n_train)  # (G, J, n_train)
        cand_adv = grpo_advantages(rewards.reshape(G * J, n_train), valid.reshape(G * J, n_train),
                                   eps=self.eps).reshape(G, J, n_train)  # Ã_ij per column
        out = (cand_adv * scale.unsqueeze(-1)).transpose(1, 2).contiguous()  # (G, n_train, J)
        pen_rows = torch.tensor([p for _, _, p in per_group], dtype=torch.bool)  # (G,)
        out[pen_rows] = 0.0
        out[pen_rows, :, 0] = penalty[pen_rows].unsqueeze(-1).expand(-1, n_train)
        kept = [(labels, w) for labels, w, pen in per_group if not pen]
        ctx.metrics.update({
            "adv/restrain/penalised": float(pen_rows.float().mean()) if G else 0.0,
            "adv/restrain/candidates": sum(len(lab) for lab, _ in kept) / len(kept) if kept else 0.0,
            "adv/restrain/top_weight": sum(max(w) for _, w in kept if w) / len(kept) if kept else 0.0,
            "adv/restrain/prompt_weight": float(u.mean()) if G else 0.0,
            "adv/restrain/base_seen": (sum(pid in self.weights for pid in ctx.problem_ids) / G) if G else 0.0,
        })
        return out

    def _u(self, problem_id: str) -> float:
        if self.prompt_weighting == "off":
            return 1.0
        return self.weights.get(problem_id, 1.0)  # unseen problem (no base votes): unweighted

    def _group(self, clusters: Sequence[int | None], n_train: int) -> tuple[list[int | None], list[float], bool]:
        """One group's candidate labels (first occurrence), their weights ``w_j`` and whether it is penalised."""
        counts = candidate_counts(clusters, self.empty_candidate)
        n = self.group_size(clusters)
        top = max(counts.values(), default=0)
        if top < self.kappa * n or (not counts and self.kappa > 0):
            return [], [], True
        labels = list(counts)
        return labels, gaussian_weights([counts[a] / n for a in labels], self.center, self.sigma), False
