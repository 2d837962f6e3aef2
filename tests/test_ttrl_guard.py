"""TTRL-Guard: FRS weights, RCSU skips and MPS bonuses by hand over a prompt's visits; the released
code's missing vote counts; state round trip; options; and runs through the real trainer (problems
revisited, history saved in checkpoints, a resumed run equal to the uninterrupted one)."""

import math

import pytest
import torch

from conftest import tiny_config
from rewards._groups import one_thread  # noqa: F401  (fixture)
from urlvr.advantages import AdvantageContext, build_modifier, get_advantage_modifier
from urlvr.advantages.ttrl_guard import TTRLGuard, apply_guard, frs_weight, minority_bonus
from urlvr.errors import UrlvrError
from urlvr.io import read_jsonl
from urlvr.trainer import train

KW = dict(tau_fr=0.3, tau_mr=0.6, lambda1=0.5, lambda2=0.3, window=5)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def visit(step, answers, ids=None, n_train=None, seed=0):
    """One step's context: ``answers`` (G, N) strings or None, clustered by exact string per group."""
    clusters = []
    for row in answers:
        seen: dict[str, int] = {}
        clusters.append([None if a is None else seen.setdefault(a, len(seen)) for a in row])
    G, N = len(answers), len(answers[0])
    return AdvantageContext(step=step, seed=seed, problem_ids=ids or [f"p{g}" for g in range(G)], clusters=clusters,
                            answers=[list(r) for r in answers], rewards=torch.zeros(G, N),
                            valid=torch.ones(G, N, dtype=torch.bool), n_train=n_train or N)


# ---- the pieces by hand ---------------------------------------------------------------------------

@pytest.mark.parametrize("fr, mr, mr_win, had_comp, visits, fired, expected, third", [
    (0.0, 0.5, 0.5, False, 1, 0, 1.0, False),             # nothing: weight 1
    (1.0, 0.5, 0.5, True, 2, 0, 0.5, False),              # a flip at low MR: 1 − λ1
    (1.0, 0.8, 0.8, True, 6, 0, 0.5 * 0.7, False),        # a flip at high MR: (1 − λ1)(1 − λ2)
    (0.0, 0.9, 0.9, False, 5, 0, 0.85, True),             # never flipped, W visits, MR_win > τ_MR: 1 − λ2/2
    (0.0, 0.9, 0.9, False, 5, 5, 1.0, False),             # ... at most W times per prompt
    (0.0, 0.9, 0.9, False, 4, 0, 1.0, False),             # ... and only from the W-th visit
    (0.0, 0.9, 0.9, True, 9, 0, 1.0, False),              # ... and never once it flipped
])
def test_frs_weight_by_hand(fr, mr, mr_win, had_comp, visits, fired, expected, third):
    w, fired_now = frs_weight(fr, mr, mr_win, had_comp, visits, fired, **KW)
    assert w == pytest.approx(expected) and fired_now is third


def test_frs_weight_floor():
    assert frs_weight(1.0, 0.9, 0.9, True, 6, 0, tau_fr=0.3, tau_mr=0.6, lambda1=1.0, lambda2=1.0,
                      window=5)[0] == 0.1


def test_minority_bonus_shares_beta_by_votes_above_the_floor():
    # winner 0; minority 1 (3 votes), 2 (1 vote: under the floor of 2), answer-less not counted
    bonus = minority_bonus([0, 0, 0, 0, 1, 1, 1, 2, None], 0, 1.0, 2, tau_fr=0.3, beta_max=0.3)
    assert bonus == pytest.approx({1: 0.3})
    two = minority_bonus([0, 0, 0, 1, 1, 2, 2, 2], 0, 1.0, 2, tau_fr=0.3, beta_max=0.3)
    assert two == pytest.approx({1: 0.3 * 2 / 5, 2: 0.3 * 3 / 5})
    assert minority_bonus([0, 0, 1, 1], 0, 0.0, 1, tau_fr=0.3, beta_max=0.3) == {1: 0.0}  # β_t = 0 at FR 0


