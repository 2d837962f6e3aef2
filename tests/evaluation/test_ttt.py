"""``urlvr ttt`` (test-time training): evaluated before and after on the problems it trains on, unlabeled."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, tiny_config
from urlvr.config import load_config
from urlvr.errors import UrlvrError
from urlvr.evaluation.ttt import run_ttt


@pytest.mark.parametrize("name, reward", [("ttt_majority_vote", "majority_vote"), ("ttt_self_certainty", "self_certainty")])
def test_ttt_recipes_load_and_train_on_the_test_split(name, reward):
    cfg = load_config(REPO / "recipes" / f"{name}.yaml")
    assert (cfg.train_split, cfg.reward, cfg.seed) == ("test", reward, 0)
    assert cfg.val_problems > 0  # held-out transfer


def test_two_step_ttt_run_evaluates_before_and_after(tiny_model, tmp_path):
    from urlvr.evaluation.harness import load_results
    from urlvr.report import build_report

    cfg = tiny_config(tiny_model, tmp_path / "ttt", train_split="test", train_problems=8, val_problems=6, steps=2)
    result = run_ttt(cfg, k=2, seeds=1, progress=False)
    assert result["trained_on"] == {"task": "arithmetic", "task_options": {"digits": 1, "ops": "+"}, "split": "test",
                                    "problems": 8, "labels_used_for_training": False}
    assert result["checkpoint"].startswith("step_000002")
    got = {(c["split"], c["metric"]) for c in result["comparisons"]}
    assert {("test", "avg@2"), ("test", "maj@2"), ("validation", "avg@2")} <= got
    for name in ("before_test", "after_test", "before_validation", "after_validation"):
        res = load_results(tmp_path / "ttt" / "ttt" / name)  # the harness's schema-checked results.json
        split = name.split("_")[1]
        assert res["benchmarks"][0]["data"]["split"] == split
        assert res["benchmarks"][0]["data"]["problems"] == (8 if split == "test" else 6)
    before = load_results(tmp_path / "ttt" / "ttt" / "before_test")
    after = load_results(tmp_path / "ttt" / "ttt" / "after_test")
    assert before["model"]["path"] == str(Path(tiny_model).resolve())
    assert after["model"]["path"].endswith("checkpoints/step_000002")  # the final step, not a picked one
    assert json.loads((tmp_path / "ttt" / "ttt.json").read_text())["comparisons"] == result["comparisons"]
    md = build_report([tmp_path / "ttt"], tmp_path / "report")["markdown"].read_text()
    assert "Test-time training" in md and "| validation |" in md


def test_ttt_refuses_runs_that_would_not_measure_the_trained_problems(tiny_model, tmp_path):
    with pytest.raises(UrlvrError, match="train_split=test"):
        run_ttt(tiny_config(tiny_model, tmp_path / "a"), progress=False)
    with pytest.raises(UrlvrError, match="seed=3 draws a different set"):
        run_ttt(tiny_config(tiny_model, tmp_path / "b", train_split="test", train_problems=6, seed=3), progress=False)


def test_ttt_cli_runs_a_recipe(tiny_model, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "urlvr", "ttt", "recipes/ttt_majority_vote.yaml", f"model={tiny_model}",
         "task_options={digits: 1, ops: '+'}", "train_problems=6", "val_problems=4", "steps=1", "prompts_per_step=2",
         "n_votes=2", "n_train=2", "max_new_tokens=6", f"out_dir={out}", "--k", "2", "--seeds", "1", "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "avg@2" in proc.stdout and (out / "ttt.json").is_file()
