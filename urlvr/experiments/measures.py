"""The measurements behind the certainty and real-LM experiments, run as :class:`~urlvr.experiments.runner.Job`\ s.

:func:`measure_preferences` (job kind ``preferences``): one step's groups of a base model ranked by every
intrinsic reward (:mod:`urlvr.experiments.preferences` does the arithmetic). :func:`measure_ttt` (kind ``ttt``):
one arm of test-time training through :func:`urlvr.evaluation.ttt.run_ttt`, reduced to the paired comparisons
and the run's own signals.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from urlvr.experiments.verdicts import end_over_start, tail_mean

__all__ = ["PREFERENCE_REWARDS", "HEAD_K", "measure_preferences", "measure_ttt"]

PREFERENCE_REWARDS = ("self_certainty", "token_entropy", "trajectory_entropy", "probability",
                      "probability_disparity", "majority_vote")
"""The rewards whose within-group preferences Part 1 measures (the paper's intrinsic rewards)."""

HEAD_K = 3
"""Tokens of each ``p_t`` counted as the head in the self-certainty split (the rest is the tail)."""


def measure_preferences(model: str, task: str, task_options: dict, settings: dict, folder: Path) -> dict:
    """Part 1 for one model (a :class:`Job` of kind ``preferences``): sample one step's groups, rank them by
    every reward of :data:`PREFERENCE_REWARDS`, split self-certainty into head and tail per span."""
    import inspect
    import math

    import torch

    from urlvr.config import TrainConfig
    from urlvr.experiments.preferences import (base_rate, kl_uniform_parts, span_contributions, top_choice_accuracy,
                                               within_group_auc, within_group_diff)
    from urlvr.loading import resolve_model
    from urlvr.rewards import get_reward
    from urlvr.rewards.base import call_reward
    from urlvr.rewards.certainty import answer_token_positions
    from urlvr.rollout import LOGIT_BUDGET, pack
    from urlvr.trainer import Trainer

    model = resolve_model(model, task, task_options)  # a built-in name (smollm2) or a testbed name to its folder
    cfg = TrainConfig.from_dict({"model": model, "task": task, "task_options": task_options, "val_problems": 0,
                                 "save_every": 0, "sample_every": 0, "kl_every": 0, "lr": 1e-9, "steps": 1,
                                 "reward": "majority_vote", "out_dir": str(folder / "run"), **settings})
    trainer = Trainer(cfg, model)
    _, batch, groups, labeled, _ = trainer.sample_groups(0)
    correct = [list(lg.correct) for lg in labeled]
    out: dict[str, Any] = {"groups": len(groups), "n": cfg.n_votes, "base_rate": base_rate(correct),
                           "mixed_groups": sum(0 < sum(c) < len(c) for c in correct), "rewards": {}}
    values: dict[str, list[list[float | None]]] = {}
    for name in PREFERENCE_REWARDS:
        spec = get_reward(name)
        options = {"tokenizer": trainer.tok} if "tokenizer" in inspect.signature(spec.fn).parameters else {}
        values[name] = [[s if s is not None and math.isfinite(s) else None for s in call_reward(spec, g, options).scores]
                        for g in groups]
        out["rewards"][name] = {"auc": within_group_auc(values[name], correct),
                                "top": top_choice_accuracy(values[name], correct)}
    # self-certainty: the teacher-forced distributions of the rollout's own tokens, split head / tail and by span
    ids, att, _ = pack(batch.prompt_ids, batch.tokens, batch.mask, trainer.tok.pad_token_id)
    T = batch.tokens.shape[1]
    rows = max(1, LOGIT_BUDGET // ((T + 1) * trainer.policy.config.vocab_size))  # (rows, T+1, V) logits at a time
    parts: dict[bool, dict[str, list[float]]] = {True: {}, False: {}}
    with torch.no_grad():
        for s in range(0, len(batch), rows):
            a = att[s : s + rows].to(trainer.device)
            pos = (a.cumsum(-1) - 1).clamp(min=0)
            logits = trainer.policy(input_ids=ids[s : s + rows].to(trainer.device), attention_mask=a, position_ids=pos,
                                    logits_to_keep=T + 1).logits[:, :-1].float()  # (b, T, V)
            head, tail = kl_uniform_parts(torch.log_softmax(logits / cfg.temperature, -1), HEAD_K)  # (b, T) each
            for j in range(head.shape[0]):
                g, k = divmod(s + j, cfg.n_votes)
                length = int(batch.mask[s + j].sum())
                if length == 0:
                    continue
                try:
                    span = answer_token_positions(groups[g].completions[k], trainer.tok)
                except Exception:  # noqa: BLE001  (a text the tokenizer cannot map back: no span split for it)
                    span = None
                for part, x in (("head", head[j, :length].cpu()), ("tail", tail[j, :length].cpu())):
                    for name, v in span_contributions(x, span).items():
                        parts[correct[g][k]].setdefault(f"{name} {part}", []).append(v)
    sc = values["self_certainty"]  # mean KL(U ‖ p_t) per completion
    out["self_certainty"] = {
        "within_group_diff": within_group_diff(sc, correct),
        "mean": statistics.fmean(v for row in sc for v in row if v is not None),
        "parts": {("correct" if ok else "wrong"): {k: statistics.fmean(v) for k, v in d.items()}
                  for ok, d in parts.items() if d},
        "completions": {("correct" if ok else "wrong"): len(next(iter(d.values()), [])) for ok, d in parts.items()}}
    return out


def measure_ttt(settings: dict, k: int, seeds: int, folder: Path) -> dict:
    """A :class:`Job` of kind ``ttt``: ``urlvr ttt`` for one arm; the paired comparisons and the run's signals."""
    import shutil
    import time

    from urlvr.config import TrainConfig
    from urlvr.evaluation.ttt import run_ttt
    from urlvr.io import read_jsonl

    t0 = time.time()
    out = run_ttt(TrainConfig.from_dict({**settings, "out_dir": str(folder / "run")}), k=k, seeds=seeds,
                  transfer=False, progress=False)
    shutil.rmtree(folder / "run" / "checkpoints", ignore_errors=True)  # a full model per arm: the numbers are kept
    rows = [x for x in read_jsonl(folder / "run" / "metrics.jsonl") if x["step"] > 0]
    comps = {c["metric"]: c for c in out["comparisons"] if c["split"] == "test"}
    return {"comparisons": {m: comps[m] for m in (f"avg@{k}", f"maj@{k}")},
            "label_accuracy": tail_mean(rows, "oracle/label_accuracy"),
            "entropy_ratio": end_over_start(rows, "policy/entropy"),
            "seconds": time.time() - t0}
