"""Run configuration: one flat typed dataclass, documented field by field, validated in one place.

``load_config("recipes/x.yaml", ["lr=1e-3", "reward=gold"])`` reads a YAML recipe, applies command-line
overrides (``key=value``, the value parsed as YAML), and validates the result. Unknown keys and
impossible values raise one :class:`~urlvr.errors.UrlvrError` that says how to fix them.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from urlvr.errors import UrlvrError

__all__ = ["TrainConfig", "load_config", "config_from_dict", "validate"]


@dataclass
class TrainConfig:
    # ---- model and data -----------------------------------------------------------------------
    model: str = "testbed:aligned"
    """A local checkpoint folder, or ``testbed:PRIOR[:TASK[:SIZE]]`` (built and cached on first use)."""
    task: str = "arithmetic"
    """Registered task name (``urlvr tasks`` lists them); ``jsonl`` loads a file (see task_options)."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Options of the task, e.g. ``{path: ../shared/data/math500.jsonl}`` for ``jsonl``."""
    train_problems: int = 512
    """Size of the unlabeled training set (drawn from the task's train split)."""
    train_split: str = "train"
    """Split the training problems come from (``test`` for test-time training)."""
    val_problems: int = 200
    """Held-out validation problems (validation split); 0 disables validation."""
    # ---- reward ---------------------------------------------------------------------------------
    reward: str = "majority_vote"
    """Registered reward name or ``package.module:function``."""
    reward_options: dict[str, Any] = field(default_factory=dict)
    """Keyword options of the reward."""
    equivalence: str = "canonical"
    """Answer equality for votes: ``canonical`` (task key) or ``math`` (math-verify classes)."""
    max_failed_steps: int = 3
    """Stop after this many consecutive steps whose rewards all failed."""
    # ---- rollout --------------------------------------------------------------------------------
    prompts_per_step: int = 16
    """Prompts (groups) per step."""
    n_votes: int = 8
    """Completions sampled per prompt and seen by the reward (TTRL's vote size)."""
    n_train: int = 8
    """Completions per prompt trained on (the first n_train of the n_votes); n_train <= n_votes."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    # ---- GRPO update ----------------------------------------------------------------------------
    steps: int = 60
    """Training steps (one rollout batch each)."""
    lr: float = 2e-4
    weight_decay: float = 0.0
    advantage: str = "grpo"
    """``grpo`` ((r-mean)/(std+eps)) or ``drgrpo`` (no std division)."""
    advantage_eps: float = 1e-6
    advantage_modifier: str = ""
    """Optional: ``seed_grpo`` scales each group's advantages by its semantic entropy."""
    seed_grpo_alpha: float = 1.0
    eps_low: float = 0.2
    eps_high: float = 0.2
    loss_agg: str = "token_mean"
    """``token_mean``, ``seq_mean_token_mean`` or ``constant`` (Dr.GRPO, normaliser = max_new_tokens)."""
    kl_coef: float = 0.0
    """Coefficient of the k3 KL penalty to the initial model (0 = none, the URLVR default)."""
    entropy_coef: float = 0.0
    grad_clip: float = 1.0
    updates_per_step: int = 1
    """Mini-batch updates per rollout batch (the batch is split into this many mini-batches)."""
    micro_batch_size: int = 0
    """Completions per forward/backward (gradient accumulation); 0 = the whole mini-batch."""
    # ---- evaluation, logging, checkpoints --------------------------------------------------------
    val_every: int = 10
    """Validate every N steps (and at step 0 and the end)."""
    val_k: int = 4
    """Samples per validation problem: avg@k and maj@k."""
    val_temperature: float = 1.0
    sample_every: int = 10
    """Save sample completions every N steps."""
    save_every: int = 10
    """Checkpoint every N steps (model, optimizer, RNG, step)."""
    collapse_stop: bool = False
    """Stop the run when the collapse detector fires."""
    collapse_keep_best: bool = False
    """Save each new label-free best step of the collapse detector and mark it as checkpoints/best."""
    collapse_window: int = 10
    """Collapse detector (urlvr.diagnostics): trailing window in steps for smoothing, slopes, baselines."""
    collapse_patience: int = 3
    """Collapse detector: consecutive collapsing steps before it fires."""
    collapse_ratio: float = 0.95
    """Collapse detector, saturation: smoothed majority ratio at least this, with entropy collapse."""
    collapse_entropy_fraction: float = 0.3
    """Collapse detector, entropy collapse: smoothed token entropy at most this fraction of its start."""
    collapse_kl_margin: float = 2.0
    """Collapse detector, drift: per-sequence KL to the initial model above this many times -log(r0)."""
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    out_dir: str = "runs/train"
    """The run folder."""


