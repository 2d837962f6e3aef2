"""Running a reproduction: jobs (training runs and MCS / GT Gain / pass@k measurements), reused when
finished with the same settings, in worker processes, with stacked progress bars.

A :class:`Job` is one unit of work. :class:`Runner` builds the testbed models once (cached), skips jobs
whose folder holds a finished result with the same settings (``--fresh`` redoes them), and runs the
rest in this process or in ``jobs`` spawned worker processes with one CPU thread each (the testbed's
models are so small that a second thread costs more in synchronisation than it gains).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from urlvr.config import GainConfig, MCSConfig, Plan, TrainConfig
from urlvr.console import Bar

__all__ = ["Bars", "Job", "run_job", "Runner"]


class Bars:
    """Three stacked bars: experiments, runs of the experiment, steps of the run."""

    def __init__(self, experiments: int, enabled: bool, label: str = "reproduce"):
        self.enabled, self.label = enabled, label
        self.top = Bar(experiments, label, unit="exp", enabled=enabled, position=0)
        self.runs = Bar(0, "", unit="run", enabled=enabled, position=1, leave=False)
        self.steps = Bar(0, "", unit="step", enabled=enabled, position=2, leave=False)

    def experiment(self, name: str, runs: int) -> None:
        self.top.describe(f"{self.label}: {name}")
        self.runs.reset(runs, name)

    def run(self, name: str, steps: int) -> Callable[[dict], None]:
        """Start a run's bar; returns the ``on_step`` callback that advances it."""
        self.steps.reset(steps, name)
        return lambda metrics: self.steps.update(metrics=metrics)

    def run_done(self) -> None:
        self.runs.update()

    def experiment_done(self) -> None:
        self.top.update()

    def close(self) -> None:
        for bar in (self.steps, self.runs, self.top):
            bar.close()


@dataclass
class Job:
    """One unit of work: a training run, or an MCS / GT Gain / pass@k measurement of :mod:`urlvr.watch.collapse`."""

    kind: str
    """``train``, ``mcs``, ``gt``, ``passk``, ``build`` (a testbed prior: payload = its PriorConfig fields),
    ``preferences`` (:mod:`~urlvr.experiments.certainty`), ``eval`` (an EvalConfig) or ``ttt``
    (:mod:`~urlvr.experiments.real_lm`)."""
    folder: Path
    label: str
    payload: dict
    """train: the TrainConfig settings; others: ``model`` (folder), ``task``, ``task_options``, ``settings``."""
    steps: int = 1
    keep_checkpoints: bool = False
    """train: keep the run's checkpoints (the reproduction keeps only the curves)."""

    def key(self) -> dict:
        """What makes two jobs the same (JSON-normalised)."""
        return json.loads(json.dumps({"kind": self.kind, **self.payload}, default=str))


def run_job(job: Job, on_step: Callable[[dict], None] | None = None):
    """Do ``job`` in this process, on one CPU thread; returns its metric rows (train) or its result dict."""
    import torch

    from urlvr.io import read_jsonl, write_json
    from urlvr.trainer import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if job.kind == "build":  # cached by its settings, like every testbed model
            from urlvr.config import PriorConfig
            from urlvr.testbed.priors import build_prior

            path, card, _ = build_prior(PriorConfig.from_dict(job.payload),
                                        progress=None if on_step is None else lambda step, total, loss: on_step({}))
            return {"path": str(path), "card": card}
        shutil.rmtree(job.folder, ignore_errors=True)
        if job.kind == "train":
            train(TrainConfig.from_dict({**job.payload, "out_dir": str(job.folder)}), progress=False, on_step=on_step)
            if not job.keep_checkpoints:
                shutil.rmtree(job.folder / "checkpoints", ignore_errors=True)  # the curves are what we keep
            return read_jsonl(job.folder / "metrics.jsonl")
        if job.kind not in _MEASURES:
            raise ValueError(f"unknown job kind {job.kind!r}; one of train, build, {', '.join(_MEASURES)}")
        result = _MEASURES[job.kind](job.payload, job.folder, on_step)
        write_json(job.folder / "result.json", {"key": job.key(), "result": result})
        return result
    finally:
        torch.set_num_threads(threads)


