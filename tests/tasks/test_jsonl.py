"""jsonl task: the real benchmark files, error messages, choice extraction, graders."""

import json
import random
from pathlib import Path

import pytest

from urlvr.errors import UrlvrError
from urlvr.tasks import SPLITS, get_task
from urlvr.tasks.jsonl import FileTask, choice_letter

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "math500.jsonl").is_file(),
                                reason=f"benchmark data not found at {DATA} (expected <repo>/../shared/data)")


@needs_data
@pytest.mark.parametrize("name, rows, grader", [("math500", 500, "math"), ("aime24", 30, "math"),
                                                ("amc", 83, "math"), ("gpqa_diamond", 198, "choice")])
def test_loads_the_benchmarks(name, rows, grader):
    task = get_task("jsonl", path=str(DATA / f"{name}.jsonl"), grader=grader)
    assert len(task) == rows
    examples = task.examples("test", rows)
    assert len({e.problem.id for e in examples}) == rows
    assert all(e.answer and e.problem.question for e in examples)
    for split in SPLITS:  # a benchmark file has one split: all return the same rows
        assert task.examples(split, 5, seed=7) == examples[:5]
    prompt = task.prompt(examples[0].problem)
    assert prompt.startswith(examples[0].problem.question) and prompt.endswith("within \\boxed{}.\n")
    with pytest.raises(UrlvrError, match=f"has {rows} problems"):
        task.examples("test", rows + 1)


@needs_data
def test_math500_first_row_and_limit():
    task = FileTask(str(DATA / "math500.jsonl"), limit=3)
    ex = task.examples("test", 3)
    assert len(task) == 3 and ex[0].problem.id == "test/precalculus/807.json"
    assert ex[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert task.target(ex[0]) == "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}"


@needs_data
def test_math_grader_uses_math_equivalence():
    amc = FileTask(str(DATA / "amc.jsonl"))
    assert amc.examples("test", 1)[0].answer == "142.0"
    assert amc.check(amc.extract("so $m+n = \\boxed{142}$"), "142.0")
    assert not amc.check(amc.extract("\\boxed{143}"), "142.0") and not amc.check(None, "142.0")
    math500 = FileTask(str(DATA / "math500.jsonl"), limit=1)
    gold = math500.examples("test", 1)[0].answer
    assert math500.check("(3,\\pi/2)", gold) and not math500.check("(3, \\pi)", gold)
    assert math500.canonical("\\left( 3, \\dfrac{\\pi}{2} \\right)") == "(3,\\frac{\\pi}{2})"


@needs_data
def test_gpqa_choice_grader():
    task = FileTask(str(DATA / "gpqa_diamond.jsonl"), grader="choice")
    gold = task.examples("test", 1)[0].answer
    assert gold == "D"
    assert task.check(task.extract("... \\boxed{D}"), gold) and task.check(task.extract("The answer is (D)."), gold)
    assert not task.check(task.extract("\\boxed{C}"), gold) and not task.check(task.extract("\\boxed{d}"), gold)
    assert "letter" in task.prompt(task.examples("test", 1)[0].problem)
    assert task.near_miss(task.examples("test", 1)[0], random.Random(0)) in "ABC"


@pytest.mark.parametrize("completion, letter", [
    ("\\boxed{C}", "C"), ("\\boxed{(C)}", "C"), ("\\boxed{\\text{C}}", "C"), ("\\boxed{\\text{(C)}}", "C"),
    ("\\boxed{C. Cold atomic medium}", "C"), ("\\boxed{ $B$ }", "B"), ("\\boxed{A} then \\boxed{B}", "B"),
    ("The answer is (C).", "C"), ("the answer is: B", "B"), ("Answer: D", "D"),
    ("answer is A, not B. Answer: (C)", "C"),
    ("\\boxed{c}", None), ("\\boxed{CD}", None), ("\\boxed{12}", None), ("\\boxed{}", None), ("\\boxed{C", None),
    ("no answer here", None), ("The answer is Carbon", None), ("", None),
])
def test_choice_letter(completion, letter):
    assert choice_letter(completion) == letter


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, "bad.jsonl", ['{"prompt": "1+1", "answer": "2"}', "", '{"prompt": "2+2", "answer": '])
    with pytest.raises(UrlvrError, match=r"bad\.jsonl:3: malformed JSON"):
        FileTask(path)


def test_missing_field_names_file_line_field_and_option(tmp_path):
    path = _write(tmp_path, "q.jsonl", ['{"prompt": "1+1", "answer": "2"}', "", '{"question": "2+2", "answer": "4"}'])
    with pytest.raises(UrlvrError) as err:
        FileTask(path)
    message = str(err.value)
    assert "q.jsonl:3" in message and "'prompt'" in message and "question_field" in message and "\n" not in message
    with pytest.raises(UrlvrError, match=r"q\.jsonl:1: missing field 'question'"):  # row 1 lacks it
        FileTask(path, question_field="question")
    with pytest.raises(UrlvrError, match="answer_field"):
        FileTask(_write(tmp_path, "a.jsonl", ['{"prompt": "1+1"}']))