def test_apply_guard_scales_then_adds_bonus_times_mean_abs_advantage():
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    out, given = apply_guard(adv, torch.tensor([0.5]), torch.tensor([1.0]), [[0, 1, 0, None]], [{1: 0.2}])
    s = 0.5 + 1e-6  # mean |A'| after the weight
    assert torch.allclose(out, torch.tensor([[0.5, -0.5 + 0.2 * s, 0.5, -0.5 + 0.05 * 0.2 * s]]))
    assert given == 2
    skipped, _ = apply_guard(adv, torch.tensor([1.0]), torch.tensor([0.0]), [[0, 1, 0, 1]], [{}])
    assert skipped.abs().sum() == 0


# ---- the modifier over visits -------------------------------------------------------------------

def test_first_visit_changes_nothing_and_a_flip_acts():
    guard = TTRLGuard(rcsu=False)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    ctx = visit(0, [["4", "5", "4", "4"]])
    assert torch.equal(guard(adv, ctx), adv) and ctx.metrics["adv/ttrl_guard/flip_rate"] == 0
    ctx = visit(1, [["5", "4", "5", "5"]])  # â: 4 -> 5 at MR 0.75 > τ_MR: w = 0.5 · 0.7, bonus 0.3 to "4"
    out = guard(adv, ctx)
    w = 0.35
    s = w + 1e-6
    assert torch.allclose(out, torch.tensor([[w, -w + 0.3 * s, w, -w]]))
    assert ctx.metrics["adv/ttrl_guard/flip_rate"] == 1 and ctx.metrics["adv/ttrl_guard/bonus_rollouts"] == 1
    assert guard.prompts["p0"]["had_comp"] and guard.prompts["p0"]["history"] == [["4", 0.75], ["5", 0.75]]


def test_majority_is_compared_across_visits_by_the_voting_key():
    guard = TTRLGuard(rcsu=False, mps=False)
    adv = torch.ones(1, 4)
    guard(adv, visit(0, [["4", "4", "5", None]]))
    ctx = visit(1, [[" 4", " 4", "5", "5"]])  # same key after canonical (strip), cluster ids renumbered
    ctx.canonical = lambda a: a.strip()
    guard(adv, ctx)
    assert ctx.metrics["adv/ttrl_guard/flip_rate"] == 0


def test_mps_stays_active_until_steady_low_flip_visits():
    guard = TTRLGuard(rcsu=False, frs=False, mps_steady=2)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    seq = [["4", "4", "4", "5"], ["5", "5", "5", "4"], ["5", "5", "5", "4"], ["5", "5", "5", "4"],
           ["5", "5", "5", "4"]]
    active = []
    for t, answers in enumerate(seq):
        ctx = visit(t, [answers])
        guard(adv, ctx)
        active.append(ctx.metrics["adv/ttrl_guard/mps_active"])
    assert active == [0, 1, 1, 0, 0]  # the flip, one low-FR visit, then the second ends it


def test_released_counts_give_no_bonus_at_all():
    guard = TTRLGuard(rcsu=False, frs=False, mps_counts="released")
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    guard(adv, visit(0, [["4", "4", "4", "5"]]))
    ctx = visit(1, [["5", "5", "5", "4"]])
    assert torch.equal(guard(adv, ctx), adv) and ctx.metrics["adv/ttrl_guard/mps_active"] == 0


def history_of_high_risk(guard, prompts, step0=0):
    """Visits that make every prompt high-risk: a flip, then W confident visits."""
    flip = [["4", "4", "4", "5"], ["5", "5", "5", "5"]] + [["5", "5", "5", "5"]] * 4
    for t, row in enumerate(flip):
        guard(torch.ones(prompts, 4), visit(step0 + t, [row] * prompts))
    return step0 + len(flip)


def test_rcsu_skips_at_most_a_quarter_of_the_batch():
    guard = TTRLGuard(frs=False, mps=False, p_skip=1.0)
    t = history_of_high_risk(guard, 8)
    ctx = visit(t, [["5", "5", "5", "5"]] * 8)
    out = guard(torch.ones(8, 4), ctx)
    assert ctx.metrics["adv/ttrl_guard/high_risk"] == 8 and ctx.metrics["adv/ttrl_guard/skipped"] == 2
    assert (out.abs().sum(1) == 0).sum() == 2 and out[:2].abs().sum() == 0  # the first ones in batch order
    never = TTRLGuard(frs=False, mps=False, p_skip=0.0)
    t = history_of_high_risk(never, 8)
    ctx = visit(t, [["5", "5", "5", "5"]] * 8)
    assert torch.equal(never(torch.ones(8, 4), ctx), torch.ones(8, 4)) and ctx.metrics["adv/ttrl_guard/skipped"] == 0


