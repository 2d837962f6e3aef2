"""RESTRAIN: Gaussian pseudo-label weights, the J candidate columns and the negative-rollout penalty by
hand; per-candidate clipping through the real loss; state and ``prepare``; and a run through the real
trainer whose offline prompt weights come from the initial policy's votes."""

import math

import pytest
import torch

from conftest import tiny_config
from rewards._groups import one_thread  # noqa: F401  (fixture)
from urlvr.advantages import AdvantageContext, build_modifier, get_advantage_modifier, grpo_advantages
from urlvr.advantages.restrain import Restrain, candidate_counts, gaussian, gaussian_weights
from urlvr.errors import UrlvrError
from urlvr.io import read_jsonl
from urlvr.loss import policy_loss
from urlvr.trainer import train


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def ctx_of(clusters, n_train=None, ids=None, valid=None):
    G, N = len(clusters), len(clusters[0])
    return AdvantageContext(step=0, seed=0, problem_ids=ids or [f"p{g}" for g in range(G)], clusters=clusters,
                            answers=[[None if c is None else str(c) for c in row] for row in clusters],
                            rewards=torch.zeros(G, N),
                            valid=valid if valid is not None else torch.ones(G, N, dtype=torch.bool),
                            n_train=n_train or N)


def g_(f, center=1.0, sigma=0.5):
    return math.exp(-((f - center) ** 2) / (2 * sigma**2))


# ---- weights by hand ------------------------------------------------------------------------------

@pytest.mark.parametrize("freqs, center, sigma, expected", [
    ([1.0], 1.0, 0.5, [1.0]),
    ([0.5, 0.5], 1.0, 0.5, [0.5, 0.5]),
    ([0.75, 0.25], 1.0, 0.5, [math.exp(-0.125) / (math.exp(-0.125) + math.exp(-1.125)),
                              math.exp(-1.125) / (math.exp(-0.125) + math.exp(-1.125))]),
    ([0.75, 0.25], 0.5, 0.5, [0.5, 0.5]),                      # symmetric about the centre
    ([0.75, 0.25], 0.0, 0.5, [math.exp(-1.125) / (math.exp(-0.125) + math.exp(-1.125)),
                              math.exp(-0.125) / (math.exp(-0.125) + math.exp(-1.125))]),  # centre 0: rare favoured
])
def test_gaussian_weights_by_hand(freqs, center, sigma, expected):
    assert gaussian_weights(freqs, center, sigma) == pytest.approx(expected)


def test_small_sigma_with_centre_one_tends_to_the_majority():
    w = gaussian_weights([0.5, 0.25, 0.25], 1.0, 0.05)
    assert w[0] > 0.999


def test_candidates_counted_in_first_occurrence_order():
    assert candidate_counts([None, 3, 1, 3, None]) == {3: 2, 1: 1}
    assert list(candidate_counts([None, 3, 1, 3, None], empty_candidate=True).items()) == [(None, 2), (3, 2), (1, 1)]


# ---- the columns by hand -----------------------------------------------------------------------------

def test_columns_are_weighted_per_candidate_grpo_advantages():
    ctx = ctx_of([[0, 0, 0, 1]])
    out = Restrain(prompt_weighting="off")(torch.zeros(1, 4), ctx)
    w0, w1 = g_(0.75) / (g_(0.75) + g_(0.25)), g_(0.25) / (g_(0.75) + g_(0.25))
    # r_.0 = [1, 1, 1, 0]: mean 3/4, unbiased std 1/2 -> [.5, .5, .5, -1.5]; r_.1 the mirror image
    expected = torch.tensor([[[0.5 * w0, -0.5 * w1], [0.5 * w0, -0.5 * w1], [0.5 * w0, -0.5 * w1],
                              [-1.5 * w0, 1.5 * w1]]])
    assert out.shape == (1, 4, 2) and torch.allclose(out, expected, atol=1e-5)
    assert ctx.metrics["adv/restrain/candidates"] == 2 and ctx.metrics["adv/restrain/top_weight"] == pytest.approx(w0)
    assert ctx.metrics["adv/restrain/penalised"] == 0 and ctx.metrics["adv/restrain/prompt_weight"] == 1


