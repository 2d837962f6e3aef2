"""The reward interface: a group of completions in, one score per completion out.

Every reward has one signature::

    reward(group: Group, **options) -> list[float | None] | RewardOutput

``group`` (:class:`~urlvr.types.Group`) holds the completions of *one* prompt: texts, extracted
answers, token ids and the rollout policy's per-token statistics (log-probs, entropies,
self-certainties, top-2 gaps). ``None`` means "not applicable / failed" and removes that completion
from the loss. A reward may return named ``components`` that are logged as ``reward/<name>/<component>``.

Gold answers are unreachable from label-free rewards by construction (see :mod:`urlvr.types`); only
rewards registered with ``needs_gold=True`` receive a :class:`~urlvr.types.LabeledGroup`. A reward
that queries the policy says so at registration: ``needs_policy`` (it samples:
``sampler.generate``) or ``needs_scorer`` (it scores given continuations: ``scorer.score``).

Rewards are registered by name (:func:`register_reward`); a dotted path ``package.module:function``
loads a user's own. Importing :mod:`urlvr.rewards` (which any import of this module does first)
registers the built-in ones.

**What a reward may return** (:func:`call_reward` checks it; anything else stops the run with one
line): one real number (``int``, ``float``, ``bool``, a numpy or 0-d torch scalar) or ``None`` per
completion, with ``|score| <= SCORE_LIMIT``; NaN and ±inf are kept as "no score" (like None). A
string such as ``"1.0"`` is refused, not parsed.

**Bounded calls** (:func:`call_bounded`, what training uses): each call runs in a daemon thread and
the caller waits at most ``timeout`` seconds (``reward_timeout``). Python cannot kill a thread, so a
call past its limit is *abandoned*, not stopped: the run ends with one line, an asynchronous
exception is sent into the thread (it ends a pure-Python loop at its next bytecode; a thread blocked
in ``time.sleep``, I/O or a long C call keeps running until that returns), and, being a daemon, it
never holds up the process's exit. Running the call in a thread has three costs, stated here:
``signal.signal``/``signal.alarm`` fail there (math-verify's own timeouts use them: grade through
:func:`urlvr.grading.shared_grader` instead, which runs math-verify in worker processes); thread-local
torch state is not inherited (grad mode is passed on, an autocast context is not); and about 0.1 ms
per call. ``timeout=0`` calls the reward in the caller's thread with no limit (the old behaviour,
for a reward that needs the main thread; there a ``KeyboardInterrupt`` cannot be told from Ctrl-C and
interrupts the run). ``SystemExit``, ``KeyboardInterrupt`` and other
``BaseException``\ s raised *by the reward* are errors that stop the run, never an exit (a real
Ctrl-C reaches the waiting main thread and still interrupts).
"""

from __future__ import annotations

import ctypes
import importlib
import inspect
import math
import numbers
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from urlvr.errors import UrlvrError
from urlvr.types import Completion, Group, LabeledGroup, RewardOutput

__all__ = [
    "Completion", "Group", "LabeledGroup", "RewardOutput", "RewardSpec", "register_reward", "get_reward",
    "reward_names", "call_reward", "call_bounded", "check_options", "FAMILIES", "SCORE_LIMIT", "REWARD_TIMEOUT",
]

SCORE_LIMIT = 1e6
"""Largest accepted ``|score|``: rewards are advantages' raw material in float32, where a group of
values near 1e19 already overflows its variance; no built-in reward comes near 1e6 (a sum of
log-probabilities over 10^4 tokens is about -10^5 at worst)."""

REWARD_TIMEOUT = 300.0
"""Default seconds one reward call (one group) may take (``TrainConfig.reward_timeout``)."""

FAMILIES = ("certainty", "ensemble", "external", "regulariser", "mix", "control", "experimental", "user", "other")
"""Reward families (``urlvr rewards`` groups by them)."""


