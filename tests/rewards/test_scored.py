"""CoVo and the label-free RLPR reward: pure parts by hand, then on the real tiny model through a real HFSampler.

The model-backed cases compare with an independent teacher-forced forward (one unpadded sequence,
``log_softmax`` by hand), so batching, padding, the step/answer layout and the y* alignment are all
checked against the definition. Both rewards are invariant to the order of the completions (the
answer columns follow first appearance, but only comparisons between columns are used).
"""

import copy
import math

import pytest
import torch

from rewards._groups import completion, group, one_thread  # noqa: F401  (fixture)
from urlvr.errors import UrlvrError
from urlvr.loading import load_model
from urlvr.rewards import get_reward
from urlvr.rewards.scored import (ANSWER_PREFIX, answer_token_mask, con_vol, covo, is_repetitive, perplexity, ril,
                                  riv, rlpr, split_steps, step_curiosity)
from urlvr.rollout import HFSampler


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


# ---- step splitting ---------------------------------------------------------------------------------

LINES_16 = ["a:"] + [f"s{i}" for i in range(15)]
STEP_CASES = [
    ("one\n\n  two  \n\t\nthree", ["one", "two", "three"]),  # non-empty stripped lines
    ("x\n\\[\na+b\n= c\n\\]\ny", ["x", "\\[\na+b\n= c\n\\]", "y"]),  # a display block is one step
    ("x\n\\[ a = b \\]\ny", ["x", "\\[ a = b \\]", "y"]),  # opened and closed on one line: a plain step
    ("x\n\\[\na\nb", ["x", "\\[", "a", "b"]),  # unclosed: its lines stay separate steps
    ("\n".join(f"s{i}" for i in range(14)) + "\nz:", [f"s{i}" for i in range(14)] + ["z:"]),  # 15 > 14: no merge
    ("\n".join(LINES_16), ["a:\ns0"] + [f"s{i}" for i in range(1, 15)]),  # 16 -> colon merge -> 15 -> 15 chunks of 1
    ("\n".join(f"s{i}" for i in range(31)),  # 31 -> sizes 2 x 14, then 3
     ["\n".join(f"s{j}" for j in range(2 * k, 2 * k + 2)) for k in range(14)] + ["s28\ns29\ns30"]),
    ("", []),
]


@pytest.mark.parametrize("text, steps", STEP_CASES)
def test_split_steps(text, steps):
    assert split_steps(text) == steps


def test_split_steps_chunks_are_exactly_max_steps_with_the_larger_ones_last():
    steps = split_steps("\n".join(f"s{i}" for i in range(40)))
    assert [s.count("\n") + 1 for s in steps] == [2] * 5 + [3] * 10  # 40 = 5*2 + 10*3


# ---- features and aggregation by hand ----------------------------------------------------------------

CON_VOL = [  # D (T, K), own column, (Con, Vol)
    ([[1.0], [2.0]], 0, (0.0, 0.0)),  # K = 1
    ([[1.0, 2.0], [1.0, 3.0]], 0, (1.0, 0.0)),  # always closest: settles from the start
    ([[1.0, 2.0], [3.0, 2.0]], 0, (0.5, 1.0)),  # strays at the last step
    ([[3.0, 2.0], [1.0, 2.0], [1.0, 2.0]], 0, (2 / 3, 1 / 3)),  # strays at step 1 only
    ([[2.0, 2.0], [2.0, 2.0]], 0, (0.0, 0.0)),  # ties: never closer, but never strays either
    ([[5.0, 1.0, 4.0], [5.0, 1.0, 6.0], [2.0, 9.0, 1.5]], 2, (1 / 3, 2 / 3)),  # column 2 vs the min of the others
]


@pytest.mark.parametrize("D, own, expected", CON_VOL)
def test_con_vol(D, own, expected):
    con, vol = con_vol(torch.tensor(D), own)
    assert con == pytest.approx(expected[0]) and vol == pytest.approx(expected[1])


def test_riv_and_ril_by_hand():
    assert riv([1.0, 1.0], [0.0, math.pi / 2]) == pytest.approx(math.sqrt(0.5 ** 2 + 0.5 ** 2))
    assert riv([0.8], [0.3]) == pytest.approx(0.8)  # one trajectory: its Con
    assert riv([], []) == 0.0 and ril([], []) == 0.0
    assert ril([1.0, 0.5], [0.25, 0.75]) == pytest.approx(0.75 - 0.5)


