"""The Model Collapse Step, ranking and their CLI: pure pieces on known values, the real CLI on tiny models."""

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO
from urlvr.loading import resolve_model
from urlvr.testbed.priors import parse_model
from urlvr.watch.collapse import first_collapse
from urlvr.watch.rank import format_ranking, kendall, spearman
from urlvr.errors import UrlvrError

TINY = ["--task", "arithmetic", "--option", "digits=1", "--option", "ops=+"]


def test_parse_model_knobs_and_task_defaults():
    spec = parse_model("testbed:aligned?p_correct=0.8&steps=200", "arithmetic", {"digits": 2, "ops": "+"})
    assert (spec.prior, spec.p_correct, spec.steps, spec.task_options) == ("aligned", 0.8, 200, {"digits": 2, "ops": "+"})
    spec = parse_model("testbed:misaligned:arithmetic:tiny?wrong_rate=0.5", "arithmetic", {"digits": 1})
    assert (spec.size, spec.wrong_rate, spec.task_options) == ("tiny", 0.5, {"digits": 1})
    assert parse_model("testbed:weak:linear", "arithmetic", {"digits": 1}).task_options == {}  # other task: its own
    assert parse_model("testbed:aligned", "arithmetic").key() == parse_model("testbed:aligned?", "arithmetic").key()
    assert parse_model("/some/folder", "arithmetic") is None
    assert resolve_model("/some/folder", "arithmetic", {}) == "/some/folder"


@pytest.mark.parametrize("name, msg", [
    ("testbed:aligned?p_correkt=0.8", "bad testbed knob"),
    ("testbed:aligned?p_correct", "bad testbed knob"),
    ("testbed:aligned?prior=weak", "bad testbed knob"),
    ("testbed:aligned?p_correct=1.5", "p_correct must be in"),
    ("testbed:", "bad testbed model"),
    ("testbed:clever", "unknown prior"),
])
def test_parse_model_rejects_bad_names(name, msg):
    with pytest.raises(UrlvrError, match=msg):
        parse_model(name, "arithmetic")


@pytest.mark.parametrize("values, window, expected", [
    ([1.0, 0.5, 0.0, 0.0, 0.0], 3, 5),
    ([0.0, 0.0], 3, None),  # too few steps to fill the window
    ([1.0] * 10, 3, None),
    ([0.0, 0.125, 0.0, 0.0, 0.0], 3, 5),  # one 1/8 in the window keeps the mean above 1%
    ([0.0, None, 0.0, 0.0], 3, 4),  # missing steps are skipped
    ([1.0, 0.0], 1, 2),
])
def test_first_collapse(values, window, expected):
    assert first_collapse(values, window, 0.01) == expected


def test_rank_correlations_on_known_values():
    assert spearman([1, 2, 3], [3, 5, 9]) == pytest.approx(1.0)
    assert kendall([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks [1.5, 1.5, 3, 4] vs [1, 2, 3, 4]
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert kendall([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(5 * 6))  # tau-b
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(kendall([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_format_ranking_marks_censoring_and_costs():
    rows = [dict(model="a", mcs=600, censored=True, label_free_step=300, label_free_censored=False, tokens=1000,
                 gt_gain=0.1, acc_before=0.8, acc_after=0.9, gt_tokens=3000, passk_gain=0.2, passk_tokens=500),
            dict(model="b", mcs=50, censored=False, label_free_step=600, label_free_censored=True, tokens=200,
                 gt_gain=0.3, acc_before=0.2, acc_after=0.5, gt_tokens=3000, passk_gain=0.6, passk_tokens=500)]
    result = {"models": rows, "gain_settings": {"passk": 8}, "mcs_settings": {"max_steps": 600},
              "correlations": [{"a": "MCS", "b": "GT Gain", "spearman": -1.0, "kendall": None}],
              "tokens": {"tokens": 1200, "label_free_tokens": 0, "gt_tokens": 6000, "passk_tokens": 1000, "gt_over_mcs": 5.0}}
    text = format_ranking(result)
    assert text.index("| a | 600+ | 300 |") < text.index("| b | 50 | 600+ |")
    rows[0].update(mcs=350.0, censored=False, mcs_per_seed=[100, 600])
    rows[0]["censored_per_seed"] = [False, True]
    assert "| a | 350 (100, 600+) | 300 |" in format_ranking(result)
    assert "| MCS vs GT Gain | -1.000 | - |" in text and "GT Gain / MCS = 5.00x" in text


def _cli(*args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "urlvr", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_collapse_step_cli_on_the_tiny_model(tiny_model, tmp_path):
    out = _cli("collapse-step", tiny_model, *TINY, "--max-steps", "12", "--n", "4", "--train-problems", "40",
               "--max-new-tokens", "8", "--window", "3", "--label-free-window", "4", "--out-dir", str(tmp_path), "--quiet")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert 3 <= result["mcs"] <= 12 and isinstance(result["censored"], bool) and result["tokens"] > 0
    assert result["tokens"] <= result["tokens_run"] and result["steps_run"] <= 12
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve["result"]["mcs"] == result["mcs"] and len(curve["curve"]) == result["steps_run"]
    assert {"reward_accuracy", "majority_ratio", "entropy", "tokens"} <= set(curve["curve"][0])
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_collapse_step_cli_rejects_bad_input(tmp_path, capsys):
    from urlvr.cli import main

    assert main(["collapse-step", "testbed:aligned?p_correct=2", "--quiet"]) == 2
    assert "p_correct must be in" in capsys.readouterr().err
    assert main(["collapse-step", str(tmp_path / "missing"), "--quiet", "--out-dir", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["rank", "testbed:weak", "--quiet"]) == 2
    assert "at least two models" in capsys.readouterr().err


def test_rank_runs_through_on_two_tiny_models(tiny_model, tmp_path, capsys):
    from urlvr.cli import main

    second = "testbed:misaligned:arithmetic:tiny?steps=40&card_problems=8"
    code = main(["rank", tiny_model, second, *TINY, "--max-steps", "6", "--n", "4", "--train-problems", "40",
                 "--max-new-tokens", "8", "--window", "2", "--label-free-window", "3", "--gt-steps", "2",
                 "--eval-problems", "8", "--eval-k", "2", "--passk", "4", "--seeds", "2", "--out-dir", str(tmp_path),
                 "--quiet"])
    assert code == 0
    table = capsys.readouterr().out
    assert "MCS vs GT Gain" in table and "pass@k gain vs GT Gain" in table and "GT Gain / MCS" in table
    result = json.loads((tmp_path / "ranking.json").read_text())
    assert [r["model"] for r in result["models"]] == [tiny_model, second]
    for r in result["models"]:
        assert r["tokens"] > 0 and r["gt_tokens"] > 0 and r["passk_tokens"] > 0 and -1 <= r["gt_gain"] <= 1
        assert len(r["mcs_per_seed"]) == 2 and r["mcs"] == sum(r["mcs_per_seed"]) / 2
    assert (tmp_path / "mcs_curves.png").is_file() and (tmp_path / "ranking.md").is_file()
