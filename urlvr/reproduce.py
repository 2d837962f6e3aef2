"""``urlvr reproduce``: the paper's findings on the CPU testbed; ``urlvr ttt``: test-time training.

**Test-time training** (METHODS.md §10): train with a label-free reward on the unlabeled evaluation
problems themselves (``train_split: test``) and evaluate those same problems with the evaluation
harness (:mod:`urlvr.eval_cli`, same settings before and after, paired comparison over problems)
before training and after the *final* step (no checkpoint is picked on the test set); optionally also
a held-out split (``validation``) for transfer. The gold answers of the test problems reach only the
evaluation, never the reward. ``urlvr ttt recipes/ttt_majority_vote.yaml`` writes the run folder plus
``ttt/`` (the harness's ``results.json`` files) and ``ttt.json`` (the comparisons), which ``urlvr
report`` shows.

**Reproduction.** ``urlvr reproduce [--quick] [--out runs/reproduce]`` runs four experiments on the
testbed (2-digit addition, 16 prompts x 8 completions per step unless a plan says otherwise), each
repeated over seeds, and writes one figure per experiment, ``FINDINGS.md`` (per finding: what was
measured, mean ± std over seeds, and whether it reproduced, with a finding that did not reproduce
reported as such) and ``findings.json``:

1. ``families``: every intrinsic reward (certainty: self_certainty, token_entropy,
   trajectory_entropy, probability, probability_disparity; ensemble: majority_vote, srt,
   semantic_cluster) and the gold control, on an aligned and a misaligned prior, on a large
   training set. Paper (§8): intrinsic rewards rise then fall; the fall follows the prior.
2. ``dataset_size``: majority vote on unlabeled sets of 32 to 2048 problems, accuracy measured on the
   set itself (the TTT protocol) and on held-out problems. Paper (§10): small sets are stable, large
   ones rise then fall; small sets move the policy less (KL to the initial model).
3. ``mcs``: Model Collapse Step vs GT Gain over at least five priors, with :mod:`urlvr.collapse`.
   Paper (§9): MCS ranks models as GT Gain does, better than pass@k gain, at a fraction of the tokens.
4. ``external``: a programmatic verifier (linear equations, checked by substitution) against
   intrinsic rewards on aligned and misaligned priors. Paper (§1, §4): external rewards are grounded
   outside the model's beliefs, so they do not inherit its confident errors.

A verdict uses a margin ``TOL`` (0.03 of accuracy): a curve "rises then falls" when its peak is more
than TOL above its start and its end more than TOL below its peak, and "is stable" when its end is
within TOL of its peak, judged on each seed's own curve (a majority of seeds must agree, since the
timing of a fall varies from seed to seed); comparisons between conditions use the seed means. Every
number behind a verdict is printed beside it. Runs that finished with the same settings are reused (``--fresh`` redoes them), so
an interrupted reproduction continues where it stopped. ``--smoke`` (hidden) is the plumbing check
of the tests: tiny models, two steps per run, one seed.

>>> describe([0.5, 0.7, 0.6])
'0.600 ± 0.100'
>>> curve_stats([[0.5, 0.7, 0.6], [0.5, 0.9, 0.6]], [0, 10, 20])["peak_step"]
10
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from urlvr.errors import UrlvrError

__all__ = ["run_ttt", "Plan", "PLANS", "reproduce", "curve_stats", "describe", "register"]

TOL = 0.03
"""Margin (accuracy) a rise, a fall or a difference must exceed to count in a verdict."""

INTRINSIC = ("self_certainty", "token_entropy", "trajectory_entropy", "probability", "probability_disparity",
             "majority_vote", "srt", "semantic_cluster")
"""Every intrinsic reward: the certainty family, then the ensemble family (METHODS.md §2-§3)."""


# ---------------------------------------------------------------------------------------------------
# test-time training
# ---------------------------------------------------------------------------------------------------
def run_ttt(cfg, k: int = 8, seeds: int = 3, transfer: bool = True, progress: bool = True) -> dict:
    """Evaluate the test problems, train on them (unlabeled), evaluate again; returns ``ttt.json``'s content.

    ``cfg`` is a :class:`~urlvr.config.TrainConfig` with ``train_split="test"``. The evaluation draws
    ``train_problems`` test problems exactly as the harness does (seed 0), so ``cfg.seed`` must draw
    the same set; with ``transfer`` the ``validation`` split (``val_problems`` problems) is evaluated too.
    """
    from urlvr.collapse import resolve
    from urlvr.eval_cli import EvalConfig, evaluate, write_results
    from urlvr.evaluation import compare_results
    from urlvr.files import write_json
    from urlvr.tasks import get_task
    from urlvr.trainer import train

    if cfg.train_split != "test":
        raise UrlvrError(f"ttt trains on the unlabeled test problems, but train_split={cfg.train_split!r}; set "
                         "train_split=test (as recipes/ttt_*.yaml do)")
    task = get_task(cfg.task, **cfg.task_options)
    trained = {e.problem.id for e in task.examples("test", cfg.train_problems, seed=cfg.seed)}
    if trained != {e.problem.id for e in task.examples("test", cfg.train_problems, seed=0)}:
        raise UrlvrError(f"seed={cfg.seed} draws a different set of {cfg.train_problems} test problems than the "
                         "evaluation harness (seed 0), so 'after' would not be measured on the problems trained "
                         "on; use seed=0, or train_problems = the whole test split")
    run_dir = Path(cfg.out_dir)
    if (run_dir / "metrics.jsonl").exists():
        raise UrlvrError(f"run folder {run_dir} already holds a run; choose another out_dir")
    cfg = dataclasses.replace(cfg, model=resolve(cfg.model, cfg.task, cfg.task_options))
    splits = {"test": cfg.train_problems}
    if transfer:
        splits["validation"] = cfg.val_problems or cfg.train_problems

    def harness(model: str, split: str, problems: int) -> dict:
        ecfg = EvalConfig(model=model, data=(cfg.task,), k=k, seeds=seeds, max_new_tokens=cfg.max_new_tokens,
                          temperature=cfg.val_temperature, top_p=cfg.top_p, problems=problems, split=split,
                          options=dict(cfg.task_options), equivalence=cfg.equivalence, device=cfg.device,
                          dtype=cfg.dtype)
        return evaluate(ecfg, progress=progress)

    results: dict[str, dict] = {}
    for split, n in splits.items():
        results[f"before_{split}"], samples = harness(cfg.model, split, n)
        write_results(run_dir / "ttt" / f"before_{split}", results[f"before_{split}"], samples)
    summary = train(cfg, progress=progress)
    latest = run_dir / "checkpoints" / "latest"
    final = run_dir / "checkpoints" / latest.read_text().strip()
    comparisons = []
    for split, n in splits.items():
        results[f"after_{split}"], samples = harness(str(final), split, n)
        write_results(run_dir / "ttt" / f"after_{split}", results[f"after_{split}"], samples)
        comparisons += [{**c, "split": split} for c in compare_results(results[f"before_{split}"],
                                                                         results[f"after_{split}"])]
    out = {
        "trained_on": {"task": cfg.task, "task_options": cfg.task_options, "split": "test",
                       "problems": cfg.train_problems, "labels_used_for_training": False},
        "checkpoint": f"{final.name}: the final step (no checkpoint selection on the test set)",
        "evaluation": {"k": k, "seeds": seeds, "temperature": cfg.val_temperature, "top_p": cfg.top_p,
                       "max_new_tokens": cfg.max_new_tokens, "splits": splits},
        "results": {name: str(run_dir / "ttt" / name / "results.json") for name in results},
        "comparisons": comparisons,
        "train_summary": summary,
    }
    write_json(run_dir / "ttt.json", out)
    return out


def format_ttt(result: dict) -> str:
    lines = [f"{'split':<12}{'metric':<10}{'base':>8}{'after':>8}{'diff':>8}   {'95% CI':<18}{'p':>7}"]
    for c in result["comparisons"]:
        ci = f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
        lines.append(f"{c['split']:<12}{c['metric']:<10}{c['base']:>8.3f}{c['trained']:>8.3f}{c['diff']:>+8.3f}   "
                     f"{ci:<18}{c['p_value']:>7.4f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# plans: how big each experiment is
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """The sizes of one reproduction (``full``, ``quick``, ``smoke``)."""

    name: str
    seeds: int
    task_options: dict = field(default_factory=lambda: {"digits": 2, "ops": "+"})
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
    families: tuple[str, ...] = (*INTRINSIC, "gold")
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
    mcs_max_steps: int = 500
    mcs_train: int = 512
    """Labelled probe prompts of the MCS runs (train split)."""
    mcs_seeds: int = 3
    gt_steps: int = 40
    gt_eval_problems: int = 100
    passk: int = 16
    # 4. external vs intrinsic
    external_task_options: dict = field(default_factory=dict)
    """Options of the linear task."""
    external_models: tuple[str, ...] = ("testbed:aligned:linear", "testbed:misaligned:linear")
    external_rewards: tuple[str, ...] = ("verifier", "majority_vote", "self_certainty", "gold")
    external_train: int = 2048
    external_steps: int = 60
    external_lr: float = 2.5e-4


PLANS: dict[str, Plan] = {
    "full": Plan("full", seeds=3),
    "quick": Plan("quick", seeds=3, val_problems=64, families=("self_certainty", "majority_vote", "gold"),
                  families_steps=80, sizes=(32, 512), sizes_steps=80, mcs_max_steps=200, gt_steps=20,
                  gt_eval_problems=64, passk=0, external_models=("testbed:misaligned:linear",),
                  external_rewards=("verifier", "majority_vote"), external_steps=50),
    "smoke": Plan("smoke", seeds=1, task_options={"digits": 1, "ops": "+"},
                  aligned="testbed:aligned:arithmetic:tiny?steps=60&card_problems=8",  # = the tests' tiny_model
                  misaligned="testbed:misaligned:arithmetic:tiny?steps=30&card_problems=8",
                  prompts_per_step=4, n=4, max_new_tokens=8, val_problems=8, val_every=2, val_k=2,
                  families=("majority_vote", "self_certainty"), families_train=40, families_steps=2,
                  sizes=(8, 32), sizes_steps=2,
                  mcs_models=("testbed:aligned:arithmetic:tiny?steps=60&card_problems=8",
                              "testbed:misaligned:arithmetic:tiny?steps=30&card_problems=8"),
                  mcs_max_steps=2, mcs_train=40, mcs_seeds=1, gt_steps=2, gt_eval_problems=8, passk=2,
                  external_models=("testbed:misaligned:linear:tiny?steps=20&card_problems=8",),
                  external_rewards=("verifier", "majority_vote"), external_train=40, external_steps=2),
}
"""``full`` (estimated 30-45 min on 2 cores, models built; not timed end to end), ``quick`` (9.9 min measured
on the shared 2 cores), ``smoke`` (the tests: seconds)."""


# ---------------------------------------------------------------------------------------------------
# statistics over seeds
# ---------------------------------------------------------------------------------------------------
def describe(values: Sequence[float | None]) -> str:
    """``mean ± std`` over seeds (sample std; ± 0 for one seed), three decimals."""
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.fmean(v):.3f} ± {sd:.3f}"


def curve_stats(curves: Sequence[Sequence[float]], steps: Sequence[int]) -> dict[str, Any]:
    """Start, peak (of the seed-mean curve) and end of per-seed curves on shared ``steps``.

    Returns the seed means ``start``, ``peak``, ``end`` and ``peak_step``, ``rise = peak - start``,
    ``fall = peak - end``, and the per-seed values at those steps (``*_seeds``) for spreads.
    """
    n = min(len(c) for c in curves)
    mean = [statistics.fmean(c[i] for c in curves) for i in range(n)]
    p = max(range(n), key=lambda i: (mean[i], -i))
    out = {"start": mean[0], "peak": mean[p], "end": mean[n - 1], "peak_step": steps[p],
           "rise": mean[p] - mean[0], "fall": mean[p] - mean[n - 1], "mean": mean, "steps": list(steps[:n]),
           "curves": [list(c[:n]) for c in curves]}
    out.update(start_seeds=[c[0] for c in curves], peak_seeds=[c[p] for c in curves],
               end_seeds=[c[n - 1] for c in curves], change_seeds=[c[n - 1] - c[0] for c in curves],
               rise_seeds=[max(c[:n]) - c[0] for c in curves], fall_seeds=[max(c[:n]) - c[n - 1] for c in curves])
    return out


def rises_then_falls(c: dict) -> tuple[int, int]:
    """Seeds whose own curve rises by more than TOL and then falls by more than TOL: (count, seeds)."""
    return sum(r > TOL and f > TOL for r, f in zip(c["rise_seeds"], c["fall_seeds"])), len(c["rise_seeds"])


def stays(c: dict) -> tuple[int, int]:
    """Seeds whose own curve ends within TOL of its peak: (count, seeds)."""
    return sum(f <= TOL for f in c["fall_seeds"]), len(c["fall_seeds"])


def _most(counts: tuple[int, int]) -> bool:
    return 2 * counts[0] > counts[1]


def _val_curve(rows: list[dict], k: int) -> tuple[list[int], list[float]]:
    key = f"val/avg@{k}"
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [s for s, _ in pts], [v for _, v in pts]


def _step_curve(rows: list[dict], key: str, window: int) -> tuple[list[int], list[float]]:
    """A per-step metric as non-overlapping means of ``window`` steps (x = the block's last step)."""
    pts = [(r["step"], r[key]) for r in rows if r["step"] > 0 and r.get(key) is not None]
    steps, vals = [], []
    for i in range(0, len(pts) - window + 1, window):
        block = pts[i : i + window]
        steps.append(block[-1][0])
        vals.append(statistics.fmean(v for _, v in block))
    return steps, vals


def _tail_mean(rows: list[dict], key: str, frac: float = 0.2) -> float | None:
    vals = [r[key] for r in rows if r["step"] > 0 and r.get(key) is not None]
    if not vals:
        return None
    tail = vals[-max(1, int(len(vals) * frac)) :]
    return statistics.fmean(tail)


# ---------------------------------------------------------------------------------------------------
# running: progress bars, models, reusable runs
# ---------------------------------------------------------------------------------------------------
class Bars:
    """Three stacked tqdm bars on stderr: experiments, runs of the experiment, steps of the run."""

    def __init__(self, experiments: int, enabled: bool):
        from tqdm import tqdm

        self.enabled, self._tqdm = enabled, tqdm
        self.top = tqdm(total=experiments, desc="reproduce", position=0, file=sys.stderr, disable=not enabled,
                        dynamic_ncols=True, unit="exp")
        self.runs = self.steps = None

    def experiment(self, name: str, runs: int) -> None:
        self.top.set_description(f"reproduce: {name}")
        if self.runs is not None:
            self.runs.close()
        self.runs = self._tqdm(total=runs, desc=name, position=1, file=sys.stderr, disable=not self.enabled,
                               dynamic_ncols=True, leave=False, unit="run")

    def run(self, name: str, steps: int) -> Callable[[dict], None]:
        """Start a run's bar; returns the ``on_step`` callback that advances it."""
        if self.steps is not None:
            self.steps.close()
        self.steps = self._tqdm(total=steps, desc=name, position=2, file=sys.stderr, disable=not self.enabled,
                                dynamic_ncols=True, leave=False, unit="step", mininterval=0.5)

        def on_step(metrics: dict) -> None:
            post = {k.split("/")[-1]: f"{metrics[k]:.2f}" for k in ("oracle/accuracy", "diag/majority_ratio")
                    if isinstance(metrics.get(k), (int, float))}
            self.steps.set_postfix(post, refresh=False)
            self.steps.update(1)

        return on_step

    def run_done(self) -> None:
        self.runs.update(1)

    def experiment_done(self) -> None:
        self.top.update(1)

    def close(self) -> None:
        for bar in (self.steps, self.runs, self.top):
            if bar is not None:
                bar.close()


@dataclass
class Job:
    """One unit of work: a training run, or an MCS / GT Gain / pass@k measurement of :mod:`urlvr.collapse`."""

    kind: str
    """``train``, ``mcs``, ``gt`` or ``passk``."""
    folder: Path
    label: str
    payload: dict
    """train: the TrainConfig settings; others: ``model`` (folder), ``task``, ``task_options``, ``settings``."""
    steps: int = 1


def run_job(job: Job, on_step: Callable[[dict], None] | None = None):
    """Do ``job`` in this process, on one CPU thread; returns its metric rows (train) or its result dict.

    One thread: the testbed's models are so small that a second thread costs more in synchronisation
    than it gains, many times more on a busy machine.
    """
    import torch

    from urlvr import collapse
    from urlvr.config import config_from_dict
    from urlvr.files import read_jsonl, write_json
    from urlvr.trainer import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shutil.rmtree(job.folder, ignore_errors=True)
        if job.kind == "train":
            train(config_from_dict({**job.payload, "out_dir": str(job.folder)}), progress=False, on_step=on_step)
            shutil.rmtree(job.folder / "checkpoints", ignore_errors=True)  # the curves are what we keep
            return read_jsonl(job.folder / "metrics.jsonl")
        p = job.payload
        args = (p["model"], p["task"], p["task_options"])
        if job.kind == "mcs":
            result = collapse.model_collapse_step(*args, collapse.MCSSettings(**p["settings"]), job.folder, on_step)
        elif job.kind == "gt":
            result = collapse.gt_gain(*args, collapse.GainSettings(**p["settings"]), job.folder, on_step)
        else:
            result = collapse.passk_gain(*args, collapse.GainSettings(**p["settings"]), job.folder)
        write_json(job.folder / "result.json", {"key": _key(job), "result": result})
        return result
    finally:
        torch.set_num_threads(threads)


def _job_in_worker(job: Job):
    from urlvr.cli import _quiet_libraries

    _quiet_libraries()
    return run_job(job)


def _key(job: Job) -> dict:
    return json.loads(json.dumps({"kind": job.kind, **job.payload}, default=str))


class Runner:
    """Builds models (cached), runs jobs (reusing finished ones), in ``jobs`` processes."""

    def __init__(self, out: Path, plan: Plan, bars: Bars, fresh: bool, jobs: int = 1):
        self.out, self.plan, self.bars, self.fresh, self.jobs = out, plan, bars, fresh, jobs
        self.pool = None
        """Worker processes, started on first use and kept for every experiment (starting one costs seconds)."""
        self.paths: dict[tuple, str] = {}
        self.seconds: dict[str, float] = {}
        self.ran = 0
        """Jobs run (not reused) so far."""

    def model(self, name: str, task: str, task_options: dict) -> str:
        """The folder of ``name`` (``testbed:PRIOR...`` built once and cached, with a bar while building)."""
        from urlvr.collapse import parse_model
        from urlvr.testbed.priors import build_prior, cache_dir

        key = (name, task, json.dumps(task_options, sort_keys=True))
        if key not in self.paths:
            spec = parse_model(name, task, task_options)
            if spec is None:
                self.paths[key] = name
            elif (cache_dir() / spec.key() / "prior_card.json").is_file():
                self.paths[key] = str(build_prior(spec)[0])  # cached: instant
            else:
                import torch

                on = self.bars.run(f"build {name.removeprefix('testbed:')}", spec.weak_steps if spec.prior == "weak"
                                   else spec.steps)
                threads = torch.get_num_threads()
                torch.set_num_threads(1)  # as in run_job: faster for these small models
                try:
                    path, _, _ = build_prior(spec, progress=lambda step, total, loss: on({}))
                finally:
                    torch.set_num_threads(threads)
                self.paths[key] = str(path)
        return self.paths[key]

    def settings(self, task: str = "arithmetic", task_options: dict | None = None, **kw) -> dict:
        p = self.plan
        base = dict(task=task, task_options=dict(p.task_options if task_options is None else task_options),
                    prompts_per_step=p.prompts_per_step, n_votes=p.n, n_train=p.n, max_new_tokens=p.max_new_tokens,
                    val_problems=p.val_problems, val_every=p.val_every, val_k=p.val_k, save_every=10**6,
                    sample_every=10**6, temperature=1.0)
        return {**base, **kw}

    def done(self, job: Job):
        """The stored result of a finished job with the same settings, or None."""
        import yaml

        from urlvr.config import config_from_dict
        from urlvr.files import read_json, read_jsonl

        if self.fresh:
            return None
        if job.kind == "train":
            cfg = dataclasses.asdict(config_from_dict({**job.payload, "out_dir": str(job.folder)}))
            if (job.folder / "summary.json").is_file() and (job.folder / "config.yaml").is_file() \
                    and yaml.safe_load((job.folder / "config.yaml").read_text()) == cfg:
                return read_jsonl(job.folder / "metrics.jsonl")
            return None
        path = job.folder / "result.json"
        if path.is_file() and read_json(path).get("key") == _key(job):
            return read_json(path)["result"]
        return None

    def execute(self, jobs: list[Job]) -> list:
        """Results of ``jobs`` in order: reused when finished, else run (in a process pool if ``jobs`` > 1)."""
        results = [self.done(job) for job in jobs]
        for r in results:
            if r is not None:
                self.bars.run_done()
        todo = [i for i, r in enumerate(results) if r is None]
        if self.jobs <= 1 or len(todo) <= 1:
            for i in todo:
                results[i] = run_job(jobs[i], self.bars.run(jobs[i].label, jobs[i].steps))
                self.ran += 1
                self.bars.run_done()
            return results
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        if self.pool is None:  # spawn: a clean interpreter, no forked torch thread pools
            self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"))
        futures = {self.pool.submit(_job_in_worker, jobs[i]): i for i in todo}
        self.bars.run(f"{len(todo)} runs in {self.jobs} processes", len(todo))
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            self.ran += 1
            self.bars.steps.update(1)
            self.bars.run_done()
        return results

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


# ---------------------------------------------------------------------------------------------------
# the experiments: each returns its findings (dicts with the numbers and a verdict) and figure paths
# ---------------------------------------------------------------------------------------------------
@dataclass
class Finding:
    experiment: str
    claim: str
    """What the paper found (METHODS.md), in one sentence."""
    measured: str
    """What was run and measured here."""
    table: list[list[str]]
    """Markdown table rows; the first row is the header."""
    verdict: str
    """``reproduced``, ``partly reproduced`` or ``not reproduced``."""
    why: str
    """The numbers the verdict rests on."""
    numbers: dict[str, Any] = field(default_factory=dict)


def _verdict(checks: Sequence[bool]) -> str:
    return "reproduced" if all(checks) else "partly reproduced" if any(checks) else "not reproduced"


def _train_jobs(r: Runner, folder: str, grid: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    """Run (or reuse) ``(name, settings)`` training runs under ``out/folder/name``; metric rows by name."""
    jobs = [Job("train", r.out / folder / name, name.replace("_", " "), s, s["steps"]) for name, s in grid]
    return dict(zip((name for name, _ in grid), r.execute(jobs)))


def exp_families(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    priors = {"aligned": p.aligned, "misaligned": p.misaligned}
    r.bars.experiment("1 families", len(priors) * len(p.families) * len(seeds))
    paths = {prior: r.model(model, "arithmetic", p.task_options) for prior, model in priors.items()}
    runs = _train_jobs(r, "families", [
        (f"{prior}_{reward}_s{seed}", r.settings(model=paths[prior], reward=reward, train_problems=p.families_train,
                                                 steps=p.families_steps, lr=p.families_lr, seed=seed))
        for prior in priors for reward in p.families for seed in seeds])
    curves: dict[tuple[str, str], dict] = {}
    shapes: dict[tuple[str, str], dict] = {}
    for prior in priors:
        for reward in p.families:
            per_seed, length, rep = [], [], []
            for seed in seeds:
                rows = runs[f"{prior}_{reward}_s{seed}"]
                steps, vals = _val_curve(rows, p.val_k)
                per_seed.append(vals)
                first = [x["rollout/length_mean"] for x in rows if x["step"] > 0][:3]
                length.append((_tail_mean(rows, "rollout/length_mean") or 0) / max(statistics.fmean(first), 1e-8))
                rep.append(_tail_mean(rows, "rollout/repetition_rate"))
            curves[(prior, reward)] = curve_stats(per_seed, steps)
            shapes[(prior, reward)] = {"length_ratio": length, "repetition": rep}
    figure = _plot_grid(curves, p.families, ("aligned", "misaligned"), r.out / "fig1_families.png",
                        f"1. Validation avg@{p.val_k} by reward and prior (mean ± std over {len(seeds)} seeds)",
                        "validation accuracy")
    intrinsic = [x for x in p.families if x != "gold"]
    header = ["reward", "prior", "start", "peak (step)", "end", "rise", "fall", "end - start",
              "seeds rise then fall", "length end/start", "repetition end"]
    table = [header]
    rise_fall, follows = [], []
    for reward in p.families:
        for prior in ("aligned", "misaligned"):
            c, sh = curves[(prior, reward)], shapes[(prior, reward)]
            table.append([reward, prior, describe(c["start_seeds"]), f"{c['peak']:.3f} ({c['peak_step']})",
                          describe(c["end_seeds"]), f"{c['rise']:+.3f}", f"{c['fall']:+.3f}",
                          describe(c["change_seeds"]), "{}/{}".format(*rises_then_falls(c)),
                          describe(sh["length_ratio"]), describe(sh["repetition"])])
        if reward in intrinsic:
            a, m = curves[("aligned", reward)], curves[("misaligned", reward)]
            rise_fall.append((reward, rises_then_falls(a)))
            follows.append((reward, (m["end"] - m["start"]) < -TOL and a["peak"] - a["start"] > m["peak"] - m["start"]))
    gold_ok = all(curves[(pr, "gold")]["end"] - curves[(pr, "gold")]["start"] > TOL for pr in priors) \
        if "gold" in p.families else None
    measured = (f"{len(intrinsic)} intrinsic rewards{' and the gold control' if gold_ok is not None else ''} on the "
                f"aligned ({p.aligned}) and misaligned ({p.misaligned}) priors, {p.families_train} training problems "
                f"(arithmetic {p.task_options}), {p.families_steps} steps of {p.prompts_per_step} prompts x {p.n}, lr "
                f"{p.families_lr:g}, seeds {seeds}; validation avg@{p.val_k} on {p.val_problems} held-out problems "
                f"every {p.val_every} steps. Rise = peak - start and fall = peak - end of the seed-mean curve.")
    f1 = Finding("1 families", "Every intrinsic reward rises then falls on a large training set (§8).", measured,
                 table, _verdict([_most(k) for _, k in rise_fall]),
                 f"Seeds whose aligned-prior curve rises by > {TOL} and then falls by > {TOL} (a majority needed): "
                 + ", ".join(f"{n} {k[0]}/{k[1]}" for n, k in rise_fall) + ".",
                 {"curves": {f"{k[0]}/{k[1]}": v for k, v in curves.items()},
                  "shapes": {f"{k[0]}/{k[1]}": v for k, v in shapes.items()}})
    why = ("Misaligned prior: end - start < -" + f"{TOL}" + " and a smaller gain than on the aligned prior: "
           + ", ".join(f"{n} {'yes' if ok else 'no'}" for n, ok in follows) + ".")
    if gold_ok is not None:
        why += f" Control: gold improves both priors by > {TOL}: {'yes' if gold_ok else 'no'}."
    f2 = Finding("1 families", "The fall follows the prior: intrinsic rewards amplify the initial majority, so they "
                 "help where confident answers are right and hurt where they are confidently wrong (§8); gold "
                 "helps both.", measured, [], _verdict([ok for _, ok in follows] + ([gold_ok] if gold_ok is not None
                                                                                     else [])), why)
    return [f1, f2], [figure]


def exp_dataset_size(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    r.bars.experiment("2 dataset size", len(p.sizes) * len(seeds))
    path = r.model(p.aligned, "arithmetic", p.task_options)
    window = max(1, p.sizes_steps // 8)
    runs = _train_jobs(r, "dataset_size", [
        (f"n{size}_s{seed}", r.settings(model=path, reward="majority_vote", train_problems=size, steps=p.sizes_steps,
                                        lr=p.sizes_lr, seed=seed))
        for size in p.sizes for seed in seeds])
    on_set, held_out, kl = {}, {}, {}
    for size in p.sizes:
        set_curves, val_curves, kls = [], [], []
        for seed in seeds:
            rows = runs[f"n{size}_s{seed}"]
            steps, vals = _step_curve(rows, "oracle/accuracy", window)
            set_curves.append(vals)
            vsteps, vvals = _val_curve(rows, p.val_k)
            val_curves.append(vvals)
            kls.append(_tail_mean(rows, "policy/kl_initial"))
        on_set[size] = curve_stats(set_curves, steps)
        held_out[size] = curve_stats(val_curves, vsteps)
        kl[size] = kls
    figure = _plot_sizes(on_set, held_out, r.out / "fig2_dataset_size.png", len(seeds), window, p.val_k)
    small = [n for n in p.sizes if n <= 128]
    large = [n for n in p.sizes if n >= 512]
    table = [["problems", "on the set: start", "peak (step)", "end", "rise", "fall", "seeds stable / rise then fall",
              f"held-out avg@{p.val_k}: start", "end", "KL to initial (last 20%)"]]
    for n in p.sizes:
        c, h = on_set[n], held_out[n]
        table.append([str(n), describe(c["start_seeds"]), f"{c['peak']:.3f} ({c['peak_step']})",
                      describe(c["end_seeds"]), f"{c['rise']:+.3f}", f"{c['fall']:+.3f}",
                      "{}/{}".format(*stays(c)) + " / " + "{}/{}".format(*rises_then_falls(c)), describe(h["start_seeds"]),
                      describe(h["end_seeds"]), describe(kl[n])])
    checks = [_most(stays(on_set[n])) for n in small] + [_most(rises_then_falls(on_set[n])) for n in large]
    mean_kl = {n: statistics.fmean(v for v in kl[n] if v is not None) for n in p.sizes}
    kl_ratio = (statistics.fmean(mean_kl[n] for n in large) / max(statistics.fmean(mean_kl[n] for n in small), 1e-12)
                if small and large else None)
    measured = (f"Majority vote on the aligned prior ({p.aligned}) over unlabeled sets of {', '.join(map(str, p.sizes))} "
                f"problems, {p.sizes_steps} steps of {p.prompts_per_step} prompts x {p.n}, lr {p.sizes_lr:g}, seeds "
                f"{seeds}. 'On the set': gold accuracy of the rollouts on the set's own problems (the TTT measure), "
                f"means of {window} steps. The sets come from the train split (the test split of 2-digit addition "
                f"holds 818 problems, fewer than 2048); `urlvr ttt` trains on the test split itself.")
    why = ("Seeds whose on-set curve ends within " + f"{TOL} of its peak (sets <= 128, a majority needed): "
           + ", ".join("{}: {}/{}".format(n, *stays(on_set[n])) for n in small)
           + f"; seeds whose curve rises by > {TOL} then falls by > {TOL} (sets >= 512): "
           + ", ".join("{}: {}/{}".format(n, *rises_then_falls(on_set[n])) for n in large) + ".")
    f1 = Finding("2 dataset size", "Small unlabeled sets (<= 128) are stable under test-time training; large ones "
                 "(>= 512) rise then fall (§10).", measured, table, _verdict(checks), why,
                 {"on_set": {str(k): v for k, v in on_set.items()}, "held_out": {str(k): v for k, v in held_out.items()},
                  "kl": {str(k): v for k, v in kl.items()}})
    f2 = Finding("2 dataset size", "Small sets shift the policy less: KL to the initial model 0.057 on small sets vs "
                 "more than twice that on large ones (§10).", measured, [],
                 _verdict([kl_ratio is not None and kl_ratio >= 2.0]),
                 "KL (last 20% of steps, seed mean): " + ", ".join(f"{n}: {mean_kl[n]:.4f}" for n in p.sizes)
                 + (f"; large / small = {kl_ratio:.2f} (needs >= 2)." if kl_ratio is not None else "."))
    return [f1, f2], [figure]


def exp_mcs(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    from urlvr.collapse import GainSettings, MCSSettings, kendall, spearman

    p = r.plan
    mseeds = seeds[: p.mcs_seeds]
    r.bars.experiment("3 MCS vs GT Gain", len(p.mcs_models) * len(mseeds) * 2 + (len(p.mcs_models) if p.passk else 0))
    opts = dict(p.task_options)
    jobs: list[Job] = []
    for model in p.mcs_models:
        payload = {"model": r.model(model, "arithmetic", opts), "task": "arithmetic", "task_options": opts}
        slug = model.removeprefix("testbed:").replace("?", "_").replace("&", "_").replace(":", "_")
        for seed in mseeds:
            m = MCSSettings(max_steps=p.mcs_max_steps, until="labelled", train_problems=p.mcs_train,
                            max_new_tokens=p.max_new_tokens, seed=seed)
            g = GainSettings(steps=p.gt_steps, prompts_per_step=p.prompts_per_step, n=p.n, lr=5e-4,
                             train_problems=p.mcs_train, eval_problems=p.gt_eval_problems, eval_k=p.val_k,
                             passk=p.passk, max_new_tokens=p.max_new_tokens, seed=seed)
            jobs.append(Job("mcs", r.out / "mcs" / slug / f"mcs_s{seed}", f"MCS {slug} s{seed}",
                            {**payload, "settings": dataclasses.asdict(m)}, m.max_steps))
            jobs.append(Job("gt", r.out / "mcs" / slug / f"gt_s{seed}", f"GT {slug} s{seed}",
                            {**payload, "settings": dataclasses.asdict(g)}, g.steps))
        if p.passk:
            g = GainSettings(eval_problems=p.gt_eval_problems, passk=p.passk, max_new_tokens=p.max_new_tokens,
                             train_problems=p.mcs_train)
            jobs.append(Job("passk", r.out / "mcs" / slug / "passk", f"pass@{p.passk} {slug}",
                            {**payload, "settings": dataclasses.asdict(g)}))
    results = iter(r.execute(jobs))
    rows = []
    for model in p.mcs_models:
        row: dict[str, Any] = {"model": model, "mcs": [], "censored": [], "tokens": [], "gt_gain": [], "gt_tokens": [],
                               "acc_before": []}
        for seed in mseeds:
            res = next(results)
            row["mcs"].append(res["mcs"])
            row["censored"].append(res["censored"])
            row["tokens"].append(res["tokens"])
            res = next(results)
            row["gt_gain"].append(res["gt_gain"])
            row["gt_tokens"].append(res["gt_tokens"])
            row["acc_before"].append(res["acc_before"])
        if p.passk:
            res = next(results)
            row["passk_gain"], row["passk_tokens"] = res["passk_gain"], res["passk_tokens"]
        rows.append(row)
    mean = lambda xs: statistics.fmean(xs)  # noqa: E731
    mcs_m, gt_m = [mean(x["mcs"]) for x in rows], [mean(x["gt_gain"]) for x in rows]
    acc0 = [mean(x["acc_before"]) for x in rows]
    corr = {"mcs_vs_gt": (spearman(mcs_m, gt_m), kendall(mcs_m, gt_m)),
            "mcs_vs_base_accuracy": (spearman(mcs_m, acc0), kendall(mcs_m, acc0))}
    if p.passk:
        pk = [x["passk_gain"] for x in rows]
        corr["passk_vs_gt"] = (spearman(pk, gt_m), kendall(pk, gt_m))
    tokens_mcs = sum(sum(x["tokens"]) for x in rows)
    tokens_gt = sum(sum(x["gt_tokens"]) for x in rows)
    figure = _plot_mcs(rows, r.out / "fig3_mcs_gt_gain.png", p)
    table = [["model", "MCS (censored seeds)", "GT Gain", "base accuracy", "pass@k gain", "tokens MCS / GT"]]
    for x in rows:
        table.append([x["model"], f"{describe(x['mcs'])} ({sum(x['censored'])}/{len(x['censored'])})",
                      describe(x["gt_gain"]), describe(x["acc_before"]),
                      f"{x['passk_gain']:+.3f}" if "passk_gain" in x else "-",
                      f"{sum(x['tokens'])} / {sum(x['gt_tokens'])}"])
    rho, tau = corr["mcs_vs_gt"]
    censored = sum(sum(x["censored"]) for x in rows)
    n_runs = sum(len(x["censored"]) for x in rows)
    checks = [_finite(rho) and rho >= 0.6, 2 * censored <= n_runs]
    why = (f"Spearman(MCS, GT Gain) = {_f(rho)}, Kendall = {_f(tau)} (needs Spearman >= 0.6); {censored} of {n_runs} "
           f"MCS runs censored at the cap of {p.mcs_max_steps} steps (needs at most half: censored models tie)")
    if "passk_vs_gt" in corr:
        prho = corr["passk_vs_gt"][0]
        checks.append(_finite(rho) and (not _finite(prho) or rho > prho))
        why += f"; pass@{p.passk} gain vs GT Gain: Spearman {_f(prho)} (MCS must beat it)"
    else:
        checks.append(False)  # "better than pass@k gain" is part of the claim; untested here
        why += "; pass@k gain not measured in this plan, so 'better than pass@k gain' is untested"
    why += (f"; MCS vs base accuracy: Spearman {_f(corr['mcs_vs_base_accuracy'][0])}. Tokens: GT Gain / MCS = "
            f"{tokens_gt / max(tokens_mcs, 1):.2f}x (paper: 5.6x).")
    measured = (f"{len(rows)} priors; MCS = first step at which the 5-step mean of reward accuracy falls below 1% "
                f"in majority-vote runs of 1 prompt x 8 completions, lr 2e-4, capped at {p.mcs_max_steps} steps "
                f"(urlvr.collapse.model_collapse_step), seeds {mseeds}; GT Gain = validation avg@{p.val_k} gain of "
                f"{p.gt_steps} gold-reward steps (urlvr.collapse.gt_gain) on {p.gt_eval_problems} problems.")
    f = Finding("3 MCS", "The Model Collapse Step ranks models as GT Gain does, better than pass@k gain, at a "
                "fraction of the generated tokens (§9).", measured, table, _verdict(checks), why,
                {"models": rows, "correlations": corr, "tokens": {"mcs": tokens_mcs, "gt": tokens_gt}})
    return [f], [figure]


def exp_external(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    r.bars.experiment("4 external vs intrinsic", len(p.external_models) * len(p.external_rewards) * len(seeds))
    paths = {model.removeprefix("testbed:").split(":")[0].split("?")[0]: r.model(model, "linear", p.external_task_options)
             for model in p.external_models}
    runs = _train_jobs(r, "external", [
        (f"{prior}_{reward}_s{seed}", r.settings(task="linear", task_options=p.external_task_options, model=path,
                                                 reward=reward, train_problems=p.external_train,
                                                 steps=p.external_steps, lr=p.external_lr, seed=seed))
        for prior, path in paths.items() for reward in p.external_rewards for seed in seeds])
    curves = {}
    for prior in paths:
        for reward in p.external_rewards:
            per_seed = []
            for seed in seeds:
                rows = runs[f"{prior}_{reward}_s{seed}"]
                steps, vals = _val_curve(rows, p.val_k)
                per_seed.append(vals)
            curves[(prior, reward)] = curve_stats(per_seed, steps)
    priors = list(dict.fromkeys(k[0] for k in curves))
    figure = _plot_grid(curves, p.external_rewards, priors, r.out / "fig4_external.png",
                        f"4. Linear equations: verifier vs intrinsic (mean ± std over {len(seeds)} seeds)",
                        f"validation avg@{p.val_k}", by="prior")
    table = [["prior", "reward", "start", "peak (step)", "end", "end - start (per seed)"]]
    for (prior, reward), c in curves.items():
        table.append([prior, reward, describe(c["start_seeds"]), f"{c['peak']:.3f} ({c['peak_step']})",
                      describe(c["end_seeds"]), describe(c["change_seeds"])])
    intrinsic = [x for x in p.external_rewards if x in INTRINSIC]
    checks, parts = [], []
    for prior in priors:
        v = curves[(prior, "verifier")]
        gain = v["end"] - v["start"]
        best = max(curves[(prior, x)]["end"] - curves[(prior, x)]["start"] for x in intrinsic)
        if prior == "misaligned":
            checks += [gain > TOL, gain - best > TOL]
            parts.append(f"misaligned: verifier end - start {gain:+.3f} (needs > {TOL}), best intrinsic {best:+.3f} "
                         f"(verifier must lead by > {TOL})")
        else:
            checks.append(v["fall"] <= TOL and gain >= best - TOL)
            parts.append(f"{prior}: verifier gain {gain:+.3f}, fall {v['fall']:+.3f} (needs no fall > {TOL} and a gain "
                         f"within {TOL} of the best intrinsic {best:+.3f})")
    measured = (f"Linear equations (answers checked by substitution); priors {', '.join(p.external_models)}; rewards "
                f"{', '.join(p.external_rewards)}; {p.external_train} training problems, {p.external_steps} steps of "
                f"{p.prompts_per_step} prompts x {p.n}, lr {p.external_lr:g}, seeds {seeds}; validation avg@{p.val_k} "
                f"on {p.val_problems} held-out problems.")
    f = Finding("4 external", "External rewards (generation-verification asymmetry) are grounded outside the model's "
                "beliefs: they improve a confidently wrong model where intrinsic rewards amplify its errors (§1, §4).",
                measured, table, _verdict(checks), "; ".join(parts) + ".",
                {"curves": {f"{k[0]}/{k[1]}": v for k, v in curves.items()}})
    return [f], [figure]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _f(x) -> str:
    return f"{x:.3f}" if _finite(x) else "n/a"


# ---------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------
def _band(ax, c: dict, color, label: str) -> None:
    """The seed-mean curve and its ± std band (none with one seed)."""
    steps, mean = c["steps"], c["mean"]
    ax.plot(steps, mean, color=color, lw=1.5, label=label)
    seeds = c.get("curves")
    if seeds and len(seeds) > 1:
        sd = [statistics.stdev(col) for col in zip(*seeds)]
        ax.fill_between(steps, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)], color=color,
                        alpha=0.2, lw=0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    _pyplot().close(fig)
    return path


def _plot_grid(curves: dict, rewards: Sequence[str], priors: Sequence[str], path: Path, title: str, ylabel: str,
               by: str = "reward") -> Path:
    """One sub-plot per reward (priors overlaid), or per prior (rewards overlaid) with ``by="prior"``."""
    plt = _pyplot()
    panels, lines = (rewards, priors) if by == "reward" else (priors, rewards)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows + 0.6), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, panel in enumerate(panels):
        ax = axes[i // cols][i % cols]
        for j, line in enumerate(lines):
            key = (line, panel) if by == "reward" else (panel, line)
            if key in curves:
                _band(ax, curves[key], colors[j % len(colors)], line)
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    for i in range(len(panels), rows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _plot_sizes(on_set: dict, held_out: dict, path: Path, n_seeds: int, window: int, k: int) -> Path:
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, n in enumerate(on_set):
        _band(a1, on_set[n], colors[i % len(colors)], f"{n} problems")
        _band(a2, held_out[n], colors[i % len(colors)], f"{n} problems")
    a1.set_title(f"accuracy on the unlabeled set itself (means of {window} steps)", fontsize=9)
    a2.set_title(f"held-out validation avg@{k} (transfer)", fontsize=9)
    for ax in (a1, a2):
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"2. Majority vote by dataset size (mean ± std over {n_seeds} seeds)", fontsize=10)
    return _save(fig, path)


def _plot_mcs(rows: list[dict], path: Path, p: Plan) -> Path:
    plt = _pyplot()
    n = 2 if p.passk else 1
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.8), squeeze=False)
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    ax = axes[0][0]
    for x in rows:
        ax.errorbar(statistics.fmean(x["mcs"]), statistics.fmean(x["gt_gain"]), xerr=sd(x["mcs"]),
                    yerr=sd(x["gt_gain"]), fmt="o", capsize=3)
        ax.annotate(x["model"].removeprefix("testbed:"), (statistics.fmean(x["mcs"]), statistics.fmean(x["gt_gain"])),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"Model Collapse Step (cap {p.mcs_max_steps})", fontsize=8)
    ax.set_ylabel("GT Gain", fontsize=8)
    ax.grid(alpha=0.3)
    if p.passk:
        ax = axes[0][1]
        for x in rows:
            ax.errorbar(x["passk_gain"], statistics.fmean(x["gt_gain"]), yerr=sd(x["gt_gain"]), fmt="s", capsize=3)
            ax.annotate(x["model"].removeprefix("testbed:"), (x["passk_gain"], statistics.fmean(x["gt_gain"])),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(f"pass@{p.passk} gain", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("3. MCS vs GT Gain per prior (mean ± std over seeds)", fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# the reproduction
# ---------------------------------------------------------------------------------------------------
EXPERIMENTS: dict[str, Callable[["Runner", list[int]], tuple[list[Finding], list[Path]]]] = {
    "families": exp_families, "dataset_size": exp_dataset_size, "mcs": exp_mcs, "external": exp_external}


def reproduce(out_dir: str | Path = "runs/reproduce", plan: str | Plan = "full", only: Sequence[str] = (),
              fresh: bool = False, progress: bool = True, jobs: int = 1) -> dict:
    """Run the experiments of ``plan`` into ``out_dir``; writes FINDINGS.md, findings.json and the figures.

    ``jobs`` > 1 runs the independent runs of an experiment in that many processes (one thread each).
    """
    from urlvr.files import write_json, write_text

    p = PLANS[plan] if isinstance(plan, str) else plan
    names = list(only) or list(EXPERIMENTS)
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        raise UrlvrError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(p.seeds))
    bars = Bars(len(names), progress)
    runner = Runner(out, p, bars, fresh, jobs)
    findings: list[Finding] = []
    figures: list[Path] = []
    # an experiment whose runs were all reused keeps the time of the invocation that ran them
    from urlvr.files import read_json

    before = read_json(out / "findings.json").get("seconds", {}) if (out / "findings.json").is_file() else {}
    try:
        for name in names:
            t, ran = time.time(), runner.ran
            f, figs = EXPERIMENTS[name](runner, seeds)
            findings += f
            figures += figs
            runner.seconds[name] = round(time.time() - t, 1)
            if runner.ran == ran and name in before:
                runner.seconds[name] = before[name]
            bars.experiment_done()
    finally:
        runner.close()
        bars.close()
    total = round(sum(runner.seconds.values()), 1)
    write_text(out / "FINDINGS.md", format_findings(findings, figures, p, runner.seconds, total, out))
    (out / "FINDINGS.md").chmod(0o644)
    write_json(out / "findings.json", {"plan": dataclasses.asdict(p), "seconds": runner.seconds, "total_seconds": total,
                                       "findings": [dataclasses.asdict(f) for f in findings],
                                       "figures": [str(x) for x in figures]})
    return {"findings": findings, "figures": figures, "seconds": runner.seconds, "total_seconds": total,
            "path": out / "FINDINGS.md"}


def format_findings(findings: list[Finding], figures: list[Path], p: Plan, seconds: dict, total: float,
                    out: Path) -> str:
    from urlvr.report import markdown_table

    lines = ["# Findings of the paper, reproduced on the testbed", "",
             f"`urlvr reproduce{'' if p.name == 'full' else ' --' + p.name}` ({p.name} plan: {p.seeds} seed(s); "
             f"{total / 60:.1f} min in all: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())
             + f"). Numbers are mean ± std over seeds unless marked; peak, rise and fall are of the seed-mean "
             f"curve. A verdict needs every stated margin (TOL = {TOL} accuracy) to hold, per seed on a majority "
             "of seeds or on the seed means as stated; a finding that did not reproduce says so.", "",
             "| # | finding | verdict |", "|---|---|---|"]
    lines += [f"| {f.experiment} | {f.claim} | **{f.verdict}** |" for f in findings]
    for f in findings:
        lines += ["", f"## {f.experiment}: {f.claim}", "", f"**Verdict: {f.verdict}.** {f.why}", "",
                  f"*Measured:* {f.measured}"]
        if f.table:
            lines += ["", markdown_table(f.table[0], f.table[1:])]
    lines += ["", "## Figures", ""]
    lines += [f"![{x.stem}]({x.relative_to(out) if x.is_relative_to(out) else x})" for x in figures]
    lines += ["", "Run folders: `" + str(out) + "/<experiment>/<run>` (inspect any with `urlvr report RUN_DIR ...`)."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------------
def cmd_ttt(args) -> int:
    from urlvr.config import load_config
    from urlvr.console import echo

    if args.config is None:
        raise UrlvrError("give a recipe, e.g. 'urlvr ttt recipes/ttt_majority_vote.yaml'")
    cfg = load_config(args.config, args.overrides)
    result = run_ttt(cfg, k=args.k, seeds=args.seeds, transfer=not args.no_transfer, progress=not args.quiet)
    print(format_ttt(result))
    echo(f"wrote {Path(cfg.out_dir) / 'ttt.json'}; see it with 'urlvr report {cfg.out_dir}'")
    return 0


def cmd_reproduce(args) -> int:
    from urlvr.console import echo

    plan = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.jobs < 1:
        raise UrlvrError(f"--jobs must be >= 1, got {args.jobs}")
    result = reproduce(args.out, plan, only=args.only or (), fresh=args.fresh, progress=not args.quiet, jobs=args.jobs)
    for f in result["findings"]:
        print(f"{f.experiment:<16} {f.verdict:<18} {f.claim}")
    echo(f"wrote {result['path']} and {len(result['figures'])} figures in {result['total_seconds'] / 60:.1f} min")
    return 0


def register(subparsers) -> None:
    """Add ``reproduce`` and ``ttt`` to ``urlvr`` (called from :func:`urlvr.report.register`)."""
    import argparse

    r = subparsers.add_parser("reproduce", help="the paper's four findings on the testbed: figures + FINDINGS.md")
    r.add_argument("--quick", action="store_true", help="the small plan (about 10 min on 2 cores, models built)")
    r.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--out", default="runs/reproduce", help="output folder (default runs/reproduce)")
    r.add_argument("--only", action="append", choices=list(EXPERIMENTS), help="run only this experiment (repeatable)")
    r.add_argument("--fresh", action="store_true", help="redo runs that already finished with the same settings")
    r.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for independent runs, one CPU thread each (default: min(2, CPUs))")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(fn=cmd_reproduce)

    t = subparsers.add_parser("ttt", help="test-time training: evaluate the test set, train on it unlabeled, evaluate")
    t.add_argument("config", nargs="?", help="YAML recipe with train_split: test (see recipes/ttt_*.yaml)")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train_problems=64")
    t.add_argument("--k", type=int, default=8, help="samples per problem for avg@k / maj@k (default 8)")
    t.add_argument("--seeds", type=int, default=3, help="evaluation sampling seeds (default 3)")
    t.add_argument("--no-transfer", action="store_true", help="skip the held-out validation split")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=cmd_ttt)
