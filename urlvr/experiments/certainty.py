"""Experiment ``certainty``: why self-certainty collapses on the testbed, with the evidence.

Paper (METHODS.md §8): every intrinsic reward sharpens the prior; self-certainty degrades slowest. On the
testbed (FINDINGS.md, quick plan) it fell from step 0 on both priors with no change of length or
repetition. GRPO reads a reward only through its order inside each group, so the question is what each
reward ranks first among the completions of one prompt.

**Part 1, preferences at step 0** (no training; :func:`urlvr.experiments.preferences`): per base model,
``G`` groups of ``N`` completions sampled as a training step samples them (:meth:`Trainer.sample_groups`),
and per reward the within-group AUC (a correct completion ranked above a wrong one of the same group) and
the share of groups whose top-ranked completion is correct, against picking any completion. For
self-certainty, where its within-group differences come from: the mean difference between the correct
and wrong completions of a group, and the part of each completion's self-certainty carried by the ``k``
most probable tokens of each ``p_t`` (the head) against the rest of the vocabulary (the tail). Models:
the aligned and misaligned priors, the aligned prior with 900 unused vocabulary entries (a real
vocabulary's tail) and with ``errors=noise`` (a mistake leaves the model unsure of what follows), and a
real LM (SmolLM2-135M-Instruct on the set the ``real_lm`` experiment chooses).

**Part 2, training ablations**: ``self_certainty`` on the aligned prior under the families settings, and
one change at a time (:data:`ABLATIONS`): lr / 4, sampling temperature 0.6, the answer's tokens only
(``span=answer``), the 1000-entry vocabulary, ``errors=noise``. Per arm: validation start, peak, end, and
whether training raises the quantity it rewards (``policy/self_certainty`` end / start) and sharpens
(majority ratio) or diffuses (distinct answers per group, their peak in the first half of the run).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from urlvr.errors import UrlvrError
from urlvr.experiments.figures import plot_preferences
from urlvr.experiments.findings import Finding
from urlvr.experiments.measures import HEAD_K, PREFERENCE_REWARDS
from urlvr.experiments.runner import Job, Runner
from urlvr.experiments.verdicts import (certainty_explanation, curve_stats, describe, end_over_start, fmt,
                                        tail_fraction, tail_mean, val_curve)

__all__ = ["run", "ABLATIONS"]

ABLATIONS: dict[str, dict[str, Any]] = {
    "self_certainty": {},
    "lr / 4": {"lr_scale": 0.25},
    "temperature 0.6": {"settings": {"temperature": 0.6, "val_temperature": 1.0}},
    "answer span only": {"settings": {"reward_options": {"span": "answer"}}},
    "vocabulary 1000": {"knobs": "junk_tokens=900"},
    "errors: noise": {"knobs": "errors=noise"},
}
"""Part 2: one change at a time to ``self_certainty`` on the aligned prior (``knobs`` change the base model)."""

def run(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    prior_models = {"aligned": p.aligned, "misaligned": p.misaligned}
    if p.certainty_variants:
        prior_models.update({"aligned, vocabulary 1000": _with_knobs(p.aligned, "junk_tokens=900"),
                             "aligned, errors=noise": _with_knobs(p.aligned, "errors=noise")})
    arms = list(p.certainty_ablations)
    unknown = [a for a in arms if a not in ABLATIONS]
    if unknown:
        raise UrlvrError(f"unknown certainty ablation(s) {', '.join(unknown)}; choose from {', '.join(ABLATIONS)}")
    r.bars.experiment("certainty", len(prior_models) + (1 if p.real_lm else 0) + len(arms) * len(seeds))
    paths = dict(zip(prior_models, r.models(list(prior_models.values()), "arithmetic", p.task_options)))
    settings = {"prompts_per_step": p.certainty_groups, "n_votes": p.n, "n_train": p.n,
                "max_new_tokens": p.max_new_tokens, "train_problems": max(p.certainty_groups, p.families_train)}
    jobs = [Job("preferences", r.out / "certainty" / f"preferences_{_slug(name)}", f"preferences {name}",
                {"model": path, "task": "arithmetic", "task_options": dict(p.task_options), "settings": settings})
            for name, path in paths.items()]
    if p.real_lm:
        from urlvr.experiments.real_lm import candidate_settings, chosen_setting

        real = candidate_settings(p, chosen_setting(r, p))  # prompts rendered as the search and ttt render them
        rest = {k: v for k, v in real.items() if k not in ("model", "task", "task_options")}
        jobs.append(Job("preferences", r.out / "certainty" / "preferences_real_lm", "preferences SmolLM2",
                        {"model": real["model"], "task": real["task"], "task_options": real["task_options"],
                         "settings": {**settings, **rest,
                                      "prompts_per_step": min(p.certainty_groups, real["train_problems"])}}))
    names = list(prior_models) + (["SmolLM2-135M-Instruct (real LM)"] if p.real_lm else [])
    prefs = dict(zip(names, r.execute(jobs)))
    # Part 2: training ablations
    knobbed = [arm for arm in arms if ABLATIONS[arm].get("knobs")]
    base = dict(zip(knobbed, r.models([_with_knobs(p.aligned, ABLATIONS[arm]["knobs"]) for arm in knobbed],
                                      "arithmetic", p.task_options)))  # built together, in the workers
    grid = []
    for arm in arms:
        a = ABLATIONS[arm]
        model = base.get(arm, paths["aligned"])
        lr = p.families_lr * a.get("lr_scale", 1.0)
        grid += [(f"{_slug(arm)}_s{seed}", r.settings(model=model, reward="self_certainty", train_problems=p.families_train,
                                                     steps=p.certainty_steps, lr=lr, seed=seed,
                                                     **a.get("settings", {})))
                 for seed in seeds]
    runs = r.train_runs("certainty", grid)
    curves, shapes = {}, {}
    for arm in arms:
        rows_by_seed = [runs[f"{_slug(arm)}_s{seed}"] for seed in seeds]
        curves[arm] = curve_stats([val_curve(rows, p.val_k)[1] for rows in rows_by_seed],
                                  val_curve(rows_by_seed[0], p.val_k)[0])
        shapes[arm] = {key: [end_over_start(rows, key) for rows in rows_by_seed]
                       for key in ("policy/self_certainty", "diag/majority_ratio")}
        shapes[arm]["diag/distinct_answers"] = [_early_peak_over_start(rows, "diag/distinct_answers")
                                                for rows in rows_by_seed]
        shapes[arm]["label_accuracy_end"] = [tail_mean(rows, "oracle/label_accuracy") for rows in rows_by_seed]
    pref_table = [["model", "mixed groups", "pick any", *PREFERENCE_REWARDS, "SC correct − wrong (nats)",
                   "SC difference from the tail"]]
    for name, res in prefs.items():
        sc = res["self_certainty"]
        pref_table.append([name, f"{res['mixed_groups']}/{res['groups']}", fmt(res["base_rate"]),
                           *(f"{fmt(res['rewards'][x]['auc'])} / {fmt(res['rewards'][x]['top'])}"
                             for x in PREFERENCE_REWARDS),
                           fmt(sc["within_group_diff"], "{:+.4f}"), fmt(tail_fraction(sc.get("parts", {})), "{:.2f}")])
    arm_table = [["self_certainty arm", "start", "peak (step)", "end", "SC end/start", "majority ratio end/start",
                  "distinct answers, first-half peak/start", "label accuracy end"]]
    for arm in arms:
        c, sh = curves[arm], shapes[arm]
        arm_table.append([arm, describe(c["start_seeds"]), f"{c['peak']:.3f} ({c['peak_step']})", describe(c["end_seeds"]),
                          describe(sh["policy/self_certainty"]), describe(sh["diag/majority_ratio"]),
                          describe(sh["diag/distinct_answers"]), describe(sh["label_accuracy_end"])])
    verdict, why = certainty_explanation(prefs, curves, shapes)
    measured = (f"Part 1: one step's {p.certainty_groups} groups of {p.n} completions per base model (AUC = within-"
                "group P(correct ranked above wrong), ties ½; top = share of groups whose top-ranked completion "
                "is correct; 'pick any' = that share for a random completion); self-certainty split into the "
                f"{HEAD_K} most probable tokens of each p_t and the rest of the vocabulary. Part 2: self_certainty on "
                f"the aligned prior, {p.families_train} training problems, {p.certainty_steps} steps of "
                f"{p.prompts_per_step} x {p.n}, lr {p.families_lr:g} unless changed, seeds {seeds}; validation "
                f"avg@{p.val_k}; end/start ratios of the run's own signals (means of the first and last 20 % of "
                "steps).")
    figure = plot_preferences(prefs, PREFERENCE_REWARDS, curves, r.out / "fig5_certainty.png", p.val_k)
    finding = Finding("certainty", "Self-certainty is the most stable intrinsic reward: it sharpens the prior and "
                      "degrades slowly (§8). Why does it collapse at once on the testbed?", measured, pref_table, verdict,
                      why, {"preferences": prefs, "curves": curves, "shapes": shapes}, [arm_table])
    return [finding], [figure]


def _with_knobs(name: str, knobs: str) -> str:
    return f"{name}{'&' if '?' in name else '?'}{knobs}"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def _early_peak_over_start(rows: list[dict], key: str) -> float | None:
    """Highest 5-step mean of ``key`` in the first half of the run over its first 5-step mean."""
    vals = [r[key] for r in rows if r["step"] > 0 and r.get(key) is not None]
    if len(vals) < 10:
        return None
    means = [statistics.fmean(vals[i : i + 5]) for i in range(0, len(vals) // 2 - 4)]
    return max(means) / means[0] if means and means[0] else None
