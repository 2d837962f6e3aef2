"""``urlvr collapse-step`` and ``urlvr rank``: the Model Collapse Step and ranking models by it.

A thin layer over :mod:`urlvr.watch.collapse` and :mod:`urlvr.watch.rank`.

    urlvr collapse-step testbed:misaligned --max-steps 300
    urlvr rank testbed:aligned?p_correct=0.8 testbed:weak --gt-steps 40 --passk 32
"""

from __future__ import annotations

import argparse
import json

from urlvr.cli.train import parse_options
from urlvr.config import GainConfig, MCSConfig
from urlvr.errors import UrlvrError

__all__ = ["add_collapse_step", "run_collapse_step", "add_rank", "run_rank"]


def _task(args) -> tuple[str, dict]:
    """The task and its options: the testbed demo's (2-digit addition) unless --task is given."""
    from urlvr.experiments.demo import DEMO_SETTINGS

    if args.task is None:
        if args.option:
            raise UrlvrError("--option needs --task (the default task is the demo's: arithmetic, digits=2, ops=+)")
        return DEMO_SETTINGS["task"], dict(DEMO_SETTINGS["task_options"])
    return args.task, parse_options(args.option)


def _mcs_settings(args) -> MCSConfig:
    return MCSConfig(prompts_per_step=args.prompts_per_step, n=args.n, lr=args.lr, max_steps=args.max_steps,
                     window=args.window, threshold=args.threshold, label_free_window=args.label_free_window,
                     until=args.until, train_problems=args.train_problems, max_new_tokens=args.max_new_tokens,
                     temperature=args.temperature, seed=args.seed, device=args.device)


def run_collapse_step(args) -> int:
    from urlvr.console import Bar
    from urlvr.watch.collapse import model_collapse_step

    task, options = _task(args)
    s = _mcs_settings(args)
    with Bar(s.max_steps, "collapse-step", unit="step", enabled=not args.quiet) as bar:
        result = model_collapse_step(args.model, task, options, s, args.out_dir,
                                     on_step=lambda metrics: bar.update(metrics=metrics))
    print(json.dumps(result, indent=2))
    return 0


def run_rank(args) -> int:
    from urlvr.console import echo
    from urlvr.watch.rank import format_ranking, rank_models

    task, options = _task(args)
    models = list(args.models)
    if args.models_file:
        import yaml
        from pathlib import Path

        path = Path(args.models_file)
        if not path.is_file():
            raise UrlvrError(f"{path}: file not found; give a YAML list of model names")
        try:
            listed = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except (yaml.YAMLError, UnicodeDecodeError):
            listed = None
        if not isinstance(listed, list) or not all(isinstance(m, str) for m in listed):
            raise UrlvrError(f"{path}: expected a YAML list of model names")
        models += listed
    gain = GainConfig(steps=args.gt_steps, lr=args.gt_lr, train_problems=args.train_problems,
                      eval_problems=args.eval_problems, eval_k=args.eval_k, passk=args.passk,
                      max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                      device=args.device)
    result = rank_models(models, task, options, _mcs_settings(args), gain, with_gt=args.gt_steps > 0,
                         seeds=args.seeds, out_dir=args.out_dir, on_event=None if args.quiet else echo)
    print(format_ranking(result))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    d = MCSConfig()
    p.add_argument("--task", default=None, help="registered task (default: the demo's, arithmetic digits=2 ops=+)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="task option, e.g. digits=2 (with --task)")
    p.add_argument("--prompts-per-step", type=int, default=d.prompts_per_step, help="prompts per MCS step (paper: 1)")
    p.add_argument("--n", type=int, default=d.n, help="completions per prompt (paper: 8)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate of the MCS run")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="cap: MCS = cap (censored) if never collapsed")
    p.add_argument("--window", type=int, default=d.window, help="steps in the reward-accuracy mean")
    p.add_argument("--threshold", type=float, default=d.threshold, help="collapse when that mean falls below this")
    p.add_argument("--label-free-window", type=int, default=d.label_free_window, help="window of the label-free detector")
    p.add_argument("--until", choices=("labelled", "both"), default=d.until,
                   help="stop at the labelled MCS, or once the label-free step has fired too")
    p.add_argument("--train-problems", type=int, default=d.train_problems, help="probe prompts (labelled, train split)")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--quiet", action="store_true")


def add_collapse_step(c: argparse.ArgumentParser) -> None:
    c.add_argument("model", help="local model folder or testbed:PRIOR[:TASK[:SIZE]][?key=value&...]")
    c.add_argument("--out-dir", default=None, help="where curve.json and curve.png go (default runs/collapse/MODEL)")
    _common(c)


def add_rank(r: argparse.ArgumentParser) -> None:
    r.add_argument("models", nargs="*", help="models (folders or testbed:PRIOR?knob=value ...)")
    r.add_argument("--models-file", help="YAML list of further model names")
    r.add_argument("--seeds", type=int, default=1, help="MCS runs per model (seed, seed+1, ...); the mean is ranked")
    g = GainConfig()
    r.add_argument("--gt-steps", type=int, default=g.steps, help="gold-reward steps of GT Gain (0 = skip GT Gain)")
    r.add_argument("--gt-lr", type=float, default=g.lr, help="learning rate of the GT Gain run")
    r.add_argument("--eval-problems", type=int, default=g.eval_problems, help="validation problems for GT Gain, pass@k")
    r.add_argument("--eval-k", type=int, default=g.eval_k, help="samples per problem for GT Gain's avg@k")
    r.add_argument("--passk", type=int, default=g.passk, help="k of pass@k gain (0 = skip)")
    r.add_argument("--out-dir", default="runs/rank")
    _common(r)
