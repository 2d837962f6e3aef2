import torch

from urlvr.loading import load_model
from urlvr.rollout import HFSampler, SamplingSettings, pack, score_tokens
from urlvr.stats import STAT_NAMES, token_stats
from urlvr.rollout import completion_logprobs


def test_rollout_stats_match_a_full_forward(tiny_model):
    model, tok = load_model(tiny_model, device="cpu")
    sampler = HFSampler(model, tok)
    prompts = ["3+4\n", "12+7\n", "5+5\n"]  # different lengths: left padding is exercised
    batch = sampler.generate(prompts, SamplingSettings(temperature=0.7, max_new_tokens=8), seed=1)
    ids, att, P = pack(batch.prompt_ids, batch.tokens, batch.mask, tok.pad_token_id)
    with torch.no_grad():
        lp, ent = completion_logprobs(model, ids, att, P, batch.tokens, 0.7, with_entropy=True)
    m = batch.mask
    assert torch.allclose(lp[m], batch.logprob[m], atol=1e-4)
    assert torch.allclose(ent[m], batch.entropy[m], atol=1e-4)
    assert (batch.self_certainty[m] >= -1e-6).all()
    assert all(t == tok.decode(batch.tokens[i][m[i]], skip_special_tokens=True) for i, t in enumerate(batch.texts))


def test_rollout_is_seeded_and_stops_at_eos(tiny_model):
    model, tok = load_model(tiny_model, device="cpu")
    s = SamplingSettings(max_new_tokens=10)
    a = HFSampler(model, tok).generate(["3+4\n"] * 6, s, seed=5)
    b = HFSampler(model, tok).generate(["3+4\n"] * 6, s, seed=5)
    assert a.texts == b.texts and torch.equal(a.logprob, b.logprob)
    for i in range(6):
        toks = a.tokens[i][a.mask[i]].tolist()
        if tok.eos_token_id in toks:
            assert toks.index(tok.eos_token_id) == len(toks) - 1  # nothing generated after EOS
            assert not a.truncated[i]


def test_greedy_and_top_p(tiny_model):
    model, tok = load_model(tiny_model, device="cpu")
    g1 = HFSampler(model, tok).generate(["3+4\n"] * 3, SamplingSettings(greedy=True, max_new_tokens=6), seed=1)
    g2 = HFSampler(model, tok).generate(["3+4\n"] * 3, SamplingSettings(greedy=True, max_new_tokens=6), seed=2)
    assert g1.texts == g2.texts and len(set(g1.texts)) == 1
    tp = HFSampler(model, tok).generate(["3+4\n"] * 8, SamplingSettings(top_p=1e-6, max_new_tokens=6), seed=3)
    assert tp.texts == [g1.texts[0]] * 8  # top-p -> 0 is greedy


def test_score_gives_the_rollout_statistics_of_given_continuations(tiny_model):
    """Sampler.score of the sampled tokens equals what the rollout kept, for every statistic, in any batching."""
    model, tok = load_model(tiny_model, device="cpu")
    sampler = HFSampler(model, tok)
    prompts = ["3+4\n", "12+7\n", "5+5\n", "9+9\n"]
    batch = sampler.generate(prompts, SamplingSettings(temperature=0.7, max_new_tokens=8), seed=3)
    conts = [batch.tokens[i][batch.mask[i]].tolist() for i in range(len(batch))]
    scored = sampler.score(prompts, conts, temperature=0.7)
    assert [len(s["logprob"]) for s in scored] == [len(c) for c in conts]
    for i, s in enumerate(scored):
        assert set(s) == set(STAT_NAMES)
        for name in STAT_NAMES:
            assert torch.allclose(s[name], batch.stats[name][i][batch.mask[i]], atol=1e-4), name
    # batching and padding do not change a row: one row at a time gives the same numbers
    one = [score_tokens(model, [tok(p)["input_ids"]], [c], 0.7, tok.pad_token_id, 1)[0] for p, c in zip(prompts, conts)]
    for a, b in zip(scored, one):
        assert torch.allclose(a.logprob, b.logprob, atol=1e-5)
    # text continuations are tokenised without special tokens; their log-prob is that of the same ids
    text = sampler.score(["3+4\n"], ["\\boxed{7}"], temperature=1.0)[0]
    ids = tok("\\boxed{7}", add_special_tokens=False)["input_ids"]
    full = torch.tensor([tok("3+4\n")["input_ids"] + ids])
    with torch.no_grad():
        logits = model(full).logits[:, -len(ids) - 1 : -1]
    assert torch.allclose(text.logprob, token_stats(logits, full[:, -len(ids):]).logprob[0], atol=1e-5)


