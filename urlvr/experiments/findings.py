"""Findings: what was measured, the verdict and the numbers behind it, written to ``FINDINGS.md``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urlvr.config import Plan
from urlvr.experiments.verdicts import TOL

__all__ = ["Finding", "format_findings"]


@dataclass
class Finding:
    experiment: str
    claim: str
    """What the paper found (METHODS.md), in one sentence."""
    measured: str
    """What was run and measured here."""
    table: list[list[str]]
    """Markdown table rows; the first row is the header."""
    verdict: str
    """``reproduced``, ``partly reproduced`` or ``not reproduced``."""
    why: str
    """The numbers the verdict rests on."""
    numbers: dict[str, Any] = field(default_factory=dict)
    more_tables: list[list[list[str]]] = field(default_factory=list)
    """Further tables, printed after ``table`` (first row of each: its header)."""


def format_findings(findings: list[Finding], figures: list[Path], p: Plan, seconds: dict, total: float,
                    out: Path, default: tuple[str, ...] = ()) -> str:
    from urlvr.report import markdown_table

    only = "" if list(seconds) == list(default) else "".join(f" --only {name}" for name in seconds)
    real = any(f.experiment == "real LM" for f in findings)  # a plan without a real model (--quick) has none
    title = (f"Findings of the paper, reproduced on the testbed{' and on a real LM' if real else ''}" if not only else
             "The 2025–26 methods beside majority vote on the testbed" if list(seconds) == ["methods"] else
             "Findings on the testbed")
    lines = [f"# {title}", "",
             f"`urlvr reproduce{'' if p.name == 'full' else ' --' + p.name}{only}` ({p.name} plan: {p.seeds} seed(s); "
             f"{total / 60:.1f} min in all: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())
             + f"). Numbers are mean ± std over seeds unless marked; peak, rise and fall are of the seed-mean "
             f"curve. A verdict needs every stated margin (TOL = {TOL} accuracy) to hold, per seed on a majority "
             "of seeds or on the seed means as stated; a finding that did not reproduce says so.", "",
             "| # | finding | verdict |", "|---|---|---|"]
    lines += [f"| {f.experiment} | {f.claim} | **{f.verdict}** |" for f in findings]
    for f in findings:
        lines += ["", f"## {f.experiment}: {f.claim}", "", f"**Verdict: {f.verdict}.** {f.why}", "",
                  f"*Measured:* {f.measured}"]
        for table in ([f.table] if f.table else []) + f.more_tables:
            lines += ["", markdown_table(table[0], table[1:])]
    lines += ["", "## Figures", ""]
    lines += [f"![{x.stem}]({x.relative_to(out) if x.is_relative_to(out) else x})" for x in figures]
    lines += ["", "Run folders: `" + str(out) + "/<experiment>/<run>` (inspect any with `urlvr report RUN_DIR ...`)."]
    return "\n".join(lines) + "\n"