def _mcs(p: dict, folder: Path, on_step):
    from urlvr.watch.collapse import model_collapse_step

    return model_collapse_step(p["model"], p["task"], p["task_options"], MCSConfig.from_dict(p["settings"]), folder,
                               on_step)


def _gt(p: dict, folder: Path, on_step):
    from urlvr.watch.collapse import gt_gain

    return gt_gain(p["model"], p["task"], p["task_options"], GainConfig.from_dict(p["settings"]), folder, on_step)


def _passk(p: dict, folder: Path, on_step):
    from urlvr.watch.collapse import passk_gain

    return passk_gain(p["model"], p["task"], p["task_options"], GainConfig.from_dict(p["settings"]), folder)


def _preferences(p: dict, folder: Path, on_step):
    from urlvr.experiments.measures import measure_preferences

    return measure_preferences(p["model"], p["task"], p["task_options"], p["settings"], folder)


def _ttt(p: dict, folder: Path, on_step):
    from urlvr.experiments.measures import measure_ttt

    return measure_ttt(p["settings"], p["k"], p["seeds"], folder)


def _eval(p: dict, folder: Path, on_step):
    from urlvr.config import EvalConfig
    from urlvr.evaluation.harness import evaluate, write_results

    results, samples = evaluate(EvalConfig.from_dict(p), progress=False)
    write_results(folder, results, samples)
    return results


_MEASURES = {"mcs": _mcs, "gt": _gt, "passk": _passk, "preferences": _preferences, "eval": _eval, "ttt": _ttt}
"""Job kinds that store one ``result.json`` (the certainty and real-LM modules do their own work)."""


def _job_in_worker(job: Job, ticks=None):
    """:func:`run_job` in a worker process; one item on the ``ticks`` queue per step (the parent's bar)."""
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    return run_job(job, None if ticks is None else lambda metrics: ticks.put(1))


