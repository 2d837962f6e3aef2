"""Test-time training (METHODS.md §10): evaluate the test problems, train on them unlabeled, evaluate again.

Train with a label-free reward on the unlabeled evaluation problems themselves (``train_split: test``)
and evaluate those same problems with the evaluation harness (:mod:`urlvr.evaluation.harness`, same
settings before and after, paired comparison over problems) before training and after the *final*
step (no checkpoint is picked on the test set); optionally also a held-out split (``validation``) for
transfer. The gold answers of the test problems reach only the evaluation, never the reward.
``urlvr ttt recipes/ttt_majority_vote.yaml`` writes the run folder plus ``ttt/`` (the harness's
``results.json`` files) and ``ttt.json`` (the comparisons), which ``urlvr report`` shows.
"""

from __future__ import annotations

from pathlib import Path

from urlvr.config import EvalConfig, TrainConfig
from urlvr.errors import UrlvrError
from urlvr.evaluation.compare import compare_results
from urlvr.evaluation.harness import evaluate, write_results
from urlvr.io import write_json
from urlvr.loading import resolve_model
from urlvr.tasks import get_task
from urlvr.trainer import train

__all__ = ["run_ttt", "eval_config"]


def eval_config(cfg: TrainConfig, model: str, split: str, problems: int, k: int, seeds: int) -> EvalConfig:
    """The evaluation harness's settings for ``model`` on ``problems`` of ``split``, with the prompts rendered as
    ``cfg`` trains (task, its options and template, chat template, system prompt) and ``cfg``'s validation
    sampling (``val_temperature``, ``top_p``, ``max_new_tokens``), grader and device."""
    options = dict(cfg.task_options)
    template = options.pop("template", None)  # the harness takes it as its own setting
    return EvalConfig(model=model, data=(cfg.task,), k=k, seeds=seeds, max_new_tokens=cfg.max_new_tokens,
                      temperature=cfg.val_temperature, top_p=cfg.top_p, problems=problems, split=split,
                      options=options, template=template, equivalence=cfg.equivalence, device=cfg.device,
                      dtype=cfg.dtype, grader_workers=cfg.grader_workers, grader_timeout=cfg.grader_timeout,
                      chat=cfg.chat, system_prompt=cfg.system_prompt or None)


def run_ttt(cfg: TrainConfig, k: int = 8, seeds: int = 3, transfer: bool = True, progress: bool = True) -> dict:
    """Evaluate the test problems, train on them (unlabeled), evaluate again; returns ``ttt.json``'s content.

    ``cfg`` is a :class:`~urlvr.config.TrainConfig` with ``train_split="test"``. The evaluation draws
    ``train_problems`` test problems exactly as the harness does (seed 0), so ``cfg.seed`` must draw
    the same set; with ``transfer`` the ``validation`` split (``val_problems`` problems) is evaluated too.
    """
    if cfg.train_split != "test":
        raise UrlvrError(f"ttt trains on the unlabeled test problems, but train_split={cfg.train_split!r}; set "
                         "train_split=test (as recipes/ttt_*.yaml do)")
    task = get_task(cfg.task, **cfg.task_options)
    trained = {e.problem.id for e in task.examples("test", cfg.train_problems, seed=cfg.seed)}
    if trained != {e.problem.id for e in task.examples("test", cfg.train_problems, seed=0)}:
        raise UrlvrError(f"seed={cfg.seed} draws a different set of {cfg.train_problems} test problems than the "
                         "evaluation harness (seed 0), so 'after' would not be measured on the problems trained "
                         "on; use seed=0, or train_problems = the whole test split")
    if not cfg.save_every:
        raise UrlvrError("ttt evaluates the final checkpoint, but save_every=0 writes none; set save_every > 0")
    run_dir = Path(cfg.out_dir)
    if (run_dir / "metrics.jsonl").exists():
        raise UrlvrError(f"run folder {run_dir} already holds a run; choose another out_dir")
    model = resolve_model(cfg.model, cfg.task, cfg.task_options)
    splits = {"test": cfg.train_problems}
    if transfer:
        splits["validation"] = cfg.val_problems or cfg.train_problems

    def harness(model: str, split: str, problems: int) -> dict:
        return evaluate(eval_config(cfg, model, split, problems, k, seeds), progress=progress)

    results: dict[str, dict] = {}
    for split, n in splits.items():
        results[f"before_{split}"], samples = harness(model, split, n)
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
