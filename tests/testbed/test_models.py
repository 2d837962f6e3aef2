import pytest
import torch
from transformers import AutoModelForCausalLM

from urlvr.errors import UrlvrError
from urlvr.loading import load_model, save_model
from urlvr.testbed.models import MODEL_SIZES, build_model
from urlvr.testbed.tokenizer import char_tokenizer


@pytest.mark.parametrize("size,lo,hi", [("tiny", 5e4, 2e5), ("small", 3e5, 1e6), ("base", 1e6, 3e6)])
def test_sizes(size, lo, hi):
    n = sum(p.numel() for p in build_model(size, 100).parameters())
    assert lo < n < hi


def test_save_load_same_logits(tmp_path):
    model, tok = build_model("tiny", 100, seed=3), char_tokenizer()
    save_model(model, tok, tmp_path / "m")
    loaded, tok2 = load_model(tmp_path / "m", device="cpu")
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "m")).__name__ == "LlamaForCausalLM"
    ids = torch.tensor([tok2("12+3\n")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model.eval()(ids).logits, loaded(ids).logits, atol=1e-6)


def test_seeded_build_is_deterministic():
    a, b = build_model("tiny", 100, seed=1), build_model("tiny", 100, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no config.json"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "no weights"),
    (lambda p: p.write_text("x"), "not a folder"),
])
def test_bad_model_paths_fail_at_once(tmp_path, setup, message):
    path = tmp_path / "model"
    setup(path)
    with pytest.raises(UrlvrError, match=message):
        load_model(path)


def test_impossible_sizes():
    with pytest.raises(UrlvrError, match="unknown model size"):
        build_model("huge", 100)
    with pytest.raises(UrlvrError, match="impossible"):
        build_model("tiny", 2)
    assert set(MODEL_SIZES) == {"tiny", "small", "base"}
