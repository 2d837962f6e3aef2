"""Rollout: batched sampling with a KV cache, and scoring of given continuations, with per-token statistics.

For every sampled token ``y_t`` the sampler keeps, from the logits ``z_t`` that produced it at the
sampling temperature ``τ`` (``p_t = softmax(z_t / τ)``), every statistic of
:data:`urlvr.stats.TOKEN_STATS` (log-prob, entropy, self-certainty, top-2 gap). These are the rollout
(old) policy's statistics, so logit-based rewards need no extra forward pass, and ``logprob`` is the
``old_logprob`` of the PPO ratio. Top-p only truncates what is sampled; statistics and log-probs are
those of the full tempered distribution (as in verl and TRL).

:meth:`Sampler.score` gives the same statistics for continuations that the caller supplies (the
policy's probability of a *given* answer: CoVo, RLPR-style rewards): one no-grad forward per batch,
same temperature handling, same left-padded layout as the loss forward (:func:`pack`).

A backend implements :class:`Sampler`; :class:`HFSampler` works with any transformers causal LM. Other
backends (vLLM) plug in behind the same two calls without changes to the trainer loop.
"""

from __future__ import annotations

import collections
import inspect
from contextlib import contextmanager, nullcontext
from typing import Iterator, Protocol, Sequence

import torch
from torch.utils.checkpoint import checkpoint
from transformers.cache_utils import DynamicLayer

from urlvr.prompts import stop_token_ids
from urlvr.stats import STAT_NAMES, TokenStats, _log_probs, sampled_logprobs, stats_from_log_probs, token_entropy, \
    token_stats
from urlvr.types import RolloutBatch, SamplingSettings

__all__ = ["SamplingSettings", "RolloutBatch", "Sampler", "HFSampler", "pack", "completion_logprobs", "score_tokens",
           "LOGIT_BUDGET", "merged_lora"]


class Sampler(Protocol):
    def generate(self, prompts: list[str], settings: SamplingSettings, seed: int | list[int]) -> RolloutBatch:
        """One completion per prompt (repeat a prompt for a group), seeded.

        ``seed``: one int for the whole batch, or one int per prompt; prompts with the same seed draw
        from one generator in order, so a group seeded by its problem samples the same completions
        whichever batch, chunk or process it lands in.
        """
        ...

    def score(self, prompts: list[str], continuations: Sequence[Sequence[int] | str],
              temperature: float = 1.0) -> list[TokenStats]:
        """The policy's per-token statistics of each given continuation after its prompt, no grad.

        ``continuations``: token ids, or text (tokenised without special tokens). One
        :class:`~urlvr.stats.TokenStats` per row, each entry of shape ``(len(continuation),)``;
        ``logprob`` summed is the continuation's log-probability at temperature τ.
        """
        ...


