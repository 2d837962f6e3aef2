from transformers import AutoTokenizer

from urlvr.testbed.tokenizer import CHARACTERS, char_tokenizer


def test_round_trip_every_character(tmp_path):
    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = CHARACTERS + "  12 + 3 = \\boxed{15}\n"
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert loaded.decode(ids) == text  # no spurious spaces
    assert 3 not in ids  # no <unk> for printable ASCII


def test_specials_and_padding(tmp_path):
    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    t = AutoTokenizer.from_pretrained(tmp_path)
    assert (t.pad_token_id, t.bos_token_id, t.eos_token_id) == (0, 1, 2)
    enc = t(["ab", "abcd"], padding=True)
    assert enc["input_ids"][0][:2] == [0, 0] and enc["input_ids"][0][2] == 1  # left padding, then BOS
    assert t.decode(enc["input_ids"][0], skip_special_tokens=True) == "ab"


def test_unknown_characters_become_unk():
    tok = char_tokenizer()
    ids = tok("é", add_special_tokens=False)["input_ids"]
    assert ids == [tok.unk_token_id]
