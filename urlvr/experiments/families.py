"""Experiment 1, ``families``: every intrinsic reward and the gold control on an aligned and a misaligned prior.

Paper (METHODS.md §8): intrinsic rewards rise then fall on a large training set, and the fall follows
the prior: they amplify the initial majority, so they help where confident answers are right and hurt
where they are confidently wrong; gold helps both.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from urlvr.experiments.figures import plot_grid
from urlvr.experiments.findings import Finding
from urlvr.experiments.runner import Runner
from urlvr.experiments.verdicts import (curve_stats, describe, families_verdicts, rises_then_falls, tail_mean,
                                        val_curve)

__all__ = ["run"]

PRIORS = ("aligned", "misaligned")


def run(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    priors = {"aligned": p.aligned, "misaligned": p.misaligned}
    r.bars.experiment("1 families", len(priors) * len(p.families) * len(seeds))
    paths = dict(zip(priors, r.models(list(priors.values()), "arithmetic", p.task_options)))
    runs = r.train_runs("families", [
        (f"{prior}_{reward}_s{seed}", r.settings(model=paths[prior], reward=reward, train_problems=p.families_train,
                                                 steps=p.families_steps, lr=p.families_lr, seed=seed))
        for prior in priors for reward in p.families for seed in seeds])
    curves: dict[tuple[str, str], dict] = {}
    shapes: dict[tuple[str, str], dict] = {}
    for prior in priors:
        for reward in p.families:
            per_seed, length, rep = [], [], []
            for seed in seeds:
                rows = runs[f"{prior}_{reward}_s{seed}"]
                steps, vals = val_curve(rows, p.val_k)
                per_seed.append(vals)
                first = [x["rollout/length_mean"] for x in rows if x["step"] > 0][:3]
                length.append((tail_mean(rows, "rollout/length_mean") or 0) / max(statistics.fmean(first), 1e-8))
                rep.append(tail_mean(rows, "rollout/repetition_rate"))
            curves[(prior, reward)] = curve_stats(per_seed, steps)
            shapes[(prior, reward)] = {"length_ratio": length, "repetition": rep}
    figure = plot_grid(curves, p.families, PRIORS, r.out / "fig1_families.png",
                       f"1. Validation avg@{p.val_k} by reward and prior (mean ± std over {len(seeds)} seeds)",
                       "validation accuracy")
    table = [["reward", "prior", "start", "peak (step)", "end", "rise", "fall", "end - start",
              "seeds rise then fall", "length end/start", "repetition end"]]
    for reward in p.families:
        for prior in PRIORS:
            c, sh = curves[(prior, reward)], shapes[(prior, reward)]
            table.append([reward, prior, describe(c["start_seeds"]), f"{c['peak']:.3f} ({c['peak_step']})",
                          describe(c["end_seeds"]), f"{c['rise']:+.3f}", f"{c['fall']:+.3f}",
                          describe(c["change_seeds"]), "{}/{}".format(*rises_then_falls(c)),
                          describe(sh["length_ratio"]), describe(sh["repetition"])])
    rise_fall, follows = families_verdicts(curves, p.families)
    intrinsic = [x for x in p.families if x != "gold"]
    measured = (f"{len(intrinsic)} intrinsic rewards{' and the gold control' if 'gold' in p.families else ''} on the "
                f"aligned ({p.aligned}) and misaligned ({p.misaligned}) priors, {p.families_train} training problems "
                f"(arithmetic {p.task_options}), {p.families_steps} steps of {p.prompts_per_step} prompts x {p.n}, lr "
                f"{p.families_lr:g}, seeds {seeds}; validation avg@{p.val_k} on {p.val_problems} held-out problems "
                f"every {p.val_every} steps. Rise = peak - start and fall = peak - end of the seed-mean curve.")
    f1 = Finding("1 families", "Every intrinsic reward rises then falls on a large training set (§8).", measured,
                 table, rise_fall.verdict, rise_fall.why,
                 {"curves": {f"{k[0]}/{k[1]}": v for k, v in curves.items()},
                  "shapes": {f"{k[0]}/{k[1]}": v for k, v in shapes.items()}})
    f2 = Finding("1 families", "The fall follows the prior: intrinsic rewards amplify the initial majority, so they "
                 "help where confident answers are right and hurt where they are confidently wrong (§8); gold "
                 "helps both.", measured, [], follows.verdict, follows.why)
    return [f1, f2], [figure]
