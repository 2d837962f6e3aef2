"""Data parallel: a 2-process run (gloo on CPU, launched by torchrun) updates like a 1-process run."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def _run(launcher: list[str], model: str, out) -> subprocess.CompletedProcess:
    args = ["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={model}", "reward=random",
            "task_options={digits: 1, ops: '+'}", "train_problems=40", "val_problems=8", "prompts_per_step=4",
            "n_votes=4", "n_train=4", "max_new_tokens=8", "steps=2", "save_every=1", "val_every=1", "val_k=2",
            "lr=1e-3", f"out_dir={out}", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([*launcher, "-m", "urlvr", *args], env=env, capture_output=True, text=True, timeout=600)


def _rows(path):
    return [json.loads(line) for line in open(path / "metrics.jsonl")]


def test_two_processes_match_one(tiny_model, tmp_path):
    one = _run([sys.executable], tiny_model, tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    two = _run(torchrun, tiny_model, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-2000:]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["step"] for r in b] == [0, 1, 2]  # rank 0 alone logged
    for key in ("policy/grad_norm", "loss/policy", "reward/mean"):
        assert a[1][key] != 0.0 or key == "loss/policy"
        assert b[1][key] == pytest.approx(a[1][key], rel=1e-5, abs=1e-6), key
    # the weights after the first update agree too
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "one" / "checkpoints" / "step_000002" / "model.safetensors")
    wb = load_file(tmp_path / "two" / "checkpoints" / "step_000002" / "model.safetensors")
    for name in wa:
        assert (wa[name] - wb[name]).abs().max() < 1e-5, name


def test_groups_must_divide_evenly(tiny_model, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run([*torchrun, "-m", "urlvr", "train", str(REPO / "recipes" / "testbed_gold.yaml"),
                          f"model={tiny_model}", "prompts_per_step=3", "task_options={digits: 1, ops: '+'}",
                          "train_problems=40", "val_problems=4", f"out_dir={tmp_path / 'x'}", "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "not divisible by the number of processes" in res.stderr


def test_mixed_precision_left_in_accelerate_by_another_library_does_not_reach_urlvrs_model(tiny_model, tmp_path):
    """TRL's GRPOConfig defaults to bf16 even on a CPU, and accelerate keeps that for every later Accelerator in
    the process; urlvr's trainer must still compute in the precision of its own dtype setting (float32 here)."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from conftest import tiny_config
    from urlvr.loading import load_model
    from urlvr.trainer import Trainer

    AcceleratorState._reset_state(True)
    Accelerator(cpu=True, mixed_precision="bf16")  # what a TRL run earlier in the process leaves behind
    try:
        trainer = Trainer(tiny_config(tiny_model, tmp_path / "run"), tiny_model)
        assert trainer.dist.acc.mixed_precision == "bf16"  # the leftover state is there ...
        reference, _ = load_model(tiny_model, "cpu", "float32")
        ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
        with torch.no_grad():
            got, want = trainer.model(input_ids=ids).logits, reference(input_ids=ids).logits
        assert torch.equal(got, want)  # ... and the model still computes in float32
    finally:
        AcceleratorState._reset_state(True)
