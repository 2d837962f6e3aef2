"""The Martingale Majority Certificate (urlvr.certify) and the certified_only modifier.

E-values are checked against an independent plain-Python computation of the posterior means on the
discretised prior (and against the closed form ``2^{s+f} Σ w q^s (1−q)^f``); then the spec's edge
cases (unanimous votes certify, 50/50 never does, ties by answer string, the budget abstains,
answer-less votes) and anytime validity by seeded simulation. The modifier runs on hand-built
contexts and through the real trainer. The MMC is sequential, so it depends on the vote order by
design (only the closed-form e-values of the Beta prior are functions of the counts).
"""

import math
import random

import pytest
import torch

from conftest import tiny_config
from rewards._groups import one_thread  # noqa: F401  (fixture)
from urlvr.advantages import AdvantageContext, build_modifier
from urlvr.certify import beta_grid, contenders, mixture_e, mmc, posterior_mean, ratio_q
from urlvr.errors import UrlvrError
from urlvr.io import read_jsonl
from urlvr.trainer import train


# ---- hand computations (independent of urlvr.certify) --------------------------------------------

def grid(K):
    qs = [0.5001 + (0.9999 - 0.5001) * k / (K - 1) for k in range(K)]
    raw = [1 / math.sqrt(q * (1 - q)) for q in qs]
    return qs, [r / sum(raw) for r in raw]


def m(s, f, K=5):
    """Posterior mean of θ given s successes and f failures on the K-point truncated Beta(½, ½) grid."""
    qs, ws = grid(K)
    return sum(w * q ** (s + 1) * (1 - q) ** f for q, w in zip(qs, ws)) / sum(w * q ** s * (1 - q) ** f
                                                                              for q, w in zip(qs, ws))


def q(s, f):
    return min(max((s + 0.5) / (s + f + 1), 0.50001), 0.99999)


def test_the_grid_is_the_truncated_beta_half_half():
    qs, ws = beta_grid(5)
    assert qs == pytest.approx(grid(5)[0]) and ws == pytest.approx(grid(5)[1])
    assert qs[0] == 0.5001 and qs[-1] == 0.9999 and len(beta_grid(101)[0]) == 101 and sum(ws) == pytest.approx(1)
    assert ws[-1] > ws[0]  # the U-shaped density rises towards 1 on (½, 1)


# votes a a b a c a: v1 initialises; v2 = A with no runner-up yet; v3 = b while B is absent (rest: a
# vote against the leader in e_run); v4 = A (B = b); v5 = c elsewhere; v6 = A.
SEQ = ["a", "a", "b", "a", "c", "a"]


def test_hand_computed_e_values_beta_prior():
    c = mmc(SEQ, eps=0.001, K=5)
    e_run = 2 * m(0, 0) * 2 * (1 - m(1, 0)) * 2 * m(1, 1) * 2 * m(2, 1)
    e_oth = 2 * m(0, 0) * 2 * m(1, 0) * 2 * (1 - m(2, 0)) * 2 * m(2, 1)
    assert (c.s, c.f, c.o, c.certified, c.votes_used, c.leader) == (3, 1, 1, False, 6, "a")
    assert c.e_runner == pytest.approx(e_run, rel=1e-12) and c.e_other == pytest.approx(e_oth, rel=1e-12)
    # the sequential product of posterior means is the closed-form mixture
    assert c.e_runner == pytest.approx(mixture_e(3, 1, K=5), rel=1e-12)
    qs, ws = grid(5)
    assert mixture_e(3, 1, K=5) == pytest.approx(2 ** 4 * sum(w * x ** 3 * (1 - x) for x, w in zip(qs, ws)))
    assert posterior_mean(2, 1, K=5) == pytest.approx(m(2, 1))


def test_hand_computed_e_values_ratio_prior():
    c = mmc(SEQ, eps=0.001, prior="ratio")
    e_run = 2 * q(0, 0) * 2 * (1 - q(1, 0)) * 2 * q(1, 1) * 2 * q(2, 1)
    e_oth = 2 * q(0, 0) * 2 * q(1, 0) * 2 * (1 - q(2, 0)) * 2 * q(2, 1)
    assert c.e_runner == pytest.approx(e_run, rel=1e-12) and c.e_other == pytest.approx(e_oth, rel=1e-12)
    assert ratio_q(0, 0) == 0.50001 and ratio_q(9, 0) == pytest.approx(0.95)  # clipped at ½⁺; (9.5)/10


