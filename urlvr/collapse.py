r"""The Model Collapse Step (METHODS.md §9) and ranking base models by how much RL can give them.

**Model Collapse Step (MCS), the paper's indicator.** Run majority-vote URLVR with aggressive settings
(one prompt per step, N = 8 completions, a large learning rate) and record on every step's training
batch the *reward accuracy*: the share of the N completions whose majority-vote reward equals their
gold reward (``oracle/reward_accuracy``, :mod:`urlvr.metrics.oracle`). With one prompt per step it is
a multiple of 1/N, and 0 exactly when the rewards are all wrong, e.g. every completion agrees on a
wrong answer. A step in which *no* completion states an answer counts as 0: every reward is then 0,
"agreeing" with every gold reward, yet the model has collapsed out of the answer format (tiny testbed
models do this under large learning rates; the paper's LLMs do not). The MCS is the first step at which its trailing mean over ``window`` steps falls below
``threshold`` (1%). Larger MCS = stronger prior = more to gain from RL. The probe prompts' gold answers
feed only that oracle metric; the training reward never sees them (it runs through the real
:class:`~urlvr.trainer.Trainer`). **Censoring:** a run that has not collapsed after ``max_steps`` steps
reports ``mcs = max_steps`` and ``censored = true``; censored models tie at the cap when ranked, so
choose a cap the strongest model you care about reaches (600 on the testbed: about a minute).

**Label-free collapse step (urlvr's own extension, not the paper's definition).** The same run feeds
the trainer's :class:`~urlvr.diagnostics.CollapseDetector` (majority-ratio saturation with entropy or
length collapse, or drift beyond sharpening, smoothed over ``label_free_window`` steps); the step at
which it fires is ``label_free_step`` (censored at the cap likewise). ``urlvr rank`` reports how well it
agrees with the labelled MCS.

**Other indicators** (for ``urlvr rank``): *GT Gain*, the gain in validation avg@k of a fixed-budget
run with the gold reward, and *pass@k gain*, ``pass@k − pass@1`` from k samples per validation problem
(unbiased estimator, :func:`urlvr.evaluation.pass_at_k`). Every indicator counts the tokens it
generated (training rollouts and evaluation samples), so their costs compare.

**Models** are local folders or testbed priors: ``testbed:PRIOR[:TASK[:SIZE]][?KEY=VALUE&...]`` with
any :class:`~urlvr.testbed.priors.PriorSpec` knob as a key, e.g. ``testbed:aligned?p_correct=0.8`` or
``testbed:misaligned?wrong_rate=0.5``. Without ``:TASK`` (or with the run's task) the prior is built
on the run's task and task options; built models are cached.

>>> parse_model("testbed:misaligned?wrong_rate=0.5", "arithmetic", {"digits": 2}).wrong_rate
0.5
>>> first_collapse([1.0, 0.5, 0.0, 0.0, 0.0, 0.0], window=3, threshold=0.01)
5
>>> spearman([1, 2, 3, 4], [10, 20, 40, 30]), kendall([1, 2, 3, 4], [10, 20, 40, 30])
(0.8, 0.6666666666666666)
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Callable, Sequence

from urlvr.errors import UrlvrError
from urlvr.files import write_json, write_text

from urlvr.testbed.priors import parse_model, resolve_model as resolve  # noqa: E402

__all__ = ["MCSSettings", "GainSettings", "parse_model", "resolve", "first_collapse", "model_collapse_step",
           "gt_gain", "passk_gain", "spearman", "kendall", "rank_models", "format_ranking", "plot_curves"]

OnStep = Callable[[dict], None]


# ---------------------------------------------------------------------------------------------------
# models: local folders and testbed priors with knobs
# ---------------------------------------------------------------------------------------------------
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.removeprefix("testbed:")).strip("_") or "model"


# ---------------------------------------------------------------------------------------------------
# the Model Collapse Step
# ---------------------------------------------------------------------------------------------------
@dataclass
class MCSSettings:
    """The aggressive majority-vote run the MCS is measured on (defaults: the testbed's)."""

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

    def validate(self) -> "MCSSettings":
        for name in ("prompts_per_step", "n", "max_steps", "window", "label_free_window", "train_problems",
                     "max_new_tokens"):
            if getattr(self, name) < 1:
                raise UrlvrError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n < 2:
            raise UrlvrError(f"n must be >= 2 (a vote needs several completions), got {self.n}")
        if not self.lr > 0 or not self.temperature > 0:
            raise UrlvrError(f"lr and temperature must be > 0, got {self.lr}, {self.temperature}")
        if not 0 < self.threshold < 1:
            raise UrlvrError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.until not in ("labelled", "both"):
            raise UrlvrError(f"until must be 'labelled' or 'both', got {self.until!r}")
        return self


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


def _train_config(model_path: str, task: str, task_options: dict, out_dir: Path, **kw):
    from urlvr.config import config_from_dict

    base = dict(model=model_path, task=task, task_options=dict(task_options), val_problems=0,
                out_dir=str(out_dir), save_every=10**9, sample_every=10**9, val_every=10**9)
    return config_from_dict({**base, **kw})


def model_collapse_step(model: str, task: str, task_options: dict | None = None,
                        settings: MCSSettings | None = None, out_dir: str | Path | None = None,
                        on_step: OnStep | None = None) -> dict:
    """Run aggressive majority-vote URLVR on ``model`` and return the MCS, its label-free twin and costs.

    Writes ``curve.json`` (settings, result and one row per step) and ``curve.png`` into ``out_dir``;
    the result's ``curve`` is the JSON's path.
    """
    return _collapse_run(model, task, task_options, settings, out_dir, on_step)[0]


def _collapse_run(model, task, task_options, settings, out_dir, on_step) -> tuple[dict, list[dict]]:
    from urlvr.trainer import Trainer

    s = (settings or MCSSettings()).validate()
    task_options = dict(task_options or {})
    out = Path(out_dir or f"runs/collapse/{_slug(model)}")
    out.mkdir(parents=True, exist_ok=True)
    cfg = _train_config(resolve(model, task, task_options), task, task_options, out, reward="majority_vote",
                        prompts_per_step=s.prompts_per_step, n_votes=s.n, n_train=s.n, lr=s.lr, steps=s.max_steps,
                        train_problems=s.train_problems, max_new_tokens=s.max_new_tokens,
                        temperature=s.temperature, seed=s.seed, device=s.device, collapse_window=s.label_free_window)
    trainer = Trainer(cfg, out)
    t0, tokens, curve, seen = time.perf_counter(), 0, [], []
    mcs = lf = None
    marks: dict[str, int] = {}
    for step in range(s.max_steps):
        trainer.step = step
        metrics, batch, _ = trainer.train_step(step)
        metrics.update(trainer.collapse.update(step + 1, metrics))  # as train() does
        tokens += int(batch.mask.sum())
        ra = metrics.get("oracle/reward_accuracy")  # None only if no reward was valid
        if metrics.get("rollout/unparsable_rate") == 1.0:
            ra = 0.0  # format collapse: no answer to vote on, all rewards 0 "agree" with gold 0
        if ra is not None:
            seen.append(ra)
            if mcs is None and first_collapse(seen, s.window, s.threshold) == len(seen):
                mcs, marks["mcs_tokens"] = step + 1, tokens
        if lf is None and metrics.get("diag/collapse_fired"):
            lf, marks["label_free_tokens"] = step + 1, tokens
        curve.append({"step": step + 1, "reward_accuracy": ra,
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
    write_json(out / "curve.json", {"settings": dataclasses.asdict(s), "task": task, "task_options": task_options,
                                    "result": result, "curve": curve})
    plot_curves({model: (curve, result)}, out / "curve.png", s)
    result["curve"] = str(out / "curve.json")
    return result, curve


def plot_curves(runs: dict[str, tuple[list[dict], dict]], path: str | Path, s: MCSSettings) -> None:
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
@dataclass
class GainSettings:
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
    """k of pass@k gain (k samples per problem; 0 = skip pass@k gain)."""
    max_new_tokens: int = 12
    temperature: float = 1.0
    seed: int = 0
    device: str = "auto"


def _evaluate(trainer, k: int, seed: int) -> tuple[dict, int]:
    """avg@k, pass@1..k of the trainer's current policy on its validation set, and the tokens generated."""
    from urlvr.evaluation import sample_problems, summarize
    from urlvr.rollout import SamplingSettings

    trainer.model.eval()
    settings = SamplingSettings(trainer.cfg.temperature, trainer.cfg.top_p, trainer.cfg.max_new_tokens)
    rows = sample_problems(trainer.sampler, trainer.task, trainer.val_set, k, settings, seed=seed,
                           equivalence=trainer.cfg.equivalence)
    return summarize(rows, k), sum(r["length"] for r in rows)


def _gain_trainer(model: str, task: str, task_options: dict, g: GainSettings, out: Path, **kw):
    from urlvr.trainer import Trainer

    cfg = _train_config(resolve(model, task, task_options), task, task_options, out, reward="gold",
                        prompts_per_step=g.prompts_per_step, n_votes=g.n, n_train=g.n, lr=g.lr, steps=g.steps,
                        train_problems=g.train_problems, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                        seed=g.seed, device=g.device, val_problems=g.eval_problems, **kw)
    return Trainer(cfg, out)


def gt_gain(model: str, task: str, task_options: dict | None = None, settings: GainSettings | None = None,
            out_dir: str | Path | None = None, on_step: OnStep | None = None) -> dict:
    """GT Gain: validation avg@k after ``steps`` gold-reward GRPO steps minus before; tokens generated."""
    g = settings or GainSettings()
    trainer = _gain_trainer(model, task, dict(task_options or {}), g, Path(out_dir or "runs/gt_gain"))
    before, tokens = _evaluate(trainer, g.eval_k, g.seed)
    for step in range(g.steps):
        trainer.step = step
        metrics, batch, _ = trainer.train_step(step)
        tokens += int(batch.mask.sum())
        if on_step:
            on_step(metrics)
    after, t_eval = _evaluate(trainer, g.eval_k, g.seed)
    key = f"avg@{g.eval_k}"
    return {"gt_gain": after[key] - before[key], "acc_before": before[key], "acc_after": after[key],
            "gt_tokens": tokens + t_eval}


def passk_gain(model: str, task: str, task_options: dict | None = None, settings: GainSettings | None = None,
               out_dir: str | Path | None = None) -> dict:
    """pass@k − pass@1 of the base model from k samples per validation problem; tokens generated.

    The same samples give the base model's maj@k (``base_maj``): how often its majority answer is right,
    the confidence–correctness alignment that decides whether intrinsic rewards help (METHODS.md §8).
    """
    g = settings or GainSettings()
    trainer = _gain_trainer(model, task, dict(task_options or {}), g, Path(out_dir or "runs/passk"))
    s, tokens = _evaluate(trainer, g.passk, g.seed)
    k = g.passk
    return {"passk_gain": s[f"pass@{k}"] - s["pass@1"], "pass1": s["pass@1"], f"pass@{k}": s[f"pass@{k}"],
            "base_maj": s[f"maj@{k}"], "passk_tokens": tokens}


# ---------------------------------------------------------------------------------------------------
# rank correlations (no scipy)
# ---------------------------------------------------------------------------------------------------
def _ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, ties get the mean of the ranks they span."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks; nan when either is constant."""
    if len(x) != len(y):
        raise ValueError("spearman needs two sequences of the same length")
    rx, ry = _ranks(x), _ranks(y)
    n = len(x)
    if n < 2:
        return float("nan")
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else float("nan")


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either sequence corrected); nan when either is constant."""
    if len(x) != len(y):
        raise ValueError("kendall needs two sequences of the same length")
    conc = disc = tx = ty = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif (dx > 0) == (dy > 0):
            conc += 1
        else:
            disc += 1
    denom = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / denom if denom else float("nan")


# ---------------------------------------------------------------------------------------------------
# ranking models
# ---------------------------------------------------------------------------------------------------
def rank_models(models: Sequence[str], task: str, task_options: dict | None = None,
                mcs: MCSSettings | None = None, gain: GainSettings | None = None, with_gt: bool = True,
                seeds: int = 1, out_dir: str | Path = "runs/rank", on_event: Callable[[str], None] | None = None,
                on_step: OnStep | None = None) -> dict:
    """MCS (and its label-free twin), GT Gain and pass@k gain of every model; correlations; token costs.

    With ``seeds > 1`` the MCS run is repeated with seeds ``seed, seed+1, ...`` and the model's MCS and
    label-free step are the means over seeds (a censored seed counts as the cap), its tokens the sum.
    """
    if len(models) < 2:
        raise UrlvrError("rank needs at least two models")
    if len(set(models)) != len(models):
        raise UrlvrError("rank: a model is listed twice")
    if seeds < 1:
        raise UrlvrError(f"seeds must be >= 1, got {seeds}")
    mcs, gain = (mcs or MCSSettings()).validate(), gain or GainSettings()
    out = Path(out_dir)
    say = on_event or (lambda msg: None)
    rows, curves = [], {}
    for name in models:
        say(f"[rank] {name}: building / loading ...")
        resolve(name, task, task_options)
        say(f"[rank] {name}: Model Collapse Step ({seeds} seed{'s' if seeds > 1 else ''}) ...")
        runs = [_collapse_run(name, task, task_options, dataclasses.replace(mcs, seed=mcs.seed + i),
                              out / _slug(name) / f"seed{mcs.seed + i}", on_step) for i in range(seeds)]
        row = _mean_runs(name, [r for r, _ in runs])
        curves[name] = (runs[0][1], runs[0][0])
        if with_gt:
            say(f"[rank] {name}: GT Gain ({gain.steps} gold steps) ...")
            row.update(gt_gain(name, task, task_options, gain, out / _slug(name) / "gt", on_step))
        if gain.passk:
            say(f"[rank] {name}: pass@{gain.passk} gain ...")
            row.update(passk_gain(name, task, task_options, gain, out / _slug(name) / "passk"))
        rows.append(row)
    plot_curves(curves, out / "mcs_curves.png", mcs)
    result = {"task": task, "task_options": dict(task_options or {}), "mcs_settings": dataclasses.asdict(mcs),
              "seeds": seeds, "gain_settings": dataclasses.asdict(gain), "models": rows,
              "correlations": _correlations(rows), "tokens": _token_totals(rows, seeds)}
    write_json(out / "ranking.json", result)
    write_text(out / "ranking.md", format_ranking(result) + "\n")
    return result


def _mean_runs(name: str, runs: list[dict]) -> dict:
    """One row from the MCS runs of several seeds: mean steps, summed tokens, per-seed values kept."""
    n = len(runs)
    return {"model": name, "mcs": sum(r["mcs"] for r in runs) / n, "censored": all(r["censored"] for r in runs),
            "tokens": sum(r["tokens"] for r in runs),
            "label_free_step": sum(r["label_free_step"] for r in runs) / n,
            "label_free_censored": all(r["label_free_censored"] for r in runs),
            "label_free_tokens": sum(r["label_free_tokens"] for r in runs),
            "mcs_per_seed": [r["mcs"] for r in runs], "label_free_per_seed": [r["label_free_step"] for r in runs],
            "censored_per_seed": [r["censored"] for r in runs], "curves": [r["curve"] for r in runs]}


_LABELS = {"mcs": "MCS", "label_free_step": "label-free step", "passk_gain": "pass@k gain", "gt_gain": "GT Gain",
           "acc_after": "accuracy after GT run", "base_maj": "base maj@k"}
_PAIRS = [(a, b) for b in ("gt_gain", "acc_after", "base_maj") for a in ("mcs", "label_free_step", "passk_gain")]
_PAIRS.append(("label_free_step", "mcs"))


def _correlations(rows: list[dict]) -> list[dict]:
    """Spearman and Kendall of each indicator against the references (and label-free against MCS)."""
    out = []
    for a, b in _PAIRS:
        if all(r.get(a) is not None and r.get(b) is not None for r in rows):
            x, y = [r[a] for r in rows], [r[b] for r in rows]
            out.append({"a": _LABELS[a], "b": _LABELS[b], "spearman": _clean(spearman(x, y)),
                        "kendall": _clean(kendall(x, y))})
    return out


def _token_totals(rows: list[dict], seeds: int = 1) -> dict:
    """Tokens per indicator over all models; GT Gain's cost over MCS's (all seeds, and per MCS seed)."""
    t = {k: sum(r.get(k, 0) for r in rows) for k in ("tokens", "label_free_tokens", "gt_tokens", "passk_tokens")}
    ok = t["tokens"] and t["gt_tokens"]
    t["gt_over_mcs"] = t["gt_tokens"] / t["tokens"] if ok else None
    t["gt_over_mcs_one_seed"] = t["gt_tokens"] / (t["tokens"] / seeds) if ok else None
    return t


def _clean(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def _fmt(x, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _steps(row: dict, key: str, censored: str) -> str:
    """``412`` / ``600+`` (censored) / ``301 (118, 600+, 185)`` (mean over seeds, then each seed)."""
    per = row.get({"mcs": "mcs_per_seed", "label_free_step": "label_free_per_seed"}[key]) or []
    marks = row.get("censored_per_seed") if key == "mcs" else None
    text = f"{row[key]:.0f}{'+' if row[censored] else ''}"
    if len(per) < 2:
        return text
    return text + " (" + ", ".join(f"{v:.0f}{'+' if marks and marks[i] else ''}" for i, v in enumerate(per)) + ")"


def format_ranking(result: dict) -> str:
    """Markdown: one row per model (sorted by MCS), the correlations, the token costs."""
    rows = sorted(result["models"], key=lambda r: (-r["mcs"], r["model"]))
    k = result["gain_settings"]["passk"]
    lines = ["| model | MCS | label-free step | GT Gain (before -> after) | pass@k gain | base maj@k "
             "| tokens: MCS / GT / pass@k |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        m, lf = _steps(r, "mcs", "censored"), _steps(r, "label_free_step", "label_free_censored")
        gt = (f"{r['gt_gain']:+.3f} ({r['acc_before']:.3f} -> {r['acc_after']:.3f})" if "gt_gain" in r else "-")
        pk = f"{r['passk_gain']:+.3f}" if "passk_gain" in r else "-"
        toks = f"{r['tokens']} / {r.get('gt_tokens', '-')} / {r.get('passk_tokens', '-')}"
        lines.append(f"| {r['model']} | {m} | {lf} | {gt} | {pk} | {_fmt(r.get('base_maj'))} | {toks} |")
    seeds = result.get("seeds", 1)
    lines += ["", f"MCS `+` = censored at the cap ({result['mcs_settings']['max_steps']} steps) in every seed; "
              f"{seeds} seed(s) per model{', mean (then each seed)' if seeds > 1 else ''}. pass@k: k = {k}.",
              "", "| indicators | Spearman | Kendall |", "|---|---|---|"]
    lines += [f"| {c['a']} vs {c['b']} | {_fmt(c['spearman'])} | {_fmt(c['kendall'])} |" for c in result["correlations"]]
    t = result["tokens"]
    lines += ["", f"Tokens generated, all models: MCS {t['tokens']}, label-free step {t['label_free_tokens']}, "
              f"GT Gain {t['gt_tokens']}, pass@k gain {t['passk_tokens']}; GT Gain / MCS = {_fmt(t['gt_over_mcs'], '.2f')}x"
              + (f" ({_fmt(t.get('gt_over_mcs_one_seed'), '.2f')}x against one MCS seed)." if seeds > 1 else ".")]
    return "\n".join(lines)
