"""Bad input through the real CLI: one clear line, exit code 2, no traceback, nothing half-written."""

import os
import subprocess
import sys

import pytest

from conftest import REPO
from urlvr.cli import main


def _fail(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_unknown_prior_and_task(capsys):
    assert "unknown prior 'confused'" in _fail(capsys, ["testbed", "build", "--prior", "confused", "--quiet"])
    assert "unknown task 'nope'" in _fail(capsys, ["testbed", "build", "--prior", "aligned", "--task", "nope"])
    assert "unknown model size" in _fail(capsys, ["testbed", "build", "--prior", "aligned", "--size", "huge"])


def test_model_folder_without_weights(capsys, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    line = _fail(capsys, ["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={tmp_path / 'm'}",
                          f"out_dir={tmp_path / 'run'}"])
    assert "no weights" in line
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_malformed_jsonl_and_missing_field(capsys, tmp_path, tiny_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1", "answer": "2", "id": "a"}\n{"prompt": "2+2", "answer": \n')
    line = _fail(capsys, ["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={tiny_model}", "task=jsonl",
                          f"task_options={{path: {bad}}}", f"out_dir={tmp_path / 'run'}"])
    assert f"{bad}:2" in line
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"question": "1+1", "answer": "2"}\n')
    line = _fail(capsys, ["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={tiny_model}", "task=jsonl",
                          f"task_options={{path: {missing}}}", f"out_dir={tmp_path / 'run2'}"])
    assert "prompt" in line and f"{missing}:1" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


@pytest.mark.parametrize("override,msg", [
    ("n_train=16", "n_train (16) > n_votes (8)"),
    ("lr=-1", "lr must be > 0"),
    ("lerning=3", "unknown config key"),
    ("reward=nonsense", "unknown reward"),
])
def test_bad_configs(capsys, tmp_path, override, msg):
    line = _fail(capsys, ["train", str(REPO / "recipes" / "testbed_gold.yaml"), override, f"out_dir={tmp_path / 'r'}"])
    assert msg in line


def test_exit_code_and_no_traceback_in_a_real_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "urlvr", "train", str(REPO / "recipes" / "testbed_gold.yaml"),
                          f"model={tmp_path / 'absent'}", f"out_dir={tmp_path / 'run'}"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: model folder") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
