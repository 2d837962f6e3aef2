"""``urlvr reproduce``'s plumbing on tiny models in seconds, and the plans it runs."""

import json
import os
import shutil
import subprocess
import sys

from conftest import REPO
from urlvr.experiments.plan import PLANS


def test_plans_cover_the_brief():
    full, quick = PLANS["full"], PLANS["quick"]
    assert full.seeds >= 3 and quick.seeds >= 3
    # the paper's five intrinsic rewards and gold (issue 16), on both priors
    assert {"majority_vote", "self_certainty", "token_entropy", "trajectory_entropy", "probability", "gold"} <= \
        set(full.families)
    assert full.sizes == (32, 128, 512, 2048) and len(full.mcs_models) >= 5 and len(quick.mcs_models) >= 5
    assert full.passk >= 64 and full.passk_n >= 4 * full.passk  # large k, n >> k
    assert full.real_lm == "smollm2" and "self_certainty" in full.certainty_ablations
    from urlvr.experiments.reproduce import DEFAULT_EXPERIMENTS

    assert {"certainty", "real_lm"} <= set(DEFAULT_EXPERIMENTS) and "methods" not in DEFAULT_EXPERIMENTS
    assert "verifier" in full.external_rewards and set(full.external_rewards) & {"majority_vote", "self_certainty"}


def test_reproduce_smoke_writes_findings_and_figures(tmp_path):
    out = tmp_path / "reproduce"
    cmd = [sys.executable, "-m", "urlvr", "reproduce", "--smoke", "--out", str(out), "--quiet", "--jobs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    text = (out / "FINDINGS.md").read_text()
    for figure in ("fig1_families.png", "fig2_dataset_size.png", "fig3_mcs_gt_gain.png", "fig4_external.png",
                   "fig5_certainty.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG" and f"]({figure})" in text
    data = json.loads((out / "findings.json").read_text())
    assert len(data["findings"]) == 7  # the paper's six and the certainty explanation (the smoke plan has no real LM)
    assert all(f["verdict"] in ("reproduced", "partly reproduced", "not reproduced") for f in data["findings"])
    certainty = next(f for f in data["findings"] if f["experiment"] == "certainty")
    assert "within-group AUC" in certainty["why"] and "| self_certainty arm |" in text
    assert "**Verdict:" in text and "| # | finding | verdict |" in text
    kept = json.loads((out / "seconds.json").read_text())  # written after each experiment: a crash loses no time
    assert set(kept) == set(data["seconds"]) and all(v >= 0 for v in kept.values())
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


def test_reproduce_only_methods_writes_the_side_by_side_table(tmp_path):
    out = tmp_path / "methods"
    cmd = [sys.executable, "-m", "urlvr", "reproduce", "--smoke", "--only", "methods", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    text = (out / "FINDINGS.md").read_text()
    assert text.startswith("# The 2025–26 methods beside majority vote") and "--only methods" in text
    arms = PLANS["smoke"].methods
    for arm in arms:
        for prior in ("aligned", "misaligned"):
            assert f"| {arm} | {prior} |" in text
            assert (out / "methods" / f"{prior}_{arm}_s0" / "summary.json").is_file()
    assert (out / "fig_methods.png").read_bytes()[:4] == b"\x89PNG"
    assert [f["verdict"] for f in json.loads((out / "findings.json").read_text())["findings"]] == ["measured"]


def test_methods_compare_to_baseline_needs_tol_and_the_seed_spread():
    from urlvr.experiments.methods import compare_to_baseline

    end = {"majority_vote": [0.50, 0.50, 0.50], "up": [0.60, 0.61, 0.59], "down": [0.40, 0.41, 0.39],
           "small": [0.52, 0.52, 0.52], "noisy": [0.70, 0.40, 0.80]}
    assert compare_to_baseline(end) == {"up": "above", "down": "below", "small": "within", "noisy": "within"}