def test_absent_runner_never_is_the_literal_reading():
    c = mmc(SEQ, eps=0.001, K=5, absent_runner="never")
    # v3 = b is an elsewhere vote; from v4 on B = b
    e_run = 2 * m(0, 0) * 2 * m(1, 0) * 2 * m(2, 0)
    e_oth = 2 * m(0, 0) * 2 * (1 - m(1, 0)) * 2 * m(1, 1) * 2 * (1 - m(2, 1)) * 2 * m(2, 2)
    assert (c.s, c.f, c.o) == (3, 0, 2)
    assert c.e_runner == pytest.approx(e_run, rel=1e-12) and c.e_other == pytest.approx(e_oth, rel=1e-12)


# ---- the edge cases of the spec -------------------------------------------------------------------

@pytest.mark.parametrize("eps, prior, votes", [(0.1, "beta", 5), (0.4, "beta", 3), (0.1, "ratio", 7),
                                               (0.4, "ratio", 4)])
def test_unanimous_votes_certify(eps, prior, votes):
    """The official class never certifies these without a known answer set; the spec's rule does."""
    c = mmc(["7"] * 64, eps=eps, prior=prior)
    assert (c.leader, c.certified, c.votes_used) == ("7", True, votes)
    assert c.e_runner >= 1 / eps and c.e_other >= 1 / eps
    assert not mmc(["7"] * (votes - 1), eps=eps, prior=prior).certified  # one vote short abstains


def test_an_even_split_never_certifies_and_the_budget_abstains():
    for prior in ("beta", "ratio"):
        c = mmc(["a", "b"] * 32, prior=prior)
        assert (c.certified, c.votes_used, c.leader) == (False, 64, "a")
    c = mmc(["x"] * 20, budget=3)
    assert (c.certified, c.votes_used, c.leader) == (False, 3, "x")  # abstains, returns the leader
    c = mmc(["x"] * 20, budget=5)
    assert (c.certified, c.votes_used) == (True, 5)


def test_ties_go_by_answer_string():
    assert contenders({"b": 2, "a": 2, "c": 1}) == ("a", "b")
    # b, a: tie 1-1 -> A = "a" by string (not "b" by first occurrence), so the third vote "a" is an A vote
    c = mmc(["b", "a", "a"], eps=0.001)
    assert (c.s, c.f, c.o, c.leader) == (1, 1, 0, "a")
    assert mmc(["b", "a"], eps=0.001).leader == "a"


def test_answer_less_votes_never_lead_and_count_against_the_leader():
    assert mmc([None] * 8).leader is None and mmc([None] * 8).votes_used == 8 and mmc([]).votes_used == 0
    # v1, v2: no leader yet (used, no update); v3 a initialises; v4 b: B absent -> against A (f);
    # v5 a: s; v6 None: elsewhere (o)
    c = mmc([None, None, "a", "b", "a", None], eps=0.001, K=5)
    assert (c.s, c.f, c.o, c.votes_used, c.leader) == (1, 1, 1, 6, "a")
    assert c.e_other == pytest.approx(2 * m(0, 0) * 2 * (1 - m(1, 0)), rel=1e-12)
    plain, gaps, half = mmc(["7"] * 20), mmc(["7", "7", "7", None] * 10), mmc(["7", None] * 20)
    assert plain.certified and gaps.certified and gaps.votes_used > plain.votes_used
    assert not half.certified and half.f == 0  # the leader must beat the answer-less too; e_run never sees them


def test_bad_options_are_one_line():
    for kw, match in [({"eps": 0}, "eps must be in"), ({"eps": 1.0}, "eps must be in"),
                      ({"prior": "point"}, "unknown MMC prior"), ({"K": 1}, "K"), ({"budget": 0}, "budget"),
                      ({"absent_runner": "x"}, "absent_runner")]:
        with pytest.raises(UrlvrError, match=match):
            mmc(["a"], **kw)


# ---- anytime validity and power (seeded simulations) ----------------------------------------------

def false_rate(answers, n_seq, budget, seed, **kw):
    r = random.Random(seed)
    return sum(mmc([r.choice(answers) for _ in range(budget)], **kw).certified for _ in range(n_seq)) / n_seq


