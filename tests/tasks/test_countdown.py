"""countdown task: generation, safe expression verifier, gold check by verification."""

from collections import Counter
from fractions import Fraction

import pytest

from urlvr.errors import UrlvrError
from urlvr.tasks import SPLITS, Problem, get_task
from urlvr.tasks.countdown import CountdownTask, evaluate, reachable

P = Problem("24 from 3 5 8", "24 from 3 5 8", "n3", {"numbers": [3, 5, 8], "target": 24})
P_TWICE = Problem("64 from 2 8 8", "64 from 2 8 8", "n3", {"numbers": [2, 8, 8], "target": 64})


def test_determinism_no_repeats_and_disjoint_splits():
    task = get_task("countdown", n_numbers=3)
    first = task.examples("train", 100, seed=0)
    assert first == task.examples("train", 100, seed=0)
    assert first != task.examples("train", 100, seed=1)
    ids = [{e.problem.id for e in task.examples(s, 150, seed=0)} for s in SPLITS]
    assert all(len(s) == 150 for s in ids)
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


@pytest.mark.parametrize("options", [{"n_numbers": 3}, {"n_numbers": 4}, {"n_numbers": 3, "division": True}])
def test_gold_answers_use_every_number_and_verify(options):
    task = CountdownTask(**options)
    for ex in task.examples("test", 40, seed=0):
        d = ex.problem.data
        assert ex.problem.question == f"{d['target']} from {' '.join(map(str, d['numbers']))}"
        assert len(d["numbers"]) == options["n_numbers"] and d["target"] not in d["numbers"]
        assert 1 <= d["target"] <= 100
        value, used = evaluate(ex.answer)
        assert value == d["target"] and sorted(used.elements()) == d["numbers"]
        assert task.verify(ex.problem, ex.answer) and task.check(ex.answer, ex.answer)
        assert "/" not in ex.answer or task.division


def test_reachable_small():
    assert reachable((2, 3)) == {5: "2+3", 6: "2*3", 1: "3-2"}
    assert reachable((2, 6), division=True)[3] == "6/2"
    assert 3 not in reachable((2, 6))


@pytest.mark.parametrize("answer, ok", [
    ("3*8", True), ("8*3", True), (" 3 * 8 ", True), ("(3*8)", True), ("3 \\times 8", True), ("3\\cdot8", True),
    ("3*8=24", True), ("$3*8$", True), ("(5-3)*8+8", False), ("(8-5)*8", False), ("3*8=25", False),
    ("4*6", False), ("3*5+9", False), ("24", False), ("3+5+8", False), ("", False), (None, False),
    ("8/(5-3)*3*2", False), ("__import__('os').system('true')", False), ("2**99999", False), ("3**2", False),
    ("-3+27", False), ("x*8", False), ("abs(3)*8", False), ("3.0*8", False), ("3*8 3", False),
    ("[3*8][0]", False), ("3*8=²", False), ("3*8=024", True), ("3*８", False), ("3*8;1", False),
    ("(" * 300 + "3" + ")" * 300, False), ("True*24", False),
])
def test_verify(answer, ok):
    assert CountdownTask().verify(P, answer) is ok


def test_verify_multiset_and_division():
    task = CountdownTask()
    assert task.verify(P_TWICE, "8*8") and not task.verify(P_TWICE, "8*8*8/8")
    assert not task.verify(P_TWICE, "2*2*2*8")  # 2 given once
    with_div = CountdownTask(division=True)
    p = Problem("4 from 2 8 9", "4 from 2 8 9", "n3", {"numbers": [2, 8, 9], "target": 4})
    assert with_div.verify(p, "8/2") and not task.verify(p, "8/2")
    assert not with_div.verify(p, "8/(9-9)") and not with_div.verify(p, "9/(2-2)")
    # intermediates may be fractions (8/6), only the final value must be the target
    assert with_div.verify(Problem("", "", "", {"numbers": [3, 6, 8], "target": 4}), "8/6*3")


def test_evaluate():
    assert evaluate("(8-5)*8") == (Fraction(24), Counter({8: 2, 5: 1}))
    assert evaluate("7/2") == (Fraction(7, 2), Counter({7: 1, 2: 1}))
    assert evaluate("7/2", division=False) is None
    for bad in ("2**99999", "__import__('os')", "1/0", "lambda: 1", "a", "1 if 1 else 2", "", "=24", "1=x"):
        assert evaluate(bad) is None, bad


def test_check_accepts_any_valid_expression_for_the_gold_problem():
    task = CountdownTask()
    gold = "(5-3)*8+8"  # numbers 3 5 8 8, target 24
    assert task.check(gold, gold) and task.check("3*8", gold) and task.check("(8+8)+(5+3)", gold)
    assert not task.check("3*8*1", gold) and not task.check("8*8-5*8", gold) and not task.check(None, gold)
    assert not task.check("6*4", gold) and not task.check("25", gold)


@pytest.mark.parametrize("completion, answer", [
    ("so \\boxed{3*8}", "3*8"), ("\\boxed{3*8", None), ("3*8", None), ("\\boxed{1} \\boxed{(3)*8}", "(3)*8"),
    ("\\boxed{}", ""),
])
def test_extract(completion, answer):
    task = CountdownTask()
    assert task.extract(completion) == answer
    assert task.verify(P, answer) is (answer in ("3*8", "(3)*8"))


def test_canonical_near_miss_and_systematic_error():
    task = CountdownTask()
    assert task.canonical(" 3 \\times 8 ") == task.canonical("3*8") == "3*8"
    assert task.canonical("8*3") != task.canonical("3*8")
    import random

    for ex in task.examples("validation", 30, seed=0):
        assert task.systematic_error(ex) is None
        assert not task.verify(ex.problem, task.near_miss(ex, random.Random(0)))


@pytest.mark.parametrize("options", [{"n_numbers": 1}, {"n_numbers": 6}, {"max_number": 1}, {"max_target": 0},
                                     {"division": "yes"}, {"numbers": 3}])
def test_bad_options(options):
    with pytest.raises(UrlvrError):
        get_task("countdown", **options)


def test_too_many_problems_asked():
    task = CountdownTask(n_numbers=2, max_number=3, max_target=10)
    with pytest.raises(UrlvrError, match="found only"):
        task.examples("test", 50)
