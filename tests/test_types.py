"""Gold answers are unreachable from a label-free Group, by construction, on every registered task.

The walker follows everything an object can reach: dataclass fields, ``__dict__`` and ``__slots__``,
containers, bound methods' ``__self__``, functions' closures, defaults and the globals their code
names, ``functools.partial`` arguments. It does not enter modules, classes or tensors.
"""

from __future__ import annotations

import dataclasses
import functools
import types

import pytest
import torch

from conftest import SHARED_DATA
from urlvr.grading import Grader
from urlvr.rewards import get_reward, reward_names
from urlvr.rewards.base import RewardSpec
from urlvr.scoring import build_groups, score_groups
from urlvr.tasks import get_task, task_names
from urlvr.types import Completion, Group, LabeledGroup


def reachable(obj, seen: set[int] | None = None, depth: int = 0):
    """Every object reachable from ``obj`` (see the module docstring), ``obj`` included."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 40 or isinstance(obj, (types.ModuleType, type, torch.Tensor)):
        return
    seen.add(id(obj))
    yield obj
    children: list = []
    if isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return
    if isinstance(obj, dict):
        children += [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children += list(obj)
    elif isinstance(obj, functools.partial):
        children += [obj.func, *obj.args, *obj.keywords.values()]
    elif isinstance(obj, types.MethodType):
        children += [obj.__self__, obj.__func__]
    elif isinstance(obj, types.FunctionType):
        children += [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
        children += [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
        children += [obj.__globals__[n] for n in obj.__code__.co_names if n in obj.__globals__]
    if dataclasses.is_dataclass(obj):
        children += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    if hasattr(obj, "__dict__") and not isinstance(obj, types.FunctionType):
        children.append(vars(obj))
    for slot in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, slot):
            children.append(getattr(obj, slot))
    for child in children:
        yield from reachable(child, seen, depth + 1)


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def strings(obj) -> set[str]:
    return {x for x in reachable(obj) if isinstance(x, str)}


TASKS = {name: {} for name in task_names() if name != "jsonl"}
TASKS["jsonl"] = {"path": str(SHARED_DATA / "math500.jsonl")}


def _step_groups(name: str, grader: Grader):
    """One step's groups as the trainer builds them: the task's rules with a grader that has checked golds."""
    task = get_task(name, **TASKS[name])
    examples = task.examples("validation", 3, seed=0)
    # wrong answers (a completion may legitimately state the gold string itself), checked against gold and
    # clustered for real, so the grader's gold cache and the clusterer's cache are both filled
    texts = [[f"so \\boxed{{{e.answer}1}}", "\\boxed{-7}", "no answer"] for e in examples]
    comps = [[Completion(t, task.extract(t), torch.tensor([1, 2]), {}) for t in ts] for ts in texts]
    rules = task.rules("math" if name == "jsonl" else "canonical", grader.clusterer())
    groups, labeled = build_groups(task, rules, examples, [task.prompt(e.problem) for e in examples], comps, grader)
    for g in groups:
        g.cluster_ids()  # fill the clustering cache too
    return task, examples, groups, labeled


@pytest.mark.parametrize("name", sorted(TASKS))
def test_no_gold_answer_is_reachable_from_a_label_free_group(name):
    if name == "jsonl" and not (SHARED_DATA / "math500.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    with Grader(workers=1, timeout=5.0) as grader:
        task, examples, groups, labeled = _step_groups(name, grader)
        golds = {e.answer for e in examples}
        for g in groups:
            assert type(g) is Group and not hasattr(g, "gold")
            leaked = golds & strings(g)
            assert not leaked, f"gold answer(s) {leaked} reachable from a label-free {name} group"
        # the walker does find gold where it is: in the labelled twin, in the task, in the grader's gold cache
        assert golds <= strings(labeled)
        if name == "jsonl":
            assert golds <= strings(task) and golds <= strings(grader)


def test_the_semi_supervised_label_free_view_carries_no_gold():
    with Grader(workers=1, timeout=5.0) as grader:
        _, examples, _, labeled = _step_groups("arithmetic", grader)
        golds = {e.answer for e in examples}
        seen = []

        def intrinsic(group):
            seen.append(group)
            return [0.0] * len(group)

        from urlvr.rewards import base

        base._REGISTRY["_spy_intrinsic"] = RewardSpec("_spy_intrinsic", intrinsic)
        try:
            semi = get_reward("semi_supervised")
            for lg in labeled:
                semi.fn(lg, alpha=0.0, intrinsic="_spy_intrinsic")
        finally:
            del base._REGISTRY["_spy_intrinsic"]
        assert len(seen) == len(labeled)
        for g in seen:
            assert type(g) is Group and not golds & strings(g)


def test_only_gold_rewards_receive_labeled_groups():
    with Grader(workers=1, timeout=5.0) as grader:
        _, _, groups, labeled = _step_groups("arithmetic", grader)
    seen = []

    def spy(group):
        seen.append(type(group))
        return [0.0] * len(group)

    score_groups(RewardSpec("spy", spy), {}, groups, labeled)
    assert set(seen) == {Group}
    seen.clear()
    score_groups(RewardSpec("spy", spy, needs_gold=True), {}, groups, labeled)
    assert set(seen) == {LabeledGroup}
    label_free = [n for n in reward_names() if not get_reward(n).needs_gold]
    assert "majority_vote" in label_free and "gold" not in label_free


def test_step_gold_verdicts_are_batched_and_match_the_task_check():
    with Grader(workers=1, timeout=5.0) as grader:
        task, examples, _, labeled = _step_groups("linear", grader)
        for lg in labeled:
            assert lg.correct == tuple(task.check(c.answer, lg.gold) for c in lg.completions)
            assert lg.correct[2] is False  # no answer