@pytest.mark.parametrize("prior", ["beta", "ratio"])
def test_no_mode_is_certified_at_most_eps_of_the_time(prior):
    """Two (or three) equally likely answers: no leader is the mode, so any certificate is false."""
    assert false_rate("ab", 3000, 64, 1, eps=0.1, prior=prior) <= 0.1
    assert false_rate("ab", 3000, 32, 2, eps=0.4, prior=prior) <= 0.4
    assert false_rate("abc", 2000, 64, 3, eps=0.1, prior=prior) <= 0.1


def test_a_clear_mode_is_certified_and_right():
    r = random.Random(0)
    certs = [mmc(["a" if r.random() < 0.7 else r.choice("bc") for _ in range(64)]) for _ in range(500)]
    certified = [c for c in certs if c.certified]
    assert len(certified) > 400 and sum(c.leader == "a" for c in certified) / len(certified) >= 0.9


# ---- the certified_only modifier --------------------------------------------------------------------

def context(clusters, answers, n_train=2):
    G, N = len(clusters), len(clusters[0])
    return AdvantageContext(step=0, seed=0, problem_ids=[f"p{g}" for g in range(G)], clusters=clusters,
                            answers=answers, rewards=torch.zeros(G, N), valid=torch.ones(G, N, dtype=torch.bool),
                            n_train=n_train)


def test_certified_only_zeroes_uncertified_groups():
    # g0 unanimous (certified at vote 5); g1 an even split; g2 one math class written two ways
    clusters = [[0] * 6, [0, 1] * 3, [0] * 6]
    answers = [["4"] * 6, ["4", "5"] * 3, ["1/2", "0.5"] * 3]
    adv = torch.tensor([[1.0, -1.0], [0.5, -0.5], [2.0, -2.0]])
    ctx = context(clusters, answers)
    out = build_modifier("certified_only")(adv, ctx)
    assert torch.equal(out, torch.tensor([[1.0, -1.0], [0.0, 0.0], [2.0, -2.0]]))
    assert ctx.metrics == {"adv/certified_only/certified_rate": pytest.approx(2 / 3),
                           "adv/certified_only/votes_used": pytest.approx((5 + 6 + 5) / 3),
                           "adv/certified_only/votes_to_certify": 5.0}
    ctx = context(clusters, answers)  # votes by answer keys: "1/2" and "0.5" split, g2 no longer certifies
    out = build_modifier("certified_only", {"votes": "answers"})(adv, ctx)
    assert torch.equal(out[2], torch.zeros(2))
    assert ctx.metrics["adv/certified_only/certified_rate"] == pytest.approx(1 / 3)


def test_certified_only_keeps_columns_and_logs_no_conditional_mean_without_a_certificate():
    ctx = context([[0, 1, None, 0]], [["4", "5", None, "4"]], n_train=4)
    adv = torch.ones(1, 4, 3)  # J = 3 advantage columns
    out = build_modifier("certified_only", {"eps": 0.4})(adv, ctx)
    assert out.shape == (1, 4, 3) and not out.any()
    assert set(ctx.metrics) == {"adv/certified_only/certified_rate", "adv/certified_only/votes_used"}
    with pytest.raises(UrlvrError, match="advantage_options.certified_only: eps must be in"):
        build_modifier("certified_only", {"eps": 2})
    with pytest.raises(UrlvrError, match="has no option 'delta'"):
        build_modifier("certified_only", {"delta": 0.1})


@pytest.fixture
def _one_thread(one_thread):
    yield


def test_certified_only_trains_through_the_real_trainer(tiny_model, tmp_path, _one_thread):
    cfg = tiny_config(tiny_model, tmp_path, reward="majority_vote", advantage_modifier="certified_only",
                      advantage_options={"certified_only": {"eps": 0.4}}, val_problems=0, prompts_per_step=2,
                      n_votes=8, n_train=4, steps=2, save_every=2, sample_every=0, max_new_tokens=16)
    train(cfg, progress=False)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows][-2:] == [1, 2]
    for row in rows[-2:]:
        assert 0.0 <= row["adv/certified_only/certified_rate"] <= 1.0
        assert 3 <= row["adv/certified_only/votes_used"] <= 8 and math.isfinite(row["loss/policy"])
