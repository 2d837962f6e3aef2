"""The command line: a thin layer over ``main(cfg)`` functions.

Every command turns bad input (a :class:`~urlvr.errors.UrlvrError`) into one line on stderr and exit
code 2; nothing is half-written because every file is written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from urlvr.errors import UrlvrError

__all__ = ["main"]


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:
        pass


def cmd_testbed_build(args) -> int:
    from urlvr.testbed.priors import PriorSpec, build_prior, format_card

    priors = args.prior or ["aligned", "weak", "misaligned"]
    for prior in priors:
        kw = {k: v for k, v in dict(size=args.size, steps=args.steps, seed=args.seed, p_correct=args.p_correct,
                                    wrong_rate=args.wrong_rate).items() if v is not None}
        spec = PriorSpec(prior=prior, task=args.task, task_options=_parse_options(args.option), **kw)
        spec.validate()
        bars = []  # created on the first step, so bad input fails before any bar is drawn

        def progress(step, total, loss, prior=prior):
            if args.quiet:
                return
            if not bars:
                from tqdm import tqdm

                bars.append(tqdm(total=total, desc=f"pretrain {prior}", file=sys.stderr, dynamic_ncols=True,
                                 leave=False))
            bars[0].set_postfix(loss=f"{loss:.3f}", refresh=False)
            bars[0].update(1)

        path, card, reused = build_prior(spec, force=args.force, progress=progress)
        for bar in bars:
            bar.close()
        how = "cached" if reused else f"built in {card.get('build_seconds')} s"
        title = f"{prior} prior ({how}): {path}"
        print(format_card(card, title))
        print()
    return 0


def _parse_options(items) -> dict:
    import yaml

    out = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq:
            raise UrlvrError(f"bad task option {item!r}; write key=value, e.g. digits=3")
        out[k] = yaml.safe_load(v)
    return out


def cmd_train(args) -> int:
    from urlvr.config import config_help, load_config
    from urlvr.trainer import train

    if args.help_config:
        print(config_help())
        return 0
    if args.resume:
        from pathlib import Path

        run = Path(args.resume)
        if not (run / "config.yaml").is_file():
            raise UrlvrError(f"{run} is not a run folder (no config.yaml); give the out_dir of an earlier run")
        cfg = load_config(run / "config.yaml", args.overrides)
        summary = train(cfg, resume=True, progress=not args.quiet)
    else:
        if args.config is None:
            raise UrlvrError("give a recipe, e.g. 'urlvr train recipes/testbed_majority_vote.yaml', or --resume RUN_DIR")
        cfg = load_config(args.config, args.overrides)
        summary = train(cfg, progress=not args.quiet)
    import json

    print(json.dumps(summary, indent=2))
    return 0


def cmd_demo(args) -> int:
    from urlvr.demo import run_demo

    run_demo(out_dir=args.out_dir, steps=args.steps, quiet=args.quiet)
    return 0


def cmd_tasks(args) -> int:
    from urlvr.tasks import task_names
    from urlvr.tasks.base import _REGISTRY

    for name in task_names():
        doc = (_REGISTRY[name].__doc__ or "").strip().splitlines()
        print(f"{name:<12} {doc[0] if doc else ''}")
    return 0


def cmd_rewards(args) -> int:
    from urlvr.rewards import get_reward, reward_names

    for name in reward_names():
        spec = get_reward(name)
        doc = (spec.fn.__doc__ or "").strip().splitlines()
        print(f"{name:<24} {spec.family:<12} {doc[0] if doc else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="urlvr", description="Unsupervised RL with verifiable rewards: label-free "
                                "rewards, a GRPO trainer, collapse diagnostics and a CPU testbed.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the main job: aligned vs misaligned prior, majority vote vs gold")
    d.add_argument("--out-dir", default="runs/demo")
    d.add_argument("--steps", type=int, default=None, help="training steps per run (default: the demo's)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(fn=cmd_demo)

    t = sub.add_parser("train", help="train with a recipe: urlvr train RECIPE.yaml [key=value ...]")
    t.add_argument("config", nargs="?", help="YAML recipe (see recipes/)")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. lr=1e-5 reward=gold")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--help-config", action="store_true", help="list every config key with its default")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=cmd_train)

    tb = sub.add_parser("testbed", help="testbed models with controlled priors")
    tbs = tb.add_subparsers(dest="testbed_command", required=True)
    b = tbs.add_parser("build", help="pretrain base models with chosen priors and print their prior cards")
    b.add_argument("--prior", action="append", help="aligned, weak or misaligned (repeatable; default: all three)")
    b.add_argument("--task", default="arithmetic")
    b.add_argument("--option", action="append", metavar="KEY=VALUE", help="task option, e.g. digits=2")
    b.add_argument("--size", default=None, help="tiny, small or base")
    b.add_argument("--steps", type=int, default=None)
    b.add_argument("--p-correct", type=float, default=None)
    b.add_argument("--wrong-rate", type=float, default=None)
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(fn=cmd_testbed_build)

    sub.add_parser("tasks", help="list the registered tasks").set_defaults(fn=cmd_tasks)
    sub.add_parser("rewards", help="list the registered rewards").set_defaults(fn=cmd_rewards)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


_EXTRA_COMMANDS: list = []
"""Functions ``register(subparsers)`` that add commands (evaluation, diagnostics, reports)."""


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    _load_extra_commands()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "overrides"):  # key=value overrides may come after options too
        args.overrides = list(args.overrides or []) + [e for e in extra if "=" in e and not e.startswith("-")]
        extra = [e for e in extra if not ("=" in e and not e.startswith("-"))]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        import torch

        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
        return args.fn(args)
    except UrlvrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _load_extra_commands() -> None:
    import importlib

    for mod in ("urlvr.eval_cli", "urlvr.collapse_cli", "urlvr.report"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        if m.register not in _EXTRA_COMMANDS:
            _EXTRA_COMMANDS.append(m.register)


if __name__ == "__main__":
    sys.exit(main())
