"""The ``urlvr`` command: every parser and every printed line, on top of the library.

:data:`COMMANDS` is the command table: each entry names a command, its one-line help, the function
that adds its arguments and the function that runs it. The command modules (:mod:`.train`,
:mod:`.evaluate`, :mod:`.watch`, :mod:`.report`) import the library only inside their ``run``
functions, so ``urlvr --help`` starts fast; no library module imports this package.

Every command turns bad input (a :class:`~urlvr.errors.UrlvrError`) into one line on stderr and exit
code 2; nothing is half-written because every file is written atomically.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from dataclasses import dataclass
from typing import Callable

from urlvr.cli import evaluate, report, train, watch
from urlvr.errors import UrlvrError

__all__ = ["main", "build_parser", "COMMANDS", "Command"]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    """Adds the command's arguments to its parser."""
    run: Callable[[argparse.Namespace], int]
    """Runs the command; returns the exit code."""
    description: str | None = None


COMMANDS: tuple[Command, ...] = (
    Command("demo", "the main job: aligned vs misaligned prior, majority vote vs gold", train.add_demo, train.run_demo),
    Command("train", "train: urlvr train [RECIPE.yaml] [key=value ...]", train.add_train, train.run_train),
    Command("testbed", "testbed models with controlled priors", train.add_testbed, train.run_testbed),
    Command("tasks", "list the registered tasks", train.add_nothing, train.run_tasks),
    Command("rewards", "list the registered rewards with their family and summary", train.add_nothing,
            train.run_rewards),
    Command("eval", "avg@k over seeds, pass@k, maj@k, bootstrap CIs; results.json + samples.jsonl", evaluate.add_eval,
            evaluate.run_eval, evaluate.EVAL_HELP),
    Command("compare", "paired comparison of two 'urlvr eval' results (base vs trained)", evaluate.add_compare,
            evaluate.run_compare),
    Command("ttt", "test-time training: evaluate the test set, train on it unlabeled, evaluate", evaluate.add_ttt,
            evaluate.run_ttt),
    Command("collapse-step", "Model Collapse Step: steps of aggressive majority-vote URLVR until reward accuracy "
            "falls below 1%%", watch.add_collapse_step, watch.run_collapse_step),
    Command("rank", "rank models by MCS, GT Gain and pass@k gain, with rank correlations", watch.add_rank,
            watch.run_rank),
    Command("report", "HTML + Markdown report with PNG plots of one or more runs (overlaid)", report.add_report,
            report.run_report),
    Command("reproduce", "the paper's findings on the testbed and a real LM: figures + FINDINGS.md", report.add_reproduce,
            report.run_reproduce),
)
"""Every ``urlvr`` command, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="urlvr", description="Unsupervised RL with verifiable rewards: label-free "
                                "rewards, a GRPO trainer, collapse diagnostics and a CPU testbed.")
    sub = p.add_subparsers(dest="command", required=True)
    for c in COMMANDS:
        parser = sub.add_parser(c.name, help=c.help, description=c.description or c.help)
        c.configure(parser)
        parser.set_defaults(fn=c.run)
    return p


def _environment() -> None:
    """Defaults for this process, set before torch and transformers load (an explicit setting wins).

    OpenMP threads that spin while waiting collapse under any other load on a small machine (measured on
    2 cores with other jobs running: 8 s per pretraining step with spinning, 0.15 s without); the hub is
    never contacted (every load is local_files_only anyway).
    """
    for key, value in (("OMP_WAIT_POLICY", "PASSIVE"), ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("HF_HUB_DISABLE_TELEMETRY", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)
    _fixed_mmap_threshold()


def _fixed_mmap_threshold() -> None:
    """``URLVR_MMAP_THRESHOLD=BYTES``: blocks of that size and more come from ``mmap`` and go back to the
    system when freed (glibc only; off by default).

    glibc raises its mmap threshold each time a large block is freed, so activation tensors end up on the
    heap, fragment it and are not returned. Measured on one GRPO step of SmolLM2 (benchmarks/RESULTS.md,
    "Real-model memory"): with 1 MiB, peak RSS fell 12 % (full fine-tune), 38 % (LoRA) and 50 % (LoRA with
    gradient checkpointing), and the step took 14 %, 21 % and 40 % longer (page faults on every fresh
    block). Speed wins by default; set it when memory is what limits the run.
    """
    if sys.platform != "linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    value = os.environ.get("URLVR_MMAP_THRESHOLD", "0").strip() or "0"
    if not value.isdigit():
        print(f"warning: URLVR_MMAP_THRESHOLD={value!r} is not a number of bytes; ignored", file=sys.stderr)
        return
    threshold = int(value)
    if threshold <= 0:
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        pass


def quiet_libraries() -> None:
    """Silence library warnings and transformers' own progress bars (urlvr draws its own)."""
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:
        pass


_DISK_ERRORS = {errno.ENOSPC: "free some space or choose another out_dir/--out",
                errno.EDQUOT: "free some space or choose another out_dir/--out",
                errno.EROFS: "the file system is read-only; choose another out_dir/--out",
                errno.EACCES: "no permission to write there; choose another out_dir/--out"}
"""Write failures that are the user's disk, not a bug: one line, exit 2."""


def main(argv: list[str] | None = None) -> int:
    _environment()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "overrides"):  # key=value overrides may come after options too
        args.overrides = list(args.overrides or []) + [e for e in extra if "=" in e and not e.startswith("-")]
        extra = [e for e in extra if not ("=" in e and not e.startswith("-"))]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet_libraries()
    try:
        import torch

        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
        return args.fn(args)
    except UrlvrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _DISK_ERRORS:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror or e}; {_DISK_ERRORS[e.errno]} (files urlvr writes are "
              "atomic: nothing half-written was left)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