def test_step_curiosity_by_hand():
    lp = torch.tensor([math.log(0.5), math.log(0.25)])
    q = [math.log(0.5) / math.log(0.125), math.log(0.25) / math.log(0.125)]  # (1/3, 2/3)
    kl = sum(x * math.log(x * 2) for x in q)
    expected = math.exp(-(math.log(0.5) + math.log(0.25)) / 2) - math.log(kl ** (1 / 3) + 1)
    assert step_curiosity(lp) == pytest.approx(expected)
    assert step_curiosity(torch.zeros(3)) == pytest.approx(1.0)  # certain tokens: perplexity 1, no KL
    assert step_curiosity(torch.tensor([math.log(0.1)] * 4)) == pytest.approx(10.0)  # uniform shares: KL 0


def test_answer_token_mask_by_hand():
    # "\boxed{" "1" "2" "}" as 4 tokens ending at 7, 8, 9, 10; and merged pieces overlapping y*
    assert answer_token_mask([7, 8, 9, 10], 7, 9).tolist() == [False, True, True, False]
    assert answer_token_mask([6, 8, 10], 7, 9).tolist() == [False, True, True]  # "\boxed" "{1" "2}"
    assert answer_token_mask([7, 8], 7, 7).tolist() == [False, False]  # empty y*: no token


def test_is_repetitive():
    assert is_repetitive(" ".join(["w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"] * 10))
    assert not is_repetitive(" ".join(["w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"] * 9))
    assert not is_repetitive("short text")


def test_bad_options_are_one_line_errors():
    g = group([completion("\\boxed{1}")])
    with pytest.raises(UrlvrError, match="aggregation"):
        covo(g, aggregation="mean")
    with pytest.raises(UrlvrError, match="reduce"):
        rlpr(g, reduce="max")
    with pytest.raises(UrlvrError, match="format_coef"):
        rlpr(g, format_coef=2.0)


def test_registration():
    for name in ("covo", "rlpr"):
        spec = get_reward(name)
        assert spec.family == "ensemble" and spec.needs_group and spec.needs_scorer and not spec.needs_policy


# ---- the real tiny model: hand-computed teacher-forced forwards -----------------------------------------

PROMPT = "What is 3+4?\n"


@pytest.fixture(scope="module")
def policy(tiny_model):
    model, tok = load_model(tiny_model, "cpu")
    return model.eval(), tok


def forward_logprobs(model, tok, prompt: str, cont: str, temperature: float = 1.0) -> torch.Tensor:
    """log p(cont tokens | prompt) from one unpadded forward (the definition, not score_tokens)."""
    p = tok(prompt, add_special_tokens=True)["input_ids"]
    c = tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + c])).logits[0].float()  # (P+C, V)
    lp = torch.log_softmax(logits / temperature, dim=-1)
    return torch.stack([lp[len(p) - 1 + j, t] for j, t in enumerate(c)])  # (C,)


COVO_TEXTS = ["3+4\n7\n\\boxed{7}", "3+4=8\n\\boxed{8}", "so\n\\boxed{7}", "no idea", "7\nthen 8\n\\boxed{8}"]


def covo_by_hand(model, tok, texts, aggregation="riv", threshold=0.5):
    answers = [None if "boxed" not in t else t.rsplit("{", 1)[1].rstrip("}") for t in texts]
    distinct = list(dict.fromkeys(a for a in answers if a is not None))
    con, vol = [None] * len(texts), [None] * len(texts)
    for i, (t, a) in enumerate(zip(texts, answers)):
        if a is None:
            continue
        steps = split_steps(t)
        D = torch.tensor([[perplexity(forward_logprobs(model, tok, PROMPT + "\n".join(steps[:s]),
                                                       ANSWER_PREFIX + "\\boxed{" + y + "}"))
                           for y in distinct] for s in range(1, len(steps) + 1)])
        con[i], vol[i] = con_vol(D, distinct.index(a))
    agg = riv if aggregation == "riv" else ril
    scores = []
    for i, a in enumerate(answers):
        members = [j for j, b in enumerate(answers) if b == a and a is not None]
        scores.append(0.0 if a is None else float(agg([con[j] for j in members], [vol[j] for j in members]) >= threshold))
    return scores, con, vol


@pytest.mark.parametrize("aggregation, threshold", [("riv", 0.5), ("ril", 0.05), ("riv", 0.0)])
def test_covo_matches_a_hand_computed_forward(policy, aggregation, threshold):
    model, tok = policy
    sampler = HFSampler(model, tok)
    g = group([completion(t) for t in COVO_TEXTS], prompt=PROMPT)
    kw = {"riv_threshold": threshold} if aggregation == "riv" else {"ril_threshold": threshold}
    out = covo(g, aggregation=aggregation, scorer=sampler, **kw)
    scores, con, vol = covo_by_hand(model, tok, COVO_TEXTS, aggregation, threshold)
    assert out.scores == scores
    for got, want in ((out.components["con"], con), (out.components["vol"], vol)):
        assert [w if w is None else pytest.approx(w, abs=1e-9) for w in want] == got
    assert out.components["passed"][3] is None and out.scores[3] == 0.0  # no answer
    assert out.components["k"] == [2.0] * 5
    if threshold == 0.0:
        assert out.scores == [1.0, 1.0, 1.0, 0.0, 1.0]  # every cluster passes RiV >= 0


