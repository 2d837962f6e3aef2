"""Experiment 4, ``external``: a programmatic verifier against intrinsic rewards on linear equations.

Paper (METHODS.md §1, §4): external rewards are grounded outside the model's beliefs (the
generation-verification asymmetry), so they do not inherit its confident errors.
"""

from __future__ import annotations

from pathlib import Path

from urlvr.config import INTRINSIC
from urlvr.experiments.figures import plot_grid
from urlvr.experiments.findings import Finding
from urlvr.experiments.runner import Runner
from urlvr.experiments.verdicts import curve_stats, describe, external_verdict, val_curve

__all__ = ["run"]


def run(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    r.bars.experiment("4 external vs intrinsic", len(p.external_models) * len(p.external_rewards) * len(seeds))
    built = r.models(list(p.external_models), "linear", p.external_task_options)
    paths = {model.removeprefix("testbed:").split(":")[0].split("?")[0]: path
             for model, path in zip(p.external_models, built)}
    runs = r.train_runs("external", [
        (f"{prior}_{reward}_s{seed}", r.settings(task="linear", task_options=p.external_task_options, model=path,
                                                 reward=reward, train_problems=p.external_train,
                                                 steps=p.external_steps, lr=p.external_lr, seed=seed))
        for prior, path in paths.items() for reward in p.external_rewards for seed in seeds])
    curves = {}
    for prior in paths:
        for reward in p.external_rewards:
            per_seed = []
            for seed in seeds:
                steps, vals = val_curve(runs[f"{prior}_{reward}_s{seed}"], p.val_k)
                per_seed.append(vals)
            curves[(prior, reward)] = curve_stats(per_seed, steps)
    priors = list(dict.fromkeys(k[0] for k in curves))
    figure = plot_grid(curves, p.external_rewards, priors, r.out / "fig4_external.png",
                       f"4. Linear equations: verifier vs intrinsic (mean ± std over {len(seeds)} seeds)",
                       f"validation avg@{p.val_k}", by="prior")
    table = [["prior", "reward", "start", "peak (step)", "end", "end - start (per seed)"]]
    for (prior, reward), c in curves.items():
        table.append([prior, reward, describe(c["start_seeds"]), f"{c['peak']:.3f} ({c['peak_step']})",
                      describe(c["end_seeds"]), describe(c["change_seeds"])])
    result = external_verdict(curves, p.external_rewards, INTRINSIC)
    measured = (f"Linear equations (answers checked by substitution); priors {', '.join(p.external_models)}; rewards "
                f"{', '.join(p.external_rewards)}; {p.external_train} training problems, {p.external_steps} steps of "
                f"{p.prompts_per_step} prompts x {p.n}, lr {p.external_lr:g}, seeds {seeds}; validation avg@{p.val_k} "
                f"on {p.val_problems} held-out problems.")
    f = Finding("4 external", "External rewards (generation-verification asymmetry) are grounded outside the model's "
                "beliefs: they improve a confidently wrong model where intrinsic rewards amplify its errors (§1, §4).",
                measured, table, result.verdict, result.why, {"curves": {f"{k[0]}/{k[1]}": c for k, c in curves.items()}})
    return [f], [figure]