def test_ids_fallback_unlabelled_json_list_and_duplicates(tmp_path):
    path = _write(tmp_path, "n.jsonl", ['{"prompt": "1+1", "answer": 2}', '{"prompt": "2+2", "answer": 4}'])
    ex = FileTask(path).examples("train", 2)
    assert [e.problem.id for e in ex] == ["0", "1"] and [e.answer for e in ex] == ["2", "4"]
    assert FileTask(path, answer_field=None).examples("train", 2)[1].answer is None
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps([{"q": "3+3", "a": "6", "id": "x"}]), encoding="utf-8")
    assert FileTask(str(listed), question_field="q", answer_field="a").examples("test", 1)[0].problem.id == "x"
    dup = _write(tmp_path, "d.jsonl", ['{"prompt": "a", "answer": "1", "id": 7}',
                                       '{"prompt": "b", "answer": "2", "id": 7}'])
    with pytest.raises(UrlvrError, match=r"d\.jsonl:2: duplicate id '7' \(also at 1\)"):
        FileTask(dup)


def test_exact_grader_and_custom_template(tmp_path):
    path = _write(tmp_path, "e.jsonl", ['{"prompt": "Say hi", "answer": "hello world"}'])
    task = FileTask(path, grader="exact", template="Q: {question}\nA in \\boxed{{}}:")
    problem = task.examples("test", 1)[0].problem
    assert task.prompt(problem) == "Q: Say hi\nA in \\boxed{}:"
    assert task.check(task.extract("\\boxed{hello  world}"), "hello world") and not task.check("hello", "hello world")


@pytest.mark.parametrize("options", [{"grader": "fuzzy"}, {"limit": 0}, {"template": "no placeholder"},
                                     {"template": "{question} \\boxed{}"}, {"path": "/nonexistent/x.jsonl"},
                                     {"splits": "all"}])
def test_bad_options(tmp_path, options):
    path = _write(tmp_path, "ok.jsonl", ['{"prompt": "1+1", "answer": "2"}'])
    with pytest.raises(UrlvrError):
        get_task("jsonl", **{"path": path, **options})


def test_empty_file(tmp_path):
    with pytest.raises(UrlvrError, match="no problems"):
        FileTask(_write(tmp_path, "empty.jsonl", [""]))


def _verl_rows():
    """Rows in verl/TTRL's layout: a chat-message prompt and the answer nested under reward_model."""
    return [{"prompt": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": f"What is {i}+{i}?"}],
             "reward_model": {"ground_truth": str(2 * i), "style": "rule"}, "extra_info": {"index": i}}
            for i in range(1, 5)]


VERL = dict(question_field="prompt", answer_field="reward_model.ground_truth", id_field="extra_info.index")


def _read_all(path, **options):
    task = get_task("jsonl", path=str(path), grader="exact", **options)
    return [(e.problem.id, e.problem.question, e.answer) for e in task.examples("test", len(task))]


def test_parquet_and_save_to_disk_read_like_jsonl(tmp_path):
    import datasets

    rows = _verl_rows()
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    want = [(str(i), f"What is {i}+{i}?", str(2 * i)) for i in range(1, 5)]  # the last user turn, nested fields
    for path in ("d.jsonl", "d.parquet", "saved"):
        assert _read_all(tmp_path / path, **VERL) == want, path


def test_bad_table_files_are_one_line(tmp_path):
    import datasets

    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UrlvrError, match="bad.parquet is not a Parquet file that can be read"):
        _read_all(tmp_path / "bad.parquet")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_verl_rows()),
                          "test": datasets.Dataset.from_list(_verl_rows())}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UrlvrError, match="holds the splits train, test; give the folder of one split"):
        _read_all(tmp_path / "dd", **VERL)
    assert len(_read_all(tmp_path / "dd" / "test", **VERL)) == 4
    rows = _verl_rows()
    del rows[2]["reward_model"]["ground_truth"]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "missing.parquet"))
    with pytest.raises(UrlvrError, match=r"missing.parquet:row 2: missing field 'reward_model.ground_truth'"):
        _read_all(tmp_path / "missing.parquet", **VERL)


@pytest.mark.parametrize("fallback, completion, answer", [
    ((), "The answer is 8.", None),
    (("answer_is",), "The answer is 8.", "8"),
    (("answer_is",), "So \\boxed{7}. The answer is 8.", "7"),  # the box always wins
    (("last_number",), "4 plus 4 makes 8", "8"),
    (("answer_is", "last_number"), "4 plus 4 makes 8", "8"),
    (("answer_is", "last_number"), "no idea", None),
])
def test_answer_fallbacks_are_a_task_option(tmp_path, fallback, completion, answer):
    (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": "What is 4+4?", "answer": "8"}) + "\n")
    task = get_task("jsonl", path=str(tmp_path / "d.jsonl"), grader="math", fallback=list(fallback))
    assert task.extract(completion) == answer
    assert task.rules().extract(completion) == answer  # what label-free groups carry


def test_unknown_fallback_is_refused(tmp_path):
    with pytest.raises(UrlvrError, match="unknown answer fallback 'last_word'; choose from: answer_is, last_number"):
        get_task("arithmetic", fallback="last_word")


def test_a_huge_question_is_refused_with_its_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "1+1", "answer": "2"}) + "\n" + json.dumps({"prompt": "x" * 200_001,
                                                                                       "answer": "1"}) + "\n")
    with pytest.raises(UrlvrError, match=r"d.jsonl:2: the question has 200,001 characters, more than "
                                         r"max_question_chars=100,000"):
        get_task("jsonl", path=str(path))
    assert len(get_task("jsonl", path=str(path), max_question_chars=300_000)) == 2
