r"""The Model Collapse Step (METHODS.md §9), GT Gain and pass@k gain: how much RL can give a base model.

**Model Collapse Step (MCS), the paper's indicator.** Run majority-vote URLVR with aggressive settings
(one prompt per step, N = 8 completions, a large learning rate) and record on every step's training
batch the *reward accuracy*: the share of the N completions whose majority-vote reward equals their
gold reward (``oracle/reward_accuracy``, :mod:`urlvr.watch.oracle`). With one prompt per step it is
a multiple of 1/N, and 0 exactly when the rewards are all wrong, e.g. every completion agrees on a
wrong answer. A step in which *no* completion states an answer counts as 0: every reward is then 0,
"agreeing" with every gold reward, yet the model has collapsed out of the answer format (tiny testbed
models do this under large learning rates; the paper's LLMs do not). The MCS is the first step at which its trailing mean over ``window`` steps falls below
``threshold`` (1%). Larger MCS = stronger prior = more to gain from RL. The probe prompts' gold answers
feed only that oracle metric; the training reward never sees them (it runs through the real
:class:`~urlvr.trainer.Trainer`). **Censoring:** a run that has not collapsed after ``max_steps`` steps
reports ``mcs = max_steps`` and ``censored = true``; censored models tie at the cap when ranked, so
choose a cap the strongest model you care about reaches (600 on the testbed: about a minute).

Each indicator is a consumer of the one training loop (:meth:`urlvr.trainer.Trainer.steps`): its run
folder holds ``config.yaml`` and ``metrics.jsonl`` like any run (``urlvr report`` reads it); a rerun
in the same folder replaces the previous measurement.

**Label-free collapse step (urlvr's own extension, not the paper's definition).** The same run feeds
the trainer's :class:`~urlvr.watch.detector.CollapseDetector` (majority-ratio saturation with entropy or
length collapse, or drift beyond sharpening, smoothed over ``label_free_window`` steps); the step at
which it fires is ``label_free_step`` (censored at the cap likewise). ``urlvr rank`` reports how well it
agrees with the labelled MCS.

**Other indicators** (for ``urlvr rank``, :mod:`urlvr.watch.rank`): *GT Gain*, the gain in validation avg@k of a fixed-budget
run with the gold reward, and *pass@k gain*, ``pass@k − pass@1`` from k samples per validation problem
(unbiased estimator, :func:`urlvr.evaluation.metrics.pass_at_k`). Every indicator counts the tokens it
generated (training rollouts and evaluation samples), so their costs compare.

**Models** are local folders or testbed priors: ``testbed:PRIOR[:TASK[:SIZE]][?KEY=VALUE&...]`` with
any :class:`~urlvr.config.PriorConfig` knob as a key, e.g. ``testbed:aligned?p_correct=0.8`` or
``testbed:misaligned?wrong_rate=0.5``. Without ``:TASK`` (or with the run's task) the prior is built
on the run's task and task options; built models are cached.

>>> first_collapse([1.0, 0.5, 0.0, 0.0, 0.0, 0.0], window=3, threshold=0.01)
5
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

from urlvr.config import GainConfig, MCSConfig, TrainConfig
from urlvr.io import write_json
from urlvr.loading import resolve_model

__all__ = ["first_collapse", "model_collapse_step", "collapse_run", "gt_gain", "passk_gain", "plot_curves", "slug"]

OnStep = Callable[[dict], None]


def slug(name: str) -> str:
    """A folder name for a model name.

    >>> slug("testbed:aligned?p_correct=0.8")
    'aligned_p_correct_0.8'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.removeprefix("testbed:")).strip("_") or "model"


def first_collapse(values: Sequence[float | None], window: int, threshold: float) -> int | None:
    """First 1-based step whose trailing mean over ``window`` steps is below ``threshold``; None if none.

    Steps without a value (None) are skipped; the first ``window - 1`` steps cannot collapse.
    """
    seen: list[float] = []
    for step, v in enumerate(values, 1):
        if v is None:
            continue
        seen.append(v)
        if len(seen) >= window and sum(seen[-window:]) / window < threshold:
            return step
    return None


def _trailing_mean(values: Sequence[float], window: int) -> float | None:
    tail = values[-window:]
    return sum(tail) / len(tail) if tail else None


