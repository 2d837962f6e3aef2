"""Oracle metrics on hand-built cases, and proof that no reward can reach them."""

import ast
import math
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from urlvr.watch.oracle import (label_accuracy, oracle_metrics, point_biserial, pseudo_label_accuracy,
                                  reward_accuracy)

ALL = torch.ones(2, 4, dtype=torch.bool)


def test_label_accuracy():
    correct = [[True, True, False, False], [False, False, False, True]]
    clusters = [[0, 0, 1, 1], [0, 0, None, 1]]  # tie -> first seen (right); majority 0 (wrong)
    assert label_accuracy(correct, clusters) == 0.5
    assert label_accuracy([[False, False]], [[None, None]]) == 0.0  # no answer at all = wrong


def test_reward_accuracy_counts_binary_rewards_only():
    correct = [[True, True, False, False], [False, False, False, True]]
    # majority-vote rewards: group 1 right majority (all match), group 2 wrong majority 0 of 4 match
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    assert reward_accuracy(correct, rewards, ALL) == pytest.approx((4 + 1) / 8)
    half = torch.tensor([[0.5, 0.5, 0.5, 0.5], [1.0, 1.0, 0.0, 0.0]])  # continuous rewards are not counted
    assert reward_accuracy(correct, half, ALL) == pytest.approx(1 / 4)
    assert math.isnan(reward_accuracy(correct, half, torch.tensor([[True] * 4, [False] * 4])))


def test_collapsed_wrong_majority_has_zero_reward_accuracy():
    """The Model Collapse Step's event: every completion agrees on a wrong answer, so every reward lies."""
    correct = [[False] * 8]
    assert reward_accuracy(correct, torch.ones(1, 8), torch.ones(1, 8, dtype=torch.bool)) == 0.0


def test_pseudo_label_accuracy():
    correct = [[False, True, False], [True, False, False]]
    rewards = torch.tensor([[0.2, 0.9, 0.9], [0.0, 0.0, 0.0]])  # ties -> first: completion 1, then 0
    assert pseudo_label_accuracy(correct, rewards, torch.ones(2, 3, dtype=torch.bool)) == 1.0
    valid = torch.tensor([[True, False, True], [False, True, True]])
    assert pseudo_label_accuracy(correct, rewards, valid) == 0.0


def test_point_biserial():
    # r = (M1 - M0) / s * sqrt(p q) = (3.5 - 1.5) / sqrt(1.25) * 0.5
    assert point_biserial([1, 2, 3, 4], [False, False, True, True]) == pytest.approx(2 / math.sqrt(1.25) * 0.5)
    assert point_biserial([1, 2, 3, 4], [True, True, False, False]) == pytest.approx(-0.894427, abs=1e-6)
    assert math.isnan(point_biserial([1, 1, 1], [True, False, True]))
    assert math.isnan(point_biserial([1, 2, 3], [True, True, True]))


def test_oracle_metrics_together():
    correct = [[True, True, False, False], [False, False, False, True]]
    clusters = [[0, 0, 1, 1], [0, 0, None, 1]]
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    m = oracle_metrics(correct, clusters, rewards, ALL)
    assert m["oracle/accuracy"] == 3 / 8
    assert m["oracle/label_accuracy"] == 0.5
    assert m["oracle/pseudo_label_accuracy"] == 0.5
    assert m["oracle/reward_accuracy"] == pytest.approx(5 / 8)
    assert m["oracle/reward_correlation"] == pytest.approx(point_biserial([1, 1, 0, 0, 1, 1, 0, 0],
                                                                          [c for g in correct for c in g]))
    constant = oracle_metrics([[True, True]], [[0, 0]], torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool))
    assert constant["oracle/reward_correlation"] is None  # nan becomes JSON null


def test_no_reward_module_imports_the_oracle():
    for path in sorted((REPO / "urlvr" / "rewards").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            assert not any("oracle" in m for m in mods), f"{path.name} imports {mods}"


def test_importing_the_rewards_does_not_load_the_oracle():
    code = ("import sys, urlvr.rewards; from urlvr.rewards import get_reward, reward_names\n"
            "[get_reward(n) for n in reward_names()]\n"
            "print('urlvr.watch.oracle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