def test_covo_batches_one_score_call_with_t_times_k_rows(policy):
    model, tok = policy
    calls = []

    class Counting(HFSampler):
        def score(self, prompts, continuations, temperature=1.0):
            calls.append(len(prompts))
            return super().score(prompts, continuations, temperature)

    g = group([completion(t) for t in COVO_TEXTS], prompt=PROMPT)
    covo(g, scorer=Counting(model, tok), curiosity=True)
    steps = [len(split_steps(t)) for t in COVO_TEXTS if "boxed" in t]
    assert calls == [sum(steps) * 2 + sum(steps)]  # T·K answer rows + T step rows, one call


def test_covo_curiosity_bonus_from_the_step_log_probs(policy):
    model, tok = policy
    g = group([completion(t) for t in COVO_TEXTS], prompt=PROMPT)
    out = covo(g, scorer=HFSampler(model, tok), curiosity=True, curiosity_threshold=-1e9, riv_threshold=2.0)
    steps = split_steps(COVO_TEXTS[0])
    cs = [step_curiosity(forward_logprobs(model, tok, PROMPT + "\n".join(steps[: t - 1]),
                                          ("\n" if t > 1 else "") + steps[t - 1])) for t in range(1, len(steps) + 1)]
    assert out.components["curiosity"][0] == pytest.approx(sum(cs) / len(cs), rel=1e-5)
    assert out.scores == [0.4, 0.4, 0.4, 0.0, 0.4]  # nothing passes RiV >= 2; every answered one gets the bonus


def test_covo_single_answer_scores_zero_without_a_model_call():
    g = group([completion("\\boxed{7}"), completion("x\n\\boxed{ 7}"), completion("?")], canonical=lambda a: a.strip())
    out = covo(g, scorer=object())  # K = 1 and no curiosity: nothing to score
    assert out.scores == [0.0, 0.0, 0.0] and out.components["con"] == [0.0, 0.0, None]


def test_covo_is_invariant_to_completion_order(policy):
    model, tok = policy
    sampler = HFSampler(model, tok)
    g = group([completion(t) for t in COVO_TEXTS], prompt=PROMPT)
    rev = group([completion(t) for t in reversed(COVO_TEXTS)], prompt=PROMPT)
    a, b = covo(g, scorer=sampler, riv_threshold=0.3), covo(rev, scorer=sampler, riv_threshold=0.3)
    assert a.scores == b.scores[::-1]
    for name in ("con", "vol"):
        assert [x if x is None else pytest.approx(x, abs=1e-9) for x in b.components[name][::-1]] == a.components[name]


# ---- RLPR --------------------------------------------------------------------------------------------

RLPR_TEXTS = ["3+4=8\nso \\boxed{8}", "7 \\boxed{7} hmm", "\\boxed{7}", "I think 7", "\\boxed{8} and \\boxed{7}"]
# answers 8, 7, 7, None, 7: y* = 7 (three votes)


@pytest.fixture(scope="module")
def initial(policy):
    """A different 'initial policy': the tiny model with seeded noise on its weights."""
    model, tok = policy
    init = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in init.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return init


def span_prob(lp: torch.Tensor, star: str, reduce: str = "mean") -> float:
    y = lp[len("\\boxed{") : len("\\boxed{") + len(star)].double()  # character tokenizer: one token per character
    return float(y.exp().mean()) if reduce == "mean" else math.exp(float(y.sum()))


def reasoning(text: str) -> str:
    cut = text.rfind("\\boxed{")
    return text[:cut] if cut >= 0 else text


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rlpr_matches_a_hand_computed_forward_and_debias(policy, initial, temperature):
    model, tok = policy
    g = group([completion(t) for t in RLPR_TEXTS], prompt=PROMPT)
    out = rlpr(g, scorer=HFSampler(model, tok), initial_scorer=HFSampler(initial, tok), temperature=temperature)
    cont = "\\boxed{7}"
    probs = [span_prob(forward_logprobs(model, tok, PROMPT + reasoning(t), cont, temperature), "7") for t in RLPR_TEXTS]
    base = span_prob(forward_logprobs(initial, tok, PROMPT, cont, temperature), "7")
    base_current = span_prob(forward_logprobs(model, tok, PROMPT, cont, temperature), "7")
    assert abs(base - base_current) > 1e-3, "the initial policy must differ, or debiasing with it proves nothing"
    fmt = [1.0, 1.0, 1.0, 0.0, 1.0]
    expected = [0.9 * min(max(p - base, 0.0), 1.0) + 0.1 * f for p, f in zip(probs, fmt)]
    assert out.scores == pytest.approx(expected, abs=1e-5)
    assert out.components["prob"] == pytest.approx(probs, abs=1e-5)
    assert out.components["baseline"] == pytest.approx([base] * 5, abs=1e-5)
    assert out.components["format"] == fmt


