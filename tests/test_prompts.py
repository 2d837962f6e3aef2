"""The one prompt renderer and the stop tokens, on real tokenizers: the testbed's and SmolLM2's."""

import pytest

from urlvr.errors import UrlvrError
from urlvr.loading import load_model
from urlvr.prompts import Renderer, stop_token_ids
from urlvr.tasks import get_task
from urlvr.testbed.tokenizer import char_tokenizer

TASK = get_task("arithmetic", digits=1, ops="+")
PROBLEM = TASK.examples("test", 1)[0].problem
TEXT = TASK.prompt(PROBLEM)


def test_without_a_chat_template_auto_and_off_give_the_task_text():
    tok = char_tokenizer()
    for chat in ("auto", "off"):
        r = Renderer(TASK.prompt, tok, chat)
        assert not r.uses_chat and r(PROBLEM) == TEXT
    assert Renderer(TASK.prompt, tok, "auto", "Be exact.")(PROBLEM) == f"Be exact.\n\n{TEXT}"
    with pytest.raises(UrlvrError, match="chat=on but the model's tokenizer has no chat template"):
        Renderer(TASK.prompt, tok, "on")
    with pytest.raises(UrlvrError, match="chat='yes' is not one of: auto, on, off"):
        Renderer(TASK.prompt, tok, "yes")


def test_bos_appears_once_when_template_and_encoder_both_add_it():
    tok = char_tokenizer()  # its encoder adds <s>; give it a template that writes <s> too, as Llama 3's does
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
                         "{% if add_generation_prompt %}[assistant]{% endif %}")
    r = Renderer(TASK.prompt, tok, "auto", "Be exact.")
    assert r.uses_chat and r(PROBLEM) == f"[system]Be exact.[user]{TEXT}[assistant]"
    ids = tok(r(PROBLEM))["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


def test_smollm2_chat_template_system_prompt_and_stop_tokens(smollm2):
    model, tok = load_model(smollm2, device="cpu")
    auto = Renderer(TASK.prompt, tok, "auto", "Be exact.")
    assert auto(PROBLEM) == f"<|im_start|>system\nBe exact.<|im_end|>\n<|im_start|>user\n{TEXT}<|im_end|>\n" \
                           "<|im_start|>assistant\n"
    assert Renderer(TASK.prompt, tok, "off")(PROBLEM) == TEXT
    described = auto.describe(PROBLEM)
    assert described == {"chat": "auto", "uses_chat_template": True, "system_prompt": "Be exact.",
                         "rendered": auto(PROBLEM)}
    stops = stop_token_ids(tok, model)
    assert tok.convert_ids_to_tokens(list(stops)) == ["<|im_end|>"]  # EOS is ChatML's end of turn here
