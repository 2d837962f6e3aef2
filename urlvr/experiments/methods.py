"""Experiment ``methods``: every 2025–26 label-free method beside TTRL's majority vote, on both priors.

Not one of the paper's findings (so not in the default list of ``urlvr reproduce``): a side-by-side table
of the methods of METHODS-2026.md under the *same* settings (the plan's rollout sizes, training set,
steps and learning rate, 3 seeds), each arm a reward and/or an advantage modifier or loss option on top
of those settings (:data:`ARMS`). Run it with ``urlvr reproduce --only methods --out runs/methods``.

Per arm and prior: validation avg@k at the start, at the peak of the seed-mean curve and at the end,
label accuracy (the oracle share of prompts whose majority answer is correct) and policy entropy over
the last 20 % of steps, and the share of groups with no learning signal (all rewards equal, so all
advantages 0; mean over the run): an arm with no signal ends where it started by construction. :func:`compare_to_baseline` (pure) says, per prior, whether an arm ends above,
below or within ``TOL`` of majority vote, and whether the difference exceeds the seeds' spread.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from urlvr.errors import UrlvrError
from urlvr.experiments.figures import plot_grid
from urlvr.experiments.findings import Finding
from urlvr.experiments.runner import Runner
from urlvr.experiments.verdicts import TOL, curve_stats, describe, tail_mean, val_curve

__all__ = ["ARMS", "run", "compare_to_baseline"]

BASELINE = "majority_vote"

ARMS: dict[str, dict[str, Any]] = {
    "majority_vote": {"reward": "majority_vote"},
    "evol_rl": {"reward": "evol_rl"},
    "scope": {"reward": "scope"},
    "scope_topk": {"reward": "scope", "reward_options": {"confidence": "topk"}},
    "ttrl_guard": {"reward": "majority_vote", "advantage_modifier": "ttrl_guard"},
    "self_harmony": {"reward": "self_harmony"},
    "covo": {"reward": "covo"},
    "rlpr": {"reward": "rlpr", "advantage_modifier": "std_filter"},
    "restrain": {"reward": "majority_vote", "advantage_modifier": "restrain"},
    "spine": {"reward": "majority_vote", "spine_rho": 0.2, "spine_band_coef": 0.1, "kl_coef": 0.01},
    "snr": {"reward": "snr"},
    "certified_only": {"reward": "majority_vote", "advantage_modifier": "certified_only"},
}
"""Arm name -> the settings it changes (everything else is the plan's, the same for every arm)."""

PRIORS = ("aligned", "misaligned")


def compare_to_baseline(end: dict[str, list[float]], baseline: str = BASELINE, tol: float = TOL) -> dict[str, str]:
    """Per arm: ``above`` / ``below`` majority vote when the seed-mean end accuracy differs by more than
    ``tol`` *and* by more than the larger of the two seed standard deviations; else ``within``.

    >>> compare_to_baseline({"majority_vote": [0.5, 0.52, 0.48], "a": [0.7, 0.72, 0.68], "b": [0.51, 0.3, 0.7]})
    {'a': 'above', 'b': 'within'}
    """
    base = end[baseline]
    out = {}
    for arm, vals in end.items():
        if arm == baseline:
            continue
        diff = statistics.fmean(vals) - statistics.fmean(base)
        spread = max(statistics.stdev(v) if len(v) > 1 else 0.0 for v in (vals, base))
        out[arm] = ("above" if diff > 0 else "below") if abs(diff) > max(tol, spread) else "within"
    return out


def run(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    arms = list(p.methods)
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise UrlvrError(f"unknown method arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if BASELINE not in arms:
        arms.insert(0, BASELINE)
    priors = {"aligned": p.aligned, "misaligned": p.misaligned}
    r.bars.experiment("methods", len(priors) * len(arms) * len(seeds))
    paths = dict(zip(priors, r.models(list(priors.values()), "arithmetic", p.task_options)))
    runs = r.train_runs("methods", [
        (f"{prior}_{arm}_s{seed}", r.settings(model=paths[prior], train_problems=p.methods_train,
                                              steps=p.methods_steps, lr=p.methods_lr, seed=seed, **ARMS[arm]))
        for prior in priors for arm in arms for seed in seeds])
    curves, extra = {}, {}
    for prior in priors:
        for arm in arms:
            rows_by_seed = [runs[f"{prior}_{arm}_s{seed}"] for seed in seeds]
            per_seed = [val_curve(rows, p.val_k)[1] for rows in rows_by_seed]
            curves[(prior, arm)] = curve_stats(per_seed, val_curve(rows_by_seed[0], p.val_k)[0])
            extra[(prior, arm)] = {
                key: [tail_mean(rows, f"{ns}/{key}") for rows in rows_by_seed]
                for ns, key in (("oracle", "label_accuracy"), ("policy", "entropy"), ("time", "step_s"))}
            extra[(prior, arm)]["zero_std_frac"] = [tail_mean(rows, "reward/zero_std_frac", frac=1.0)
                                                   for rows in rows_by_seed]
    table = [["method", "prior", "start", "peak (step)", "end", "label accuracy", "entropy end", "no-signal groups",
              "s/step", "end vs majority vote"]]
    verdicts = {prior: compare_to_baseline({arm: curves[(prior, arm)]["end_seeds"] for arm in arms})
                for prior in priors}
    for arm in arms:
        for prior in PRIORS:
            c, e = curves[(prior, arm)], extra[(prior, arm)]
            steps = [x for x in e["step_s"] if x is not None]
            table.append([arm, prior, describe(c["start_seeds"]), f"{c['peak']:.3f} ({c['peak_step']})",
                          describe(c["end_seeds"]), describe(e["label_accuracy"]), describe(e["entropy"]),
                          describe(e["zero_std_frac"]), f"{statistics.fmean(steps):.2f}" if steps else "-",
                          "baseline" if arm == BASELINE else verdicts[prior][arm]])
    figure = plot_grid(curves, arms, PRIORS, r.out / "fig_methods.png",
                       f"Validation avg@{p.val_k} by method and prior (mean ± std over {len(seeds)} seeds)",
                       "validation accuracy")
    counts = {prior: {v: sorted(a for a, x in verdicts[prior].items() if x == v) for v in ("above", "within", "below")}
              for prior in priors}
    why = " ".join(f"{prior.capitalize()} prior: above majority vote at the end: {', '.join(c['above']) or 'none'}; "
                   f"within: {', '.join(c['within']) or 'none'}; below: {', '.join(c['below']) or 'none'}."
                   for prior, c in counts.items())
    why += (f" 'above'/'below' needs the seed-mean end accuracy to differ from majority vote's by more than "
            f"TOL = {TOL} and by more than the larger seed std of the two.")
    silent = sorted({arm for (prior, arm), e in extra.items()
                     if all(x is not None and x >= 0.99 for x in e["zero_std_frac"])})
    if silent:
        why += (f" No learning signal (every group's rewards equal on ≥ 99 % of steps, so every advantage is 0 and "
                f"the policy does not move): {', '.join(silent)}; such an arm ends where it started by "
                "construction, which is not a gain.")
    measured = (f"{len(arms) - 1} method{'s' if len(arms) > 2 else ''} and TTRL majority vote on the aligned ({p.aligned}) and misaligned "
                f"({p.misaligned}) priors, identical settings: {p.methods_train} training problems (arithmetic "
                f"{p.task_options}), {p.methods_steps} steps of {p.prompts_per_step} prompts x {p.n} completions "
                f"(n_votes = n_train = {p.n}), {p.max_new_tokens} new tokens, lr {p.methods_lr:g}, each method's "
                f"default options, seeds {seeds}; validation avg@{p.val_k} on {p.val_problems} held-out problems "
                f"every {p.val_every} steps; label accuracy and entropy over the last 20 % of steps.")
    finding = Finding("methods", "The 2025–26 label-free methods side by side with majority vote (no paper claim: "
                      "a measurement).", measured, table, "measured", why,
                      {"curves": {f"{k[0]}/{k[1]}": v for k, v in curves.items()},
                       "extra": {f"{k[0]}/{k[1]}": v for k, v in extra.items()}, "verdicts": verdicts})
    return [finding], [figure]
