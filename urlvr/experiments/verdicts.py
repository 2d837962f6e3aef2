"""Statistics over seeds and the verdict of every finding: pure functions of curves, tested on hand-built ones.

A curve is a list of accuracies at shared steps; :func:`curve_stats` summarises per-seed curves (start,
peak and end of the seed-mean curve, and per-seed values for spreads). Every verdict uses the margin
:data:`TOL` (0.03 of accuracy): a curve "rises then falls" when its peak is more than TOL above its start
and its end more than TOL below its peak, and "is stable" when its end is within TOL of its peak, judged
on each seed's own curve (a majority of seeds must agree, since the timing of a fall varies from seed to
seed); comparisons between conditions use the seed means. A verdict is ``reproduced`` when every
check holds, ``partly reproduced`` when some do, ``not reproduced`` when none does, and its ``why``
prints every number and threshold it rests on.

>>> describe([0.5, 0.7, 0.6])
'0.600 ± 0.100'
>>> c = curve_stats([[0.5, 0.7, 0.6], [0.5, 0.9, 0.6]], [0, 10, 20])
>>> c["peak_step"], rises_then_falls(c), stays(c)
(10, (2, 2), (0, 2))
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = [
    "TOL", "Verdict", "verdict", "describe", "curve_stats", "rises_then_falls", "stays", "most", "val_curve",
    "step_curve", "tail_mean", "families_verdicts", "dataset_size_verdicts", "mcs_verdict", "external_verdict",
    "certainty_explanation", "tail_fraction", "kl_quarters", "sharpening_budget", "RANDOM_AUC", "TINY_DIFF", "TAIL_SHARE",
]

TOL = 0.03
"""Margin (accuracy) a rise, a fall or a difference must exceed to count in a verdict."""
KL_RATIO = 2.0
"""Large-set KL over small-set KL the paper reports (0.057 vs more than twice that)."""
MCS_SPEARMAN = 0.6
"""Spearman(MCS, GT Gain) a ranking must reach."""


@dataclass(frozen=True)
class Verdict:
    verdict: str
    """``reproduced``, ``partly reproduced`` or ``not reproduced``."""
    why: str
    """The numbers and thresholds the verdict rests on."""
    checks: tuple[bool, ...] = ()


def verdict(checks: Sequence[bool]) -> str:
    """``reproduced`` (all checks hold), ``partly reproduced`` (some), ``not reproduced`` (none).

    >>> verdict([True, True]), verdict([True, False]), verdict([False])
    ('reproduced', 'partly reproduced', 'not reproduced')
    """
    return "reproduced" if all(checks) else "partly reproduced" if any(checks) else "not reproduced"


# ---- statistics over seeds --------------------------------------------------------------------------

def describe(values: Sequence[float | None]) -> str:
    """``mean ± std`` over seeds (sample std; ± 0 for one seed), three decimals."""
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.fmean(v):.3f} ± {sd:.3f}"


def curve_stats(curves: Sequence[Sequence[float]], steps: Sequence[int]) -> dict[str, Any]:
    """Start, peak (of the seed-mean curve) and end of per-seed curves on shared ``steps``.

    Returns the seed means ``start``, ``peak``, ``end`` and ``peak_step``, ``rise = peak - start``,
    ``fall = peak - end``, and the per-seed values at those steps (``*_seeds``) for spreads.
    """
    n = min(len(c) for c in curves)
    mean = [statistics.fmean(c[i] for c in curves) for i in range(n)]
    p = max(range(n), key=lambda i: (mean[i], -i))
    out = {"start": mean[0], "peak": mean[p], "end": mean[n - 1], "peak_step": steps[p],
           "rise": mean[p] - mean[0], "fall": mean[p] - mean[n - 1], "mean": mean, "steps": list(steps[:n]),
           "curves": [list(c[:n]) for c in curves]}
    out.update(start_seeds=[c[0] for c in curves], peak_seeds=[c[p] for c in curves],
               end_seeds=[c[n - 1] for c in curves], change_seeds=[c[n - 1] - c[0] for c in curves],
               rise_seeds=[max(c[:n]) - c[0] for c in curves], fall_seeds=[max(c[:n]) - c[n - 1] for c in curves])
    return out


def rises_then_falls(c: dict) -> tuple[int, int]:
    """Seeds whose own curve rises by more than TOL and then falls by more than TOL: (count, seeds)."""
    return sum(r > TOL and f > TOL for r, f in zip(c["rise_seeds"], c["fall_seeds"])), len(c["rise_seeds"])


def stays(c: dict) -> tuple[int, int]:
    """Seeds whose own curve ends within TOL of its peak: (count, seeds)."""
    return sum(f <= TOL for f in c["fall_seeds"]), len(c["fall_seeds"])


def most(counts: tuple[int, int]) -> bool:
    """A strict majority of seeds."""
    return 2 * counts[0] > counts[1]


def val_curve(rows: list[dict], k: int) -> tuple[list[int], list[float]]:
    """Steps and values of ``val/avg@k`` in a run's metric rows."""
    key = f"val/avg@{k}"
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [s for s, _ in pts], [v for _, v in pts]