def test_incoming_advantages_are_ignored():
    ctx = ctx_of([[0, 0, 1, 2]])
    r = Restrain(prompt_weighting="off")
    assert torch.equal(r(torch.zeros(1, 4), ctx), r(torch.randn(1, 4), ctx_of([[0, 0, 1, 2]])))


def test_columns_pad_to_the_steps_largest_candidate_set_with_zeros():
    ctx = ctx_of([[0, 1, 2, 2], [0, 0, 0, 0]])
    out = Restrain(prompt_weighting="off", kappa=0.0)(torch.zeros(2, 4), ctx)
    assert out.shape == (2, 4, 3)
    assert torch.equal(out[1], torch.zeros(4, 3))  # one candidate everyone has: GRPO advantage 0, pads 0
    assert ctx.metrics["adv/restrain/candidates"] == 2  # (3 + 1) / 2


def test_votes_over_n_votes_rewards_over_the_first_n_train():
    # N = 6 votes: 0 has 4 (f = 2/3), 1 has 2 (f = 1/3); training covers the first 4, where 1 appears once
    ctx = ctx_of([[0, 1, 0, 0, 0, 1]], n_train=4)
    out = Restrain(prompt_weighting="off")(torch.zeros(1, 4), ctx)
    w0, w1 = g_(2 / 3) / (g_(2 / 3) + g_(1 / 3)), g_(1 / 3) / (g_(2 / 3) + g_(1 / 3))
    a0 = grpo_advantages(torch.tensor([[1.0, 0, 1, 1]]))[0]
    assert torch.allclose(out[0, :, 0], w0 * a0) and torch.allclose(out[0, :, 1], -w1 * a0)


def test_invalid_rollouts_get_no_advantage_and_leave_the_statistics():
    valid = torch.tensor([[True, True, True, False]])
    out = Restrain(prompt_weighting="off")(torch.zeros(1, 4), ctx_of([[0, 1, 0, 0]], valid=valid))
    w0 = g_(0.75) / (g_(0.75) + g_(0.25))
    a0 = grpo_advantages(torch.tensor([[1.0, 0, 1, 0]]), valid)[0]
    assert torch.allclose(out[0, :, 0], w0 * a0) and out[0, 3].abs().sum() == 0


@pytest.mark.parametrize("empty_in_n, empty_candidate, freqs, columns", [
    (True, False, [2 / 4, 1 / 4], 2),          # the default: in N, not a candidate
    (False, False, [2 / 3, 1 / 3], 2),         # N = rollouts with an answer
    (True, True, [2 / 4, 1 / 4, 1 / 4], 3),    # the answer-less rollout is a candidate of its own
])
def test_answer_less_rollouts_options(empty_in_n, empty_candidate, freqs, columns):
    ctx = ctx_of([[0, 0, 1, None]])
    out = Restrain(prompt_weighting="off", kappa=0.0, empty_in_n=empty_in_n, empty_candidate=empty_candidate)(
        torch.zeros(1, 4), ctx)
    assert out.shape == (1, 4, columns)
    w = gaussian_weights(freqs)
    a0 = grpo_advantages(torch.tensor([[1.0, 1, 0, 0]]))[0]
    assert torch.allclose(out[0, :, 0], w[0] * a0)
    if empty_candidate:  # r = 1[no answer]: [0, 0, 0, 1]
        assert torch.allclose(out[0, :, 2], w[2] * grpo_advantages(torch.tensor([[0.0, 0, 0, 1]]))[0])


# ---- negative rollout penalisation ------------------------------------------------------------------

@pytest.mark.parametrize("clusters, kappa, penalised", [
    ([[0, 1, 2, 3]], 0.5, True),      # M = 1 < 0.5 · 4
    ([[0, 0, 1, 2]], 0.5, False),     # M = 2 = 0.5 · 4: not below
    ([[0, 0, 1, 2]], 0.51, True),
    ([[None] * 4], 0.2, True),        # no answer at all: M = 0
    ([[None] * 4], 0.0, False),       # kappa 0 never penalises: no candidate, all zero
    ([[0, 1, 2, 3]], 0.0, False),
])
def test_penalty_below_the_consensus_floor(clusters, kappa, penalised):
    ctx = ctx_of(clusters)
    out = Restrain(prompt_weighting="off", kappa=kappa, delta=0.7)(torch.zeros(1, 4), ctx)
    assert ctx.metrics["adv/restrain/penalised"] == float(penalised)
    if penalised:
        assert out.shape[-1] == 1 and torch.allclose(out[0, :, 0], torch.full((4,), -0.7))
    elif clusters[0][0] is None:
        assert torch.equal(out, torch.zeros(1, 4, 1))


