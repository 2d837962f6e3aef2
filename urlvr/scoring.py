"""Scoring: completions → groups → rewards → step metrics, shared by urlvr's trainer and the TRL adapter.

One step's rollouts become :class:`~urlvr.types.Completion`\\ s (answers read by the task's
:class:`~urlvr.types.AnswerRules`), are cut into whole groups (one per prompt) and handed to the reward.
:func:`build_groups` makes two views of every group: the label-free :class:`~urlvr.types.Group`
(values and answer rules, no gold) that every label-free reward receives, and its
:class:`~urlvr.types.LabeledGroup` twin (gold answer, gold check and the gold verdict of every
completion, computed for the whole step in **one batched call** to the task's grader) that only gold
rewards and the oracle metrics see. It also clusters the answers of every group once, all groups
together (:func:`~urlvr.types.cluster_groups`: with ``math`` equivalence the class-head comparisons of
every group go to the grader's workers in the same rounds), so the reward, the advantage modifiers and
the metrics read the same clusters without grading again. :func:`score_groups` calls the reward on every whole group and
isolates failures; :func:`step_metrics` gathers the label-free health metrics, the reward's components
and, when every group has gold, the oracle metrics.

>>> import torch
>>> from urlvr.tasks import get_task
>>> from urlvr.types import Example, Problem
>>> task = get_task("arithmetic")
>>> comps = [[Completion(t, task.extract(t), torch.tensor([1]), {}) for t in ("\\\\boxed{4}", "\\\\boxed{5}")]]
>>> groups, labeled = build_groups(task, task.rules(), [Example(Problem("2+2", "2+2"), "4")], ["2+2\\n"], comps)
>>> labeled[0].correct, hasattr(groups[0], "gold")
((True, False), False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from urlvr.errors import UrlvrError
from urlvr.rewards.base import REWARD_TIMEOUT, RewardSpec, call_bounded
from urlvr.stats import STAT_NAMES
from urlvr.types import (AnswerRules, Completion, Example, Group, LabeledGroup, RewardOutput, RolloutBatch,
                         cluster_groups)
from urlvr.watch.health import health_metrics
from urlvr.watch.oracle import oracle_metrics

__all__ = ["completions_from_batch", "build_groups", "Scores", "score_groups", "step_metrics"]


def completions_from_batch(batch: RolloutBatch, rules: AnswerRules) -> list[Completion]:
    """One :class:`Completion` per row of a rollout (padding cut off, every statistic of the rollout).

    ``ends_with_eos``: the row ended at a stop token (EOS or a chat end-of-turn), i.e. was not truncated.
    """
    out = []
    for i in range(len(batch)):
        m = batch.mask[i]
        ids = batch.tokens[i][m]
        out.append(Completion(
            text=batch.texts[i], answer=rules.extract(batch.texts[i]), token_ids=ids,
            stats={k: batch.stats[k][i][m] for k in STAT_NAMES if k in batch.stats},
            truncated=bool(batch.truncated[i]), ends_with_eos=bool(len(ids)) and not bool(batch.truncated[i]),
            embedding=None if batch.embeddings is None else batch.embeddings[i],
        ))
    return out


def build_groups(task, rules: AnswerRules, examples: Sequence[Example], prompts: Sequence[str],
                 completions: Sequence[Sequence[Completion]], grader: Any = None, vocab_size: int = 0,
                 eos_token_id: int | None = None) -> tuple[list[Group], list[LabeledGroup]]:
    """Label-free groups and their labelled twins, one per example, with the step's gold verdicts.

    ``completions[g]`` are the completions of ``examples[g]`` (prompt ``prompts[g]``). Gold checks of
    every completion whose example has a gold answer go to ``task.check_many`` in one call (one round on
    the grader's workers); the answer clusters of every group under ``rules`` are decided together
    (:func:`~urlvr.types.cluster_groups`, one round per class head for math equivalence) and remembered
    by the groups and their twins.
    """
    answers = [c.answer for comps in completions for c in comps]
    golds = [ex.answer for ex, comps in zip(examples, completions) for _ in comps]
    flat = task.check_many(answers, golds, grader) if any(g is not None for g in golds) else [False] * len(golds)
    groups, labeled, start = [], [], 0
    for ex, prompt, comps in zip(examples, prompts, completions):
        kw = dict(problem=ex.problem, prompt=prompt, completions=tuple(comps), rules=rules, vocab_size=vocab_size,
                  eos_token_id=eos_token_id)
        correct = tuple(bool(v) for v in flat[start : start + len(comps)]) if ex.answer is not None else None
        groups.append(Group(**kw))
        labeled.append(LabeledGroup(**kw, gold=ex.answer, check=task.check, correct=correct))
        start += len(comps)
    cluster_groups([*groups, *labeled])  # a twin has its group's answers: clustered once
    return groups, labeled


@dataclass
class Scores:
    """The reward's verdict on a step: ``rewards`` and ``valid`` (G, N), components and errors."""

    rewards: torch.Tensor  # (G, N) float, 0 where invalid
    valid: torch.Tensor  # (G, N) bool, False = None or non-finite score
    components: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    last_invalid: float | None = None
    """The last value that was not a finite score (None, NaN or ±inf), for the failure message."""

    @property
    def failure(self) -> str:
        """Why completions got no score: the last error, else the last non-finite value returned."""
        return f"last error: {self.errors[-1]}" if self.errors else f"last value returned: {self.last_invalid}"


def score_groups(spec: RewardSpec, options: dict, groups: Sequence[Group], labeled: Sequence[LabeledGroup],
                 timeout: float = REWARD_TIMEOUT) -> Scores:
    """Call the reward on every whole group (labelled twins only for gold rewards), each call bounded.

    A reward that raises an ``Exception`` for a group yields None for all of that group's completions
    (excluded from the loss, counted in ``reward/failed`` and ``reward/errors``), never a silent 0;
    None, NaN and ±inf scores are excluded the same way (``valid`` False, the last one kept in
    ``last_invalid``). What stops the run at once, as :class:`UrlvrError`: a configuration mistake
    raised by the reward, a call longer than ``timeout`` seconds, ``SystemExit``/``KeyboardInterrupt``
    from the reward, a non-numeric or huge score (:func:`~urlvr.rewards.base.call_bounded`).
    """
    G = len(groups)
    N = len(groups[0]) if G else 0
    rewards = torch.zeros(G, N)
    valid = torch.zeros(G, N, dtype=torch.bool)
    scores = Scores(rewards, valid)
    for g, group in enumerate(labeled if spec.needs_gold else groups):
        try:
            out = call_bounded(spec, group, options, timeout)
        except UrlvrError:
            raise
        except Exception as e:  # an environment fault, not a verdict on the completion
            scores.errors.append(f"{type(e).__name__}: {e}")
            out = RewardOutput([None] * N)
        for i, s in enumerate(out.scores):
            if s is not None and math.isfinite(s):
                rewards[g, i], valid[g, i] = s, True
            else:
                scores.last_invalid = s
        for name, vals in out.components.items():
            scores.components.setdefault(name, []).extend(v for v in vals if v is not None)
    return scores


def step_metrics(groups: Sequence[Group], labeled: Sequence[LabeledGroup], scores: Scores,
                 clusters: Sequence[Sequence[int | None]] | None = None) -> dict[str, float | None]:
    """Label-free health, reward components and errors, then (every group labelled) the oracle metrics."""
    clusters = clusters if clusters is not None else cluster_groups(groups)
    metrics: dict[str, Any] = health_metrics(groups, scores.rewards, scores.valid, clusters)
    metrics.update({f"reward/{k}": sum(v) / len(v) for k, v in scores.components.items() if v})
    metrics["reward/errors"] = len(scores.errors)
    if labeled and all(lg.correct is not None for lg in labeled):
        metrics.update(oracle_metrics([lg.correct for lg in labeled], clusters, scores.rewards, scores.valid))
    return metrics
