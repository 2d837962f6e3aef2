"""grading: math-verify equivalence in worker processes, clustering, timeouts, the string normaliser."""

import json
import re
import pickle
import time
from pathlib import Path

import pytest

from urlvr.grading import GRADER_CONFIG, Grader, canonical_answer, grader_version, shared_grader

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "math500.jsonl").is_file(),
                                reason=f"benchmark data not found at {DATA} (expected <repo>/../shared/data)")
SLOW = "2^{2^{2^{2^{30}}}}"  # sympy spends minutes on this; found heavy at parse, never compared
STUCK = "(x+y+z)^{100}"  # light by the heavy check, but its comparison with a number runs past any timeout
DIGITS = "7" * 5000  # past Python's 4,300-digit int-string limit


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=2, timeout=5.0) as g:
        yield g


def _math500():
    return [json.loads(line) for line in (DATA / "math500.jsonl").read_text(encoding="utf-8").splitlines()]


# (gold, pred, equivalent): rewritten forms of real MATH-500 answers, and clearly wrong ones
TABLE = [
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac12", "1/2", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)", True),
    ("\\frac{14}{3}", "\\dfrac{14}{3}", True),
    ("\\frac{14}{3}", "4\\frac{2}{3}", True),
    ("142.0", "142", True),
    ("\\$32,\\!348", "32348", True),
    ("10^\\circ", "10", True),
    ("\\text{(C)}", "C", True),
    ("x=5", "5", True),
    ("3\\sqrt{2}", "\\sqrt{18}", True),
    ("\\sqrt{2}", "1.41421356", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("50\\%", "0.5", True),
    ("p - q", "p-q", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("2^{10}", "1024", True),
    ("\\frac{1}{2}", "\\frac{1}{3}", False),
    ("\\sqrt{2}", "1.414", False),
    ("(3,4]", "(3,4)", False),
    ("p-q", "q-p", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi)", False),
    ("\\frac{14}{3}", "\\frac{3}{14}", False),
    ("\\text{(C)}", "D", False),
    ("142.0", "143", False),
    ("9", "", False),
    ("9", None, False),
    (None, "9", False),
]


def test_equivalence_table(grader):
    got = grader.equivalent_many([(g, p) for g, p, _ in TABLE])
    wrong = [(g, p, e) for (g, p, e), v in zip(TABLE, got) if v != e]
    assert not wrong, wrong
    assert grader.equivalent("\\frac{1}{2}", "0.5") and not grader.equivalent("1", "2")


def test_cache_and_stats(grader):
    grader.equivalent("\\frac{2}{6}", "1/3")
    calls, hits = grader.stats["calls"], grader.stats["cache_hits"]
    assert grader.equivalent_many([("\\frac{2}{6}", "1/3")] * 3) == [True] * 3
    assert grader.stats["calls"] == calls and grader.stats["cache_hits"] == hits + 3
    shortcuts = grader.stats["shortcuts"]
    assert grader.equivalent_many([("7", "7.0"), ("7", "8"), ("x", "x")]) == [True, False, True]
    assert grader.stats["shortcuts"] == shortcuts + 3


def test_cluster(grader):
    assert grader.cluster(["\\frac{1}{2}", "0.5", "1/2", "3", None]) == [0, 0, 0, 1, None]
    assert grader.cluster([None, "3", "3.0", " 3 ", "\\frac{6}{2}", "4", "\\sqrt{16}", "x"]) == [
        None, 0, 0, 0, 0, 1, 1, 2]
    assert grader.cluster([]) == [] and grader.cluster([None]) == [None]
    order = ["2", "\\frac12", "0.5", "2.0"]
    assert grader.cluster(order) == [0, 1, 1, 0]


def test_cross_check_reports_disagreements(grader):
    rows = grader.cross_check([("\\frac{1}{2}", "0.5"), ("3", "3.0"), ("1", "2")])
    assert rows == [{"gold": "\\frac{1}{2}", "pred": "0.5", "math_verify": True, "canonical": False}]


@needs_data
def test_every_math500_gold_is_equivalent_to_itself(grader):
    golds = [row["answer"] for row in _math500()]
    disagreements = grader.cross_check([(g, g) for g in golds])  # raw math-verify, no shortcuts
    assert not disagreements, f"math-verify rejects these gold answers against themselves: {disagreements}"


@needs_data
def test_math500_golds_differ_from_each_other(grader):
    golds = sorted({row["answer"] for row in _math500()})[:60]
    verdicts = grader.equivalent_many([(a, b) for a, b in zip(golds, golds[1:])])
    confused = [(a, b) for (a, b), v in zip(zip(golds, golds[1:]), verdicts) if v]
    assert len(confused) <= 2, confused  # distinct golds that are truly equal forms are rare


def test_soft_timeout_returns_quickly_and_grader_keeps_working():
    with Grader(workers=1, timeout=0.5) as g:
        assert g.equivalent("1", "1.0")  # shortcut: no worker yet
        assert g.equivalent("\\frac{1}{2}", "0.5")  # starts the worker
        start = time.monotonic()
        assert g.equivalent("1", STUCK) is False
        assert time.monotonic() - start < 4
        assert g.stats["timeouts"] == 1  # normally by the worker's own alarm, without a restart
        assert g.equivalent("\\frac{1}{3}", "2/6")


def test_hard_timeout_kills_and_replaces_a_stuck_worker():
    with Grader(workers=1, timeout=0.5, soft_timeout=False) as g:
        assert g.equivalent("\\frac{1}{2}", "0.5")
        start = time.monotonic()
        assert g.equivalent_many([("1", STUCK), ("\\frac{1}{4}", "0.25")]) == [False, True]
        assert time.monotonic() - start < 10  # includes starting the replacement worker
        assert g.stats["timeouts"] == 1 and g.stats["restarts"] == 1


def test_canonical_answer():
    cases = {
        "\\left( 3, \\frac{\\pi}{2} \\right)": "(3,\\frac{\\pi}{2})", "142.0": "142", "0.50": "0.5",
        "-0.0": "0", "\\dfrac{1}{2}": "\\frac{1}{2}", "\\text{(C)}": "(C)", "10^\\circ": "10", "10^{\\circ}": "10",
        "32,\\!348": "32,348", "5.": "5", "$x$": "x", "\\textbf{east}": "east", "\\rightarrow": "\\rightarrow",
        " 1 / 2 ": "1/2", "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}": "\\begin{pmatrix}1\\\\-2\\end{pmatrix}",
    }
    assert {k: canonical_answer(k) for k in cases} == cases


def test_version_config_default_and_pickle():
    assert grader_version().startswith("math-verify==0.9.0;config=") and GRADER_CONFIG["config"] in grader_version()
    assert shared_grader() is shared_grader() and shared_grader(1, 2.0) is not shared_grader()
    assert (shared_grader(1, 2.0).workers, shared_grader(1, 2.0).timeout) == (1, 2.0)
    assert shared_grader().cross_check([("2", "2")]) == []
    clone = pickle.loads(pickle.dumps(Grader(workers=1, timeout=2.0, soft_timeout=False)))
    assert (clone.workers, clone.timeout, clone.soft_timeout, clone.stats["calls"]) == (1, 2.0, False, 0)
    with pytest.raises(ValueError):
        Grader(workers=0)


@needs_data
def test_throughput(capsys):
    """Measured, not asserted: gold checks per second on this machine (2 workers, cold caches)."""
    golds = [row["answer"] for row in _math500()]
    dollars = [(g, f"${g}$") for g in golds]  # same value, different text
    shifted = [(g, golds[(i + 7) % len(golds)]) for i, g in enumerate(golds)]  # mostly wrong answers
    with Grader(workers=2) as g:
        g.equivalent("\\frac{1}{2}", "0.5")  # start the workers
        calls, start = g.stats["calls"], time.monotonic()
        verdicts = g.equivalent_many(dollars + shifted)
        seconds = time.monotonic() - start
        sent = g.stats["calls"] - calls
    assert all(verdicts[: len(dollars)])
    with capsys.disabled():
        print(f"\n[grading] {len(verdicts) / seconds:.0f} gold checks/s over {len(verdicts)} MATH-500 pairs "
              f"({sent} needed math-verify, the rest were integer shortcuts)")


# ---- pathological answers (issue 17): never raise here, cached per form, a vote group is bounded -------

NESTED = "{" * 3000 + "1" + "}" * 3000  # math-verify's parser runs past any timeout on it
# (gold, pred, verdict, why the pathological side is a bad form: None = it is not one)
PATHOLOGICAL = [
    (DIGITS, DIGITS, True, None),  # the identical-string shortcut
    (DIGITS, DIGITS + ".000", True, None),  # integer shortcut on digit strings, no int()
    ("-00" + DIGITS, "-" + DIGITS, True, None),
    (DIGITS, "8" + DIGITS[1:], False, None),
    ("0" * 5000, "-0", True, None),
    (DIGITS, "\\frac{" + DIGITS + "}{1}", None, None),  # math-verify in a worker: whatever it says, no raise
    (SLOW, "5", False, "heavy"),
    (SLOW, " " + SLOW + " ", True, "heavy"),  # a bad form is still equal to itself
    ("5", "10^{10^{10}}", False, "heavy"),
    ("\\frac{1}{2}", "(10^{100})!", False, "heavy"),
    ("(2, 3)", "(2, 10^{10^{10}})", False, "heavy"),
    ("7", "(x+1)^{1024}", False, "heavy"),
    ("3", "\\sin(10^{10^{10}})", False, "heavy"),
    ("1", NESTED, False, "parse_timeout"),
    ("1", "}{", False, "unparsable"),
]


def test_pathological_answers_table():
    with Grader(workers=2, timeout=1.0) as g:
        got = g.equivalent_many([(a, b) for a, b, _, _ in PATHOLOGICAL])
        assert [v for v, (_, _, want, _) in zip(got, PATHOLOGICAL) if want is not None] == \
            [want for _, _, want, _ in PATHOLOGICAL if want is not None]
        assert all(isinstance(v, bool) for v in got)
        for a, b, _, why in PATHOLOGICAL:  # why the pathological side of the row is a bad form
            assert {g._gold.bad_form(a), g._gold.bad_form(b)} - {None} == ({why} if why else set()), (a[:20], b[:20])
        assert g.stats["bad_forms"] == len({a if why == "heavy" and a == SLOW else b
                                             for a, b, _, why in PATHOLOGICAL if why})
        calls, timeouts = g.stats["calls"], g.stats["timeouts"]
        again = [(gold, b) for gold, b in (("8", SLOW), ("9", " " + NESTED), ("4", "10^{10^{10}}"))]
        assert g.equivalent_many(again) == [False] * 3  # known bad forms: no worker, no timeout
        assert (g.stats["calls"], g.stats["timeouts"]) == (calls, timeouts)
        assert g.cluster([DIGITS, DIGITS + ".0", "3", "8" * 5000, None]) == [0, 0, 1, 2, None]


def test_a_vote_group_with_a_pathological_answer_needs_no_timeout():
    """The issue's case: 8 distinct answers, one of them 2^2^2^2^30 (took 30 s, 7 timeouts)."""
    answers = [SLOW, "0.5", "3", "\\sqrt{2}", "x+1", "(1,2)", "\\pi", "12"]
    with Grader(workers=2, timeout=5.0) as g:
        g.equivalent("\\frac{1}{2}", "0.5")  # start the workers
        start = time.monotonic()
        assert g.cluster(answers) == list(range(8))
        assert time.monotonic() - start < 30  # finishes; benchmarks/pathological_grading.py measures it
        assert g.stats["timeouts"] == 0 and g.stats["bad_forms"] == 1


def test_a_form_that_keeps_timing_out_against_healthy_answers_becomes_bad():
    with Grader(workers=1, timeout=0.5) as g:
        assert g.equivalent_many([("\\frac{14}{2}", "7"), ("\\frac{16}{2}", "8"), ("x", "8")]) == [True, True, False]
        assert g.equivalent("7", STUCK) is False and g.stats["bad_forms"] == 0  # one strike
        assert g.equivalent("8", STUCK) is False and g.stats["bad_forms"] == 1  # two: bad from now on
        calls = g.stats["calls"]
        assert g.equivalent("9", STUCK) is False and g.stats["calls"] == calls
        assert g.equivalent("\\frac{21}{3}", "7") is True  # the healthy partners took no blame
        assert g.stats["timeouts"] == 2


def test_a_vote_group_stops_at_its_budget():
    slow = [STUCK, "(x+y+w)^{100}", "(a+b+c)^{100}", "(p+q+r)^{100}", "(u+v+w)^{100}"]
    with Grader(workers=1, timeout=1.0, group_budget=1.5) as g:
        g.equivalent("\\frac{1}{2}", "0.5")
        start = time.monotonic()
        ids = g.cluster(["7", *slow, "\\frac{14}{2}"])
        assert time.monotonic() - start < 15  # budget 1.5 s + killing the busy worker; never 6 x 1 s
        assert len(ids) == 7 and ids[0] == 0 and g.stats["over_budget"] >= 1
        assert g.cluster(["7", "\\frac{14}{2}"]) == [0, 0]  # cut-off comparisons were not cached as False


def test_a_slow_vote_group_head_is_suspected_then_bad_after_two_groups():
    slow = [STUCK, "(a+b+c)^{100}", "(p+q+r)^{100}"]
    with Grader(workers=2, timeout=0.5, group_budget=4.0) as g:
        g.equivalent("\\frac{1}{2}", "0.5")
        first = g.cluster([*slow, "7", "\\frac{14}{2}"])
        assert first[3] == first[4] and len(set(first)) == 4  # the slow heads did not cost the budget
        assert g._sym.bad_form(STUCK) is None  # suspected in one group only
        g.cluster([STUCK, "(u+v+w)^{100}", "(d+e+f)^{100}", "8"])  # new partners (pairs are cached)
        assert g._sym.bad_form(STUCK) == "verify_timeout" and g._sym.bad_form("7") is None
        assert g._gold.bad_form(STUCK) is None  # the gold relation keeps its own forms


# ---- a step's grading in few rounds (issue 15): gold checks in one round, every group's clusters in lockstep ----

# (answers of one vote group, expected cluster ids): rewrites math-verify merges, first-occurrence numbering, a
# tie, answer-less, a singleton, an empty group, a pathological form (equal only to itself), many classes
GROUPS = [
    (["\\frac{1}{2}", "0.5", "1/2", "3", None, "\\dfrac{1}{2}", "3.0", "x"], [0, 0, 0, 1, None, 0, 1, 2]),
    (["2", "\\frac12", "0.5", "2.0"], [0, 1, 1, 0]),
    (["\\sqrt{2}", "1.414", "\\sqrt{2}", "1.414"], [0, 1, 0, 1]),
    ([None, None, None], [None, None, None]),
    (["42"], [0]),
    ([], []),
    ([SLOW, "0.5", "\\frac{1}{2}", "3", " " + SLOW], [0, 1, 1, 2, 0]),
    (["(3,\\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi)", "x=5", "5"], [0, 0, 1, 2, 2]),
    (["3\\sqrt{2}", "\\sqrt{18}", "p-q", "q-p", "p - q"], [0, 0, 1, 2, 1]),
    (["7", "8", "9", "10", "\\frac{14}{2}", "\\frac{16}{2}", "\\frac{18}{2}", "x"], [0, 1, 2, 3, 0, 1, 2, 4]),
]


def _started(workers=2, timeout=5.0, **kw) -> Grader:
    g = Grader(workers=workers, timeout=timeout, **kw)
    g.equivalent("\\frac{1}{2}", "0.5")  # start the workers
    return g


def test_cluster_many_gives_the_per_group_clusters_verdicts_and_bad_forms():
    with _started() as one, _started() as many:
        rounds_one, rounds_many = one.stats["rounds"], many.stats["rounds"]
        per_group = [one.cluster(answers) for answers, _ in GROUPS]
        batched = many.cluster_many([answers for answers, _ in GROUPS])
        assert batched == per_group == [want for _, want in GROUPS]
        # the same comparisons with the same verdicts (a pair with the heavy form is cached False by whichever
        # worker parsed it first, the others are skipped: which ones depends on timing)
        def verdicts(g):
            return {k: v for k, v in g._sym._cache.items() if SLOW.strip() not in {f.strip() for f in k[1:]}}
        assert verdicts(many) == verdicts(one) and len(verdicts(one)) >= 25
        assert many._sym._bad == one._sym._bad == {SLOW: "heavy"}
        assert many._gold._cache == one._gold._cache  # the clusterer never touches the gold relation
        # per group: one round per class head with a comparison; batched: one per round of heads (the last
        # group opens 5 classes with comparisons, 4 of them needing math-verify)
        assert one.stats["rounds"] - rounds_one >= 12
        assert many.stats["rounds"] - rounds_many <= 5
        assert many.stats["sent"] < many.stats["calls"]  # batches of several comparisons per message


def test_a_group_cut_off_by_its_budget_leaves_the_other_groups_of_the_round_alone():
    """One worker: the healthy group's comparisons wait behind the slow group's timeouts (longer than a
    budget) but are charged only while graded, so they are not cut off."""
    slow = ["7", STUCK, "(a+b+c)^{100}", "(p+q+r)^{100}", "(u+v+w)^{100}", "\\frac{14}{2}"]
    healthy = ["\\frac{1}{2}", "0.5", "x", "1/2"]
    with _started(workers=1, timeout=1.0, group_budget=1.5) as g:
        ids_slow, ids_healthy = g.cluster_many([slow, healthy])
        assert ids_healthy == [0, 0, 1, 0] and len(ids_slow) == 6 and ids_slow[0] == 0
        assert g.stats["over_budget"] >= 1 and g.stats["timeouts"] >= 1  # the slow group was cut off


def test_a_slow_group_head_among_a_steps_groups_costs_what_it_costs_alone():
    """A slow head inside a step of 16 groups (batches of several comparisons per worker): the slow group's
    comparisons are never batched together, so they run side by side as in a round of that group alone; its
    head is suspected after its first timeouts and its healthy forms are compared within a budget of 4 timeouts.
    (How many workers get killed over skipped items depends on timing: the batching rule itself is tested below.)"""
    slow = [STUCK, "(a+b+c)^{100}", "(p+q+r)^{100}", "7", "\\frac{14}{2}"]
    healthy = [[str(10 * g + j) for j in range(7)] + [f"\\frac{{{2 * (10 * g)}}}{{2}}"] for g in range(15)]
    with _started(workers=2, timeout=0.5, group_budget=2.0) as g:
        ids = g.cluster_many([slow, *healthy])
        assert ids[0] == [0, 1, 2, 3, 3] and g.stats["over_budget"] == 0
        assert ids[1:] == [[0, 1, 2, 3, 4, 5, 6, 0]] * 15


def test_a_batch_takes_at_most_one_comparison_per_group():
    import collections

    from urlvr.grading import _Budget, _one_per_group

    a, b = _Budget(1.0), _Budget(1.0)
    budgets = [a, a, b, None, None, a, b]
    pending = collections.deque(range(7))
    assert _one_per_group(pending, budgets, 16) == [0, 2, 3, 4]  # in order; unlimited items are not grouped
    assert list(pending) == [1, 5, 6]
    assert _one_per_group(pending, budgets, 1) == [1] and _one_per_group(pending, budgets, 16) == [5, 6]


def _integer_step(n_groups=16):
    """A MATH-500 step, 8 completions per problem with an integer gold: the gold, equivalent rewrites
    (``\\frac{2n}{2}``, ``n.0``, ``\\sqrt{n^2}``), wrong answers (``n+1``, another problem's gold, ``nx``) and
    one completion without an answer."""
    from urlvr.tasks import get_task

    task = get_task("jsonl", path=str(DATA / "math500.jsonl"), grader="math")
    examples = [e for e in task.examples("test", len(task)) if re.fullmatch(r"[1-9]\d{0,3}", e.answer)]
    examples = examples[:n_groups]
    answers = []
    for j, e in enumerate(examples):
        n, other = int(e.answer), next(x.answer for x in examples[j + 1:] + examples[:j]
                                      if abs(int(x.answer) - int(e.answer)) > 1)
        answers.append([e.answer, f"\\frac{{{2 * n}}}{{2}}", f"{n}.0", str(n + 1), other, None,
                        f"\\sqrt{{{n * n}}}", f"{n}x"])
    return task, examples, answers


@needs_data
def test_a_math500_step_is_graded_in_a_bounded_number_of_rounds():
    import torch

    from urlvr.rewards.ensemble import majority_vote
    from urlvr.scoring import build_groups
    from urlvr.types import Completion
    from urlvr.watch.health import group_clusters

    task, examples, answers = _integer_step()
    comps = [[Completion(f"\\boxed{{{a}}}" if a else "no answer", a, torch.tensor([1])) for a in group]
             for group in answers]
    want_ids = [0, 0, 0, 1, 2, None, 0, 3]
    want_correct = (True, True, True, False, False, False, True, False)
    with _started() as grader, _started() as per_group:
        before = dict(grader.stats)
        rules = task.rules("math", grader.clusterer())
        groups, labeled = build_groups(task, rules, examples, [e.problem.question for e in examples], comps, grader)
        step = {k: grader.stats[k] - before[k] for k in ("rounds", "calls", "sent", "received")}
        assert [lg.correct for lg in labeled] == [want_correct] * len(examples)
        assert [g.cluster_ids() for g in groups] == [want_ids] * len(examples)
        # gold checks: one round; clusters: 3 rounds of class heads (the gold's class, n+1's, the other
        # gold's), whatever the number of groups; one verdict message per comparison, fewer batches sent
        assert step["rounds"] <= 1 + 3, step
        assert step["received"] == step["calls"] and step["sent"] < step["calls"], step
        # the reward and the metrics read the clusters the step decided: no grading at all
        after = dict(grader.stats)
        assert [majority_vote(g) for g in groups] == [[1.0, 1, 1, 0, 0, 0, 1, 0]] * len(groups)
        assert group_clusters(groups) == [want_ids] * len(groups) and labeled[0].label_free().cluster_ids() == want_ids
        assert grader.stats == after
        # the same verdicts one group at a time (the call pattern before): one round per class head per group
        r0 = per_group.stats["rounds"]
        flat = task.check_many([a for group in answers for a in group],
                               [e.answer for e, group in zip(examples, answers) for _ in group], per_group)
        ids = [task.rules("math", per_group.clusterer()).cluster(group) for group in answers]
        assert flat == [v for _ in examples for v in want_correct] and ids == [want_ids] * len(examples)
        assert per_group.stats["rounds"] - r0 >= 2 * len(examples)
        assert per_group._sym._cache == grader._sym._cache and per_group._gold._cache == grader._gold._cache