def test_penalised_group_is_one_column_among_wider_groups_and_carries_u():
    ctx = ctx_of([[0, 1, 2, 3], [0, 0, 0, 1]], ids=["hard", "easy"])
    r = Restrain(kappa=0.5, delta=0.5)
    r.load_state_dict({"weights": {"hard": 0.25, "easy": 1.0}})
    out = r(torch.zeros(2, 4), ctx)
    assert out.shape == (2, 4, 2)
    assert torch.allclose(out[0, :, 0], torch.full((4,), -0.125)) and out[0, :, 1].abs().sum() == 0  # -δ · u
    unweighted = Restrain(kappa=0.5, delta=0.5, weight_penalty=False)
    unweighted.load_state_dict({"weights": {"hard": 0.25}})
    out = unweighted(torch.zeros(2, 4), ctx_of([[0, 1, 2, 3], [0, 0, 0, 1]], ids=["hard", "easy"]))
    assert torch.allclose(out[0, :, 0], torch.full((4,), -0.5))


# ---- per-candidate clipping through the real loss -------------------------------------------------------

def test_j_columns_through_policy_loss_sum_the_per_candidate_clipped_losses():
    torch.manual_seed(0)
    B, T = 4, 5
    old = torch.randn(B, T) - 2
    new = old + torch.randn(B, T) * 0.6  # ratios well outside [0.8, 1.2]: clipping active
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 3:] = False
    ctx = ctx_of([[0, 0, 1, 2]], ids=["x"])
    r = Restrain(kappa=0.0)
    r.load_state_dict({"weights": {"x": 0.6}})
    cols = r(torch.zeros(1, B), ctx)[0]  # (B, J)
    loss, info = policy_loss(new, old, cols, mask)
    w = gaussian_weights([0.5, 0.25, 0.25])
    per_candidate = []
    for j, label in enumerate([0, 1, 2]):
        a_j = grpo_advantages(torch.tensor([[float(c == label) for c in [0, 0, 1, 2]]]))[0]  # Ã_.j
        per_candidate.append(policy_loss(new, old, a_j, mask)[0])
    expected = sum(0.6 * w[j] * per_candidate[j] for j in range(3))
    assert info["clip_fraction"] > 0 and torch.allclose(loss, expected, atol=1e-6)
    summed = policy_loss(new, old, cols.sum(-1), mask)[0]  # the surrogate of the summed advantage
    assert not torch.allclose(summed, expected, atol=1e-4), "clipping did not act: the test would prove nothing"


# ---- prompt weights, state and options ---------------------------------------------------------------

def test_prepare_turns_base_majorities_into_prompt_weights():
    base = {"a": [0] * 8, "b": [0, 0, 1, 1, 2, 3, None, None], "c": [None] * 8}
    r = Restrain(sigma=0.5, center=1.0)
    assert r.base_votes == 8
    r.prepare(base)
    assert r.weights == pytest.approx({"a": 1.0, "b": g_(2 / 8), "c": g_(0.0)})
    norm = Restrain(normalise_u=True)
    norm.prepare(base)
    mean = (1.0 + g_(0.25) + g_(0.0)) / 3
    assert norm.weights == pytest.approx({"a": 1 / mean, "b": g_(0.25) / mean, "c": g_(0.0) / mean})
    ctx = ctx_of([[0, 0, 0, 1], [0, 0, 0, 1]], ids=["b", "unseen"])
    out = r(torch.zeros(2, 4), ctx)
    assert torch.allclose(out[0], g_(0.25) * out[1])  # same votes, u_b vs u = 1 for a problem never prepared
    assert ctx.metrics["adv/restrain/base_seen"] == 0.5
    assert ctx.metrics["adv/restrain/prompt_weight"] == pytest.approx((g_(0.25) + 1) / 2)


