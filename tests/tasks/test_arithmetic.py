"""arithmetic task: generation, splits, answers, systematic errors, options."""

import pytest

from urlvr.errors import UrlvrError
from urlvr.tasks import SPLITS, Example, Problem, get_task
from urlvr.tasks.arithmetic import ArithmeticTask


def _ex(a, op, b):
    task = ArithmeticTask(digits=max(len(str(a)), len(str(b))), ops="+-*")
    return task._example(a, op, b)


def test_same_seed_same_examples_other_seed_differs():
    task = get_task("arithmetic", digits=2, ops="+-*")
    first = task.examples("train", 50, seed=3)
    assert first == task.examples("train", 50, seed=3)
    assert first != task.examples("train", 50, seed=4)
    assert len({e.problem.id for e in first}) == 50  # without replacement


def test_splits_are_disjoint_and_cover_the_space():
    task = ArithmeticTask(digits=1, ops="+-*")
    sizes = {s: task._pool_size(s) for s in SPLITS}
    ids = {s: {e.problem.id for e in task.examples(s, sizes[s], seed=0)} for s in SPLITS}
    assert all(len(ids[s]) == sizes[s] for s in SPLITS)
    assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert sum(sizes.values()) == 100 + 55 + 100  # 0..9 squared, a >= b for "-"
    assert sizes["train"] > 4 * sizes["test"]


def test_sampled_splits_are_disjoint_for_two_digits():
    task = ArithmeticTask(digits=2, ops="+-")
    ids = [{e.problem.id for e in task.examples(s, 400, seed=1)} for s in SPLITS]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_asking_for_more_than_exist_says_how_many():
    task = ArithmeticTask(digits=1, ops="+")
    with pytest.raises(UrlvrError, match=r"only \d+ test problems exist.*raise digits"):
        task.examples("test", 100)


def test_questions_answers_and_prompt():
    for ex in ArithmeticTask(digits=3, ops="+-*").examples("validation", 30, seed=0):
        d = ex.problem.data
        assert ex.problem.question == f"{d['a']}{d['op']}{d['b']}"
        a, op, b = d["a"], d["op"], d["b"]
        assert int(ex.answer) == {"+": a + b, "-": a - b, "*": a * b}[op]
        assert 100 <= d["a"] <= 999 and 100 <= d["b"] <= 999
        assert int(ex.answer) >= 0
    task = ArithmeticTask()
    assert task.prompt(Problem("47+38", "47+38")) == "47+38\n"
    assert task.target(Example(Problem("47+38", "47+38"), "85")) == "\\boxed{85}"


@pytest.mark.parametrize("a, op, b, kind", [
    (47, "+", 38, "add/carry"), (12, "+", 34, "add/nocarry"), (95, "+", 5, "add/carry"),
    (52, "-", 38, "sub/borrow"), (58, "-", 32, "sub/noborrow"), (100, "-", 1, "sub/borrow"), (7, "*", 8, "mul"),
])
def test_kinds(a, op, b, kind):
    assert _ex(a, op, b).problem.kind == kind


@pytest.mark.parametrize("completion, answer", [
    ("47+38 = \\boxed{85}", "85"),
    ("\\boxed{12", None),
    ("the answer is 85", None),
    ("\\boxed{84} no wait \\boxed{85}", "85"),
    ("\\boxed{}", ""),
    ("\\boxed{ 85 }", "85"),
])
def test_extract(completion, answer):
    assert ArithmeticTask().extract(completion) == answer


@pytest.mark.parametrize("answer, ok", [("85", True), ("085", True), (" 8 5", True), ("+85", True),
                                        ("86", False), ("8_5", False), ("٨٥", False), ("", False),
                                        ("eighty-five", False), (None, False)])
def test_check(answer, ok):
    assert ArithmeticTask().check(answer, "85") is ok
    assert ArithmeticTask().verify(Problem("47+38", "47+38"), answer) is None  # no programmatic verifier


@pytest.mark.parametrize("a, op, b, wrong", [
    (47, "+", 38, "75"), (57, "+", 68, "15"), (95, "+", 5, "90"), (999, "+", 1, "990"),
    (52, "-", 38, "26"), (100, "-", 1, "101"), (503, "-", 278, "375"),
    (12, "+", 34, None), (58, "-", 32, None), (7, "*", 8, None),
])
def test_systematic_error_table(a, op, b, wrong):
    assert ArithmeticTask().systematic_error(_ex(a, op, b)) == wrong


def test_systematic_error_is_wrong_exactly_on_carry_and_borrow_problems():
    task = ArithmeticTask(digits=3, ops="+-*")
    for ex in task.examples("train", 300, seed=2):
        wrong = task.systematic_error(ex)
        if ex.problem.kind in ("add/carry", "sub/borrow"):
            assert wrong is not None and not task.check(wrong, ex.answer), ex
        else:
            assert wrong is None


@pytest.mark.parametrize("options", [{"digits": 0}, {"digits": 7}, {"digits": "2"}, {"ops": ""},
                                     {"ops": "+/"}, {"ops": "x"}, {"colour": "red"}])
def test_bad_options_raise_one_line(options):
    with pytest.raises(UrlvrError) as err:
        get_task("arithmetic", **options)
    assert "\n" not in str(err.value)


def test_bad_split_and_count():
    with pytest.raises(UrlvrError, match="unknown split"):
        ArithmeticTask().examples("dev", 3)
    with pytest.raises(UrlvrError):
        ArithmeticTask().examples("train", 0)