def step_curve(rows: list[dict], key: str, window: int) -> tuple[list[int], list[float]]:
    """A per-step metric as non-overlapping means of ``window`` steps (x = the block's last step)."""
    pts = [(r["step"], r[key]) for r in rows if r["step"] > 0 and r.get(key) is not None]
    steps, vals = [], []
    for i in range(0, len(pts) - window + 1, window):
        block = pts[i : i + window]
        steps.append(block[-1][0])
        vals.append(statistics.fmean(v for _, v in block))
    return steps, vals


def tail_mean(rows: list[dict], key: str, frac: float = 0.2) -> float | None:
    """Mean of ``key`` over the last ``frac`` of a run's training steps."""
    vals = [r[key] for r in rows if r["step"] > 0 and r.get(key) is not None]
    if not vals:
        return None
    tail = vals[-max(1, int(len(vals) * frac)) :]
    return statistics.fmean(tail)


def end_over_start(rows: list[dict], key: str, frac: float = 0.2) -> float | None:
    """Mean of ``key`` over the last ``frac`` of a run's training steps over its mean over the first ``frac``
    (None with fewer than 5 values or a zero start).

    >>> round(end_over_start([{"step": s, "x": float(s)} for s in range(11)], "x"), 4)  # mean(9, 10) / mean(1, 2)
    6.3333
    """
    vals = [r[key] for r in rows if r["step"] > 0 and r.get(key) is not None]
    if len(vals) < 5:
        return None
    n = max(1, int(len(vals) * frac))
    start = statistics.fmean(vals[:n])
    return statistics.fmean(vals[-n:]) / start if start else None


def kl_quarters(rows: list[dict], key: str = "policy/kl_initial") -> list[float | None]:
    """Mean of ``key`` over each quarter of a run's training steps (None for a quarter without a value).

    >>> kl_quarters([{"step": s, "policy/kl_initial": float(s)} for s in range(0, 9)])
    [1.5, 3.5, 5.5, 7.5]
    """
    vals = [(r["step"], r[key]) for r in rows if r["step"] > 0 and r.get(key) is not None]
    last = max((r["step"] for r in rows), default=0)
    out: list[float | None] = []
    for i in range(4):
        lo, hi = last * i / 4, last * (i + 1) / 4
        part = [v for s, v in vals if lo < s <= hi]
        out.append(statistics.fmean(part) if part else None)
    return out


def sharpening_budget(first_rows: list[dict]) -> float:
    """Per-token KL that pure sharpening of the initial majority costs: ``−log r0 / length`` (METHODS.md §8), from
    the first steps' mean majority ratio ``r0`` and mean response length.

    >>> round(sharpening_budget([{"step": 1, "diag/majority_ratio": 0.5, "rollout/length_mean": 10.0}]), 4)
    0.0693
    """
    r0 = [r["diag/majority_ratio"] for r in first_rows if r.get("diag/majority_ratio") is not None and r["step"] > 0]
    ln = [r["rollout/length_mean"] for r in first_rows if r.get("rollout/length_mean") is not None and r["step"] > 0]
    if not r0 or not ln:
        return float("nan")
    return -math.log(max(statistics.fmean(r0), 1e-3)) / max(statistics.fmean(ln), 1.0)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _f(x) -> str:
    return f"{x:.3f}" if _finite(x) else "n/a"


