"""``urlvr report`` (HTML + Markdown with plots of runs) and ``urlvr reproduce`` (the paper's findings)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from urlvr.errors import UrlvrError

__all__ = ["add_report", "run_report", "add_reproduce", "run_reproduce"]

EXPERIMENT_NAMES = ("families", "dataset_size", "mcs", "external", "certainty", "real_lm", "methods")
"""The experiments of ``urlvr reproduce`` (urlvr.experiments.reproduce.EXPERIMENTS, named here so that
``--help`` does not import the library)."""


def add_report(r: argparse.ArgumentParser) -> None:
    r.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (the out_dir of 'urlvr train')")
    r.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report for one run, runs/report)")
    r.add_argument("--title", default=None)
    r.add_argument("--embed", action="store_true", help="also embed the PNGs in index.html (base64)")


def run_report(args) -> int:
    from urlvr.console import echo
    from urlvr.report import build_report

    out = args.out or (Path(args.runs[0]) / "report" if len(args.runs) == 1 else Path("runs") / "report")
    result = build_report(args.runs, out, title=args.title, embed=args.embed)
    echo(f"wrote {result['html']} and {result['markdown']} ({len(result['plots'])} plots)")
    print(result["html"])
    return 0


def add_reproduce(r: argparse.ArgumentParser) -> None:
    r.add_argument("--quick", action="store_true",
                   help="the small plan (2 cores: 5 min with the testbed models built, 13 from scratch; no real LM)")
    r.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--out", default="runs/reproduce", help="output folder (default runs/reproduce)")
    r.add_argument("--only", action="append", choices=EXPERIMENT_NAMES,
                   help="run only this experiment (repeatable); default: all but 'methods' (the 2025-26 methods "
                   "beside majority vote, run only when named)")
    r.add_argument("--fresh", action="store_true", help="redo runs that already finished with the same settings")
    r.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for independent runs, one CPU thread each (default: min(2, CPUs))")
    r.add_argument("--quiet", action="store_true", help="no progress bars")


def run_reproduce(args) -> int:
    from urlvr.console import echo
    from urlvr.experiments.reproduce import reproduce

    plan = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.jobs < 1:
        raise UrlvrError(f"--jobs must be >= 1, got {args.jobs}")
    result = reproduce(args.out, plan, only=args.only or (), fresh=args.fresh, progress=not args.quiet, jobs=args.jobs)
    for f in result["findings"]:
        print(f"{f.experiment:<16} {f.verdict:<18} {f.claim}")
    echo(f"wrote {result['path']} and {len(result['figures'])} figures in {result['total_seconds'] / 60:.1f} min")
    return 0
