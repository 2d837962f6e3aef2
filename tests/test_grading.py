"""grading: math-verify equivalence in worker processes, clustering, timeouts, the string normaliser."""

import json
import pickle
import time
from pathlib import Path

import pytest

from urlvr.grading import GRADER_CONFIG, Grader, canonical_answer, grader_version, shared_grader

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "math500.jsonl").is_file(),
                                reason=f"benchmark data not found at {DATA} (expected <repo>/../shared/data)")
SLOW = "2^{2^{2^{2^{30}}}}"  # sympy spends minutes on this; only a timeout ends it


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
        assert g.equivalent("1", SLOW) is False
        assert time.monotonic() - start < 4
        assert g.stats["timeouts"] == 1  # normally by the worker's own alarm, without a restart
        assert g.equivalent("\\frac{1}{3}", "2/6")


def test_hard_timeout_kills_and_replaces_a_stuck_worker():
    with Grader(workers=1, timeout=0.5, soft_timeout=False) as g:
        assert g.equivalent("\\frac{1}{2}", "0.5")
        start = time.monotonic()
        assert g.equivalent_many([("1", SLOW), ("\\frac{1}{4}", "0.25")]) == [False, True]
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