@dataclass(frozen=True)
class RewardSpec:
    """A registered reward: the function and what it needs."""

    name: str
    fn: Callable[..., Any]
    family: str = "other"
    needs_gold: bool = False
    needs_logits: bool = False
    needs_group: bool = False
    needs_policy: bool = False
    """The reward samples from the policy (e.g. self-verification): it is called with ``sampler=`` (a
    :class:`~urlvr.rollout.Sampler` serving the current policy) and ``settings=`` the run's sampling
    settings, and batches its own generations through ``sampler.generate``."""
    needs_scorer: bool = False
    """The reward needs the policy's statistics of *given* continuations (CoVo, RLPR-style): it is
    called with ``scorer=`` (whose ``score(prompts, continuations, temperature)`` is
    :meth:`~urlvr.rollout.Sampler.score`; ``token_texts(ids)`` decodes tokens one by one) and
    ``settings=``. If its signature has an ``initial_scorer`` parameter it also gets the same call
    serving the *initial* policy (the frozen reference, or the LoRA model with its adapters off)."""
    needs_embeddings: bool = False
    """The rollout keeps each completion's mean-pooled final hidden state (``Completion.embedding``)."""
    source: str = ""

    @property
    def summary(self) -> str:
        """The first line of the reward's docstring."""
        doc = (self.fn.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


_REGISTRY: dict[str, RewardSpec] = {}


def register_reward(name: str, *, family: str = "other", needs_gold: bool = False, needs_logits: bool = False,
                    needs_group: bool = False, needs_policy: bool = False, needs_scorer: bool = False,
                    needs_embeddings: bool = False, source: str = "") -> Callable:
    """Function decorator: register a reward under ``name``."""
    if family not in FAMILIES:
        raise UrlvrError(f"unknown reward family {family!r}; choose one of: {', '.join(FAMILIES)}")

    def deco(fn):
        _REGISTRY[name] = RewardSpec(name, fn, family, needs_gold, needs_logits, needs_group, needs_policy,
                                     needs_scorer, needs_embeddings, source)
        return fn

    return deco


def reward_names() -> list[str]:
    return sorted(_REGISTRY)


def get_reward(name: str) -> RewardSpec:
    """A registered reward by name, or a user's function by dotted path ``pkg.module:function``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name or "." in name:
        mod_name, _, attr = name.partition(":") if ":" in name else name.rpartition(".")
        try:
            fn = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise UrlvrError(f"cannot load reward {name!r} ({e}); use 'package.module:function'") from None
        for spec in _REGISTRY.values():
            if spec.fn is fn:
                return spec
        return RewardSpec(name, fn, family="user", needs_gold=bool(getattr(fn, "needs_gold", False)),
                          needs_group=True, needs_policy=bool(getattr(fn, "needs_policy", False)),
                          needs_scorer=bool(getattr(fn, "needs_scorer", False)),
                          needs_embeddings=bool(getattr(fn, "needs_embeddings", False)))
    raise UrlvrError(f"unknown reward {name!r}; choose one of: {', '.join(sorted(_REGISTRY))} "
                     "or give a dotted path 'package.module:function'")


def check_options(spec: RewardSpec, options: dict[str, Any]) -> None:
    """Fail at once, with the accepted names, when ``options`` do not fit the reward's signature."""
    try:
        sig = inspect.signature(spec.fn)
    except (TypeError, ValueError):
        return
    params = list(sig.parameters.values())[1:]  # the first is the group
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(options) - names)
    if unknown:
        accepted = ", ".join(sorted(names)) or "none"
        raise UrlvrError(f"reward {spec.name!r} has no option {unknown[0]!r} (its options: {accepted}); "
                         "fix reward_options")


def _as_reward(spec: RewardSpec, group: Group, i: int, s: Any, bound: bool = True) -> float | None:
    """One returned value as a float or None; anything that is not a real number is refused."""
    if s is None:
        return None
    where = f"completion {i} of problem {group.problem.id!r}"
    value = None
    if isinstance(s, numbers.Real):
        value = s
    elif getattr(s, "ndim", None) == 0 and hasattr(s, "item"):  # a 0-d torch tensor or numpy array
        item = s.item()
        value = item if isinstance(item, numbers.Real) else None
    if value is None:
        raise UrlvrError(f"reward {spec.name!r} returned {s!r} ({type(s).__name__}) for {where}; a reward returns "
                         "a float or None per completion (convert strings and other objects yourself)")
    try:
        f = float(value)
    except (OverflowError, ValueError):  # an int too large for a float (or for Python's int-string limit)
        f = math.inf if value > 0 else -math.inf
        if not bound:
            return f
        raise UrlvrError(f"reward {spec.name!r} returned an integer too large for a float for {where}; "
                         f"scores must be within ±{SCORE_LIMIT:g}: rescale the reward") from None
    if bound and math.isfinite(f) and abs(f) > SCORE_LIMIT:
        raise UrlvrError(f"reward {spec.name!r} returned {f:g} for {where}; scores must be within ±{SCORE_LIMIT:g} "
                         "(larger ones overflow the float32 advantages): rescale the reward")
    return f