# ---- the findings -------------------------------------------------------------------------------------

def families_verdicts(curves: dict[tuple[str, str], dict], rewards: Sequence[str]) -> tuple[Verdict, Verdict]:
    """Experiment 1 on ``curves[(prior, reward)]`` (prior ``aligned``/``misaligned``).

    Rise then fall: on the aligned prior, a majority of seeds of every intrinsic reward rises then
    falls. The fall follows the prior: on the misaligned prior each intrinsic reward ends more than TOL
    below its start and gains less than on the aligned one; gold (when run) improves both by > TOL.
    """
    intrinsic = [x for x in rewards if x != "gold"]
    rise_fall = [(reward, rises_then_falls(curves[("aligned", reward)])) for reward in intrinsic]
    follows = []
    for reward in intrinsic:
        a, m = curves[("aligned", reward)], curves[("misaligned", reward)]
        follows.append((reward, (m["end"] - m["start"]) < -TOL and a["peak"] - a["start"] > m["peak"] - m["start"]))
    gold_ok = (all(curves[(pr, "gold")]["end"] - curves[(pr, "gold")]["start"] > TOL
                   for pr in ("aligned", "misaligned")) if "gold" in rewards else None)
    checks1 = tuple(most(k) for _, k in rise_fall)
    v1 = Verdict(verdict(checks1), f"Seeds whose aligned-prior curve rises by > {TOL} and then falls by > {TOL} "
                 "(a majority needed): " + ", ".join(f"{n} {k[0]}/{k[1]}" for n, k in rise_fall) + ".", checks1)
    why = (f"Misaligned prior: end - start < -{TOL} and a smaller gain than on the aligned prior: "
           + ", ".join(f"{n} {'yes' if ok else 'no'}" for n, ok in follows) + ".")
    if gold_ok is not None:
        why += f" Control: gold improves both priors by > {TOL}: {'yes' if gold_ok else 'no'}."
    checks2 = tuple(ok for _, ok in follows) + ((gold_ok,) if gold_ok is not None else ())
    return v1, Verdict(verdict(checks2), why, checks2)


def dataset_size_verdicts(on_set: dict[int, dict], kl: dict[int, list[float | None]]) -> tuple[Verdict, Verdict]:
    """Experiment 2: sets of <= 128 problems stay within TOL of their peak (a majority of seeds), sets of
    >= 512 rise then fall; the large sets' mean KL to the initial model is >= :data:`KL_RATIO` times the
    small sets'."""
    sizes = sorted(on_set)
    small = [n for n in sizes if n <= 128]
    large = [n for n in sizes if n >= 512]
    checks = tuple([most(stays(on_set[n])) for n in small] + [most(rises_then_falls(on_set[n])) for n in large])
    why = (f"Seeds whose on-set curve ends within {TOL} of its peak (sets <= 128, a majority needed): "
           + ", ".join("{}: {}/{}".format(n, *stays(on_set[n])) for n in small)
           + f"; seeds whose curve rises by > {TOL} then falls by > {TOL} (sets >= 512): "
           + ", ".join("{}: {}/{}".format(n, *rises_then_falls(on_set[n])) for n in large) + ".")
    mean_kl = {n: statistics.fmean(v for v in kl[n] if v is not None) if any(v is not None for v in kl[n])
               else float("nan") for n in sizes}
    ratio = (statistics.fmean(mean_kl[n] for n in large) / max(statistics.fmean(mean_kl[n] for n in small), 1e-12)
             if small and large else None)
    kl_ok = ratio is not None and _finite(ratio) and ratio >= KL_RATIO
    why_kl = ("KL (last 20% of steps, seed mean): " + ", ".join(f"{n}: {mean_kl[n]:.4f}" for n in sizes)
              + (f"; large / small = {ratio:.2f} (needs >= {KL_RATIO:g})." if ratio is not None else "."))
    return Verdict(verdict(checks), why, checks), Verdict(verdict([kl_ok]), why_kl, (kl_ok,))