def pack(prompt_ids: Sequence[Sequence[int]], tokens: torch.Tensor, mask: torch.Tensor,
         pad_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompts followed by right-padded completions: ``(ids (B, P+T), attention (B, P+T), P)``.

    ``tokens`` (B, T) and ``mask`` (B, T) are the completions; positions follow the attention mask
    (``(attention.cumsum(-1) - 1).clamp(min=0)``), as the sampler generated them.
    """
    B, T = tokens.shape
    P = max(len(p) for p in prompt_ids)
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    att = torch.zeros((B, P + T), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        ids[i, P - len(p) : P] = torch.tensor(list(p), dtype=torch.long)
        att[i, P - len(p) : P] = 1
    ids[:, P:] = tokens
    att[:, P:] = mask.long()
    return ids, att, P


LOGIT_BUDGET = 2**26
"""float32 logits (64 Mi values, 256 MiB) above which the LM head runs in chunks of positions."""


def completion_logprobs(model, ids: torch.Tensor, att: torch.Tensor, P: int, tokens: torch.Tensor,
                        temperature: float, with_entropy: bool = False, chunk: int = 0):
    """Log-probs (B, T) of the completion tokens under ``model`` (and entropies if asked), one forward.

    ``ids``/``att`` come from :func:`pack` (prompts left-padded, completions after position P); ``tokens``
    (B, T) are the completions. Differentiable. Only the logits that produced completion tokens are
    computed, and never as one (B, T, V) float32 tensor when that is large: with ``chunk`` positions at a
    time (0 = automatic: whole when B·T·V <= :data:`LOGIT_BUDGET`), the LM head and the log-softmax run per
    chunk under activation checkpointing, so a real vocabulary (50k-150k) costs O(B·chunk·V) memory in
    the forward and the backward. Models that transform their logits after the head (soft-capping,
    scaling) always take the whole-logits path.
    """
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    B, T = tokens.shape
    head = None if _transforms_logits(model) else _output_head(model)
    step = (chunk or max(1, LOGIT_BUDGET // max(1, B * head.weight.shape[0]))) if head is not None else T
    if step >= T:
        logits = model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=T + 1).logits  # (B, T+1, V)
        z = logits[:, :-1, :].float()  # (B, T, V): the logits that produced each completion token
        lp = sampled_logprobs(z, tokens, temperature)  # (B, T)
        return (lp, token_entropy(z, temperature)) if with_entropy else (lp, None)
    out = model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=1, output_hidden_states=True)
    hidden = out.hidden_states[-1][:, -(T + 1) : -1]  # (B, T, H): final (normed) states before each completion token

    def chunk_stats(h: torch.Tensor, t: torch.Tensor):
        z = head(h).float()  # (B, c, V)
        lp = sampled_logprobs(z, t, temperature)  # (B, c)
        return (lp, token_entropy(z, temperature)) if with_entropy else (lp,)

    parts = [checkpoint(chunk_stats, hidden[:, s : s + step], tokens[:, s : s + step], use_reentrant=False)
             if torch.is_grad_enabled() else chunk_stats(hidden[:, s : s + step], tokens[:, s : s + step])
             for s in range(0, T, step)]
    lp = torch.cat([p[0] for p in parts], dim=1)  # (B, T)
    return (lp, torch.cat([p[1] for p in parts], dim=1)) if with_entropy else (lp, None)


def _output_head(model):
    inner = getattr(model, "module", model)  # a DistributedDataParallel wrapper
    get = getattr(inner, "get_output_embeddings", None)
    head = get() if get else None
    return head if isinstance(getattr(head, "weight", None), torch.Tensor) else None


def _transforms_logits(model) -> bool:
    cfg = getattr(getattr(model, "module", model), "config", None)
    return any(getattr(cfg, name, None) not in (None, 1.0) for name in
               ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier"))


@torch.no_grad()
def score_tokens(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                 temperature: float = 1.0, pad_id: int = 0, batch_size: int = 8,
                 chunk_size: int | None = 512) -> list[TokenStats]:
    """Per-token statistics of each completion under ``model``: one no-grad forward per ``batch_size`` rows.

    Prompts are left-padded, completions right-padded (:func:`pack`), and only the ``T + 1`` last
    logits are computed (``logits_to_keep``).

    Args:
        model: a causal LM (``model(input_ids, attention_mask, position_ids, logits_to_keep)``).
        prompt_ids, completion_ids: token ids per row, no padding; a completion keeps its EOS.
        temperature: τ of ``p_t = softmax(z_t / τ)``, the sampling temperature.
        chunk_size: positions per step of :func:`~urlvr.stats.token_stats` (bounds float32 temporaries).

    Returns:
        One :class:`~urlvr.stats.TokenStats` per row (every name of :data:`~urlvr.stats.STAT_NAMES`),
        float32 CPU tensors of shape ``(len(completion),)``.
    """
    dev = next(model.parameters()).device
    head = _output_head(model)
    if head is not None:  # keep each forward's (B, T+1, V) logits within the budget
        longest = max((len(c) for c in completion_ids), default=1) + 1
        batch_size = max(1, min(batch_size, LOGIT_BUDGET // (longest * head.weight.shape[0])))
    out: list[TokenStats] = []
    for s in range(0, len(prompt_ids), batch_size):
        ps, cs = prompt_ids[s : s + batch_size], completion_ids[s : s + batch_size]
        T = max(1, max(len(c) for c in cs))
        tokens = torch.full((len(cs), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(cs), T), dtype=torch.bool)
        for i, c in enumerate(cs):
            tokens[i, : len(c)], mask[i, : len(c)] = torch.tensor(list(c), dtype=torch.long), True
        ids, att, P = pack(ps, tokens, mask, pad_id)
        ids, att = ids.to(dev), att.to(dev)
        pos = (att.cumsum(-1) - 1).clamp(min=0)  # (B, P+T)
        logits = model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=T + 1,
                       use_cache=False).logits  # (B, T+1, V)
        st = token_stats(logits[:, :-1], ids[:, P:], temperature, chunk_size=chunk_size)  # (B, T) each
        for i, c in enumerate(cs):
            out.append(TokenStats({k: st[k][i, : len(c)].float().cpu() for k in STAT_NAMES}))
    return out


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

    ``batch_size`` caps how many sequences go through the model at once. Every sequence draws its
    ``max_new_tokens`` uniforms from its seed's generator up front (rows sharing a seed in batch order),
    so the samples depend on the seed and the row's position among that seed's rows, never on the
    chunking or on the other rows of the batch.

    Work per rollout: one prompt forward per *distinct* prompt (a group's N copies share it), then per
    step the model's forward on one token per row still generating, and a few ``(B, V)`` passes: one
    log-softmax and its ``exp`` (the sampling distribution and all statistics come from them), an
    inverse-CDF draw against the pre-drawn uniform (on the model's device: no host round trip) and the
    statistics (one top-k for the top-2 gap and the confidence). With a ``DynamicCache`` (the default of
    transformers models) the cache lives in buffers allocated once, grown by writing one position per
    step instead of re-concatenating the whole cache, and rows that have ended are dropped from the
    batch once they are a quarter of it (:attr:`COMPACT`); other caches are used as they come, every row
    to the end. What the model would redo identically at every step is done once per rollout where it
    is known to be equivalent: the decoding steps' attention mask (:attr:`DECODE_MASK`), LoRA adapters
    merged into the weights (:attr:`MERGE_LORA`), and under autocast the cache in the autocast dtype
    (:attr:`AMP_CACHE`); each falls back to the plain path where it does not apply.
    """

    SCORE_BATCH = 64
    """Rows per forward of :meth:`score` (each holds a ``T × V`` slice of logits)."""
    COMPACT = 0.75
    """Drop ended rows from the decoding batch once at most this share of it is still generating
    (each drop copies the cache once)."""
    DECODE_MASK = True
    """Pass the decoding steps' 4D attention mask, built once per rollout (see :meth:`_decode_mask`);
    False: the model builds it from the 2D mask at every step."""
    MERGE_LORA = True
    """Sample from a peft LoRA model with its adapters merged into the weights (see :func:`merged_lora`)."""
    AMP_CACHE = True
    """Under autocast, keep the cache in the autocast dtype (see :meth:`_cache_dtype`)."""

    def __init__(self, model, tokenizer, batch_size: int = 1024, stop_ids: Sequence[int] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.stop_ids = tuple(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer, model)
        """Generation of a row ends at any of these (EOS and the chat end-of-turn tokens)."""
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper takes **kwargs
        self._keeps_last = "logits_to_keep" in inspect.signature(inner.forward).parameters

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompts: list[str], settings: SamplingSettings, seed: int | list[int]) -> RolloutBatch:
        seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        gens = {s: torch.Generator(device="cpu").manual_seed(int(s) % (2**63)) for s in dict.fromkeys(seeds)}
        enc = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        dev = self.device.type
        # inference mode (the returned tensors go through _concat, which makes normal tensors of them) skips
        # autocast's weight-cast cache: under autocast every step would cast every weight again (SmolLM2 bf16:
        # a 576x1536 linear of 32 rows 0.50 ms instead of 0.23 ms), so there no_grad, which keeps the cache
        grad_off = torch.no_grad() if torch.is_autocast_enabled(dev) else torch.inference_mode()
        with grad_off, merged_lora(self.model) if self.MERGE_LORA else nullcontext():
            parts = [self._generate_chunk(enc[i : i + self.batch_size], settings, seeds[i : i + self.batch_size], gens)
                     for i in range(0, len(enc), self.batch_size)]
        return _concat(parts, enc, self.tokenizer, self.pad_id)

    def score(self, prompts: list[str], continuations: Sequence[Sequence[int] | str],
              temperature: float = 1.0) -> list[TokenStats]:
        """Per-token statistics of given continuations (see :meth:`Sampler.score`), ``batch_size`` rows a forward."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts for {len(continuations)} continuations")
        enc = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] if isinstance(c, str) else list(c)
               for c in continuations]
        return score_tokens(self.model, enc, ids, temperature, self.pad_id, min(self.batch_size, self.SCORE_BATCH))

    def token_texts(self, token_ids: Sequence[int]) -> list[str]:
        """Each token decoded on its own (a reward that cuts a completion at token boundaries, e.g. SCOPE's steps)."""
        return [self.tokenizer.decode([int(t)]) for t in token_ids]

    def _forward(self, hidden: bool = False, **kw):
        if self._keeps_last:
            kw["logits_to_keep"] = 1  # the prefill needs the last position's logits only
        out = self.model(**kw, use_cache=True, output_hidden_states=hidden)
        if hidden:  # the final (normed) state of the fed token: (B, H)
            return out.past_key_values, out.logits[:, -1, :], out.hidden_states[-1][:, -1, :].float()
        return out.past_key_values, out.logits[:, -1, :]  # (B, V)

    def _prefill(self, prompt_ids: list[list[int]], T: int):
        """The prompts' forward, once per distinct prompt (a GRPO group repeats one prompt N times).

        Returns the cache (buffered for ``T`` more tokens when possible), the last logits (B, V), the
        left-padded prompt attention mask (B, P) and positions (B, P), all in batch order, and whether
        rows can be selected in the cache. A cache whose rows cannot be selected (not a kind of
        ``DynamicCache``) gets one forward per row instead.
        """
        index: dict[tuple[int, ...], int] = {}
        src = [index.setdefault(tuple(p), len(index)) for p in prompt_ids]  # row -> its distinct prompt
        if len(index) < len(prompt_ids):
            shared = self._prompt_forward([list(p) for p in index], T, torch.tensor(src, device=self.device))
            if shared is not None:
                return shared
        return self._prompt_forward(prompt_ids, T, None)

    def _prompt_forward(self, prompts: list[list[int]], T: int, rows: torch.Tensor | None):
        """Forward of ``prompts`` (U of them), then rows ``rows`` (B,) of everything; None if impossible."""
        P = max(map(len, prompts))
        ids = torch.tensor([[self.pad_id] * (P - len(p)) + p for p in prompts], device=self.device)  # (U, P)
        attn = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts], device=self.device)  # (U, P)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # (U, P)
        cache, logits = self._forward(input_ids=ids, attention_mask=attn, position_ids=pos)
        selectable = _preallocate(cache, P + T, rows, self._cache_dtype())
        if rows is None:
            return cache, logits, attn, pos, selectable
        return (cache, logits[rows], attn[rows], pos[rows], True) if selectable else None

    def _generate_chunk(self, prompt_ids: list[list[int]], s: SamplingSettings, seeds: list[int],
                        gens: dict[int, torch.Generator]):
        dev, B, T = self.device, len(prompt_ids), s.max_new_tokens
        uniform = None if s.greedy else _uniforms(seeds, T, gens).to(dev)  # (B, T)
        cache, logits, prompt_attn, pos, compactable = self._prefill(prompt_ids, T)  # rows in batch order
        P = prompt_attn.shape[1]
        attn = torch.cat([prompt_attn, prompt_attn.new_ones((B, T))], dim=1)  # (B, P+T)
        mask4 = self._decode_mask(attn, cache)  # (B, 1, 1, P+T) or None: the model builds its mask from attn
        positions = pos[:, -1:] + torch.arange(1, T + 1, device=dev)  # (B, T): of the token fed after step t
        # outputs in batch order, step-major so that a step writes one contiguous block; the decoding
        # state below holds only the rows still in the batch (rows = None: all of them, in order)
        out = torch.zeros((T, len(STAT_NAMES), B), dtype=torch.float32, device=dev)  # (T, S, B)
        toks = torch.full((T, B), self.pad_id, dtype=torch.long, device=dev)  # (T, B)
        stop = torch.tensor(self.stop_ids, dtype=torch.long, device=dev)  # (S,)
        rows = None  # (b,) batch rows still decoding, once some were dropped
        done = torch.zeros(B, dtype=torch.bool, device=dev)  # (b,) ended, not yet dropped
        emb = emb_n = None  # embed: sum of fed tokens' final states (B, H) and their count (B,)
        every_row = torch.arange(B, device=dev) if s.embed else None
        n = 0
        for t in range(T):
            logp = _log_probs(logits, s.temperature)  # (b, V), log p_t: the step's one softmax
            probs = logp.exp()  # (b, V): the sampling distribution, and the entropy's weights
            if s.greedy:
                tok = logits.argmax(-1)  # (b,)
            else:
                tok = _inverse_cdf(_top_p_filter(probs, s.top_p), uniform[:, t])  # (b,)
            named = stats_from_log_probs(logp, tok, probs=probs)
            st = torch.stack([named[k] for k in STAT_NAMES])  # (S, b)
            if t:
                tok.masked_fill_(done, self.pad_id)
            stopped = torch.isin(tok, stop)  # (b,)
            if rows is None:
                toks[t], out[t] = tok, st
            else:
                toks[t].index_copy_(0, rows, tok)
                out[t].index_copy_(1, rows, st)
            pooled = ~(done | stopped) if s.embed else None  # (b,) this token is part of the completion's text
            done |= stopped
            n, ended = t + 1, int(done.sum())
            if n == T or ended == done.shape[0]:
                break
            if compactable and done.shape[0] - ended <= self.COMPACT * done.shape[0]:  # stop computing ended rows
                keep = (~done).nonzero().squeeze(1)  # (b',)
                cache.batch_select_indices(keep)
                rows = keep if rows is None else rows[keep]
                done, tok, attn, positions = done[keep], tok[keep], attn[keep], positions[keep]
                uniform = None if uniform is None else uniform[keep]
                pooled = None if pooled is None else pooled[keep]
                mask4 = None if mask4 is None else self._decode_mask(attn, cache)
            step = self._forward(input_ids=tok[:, None], position_ids=positions[:, t : t + 1], past_key_values=cache,
                                 attention_mask=attn[:, : P + n] if mask4 is None else mask4[..., : P + n],
                                 hidden=s.embed)
            cache, logits = step[0], step[1]
            if s.embed:
                if emb is None:
                    emb, emb_n = step[2].new_zeros((B, step[2].shape[1])), step[2].new_zeros(B)
                idx = every_row if rows is None else rows
                emb.index_add_(0, idx, step[2] * pooled[:, None])  # (B, H)
                emb_n.index_add_(0, idx, pooled.float())
        toks = toks[:n].T.contiguous()  # (B, n)
        stopped = torch.isin(toks, stop)  # (B, n)
        mask = (stopped.cumsum(1) - stopped.long()) == 0  # (B, n): up to and including the first stop token
        out = out[:n].permute(2, 1, 0).masked_fill_(~mask[:, None, :], 0.0)  # (B, S, n); 0 after the end
        stats = {k: out[:, i].contiguous().cpu() for i, k in enumerate(STAT_NAMES)}  # each (B, n)
        ended = (stopped & mask).any(1)  # (B,)
        result = {"stats": stats, "tok": toks.cpu(), "mask": mask.cpu(), "truncated": (~ended).cpu()}
        if s.embed:
            H = self.model.config.get_text_config().hidden_size
            result["emb"] = torch.zeros((B, H)) if emb is None else (emb / emb_n.clamp(min=1)[:, None]).cpu()
        return result

    def _decode_mask(self, attn: torch.Tensor, cache) -> torch.Tensor | None:
        """The 4D attention mask of every decoding step at once, ``(b, 1, 1, P+T)`` boolean, or None.

        With one query token per row and a cache that holds exactly the positions seen so far, the mask
        that transformers builds (``create_causal_mask``, SDPA) is the padding mask ``attn[:, None, None,
        :P+n]``: causality excludes nothing. Passing a slice of it skips the model's per-step mask building
        (about 10 % of a step of the tiny testbed model); the model takes a 4D mask as it is. Only for
        :data:`LLAMA_LIKE` models with SDPA and a cache of plain full-attention layers (no sliding window),
        and only when some row has padding: without padding transformers passes no mask at all, and the
        plain path keeps its kernels (and its bits).
        """
        if not self.DECODE_MASK or bool(attn.all()) or self._attention() != "sdpa":
            return None
        layers = getattr(cache, "layers", None)
        if layers is None or not all(type(layer) in (DynamicLayer, _BufferedLayer) for layer in layers):
            return None
        return attn.bool()[:, None, None, :]

    def _attention(self) -> str | None:
        """The attention implementation of a :data:`LLAMA_LIKE` model, else None."""
        cfg = getattr(self.model, "config", None)
        if cfg is None or getattr(cfg, "model_type", None) not in LLAMA_LIKE:
            return None
        return getattr(cfg.get_text_config(), "_attn_implementation", None)

    def _cache_dtype(self) -> torch.dtype | None:
        """Under autocast to a lower precision: that dtype, for the keys and values of the buffered cache.

        Llama-like attention (SDPA or eager) reads the cache only through autocast ops, which cast it to the
        autocast dtype, the whole cache again per layer and step; the keys reach the cache in float32
        (rotary embeddings in float32 promote them). Stored already cast (the same rounding, once per
        token), attention sees the same bits (SmolLM2 bf16: the casts were a third of a step's time).
        None otherwise: float32, other models, ``AMP_CACHE`` off.
        """
        dev = self.device.type
        if not self.AMP_CACHE or not torch.is_autocast_enabled(dev) or self._attention() not in ("sdpa", "eager"):
            return None
        dtype = torch.get_autocast_dtype(dev)
        return dtype if dtype in (torch.bfloat16, torch.float16) else None


