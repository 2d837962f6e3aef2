"""Evaluation metrics: pass@k against enumeration, per-problem statistics, bootstrap, paired differences."""

import itertools

import numpy as np
import pytest

from urlvr.evaluation.metrics import (benchmark_metrics, bootstrap_ci, paired_difference, pass_at_k, problem_stats,
                                      summarize)


# ---- pass@k ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_equals_enumeration_of_subsets(n):
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            exact = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12), (n, c, k)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(3, 1, 4)


def test_pass_at_k_is_stable_for_large_n():
    assert 0.0 <= pass_at_k(1000, 3, 500) <= 1.0 and pass_at_k(1000, 0, 500) == 0.0


def _rows(table):
    """sample_problems-like rows from {(seed, id): [correct, ...]} (answers: '1' right, '0' wrong)."""
    return [{"id": pid, "seed": seed, "sample": i, "correct": bool(c), "answer": str(int(c)), "cluster": int(c),
             "truncated": False, "length": 3}
            for (seed, pid), cs in table.items() for i, c in enumerate(cs)]


def test_problem_stats_use_first_k_for_avg_and_maj_and_all_n_for_pass():
    stats = problem_stats(_rows({(0, "a"): [0, 0, 1, 1]}), k=2)[(0, "a")]
    assert stats["avg@2"] == 0.0 and stats["maj@2"] == 0.0
    assert stats["pass@1"] == 0.5 and stats["pass@4"] == 1.0 and stats["pass@2"] == pytest.approx(5 / 6)


def test_summarize_keeps_its_single_seed_contract():
    s = summarize(_rows({(7, "a"): [1, 0], (7, "b"): [0, 0]}), k=2)
    assert set(s) == {"avg@2", "maj@2", "pass@1", "pass@2", "truncation_rate", "unparsable_rate", "length_mean",
                      "problems"}
    assert s["avg@2"] == 0.25 and s["maj@2"] == 0.5 and s["problems"] == 2


def test_benchmark_metrics_per_seed_and_std():
    rows = _rows({(0, "a"): [1, 1], (0, "b"): [0, 0], (1, "a"): [1, 0], (1, "b"): [0, 0]})
    greedy = [{"id": "a", "correct": True}, {"id": "b", "correct": False}]
    metrics, table = benchmark_metrics(rows, 2, 2, ["a", "b"], [0, 1], greedy)
    assert metrics["avg@2"]["per_seed"] == [0.5, 0.25]
    assert metrics["avg@2"]["mean"] == pytest.approx(0.375)
    assert metrics["avg@2"]["std_over_seeds"] == pytest.approx(np.std([0.5, 0.25], ddof=1))
    assert metrics["greedy_accuracy"]["mean"] == 0.5
    assert table[0] == {"id": "a", "avg@2": [1.0, 0.5], "maj@2": [1.0, 1.0], "pass@2": [1.0, 1.0], "greedy": True}


# ---- bootstrap and paired comparison --------------------------------------------------------------

def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_more_problems():
    rng = np.random.default_rng(1)
    widths = []
    for problems in (20, 2000):
        v = rng.integers(0, 2, size=(problems, 3)).astype(float)  # (P, S)
        lo, hi = bootstrap_ci(v)
        assert lo <= v.mean() <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 4
    v = rng.random((30, 3))
    assert bootstrap_ci(v) == bootstrap_ci(v.mean(axis=1)) == bootstrap_ci(v)  # seed-averaged, seeded


def test_paired_difference():
    same = paired_difference([0.2, 0.5, 0.9], [0.2, 0.5, 0.9])
    assert same["diff"] == 0 and same["p_value"] == 1.0
    base = np.zeros((40, 3))
    better = paired_difference(base, base + 0.25)
    assert better["diff"] == pytest.approx(0.25) and better["ci_low"] > 0 and better["p_value"] < 0.001
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    ab, ba = paired_difference(a, b), paired_difference(b, a)
    assert ab["diff"] == pytest.approx(-ba["diff"]) and ab["p_value"] == ba["p_value"]
    noise = paired_difference(a, a + rng.normal(0, 0.01, 50))
    assert noise["p_value"] > 0.01
