"""Evaluation core: pass@k against enumeration, maj@k over math-equivalence classes, bootstrap, pairing."""

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from urlvr.errors import UrlvrError
from urlvr.evaluation import (
    benchmark_metrics,
    bootstrap_ci,
    check_schema,
    compare_results,
    gold_checks,
    paired_difference,
    pass_at_k,
    problem_stats,
    sample_problems,
    settings_differences,
    summarize,
)
from urlvr.rollout import SamplingSettings
from urlvr.tasks import get_task


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


# ---- sampling rows and maj@k ---------------------------------------------------------------------

class ScriptedSampler:
    """Returns fixed completions in order (one per prompt), like a sampler that always says the same."""

    def __init__(self, texts):
        self.texts = list(texts)

    def generate(self, prompts, settings, seed):
        texts, self.texts = self.texts[: len(prompts)], self.texts[len(prompts):]
        assert len(texts) == len(prompts)
        return SimpleNamespace(texts=texts, truncated=torch.zeros(len(texts), dtype=torch.bool),
                               mask=torch.ones(len(texts), 4, dtype=torch.bool))


@pytest.fixture(scope="module")
def half_task(tmp_path_factory):
    """A one-problem math benchmark whose gold answer is 1/2."""
    path = tmp_path_factory.mktemp("bench") / "half.jsonl"
    path.write_text(json.dumps({"id": "h", "prompt": "Half of one?", "answer": "\\frac{1}{2}"}) + "\n")
    return get_task("jsonl", path=str(path), grader="math")


def _maj(task, answers, equivalence):
    texts = ["no answer" if a is None else f"so \\boxed{{{a}}}" for a in answers]
    rows = sample_problems(ScriptedSampler(texts), task, task.examples("test", 1), len(texts),
                           SamplingSettings(), seed=0, equivalence=equivalence)
    return summarize(rows, len(texts)), rows


@pytest.mark.parametrize("answers, equivalence, maj", [
    # \frac{1}{2}, 0.5 and 1/2 are one class under math equivalence: 3 votes beat 2 for "3"
    (["3", "\\frac{1}{2}", "0.5", None, "1/2", "3"], "math", 1.0),
    (["3", "\\frac{1}{2}", "0.5", None, "1/2", "3"], "canonical", 0.0),  # raw strings: "3" wins
    (["4", "0.5", "1/2", "4.0"], "math", 0.0),  # 2-2 tie: the class seen first (4) wins
    (["0.5", "4", "4.0", "1/2"], "math", 1.0),  # same tie, 1/2's class seen first
    ([None, None, "\\dfrac12"], "math", 1.0),  # unparsable answers do not vote
    ([None, None, None], "math", 0.0),  # nothing parsable: wrong
])
def test_maj_at_k_over_math_equivalence_classes(half_task, answers, equivalence, maj):
    s, rows = _maj(half_task, answers, equivalence)
    k = len(answers)
    assert s[f"maj@{k}"] == maj
    assert s["unparsable_rate"] == pytest.approx(sum(a is None for a in answers) / k)
    gold_ok = [a is not None and a not in ("3", "4", "4.0") for a in answers]
    assert [r["correct"] for r in rows] == gold_ok
    assert s[f"avg@{k}"] == pytest.approx(sum(gold_ok) / k)


def test_batched_gold_checks_equal_task_check(half_task):
    answers = ["0.5", "\\frac12", "2", None, "1/2", "(1/2)"]
    expected = [half_task.check(a, "\\frac{1}{2}") for a in answers]
    assert gold_checks(half_task, answers, ["\\frac{1}{2}"] * 6) == expected
    arith = get_task("arithmetic", digits=1, ops="+")
    assert gold_checks(arith, ["07", "7", None], ["7", "8", "7"]) == [True, False, False]


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


def _result(**settings):
    per_problem = [{"id": str(i), "avg@2": [0.0, 0.5], "maj@2": [0.0, 1.0], "pass@2": [0.0, 1.0]} for i in range(4)]
    base = {"k": 2, "n": 2, "seeds": [0, 1], "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8,
            "system_prompt": None, "chat": False, "template_override": None}
    return {"settings": {**base, **settings}, "grader": {"version": "math-verify==0.9.0;config=v1"},
            "benchmarks": [{"name": "b", "grader": "math", "equivalence": "math", "template": "{question}",
                            "data": {"task": "jsonl", "sha256": "ab", "options": {}, "split": "all", "problems": 4,
                                     "limit": None, "path": "/x/b.jsonl"},
                            "per_problem": per_problem}]}


@pytest.mark.parametrize("change, word", [
    ({"temperature": 0.6}, "temperature"), ({"top_p": 0.9}, "top_p"), ({"max_new_tokens": 9}, "max_new_tokens"),
    ({"k": 4}, "k"), ({"n": 4}, "n"), ({"seeds": [0, 1, 2]}, "seeds"),
    ({"system_prompt": "Be brief."}, "system_prompt"),
    ({"chat": True}, "chat"), ({"template_override": "Q: {question}"}, "template_override"),
])
def test_settings_differences_name_each_setting(change, word):
    assert settings_differences(_result(), _result()) == []
    diffs = settings_differences(_result(), _result(**change))
    assert len(diffs) == 1 and diffs[0].startswith(word + ":")


def test_settings_differences_in_data_template_and_grader():
    other = _result()
    other["benchmarks"][0]["data"].update(sha256="cd", path="/elsewhere/b.jsonl")
    other["benchmarks"][0]["template"] = "{question} boxed"
    other["grader"]["version"] = "math-verify==0.9.1;config=v1"
    diffs = settings_differences(_result(), other)
    assert any(d.startswith("b data sha256") for d in diffs) and any(d.startswith("b template") for d in diffs)
    assert any(d.startswith("grader version") for d in diffs) and not any("path" in d for d in diffs)


def test_compare_results_pairs_problems():
    base, trained = _result(), _result()
    for row in trained["benchmarks"][0]["per_problem"]:
        row["avg@2"] = [1.0, 1.0]
    rows = {r["metric"]: r for r in compare_results(base, trained)}
    assert set(rows) == {"avg@2", "maj@2", "pass@2"}
    assert rows["avg@2"]["base"] == 0.25 and rows["avg@2"]["trained"] == 1.0 and rows["avg@2"]["diff"] == 0.75
    assert rows["maj@2"]["diff"] == 0 and rows["maj@2"]["p_value"] == 1.0


# ---- schema ---------------------------------------------------------------------------------------

def test_check_schema_names_the_bad_key():
    schema = {"a": int, "b": [{"c": str}], "m": {"*": {"mean": (int, float)}}}
    check_schema({"a": 1, "b": [{"c": "x"}], "m": {"avg@2": {"mean": 0.5}}, "extra": None}, schema)
    for bad, where in [({"b": [], "m": {}}, "missing key 'a'"), ({"a": True, "b": [], "m": {}}, "results.a"),
                       ({"a": 1, "b": [{"c": 3}], "m": {}}, r"results.b\[0\].c"),
                       ({"a": 1, "b": [], "m": {"avg@2": {"mean": "x"}}}, r"results.m.avg@2.mean")]:
        with pytest.raises(UrlvrError, match=where):
            check_schema(bad, schema)