def _fresh_run(out: Path, **settings) -> TrainConfig:
    """The TrainConfig of a measurement run in ``out`` (a previous measurement's run files are replaced)."""
    for name in ("metrics.jsonl", "samples.jsonl", "config.yaml", "summary.json"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return TrainConfig(out_dir=str(out), save_every=0, sample_every=0, val_every=0, **settings)


# ---------------------------------------------------------------------------------------------------
# the Model Collapse Step
# ---------------------------------------------------------------------------------------------------
def model_collapse_step(model: str, task: str, task_options: dict | None = None,
                        settings: MCSConfig | None = None, out_dir: str | Path | None = None,
                        on_step: OnStep | None = None) -> dict:
    """Run aggressive majority-vote URLVR on ``model`` and return the MCS, its label-free twin and costs.

    Writes ``curve.json`` (settings, result and one row per step) and ``curve.png`` into ``out_dir``;
    the result's ``curve`` is the JSON's path.
    """
    return collapse_run(model, task, task_options, settings, out_dir, on_step)[0]


def collapse_run(model: str, task: str, task_options: dict | None, settings: MCSConfig | None,
                 out_dir: str | Path | None, on_step: OnStep | None) -> tuple[dict, list[dict]]:
    """:func:`model_collapse_step`, also returning the per-step curve."""
    from urlvr.trainer import Trainer

    s = settings or MCSConfig()
    task_options = dict(task_options or {})
    out = Path(out_dir or f"runs/collapse/{slug(model)}")
    out.mkdir(parents=True, exist_ok=True)
    cfg = _fresh_run(out, model=model, task=task, task_options=task_options, reward="majority_vote",
                     val_problems=0, prompts_per_step=s.prompts_per_step, n_votes=s.n, n_train=s.n, lr=s.lr,
                     steps=s.max_steps, train_problems=s.train_problems, max_new_tokens=s.max_new_tokens,
                     temperature=s.temperature, seed=s.seed, device=s.device, collapse_window=s.label_free_window)
    trainer = Trainer(cfg, resolve_model(model, task, task_options))
    t0, tokens, curve, seen = time.perf_counter(), 0, [], []
    mcs = lf = None
    marks: dict[str, int] = {}
    for result in trainer.steps():
        metrics, step = result.metrics, result.step
        tokens += int(metrics["rollout/tokens"])
        ra = metrics.get("oracle/reward_accuracy")  # None only if no reward was valid
        if metrics.get("rollout/unparsable_rate") == 1.0:
            ra = 0.0  # format collapse: no answer to vote on, all rewards 0 "agree" with gold 0
        if ra is not None:
            seen.append(ra)
            if mcs is None and first_collapse(seen, s.window, s.threshold) == len(seen):
                mcs, marks["mcs_tokens"] = step, tokens
        if lf is None and metrics.get("diag/collapse_fired"):
            lf, marks["label_free_tokens"] = step, tokens
        curve.append({"step": step, "reward_accuracy": ra,
                      "reward_accuracy_smooth": _trailing_mean(seen, s.window),
                      "accuracy": metrics.get("oracle/accuracy"), "label_accuracy": metrics.get("oracle/label_accuracy"),
                      "majority_ratio": metrics.get("diag/majority_ratio"), "entropy": metrics.get("policy/entropy"),
                      "length": metrics.get("rollout/length_mean"), "kl_initial": metrics.get("policy/kl_initial"),
                      "entropy_ratio": metrics.get("diag/entropy_ratio"), "tokens": tokens})
        if on_step:
            on_step(metrics)
        if mcs is not None and (lf is not None or s.until == "labelled"):
            break
    result = {
        "model": model, "mcs": mcs or s.max_steps, "censored": mcs is None,
        "tokens": marks.get("mcs_tokens", tokens),
        "label_free_step": lf or s.max_steps, "label_free_censored": lf is None,
        "label_free_tokens": marks.get("label_free_tokens", tokens),
        "steps_run": len(curve), "tokens_run": tokens, "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "curve.json", {"settings": s.to_dict(), "task": task, "task_options": task_options,
                                    "result": result, "curve": curve})
    plot_curves({model: (curve, result)}, out / "curve.png", s)
    result["curve"] = str(out / "curve.json")
    return result, curve


