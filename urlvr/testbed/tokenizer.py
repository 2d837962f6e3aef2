"""A character-level tokenizer saved in Hugging Face format.

One token per printable ASCII character plus newline, and four specials: ``<pad>`` (id 0), ``<s>``
(BOS, id 1), ``</s>`` (EOS, id 2), ``<unk>`` (id 3). Any other character becomes ``<unk>``. Saved with
``save_pretrained``, it loads with ``AutoTokenizer.from_pretrained(dir)`` and decodes without spurious
spaces (the decoder concatenates tokens). Prompts are plain text, no chat template: the model sees
``"<s>" + question + "\\n"`` and answers ``"\\boxed{...}</s>"``.

>>> tok = char_tokenizer()
>>> ids = tok("12+3=", add_special_tokens=False)["input_ids"]
>>> len(ids), tok.decode(ids)
(5, '12+3=')
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

__all__ = ["char_tokenizer", "SPECIAL_TOKENS", "CHARACTERS"]

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARACTERS = "\n" + "".join(c for c in string.printable if c.isprintable())  # 95 printable + newline


def char_tokenizer(junk: int = 0) -> PreTrainedTokenizerFast:
    """Build the character tokenizer (deterministic: same ids every time).

    ``junk`` > 0 appends that many tokens ``<junk0>``, ``<junk1>``, ... that no text ever tokenises to, so a
    model never sees them: the long tail of a real vocabulary, which a distribution-level statistic (self-
    certainty averages ``log p`` over every token) reads as well.

    >>> len(char_tokenizer()), len(char_tokenizer(junk=900)), char_tokenizer(junk=2).decode([100, 101])
    (100, 1000, '<junk0><junk1>')
    """
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in CHARACTERS:
        vocab.setdefault(c, len(vocab))
    for i in range(junk):
        vocab[f"<junk{i}>"] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    return tok
