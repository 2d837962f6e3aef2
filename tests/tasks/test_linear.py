"""linear task: generation, splits, root parsing, verifier by substitution, systematic error."""

from fractions import Fraction

import pytest

from urlvr.errors import UrlvrError
from urlvr.tasks import SPLITS, Example, Problem, get_task
from urlvr.tasks.linear import LinearTask, parse_number


def _problem(a, b, c):
    q = f"{a}x{b:+d}={c}"
    return Problem(q, q, "b_pos" if b > 0 else "b_neg", {"a": a, "b": b, "c": c})


def test_determinism_and_no_repeats():
    task = get_task("linear")
    first = task.examples("train", 200, seed=0)
    assert first == task.examples("train", 200, seed=0)
    assert first != task.examples("train", 200, seed=1)
    assert len({e.problem.id for e in first}) == 200


def test_splits_are_disjoint_and_complete():
    task = LinearTask(max_a=3, max_b=3, max_x=2)
    sizes = {s: task._pool_size(s) for s in SPLITS}
    assert sum(sizes.values()) == 2 * 6 * 5
    ids = [{e.problem.id for e in task.examples(s, sizes[s])} for s in SPLITS]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    with pytest.raises(UrlvrError, match=r"only \d+ test problems exist"):
        task.examples("test", sizes["test"] + 1)


def test_generated_problems_are_consistent():
    task = LinearTask()
    for ex in task.examples("test", 100, seed=5):
        d, x = ex.problem.data, int(ex.answer)
        assert d["a"] * x + d["b"] == d["c"] and 2 <= d["a"] <= 9 and d["b"] != 0 and abs(x) <= 9
        assert ex.problem.kind == ("b_pos" if d["b"] > 0 else "b_neg")
        assert ex.problem.question == f"{d['a']}x{d['b']:+d}={d['c']}"
        assert task.verify(ex.problem, ex.answer) and task.check(ex.answer, ex.answer)


@pytest.mark.parametrize("text, value", [
    ("5", Fraction(5)), ("-5", Fraction(-5)), ("x=5", Fraction(5)), (" x = -3/2 ", Fraction(-3, 2)),
    ("1.5", Fraction(3, 2)), ("\\frac{3}{2}", Fraction(3, 2)), ("-\\dfrac{3}{2}", Fraction(-3, 2)),
    ("$7$", Fraction(7)), ("5/0", None), ("2+3", None), ("five", None), ("", None), (None, None),
    ("__import__('os').system('true')", None), ("9" * 100, None), ("1e5", None), ("3/-2", None),
    ("٣", None), ("1_0", None),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("answer, ok", [
    ("5", True), ("x=5", True), ("10/2", True), ("5.0", True), ("\\frac{10}{2}", True),
    ("6", False), ("-5", False), ("", False), (None, False), ("x", False), ("5x", False),
])
def test_verify_substitutes_the_root(answer, ok):
    assert LinearTask().verify(_problem(3, 5, 20), answer) is ok


def test_verify_fractional_root():
    problem = _problem(2, 1, 4)  # x = 3/2
    assert all(LinearTask().verify(problem, a) for a in ("3/2", "1.5", "\\frac{3}{2}", "6/4"))
    assert not LinearTask().verify(problem, "1")


@pytest.mark.parametrize("completion, answer", [
    ("3x = 15 so \\boxed{5}", "5"), ("\\boxed{5", None), ("x is 5", None),
    ("\\boxed{4} then \\boxed{x=5}", "x=5"), ("\\boxed{}", ""),
])
def test_extract_and_check(completion, answer):
    task = LinearTask()
    assert task.extract(completion) == answer
    assert task.check(answer, "5") is (answer in ("5", "x=5"))


def test_canonical_groups_equal_numbers():
    task = LinearTask()
    assert task.canonical("x = 10/2") == task.canonical("5") == task.canonical("5.0") == "5"
    assert task.canonical("x y") == "xy"


@pytest.mark.parametrize("a, b, c, wrong", [(2, 4, 10, "7"), (3, 6, 0, "2"), (4, -2, 6, "1"), (3, 5, 20, None)])
def test_systematic_error_table(a, b, c, wrong):
    gold = str(Fraction(c - b, a))
    assert LinearTask().systematic_error(Example(_problem(a, b, c), gold)) == wrong


def test_systematic_error_is_wrong_exactly_when_a_divides_2b():
    task = LinearTask()
    hits = 0
    for ex in task.examples("train", 400, seed=0):
        d, wrong = ex.problem.data, task.systematic_error(ex)
        if (2 * d["b"]) % d["a"] == 0:
            hits += 1
            assert wrong is not None and not task.check(wrong, ex.answer)
            assert not task.verify(ex.problem, wrong)
        else:
            assert wrong is None
    assert 50 < hits < 350  # a controllable share, neither none nor all


@pytest.mark.parametrize("options", [{"max_a": 1}, {"max_b": 0}, {"max_x": -1}, {"max_x": "9"}, {"digits": 2}])
def test_bad_options(options):
    with pytest.raises(UrlvrError):
        get_task("linear", **options)
