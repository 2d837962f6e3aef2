import torch

from urlvr.loading import load_model
from urlvr.rollout import HFSampler, SamplingSettings
from urlvr.trainer import completion_logprobs, policy_inputs


def test_rollout_stats_match_a_full_forward(tiny_model):
    model, tok = load_model(tiny_model, device="cpu")
    sampler = HFSampler(model, tok)
    prompts = ["3+4\n", "12+7\n", "5+5\n"]  # different lengths: left padding is exercised
    batch = sampler.generate(prompts, SamplingSettings(temperature=0.7, max_new_tokens=8), seed=1)
    ids, att, P = policy_inputs(batch, tok.pad_token_id)
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
