"""Experiment 3, ``mcs``: the Model Collapse Step against GT Gain (and pass@k gain) over several priors.

Paper (METHODS.md §9): MCS ranks models as GT Gain does, better than pass@k gain, at a fraction of the
generated tokens.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from urlvr.config import GainConfig, MCSConfig
from urlvr.experiments.figures import plot_mcs
from urlvr.experiments.findings import Finding
from urlvr.experiments.runner import Job, Runner
from urlvr.experiments.verdicts import describe, mcs_verdict

__all__ = ["run"]


def run(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    mseeds = seeds[: p.mcs_seeds]
    r.bars.experiment("3 MCS vs GT Gain", len(p.mcs_models) * len(mseeds) * 2 + (len(p.mcs_models) if p.passk else 0))
    opts = dict(p.task_options)
    jobs: list[Job] = []
    for model, path in zip(p.mcs_models, r.models(list(p.mcs_models), "arithmetic", opts)):
        payload = {"model": path, "task": "arithmetic", "task_options": opts}
        slug = model.removeprefix("testbed:").replace("?", "_").replace("&", "_").replace(":", "_")
        for seed in mseeds:
            m = MCSConfig(max_steps=p.mcs_max_steps, until="labelled", train_problems=p.mcs_train,
                          max_new_tokens=p.max_new_tokens, seed=seed)
            g = GainConfig(steps=p.gt_steps, prompts_per_step=p.prompts_per_step, n=p.n, lr=5e-4,
                           train_problems=p.mcs_train, eval_problems=p.gt_eval_problems, eval_k=p.val_k,
                           passk=p.passk, max_new_tokens=p.max_new_tokens, seed=seed)
            jobs.append(Job("mcs", r.out / "mcs" / slug / f"mcs_s{seed}", f"MCS {slug} s{seed}",
                            {**payload, "settings": m.to_dict()}, m.max_steps))
            jobs.append(Job("gt", r.out / "mcs" / slug / f"gt_s{seed}", f"GT {slug} s{seed}",
                            {**payload, "settings": g.to_dict()}, g.steps))
        if p.passk:
            g = GainConfig(eval_problems=p.gt_eval_problems, passk=p.passk, passk_n=p.passk_n,
                           max_new_tokens=p.max_new_tokens, train_problems=p.mcs_train)
            jobs.append(Job("passk", r.out / "mcs" / slug / "passk", f"pass@{p.passk} {slug}",
                            {**payload, "settings": g.to_dict()}))
    results = iter(r.execute(jobs))
    rows = []
    for model in p.mcs_models:
        row: dict[str, Any] = {"model": model, "mcs": [], "censored": [], "tokens": [], "gt_gain": [], "gt_tokens": [],
                               "acc_before": []}
        for _ in mseeds:
            res = next(results)
            row["mcs"].append(res["mcs"])
            row["censored"].append(res["censored"])
            row["tokens"].append(res["tokens"])
            res = next(results)
            row["gt_gain"].append(res["gt_gain"])
            row["gt_tokens"].append(res["gt_tokens"])
            row["acc_before"].append(res["acc_before"])
        if p.passk:
            res = next(results)
            row["passk_gain"], row["passk_tokens"] = res["passk_gain"], res["passk_tokens"]
        rows.append(row)
    v, corr = mcs_verdict(rows, p.passk, p.mcs_max_steps)
    tokens_mcs = sum(sum(x["tokens"]) for x in rows)
    tokens_gt = sum(sum(x["gt_tokens"]) for x in rows)
    figure = plot_mcs(rows, r.out / "fig3_mcs_gt_gain.png", p)
    table = [["model", "MCS (censored seeds)", "GT Gain", "base accuracy", "pass@k gain", "tokens MCS / GT"]]
    for x in rows:
        table.append([x["model"], f"{describe(x['mcs'])} ({sum(x['censored'])}/{len(x['censored'])})",
                      describe(x["gt_gain"]), describe(x["acc_before"]),
                      f"{x['passk_gain']:+.3f}" if "passk_gain" in x else "-",
                      f"{sum(x['tokens'])} / {sum(x['gt_tokens'])}"])
    why = v.why + f". Tokens: GT Gain / MCS = {tokens_gt / max(tokens_mcs, 1):.2f}x (paper: 5.6x)."
    measured = (f"{len(rows)} priors; MCS = first step at which the 5-step mean of reward accuracy falls below 1% "
                f"in majority-vote runs of 1 prompt x 8 completions, lr 2e-4, capped at {p.mcs_max_steps} steps "
                f"(urlvr.watch.collapse.model_collapse_step), seeds {mseeds}; GT Gain = validation avg@{p.val_k} gain "
                f"of {p.gt_steps} gold-reward steps (urlvr.watch.collapse.gt_gain) on {p.gt_eval_problems} problems.")
    f = Finding("3 MCS", "The Model Collapse Step ranks models as GT Gain does, better than pass@k gain, at a "
                "fraction of the generated tokens (§9).", measured, table, v.verdict, why,
                {"models": rows, "correlations": corr, "tokens": {"mcs": tokens_mcs, "gt": tokens_gt},
                 "mean_mcs": [statistics.fmean(x["mcs"]) for x in rows]})
    return [f], [figure]