class Runner:
    """Builds models (cached), runs jobs (reusing finished ones), in ``jobs`` processes."""

    def __init__(self, out: Path, plan: Plan | None, bars: Bars, fresh: bool, jobs: int = 1):
        self.out, self.plan, self.bars, self.fresh, self.jobs = out, plan, bars, fresh, jobs
        self.pool = None
        """Worker processes, started on first use and kept for every experiment (starting one costs seconds)."""
        self.manager = self.ticks = None
        """A queue the workers put one item on per step (progress bars on; created with the pool)."""
        self.paths: dict[tuple, str] = {}
        self.cards: dict[tuple, dict] = {}
        self.seconds: dict[str, float] = {}
        self.ran = 0
        """Jobs run (not reused) so far."""
        self.memo: dict[str, object] = {}
        """Results that several experiments of one reproduction share (the real-LM search)."""

    def model(self, name: str, task: str, task_options: dict) -> str:
        """The folder of ``name`` (``testbed:PRIOR...`` built once and cached, with a bar while building)."""
        return self.models([name], task, task_options)[0]

    def models(self, names: list[str], task: str, task_options: dict) -> list[str]:
        """The folders of ``names``; testbed priors not cached yet are built, in the worker processes when
        there are several (each build is one CPU thread's work). Their prior cards are in :attr:`cards`."""
        from urlvr.testbed.priors import build_prior, cache_dir, parse_model

        todo: dict[str, tuple[list[tuple], Job]] = {}  # by the prior's cache key: the names asking, the build
        for name in names:
            key = (name, task, json.dumps(task_options, sort_keys=True))
            if key in self.paths or any(key in keys for keys, _ in todo.values()):
                continue
            spec = parse_model(name, task, task_options)
            if spec is None:
                self.paths[key] = name
            elif (cache_dir() / spec.key() / "prior_card.json").is_file():
                path, self.cards[key], _ = build_prior(spec)  # cached: instant
                self.paths[key] = str(path)
            elif spec.key() in todo:  # another name of the same prior: one build
                todo[spec.key()][0].append(key)
            else:
                steps = spec.weak_steps if spec.prior == "weak" else spec.steps
                todo[spec.key()] = ([key], Job("build", cache_dir() / spec.key(),
                                               f"build {name.removeprefix('testbed:')}", spec.to_dict(), steps))
        if todo:
            for (keys, _), built in zip(todo.values(), self.execute([job for _, job in todo.values()], reuse=False)):
                for key in keys:
                    self.paths[key], self.cards[key] = built["path"], built["card"]
        return [self.paths[(n, task, json.dumps(task_options, sort_keys=True))] for n in names]

    def card(self, name: str, task: str, task_options: dict) -> dict | None:
        """The prior card of a testbed model built or found by :meth:`models` (None for other models)."""
        return self.cards.get((name, task, json.dumps(task_options, sort_keys=True)))

    def settings(self, task: str = "arithmetic", task_options: dict | None = None, **kw) -> dict:
        """TrainConfig settings of a run of the plan (rollout sizes, validation, no checkpoints kept)."""
        p = self.plan
        base = dict(task=task, task_options=dict(p.task_options if task_options is None else task_options),
                    prompts_per_step=p.prompts_per_step, n_votes=p.n, n_train=p.n, max_new_tokens=p.max_new_tokens,
                    val_problems=p.val_problems, val_every=p.val_every, val_k=p.val_k, save_every=10**6,
                    sample_every=10**6, temperature=1.0)
        return {**base, **kw}

    def done(self, job: Job):
        """The stored result of a finished job with the same settings, or None."""
        import yaml

        from urlvr.io import read_json, read_jsonl

        if self.fresh:
            return None
        if job.kind == "train":
            cfg = TrainConfig.from_dict({**job.payload, "out_dir": str(job.folder)}).to_dict()
            if not ((job.folder / "summary.json").is_file() and (job.folder / "config.yaml").is_file()):
                return None
            try:  # a run recorded before a config key was added has that key's default
                old = TrainConfig.from_dict(yaml.safe_load((job.folder / "config.yaml").read_text())).to_dict()
            except Exception:  # noqa: BLE001  (a key since removed or renamed: not the same run)
                return None
            return read_jsonl(job.folder / "metrics.jsonl") if old == cfg else None
        path = job.folder / "result.json"
        if path.is_file() and read_json(path).get("key") == job.key():
            return read_json(path)["result"]
        return None

    def execute(self, jobs: list[Job], reuse: bool = True) -> list:
        """Results of ``jobs`` in order: reused when finished, else run (in a process pool if ``jobs`` > 1)."""
        results = [self.done(job) if reuse else None for job in jobs]
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
        import queue
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        if self.pool is None:  # spawn: a clean interpreter, no forked torch thread pools
            ctx = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx)
            if self.bars.enabled:  # steps done, from every worker
                self.manager = ctx.Manager()
                self.ticks = self.manager.Queue()
        futures = {self.pool.submit(_job_in_worker, jobs[i], self.ticks): i for i in todo}
        what = "builds" if all(jobs[i].kind == "build" for i in todo) else "runs"
        tick = self.bars.run(f"{len(todo)} {what} in {min(self.jobs, len(todo))} processes",
                             sum(jobs[i].steps for i in todo))
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            while self.ticks is not None:
                try:
                    self.ticks.get_nowait()
                except queue.Empty:
                    break
                tick({})
            for future in done:
                results[futures[future]] = future.result()
                self.ran += 1
                self.bars.run_done()
        return results

    def train_runs(self, folder: str, grid: list[tuple[str, dict]], keep_checkpoints: bool = False
                   ) -> dict[str, list[dict]]:
        """Run (or reuse) ``(name, settings)`` training runs under ``out/folder/name``; metric rows by name."""
        jobs = [Job("train", self.out / folder / name, name.replace("_", " "), s, s["steps"], keep_checkpoints)
                for name, s in grid]
        return dict(zip((name for name, _ in grid), self.execute(jobs)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        if self.manager is not None:
            self.manager.shutdown()