def test_score_tokens_ignore_padding_and_match_an_unpadded_forward(tiny_model):
    model, _ = load_model(tiny_model, "cpu", "float32")
    prompts, comps = [[1, 6, 77, 7, 4], [1, 9, 4]], [[5, 6, 2], [8, 9, 10, 11, 2]]
    batched = score_tokens(model, prompts, comps, temperature=0.7, batch_size=2)
    for p, c, got in zip(prompts, comps, batched):
        ids = torch.tensor([p + c])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, len(p) - 1 : -1]  # the logits that produced c
        want = token_stats(logits, torch.tensor([c]), temperature=0.7)
        for k, v in got.items():
            assert v.shape == (len(c),)
            torch.testing.assert_close(v, getattr(want, k)[0], atol=1e-5, rtol=1e-5)


def test_chunked_lm_head_gives_the_same_log_probs_entropies_and_gradients(tiny_model):
    """The loss forward's LM head in chunks of positions (real vocabularies) equals the whole-logits path."""
    model, tok = load_model(tiny_model, device="cpu")
    batch = HFSampler(model, tok).generate(["3+4\n", "12+7\n", "5+5\n"], SamplingSettings(max_new_tokens=8), seed=2)
    ids, att, P = pack(batch.prompt_ids, batch.tokens, batch.mask, tok.pad_token_id)
    results = []
    for chunk in (0, 3):  # 0: whole (the tiny vocabulary is far below the budget); 3: positions 0-2, 3-5, 6-7
        model.zero_grad(set_to_none=True)
        lp, ent = completion_logprobs(model, ids, att, P, batch.tokens, 0.7, with_entropy=True, chunk=chunk)
        ((lp * batch.mask).sum() + (ent * batch.mask).sum()).backward()
        results.append((lp.detach(), ent.detach(), [p.grad.clone() for p in model.parameters()]))
    (lp0, ent0, g0), (lp1, ent1, g1) = results
    assert batch.tokens.shape[1] > 3  # really several chunks
    torch.testing.assert_close(lp1, lp0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent1, ent0, atol=1e-5, rtol=1e-5)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_generation_stops_at_any_stop_token(tiny_model):
    """A stop set beyond EOS (a chat end-of-turn token) ends rows there, and they are not truncated."""
    model, tok = load_model(tiny_model, device="cpu")
    free = HFSampler(model, tok).generate(["3+4\n"] * 4, SamplingSettings(max_new_tokens=10), seed=5)
    first = free.tokens[0][0].item()  # stop at whatever the first sampled token is
    stopped = HFSampler(model, tok, stop_ids=(tok.eos_token_id, first)).generate(
        ["3+4\n"] * 4, SamplingSettings(max_new_tokens=10), seed=5)
    assert stopped.mask[0].sum() == 1 and not stopped.truncated[0]
    for i in range(4):  # same draws up to the first stop token
        n = int(stopped.mask[i].sum())
        assert torch.equal(stopped.tokens[i][:n], free.tokens[i][:n])