def mcs_verdict(rows: list[dict], passk: int, max_steps: int) -> tuple[Verdict, dict[str, tuple[float, float]]]:
    """Experiment 3 on one row per model (``mcs``, ``censored``, ``gt_gain``, ``acc_before`` lists over seeds,
    ``passk_gain`` when measured). Checks: Spearman(MCS, GT Gain) >= :data:`MCS_SPEARMAN`; at most half the
    MCS runs censored at the cap (censored models tie); MCS beats pass@k gain (untested without it).
    Returns the verdict and the correlations ``{name: (spearman, kendall)}``."""
    from urlvr.watch.rank import kendall, spearman

    mean = statistics.fmean
    mcs_m, gt_m = [mean(x["mcs"]) for x in rows], [mean(x["gt_gain"]) for x in rows]
    acc0 = [mean(x["acc_before"]) for x in rows]
    corr = {"mcs_vs_gt": (spearman(mcs_m, gt_m), kendall(mcs_m, gt_m)),
            "mcs_vs_base_accuracy": (spearman(mcs_m, acc0), kendall(mcs_m, acc0))}
    if passk:
        pk = [x["passk_gain"] for x in rows]
        corr["passk_vs_gt"] = (spearman(pk, gt_m), kendall(pk, gt_m))
    rho, tau = corr["mcs_vs_gt"]
    censored = sum(sum(x["censored"]) for x in rows)
    n_runs = sum(len(x["censored"]) for x in rows)
    checks = [_finite(rho) and rho >= MCS_SPEARMAN, 2 * censored <= n_runs]
    why = (f"Spearman(MCS, GT Gain) = {_f(rho)}, Kendall = {_f(tau)} (needs Spearman >= {MCS_SPEARMAN}); {censored} "
           f"of {n_runs} MCS runs censored at the cap of {max_steps} steps (needs at most half: censored models tie)")
    if "passk_vs_gt" in corr:
        prho = corr["passk_vs_gt"][0]
        checks.append(_finite(rho) and (not _finite(prho) or rho > prho))
        why += f"; pass@{passk} gain vs GT Gain: Spearman {_f(prho)} (MCS must beat it)"
    else:
        checks.append(False)  # "better than pass@k gain" is part of the claim; untested here
        why += "; pass@k gain not measured in this plan, so 'better than pass@k gain' is untested"
    why += f"; MCS vs base accuracy: Spearman {_f(corr['mcs_vs_base_accuracy'][0])}"
    return Verdict(verdict(checks), why, tuple(checks)), corr


def external_verdict(curves: dict[tuple[str, str], dict], rewards: Sequence[str], intrinsic: Sequence[str]) -> Verdict:
    """Experiment 4 on ``curves[(prior, reward)]``: on the misaligned prior the verifier gains more than
    TOL and leads the best intrinsic reward by more than TOL; on any other prior it does not fall by
    more than TOL and gains within TOL of the best intrinsic reward."""
    checks, parts = [], []
    for prior in dict.fromkeys(k[0] for k in curves):
        v = curves[(prior, "verifier")]
        gain = v["end"] - v["start"]
        best = max(curves[(prior, x)]["end"] - curves[(prior, x)]["start"] for x in rewards if x in intrinsic)
        if prior == "misaligned":
            checks += [gain > TOL, gain - best > TOL]
            parts.append(f"misaligned: verifier end - start {gain:+.3f} (needs > {TOL}), best intrinsic {best:+.3f} "
                         f"(verifier must lead by > {TOL})")
        else:
            checks.append(v["fall"] <= TOL and gain >= best - TOL)
            parts.append(f"{prior}: verifier gain {gain:+.3f}, fall {v['fall']:+.3f} (needs no fall > {TOL} and a gain "
                         f"within {TOL} of the best intrinsic {best:+.3f})")
    return Verdict(verdict(checks), "; ".join(parts) + ".", tuple(checks))


