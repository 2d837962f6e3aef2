"""Gold answers are unreachable from label-free rewards by construction."""

import dataclasses

import torch

from urlvr.rewards import Group, LabeledGroup, get_reward, reward_names
from urlvr.rollout import RolloutBatch
from urlvr.tasks import get_task
from urlvr.trainer import make_groups, score_groups


def _reachable_strings(obj, seen=None, depth=0):
    """Every string reachable through dataclass fields, containers and object attributes."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth > 8:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _reachable_strings(k, seen, depth + 1)
            yield from _reachable_strings(v, seen, depth + 1)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            yield from _reachable_strings(v, seen, depth + 1)
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _reachable_strings(getattr(obj, f.name), seen, depth + 1)
    elif hasattr(obj, "__self__"):  # bound method: the task it belongs to
        yield from _reachable_strings(obj.__self__, seen, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (torch.Tensor, type)):
        yield from _reachable_strings(vars(obj), seen, depth + 1)


def _groups(task_name="arithmetic", **opts):
    task = get_task(task_name, **opts)
    examples = task.examples("validation", 3)
    texts = ["\\boxed{1}", "\\boxed{2}"] * 3
    B = len(texts)
    z = torch.zeros(B, 1)
    batch = RolloutBatch(prompt_ids=[[1]] * B, tokens=torch.zeros(B, 1, dtype=torch.long),
                         mask=torch.ones(B, 1, dtype=torch.bool), logprob=z, entropy=z, self_certainty=z, top2_gap=z,
                         texts=texts, truncated=torch.zeros(B, dtype=torch.bool))
    return examples, *make_groups(task, examples, batch, 2, "canonical", 100, 2)


def test_label_free_groups_carry_no_gold():
    examples, groups, labeled = _groups()
    for ex, g, lg in zip(examples, groups, labeled):
        assert not isinstance(g, LabeledGroup) and not hasattr(g, "gold")
        strings = set(_reachable_strings(g))
        assert ex.answer not in strings, "gold answer reachable from a label-free group"
        assert ex.answer in set(_reachable_strings(lg))  # the probe does find it where it is


def test_only_gold_rewards_receive_labeled_groups():
    _, groups, labeled = _groups()
    seen = []

    def spy(group):
        seen.append(type(group))
        return [0.0] * len(group)

    from urlvr.rewards.base import RewardSpec

    score_groups(RewardSpec("spy", spy), {}, groups, labeled)
    assert set(seen) == {Group}
    seen.clear()
    score_groups(RewardSpec("spy", spy, needs_gold=True), {}, groups, labeled)
    assert set(seen) == {LabeledGroup}
    label_free = [n for n in reward_names() if not get_reward(n).needs_gold]
    assert "majority_vote" in label_free and "gold" not in label_free
