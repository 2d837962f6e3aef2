"""Flip diagnostics (label-free) and the oracle's solved/unsolved transitions, by hand and through the
real trainer's metrics."""

import pytest

from conftest import tiny_config
from urlvr.io import read_jsonl
from urlvr.trainer import train
from urlvr.watch.flips import FlipTracker
from urlvr.watch.oracle import SolvedTransitions, majority_correct


def test_flip_and_relock_by_hand():
    t = FlipTracker()
    first = t.update(["a", "b", "c"], ["4", "7", None], [0.5, 1.0, 0.0])
    assert first["diag/revisited"] == 0 and first["diag/flip_rate"] is None and first["diag/relock_rate"] is None
    m = t.update(["a", "b", "c"], ["5", "7", "3"], [0.75, 1.0, 0.25])  # a and c flip (None -> "3" is a flip)
    assert (m["diag/flips"], m["diag/relocks"], m["diag/revisited"]) == (2, 0, 3)
    assert m["diag/flip_rate"] == pytest.approx(2 / 3) and m["diag/flip_majority_ratio"] == pytest.approx(0.5)
    m = t.update(["a"], ["4"], [0.5])  # back to the answer held two visits ago: a re-lock
    assert (m["diag/flips"], m["diag/relocks"], m["diag/relock_rate"]) == (1, 1, 1.0)
    m = t.update(["a"], ["5"], [1.0])  # "5" was held before too
    assert m["diag/relocks"] == 1
    m = t.update(["a"], ["9"], [1.0])  # a new answer: a flip, not a re-lock
    assert (m["diag/flips"], m["diag/relocks"]) == (1, 0)
    m = t.update(["b"], ["7"], [1.0])  # no change: neither
    assert (m["diag/flip_rate"], m["diag/relock_rate"], m["diag/flip_majority_ratio"]) == (0.0, 0.0, None)


def test_a_problem_twice_in_one_step_is_two_consecutive_visits():
    t = FlipTracker()
    m = t.update(["a", "a"], ["4", "5"], [0.5, 0.5])
    assert m["diag/revisited"] == 1 and m["diag/flips"] == 1


def test_flip_state_round_trip():
    a = FlipTracker()
    a.update(["a", "b"], ["4", "7"], [0.5, 1.0])
    a.update(["a", "b"], ["5", "7"], [0.5, 1.0])
    b = FlipTracker()
    b.load_state_dict(a.state_dict())
    assert a.update(["a", "b"], ["4", "8"], [1, 1]) == b.update(["a", "b"], ["4", "8"], [1, 1])


def test_lengths_must_match():
    with pytest.raises(ValueError, match="one of each per group"):
        FlipTracker().update(["a"], ["4", "5"], [1.0])
    with pytest.raises(ValueError, match="one per group"):
        SolvedTransitions().update(["a"], [True, False])


def test_solved_transitions_by_hand():
    t = SolvedTransitions()
    assert t.update(["a", "b"], [True, False]) == {"oracle/solved_to_unsolved": 0, "oracle/unsolved_to_solved": 0}
    assert t.update(["a", "b", "c"], [False, True, True]) == {"oracle/solved_to_unsolved": 1,
                                                              "oracle/unsolved_to_solved": 1}
    u = SolvedTransitions()
    u.load_state_dict(t.state_dict())
    assert u.update(["c"], [False]) == {"oracle/solved_to_unsolved": 1, "oracle/unsolved_to_solved": 0}


def test_majority_correct_reads_the_majority_cluster():
    # group 1: majority cluster 1 (wrong); group 2: cluster 0 wins the tie (first seen), correct; group 3: no answer
    assert majority_correct([[True, False, False], [True, False], [False, False]],
                            [[0, 1, 1], [0, 1], [None, None]]) == [False, True, False]


def test_every_run_logs_flips_and_transitions(tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, tmp_path / "run", train_problems=4, prompts_per_step=2, steps=6, val_problems=0,
                      sample_every=0, save_every=0, temperature=1.3)
    train(cfg, progress=False)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    train_rows = [r for r in rows if "diag/revisited" in r]
    assert len(train_rows) == 6 and train_rows[0]["diag/revisited"] == 0 and train_rows[0]["diag/flip_rate"] is None
    assert sum(r["diag/revisited"] for r in train_rows) == 12 - len({pid for pid in range(4)})  # 12 visits, 4 firsts
    for r in train_rows:
        assert r["diag/relocks"] <= r["diag/flips"] <= r["diag/revisited"]
        assert r["oracle/solved_to_unsolved"] + r["oracle/unsolved_to_solved"] <= r["diag/flips"]