def plot_curves(runs: dict[str, tuple[list[dict], dict]], path: str | Path, s: MCSConfig) -> None:
    """Smoothed reward accuracy (top, MCS dashed) and majority ratio (bottom, label-free step dotted); PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, (curve, res) in runs.items():
        steps = [r["step"] for r in curve]
        line, = ax1.plot(steps, [r["reward_accuracy_smooth"] for r in curve], label=name, lw=1.2)
        ratios = [r["majority_ratio"] or 0.0 for r in curve]
        ax2.plot(steps, [_trailing_mean(ratios[: i + 1], s.label_free_window) for i in range(len(ratios))],
                 color=line.get_color(), lw=1.0)
        if not res["censored"]:
            ax1.axvline(res["mcs"], color=line.get_color(), ls="--", lw=0.8)
        if not res["label_free_censored"]:
            ax2.axvline(res["label_free_step"], color=line.get_color(), ls=":", lw=0.8)
    ax1.axhline(s.threshold, color="grey", lw=0.6)
    ax1.set_ylabel(f"reward accuracy\n(mean of {s.window} steps)")
    ax2.set_ylabel(f"majority ratio\n(mean of {s.label_free_window} steps)")
    ax2.set_xlabel(f"step ({s.prompts_per_step} prompt x {s.n} completions)")
    ax1.set_title("Model Collapse Step (dashed: MCS; dotted: label-free step)")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# the reference indicators: GT Gain and pass@k gain
# ---------------------------------------------------------------------------------------------------
def gt_gain(model: str, task: str, task_options: dict | None = None, settings: GainConfig | None = None,
            out_dir: str | Path | None = None, on_step: OnStep | None = None) -> dict:
    """GT Gain: validation avg@k after ``steps`` gold-reward GRPO steps minus before; tokens generated.

    One gold-reward run whose validations (at step 0 and at the end) are the before/after evaluation.
    """
    from urlvr.trainer import Trainer

    g = settings or GainConfig()
    task_options = dict(task_options or {})
    out = Path(out_dir or "runs/gt_gain")
    cfg = _fresh_run(out, model=model, task=task, task_options=task_options, reward="gold",
                     prompts_per_step=g.prompts_per_step, n_votes=g.n, n_train=g.n, lr=g.lr, steps=g.steps,
                     train_problems=g.train_problems, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                     val_temperature=g.temperature, seed=g.seed, device=g.device, val_problems=g.eval_problems,
                     val_k=g.eval_k)
    trainer = Trainer(cfg, resolve_model(model, task, task_options))
    for result in trainer.steps():
        if on_step:
            on_step(result.metrics)
    key = f"val/avg@{g.eval_k}"
    before, after = trainer.history[0][key], trainer.history[-1][key]
    tokens = sum(r.get("rollout/tokens", 0) + r.get("val/tokens", 0) for r in trainer.history)
    return {"gt_gain": after - before, "acc_before": before, "acc_after": after, "gt_tokens": tokens}


def passk_gain(model: str, task: str, task_options: dict | None = None, settings: GainConfig | None = None,
               out_dir: str | Path | None = None) -> dict:
    """pass@k − pass@1 of the base model from ``passk_n`` (≥ k) samples per validation problem; tokens generated.

    The same samples give the base model's maj@k (``base_maj``): how often its majority answer is right,
    the confidence–correctness alignment that decides whether intrinsic rewards help (METHODS.md §8).
    The problems are the ones GT Gain validates on (``validation`` split, seed + 1). Nothing is trained,
    so nothing is written (``out_dir`` is accepted for a uniform signature).
    """
    from urlvr.evaluation.harness import sample_problems
    from urlvr.evaluation.metrics import summarize
    from urlvr.grading import shared_grader
    from urlvr.loading import load_model
    from urlvr.rollout import HFSampler
    from urlvr.tasks import get_task
    from urlvr.types import SamplingSettings

    g = settings or GainConfig()
    k = g.passk
    t = get_task(task, **dict(task_options or {}))
    policy, tok = load_model(resolve_model(model, task, task_options), g.device, "float32")
    grader = shared_grader()
    examples = t.examples("validation", g.eval_problems, seed=g.seed + 1)
    rows = sample_problems(HFSampler(policy, tok), t, examples, g.passk_n or k,
                           SamplingSettings(g.temperature, 1.0, g.max_new_tokens),
                           seed=g.seed, rules=t.rules("canonical", grader.clusterer()), grader=grader)
    s = summarize(rows, k)
    return {"passk_gain": s[f"pass@{k}"] - s["pass@1"], "pass1": s["pass@1"], f"pass@{k}": s[f"pass@{k}"],
            "base_maj": s[f"maj@{k}"], "passk_tokens": sum(r["length"] for r in rows)}
