"""Every configuration of urlvr: flat typed dataclasses, each field documented once, validated one way.

| config | what it sets | made by |
|---|---|---|
| :class:`TrainConfig` | a GRPO run (model, data, reward, rollout, update, watching, files) | YAML recipe + ``key=value`` |
| :class:`EvalConfig` | an evaluation (benchmarks, k, n, seeds, sampling, grader) | ``urlvr eval`` flags |
| :class:`MCSConfig` | the aggressive majority-vote run of the Model Collapse Step | ``urlvr collapse-step`` / ``rank`` flags |
| :class:`GainConfig` | the gold-reward run of GT Gain and the pass@k evaluation | ``urlvr rank`` flags |
| :class:`PriorConfig` | a testbed base model (its cache key) | ``urlvr testbed build`` flags, ``testbed:`` names |
| :class:`Plan` | the sizes of a reproduction | ``urlvr reproduce`` |

All of them share :class:`Config`: construction checks every field's type (a whole-valued float for an
integer, an int for a float and a list for a tuple are converted; every float must be finite), then
:meth:`Config.validate` runs the declared bounds (``_positive``, ``_non_negative``, ``_unit``), the
choices (read from the registries: tasks, rewards, advantages, loss aggregations, equivalences) and
the config's own :meth:`Config.check` of combinations. Every failure is one
:class:`~urlvr.errors.UrlvrError` line naming the key and the fix, which the CLI prints with exit 2.
:meth:`Config.from_dict` adds YAML leniency (``"3e-4"`` read as a number) and rejects unknown keys
with a suggestion.

>>> TrainConfig(lr=3e-4).lr
0.0003
>>> TrainConfig.from_dict({"stepz": 1})
Traceback (most recent call last):
...
urlvr.errors.UrlvrError: unknown config key 'stepz'; did you mean 'steps'?
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import re
import types as _pytypes
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import yaml

from urlvr.errors import UrlvrError

__all__ = [
    "Config", "TrainConfig", "EvalConfig", "MCSConfig", "GainConfig", "PriorConfig", "Plan", "DTYPES", "PRIORS",
    "load_config", "config_from_dict", "config_changes", "config_help",
]

DTYPES = {"auto": None, "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
"""Accepted ``dtype`` spellings and the torch dtype each means (``auto``: bf16 on a GPU that has it, else fp32)."""
PRIORS = ("aligned", "weak", "misaligned")
"""Testbed priors (:mod:`urlvr.testbed.priors`)."""
PRIOR_ERRORS = ("near_miss", "derail", "noise")
"""How a testbed prior's random wrong answers are made (:attr:`PriorConfig.errors`)."""
CHAT_MODES = ("auto", "on", "off")
"""How prompts use the tokenizer's chat template (:mod:`urlvr.prompts`)."""
REPORT_TO = ("none", "tensorboard", "wandb")
"""Tracking sinks (:mod:`urlvr.tracking`); metrics.jsonl is always written."""
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


