"""``urlvr demo``, ``urlvr train``, ``urlvr testbed build``, ``urlvr tasks``, ``urlvr rewards``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from urlvr.errors import UrlvrError

__all__ = ["parse_options", "add_demo", "run_demo", "add_train", "run_train", "add_testbed", "run_testbed",
           "add_nothing", "run_tasks", "run_rewards"]


def parse_options(items: list[str] | None) -> dict:
    """``KEY=VALUE`` flags (the value read as YAML) as a mapping."""
    import yaml

    out = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise UrlvrError(f"bad option {item!r}; write key=value, e.g. digits=3")
        out[k] = yaml.safe_load(v)
    return out


def add_nothing(p: argparse.ArgumentParser) -> None:
    """A command without arguments."""


# ---- demo ---------------------------------------------------------------------------------------------

def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", default="runs/demo")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: the demo's)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for the builds and runs, one CPU thread each (default: min(2, CPUs))")
    p.add_argument("--quiet", action="store_true")


def run_demo(args) -> int:
    from urlvr.console import echo
    from urlvr.experiments.demo import run_demo as demo

    if args.steps is not None and args.steps < 1:
        raise UrlvrError(f"--steps must be >= 1, got {args.steps}")
    if args.jobs < 1:
        raise UrlvrError(f"--jobs must be >= 1, got {args.jobs}")
    text = demo(out_dir=args.out_dir, steps=args.steps, progress=not args.quiet, say=None if args.quiet else echo,
                jobs=args.jobs)
    print(text)
    return 0


# ---- train ----------------------------------------------------------------------------------------------

def add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML recipe (see recipes/); optional: key=value settings alone work too")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. lr=1e-5 reward=gold")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (key=value "
                   "overrides apply to the run's config; what changed is printed)")
    p.add_argument("--help-config", action="store_true", help="list every config key with its default")
    p.add_argument("--quiet", action="store_true")


def run_train(args) -> int:
    from urlvr.config import config_help, load_config
    from urlvr.trainer import train

    if args.help_config:
        print(config_help())
        return 0
    if args.resume:
        cfg = resume_config(Path(args.resume), ([args.config] if args.config else []) + list(args.overrides))
        summary = train(cfg, resume=True, progress=not args.quiet)
    else:
        if args.config is None:
            raise UrlvrError("give a recipe, e.g. 'urlvr train recipes/testbed_majority_vote.yaml', key=value settings "
                             "('urlvr train model=testbed:aligned reward=gold'), or --resume RUN_DIR")
        recipe, overrides = args.config, list(args.overrides)
        if "=" in recipe and not Path(recipe).exists():  # no recipe: every setting on the command line
            recipe, overrides = None, [recipe, *overrides]
        summary = train(load_config(recipe, overrides), progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def resume_config(run: Path, overrides: list[str]):
    """The config a resume of ``run`` trains with: the run's resolved config, the overrides, ``out_dir`` = ``run``.

    Prints one line per setting that changes.
    """
    from urlvr.config import TrainConfig, apply_overrides, config_changes, read_recipe
    from urlvr.console import echo

    if not (run / "config.yaml").is_file():
        raise UrlvrError(f"{run} is not a run folder (no config.yaml); give the out_dir of an earlier run")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UrlvrError(f"with --resume give key=value overrides only (the recipe is the run's config.yaml), got {bad[0]!r}")
    saved = read_recipe(run / "config.yaml")
    old = TrainConfig.from_dict(saved)
    cfg = TrainConfig.from_dict({**apply_overrides(saved, overrides), "out_dir": str(run)})
    for change in config_changes(old, cfg):
        echo(f"resume: {change}")
    return cfg


# ---- testbed build ------------------------------------------------------------------------------------------

def add_testbed(p: argparse.ArgumentParser) -> None:
    tbs = p.add_subparsers(dest="testbed_command", required=True)
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


def run_testbed(args) -> int:
    from urlvr.config import PRIORS, PriorConfig
    from urlvr.console import Bar
    from urlvr.testbed.priors import build_prior, format_card

    specs = []
    for prior in args.prior or list(PRIORS):
        kw = {k: v for k, v in dict(size=args.size, steps=args.steps, seed=args.seed, p_correct=args.p_correct,
                                    wrong_rate=args.wrong_rate).items() if v is not None}
        specs.append(PriorConfig(prior=prior, task=args.task, task_options=parse_options(args.option), **kw))
    for spec in specs:  # every spec is checked before the first is built
        steps = spec.weak_steps if spec.prior == "weak" else spec.steps
        with Bar(steps, f"pretrain {spec.prior}", unit="step", enabled=not args.quiet, leave=False) as bar:
            path, card, reused = build_prior(spec, force=args.force, progress=lambda *_: bar.update())
        how = "cached" if reused else f"built in {card.get('build_seconds')} s"
        print(format_card(card, f"{spec.prior} prior ({how}): {path}"))
        print()
    return 0


# ---- listings ---------------------------------------------------------------------------------------------

def run_tasks(args) -> int:
    from urlvr.tasks import get_task_class, task_names

    for name in task_names():
        doc = (get_task_class(name).__doc__ or "").strip().splitlines()
        print(f"{name:<12} {doc[0] if doc else ''}")
    return 0


def run_rewards(args) -> int:
    from urlvr.rewards import get_reward, reward_names

    from urlvr.advantages import get_advantage_modifier, modifier_names
    from urlvr.loss import LOSS_SIDE_METHODS

    print("rewards (reward=NAME):")
    for name in sorted(reward_names(), key=lambda n: (get_reward(n).family, n)):
        spec = get_reward(name)
        print(f"  {name:<24} {spec.family:<12} {spec.summary}")
    print("advantage modifiers (advantage_modifier=NAME[,NAME...], advantage_options.NAME={...}):")
    for name in sorted(modifier_names(), key=lambda n: (get_advantage_modifier(n).family, n)):
        cls = get_advantage_modifier(name)
        print(f"  {name:<24} {cls.family:<12} {(cls.__doc__ or '').strip().splitlines()[0]}")
    print("loss-side methods (config keys):")
    for name, (family, summary) in LOSS_SIDE_METHODS.items():
        print(f"  {name:<24} {family:<12} {summary}")
    return 0
