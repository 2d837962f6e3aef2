"""Rewards cannot hang or end the run: every misbehaviour through the real ``score_groups`` (issue 17).

One table: what the reward does, and either the one-line :class:`UrlvrError` it stops the run with or
the scores it leaves (a non-finite score is "no score", like None). The end-to-end versions of the same
cases run through the real CLI in ``tests/cli/test_train.py``.
"""

import math
import signal
import threading
import time

import numpy as np
import pytest
import torch

from rewards._groups import answers_group
from urlvr.errors import UrlvrError
from urlvr.rewards.base import SCORE_LIMIT, RewardSpec, call_bounded
from urlvr.scoring import score_groups
from urlvr.types import RewardOutput

N = 3


def _sleeps(group):
    time.sleep(30)  # abandoned after the test's 0.5 s; a daemon thread, it never holds up exit


def _spins(group):
    while True:  # a pure-Python loop: ended by the asynchronous exception sent on timeout
        pass


def _uses_signals(group):
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # what math-verify's own timeout does
    return [1.0] * len(group)


def _raises(exc):
    def reward(group):
        raise exc
    return reward


def _returns(*values):
    return lambda group: list(values)


# (case, reward, error pattern or None, expected scores when it does not stop the run)
CASES = [
    ("floats", _returns(1.0, 0.5, 0.0), None, [1.0, 0.5, 0.0]),
    ("ints, bools, numpy and 0-d torch", _returns(1, True, np.float32(0.5)), None, [1.0, 1.0, 0.5]),
    ("a 0-d tensor", _returns(torch.tensor(2.0), None, -1), None, [2.0, None, -1.0]),
    ("None abstains", _returns(None, None, None), None, [None, None, None]),
    ("NaN and inf are no score", _returns(math.nan, math.inf, -math.inf), None, [None, None, None]),
    ("the score limit itself", _returns(SCORE_LIMIT, -SCORE_LIMIT, 0), None, [SCORE_LIMIT, -SCORE_LIMIT, 0.0]),
    ("an Exception is isolated", _raises(RuntimeError("backend down")), None, [None, None, None]),
    ("sleeps", _sleeps, r"did not return within 0.5 s on problem 'p1'.*raise reward_timeout", None),
    ("spins", _spins, r"did not return within 0.5 s", None),
    ("SystemExit(0)", _raises(SystemExit(0)), r"raised SystemExit\(0\); a reward returns scores and must not exit", None),
    ("KeyboardInterrupt", _raises(KeyboardInterrupt()), r"raised KeyboardInterrupt\(\)", None),
    ("other BaseException", _raises(GeneratorExit()), r"raised GeneratorExit\(\)", None),
    ("string '1.0'", _returns("1.0", 1.0, 1.0), r"returned '1\.0' \(str\) for completion 0 of problem 'p1'", None),
    ("bytes", _returns(1.0, b"1", 1.0), r"returned b'1' \(bytes\) for completion 1", None),
    ("complex", _returns(1.0, 1.0, 1j), r"returned 1j \(complex\) for completion 2", None),
    ("a list in a slot", _returns([1.0], 1.0, 1.0), r"returned \[1\.0\] \(list\)", None),
    ("1e308", _returns(0.0, 1e308, 0.0), r"returned 1e\+308 for completion 1.*within ±1e\+06.*rescale the reward", None),
    ("-1e7", _returns(0.0, 0.0, -1e7), r"returned -1e\+07 for completion 2", None),
    ("a 400-digit int", _returns(10 ** 400, 0, 0), r"integer too large for a float for completion 0", None),
    ("a float, not a list", lambda group: 1.0, r"returned float 1\.0 for a group; a reward returns a list", None),
    ("a string, not a list", lambda group: "111", r"returned str '111' for a group", None),
    ("None, not a list", lambda group: None, r"returned NoneType None for a group", None),
    ("too few scores", _returns(1.0), r"returned 1 scores for a group of 3", None),
    ("a string component", lambda group: RewardOutput([1.0] * 3, {"c": ["x"] * 3}), r"returned 'x' \(str\)", None),
    ("signals in a thread", _uses_signals, r"uses signals .*shared_grader\(\).*reward_timeout=0", None),
]


@pytest.mark.parametrize("case,fn,error,scores", CASES, ids=[c[0] for c in CASES])
def test_reward_misbehaviour_table(case, fn, error, scores):
    group = answers_group(["1", "2", None])
    spec = RewardSpec("bad", fn)
    if error is not None:
        with pytest.raises(UrlvrError, match=error) as info:
            score_groups(spec, {}, [group], [group], timeout=0.5)
        assert "\n" not in str(info.value) and str(info.value).startswith("reward 'bad' ")
        return
    out = score_groups(spec, {}, [group], [group], timeout=0.5)
    got = [float(r) if v else None for r, v in zip(out.rewards[0].tolist(), out.valid[0].tolist())]
    assert got == scores
    assert len(out.errors) == (case == "an Exception is isolated")


def test_failure_names_the_last_value_or_error():
    group = answers_group(["1", "2", None])
    assert score_groups(RewardSpec("n", _returns(1.0, math.nan, None)), {}, [group], [group]).failure == \
        "last value returned: None"
    assert score_groups(RewardSpec("n", _returns(math.inf, 1.0, 1.0)), {}, [group], [group]).failure == \
        "last value returned: inf"
    out = score_groups(RewardSpec("r", _raises(ValueError("odd"))), {}, [group], [group])
    assert out.failure == "last error: ValueError: odd"


def test_timeout_zero_runs_in_the_main_thread_and_keeps_signals():
    group = answers_group(["1", "2", None])
    seen = []

    def where(group):
        seen.append(threading.current_thread() is threading.main_thread())
        signal.signal(signal.SIGALRM, signal.getsignal(signal.SIGALRM))
        return [1.0] * len(group)

    assert call_bounded(RewardSpec("w", where), group, {}, timeout=0).scores == [1.0] * N
    with pytest.raises(UrlvrError, match=r"raised SystemExit\(3\)"):
        call_bounded(RewardSpec("x", _raises(SystemExit(3))), group, {}, timeout=0)
    assert seen == [True]


def test_a_spinning_reward_thread_is_stopped_after_its_timeout():
    group = answers_group(["1", "2", None])
    before = threading.active_count()
    with pytest.raises(UrlvrError, match="did not return"):
        call_bounded(RewardSpec("spin", _spins), group, {}, timeout=0.2)
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before  # the asynchronous exception ended the loop


def test_grad_mode_is_passed_to_the_reward_thread():
    group = answers_group(["1", "2", None])
    seen = []

    def grad(group):
        seen.append(torch.is_grad_enabled())
        return [0.0] * len(group)

    with torch.no_grad():
        call_bounded(RewardSpec("g", grad), group, {}, timeout=5)
    call_bounded(RewardSpec("g", grad), group, {}, timeout=5)
    assert seen == [False, True]
