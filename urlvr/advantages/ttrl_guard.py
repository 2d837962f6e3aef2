r"""TTRL-Guard (arXiv 2605.19444; METHODS-2026.md §3): history-aware brakes on the majority vote.

TTRL's 0/1 majority reward stays; this modifier watches each prompt's majority answer over its
*visits* (the steps in which the prompt is in the batch) and acts on that prompt's GRPO advantages.
Per visit ``t`` of prompt ``x``: ``â_t`` the majority answer over the ``n_votes`` answers (answer-less
completions do not vote, ties to the first occurrence; compared across visits by the task's voting
key ``ctx.canonical`` of the first completion in the majority cluster, since cluster ids are per
group), ``MR_t = count(â_t) / n_votes`` (answer-less completions in the denominator; 0 without any
answer, whose key is None), and

- flip ``FR_t = 1[â_t ≠ â_{t−1}]`` (0 on the first visit); ``had_comp`` latches once ``FR > τ_FR``;
  ``MR_win`` = mean MR of the last ``window`` visits, the current one included;
- **FRS** weight ``w = 1 − λ1·FR``; ``w ← w(1 − λ2)`` if ``MR > τ_MR`` and ``FR > τ_FR``; ``w ← w(1 − λ2/2)``
  if not ``had_comp``, at least ``window`` visits, ``MR_win > τ_MR`` and this third term has fired fewer
  than ``window`` times for the prompt (it counts its firings); ``w ← max(0.1, w)``;
- **RCSU** keep: high risk ⇔ ``had_comp`` ∧ ≥ ``window`` visits ∧ ``MR_win > θ_MR``; per high-risk prompt,
  in batch order, ``u ~ U(0, 1)`` is always drawn (``urlvr.seeds.rng(ctx.seed, "ttrl_guard", ctx.step)``)
  and the prompt is skipped (``keep = 0``) if ``u < p_skip`` and fewer than ``max(1, ⌊P/4⌋)`` prompts of
  the batch (P prompts) were skipped already;
- **MPS** bonus: active from a visit with ``FR > τ_FR`` until ``mps_steady`` consecutive visits with
  ``FR ≤ τ_FR``; while active, each minority answer cluster ``a ≠ â`` with ``c_a ≥ max(1, ⌊n_train/d⌋)``
  of the ``n_votes`` votes gets ``b_a = β_t · c_a / Σ_minority c``, ``β_t = β_max · min(FR/τ_FR, 1)``;
- application: ``A'_i = A_i · w · keep``, then ``A''_i = A'_i + b_{a_i} · s`` with
  ``s = mean_i |A'_i| + 1e-6`` over the prompt's ``n_train`` rollouts; an answer-less rollout gets
  ``0.05 · mean(b) · s`` when the prompt has any bonus; other rollouts get none.

Defaults are the released scripts' (``θ_MR = 0.5``; the class default is 0.7) with FRS, MPS and RCSU
all on, as for Qwen2.5-7B-Instruct (Llama-3.2-3B-Instruct and Qwen3-4B use ``frs=False``).

Paper vs code (each a knob or a stated choice):

- (a) the released code never stores the per-answer vote counts MPS reads, so its bonus is never
  applied: ``mps_counts="votes"`` (default) counts the ``n_votes`` answers; ``"released"`` is parity
  with the released runs (MPS does nothing at all, not even its activity state is kept, as there);
- (b) FRS down-weights at *high* FR and only its capped third term acts on never-flipping prompts
  (the code; the abstract says otherwise);
- (c) FR is binary, so ``β_t ∈ {0, β_max}``: a bonus exists only on the flip visit itself;
- (d) the code's ``s`` averages ``|A'|`` over every token slot, padding included; here it is the mean
  over the prompt's rollouts (each rollout once);
- the released code draws RCSU's ``u`` from one ``numpy`` stream seeded 42 across the run; here each
  step has its own stream from the run's seed and the step, so a resumed run draws the same.

State (:meth:`TTRLGuard.state_dict`, plain JSON-able values, saved with every checkpoint): per problem
id the last ``max(3·window, 20)`` visits ``[key, MR]``, ``had_comp``, MPS activity and its low-FR
counter, the third term's firing count. Under data parallelism each process sees only its groups.

>>> import torch
>>> from urlvr.advantages.modifiers import AdvantageContext
>>> guard = TTRLGuard()
>>> def visit(step, answers):
...     clusters = [{"4": 0, "5": 1}.get(a) for a in answers]
...     n = len(answers)
...     return AdvantageContext(step=step, seed=0, problem_ids=["p"], clusters=[clusters], answers=[answers],
...                             rewards=torch.zeros(1, n), valid=torch.ones(1, n, dtype=torch.bool), n_train=4)
>>> adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
>>> guard(adv, visit(0, ["4", "5", "4", "4"]))  # first visit: FR = 0, nothing changes
tensor([[ 1., -1.,  1., -1.]])
>>> guard(adv, visit(1, ["5", "4", "5", None]))  # â flips 4 -> 5: w = 0.5, bonus 0.3 to the "4" cluster
tensor([[ 0.5000, -0.3500,  0.5000, -0.4925]])
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import Tensor

from urlvr.advantages.modifiers import AdvantageContext, AdvantageModifier, register_modifier
from urlvr.answers import visit_majority
from urlvr.seeds import rng

__all__ = ["TTRLGuard", "MPS_COUNTS", "frs_weight", "minority_bonus", "apply_guard"]

MPS_COUNTS = ("votes", "released")
"""Where MPS reads the per-answer votes: the ``n_votes`` answers, or nowhere (the released code)."""


def frs_weight(fr: float, mr: float, mr_win: float, had_comp: bool, visits: int, fired: int, *, tau_fr: float,
               tau_mr: float, lambda1: float, lambda2: float, window: int) -> tuple[float, bool]:
    """FRS weight of one prompt at one visit and whether the capped third term fired.

    >>> frs_weight(1.0, 0.8, 0.8, True, 6, 0, tau_fr=0.3, tau_mr=0.6, lambda1=0.5, lambda2=0.3, window=5)
    (0.35, False)
    >>> frs_weight(0.0, 0.8, 0.9, False, 5, 4, tau_fr=0.3, tau_mr=0.6, lambda1=0.5, lambda2=0.3, window=5)
    (0.85, True)
    """
    w = 1.0 - lambda1 * fr
    if mr > tau_mr and fr > tau_fr:
        w *= 1.0 - lambda2
    third = not had_comp and visits >= window and mr_win > tau_mr and fired < window
    if third:
        w *= 1.0 - lambda2 / 2
    return max(0.1, w), third


def minority_bonus(clusters: Sequence[int | None], winner: int | None, fr: float, min_votes: int, *,
                   tau_fr: float, beta_max: float) -> dict[int, float]:
    """MPS bonus per minority cluster of one group (``clusters`` over all ``n_votes``; answer-less not counted):
    clusters other than ``winner`` with at least ``min_votes`` votes share ``β_t = β_max·min(FR/τ_FR, 1)``
    in proportion to their votes.

    >>> minority_bonus([0, 0, 0, 1, 1, 2, None, None], 0, 1.0, 2, tau_fr=0.3, beta_max=0.3)
    {1: 0.3}
    """
    counts: dict[int, int] = {}
    for c in clusters:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    minority = {c: k for c, k in counts.items() if k >= min_votes and c != winner}
    total = sum(minority.values())
    beta = beta_max * min(fr / max(tau_fr, 1e-6), 1.0)
    return {c: beta * k / max(total, 1) for c, k in minority.items()}


def apply_guard(adv: Tensor, weight: Tensor, keep: Tensor, clusters: Sequence[Sequence[int | None]],
                bonus: Sequence[dict[int, float]]) -> tuple[Tensor, int]:
    """``A'' = A·w·keep + b·s`` per prompt (``s = mean_i |A'_i| + 1e-6``) and the number of rollouts given a bonus.

    ``adv`` (G, n_train); ``weight``, ``keep`` (G,); ``clusters`` (G, ≥ n_train) cluster per rollout
    (None: answer-less, given ``0.05·mean(b)·s`` when the prompt has a bonus); ``bonus`` (G,) per cluster.

    >>> apply_guard(torch.tensor([[1.0, -1.0]]), torch.tensor([0.5]), torch.tensor([1.0]), [[0, 1]], [{1: 0.3}])
    (tensor([[ 0.5000, -0.3500]]), 1)
    """
    out = adv * (weight * keep).unsqueeze(1)  # (G, n_train)
    given = 0
    for g, b in enumerate(bonus):
        if not b:
            continue
        s = float(out[g].abs().mean()) + 1e-6  # per-rollout mean |A'| (deviation (d))
        mean_b = sum(b.values()) / len(b)
        for i in range(adv.shape[1]):
            c = clusters[g][i]
            add = b.get(c, 0.0) * s if c is not None else 0.05 * mean_b * s
            if add > 0:
                out[g, i] += add
                given += 1
    return out, given


@register_modifier("ttrl_guard", family="ensemble")
class TTRLGuard(AdvantageModifier):
    """TTRL-Guard: FRS weights, RCSU skips and MPS bonuses from each prompt's majority-answer history.

    The module docstring gives the formulas, the released code's defaults and where paper and code differ."""

    def __init__(self, frs: bool = True, mps: bool = True, rcsu: bool = True, tau_fr: float = 0.3, tau_mr: float = 0.6,
                 lambda1: float = 0.5, lambda2: float = 0.3, beta_max: float = 0.3, mps_denom: int = 4,
                 mps_steady: int = 3, window: int = 5, theta_mr: float = 0.5, p_skip: float = 0.7,
                 mps_counts: str = "votes"):
        for name, v in (("tau_fr", tau_fr), ("tau_mr", tau_mr), ("lambda1", lambda1), ("lambda2", lambda2),
                        ("theta_mr", theta_mr), ("p_skip", p_skip)):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if beta_max < 0:
            raise ValueError(f"beta_max must be >= 0, got {beta_max}")
        for name, v in (("mps_denom", mps_denom), ("mps_steady", mps_steady), ("window", window)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if mps_counts not in MPS_COUNTS:
            raise ValueError(f"mps_counts must be one of {', '.join(MPS_COUNTS)}, got {mps_counts!r}")
        self.frs, self.mps, self.rcsu = bool(frs), bool(mps), bool(rcsu)
        self.tau_fr, self.tau_mr, self.lambda1, self.lambda2 = tau_fr, tau_mr, lambda1, lambda2
        self.beta_max, self.mps_denom, self.mps_steady = beta_max, mps_denom, mps_steady
        self.window, self.theta_mr, self.p_skip, self.mps_counts = window, theta_mr, p_skip, mps_counts
        self.keep_visits = max(3 * window, 20)
        self.prompts: dict[str, dict[str, Any]] = {}
        """Problem id -> {"history": [[key, MR], ...], "had_comp", "mps_active", "mps_low", "term3"}."""

    # ---- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"prompts": copy.deepcopy(self.prompts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts = copy.deepcopy(dict(state.get("prompts", {})))

    def _entry(self, pid: str) -> dict[str, Any]:
        return self.prompts.setdefault(pid, {"history": [], "had_comp": False, "mps_active": False, "mps_low": 0,
                                             "term3": 0})

    # ---- one step -----------------------------------------------------------------------------------
    def __call__(self, adv: Tensor, ctx: AdvantageContext) -> Tensor:
        G = len(ctx.problem_ids)
        if adv.dim() != 2 or adv.shape[0] != G:
            raise ValueError(f"ttrl_guard needs (G, n_train) advantages for {G} prompts, got {tuple(adv.shape)}; "
                             "put it before any modifier that adds advantage columns")
        # 1. the visit: append (key of â, MR) of every prompt first, then read the flips (the code's order)
        maj = [visit_majority(c, a, ctx.canonical) for c, a in zip(ctx.clusters, ctx.answers)]  # (G,)
        for pid, (key, mr, _) in zip(ctx.problem_ids, maj):
            h = self._entry(pid)["history"]
            h.append([key, mr])
            del h[: -self.keep_visits]
        entries = [self.prompts[pid] for pid in ctx.problem_ids]
        fr = [float(len(e["history"]) >= 2 and e["history"][-1][0] != e["history"][-2][0]) for e in entries]  # (G,)
        mr_win = [sum(m for _, m in e["history"][-self.window:]) / len(e["history"][-self.window:])
                  for e in entries]  # (G,)
        for e, f in zip(entries, fr):
            e["had_comp"] = e["had_comp"] or f > self.tau_fr
        # 2. FRS weights
        weight = [1.0] * G
        if self.frs:
            for g, e in enumerate(entries):
                weight[g], fired = frs_weight(fr[g], maj[g][1], mr_win[g], e["had_comp"], len(e["history"]),
                                              e["term3"], tau_fr=self.tau_fr, tau_mr=self.tau_mr,
                                              lambda1=self.lambda1, lambda2=self.lambda2, window=self.window)
                e["term3"] += fired
        # 3. RCSU skips: one draw per high-risk prompt in batch order, at most max(1, P // 4) skipped
        keep, high, skipped = [1.0] * G, 0, 0
        if self.rcsu:
            draws, cap = rng(ctx.seed, "ttrl_guard", ctx.step), max(1, G // 4)
            for g, e in enumerate(entries):
                if e["had_comp"] and len(e["history"]) >= self.window and mr_win[g] > self.theta_mr:
                    high += 1
                    if draws.random() < self.p_skip and skipped < cap:
                        keep[g], skipped = 0.0, skipped + 1
        # 4. MPS bonuses per minority cluster (none under the released code's missing counts)
        bonus: list[dict[int, float]] = [{} for _ in range(G)]
        active = 0
        if self.mps and self.mps_counts == "votes":
            min_votes = max(1, ctx.n_train // self.mps_denom)
            for g, e in enumerate(entries):
                if fr[g] > self.tau_fr:
                    e["mps_active"], e["mps_low"] = True, 0
                elif e["mps_active"]:
                    e["mps_low"] += 1
                    e["mps_active"] = e["mps_low"] < self.mps_steady
                if e["mps_active"]:
                    active += 1
                    bonus[g] = minority_bonus(ctx.clusters[g], maj[g][2], fr[g], min_votes, tau_fr=self.tau_fr,
                                              beta_max=self.beta_max)
        # 5. A'' = A · w · keep + b · s
        w_t = torch.tensor(weight, dtype=adv.dtype, device=adv.device)  # (G,)
        keep_t = torch.tensor(keep, dtype=adv.dtype, device=adv.device)  # (G,)
        out, given = apply_guard(adv, w_t, keep_t, ctx.clusters, bonus)
        m, name = ctx.metrics, "adv/ttrl_guard"
        m[f"{name}/flip_rate"] = sum(fr) / max(1, G)
        m[f"{name}/frs_weight_mean"] = sum(weight) / max(1, G)
        m[f"{name}/high_risk"] = high
        m[f"{name}/skipped"] = skipped
        m[f"{name}/mps_active"] = active
        m[f"{name}/bonus_prompts"] = sum(any(v > 0 for v in b.values()) for b in bonus)
        m[f"{name}/bonus_rollouts"] = given
        return out
