"""``urlvr ttt`` (test-time training) and ``urlvr reproduce``'s plumbing, on tiny models in seconds."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, tiny_config
from urlvr.config import load_config
from urlvr.errors import UrlvrError
from urlvr.reproduce import PLANS, curve_stats, describe, run_ttt


@pytest.mark.parametrize("name, reward", [("ttt_majority_vote", "majority_vote"), ("ttt_self_certainty", "self_certainty")])
def test_ttt_recipes_load_and_train_on_the_test_split(name, reward):
    cfg = load_config(REPO / "recipes" / f"{name}.yaml")
    assert (cfg.train_split, cfg.reward, cfg.seed) == ("test", reward, 0)
    assert cfg.val_problems > 0  # held-out transfer


def test_two_step_ttt_run_evaluates_before_and_after(tiny_model, tmp_path):
    from urlvr.eval_cli import load_results
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


def test_seed_statistics():
    c = curve_stats([[0.5, 0.8, 0.6], [0.7, 0.8, 0.4]], [0, 10, 20])
    assert (c["start"], c["peak"], c["peak_step"], c["end"]) == pytest.approx((0.6, 0.8, 10, 0.5))
    assert (c["rise"], c["fall"]) == pytest.approx((0.2, 0.3))
    assert c["change_seeds"] == pytest.approx([0.1, -0.3])
    assert describe([0.2, None]) == "0.200 ± 0.000" and describe([]) == "-"


def test_plans_cover_the_brief():
    full, quick = PLANS["full"], PLANS["quick"]
    assert full.seeds >= 3 and quick.seeds >= 3
    assert {"self_certainty", "token_entropy", "trajectory_entropy", "probability", "probability_disparity",
            "majority_vote", "srt", "semantic_cluster", "gold"} <= set(full.families)
    assert full.sizes == (32, 128, 512, 2048) and len(full.mcs_models) >= 5 and len(quick.mcs_models) >= 5
    assert "verifier" in full.external_rewards and set(full.external_rewards) & {"majority_vote", "self_certainty"}


def test_reproduce_smoke_writes_findings_and_figures(tmp_path):
    out = tmp_path / "reproduce"
    cmd = [sys.executable, "-m", "urlvr", "reproduce", "--smoke", "--out", str(out), "--quiet", "--jobs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    text = (out / "FINDINGS.md").read_text()
    for figure in ("fig1_families.png", "fig2_dataset_size.png", "fig3_mcs_gt_gain.png", "fig4_external.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG" and f"]({figure})" in text
    data = json.loads((out / "findings.json").read_text())
    assert len(data["findings"]) == 6
    assert all(f["verdict"] in ("reproduced", "partly reproduced", "not reproduced") for f in data["findings"])
    assert "**Verdict:" in text and "| # | finding | verdict |" in text
    # finished runs are reused (nothing retrained); missing ones run, here in two worker processes
    metrics = out / "families" / "aligned_majority_vote_s0" / "metrics.jsonl"
    stamp = metrics.stat().st_mtime_ns
    shutil.rmtree(out / "dataset_size")
    proc = subprocess.run(cmd[:-2] + ["--jobs", "2", "--only", "families", "--only", "dataset_size"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert metrics.stat().st_mtime_ns == stamp
    assert len(json.loads((out / "findings.json").read_text())["findings"]) == 4
    assert (out / "dataset_size" / "n32_s0" / "summary.json").is_file()
    assert not (out / "dataset_size" / "n32_s0" / "checkpoints").exists()  # curves kept, checkpoints not
