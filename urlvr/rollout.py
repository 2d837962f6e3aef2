"""Rollout: batched sampling with a KV cache, returning per-token statistics from the same logits.

For every sampled token ``y_t`` the sampler keeps, from the logits ``z_t`` that produced it at the
sampling temperature ``τ`` (``p_t = softmax(z_t / τ)``): ``log p_t(y_t)``, the full-distribution entropy
``H(p_t)``, the self-certainty ``KL(U ‖ p_t)`` and the top-1 minus top-2 probability gap. These are the
rollout (old) policy's statistics, so logit-based rewards need no extra forward pass, and ``logprob`` is
the ``old_logprob`` of the PPO ratio. Top-p only truncates what is sampled; statistics and log-probs are
those of the full tempered distribution (as in verl and TRL).

A backend implements :class:`Sampler`; :class:`HFSampler` works with any transformers causal LM. Other
backends (vLLM) plug in behind the same ``generate`` call without changes to the trainer loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from urlvr.stats import token_stats

__all__ = ["SamplingSettings", "RolloutBatch", "Sampler", "HFSampler"]


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    greedy: bool = False
    """Take the argmax instead of sampling (statistics still use ``temperature``)."""


@dataclass
class RolloutBatch:
    """B completions. Token tensors are right-padded to the longest completion, length T."""

    prompt_ids: list[list[int]]
    """Prompt token ids per completion (no padding)."""
    tokens: torch.Tensor  # (B, T) int64, pad after EOS
    mask: torch.Tensor  # (B, T) bool, True on generated tokens (EOS included)
    logprob: torch.Tensor  # (B, T) float32, log p_t(y_t) under softmax(z/τ)
    entropy: torch.Tensor  # (B, T) float32, H(p_t)
    self_certainty: torch.Tensor  # (B, T) float32, KL(U || p_t) (true KL, >= 0)
    top2_gap: torch.Tensor  # (B, T) float32, p_t^(1) - p_t^(2)
    texts: list[str]
    truncated: torch.Tensor  # (B,) bool, hit max_new_tokens without EOS
    meta: dict = field(default_factory=dict)

    @property
    def lengths(self) -> torch.Tensor:  # (B,)
        return self.mask.sum(1)

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, idx: list[int]) -> "RolloutBatch":
        """The completions at ``idx``, in that order."""
        ix = torch.as_tensor(idx, dtype=torch.long)
        return RolloutBatch(
            prompt_ids=[self.prompt_ids[i] for i in idx], tokens=self.tokens[ix], mask=self.mask[ix],
            logprob=self.logprob[ix], entropy=self.entropy[ix], self_certainty=self.self_certainty[ix],
            top2_gap=self.top2_gap[ix], texts=[self.texts[i] for i in idx], truncated=self.truncated[ix],
            meta=dict(self.meta),
        )


class Sampler(Protocol):
    def generate(self, prompts: list[str], settings: SamplingSettings, seed: int | list[int]) -> RolloutBatch:
        """One completion per prompt (repeat a prompt for a group), seeded.

        ``seed``: one int for the whole batch, or one int per prompt; prompts with the same seed draw
        from one generator in order, so a group seeded by its problem samples the same completions
        whichever batch, chunk or process it lands in.
        """
        ...


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail outside the smallest set with mass >= top_p, renormalise. probs (B, V)."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)  # (B, V)
    keep = sorted_p.cumsum(-1) - sorted_p < top_p  # (B, V): mass before this token < top_p
    sorted_p = sorted_p * keep
    out = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return out / out.sum(-1, keepdim=True)


class HFSampler:
    """Sampling with a transformers causal LM and its KV cache.

    ``batch_size`` caps how many sequences go through the model at once (chunks are sampled in turn
    with the same generator, so results do not depend on the chunking only when it is unchanged).
    """

    def __init__(self, model, tokenizer, batch_size: int = 1024):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def generate(self, prompts: list[str], settings: SamplingSettings, seed: int | list[int]) -> RolloutBatch:
        seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        gens = {s: torch.Generator(device="cpu").manual_seed(int(s) % (2**63)) for s in dict.fromkeys(seeds)}
        enc = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        parts = [self._generate_chunk(enc[i : i + self.batch_size], settings, seeds[i : i + self.batch_size], gens)
                 for i in range(0, len(enc), self.batch_size)]
        return _concat(parts, enc, self.tokenizer, self.pad_id)

    def _generate_chunk(self, prompt_ids: list[list[int]], s: SamplingSettings, seeds: list[int],
                        gens: dict[int, torch.Generator]):
        dev, B = self.device, len(prompt_ids)
        P = max(len(p) for p in prompt_ids)
        ids = torch.full((B, P), self.pad_id, dtype=torch.long)
        attn = torch.zeros((B, P), dtype=torch.long)
        for i, p in enumerate(prompt_ids):  # left padding
            ids[i, P - len(p):] = torch.tensor(p)
            attn[i, P - len(p):] = 1
        ids, attn = ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # (B, P)
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1, :]  # (B, V)
        next_pos = pos[:, -1:] + 1  # (B, 1)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        rows_of = {sd: torch.tensor([i for i, x in enumerate(seeds) if x == sd]) for sd in dict.fromkeys(seeds)}
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("tok", "mask", "lp", "ent", "sc", "gap")}
        for _ in range(s.max_new_tokens):
            z = logits.float()  # (B, V)
            probs = torch.softmax(z / s.temperature, dim=-1)  # (B, V)
            if s.greedy:
                tok = z.argmax(-1)  # (B,)
            else:
                tok = _sample(_top_p_filter(probs, s.top_p).cpu(), rows_of, gens).to(dev)  # (B,)
            st = token_stats(z[:, None, :], tok[:, None], s.temperature)
            live = ~done
            tok = torch.where(live, tok, torch.full_like(tok, self.pad_id))
            cols["tok"].append(tok)
            cols["mask"].append(live)
            cols["lp"].append(st.logprob[:, 0] * live)
            cols["ent"].append(st.entropy[:, 0] * live)
            cols["sc"].append(st.self_certainty[:, 0] * live)
            cols["gap"].append(st.top2_gap[:, 0] * live)
            done = done | (tok == self.eos_id)
            if bool(done.all()):
                break
            attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=dev)], dim=1)
            out = self.model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos,
                             past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1, :]
            next_pos = next_pos + 1
        stack = {k: torch.stack(v, dim=1).cpu() for k, v in cols.items()}  # each (B, T)
        stack["truncated"] = (~done).cpu()
        return stack


def _sample(probs: torch.Tensor, rows_of: dict[int, torch.Tensor], gens: dict[int, torch.Generator]) -> torch.Tensor:
    """One token per row (probs (B, V)); rows sharing a seed draw from that seed's generator."""
    if len(rows_of) == 1:
        (sd,) = rows_of
        return torch.multinomial(probs, 1, generator=gens[sd]).squeeze(1)
    tok = torch.empty(probs.shape[0], dtype=torch.long)
    for sd, rows in rows_of.items():
        tok[rows] = torch.multinomial(probs[rows], 1, generator=gens[sd]).squeeze(1)
    return tok


def _concat(parts: list[dict], prompt_ids, tokenizer, pad_id: int) -> RolloutBatch:
    T = max(p["tok"].shape[1] for p in parts)

    def pad(x: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value)

    tokens = torch.cat([pad(p["tok"], pad_id) for p in parts])
    mask = torch.cat([pad(p["mask"], False) for p in parts])
    texts = tokenizer.batch_decode([t[m].tolist() for t, m in zip(tokens, mask)], skip_special_tokens=True)
    return RolloutBatch(
        prompt_ids=[list(p) for p in prompt_ids], tokens=tokens, mask=mask,
        logprob=torch.cat([pad(p["lp"], 0.0) for p in parts]),
        entropy=torch.cat([pad(p["ent"], 0.0) for p in parts]),
        self_certainty=torch.cat([pad(p["sc"], 0.0) for p in parts]),
        top2_gap=torch.cat([pad(p["gap"], 0.0) for p in parts]),
        texts=texts, truncated=torch.cat([p["truncated"] for p in parts]),
    )
