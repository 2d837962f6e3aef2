"""The real-model path: a local Hugging Face checkpoint folder + a JSONL benchmark with a \\boxed{} template."""

import pytest

from conftest import SHARED_DATA
from urlvr.config import config_from_dict
from urlvr.io import read_jsonl
from urlvr.loading import save_model
from urlvr.testbed.models import build_model
from urlvr.testbed.tokenizer import char_tokenizer
from urlvr.trainer import train

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "math500.jsonl").exists(), reason="../shared/data is absent")


def test_train_on_a_checkpoint_folder_and_math500(tmp_path):
    save_model(build_model("tiny", len(char_tokenizer()), seed=0), char_tokenizer(), tmp_path / "ckpt")
    cfg = config_from_dict(dict(
        model=str(tmp_path / "ckpt"), task="jsonl",
        task_options={"path": str(SHARED_DATA / "math500.jsonl"), "grader": "math", "limit": 8},
        train_split="test", train_problems=4, val_problems=0, equivalence="math", reward="majority_vote",
        prompts_per_step=2, n_votes=4, n_train=4, max_new_tokens=6, steps=2, lr=1e-3, save_every=2,
        out_dir=str(tmp_path / "run")))
    summary = train(cfg, progress=False)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2] and summary["steps"] == 2
    assert rows[1]["rollout/length_mean"] > 0 and "oracle/accuracy" in rows[1]
    assert (tmp_path / "run" / "checkpoints" / "step_000002" / "model.safetensors").exists()