def test_prompt_weighting_off_asks_for_no_base_votes():
    r = Restrain(prompt_weighting="off")
    assert r.base_votes == 0
    r.prepare({"a": [None] * 8})
    assert r.weights == {}


def test_state_round_trip_gives_the_same_columns():
    r = Restrain(base_votes=4)
    r.prepare({"p0": [0, 0, 1, None], "p1": [0, 1, 2, 3]})
    fresh = Restrain(base_votes=4)
    fresh.load_state_dict(r.state_dict())
    assert fresh.state_dict() == r.state_dict() == {"weights": r.weights}
    clusters = [[0, 0, 1, 2], [0, 1, 1, 1]]
    assert torch.equal(r(torch.zeros(2, 4), ctx_of(clusters)), fresh(torch.zeros(2, 4), ctx_of(clusters)))


@pytest.mark.parametrize("opts, message", [
    ({"kappa": 2}, "kappa is a fraction"), ({"delta": -1}, "delta"), ({"sigma": 0}, "sigma must be > 0"),
    ({"center": 1.5}, "center"), ({"prompt_weighting": "online"}, "prompt_weighting"),
    ({"base_votes": 0}, "base_votes"), ({"tau": 1}, "has no option 'tau'"),
])
def test_bad_options_are_one_clear_line(opts, message):
    with pytest.raises(UrlvrError, match=message):
        build_modifier("restrain", opts)


def test_registered():
    assert get_advantage_modifier("restrain") is Restrain and Restrain.family == "ensemble"


# ---- through the real trainer -----------------------------------------------------------------------

def test_training_uses_the_initial_policys_votes(tiny_model, tmp_path):
    from urlvr.loading import load_model
    from urlvr.prompts import Renderer
    from urlvr.rollout import HFSampler
    from urlvr.seeds import derive_seed
    from urlvr.tasks import get_task
    from urlvr.types import SamplingSettings

    cfg = tiny_config(tiny_model, tmp_path / "run", advantage_modifier="restrain", reward="majority_vote",
                      advantage_options={"restrain": {"base_votes": 6, "kappa": 0.3}}, val_problems=0,
                      prompts_per_step=2, n_votes=4, n_train=4, steps=2, save_every=2, sample_every=0,
                      max_new_tokens=12)  # room for "\\boxed{NN}" + EOS
    train(cfg, progress=False)
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_000002" / "trainer_state.pt", weights_only=False)
    weights = state["modifiers"]["restrain"]["weights"]
    # the base votes, drawn again here from the initial model the way the trainer draws them
    task = get_task(cfg.task, **cfg.task_options)
    rules = task.rules(cfg.equivalence)
    model, tok = load_model(tiny_model, "cpu", "float32")
    sampler, render = HFSampler(model, tok), Renderer(task.prompt, tok, cfg.chat, cfg.system_prompt)
    settings = SamplingSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    examples = task.examples(cfg.train_split, cfg.train_problems, seed=cfg.seed)
    expected = {}
    for s in range(0, len(examples), 32):
        part = examples[s : s + 32]
        batch = sampler.generate([render(e.problem) for e in part for _ in range(6)], settings,
                                 seed=[derive_seed(cfg.seed, "base_votes", e.problem.id) for e in part for _ in range(6)])
        answers = [rules.extract(t) for t in batch.texts]
        for j, e in enumerate(part):
            ids = rules.cluster(answers[j * 6 : (j + 1) * 6])
            top = max([ids.count(c) for c in set(ids) if c is not None], default=0)
            expected[e.problem.id] = g_(top / 6)
    assert weights == pytest.approx(expected) and len(weights) == cfg.train_problems
    assert len(set(round(u, 6) for u in weights.values())) > 1, "every base majority equal: the test would prove nothing"
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for row in rows[1:]:
        assert row["adv/restrain/base_seen"] == 1.0 and math.isfinite(row["loss/policy"])
        assert 0 < row["adv/restrain/prompt_weight"] <= 1
