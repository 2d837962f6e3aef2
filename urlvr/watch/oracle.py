"""Oracle metrics (METHODS.md §7): need gold answers, for monitoring only, never fed to a reward.

``correct[g][i]`` is the gold correctness of completion i of group g (computed by the trainer from a
``LabeledGroup``); rewards and valid are the ``(G, N)`` grid the reward produced.

- accuracy: mean gold correctness of the completions (the gold reward's mean);
- label accuracy: share of prompts whose pseudo-label (majority answer, answer-less completions not
  voting, ties to the first seen) is gold-correct;
- reward accuracy: share of completions whose (binary) reward equals their gold reward; non-binary
  rewards are not counted (None when no reward is 0 or 1). The Model Collapse Step (METHODS.md §9,
  :mod:`urlvr.collapse`) is the first step at which it falls below 1%;
- pseudo-label accuracy: share of groups whose highest-reward completion (ties to the first) is correct;
- point-biserial correlation between a (continuous) reward and gold correctness (None when either is
  constant);
- :class:`SolvedTransitions` (stateful): per problem, whether its majority answer was correct at its
  previous visit and is now (``oracle/solved_to_unsolved``, ``oracle/unsolved_to_solved`` per step).

Nothing in :mod:`urlvr.rewards` imports this module (a test proves it): what trains cannot see what
watches.

>>> reward_accuracy([[True, False, False]], torch.tensor([[0.0, 1.0, 0.0]]), torch.ones(1, 3, dtype=torch.bool))
0.3333333333333333
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from urlvr.answers import majority

__all__ = ["oracle_metrics", "point_biserial", "label_accuracy", "reward_accuracy", "pseudo_label_accuracy",
           "SolvedTransitions", "majority_correct"]

Correct = Sequence[Sequence[bool]]


def point_biserial(scores: Sequence[float], correct: Sequence[bool]) -> float:
    """Pearson correlation between a score and a 0/1 correctness (nan when either is constant).

    >>> round(point_biserial([1, 2, 3, 4], [False, False, True, True]), 4)
    0.8944
    """
    x = torch.tensor(scores, dtype=torch.float64)
    y = torch.tensor([float(c) for c in correct], dtype=torch.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(((x - x.mean()) * (y - y.mean())).mean() / (x.std(unbiased=False) * y.std(unbiased=False)))


def majority_correct(correct: Correct, clusters: Sequence[Sequence[int | None]]) -> list[bool]:
    """Per group: is its majority answer gold-correct (no answer at all = wrong)?

    >>> majority_correct([[True, False, False], [True, False, False]], [[0, 1, 1], [0, None, None]])
    [False, True]
    """
    out = []
    for cor, ids in zip(correct, clusters):
        winner, _ = majority(ids, empty="drop")
        out.append(winner is not None and bool(cor[list(ids).index(winner)]))
    return out


def label_accuracy(correct: Correct, clusters: Sequence[Sequence[int | None]]) -> float:
    """Share of groups whose majority answer is gold-correct (no answer at all = wrong)."""
    return sum(majority_correct(correct, clusters)) / max(1, len(correct))


def _valid_scores(rewards: torch.Tensor, valid: torch.Tensor, g: int, n: int) -> list[tuple[float, int]]:
    return [(float(rewards[g, i]), i) for i in range(n) if valid[g, i]]


def reward_accuracy(correct: Correct, rewards: torch.Tensor, valid: torch.Tensor) -> float:
    """Share of binary (0/1) valid rewards that equal the gold reward; nan when there is none."""
    match, n = 0, 0
    for g, cor in enumerate(correct):
        for r, i in _valid_scores(rewards, valid, g, len(cor)):
            if r in (0.0, 1.0):
                match += (r == 1.0) == bool(cor[i])
                n += 1
    return match / n if n else float("nan")


def pseudo_label_accuracy(correct: Correct, rewards: torch.Tensor, valid: torch.Tensor) -> float:
    """Share of groups whose highest-reward completion (ties to the first) is correct; groups without
    a valid reward count as wrong."""
    ok = 0
    for g, cor in enumerate(correct):
        vals = _valid_scores(rewards, valid, g, len(cor))
        if vals:
            ok += bool(cor[max(vals, key=lambda t: (t[0], -t[1]))[1]])
    return ok / max(1, len(correct))


def oracle_metrics(correct: Correct, clusters: Sequence[Sequence[int | None]],
                   rewards: torch.Tensor, valid: torch.Tensor) -> dict[str, float | None]:
    """All oracle metrics of one step; nan values are returned as None (JSON null)."""
    flat_c = [c for g in correct for c in g]
    pairs = [(float(rewards[g, i]), correct[g][i]) for g in range(len(correct)) for i in range(len(correct[g]))
             if valid[g, i]]
    out = {
        "oracle/accuracy": sum(flat_c) / max(1, len(flat_c)),
        "oracle/label_accuracy": label_accuracy(correct, clusters),
        "oracle/pseudo_label_accuracy": pseudo_label_accuracy(correct, rewards, valid),
        "oracle/reward_accuracy": reward_accuracy(correct, rewards, valid),
        "oracle/reward_correlation": point_biserial([s for s, _ in pairs], [c for _, c in pairs]),
    }
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


class SolvedTransitions:
    """Per problem id: was its majority answer gold-correct at the previous visit (a visit = a step in which
    the problem is in the batch)? :meth:`update` takes the step's ids and one boolean per group (the
    trainer's verdict on the majority completion; no answer = unsolved), never a gold answer, and counts
    this step's transitions among revisited problems. State in checkpoints (:meth:`state_dict`).

    >>> t = SolvedTransitions()
    >>> t.update(["a", "b"], [True, False])["oracle/solved_to_unsolved"]
    0
    >>> t.update(["a", "b", "c"], [False, True, True])
    {'oracle/solved_to_unsolved': 1, 'oracle/unsolved_to_solved': 1}
    """

    def __init__(self) -> None:
        self.solved: dict[str, bool] = {}

    def update(self, problem_ids: Sequence[str], solved: Sequence[bool]) -> dict[str, int]:
        if len(problem_ids) != len(solved):
            raise ValueError(f"{len(problem_ids)} problem ids but {len(solved)} verdicts; give one per group")
        lost = gained = 0
        for pid, now in zip(problem_ids, solved):
            before = self.solved.get(pid)
            lost += before is True and not now
            gained += before is False and bool(now)
            self.solved[pid] = bool(now)
        return {"oracle/solved_to_unsolved": lost, "oracle/unsolved_to_solved": gained}

    def state_dict(self) -> dict[str, Any]:
        return {"solved": dict(self.solved)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.solved = dict(state.get("solved", {}))