def test_rlpr_settings_temperature_is_the_default(policy, initial):
    from urlvr.types import SamplingSettings

    model, tok = policy
    g = group([completion(t) for t in RLPR_TEXTS], prompt=PROMPT)
    kw = dict(scorer=HFSampler(model, tok), initial_scorer=HFSampler(initial, tok))
    assert rlpr(g, settings=SamplingSettings(temperature=0.7), **kw).scores == \
        pytest.approx(rlpr(g, temperature=0.7, **kw).scores, abs=1e-7)


def test_rlpr_majority_tie_goes_to_the_first_answer_and_product_reduce(policy):
    model, tok = policy
    texts = ["\\boxed{12}", "\\boxed{7}", "x \\boxed{7}", "y \\boxed{12}"]  # 2 - 2: y* = 12, seen first
    g = group([completion(t) for t in texts], prompt=PROMPT)
    out = rlpr(g, reduce="product", format_coef=0.0, scorer=HFSampler(model, tok))  # no debias by default
    want = [span_prob(forward_logprobs(model, tok, PROMPT + reasoning(t), "\\boxed{12}"), "12", "product") for t in texts]
    assert out.scores == pytest.approx(want, rel=1e-4) and out.components["baseline"] == [None] * 4
    block = rlpr(g, reduce="product", span="block", format_coef=0.0, scorer=HFSampler(model, tok))
    whole = [math.exp(float(forward_logprobs(model, tok, PROMPT + reasoning(t), "\\boxed{12}").double().sum()))
             for t in texts]
    assert block.scores == pytest.approx(whole, rel=1e-4)
    assert all(b < a for a, b in zip(out.scores, block.scores))  # the block adds tokens: a smaller product


def test_rlpr_caches_the_baseline_per_initial_scorer(policy, initial):
    model, tok = policy
    calls = []

    class Counting(HFSampler):
        def score(self, prompts, continuations, temperature=1.0):
            calls.append(list(prompts))
            return super().score(prompts, continuations, temperature)

    g = group([completion(t) for t in RLPR_TEXTS], prompt=PROMPT)
    first, scorer = Counting(initial, tok), HFSampler(model, tok)
    a = rlpr(g, scorer=scorer, initial_scorer=first)
    b = rlpr(g, scorer=scorer, initial_scorer=first)
    assert calls == [[PROMPT]] and a.scores == b.scores  # the second call reuses P̄(y*|x)
    rlpr(g, scorer=scorer, initial_scorer=Counting(initial, tok))  # another run: its own cache
    assert calls == [[PROMPT], [PROMPT]]


def test_rlpr_edge_cases(policy, initial):
    model, tok = policy
    kw = dict(scorer=HFSampler(model, tok), initial_scorer=HFSampler(initial, tok))
    none = group([completion("no"), completion("idea")], prompt=PROMPT)
    assert rlpr(none, scorer=object()).scores == [0.0, 0.0]  # no y*: no model call at all
    g = group([completion(t) for t in RLPR_TEXTS], prompt=PROMPT)
    strict = rlpr(g, format_coef=-1, **kw)
    assert strict.scores[3] == -1.0 and all(s >= 0 for i, s in enumerate(strict.scores) if i != 3)
    with pytest.raises(UrlvrError, match="initial_scorer"):
        rlpr(g, scorer=HFSampler(model, tok))
    loop = " ".join(["w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"] * 10)
    rep = group([completion(loop + " \\boxed{7}"), completion("\\boxed{7}")], prompt=PROMPT)
    plain = rlpr(rep, repetition_penalty=0.0, **kw).scores
    assert rlpr(rep, **kw).scores == pytest.approx([plain[0] - 1.0, plain[1]])


def test_rlpr_is_invariant_to_completion_order(policy, initial):
    model, tok = policy
    kw = dict(scorer=HFSampler(model, tok), initial_scorer=HFSampler(initial, tok))
    a = rlpr(group([completion(t) for t in RLPR_TEXTS], prompt=PROMPT), **kw).scores
    b = rlpr(group([completion(t) for t in reversed(RLPR_TEXTS)], prompt=PROMPT), **kw).scores
    assert a == pytest.approx(b[::-1], abs=1e-6)