def test_embeddings_are_the_mean_final_state_of_the_fed_completion_tokens(tiny_model):
    """embed=True: the pooled state equals a teacher-forced forward's final (normed) states, same samples."""
    model, tok = load_model(tiny_model, "cpu")
    sampler = HFSampler(model, tok)
    prompts = ["3+4=", "1+2=", "3+4="]
    plain = sampler.generate(prompts, SamplingSettings(max_new_tokens=6), seed=[1, 2, 3])
    batch = sampler.generate(prompts, SamplingSettings(max_new_tokens=6, embed=True), seed=[1, 2, 3])
    assert plain.embeddings is None and torch.equal(plain.tokens, batch.tokens)  # embedding changes no sample
    assert batch.embeddings.shape == (3, model.config.hidden_size)
    ids, att, P = pack(batch.prompt_ids, batch.tokens, batch.mask, sampler.pad_id)
    with torch.no_grad():
        hs = model(input_ids=ids, attention_mask=att, position_ids=(att.cumsum(-1) - 1).clamp(min=0),
                   output_hidden_states=True).hidden_states[-1][:, P:]  # (B, T, H) states of the completion tokens
    stop = torch.tensor(sampler.stop_ids)
    for i in range(3):
        n = int(batch.mask[i].sum())
        fed = [t for t in range(n - 1 if bool(batch.truncated[i]) else n) if batch.tokens[i, t] not in stop]
        want = hs[i, fed].mean(0) if fed else torch.zeros(model.config.hidden_size)  # an empty text: zeros
        torch.testing.assert_close(batch.embeddings[i], want, atol=1e-4, rtol=1e-4)
    assert sampler.token_texts(tok("1+2", add_special_tokens=False)["input_ids"]) == ["1", "+", "2"]


def _same_batches(a, b, atol=0.0):
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask) and torch.equal(a.truncated, b.truncated)
    assert a.texts == b.texts
    for name in STAT_NAMES:
        torch.testing.assert_close(a.stats[name], b.stats[name], atol=atol, rtol=0, msg=name)


def test_decode_mask_gives_the_plain_paths_tokens_and_statistics(tiny_model):
    """The 4D mask built once per rollout (DECODE_MASK) changes no token and no statistic, whatever the batch does.

    Prompts of different lengths (left padding the mask must keep out), rows ending at EOS and dropped from
    the batch mid-rollout (the mask's rows follow), greedy, top-p and embeddings.
    """
    model, tok = load_model(tiny_model, device="cpu")
    prompts = ["3+4\n", "12+7\n", "5+5\n", "9+9=", "1+1\n", "123+4\n"] * 4
    seeds = [i % 5 for i in range(len(prompts))]
    fed = []  # (rank of the attention mask, rows) of every decoding forward
    hook = model.model.register_forward_pre_hook(
        lambda m, args, kw: fed.append((kw["attention_mask"].dim(), kw["input_ids"].shape[0]))
        if kw["input_ids"].shape[1] == 1 else None, with_kwargs=True)
    try:
        for settings in (SamplingSettings(temperature=0.7, max_new_tokens=14),
                         SamplingSettings(top_p=0.8, max_new_tokens=12, embed=True),
                         SamplingSettings(greedy=True, max_new_tokens=6)):
            plain = HFSampler(model, tok)
            plain.DECODE_MASK = False
            fed.clear()
            want = plain.generate(prompts, settings, seed=seeds)
            assert {d for d, _ in fed} == {2}
            fed.clear()
            got = HFSampler(model, tok).generate(prompts, settings, seed=seeds)
            assert {d for d, _ in fed} == {4}  # the fast path really ran
            if not settings.greedy:
                assert fed[-1][1] < len(prompts)  # rows that ended were dropped from the batch, and the mask's too
            _same_batches(got, want)
            if settings.embed:
                torch.testing.assert_close(got.embeddings, want.embeddings, atol=0, rtol=0)
        # one prompt repeated: no padding, so the model builds (skips) its own mask as in the plain path
        fed.clear()
        HFSampler(model, tok).generate(["3+4\n"] * 4, SamplingSettings(max_new_tokens=4), seed=1)
        assert {d for d, _ in fed} == {2}
    finally:
        hook.remove()