# ---------------------------------------------------------------------------------------------------
# the shared mechanism
# ---------------------------------------------------------------------------------------------------
class Config:
    """Mixin of every config dataclass: typed construction, one :meth:`validate`, dict and YAML I/O."""

    _positive: ClassVar[tuple[str, ...]] = ()
    """Fields that must be > 0 (None allowed where the type is optional)."""
    _non_negative: ClassVar[tuple[str, ...]] = ()
    _unit: ClassVar[tuple[str, ...]] = ()
    """Fields that must lie in [0, 1]."""
    _flags: ClassVar[bool] = False
    """Name keys as command-line flags (``--max-new-tokens``) in messages."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(self.label(f.name), getattr(self, f.name), hints[f.name], False))
        self.validate()

    @classmethod
    def label(cls, name: str) -> str:
        """How messages name field ``name``."""
        return "--" + name.replace("_", "-") if cls._flags else name

    def choices(self) -> dict[str, Sequence[Any]]:
        """Field -> the values it may take (read from the registries)."""
        return {}

    def check(self) -> None:
        """Combinations of fields that cannot work together (one :class:`UrlvrError` each)."""

    def validate(self):
        """Bounds, choices, then :meth:`check`; returns ``self``."""
        for name in self._positive:
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise UrlvrError(f"{self.label(name)} must be > 0, got {v}")
        for name in self._non_negative:
            v = getattr(self, name)
            if v is not None and v < 0:
                raise UrlvrError(f"{self.label(name)} must be >= 0, got {v}")
        for name in self._unit:
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise UrlvrError(f"{self.label(name)} must be in [0, 1], got {v}")
        for name, allowed in self.choices().items():
            v = getattr(self, name)
            if v not in allowed:
                raise UrlvrError(f"{self.label(name)}={v!r} is not one of: {', '.join(repr(c) for c in allowed)}")
        self.check()
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build and validate from a mapping (YAML); unknown keys are rejected with a suggestion."""
        if not isinstance(data, dict):
            raise UrlvrError(f"a {cls.__name__} must be a mapping of keys to values, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in data.items():
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; {cls.help_hint()}"
                raise UrlvrError(f"unknown config key {key!r}{hint}")
            kwargs[key] = _coerce(cls.label(key), value, hints[key], True)
        return cls(**kwargs)

    @classmethod
    def help_hint(cls) -> str:
        return "see 'urlvr train --help-config'" if cls is TrainConfig else f"the keys of {cls.__name__}: " + \
            ", ".join(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (a deep copy: changing it never changes the config)."""
        return copy.deepcopy({f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def replace(self, **changes):
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def help(cls) -> str:
        """Every field, its default and its documentation (from the source)."""
        import inspect

        src = inspect.getsource(cls).splitlines()
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            doc = ""
            for i, line in enumerate(src):
                if line.strip().startswith(f"{f.name}:") and i + 1 < len(src) and src[i + 1].strip().startswith('"""'):
                    doc = src[i + 1].strip().strip('"')
                    break
            out.append(f"  {f.name} = {default!r}" + (f"    # {doc}" if doc else ""))
        return "\n".join(out)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _coerce(name: str, value: Any, tp: Any, lenient: bool) -> Any:
    """``value`` as type ``tp``, or one UrlvrError naming ``name``. ``lenient``: read numbers from text."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, _pytypes.UnionType):
        inner = [t for t in typing.get_args(tp) if t is not type(None)]
        return None if value is None else _coerce(name, value, inner[0], lenient)
    origin = origin or tp
    if lenient and origin in (int, float) and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            value = float(value) if origin is float or not value.strip().lstrip("-").isdigit() else int(value)
        except ValueError:
            pass
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise UrlvrError(f"{name} must be a mapping (key: value), got {value!r}")
        return dict(value)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise UrlvrError(f"{name} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_coerce(name, v, item, lenient) for v in value) if item is not Any else tuple(value)
    if origin is bool:
        if isinstance(value, bool):
            return value
        raise UrlvrError(f"{name} must be true or false, got {value!r}")
    if origin is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UrlvrError(f"{name} must be an integer, got {value!r}")
        return value
    if origin is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UrlvrError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UrlvrError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if origin is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UrlvrError(f"{name} must be a string, got {value!r}")
        return str(value)
    return value


def _task_names() -> list[str]:
    from urlvr.tasks import task_names

    return task_names()


def _check_device(name: str, device: str) -> None:
    if not _DEVICE.fullmatch(device):
        raise UrlvrError(f"{name}={device!r} is not a device; use auto, cpu or cuda[:N]")


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------
@dataclass
class TrainConfig(Config):
    # ---- model and data -----------------------------------------------------------------------
    model: str = "testbed:aligned"
    """A checkpoint or run folder, a ``.gguf`` file, a built-in real model (``smollm2``) or
    ``testbed:PRIOR[:TASK[:SIZE]]`` (built, converted and cached on first use; docs/models.md)."""
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
    chat: str = "auto"
    """Chat template: ``auto`` (use the tokenizer's when it has one), ``on`` (require it) or ``off``."""
    system_prompt: str = ""
    """System prompt (the system turn with a chat template, else prepended with a blank line); empty = none."""
    # ---- reward ---------------------------------------------------------------------------------
    reward: str = "majority_vote"
    """Registered reward name or ``package.module:function``."""
    reward_options: dict[str, Any] = field(default_factory=dict)
    """Keyword options of the reward."""
    equivalence: str = "canonical"
    """Answer equality for votes: ``canonical`` (task key) or ``math`` (math-verify classes)."""
    max_failed_steps: int = 3
    """Stop after this many consecutive steps in which the reward gave no finite score (it raised, or
    returned None, NaN or ±inf for every completion)."""
    reward_timeout: float = 300.0
    """Seconds one reward call (one group) may take before the run stops with an error; 0 = no limit
    (the reward then runs in the main thread, e.g. for one that uses signals)."""
    grader_workers: int = 2
    """Worker processes of the math-verify grader (math equivalence, gold checks of math answers)."""
    grader_timeout: float = 5.0
    """Seconds one math-verify comparison may take; a timed-out comparison counts as not equivalent."""
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
    """Advantage modifiers applied after the estimator, comma-separated in order (``urlvr rewards`` lists
    them): ``seed_grpo``, ``ttrl_guard``, ``restrain``, ``std_filter``, ``certified_only``, ..."""
    advantage_options: dict[str, Any] = field(default_factory=dict)
    """Options per modifier: ``{ttrl_guard: {window: 5}, std_filter: {beta: 0.5}}``."""
    seed_grpo_alpha: float = 1.0
    """SEED-GRPO strength (the same as ``advantage_options.seed_grpo.alpha``, which wins when both are set)."""
    eps_low: float = 0.2
    eps_high: float = 0.2
    loss_agg: str = "token_mean"
    """``token_mean``, ``seq_mean_token_mean`` or ``constant`` (Dr.GRPO, normaliser = max_new_tokens)."""
    kl_coef: float = 0.0
    """Coefficient of the k3 KL penalty to the initial model (0 = none, the URLVR default)."""
    kl_every: int = 5
    """With ``kl_coef = 0``: run the initial model's forward (for ``policy/kl_initial``, the collapse detector's
    drift signal) on every ``kl_every``-th step only (steps 1, 1 + kl_every, ...); 1 = every step, 0 = never
    (a full fine-tune then keeps no frozen copy). With ``kl_coef > 0`` it runs every step."""
    entropy_coef: float = 0.0
    spine_rho: float = 0.0
    """SPINE: share of forking (highest rollout-entropy) tokens the policy loss and the KL act on; 0 = every
    token (off), 0.2 = SPINE / the 80/20 rule."""
    spine_scope: str = "batch"
    """SPINE forking-token scope: ``batch`` (top share of all tokens of the step) or ``response`` (of each one)."""
    spine_band_coef: float = 0.0
    """SPINE entropy-band coefficient λ_band (the paper's value is not known; 0 = no band term)."""
    spine_band_low: float = 0.1
    """SPINE band: lower quantile H_low of a response's forking-token entropies."""
    spine_band_high: float = 0.5
    """SPINE band: upper quantile H_high."""
    grad_clip: float = 1.0
    max_nonfinite_steps: int = 3
    """Stop (one line) after this many steps in a row with a skipped non-finite update.

    An update whose gradient norm is not finite is skipped and counted (``update/skipped_nonfinite``)."""
    updates_per_step: int = 1
    """Mini-batch updates per rollout batch (the batch is split into this many mini-batches)."""
    micro_batch_size: int = 0
    """Completions per forward/backward (gradient accumulation); 0 = the whole mini-batch."""
    logprob_chunk: int = 0
    """Positions per chunk of the LM head in the loss forward (bounds the (B, T, V) logits); 0 = automatic."""
    lora_rank: int = 0
    """LoRA rank (peft); 0 trains every weight. With LoRA the reference model is the base with adapters off."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_dropout: float = 0.0
    """Dropout on the input of each LoRA branch in the update passes (peft's lora_dropout)."""
    lora_targets: str = "all-linear"
    """Modules that get adapters: ``all-linear`` or comma-separated names, e.g. ``q_proj,v_proj``."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (SmolLM2 LoRA step: -40 % peak RSS, +18 % time)."""
    # ---- evaluation, logging, checkpoints --------------------------------------------------------
    val_every: int = 10
    """Validate every N steps, and at step 0 and the end (0: only at step 0 and the end)."""
    val_k: int = 4
    """Samples per validation problem: avg@k and maj@k."""
    val_temperature: float = 1.0
    sample_every: int = 10
    """Save sample completions every N steps and at the end (0: never)."""
    save_every: int = 10
    """Checkpoint every N steps and at the end (model, optimizer, RNG, step); 0: no checkpoints."""
    collapse_stop: bool = False
    """Stop the run when the collapse detector fires."""
    collapse_keep_best: bool = False
    """Save each new label-free best step of the collapse detector and mark it as checkpoints/best."""
    collapse_window: int = 10
    """Collapse detector (urlvr.watch.detector): trailing window in steps for smoothing, slopes, baselines."""
    collapse_patience: int = 3
    """Collapse detector: consecutive collapsing steps before it fires."""
    collapse_ratio: float = 0.95
    """Collapse detector, saturation: smoothed majority ratio at least this, with entropy collapse."""
    collapse_entropy_fraction: float = 0.3
    """Collapse detector, entropy collapse: smoothed token entropy at most this fraction of its start."""
    collapse_kl_margin: float = 2.0
    """Collapse detector, drift: per-sequence KL to the initial model above this many times -log(r0)."""
    report_to: str = "none"
    """Tracking sink besides metrics.jsonl (the source of truth): ``none``, ``tensorboard`` or ``wandb`` (offline)."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (a GPU when there is one), ``cpu`` or ``cuda[:N]``."""
    dtype: str = "auto"
    """Compute dtype (weights stay float32): ``auto`` (bf16 autocast on a GPU with bf16, else float32),
    ``float32``, ``bfloat16`` (autocast, on CPU too); ``float16`` is refused (it needs loss scaling). On a CPU
    with AMX, bfloat16 made a SmolLM2 step 1.6x faster but moved per-token log-probs by 0.034 nats on average
    (max 0.18) and made the testbed models slower: opt-in, not the CPU default (benchmarks/RESULTS.md §1c)."""
    out_dir: str = "runs/train"
    """The run folder."""

    _positive = ("prompts_per_step", "n_votes", "n_train", "max_new_tokens", "temperature", "lr", "val_k",
                 "updates_per_step", "grad_clip", "train_problems", "max_failed_steps", "max_nonfinite_steps", "val_temperature",
                 "collapse_window", "collapse_patience", "collapse_kl_margin", "grader_workers", "grader_timeout")
    _non_negative = ("steps", "val_problems", "weight_decay", "advantage_eps", "eps_low", "eps_high", "kl_coef",
                     "kl_every", "entropy_coef", "spine_band_coef", "micro_batch_size", "seed", "seed_grpo_alpha", "val_every", "sample_every",
                     "save_every", "logprob_chunk", "lora_rank", "lora_alpha", "reward_timeout")
    _unit = ("collapse_ratio", "collapse_entropy_fraction", "lora_dropout", "spine_rho", "spine_band_low",
             "spine_band_high")

    def choices(self) -> dict[str, Sequence[Any]]:
        from urlvr.advantages import ADVANTAGE_ESTIMATORS
        from urlvr.answers import EQUIVALENCES
        from urlvr.loss import FORK_SCOPES, LOSS_AGGREGATIONS
        from urlvr.tasks import SPLITS

        return {"advantage": tuple(ADVANTAGE_ESTIMATORS),
                "loss_agg": tuple(LOSS_AGGREGATIONS), "equivalence": EQUIVALENCES, "train_split": SPLITS,
                "dtype": tuple(DTYPES), "chat": CHAT_MODES, "report_to": REPORT_TO, "spine_scope": FORK_SCOPES}

    def check(self) -> None:
        if self.n_train > self.n_votes:
            raise UrlvrError(f"n_train ({self.n_train}) > n_votes ({self.n_votes}): you cannot train on more "
                             "completions than you sample; lower n_train or raise n_votes")
        if not 0 < self.top_p <= 1:
            raise UrlvrError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.spine_band_coef and not self.spine_rho:
            raise UrlvrError("spine_band_coef needs forking tokens: set spine_rho (0.2 for SPINE) or drop the band")
        if self.spine_band_low >= self.spine_band_high:
            raise UrlvrError(f"spine_band_low ({self.spine_band_low}) must be below spine_band_high "
                             f"({self.spine_band_high})")
        if self.eps_low >= 1:
            raise UrlvrError(f"eps_low must be < 1 (the ratio clip floor is 1 - eps_low), got {self.eps_low}")
        batch = self.prompts_per_step * self.n_train
        if batch % self.updates_per_step:
            raise UrlvrError(f"prompts_per_step x n_train ({batch}) is not divisible by updates_per_step "
                             f"({self.updates_per_step}); choose a divisor")
        if not self.model:
            raise UrlvrError("model is empty; give a checkpoint folder or testbed:PRIOR")
        if not self.task:
            raise UrlvrError("task is empty (missing dataset); set task=arithmetic or task=jsonl with task_options.path")
        if self.task not in _task_names():
            raise UrlvrError(f"unknown task {self.task!r}; choose one of: {', '.join(_task_names())}")
        if self.task == "jsonl" and "path" not in self.task_options:
            raise UrlvrError("task=jsonl needs a dataset file: set task_options.path (e.g. ../shared/data/math500.jsonl)")
        if DTYPES[self.dtype] == "float16":
            raise UrlvrError(f"dtype={self.dtype} is not supported for training (float16 needs loss scaling); "
                             "use bfloat16 or float32")
        _check_device("device", self.device)
        if self.lora_rank and not self.lora_targets.strip():
            raise UrlvrError("lora_targets is empty; use all-linear or module names such as q_proj,v_proj")
        from urlvr.rewards import get_reward

        get_reward(self.reward)  # an unknown name or a dotted path that does not load fails here
        self.modifiers()  # unknown modifiers and options fail here

    def modifiers(self) -> list:
        """The advantage modifiers of ``advantage_modifier``, built with their options, in order."""
        from urlvr.advantages import build_modifier

        names = [n.strip() for n in self.advantage_modifier.split(",") if n.strip()]
        stray = sorted(set(self.advantage_options) - set(names))
        if stray:
            raise UrlvrError(f"advantage_options names {stray[0]!r}, which is not in advantage_modifier "
                             f"({self.advantage_modifier!r}); add it there or drop its options")
        if len(set(names)) < len(names):
            raise UrlvrError(f"advantage_modifier {self.advantage_modifier!r} names a modifier twice")
        out = []
        for name in names:
            opts = self.advantage_options.get(name) or {}
            if not isinstance(opts, dict):
                raise UrlvrError(f"advantage_options.{name} must be a mapping of option: value, got {opts!r}")
            if name == "seed_grpo":
                opts = {"alpha": self.seed_grpo_alpha, **opts}
            out.append(build_modifier(name, opts))
        return out


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from a mapping (see :meth:`Config.from_dict`)."""
    return TrainConfig.from_dict(data)


def _set_dotted(data: dict, key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if rest:
        sub = data.setdefault(head, {})
        if not isinstance(sub, dict):
            raise UrlvrError(f"cannot set {key!r}: {head!r} is not a mapping")
        _set_dotted(sub, rest, value)
    else:
        data[head] = value


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML recipe file (one line on a missing or malformed file)."""
    p = Path(path)
    if not p.is_file():
        raise UrlvrError(f"config file {p} not found; give a YAML recipe such as recipes/testbed_gold.yaml")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UrlvrError(f"{p}{where}: malformed YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise UrlvrError(f"{p}: not UTF-8 text; save the recipe as UTF-8") from None
    if not isinstance(loaded, dict):
        raise UrlvrError(f"{p}: a recipe must be a YAML mapping of config keys")
    return loaded


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``key=value`` overrides (the value parsed as YAML; ``a.b=v`` sets a nested option) applied to a copy."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise UrlvrError(f"bad override {item!r}; write key=value, e.g. lr=1e-5")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key.strip(), value)
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), base: dict | None = None) -> TrainConfig:
    """YAML recipe (optional) + ``key=value`` overrides, validated."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data.update(read_recipe(path))
    return TrainConfig.from_dict(apply_overrides(data, overrides))


def config_changes(old: Config, new: Config) -> list[str]:
    """``key: old -> new`` for every field that differs (e.g. what a resume changed)."""
    a, b = old.to_dict(), new.to_dict()
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


def config_help() -> str:
    """Every :class:`TrainConfig` key, its default and its documentation (``urlvr train --help-config``)."""
    return TrainConfig.help()


# ---------------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalConfig(Config):
    """Everything that determines an evaluation (recorded in ``results.json``)."""

    model: str
    """A checkpoint or run folder, a ``.gguf`` file, ``smollm2`` or ``testbed:PRIOR[:TASK[:SIZE]]``."""
    data: tuple[str, ...]
    """Benchmarks: registered task names or ``.json``/``.jsonl`` paths."""
    k: int = 8
    """Samples per problem for avg@k and maj@k."""
    n: int | None = None
    """Samples drawn per problem and seed (>= k; pass@j is reported for every j <= n). Default k."""
    seeds: int = 3
    """Sampling seeds 0..seeds-1."""
    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    template: str | None = None
    """Prompt template with ``{question}``; default: the task's (files: a ``\\boxed{}`` instruction)."""
    system_prompt: str | None = None
    """Prepended as ``SYSTEM\\n\\n`` (or the system turn with ``chat``)."""
    chat: str = "auto"
    """Chat template: ``auto`` (the tokenizer's when it has one), ``on`` (require it) or ``off``."""
    greedy: bool = False
    """Also one greedy completion per problem (greedy accuracy)."""
    limit: int | None = None
    """At most this many problems per benchmark (files: the first rows)."""
    problems: int = 200
    """Problems drawn from a registered task."""
    split: str = "test"
    """Split of a registered task."""
    options: dict[str, Any] = field(default_factory=dict)
    """Task options (``--option key=value``)."""
    grader: str = "math"
    """Grader of file benchmarks: math, choice or exact."""
    equivalence: str = "auto"
    """maj@k classes: math (math-verify), canonical (the task's key) or auto (math for the math grader)."""
    batch_size: int = 256
    """Sequences per generate call (fixed: results depend on it only through the random stream)."""
    grader_workers: int = 2
    """Worker processes of the math-verify grader."""
    grader_timeout: float = 5.0
    """Seconds one math-verify comparison may take."""
    device: str = "auto"
    dtype: str = "auto"
    cross_check: bool = False
    """Report where the canonical normaliser and math-verify disagree (math grader)."""
    certify_eps: float = 0.1
    """Level of the Martingale Majority Certificate over each problem's n samples (``urlvr.certify``); 0 = off."""

    _positive = ("k", "seeds", "max_new_tokens", "limit", "problems", "batch_size", "grader_workers",
                 "grader_timeout")
    _flags = True
    FILE_OPTIONS: ClassVar[tuple[str, ...]] = ("path", "grader", "template", "limit")
    """Task options set by their own flags, not by ``--option``."""

    @property
    def n_samples(self) -> int:
        return self.n if self.n is not None else self.k

    def choices(self) -> dict[str, Sequence[Any]]:
        from urlvr.tasks import SPLITS
        from urlvr.tasks.jsonl import GRADERS

        return {"equivalence": ("auto", "math", "canonical"), "grader": GRADERS, "split": SPLITS,
                "dtype": tuple(DTYPES), "chat": CHAT_MODES}

    def check(self) -> None:
        if self.n_samples < self.k:
            raise UrlvrError(f"--k ({self.k}) must be <= --n ({self.n_samples}): avg@k and maj@k use k of the n "
                             "samples drawn per problem")
        if not self.temperature > 0:
            raise UrlvrError(f"--temperature must be > 0, got {self.temperature} (use --greedy)")
        if not 0 < self.top_p <= 1:
            raise UrlvrError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.certify_eps < 1:
            raise UrlvrError(f"--certify-eps must be in [0, 1) (0 turns the certificate off), got {self.certify_eps}")
        if not self.data:
            raise UrlvrError("give at least one --data")
        if self.template is not None:
            from urlvr.tasks.base import check_template

            check_template(self.template, "--template")
        bad = sorted(set(self.options) & set(self.FILE_OPTIONS))
        if bad:
            raise UrlvrError(f"set {', '.join(bad)} with its own flag (--data, --grader, --template, --limit), "
                             "not with --option")
        _check_device("--device", self.device)


# ---------------------------------------------------------------------------------------------------
# watching: the Model Collapse Step and GT Gain
# ---------------------------------------------------------------------------------------------------
@dataclass
class MCSConfig(Config):
    """The aggressive majority-vote run the Model Collapse Step is measured on (defaults: the testbed's)."""

    prompts_per_step: int = 1
    """Prompts per step (the paper: a mini-batch of 1)."""
    n: int = 8
    """Completions per prompt (N)."""
    lr: float = 2e-4
    """Learning rate (the testbed's: large enough that every prior collapses, small enough that they differ)."""
    max_steps: int = 600
    """The cap: a model not collapsed by then gets MCS = max_steps, censored."""
    window: int = 5
    """Trailing window (steps) of the reward-accuracy mean."""
    threshold: float = 0.01
    """Collapse when the trailing mean of reward accuracy falls below this."""
    label_free_window: int = 20
    """Window of the label-free detector (smoothing over this many one-prompt steps)."""
    until: str = "both"
    """Stop at the labelled MCS (``labelled``) or when both criteria have fired (``both``)."""
    train_problems: int = 512
    max_new_tokens: int = 12
    temperature: float = 1.0
    seed: int = 0
    device: str = "auto"

    _positive = ("prompts_per_step", "n", "max_steps", "window", "label_free_window", "train_problems",
                 "max_new_tokens", "lr", "temperature")
    _non_negative = ("seed",)

    def choices(self) -> dict[str, Sequence[Any]]:
        return {"until": ("labelled", "both")}

    def check(self) -> None:
        if self.n < 2:
            raise UrlvrError(f"n must be >= 2 (a vote needs several completions), got {self.n}")
        if not 0 < self.threshold < 1:
            raise UrlvrError(f"threshold must be in (0, 1), got {self.threshold}")
        _check_device("device", self.device)


@dataclass
class GainConfig(Config):
    """The fixed-budget gold-reward run of GT Gain and the evaluation shared with pass@k gain."""

    steps: int = 60
    """Gold-reward GRPO steps (the budget; defaults: the testbed demo's run, 16 prompts x 8 at lr 2e-4)."""
    prompts_per_step: int = 16
    n: int = 8
    lr: float = 2e-4
    train_problems: int = 512
    eval_problems: int = 200
    """Validation problems for avg@k before/after (GT Gain) and pass@k."""
    eval_k: int = 4
    """Samples per problem for avg@k (GT Gain)."""
    passk: int = 32
    """k of pass@k gain (0 = skip pass@k gain)."""
    passk_n: int = 0
    """Samples per problem for pass@k (unbiased estimator from n ≥ k samples; 0 = k): n ≫ k lowers its variance."""
    max_new_tokens: int = 12
    temperature: float = 1.0
    seed: int = 0
    device: str = "auto"

    _positive = ("prompts_per_step", "n", "lr", "train_problems", "eval_problems", "eval_k", "max_new_tokens",
                 "temperature")
    _non_negative = ("steps", "passk", "passk_n", "seed")

    def check(self) -> None:
        _check_device("device", self.device)
        if self.passk_n and self.passk_n < self.passk:
            raise UrlvrError(f"passk_n ({self.passk_n}) < passk ({self.passk}): pass@k needs at least k samples per "
                             "problem; raise passk_n or set it to 0 (= passk)")


# ---------------------------------------------------------------------------------------------------
# the testbed
# ---------------------------------------------------------------------------------------------------
TESTBED_VERSION = 1
"""Bumped whenever pretraining changes, so stale cached models are rebuilt."""


@dataclass(frozen=True)
class PriorConfig(Config):
    """Everything that determines a testbed base model (the cache key)."""

    prior: str = "aligned"
    """One of aligned, weak, misaligned."""
    task: str = "arithmetic"
    task_options: dict[str, Any] = field(default_factory=dict)
    size: str = "small"
    """Model size: tiny, small or base (urlvr.testbed.models.MODEL_SIZES)."""
    p_correct: float = 0.6
    """Share of gold answers in the targets (aligned; misaligned outside its wrong-rule problems)."""
    wrong_rate: float = 0.75
    """Misaligned: share of wrong-rule answers on the problems the rule applies to."""
    errors: str = "near_miss"
    """The random wrong answers of the targets: ``near_miss`` (one digit of the gold answer changed), ``derail``
    (after that digit, every later digit drawn at random) or ``noise`` (after it, any printable character: a
    mistake leaves the model unsure of everything that follows, as a confused real model spreads its mass)."""
    junk_tokens: int = 0
    """Extra vocabulary entries no text uses (a real vocabulary's long tail: 0 = the 100 characters only)."""
    steps: int = 1500
    """Pretraining steps (aligned, misaligned). At 1000 the misaligned prior is not yet confidently wrong (majority
    ratio 0.40 against the 0.75 its targets hold, sampled accuracy 0.12) and gold RL cannot move it in the demo's
    60 steps; at 1500 its card matches its targets (majority ratio 0.73, sampled accuracy 0.29), measured."""
    weak_steps: int = 150
    """Pretraining steps of the weak prior."""
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    card_problems: int = 200
    """Validation problems the prior card is measured on."""

    _positive = ("steps", "weak_steps", "batch_size", "card_problems", "lr")
    _non_negative = ("junk_tokens",)
    _unit = ("p_correct", "wrong_rate")

    def check(self) -> None:
        if self.errors not in PRIOR_ERRORS:
            raise UrlvrError(f"unknown testbed errors {self.errors!r}; choose one of: {', '.join(PRIOR_ERRORS)}")
        if self.prior not in PRIORS:
            raise UrlvrError(f"unknown prior {self.prior!r}; choose one of: {', '.join(PRIORS)}")
        if self.task not in _task_names():
            raise UrlvrError(f"unknown task {self.task!r}; choose one of: {', '.join(_task_names())}")
        from urlvr.testbed.models import MODEL_SIZES

        if self.size not in MODEL_SIZES:
            raise UrlvrError(f"unknown model size {self.size!r}; choose one of: {', '.join(MODEL_SIZES)}")

    def __hash__(self) -> int:
        return hash(self.label())

    def key(self) -> str:
        """The cache folder name: task, prior, size and a hash of every setting."""
        fields = dataclasses.asdict(self)
        for name, original in _LATER_PRIOR_FIELDS.items():  # added later: at the old behaviour, not in the key
            if fields[name] == original:
                del fields[name]
        blob = json.dumps({"v": TESTBED_VERSION, **fields}, sort_keys=True)
        return f"{self.task}-{self.prior}-{self.size}-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


_LATER_PRIOR_FIELDS = {"errors": "near_miss", "junk_tokens": 0}
"""PriorConfig fields added after models were cached, with the value that reproduces the old behaviour: left out
of the cache key at that value, so models built before the field existed stay valid."""


# ---------------------------------------------------------------------------------------------------
# the reproduction
# ---------------------------------------------------------------------------------------------------
INTRINSIC = ("self_certainty", "token_entropy", "trajectory_entropy", "probability", "probability_disparity",
             "majority_vote", "srt", "semantic_cluster")
"""Every intrinsic reward: the certainty family, then the ensemble family (METHODS.md §2-§3)."""


@dataclass(frozen=True)
class Plan(Config):
    """The sizes of one reproduction (``full``, ``quick``, ``smoke``: :data:`urlvr.experiments.plan.PLANS`)."""

    name: str
    seeds: int
    task_options: dict[str, Any] = field(default_factory=lambda: {"digits": 2, "ops": "+"})
    """Options of the arithmetic task (experiments 1-3)."""
    aligned: str = "testbed:aligned"
    misaligned: str = "testbed:misaligned"
    prompts_per_step: int = 16
    n: int = 8
    max_new_tokens: int = 12
    val_problems: int = 100
    val_every: int = 10
    val_k: int = 4
    # 1. families
    families: tuple[str, ...] = ("majority_vote", "self_certainty", "token_entropy", "trajectory_entropy", "probability",
                                 "gold")
    """The paper's five intrinsic rewards and the gold control (any of :data:`INTRINSIC` may be added)."""
    families_train: int = 2048
    families_steps: int = 100
    families_lr: float = 2.5e-4
    # 2. dataset size
    sizes: tuple[int, ...] = (32, 128, 512, 2048)
    sizes_steps: int = 100
    sizes_lr: float = 2.5e-4
    # 3. MCS vs GT Gain
    mcs_models: tuple[str, ...] = ("testbed:aligned?p_correct=0.8", "testbed:aligned", "testbed:aligned?p_correct=0.4",
                                   "testbed:weak", "testbed:misaligned")
    mcs_max_steps: int = 1500
    """Cap of an MCS run: high enough that at most half the runs end censored (a censored model ties)."""
    mcs_train: int = 512
    """Labelled probe prompts of the MCS runs (train split)."""
    mcs_seeds: int = 3
    gt_steps: int = 40
    gt_eval_problems: int = 100
    passk: int = 256
    """k of pass@k gain (the paper: pass@256 − pass@1; 0 = skip)."""
    passk_n: int = 1024
    """Samples per problem the unbiased pass@k is estimated from (n ≫ k)."""
    # 4. external vs intrinsic
    external_task_options: dict[str, Any] = field(default_factory=dict)
    """Options of the linear task."""
    external_models: tuple[str, ...] = ("testbed:aligned:linear", "testbed:misaligned:linear")
    external_rewards: tuple[str, ...] = ("verifier", "majority_vote", "self_certainty", "gold")
    external_train: int = 2048
    external_steps: int = 60
    external_lr: float = 2.5e-4
    # 5. certainty: why self-certainty collapses (preferences at step 0, training ablations)
    certainty_groups: int = 64
    """Groups sampled per base model for the within-group preferences."""
    certainty_steps: int = 100
    certainty_ablations: tuple[str, ...] = ("self_certainty", "lr / 4", "temperature 0.6", "answer span only",
                                            "vocabulary 1000", "errors: noise")
    """Arms of :data:`urlvr.experiments.certainty.ABLATIONS` (``self_certainty`` = unchanged)."""
    certainty_variants: bool = True
    """Also measure the preferences of the aligned prior with a 1000-entry vocabulary and with ``errors=noise``."""
    # 6. a real LM: test-time training on SmolLM2 ("" = skip)
    real_lm: str = "smollm2"
    real_lm_candidates: tuple[str, ...] = ()
    """Names of :data:`urlvr.experiments.real_lm.CANDIDATES` to search (empty = all)."""
    real_lm_k: int = 8
    real_lm_steps: int = 30
    real_lm_lr: float = 1e-5
    real_lm_seeds: int = 3
    """Training seeds per arm (sets that are not a whole split run seed 0 only)."""
    real_lm_eval_seeds: int = 3
    # methods (not in the default list: urlvr reproduce --only methods)
    methods: tuple[str, ...] = ("majority_vote", "evol_rl", "scope", "scope_topk", "ttrl_guard", "self_harmony",
                                "covo", "rlpr", "restrain", "spine", "snr", "certified_only")
    """Arms of :data:`urlvr.experiments.methods.ARMS` (majority vote, the baseline, is always run)."""
    methods_train: int = 512
    methods_steps: int = 60
    methods_lr: float = 2.5e-4

    _positive = ("seeds", "prompts_per_step", "n", "max_new_tokens", "val_problems", "val_every", "val_k",
                 "families_train", "families_steps", "families_lr", "sizes_steps", "sizes_lr", "mcs_max_steps",
                 "mcs_train", "mcs_seeds", "gt_eval_problems", "external_train", "external_steps", "external_lr",
                 "methods_train", "methods_steps", "methods_lr", "certainty_groups", "certainty_steps", "real_lm_k",
                 "real_lm_steps", "real_lm_lr", "real_lm_seeds", "real_lm_eval_seeds")
    _non_negative = ("gt_steps", "passk", "passk_n")

    def check(self) -> None:
        from urlvr.rewards import get_reward

        for name in (*self.families, *self.external_rewards):
            get_reward(name)
        if not self.sizes or min(self.sizes) < 1:
            raise UrlvrError(f"sizes must be positive problem counts, got {self.sizes}")
        if self.passk_n and self.passk_n < self.passk:
            raise UrlvrError(f"passk_n ({self.passk_n}) < passk ({self.passk}): pass@k needs n >= k samples")