def call_reward(spec: RewardSpec, group: Group, options: dict[str, Any]) -> RewardOutput:
    """Call a reward and check its output: one real number (``|s| <= SCORE_LIMIT``) or None per completion.

    NaN and ±inf pass through (the caller counts them as no score); strings, other objects and huge
    values raise :class:`UrlvrError`. Components must be numbers or None too (they are logged).
    """
    out = spec.fn(group, **options)
    if not isinstance(out, RewardOutput):
        if isinstance(out, (str, bytes, Mapping)) or not hasattr(out, "__iter__"):
            raise UrlvrError(f"reward {spec.name!r} returned {type(out).__name__} {_short(out)} for a group; "
                             "a reward returns a list with one float (or None) per completion, or a RewardOutput")
        out = RewardOutput(list(out))
    if len(out.scores) != len(group):
        raise UrlvrError(f"reward {spec.name!r} returned {len(out.scores)} scores for a group of {len(group)}; "
                         "a reward must return one score (or None) per completion")
    out.scores = [_as_reward(spec, group, i, s) for i, s in enumerate(out.scores)]
    out.components = {name: [_as_reward(spec, group, i, v, bound=False) for i, v in enumerate(vals)]
                      for name, vals in out.components.items()}
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class RewardCancelled(BaseException):
    """Sent into a reward thread that ran past its timeout (it ends a pure-Python loop)."""


def call_bounded(spec: RewardSpec, group: Group, options: dict[str, Any],
                 timeout: float = REWARD_TIMEOUT) -> RewardOutput:
    """:func:`call_reward` in a daemon thread, waited on for at most ``timeout`` seconds (0: no thread, no limit).

    Returns the checked output or re-raises what the reward raised (an ``Exception`` as itself, for the
    caller to isolate); raises :class:`UrlvrError` when the call runs past ``timeout``, when the reward
    raises ``SystemExit``, ``KeyboardInterrupt`` or another ``BaseException``, or when it uses signals
    (which need the main thread). See the module docstring for what abandoning a thread means.
    """
    if not timeout:
        try:
            return call_reward(spec, group, options)
        except SystemExit as e:
            raise UrlvrError(_exit_message(spec, e)) from None
    import torch

    box: dict[str, Any] = {}
    grad = torch.is_grad_enabled()

    def target() -> None:
        try:
            with torch.set_grad_enabled(grad):
                box["out"] = call_reward(spec, group, options)
        except BaseException as e:  # noqa: B036 - every outcome goes back to the waiting caller
            box["error"] = e

    thread = threading.Thread(target=target, name=f"urlvr-reward-{spec.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(RewardCancelled))
        raise UrlvrError(f"reward {spec.name!r} did not return within {timeout:g} s on problem {group.problem.id!r} "
                         "(the call was abandoned); make it faster or raise reward_timeout (0 = no limit, "
                         "called in the main thread)")
    error = box.get("error")
    if error is None:
        return box["out"]
    if isinstance(error, UrlvrError):
        raise error
    if isinstance(error, ValueError) and "main thread" in str(error):
        raise UrlvrError(f"reward {spec.name!r} uses signals ({error}), which work only in the main thread; grade "
                         "math through urlvr.grading.shared_grader() (worker processes) or set reward_timeout=0 "
                         "to call the reward in the main thread without a time limit") from None
    if isinstance(error, Exception):
        raise error
    raise UrlvrError(_exit_message(spec, error)) from None


def _exit_message(spec: RewardSpec, error: BaseException) -> str:
    return (f"reward {spec.name!r} raised {type(error).__name__}({', '.join(map(repr, error.args))}); a reward "
            "returns scores and must not exit or interrupt the run: fix the reward")