def test_lora_rollout_merges_adapters_and_leaves_every_weight_bit_identical(tiny_model):
    """A peft LoRA policy samples with merged adapters: same tokens, statistics within float rounding, the
    adapter branch never runs, and afterwards every weight (adapters and base) is bit-identical, in fp32 and
    under bf16 autocast."""
    from peft import LoraConfig, get_peft_model

    model, tok = load_model(tiny_model, device="cpu")
    policy = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                              init_lora_weights=False)).eval()  # random B: a nonzero update
    weights = {k: v.clone() for k, v in policy.state_dict().items()}
    storage = {k: v.data_ptr() for k, v in policy.state_dict().items()}
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    lora_calls = []
    hooks = [m.register_forward_hook(lambda *a: lora_calls.append(1)) for n, m in policy.named_modules()
             if n.endswith("lora_A.default")]
    prompts, settings = ["3+4\n", "12+7\n", "5+5\n"] * 3, SamplingSettings(temperature=0.8, max_new_tokens=10)
    plain = HFSampler(policy, tok)
    plain.MERGE_LORA = False
    want = plain.generate(prompts, settings, seed=[1, 2, 3] * 3)
    assert lora_calls  # the plain path runs the adapters
    lora_calls.clear()
    got = HFSampler(policy, tok).generate(prompts, settings, seed=[1, 2, 3] * 3)
    assert not lora_calls  # merged: the adapter branch never ran
    _same_batches(got, want, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        HFSampler(policy, tok).generate(prompts, settings, seed=4)
    for h in hooks:
        h.remove()
    after = policy.state_dict()
    assert all(torch.equal(after[k], v) and after[k].data_ptr() == storage[k] for k, v in weights.items())
    assert [n for n, p in policy.named_parameters() if p.requires_grad] == trainable
    assert not any(getattr(m, "merged", False) for m in policy.modules())
    # and the restored model computes what it computed before
    again = plain.generate(prompts, settings, seed=[1, 2, 3] * 3)
    _same_batches(again, want)


def test_a_lora_weight_tied_to_another_module_is_never_merged(tiny_model):
    """An adapted lm_head that shares its weight with the embedding: merging would change the embedding too, so
    the sampler runs the adapters unmerged (and the same adapters untied do merge)."""
    from peft import LoraConfig, get_peft_model

    from urlvr.rollout import merged_lora

    for tied in (True, False):
        model, _ = load_model(tiny_model, device="cpu")
        assert model.lm_head.weight is model.get_input_embeddings().weight  # the testbed ties them, as SmolLM2 does
        if not tied:
            model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        policy = get_peft_model(model, LoraConfig(r=4, target_modules=["lm_head", "q_proj"])).eval()
        with merged_lora(policy) as merged:
            assert merged is (not tied)


def test_bf16_autocast_rollout_keeps_its_cache_in_bf16_with_the_plain_paths_bits(tiny_model, monkeypatch):
    """Under bf16 autocast the buffered cache stores keys and values in bf16 (attention would cast them at every
    step): the same tokens and statistics as the plain path, which keeps them in float32."""
    import urlvr.rollout

    stored = []  # the dtype of every buffered layer's keys and values when filled
    fill = urlvr.rollout._BufferedLayer.fill

    def recording_fill(self, *args, **kw):
        fill(self, *args, **kw)
        stored.append((self._k.dtype, self._v.dtype))

    monkeypatch.setattr(urlvr.rollout._BufferedLayer, "fill", recording_fill)
    model, tok = load_model(tiny_model, device="cpu")
    prompts = ["3+4\n", "12+7\n", "5+5\n", "123+4\n"] * 3
    settings = SamplingSettings(temperature=0.9, max_new_tokens=12)
    plain = HFSampler(model, tok)
    plain.AMP_CACHE = plain.DECODE_MASK = False
    fast = HFSampler(model, tok)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast._cache_dtype() == torch.bfloat16 and plain._cache_dtype() is None
        want = plain.generate(prompts, settings, seed=7)
        plain_stored, stored[:] = list(stored), []
        got = fast.generate(prompts, settings, seed=7)
    assert plain_stored and set(plain_stored) == {(torch.float32, torch.float32)}
    assert stored and set(stored) == {(torch.bfloat16, torch.bfloat16)}
    assert fast._cache_dtype() is None  # float32 outside autocast
    _same_batches(got, want)
    assert all(v.dtype == torch.float32 for v in got.stats.values())