_CHOICES = {
    "advantage": ("grpo", "drgrpo"),
    "advantage_modifier": ("", "seed_grpo"),
    "loss_agg": ("token_mean", "seq_mean_token_mean", "constant"),
    "equivalence": ("canonical", "math"),
    "train_split": ("train", "validation", "test"),
}
_POSITIVE = ("prompts_per_step", "n_votes", "n_train", "max_new_tokens", "temperature", "lr", "val_k",
             "updates_per_step", "grad_clip", "val_every", "sample_every", "save_every", "train_problems",
             "max_failed_steps", "val_temperature", "collapse_window", "collapse_patience", "collapse_kl_margin")
_NON_NEGATIVE = ("steps", "val_problems", "weight_decay", "advantage_eps", "eps_low", "eps_high", "kl_coef",
                 "entropy_coef", "micro_batch_size", "seed", "seed_grpo_alpha")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Reject impossible values and bad combinations, one clear line each."""
    for name in _POSITIVE:
        if not getattr(cfg, name) > 0:
            raise UrlvrError(f"{name} must be > 0, got {getattr(cfg, name)}")
    for name in _NON_NEGATIVE:
        if getattr(cfg, name) < 0:
            raise UrlvrError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise UrlvrError(f"{name}={getattr(cfg, name)!r} is not one of: {', '.join(repr(c) for c in choices)}")
    if cfg.n_train > cfg.n_votes:
        raise UrlvrError(f"n_train ({cfg.n_train}) > n_votes ({cfg.n_votes}): you cannot train on more "
                         "completions than you sample; lower n_train or raise n_votes")
    if not 0 < cfg.top_p <= 1:
        raise UrlvrError(f"top_p must be in (0, 1], got {cfg.top_p}")
    for name in ("collapse_ratio", "collapse_entropy_fraction"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UrlvrError(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.eps_low >= 1:
        raise UrlvrError(f"eps_low must be < 1 (the ratio clip floor is 1 - eps_low), got {cfg.eps_low}")
    batch = cfg.prompts_per_step * cfg.n_train
    if batch % cfg.updates_per_step:
        raise UrlvrError(f"prompts_per_step x n_train ({batch}) is not divisible by updates_per_step "
                         f"({cfg.updates_per_step}); choose a divisor")
    if not cfg.model:
        raise UrlvrError("model is empty; give a checkpoint folder or testbed:PRIOR")
    if not cfg.task:
        raise UrlvrError("task is empty (missing dataset); set task=arithmetic or task=jsonl with task_options.path")
    if cfg.task == "jsonl" and "path" not in cfg.task_options:
        raise UrlvrError("task=jsonl needs a dataset file: set task_options.path (e.g. ../shared/data/math500.jsonl)")
    return cfg


def _coerce(name: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp) or tp
    if origin in (int, float) and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            value = float(value) if origin is float or not value.strip().lstrip("-").isdigit() else int(value)
        except ValueError:
            pass
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise UrlvrError(f"{name} must be a mapping (key: value), got {value!r}")
        return value
    if origin is bool:
        if isinstance(value, bool):
            return value
        raise UrlvrError(f"{name} must be true or false, got {value!r}")
    if origin is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UrlvrError(f"{name} must be an integer, got {value!r}")
        return value
    if origin is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UrlvrError(f"{name} must be a number, got {value!r}")
        return float(value)
    if origin is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise UrlvrError(f"{name} must be a string, got {value!r}")
        return str(value)
    return value


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a config; unknown keys are rejected with a suggestion."""
    hints = typing.get_type_hints(TrainConfig)
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; see 'urlvr train --help-config'"
            raise UrlvrError(f"unknown config key {key!r}{hint}")
        kwargs[key] = _coerce(key, value, hints[key])
    return validate(TrainConfig(**kwargs))


def _set_dotted(data: dict, key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if rest:
        sub = data.setdefault(head, {})
        if not isinstance(sub, dict):
            raise UrlvrError(f"cannot set {key!r}: {head!r} is not a mapping")
        _set_dotted(sub, rest, value)
    else:
        data[head] = value


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> TrainConfig:
    """YAML recipe (optional) + ``key=value`` overrides (``a.b=v`` sets a nested option)."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UrlvrError(f"config file {p} not found; give a YAML recipe such as recipes/testbed_gold.yaml")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise UrlvrError(f"{p}{where}: malformed YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(loaded, dict):
            raise UrlvrError(f"{p}: a recipe must be a YAML mapping of config keys")
        data.update(loaded)
    for item in overrides:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise UrlvrError(f"bad override {item!r}; write key=value, e.g. lr=1e-5")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key.strip(), value)
    return config_from_dict(data)


def config_help() -> str:
    """Every field, its default and its documentation (from the source), for ``--help-config``."""
    import inspect

    src = inspect.getsource(TrainConfig).splitlines()
    out = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        doc = ""
        for i, line in enumerate(src):
            if line.strip().startswith(f"{f.name}:") and i + 1 < len(src) and src[i + 1].strip().startswith('"""'):
                doc = src[i + 1].strip().strip('"')
                break
        out.append(f"  {f.name} = {default!r}" + (f"    # {doc}" if doc else ""))
    return "\n".join(out)
