"""Comparing two evaluations: refusing unlike settings, pairing problems."""

import pytest

from urlvr.evaluation.compare import compare_results, settings_differences, transitions


def _result(**settings):
    per_problem = [{"id": str(i), "avg@2": [0.0, 0.5], "maj@2": [0.0, 1.0], "pass@2": [0.0, 1.0]} for i in range(4)]
    base = {"k": 2, "n": 2, "seeds": [0, 1], "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8,
            "system_prompt": None, "chat": "auto", "template_override": None}
    return {"settings": {**base, **settings}, "grader": {"version": "math-verify==0.9.0;config=v1"},
            "benchmarks": [{"name": "b", "grader": "math", "equivalence": "math", "template": "{question}",
                            "rendering": {"chat": "auto", "uses_chat_template": False, "system_prompt": None,
                                          "rendered": "What is 1+1?"},
                            "data": {"task": "jsonl", "sha256": "ab", "options": {}, "split": "all", "problems": 4,
                                     "limit": None, "path": "/x/b.jsonl"},
                            "per_problem": per_problem}]}


@pytest.mark.parametrize("change, word", [
    ({"temperature": 0.6}, "temperature"), ({"top_p": 0.9}, "top_p"), ({"max_new_tokens": 9}, "max_new_tokens"),
    ({"k": 4}, "k"), ({"n": 4}, "n"), ({"seeds": [0, 1, 2]}, "seeds"),
    ({"system_prompt": "Be brief."}, "system_prompt"),
    ({"chat": "on"}, "chat"), ({"template_override": "Q: {question}"}, "template_override"),
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


def test_a_different_rendered_prompt_is_refused():
    other = _result()
    other["benchmarks"][0]["rendering"] = {"chat": "auto", "uses_chat_template": True, "system_prompt": None,
                                           "rendered": "<|im_start|>user\nWhat is 1+1?<|im_end|>\n"}
    diffs = settings_differences(_result(), other)
    assert len(diffs) == 1 and diffs[0].startswith("b rendering")


def test_compare_results_pairs_problems():
    base, trained = _result(), _result()
    for row in trained["benchmarks"][0]["per_problem"]:
        row["avg@2"] = [1.0, 1.0]
    rows = {r["metric"]: r for r in compare_results(base, trained)}
    assert set(rows) == {"avg@2", "maj@2", "pass@2"}
    assert rows["avg@2"]["base"] == 0.25 and rows["avg@2"]["trained"] == 1.0 and rows["avg@2"]["diff"] == 0.75
    assert rows["maj@2"]["diff"] == 0 and rows["maj@2"]["p_value"] == 1.0


def test_transitions_count_problems_that_moved():
    base, trained = _result(), _result()
    moves = {"0": ([1.0, 1.0], [1.0, 0.5]), "1": ([1.0, 0.0], [0.0, 0.0]), "2": ([0.0, 0.0], [0.5, 1.0]),
             "3": ([0.0, 0.4], [0.0, 0.5])}  # kept (1.0 -> 0.75), lost (0.5 -> 0), gained, never (0.2 -> 0.25)
    for b_row, t_row in zip(base["benchmarks"][0]["per_problem"], trained["benchmarks"][0]["per_problem"]):
        b_row["maj@2"], t_row["maj@2"] = moves[b_row["id"]]
    [row] = transitions(base, trained)
    assert row == {"benchmark": "b", "metric": "maj@2", "problems": 4, "solved_base": 2, "solved_trained": 2,
                   "kept": 1, "lost": 1, "gained": 1, "never": 1}
    trained["benchmarks"][0]["per_problem"].pop()  # only paired problems count
    assert transitions(base, trained)[0]["problems"] == 3