# ---- the self-certainty explanation ---------------------------------------------------------------------------

RANDOM_AUC = (0.35, 0.65)
"""A within-group AUC inside this band counts as no real preference between correct and wrong completions."""
TINY_DIFF = 0.01
"""Mean within-group self-certainty difference (nats) below which GRPO's normalisation is amplifying noise."""
DIFFUSE = 0.1
"""Distinct answers per group rising by more than this fraction of their start counts as diffusion."""
TAIL_SHARE = 0.8
"""Share of the correct − wrong self-certainty difference carried by the vocabulary tail to call it tail-dominated."""


def certainty_explanation(prefs: dict[str, dict], curves: dict[str, dict], shapes: dict[str, dict]
                          ) -> tuple[str, str]:
    """Verdict on "self-certainty is the most stable intrinsic reward" on the testbed, and the explanation
    with every number and threshold: which checks of the mechanism hold.

    ``prefs``: Part 1 results by model name (``aligned`` required; keys ending ``(real LM)`` are real models);
    ``curves``: Part 2 :func:`curve_stats` by arm (``self_certainty`` = the unchanged arm); ``shapes``: by arm,
    per-seed end/start ratios of ``policy/self_certainty``, ``diag/majority_ratio``, ``diag/distinct_answers``.

    >>> prefs = {"aligned": {"base_rate": 0.63, "rewards": {"self_certainty": {"auc": 0.6, "top": 0.4},
    ...          "trajectory_entropy": {"auc": 1.0, "top": 1.0}, "majority_vote": {"auc": 1.0, "top": 1.0}},
    ...          "self_certainty": {"within_group_diff": 0.002, "parts": {}}}}
    >>> c = curve_stats([[0.6, 0.3, 0.1]], [0, 10, 20])
    >>> shapes = {"self_certainty": {"policy/self_certainty": [0.98], "diag/majority_ratio": [0.7],
    ...           "diag/distinct_answers": [1.4], "label_accuracy_end": [0.1]}}
    >>> v, why = certainty_explanation(prefs, {"self_certainty": c}, shapes)
    >>> v, "no real preference" in why, "diffuses" in why
    ('not reproduced', True, True)
    """
    lines = []
    base = curves.get("self_certainty")
    rises = base is not None and base["peak"] - base["start"] > TOL
    holds = base is not None and base["end"] >= base["peak"] - TOL
    if base is not None:
        shape = ("rises and holds" if rises and holds else "rises then falls" if rises else
                 "falls from step 0" if base["end"] - base["start"] < -TOL else "stays flat")
        lines.append(f"On the testbed self_certainty {shape} (validation {base['start']:.3f} → {base['end']:.3f}, peak "
                     f"{base['peak']:.3f} at step {base['peak_step']}; a rise or fall needs more than {TOL}; the claim "
                     "needs a rise that holds).")
    a = prefs.get("aligned")
    if a is not None:
        sc, rw = a["self_certainty"], a["rewards"]
        auc, top = rw["self_certainty"]["auc"], rw["self_certainty"]["top"]
        near_random = auc is not None and RANDOM_AUC[0] <= auc <= RANDOM_AUC[1]
        lines.append(
            f"(1) Inside a group it has {'no real preference' if near_random else 'a preference'} for correct "
            f"completions: within-group AUC {fmt(auc)} (band of no preference {RANDOM_AUC[0]}–{RANDOM_AUC[1]}); its "
            f"top-ranked completion is correct in {fmt(top)} of groups against {fmt(a['base_rate'])} for any "
            f"completion, while trajectory entropy ranks by the sampled tokens' probability (AUC "
            f"{fmt(rw['trajectory_entropy']['auc'])}) and majority vote by agreement (AUC "
            f"{fmt(rw['majority_vote']['auc'])}).")
        diff = sc.get("within_group_diff")
        if diff is not None:
            lines.append(
                f"(2) The differences it ranks by are {'tiny' if abs(diff) < TINY_DIFF else 'not tiny'}: "
                f"{diff:+.4f} nats between a group's correct and wrong completions (threshold {TINY_DIFF}), against "
                f"a reward of about {fmt(sc.get('mean'))} nats; group normalisation turns them into "
                "±1 advantages all the same. The completions of a group share the prompt and every token before "
                "the answer, and self-certainty is a property of each distribution p_t, not of the sampled token, "
                "so only the few positions after the completions part can differ.")
        share = tail_fraction(sc.get("parts", {}))
        if share is not None:
            lines.append(f"(3) {'Most' if share >= TAIL_SHARE else 'Part'} of the correct − wrong difference "
                         f"({share:.2f}; tail-dominated at ≥ {TAIL_SHARE}) comes from the vocabulary tail, the entries "
                         f"outside the top tokens of each p_t: self-certainty averages log p over every token, so it "
                         "measures how firmly the model rules out tokens it would never write, not which answer "
                         "it prefers.")
    sh = shapes.get("self_certainty")
    if sh:
        sc_ratio = _mean(sh["policy/self_certainty"])
        distinct = _mean(sh["diag/distinct_answers"])
        ratio = _mean(sh["diag/majority_ratio"])
        label = _mean(sh.get("label_accuracy_end"))
        diffuses = distinct is not None and distinct > 1 + DIFFUSE
        lines.append(f"(4) Training on it {'first diffuses the policy' if diffuses else 'does not diffuse the policy'} "
                     f"(distinct answers per group up to {fmt(distinct)}× their start in the first half of the run; "
                     f"diffusion = more than {1 + DIFFUSE:g}×) and ends with the majority ratio at {fmt(ratio)}× its start "
                     f"and a label accuracy of {fmt(label)} over the last 20 % of steps, while the rewarded quantity "
                     f"itself barely moves (mean self-certainty {fmt(sc_ratio)}× its start).")
    others = [arm for arm in curves if arm != "self_certainty"]
    if others:
        fall = [arm for arm in others if curves[arm]["end"] - curves[arm]["start"] < -TOL]
        lines.append(f"(5) One change at a time: {', '.join(fall) or 'none'} still fall by more than {TOL}; "
                     f"{', '.join(x for x in others if x not in fall) or 'none'} do not.")
    real = [name for name in prefs if name.endswith("(real LM)")]
    for name in real:
        auc = prefs[name]["rewards"]["self_certainty"]["auc"]
        same = auc is not None and RANDOM_AUC[0] <= auc <= RANDOM_AUC[1]
        lines.append(f"(6) {name} on its short-answer set: self-certainty AUC {fmt(auc)}, "
                     f"{'the same absence of preference' if same else 'unlike the testbed'}; trajectory entropy "
                     f"{fmt(prefs[name]['rewards']['trajectory_entropy']['auc'])}, majority vote "
                     f"{fmt(prefs[name]['rewards']['majority_vote']['auc'])}.")
    return verdict([rises, holds]), " ".join(lines)


def _mean(xs) -> float | None:
    xs = [x for x in (xs or []) if _finite(x)]
    return statistics.fmean(xs) if xs else None


def fmt(x, spec: str = "{:.3f}") -> str:
    """A number for a table or a sentence; ``-`` for None."""
    return "-" if x is None else spec.format(x)


def tail_fraction(parts: dict) -> float | None:
    """Share of the correct − wrong difference of self-certainty parts (``span head|tail`` means) from the tails."""
    if "correct" not in parts or "wrong" not in parts:
        return None
    d = {k: parts["correct"].get(k, 0.0) - parts["wrong"].get(k, 0.0) for k in parts["correct"]}
    tail = sum(abs(v) for k, v in d.items() if k.endswith("tail"))
    total = tail + sum(abs(v) for k, v in d.items() if k.endswith("head"))
    return tail / total if total > 1e-12 else None
