"""``urlvr reproduce``: the paper's findings on the CPU testbed, each experiment a module of this package.

Four experiments on the testbed (2-digit addition, 16 prompts x 8 completions per step unless a plan
says otherwise), each repeated over seeds: :mod:`~urlvr.experiments.families`,
:mod:`~urlvr.experiments.dataset_size`, :mod:`~urlvr.experiments.mcs` and
:mod:`~urlvr.experiments.external`; then why self-certainty collapses there
(:mod:`~urlvr.experiments.certainty`) and one finding on a real LM (:mod:`~urlvr.experiments.real_lm`). :func:`reproduce` runs those asked for under a plan
(:data:`~urlvr.experiments.plan.PLANS`) through a :class:`~urlvr.experiments.runner.Runner` (finished
runs with the same settings are reused, so an interrupted reproduction continues where it stopped) and
writes one figure per experiment, ``FINDINGS.md`` (per finding: what was measured, mean ± std over
seeds, the verdict of :mod:`~urlvr.experiments.verdicts` with every number behind it) and
``findings.json``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

from urlvr.config import Plan
from urlvr.errors import UrlvrError
from urlvr.experiments import certainty, dataset_size, external, families, mcs, methods, real_lm
from urlvr.experiments.findings import Finding, format_findings
from urlvr.experiments.plan import PLANS
from urlvr.experiments.runner import Bars, Runner
from urlvr.io import read_json, write_json, write_text

__all__ = ["EXPERIMENTS", "DEFAULT_EXPERIMENTS", "reproduce"]

EXPERIMENTS: dict[str, Callable[[Runner, list[int]], tuple[list[Finding], list[Path]]]] = {
    "families": families.run, "dataset_size": dataset_size.run, "mcs": mcs.run, "external": external.run,
    "certainty": certainty.run, "real_lm": real_lm.run, "methods": methods.run}
SECONDS = "seconds.json"
"""Per experiment, the seconds of the invocation that last ran its jobs (kept in the output folder)."""
DEFAULT_EXPERIMENTS = ("families", "dataset_size", "mcs", "external", "certainty", "real_lm")
"""The paper's findings, the self-certainty explanation and the real-LM finding, run when no experiment is
named; ``methods`` (the 2025–26 methods side by side) only with ``--only methods``."""


def reproduce(out_dir: str | Path = "runs/reproduce", plan: str | Plan = "full", only: Sequence[str] = (),
              fresh: bool = False, progress: bool = True, jobs: int = 1) -> dict:
    """Run the experiments of ``plan`` into ``out_dir``; writes FINDINGS.md, findings.json and the figures.

    ``jobs`` > 1 runs the independent runs of an experiment in that many processes (one thread each).
    """
    p = PLANS[plan] if isinstance(plan, str) else plan
    names = list(only) or list(DEFAULT_EXPERIMENTS)
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        raise UrlvrError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(p.seeds))
    bars = Bars(len(names), progress)
    runner = Runner(out, p, bars, fresh, jobs)
    findings: list[Finding] = []
    figures: list[Path] = []
    # an experiment whose runs were all reused keeps the time of the invocation that ran them; times are kept
    # after each experiment (SECONDS), so an invocation that stops half-way loses none
    before = read_json(out / "findings.json").get("seconds", {}) if (out / "findings.json").is_file() else {}
    if (out / SECONDS).is_file():
        before.update(read_json(out / SECONDS))
    try:
        for name in names:
            t, ran = time.time(), runner.ran
            f, figs = EXPERIMENTS[name](runner, seeds)
            findings += f
            figures += figs
            runner.seconds[name] = round(time.time() - t, 1)
            if runner.ran == ran and name in before:
                runner.seconds[name] = before[name]
            write_json(out / SECONDS, {**before, **runner.seconds})
            bars.experiment_done()
    finally:
        runner.close()
        bars.close()
    total = round(sum(runner.seconds.values()), 1)
    write_text(out / "FINDINGS.md", format_findings(findings, figures, p, runner.seconds, total, out,
                                                    DEFAULT_EXPERIMENTS))
    (out / "FINDINGS.md").chmod(0o644)
    write_json(out / "findings.json", {"plan": p.to_dict(), "seconds": runner.seconds, "total_seconds": total,
                                       "findings": [dataclasses.asdict(f) for f in findings],
                                       "figures": [str(x) for x in figures]})
    return {"findings": findings, "figures": figures, "seconds": runner.seconds, "total_seconds": total,
            "path": out / "FINDINGS.md"}