LLAMA_LIKE = frozenset({"llama", "mistral", "qwen2", "qwen3", "olmo2", "granite", "gemma", "phi3", "smollm3"})
"""Model types whose decoder uses its 2D attention mask only to build the causal mask (``create_causal_mask``)
and reads its cache only in the attention function: :meth:`HFSampler._decode_mask` may pass the 4D mask
itself, and :meth:`HFSampler._cache_dtype` may store the cache in the autocast dtype."""


def _uniforms(seeds: list[int], T: int, gens: dict[int, torch.Generator]) -> torch.Tensor:
    """(B, T) uniforms in [0, 1): rows sharing a seed take consecutive rows of that seed's stream."""
    u = torch.empty((len(seeds), T))
    rows_of: dict[int, list[int]] = {}
    for i, sd in enumerate(seeds):
        rows_of.setdefault(sd, []).append(i)
    for sd, rows in rows_of.items():
        u[rows] = torch.rand((len(rows), T), generator=gens[sd])
    return u


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One token per row of ``probs`` (B, V): the first index whose cumulative mass exceeds ``u`` (B,).

    ``u`` is scaled by the row's total so rounding in the cumulative sum never runs past the end; a
    token of probability 0 is never chosen (its cumulative mass equals its predecessor's).
    """
    cdf = probs.cumsum(-1)  # (B, V)
    target = (u * cdf[:, -1]).unsqueeze(-1)  # (B, 1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)  # (B,)


class _BufferedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values live in buffers allocated once for the whole rollout.

    ``update`` writes the new positions in place and returns views of the filled part, so attention
    sees exactly what a growing cache would hold, without a ``torch.cat`` of the whole cache per step.
    """

    def fill(self, capacity: int, rows: torch.Tensor | None = None, dtype: torch.dtype | None = None) -> None:
        """Move the keys and values (of ``rows``, else all) into buffers of ``capacity`` positions.

        ``dtype``: store float32 keys and values in this lower precision (see :meth:`HFSampler._cache_dtype`).
        """
        keys, values = (self.keys, self.values) if rows is None else (self.keys[rows], self.values[rows])
        n = keys.shape[-2]
        kd = dtype if dtype is not None and keys.dtype == torch.float32 else keys.dtype
        vd = dtype if dtype is not None and values.dtype == torch.float32 else values.dtype
        self._k = keys.new_empty((*keys.shape[:-2], capacity, keys.shape[-1]), dtype=kd)
        self._v = values.new_empty((*values.shape[:-2], capacity, values.shape[-1]), dtype=vd)
        self._k[..., :n, :].copy_(keys)
        self._v[..., :n, :].copy_(values)
        self.keys, self.values = self._k[..., :n, :], self._v[..., :n, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n, m = self.keys.shape[-2], key_states.shape[-2]
        if n + m > self._k.shape[-2]:  # never within a rollout; grow like a plain cache would
            self._k, self._v = torch.cat([self.keys, key_states], -2), torch.cat([self.values, value_states], -2)
        else:
            self._k[..., n : n + m, :].copy_(key_states)
            self._v[..., n : n + m, :].copy_(value_states)
        self.keys, self.values = self._k[..., : n + m, :], self._v[..., : n + m, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        n = self.keys.shape[-2]
        self._k, self._v = self._k[indices], self._v[indices]
        self.keys, self.values = self._k[..., :n, :], self._v[..., :n, :]


def _preallocate(cache, capacity: int, rows: torch.Tensor | None = None, dtype: torch.dtype | None = None) -> bool:
    """Turn the plain ``DynamicLayer`` layers of ``cache`` into :class:`_BufferedLayer` of ``capacity``.

    ``rows`` (B,): the cache rows to keep, in order (repeats allowed); ``dtype``: see
    :meth:`_BufferedLayer.fill`. Returns False, changing nothing, unless every layer is of a
    ``DynamicLayer`` kind, whose rows can be selected.
    """
    layers = getattr(cache, "layers", None)
    if not layers or not all(isinstance(layer, DynamicLayer) for layer in layers):
        return False
    for layer in layers:
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys is not None and layer.keys.dim() == 4:
            layer.__class__ = _BufferedLayer
            layer.fill(capacity, rows, dtype)
        elif rows is not None:
            layer.batch_select_indices(rows)
    return True


@contextmanager
def merged_lora(model) -> Iterator[bool]:
    """Within the block, a peft LoRA ``model`` runs with its adapters merged into the base weights.

    Through a LoRA model every adapted linear layer computes ``W x + s·B(A x)``: two more matrix products
    and a few Python calls per layer and step (SmolLM2-135M LoRA r16 all-linear sampled about 1.45x
    slower than the full model). Merged, each layer runs once: its base weight becomes a new tensor
    ``W + s·B A`` (one ``addmm``) and the layer is marked merged, so that peft's forward skips the
    adapter branch; the outputs agree up to float rounding. On exit the base weights get back the very
    tensors they had, so they are bit-identical (peft's ``unmerge`` would subtract the delta again,
    which rounds); the adapters themselves are never written. Under autocast to a lower precision the
    merged weights are stored in it: autocast would cast the same values at every step (it caches casts
    only of weights that require grad, and frozen base weights do not).

    Yields whether it merged. Anything else runs unchanged: not a peft model, tuners other than LoRA,
    several active adapters, LoRA layers that are not plain ``nn.Linear`` ones (quantised bases,
    embeddings, ``fan_in_fan_out``), variants (DoRA), LoRA biases, adapters already merged or disabled,
    LoRA dropout active (a model in training mode), or an adapted weight tied to another module's (merging
    would change that module too). Precision, stated: under bf16/fp16 autocast the sampler computes
    ``bf16(W + s·B A) x`` where the update computes ``bf16(W) x + s·B(A x)``, so an adapter delta below
    the rounding step of ``W`` is rounded away while sampling (a sampler/update gap on top of the one bf16
    already has); in float32 the two agree up to float rounding.
    """
    layers = _lora_layers(model)
    if not layers:
        yield False
        return
    saved = [(m, m.get_base_layer().weight.data) for m in layers]
    dev = saved[0][1].device.type
    amp = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
    amp = amp if amp in (torch.bfloat16, torch.float16) else None
    try:
        with torch.no_grad():
            for m, weight in saved:
                (a,) = m.active_adapters
                B, A = m.lora_B[a].weight.to(weight.dtype), m.lora_A[a].weight.to(weight.dtype)  # (out, r), (r, in)
                merged = torch.addmm(weight, B, A, alpha=m.scaling[a])  # (out, in): W + s·B A
                if amp is not None and weight.dtype == torch.float32:
                    merged = merged.to(amp)
                m.get_base_layer().weight.data = merged
                m.merged_adapters.append(a)
        yield True
    finally:
        for m, weight in saved:
            m.get_base_layer().weight.data = weight
            del m.merged_adapters[:]


def _lora_layers(model) -> list:
    """The LoRA layers of a peft model that :func:`merged_lora` can merge exactly, or [] (see there)."""
    if not (hasattr(model, "peft_config") and hasattr(model, "get_base_model")):
        return []
    try:
        from peft.tuners.lora import LoraLayer
        from peft.tuners.lora import Linear as LoraLinear
    except ImportError:
        return []
    active = list(getattr(model, "active_adapters", []) or [])
    if len(active) != 1 or getattr(model.peft_config.get(active[0]), "peft_type", None) != "LORA":
        return []
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for m in layers:
        a = m.active_adapters[0] if len(m.active_adapters) == 1 else None
        if (a is None or a not in m.lora_A or type(m) is not LoraLinear
                or type(m.get_base_layer()) is not torch.nn.Linear or m.fan_in_fan_out or m.merged
                or m.disable_adapters or a in getattr(m, "lora_variant", {}) or m.lora_bias.get(a, False)
                or (m.training and getattr(m.lora_dropout[a], "p", 0) > 0)):
            return []
    uses = collections.Counter(id(w) for _, w in model.named_parameters(remove_duplicate=False))
    if any(uses[id(m.get_base_layer().weight)] > 1 for m in layers):  # tied (an lm_head sharing the embedding)
        return []
    return layers


def _concat(parts: list[dict], prompt_ids, tokenizer, pad_id: int) -> RolloutBatch:
    T = max(p["tok"].shape[1] for p in parts)

    def pad(x: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value)

    tokens = torch.cat([pad(p["tok"], pad_id) for p in parts])
    mask = torch.cat([pad(p["mask"], False) for p in parts])
    lengths = mask.sum(1).tolist()  # the mask is a prefix of each row
    texts = tokenizer.batch_decode([t[:n] for t, n in zip(tokens.tolist(), lengths)], skip_special_tokens=True)
    return RolloutBatch(
        prompt_ids=[list(p) for p in prompt_ids], tokens=tokens, mask=mask,
        stats={k: torch.cat([pad(p["stats"][k], 0.0) for p in parts]) for k in STAT_NAMES},
        texts=texts, truncated=torch.cat([p["truncated"] for p in parts]),
        embeddings=torch.cat([p["emb"] for p in parts]) if all("emb" in p for p in parts) else None,
    )
