"""The evaluation engine's sampling and grading (maj@k over math-equivalence classes) and its results schema."""

import json
from types import SimpleNamespace

import pytest
import torch

from urlvr.errors import UrlvrError
from urlvr.evaluation.harness import check_schema, sample_problems
from urlvr.evaluation.metrics import summarize
from urlvr.grading import shared_grader
from urlvr.rollout import SamplingSettings
from urlvr.tasks import get_task


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
                           SamplingSettings(), seed=0, rules=task.rules(equivalence))
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
    assert half_task.check_many(answers, ["\\frac{1}{2}"] * 6, shared_grader()) == expected
    arith = get_task("arithmetic", digits=1, ops="+")
    assert arith.check_many(["07", "7", None], ["7", "8", "7"]) == [True, False, False]


# ---- schema ---------------------------------------------------------------------------------------

def test_check_schema_names_the_bad_key():
    schema = {"a": int, "b": [{"c": str}], "m": {"*": {"mean": (int, float)}}}
    check_schema({"a": 1, "b": [{"c": "x"}], "m": {"avg@2": {"mean": 0.5}}, "extra": None}, schema)
    for bad, where in [({"b": [], "m": {}}, "missing key 'a'"), ({"a": True, "b": [], "m": {}}, "results.a"),
                       ({"a": 1, "b": [{"c": 3}], "m": {}}, r"results.b\[0\].c"),
                       ({"a": 1, "b": [], "m": {"avg@2": {"mean": "x"}}}, r"results.m.avg@2.mean")]:
        with pytest.raises(UrlvrError, match=where):
            check_schema(bad, schema)
