"""Small Llama-architecture models built from a transformers config.

Sizes (with the 100-token character vocabulary, tied embeddings):

| size   | hidden | layers | heads | mlp  | parameters |
|--------|--------|--------|-------|------|------------|
| tiny   | 64     | 2      | 4     | 192  | ~0.1M      |
| small  | 128    | 3      | 4     | 384  | ~0.6M      |
| base   | 192    | 4      | 6     | 576  | ~1.8M      |

>>> sum(p.numel() for p in build_model("tiny", vocab_size=100).parameters()) < 150_000
True
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from urlvr.errors import UrlvrError

__all__ = ["MODEL_SIZES", "model_config", "build_model"]

MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192),
    "small": dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, intermediate_size=384),
    "base": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6, intermediate_size=576),
}


def model_config(size: str, vocab_size: int, max_positions: int = 256) -> LlamaConfig:
    """The transformers config of a testbed model (pad=0, BOS=1, EOS=2 as in the char tokenizer)."""
    if size not in MODEL_SIZES:
        raise UrlvrError(f"unknown model size {size!r}; choose one of: {', '.join(MODEL_SIZES)}")
    if vocab_size < 4 or max_positions < 8:
        raise UrlvrError(f"impossible model shape (vocab_size={vocab_size}, max_positions={max_positions})")
    return LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        rms_norm_eps=1e-5,
        **MODEL_SIZES[size],
    )


def build_model(size: str, vocab_size: int, seed: int = 0, max_positions: int = 256) -> LlamaForCausalLM:
    """A randomly initialised testbed model, seeded."""
    config = model_config(size, vocab_size, max_positions)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model