def test_rcsu_draws_depend_on_seed_and_step_only():
    def skipped(seed, step):
        guard = TTRLGuard(frs=False, mps=False)
        history_of_high_risk(guard, 16, step0=step - 6)
        ctx = visit(step, [["5", "5", "5", "5"]] * 16, seed=seed)
        out = guard(torch.ones(16, 4), ctx)
        return tuple((out.abs().sum(1) == 0).tolist())

    assert skipped(0, 10) == skipped(0, 10)
    assert len({skipped(s, 10) for s in range(6)}) > 1, "RCSU skipped the same prompts under every seed"


def test_state_round_trip_continues_exactly():
    a, b = TTRLGuard(), TTRLGuard()
    seq = [["4", "4", "5", "5"], ["5", "5", "5", "4"], ["4", "4", "4", "4"], ["5", "4", "5", "5"]]
    for t, row in enumerate(seq[:2]):
        a(torch.ones(1, 4), visit(t, [row]))
    b.load_state_dict(a.state_dict())
    for t, row in enumerate(seq[2:], start=2):
        assert torch.equal(a(torch.ones(1, 4), visit(t, [row])), b(torch.ones(1, 4), visit(t, [row])))
    assert a.state_dict() == b.state_dict()


def test_answer_less_group_has_no_key():
    guard = TTRLGuard(rcsu=False)
    guard(torch.ones(1, 4), visit(0, [[None] * 4]))
    assert guard.prompts["p0"]["history"] == [[None, 0.0]]


def test_column_advantages_are_refused():
    with pytest.raises(ValueError, match="before any modifier that adds advantage columns"):
        TTRLGuard()(torch.ones(1, 4, 2), visit(0, [["4"] * 4]))


@pytest.mark.parametrize("opts, message", [
    ({"tau_fr": 2}, "tau_fr must be in"), ({"p_skip": -0.1}, "p_skip"), ({"window": 0}, "window"),
    ({"beta_max": -1}, "beta_max"), ({"mps_counts": "nope"}, "mps_counts"), ({"tau": 1}, "has no option 'tau'"),
])
def test_bad_options_are_one_clear_line(opts, message):
    with pytest.raises(UrlvrError, match=message):
        build_modifier("ttrl_guard", opts)


def test_registered():
    assert get_advantage_modifier("ttrl_guard") is TTRLGuard and TTRLGuard.family == "ensemble"


# ---- through the real trainer -----------------------------------------------------------------------

def guard_config(model, out, steps):
    # 6 problems, 3 per step: every problem comes back every other step or so
    return tiny_config(model, out, reward="majority_vote", advantage_modifier="ttrl_guard", train_problems=6,
                       val_problems=0, prompts_per_step=3, n_votes=6, n_train=4, steps=steps, save_every=3,
                       sample_every=0, max_new_tokens=10, temperature=1.3)


def test_trainer_keeps_the_history_and_resumes_it(tiny_model, tmp_path):
    train(guard_config(tiny_model, tmp_path / "full", 6), progress=False)
    train(guard_config(tiny_model, tmp_path / "part", 3), progress=False)
    state = torch.load(tmp_path / "part" / "checkpoints" / "step_000003" / "trainer_state.pt", weights_only=False)
    visits = sum(len(p["history"]) for p in state["modifiers"]["ttrl_guard"]["prompts"].values())
    assert visits == 9 and set(state["flips"]["problems"]) == set(state["modifiers"]["ttrl_guard"]["prompts"])
    train(guard_config(tiny_model, tmp_path / "part", 6), resume=True, progress=False)
    full = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    part = read_jsonl(tmp_path / "part" / "metrics.jsonl")
    keys = [k for k in full[-1] if k.startswith(("adv/ttrl_guard/", "diag/flip", "diag/relock", "diag/revisited",
                                                  "oracle/solved", "oracle/unsolved"))]
    assert len(keys) >= 12
    for a, b in zip(full, part):
        for k in keys:
            va, vb = a.get(k), b.get(k)
            assert va == vb or (isinstance(va, float) and math.isclose(va, vb, rel_tol=1e-6)), (a["step"], k, va, vb)
    assert sum(r.get("diag/revisited") or 0 for r in full) > 0
