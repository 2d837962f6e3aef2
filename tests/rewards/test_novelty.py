"""EVOL-RL (urlvr/rewards/novelty.py): hand-computed groups for every rule and edge case of METHODS-2026 §1,
order invariance, and the rollout's own embeddings reaching the reward through the real trainer."""

import math
import random

import pytest
import torch

from conftest import tiny_config
from rewards._groups import group, one_thread  # noqa: F401  (fixture)
from urlvr.errors import UrlvrError
from urlvr.rewards import get_reward
from urlvr.rewards.base import RewardSpec, call_reward
from urlvr.rewards.novelty import NOVELTY_TOL, boxed_digit, embedded_text, evol_rl, novelty, set_rewards
from urlvr.answers import extract_boxed
from urlvr.trainer import Trainer
from urlvr.types import Completion

E = torch.eye(6)  # orthonormal basis: cosine 1 with itself, 0 with the others


def comp(text, emb, answer=...):
    """A completion of ``text`` with an explicit embedding (None: sampled without ``embed``)."""
    emb = None if emb is None else torch.as_tensor(emb, dtype=torch.float32)
    return Completion(text, extract_boxed(text) if answer is ... else answer, torch.zeros(max(len(text), 1)).long(),
                      embedding=emb)


def boxed(a):
    return "\\boxed{" + a + "}"


def scores(completions, **options):
    return evol_rl(group(completions), **options).scores


# ---- the pieces -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, embedded", [
    ("reasoning</think>so \\boxed{2}", "so \\boxed{2}"),
    ("a</think>b</think>c", "b</think>c"),  # the first </think>
    ("no think \\boxed{2}", "no think \\boxed{2}"),
])
def test_embedded_text_is_after_the_first_think(text, embedded):
    assert embedded_text(text) == embedded


@pytest.mark.parametrize("text, valid", [
    ("\\boxed{12}", True), ("\\boxed{x=3}", True), ("\\boxed{x}", False), ("no box 3", False), ("\\boxed{}", False),
    ("\\boxed{\\frac{1}{2}}", True),  # innermost-brace match "\\frac{1" holds a digit
    ("\\boxed{A} then \\boxed{7}", True),  # any box, not only the last
    ("\\boxed{7", False),  # unclosed
])
def test_validity_is_a_boxed_content_with_a_digit(text, valid):
    assert boxed_digit(text) is valid


def test_novelty_mean_in_own_set_max_over_all_valid():
    # M = {0, 1, 2}, m = {3}; e3 = e0: s = [[1,1,0,1],[1,1,0,1],[0,0,1,0],[1,1,0,1]] (diagonal unused)
    u = novelty(torch.stack([E[0], E[0], E[1], E[0]]), [True, True, True, False]).tolist()
    # u0: mu = (1 + 0)/2, h = 1; u2: mu = 0, h = 0; u3 alone in m: mu over all others = 2/3, h = 1
    assert u == pytest.approx([1 - (0.5 + 1) / 2, 1 - (0.5 + 1) / 2, 1.0, 1 - (2 / 3 + 1) / 2])


@pytest.mark.parametrize("u, low, expected", [
    ([0.2, 0.4, 0.3], 0.5, [0.5, 1.0, 0.75]),
    ([0.2, 0.4, 0.3], -1.0, [-1.0, -0.5, -0.75]),
    ([0.3], 0.5, [1.0]), ([0.3], -1.0, [-0.5]),  # one member
    ([0.3, 0.3], 0.5, [0.75, 0.75]), ([0.3, 0.3 + NOVELTY_TOL / 2], -1.0, [-0.75, -0.75]),  # constant
])
def test_set_rewards_min_max_into_the_sets_range(u, low, expected):
    assert set_rewards(u, low) == pytest.approx(expected)


# ---- whole groups, hand computed ----------------------------------------------------------------------

CASES = {
    # texts, embeddings -> rewards
    "majority ranked by novelty, singleton minority": (
        [boxed("2"), boxed("2"), boxed("2"), boxed("3")], [E[0], E[0], E[1], E[2]], [0.5, 0.5, 1.0, -0.5]),
    "constant novelty in both sets": (
        [boxed("2"), boxed("2"), boxed("2"), boxed("3"), boxed("4")], [E[0], E[1], E[2], E[3], E[4]],
        [0.75, 0.75, 0.75, -0.75, -0.75]),
    "the clip: opposite vectors are as far apart as orthogonal ones": (
        [boxed("2"), boxed("2"), boxed("2")], [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], [0.75, 0.75, 0.75]),
    "invalid responses get -1 and stay out of the similarities": (
        [boxed("2"), boxed("2"), "no answer", boxed("x"), boxed("2")], [E[0], E[0], E[0], E[1], E[1]],
        [0.5, 0.5, -1.0, -1.0, 1.0]),
    "fewer than two valid: every response -1, the valid one too": (
        [boxed("2"), "no answer", boxed("x")], [E[0], E[1], E[2]], [-1.0, -1.0, -1.0]),
    "nothing valid": (["?", "?"], [E[0], E[1]], [-1.0, -1.0]),
    "majority tie goes to the answer seen first": (
        [boxed("3"), boxed("2"), boxed("2"), boxed("3")], [E[0], E[1], E[2], E[3]], [0.75, -0.75, -0.75, 0.75]),
    "the majority answer may be invalid: then every valid response is minority": (
        [boxed("x"), boxed("x"), boxed("x"), boxed("2"), boxed("2"), boxed("3")], [E[0]] * 3 + [E[1], E[1], E[2]],
        [-1.0, -1.0, -1.0, -1.0, -1.0, -0.5]),
    "think: the text after </think> decides validity": (
        ["\\boxed{2}</think>none", "</think>\\boxed{2}", "\\boxed{2}", "\\boxed{2}"], [E[0], E[0], E[0], E[1]],
        [-1.0, 0.5, 0.5, 1.0]),
}


@pytest.mark.parametrize("name", CASES)
def test_hand_computed_groups(name):
    texts, embs, expected = CASES[name]
    assert scores([comp(t, e) for t, e in zip(texts, embs)]) == pytest.approx(expected)


def test_the_minority_set_is_ranked_too():
    # m = {2, 3, 4}: e2 = e3, e4 apart -> u2 = u3 = 1 - (0.5 + 1)/2 = 0.25, u4 = 1
    texts = [boxed("2"), boxed("2"), boxed("3"), boxed("4"), boxed("5"), boxed("2")]
    out = scores([comp(t, e) for t, e in zip(texts, [E[0], E[1], E[2], E[2], E[3], E[4]])])
    assert out == pytest.approx([0.75, 0.75, -1.0, -1.0, -0.5, 0.75])


@pytest.mark.parametrize("texts, expected", [([boxed("2")], [1.0]), (["?"], [0.0]), ([boxed("x")], [1.0])])
def test_a_group_of_one_gets_the_plain_vote(texts, expected):
    assert scores([comp(t, None) for t in texts]) == expected  # no embedding needed


def test_parsable_validity_for_non_numeric_tasks():
    texts = [boxed("yes"), boxed("yes"), boxed("no")]
    embs = [E[0], E[1], E[2]]
    assert scores([comp(t, e) for t, e in zip(texts, embs)]) == [-1.0] * 3  # no digit: nothing valid
    assert scores([comp(t, e) for t, e in zip(texts, embs)], validity="parsable") == [0.75, 0.75, -0.5]


def test_center_subtracts_the_mean_embedding_of_the_valid_responses():
    embs = [[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    texts = [boxed("2")] * 3
    # raw: s01 = 0, s02 = s12 = 1/√2 -> u0 = u1 = 1 - (1/(2√2) + 1/√2)/2, u2 = 1 - 1/√2 (the lowest)
    assert scores([comp(t, e) for t, e in zip(texts, embs)]) == pytest.approx([1.0, 1.0, 0.5])
    # centred: (1,-1), (-1,1), (0,0): every clipped cosine 0 (the zero vector has cosine 0) -> constant
    assert scores([comp(t, e) for t, e in zip(texts, embs)], center=True) == pytest.approx([0.75] * 3)


def test_components_name_the_embedding_source_and_carry_novelty():
    texts = [boxed("2"), boxed("2"), boxed("2"), boxed("3"), "?"]
    out = evol_rl(group([comp(t, e) for t, e in zip(texts, [E[0], E[0], E[1], E[0], E[2]])]))
    assert out.components["evol_rl/valid"] == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert out.components["evol_rl/majority"] == [1.0, 1.0, 1.0, 0.0, None]
    assert out.components["evol_rl/novelty_policy"] == pytest.approx([0.25, 0.25, 1.0, 1 - (2 / 3 + 1) / 2, None])
    assert "evol_rl/novelty_external" not in out.components


def char_counts(texts):
    """An external embedder for the tests: counts of p, q, r (refuses texts that still hold a </think>)."""
    assert all("</think>" not in t for t in texts), texts
    return [[t.count("p"), t.count("q"), t.count("r")] for t in texts]


def test_an_external_embedding_function_by_dotted_path():
    texts = ["p</think>pp" + boxed("2"), "qq" + boxed("2"), "rr" + boxed("2"), "pp" + boxed("3"), "?"]
    comps = [comp(t, None) for t in texts]  # no rollout embeddings needed
    out = evol_rl(group(comps), embedding="rewards.test_novelty:char_counts")
    # e = p, q, r, p (the think part not embedded): u0 = 1 - (0 + 1)/2 = 0.5 (h from the minority), u1 = u2 = 1
    assert out.scores == pytest.approx([0.5, 1.0, 1.0, -0.5, -1.0])
    assert "evol_rl/novelty_external" in out.components


def test_missing_rollout_embeddings_name_the_fix():
    with pytest.raises(UrlvrError, match=r"SamplingSettings\(embed=True\)"):
        evol_rl(group([comp(boxed("2"), E[0]), comp(boxed("2"), None)]))


@pytest.mark.parametrize("options, match", [
    ({"validity": "digits"}, "unknown evol_rl validity"),
    ({"embedding": "nonsense"}, "neither 'policy' nor"),
    ({"embedding": "no_such_module_xyz:f"}, "cannot load evol_rl embedding"),
])
def test_bad_options_fail_with_one_line(options, match):
    with pytest.raises(UrlvrError, match=match):
        evol_rl(group([comp(boxed("2"), E[0]), comp(boxed("2"), E[1])]), **options)


def test_registered_as_an_ensemble_reward_that_needs_embeddings():
    spec = get_reward("evol_rl")
    assert (spec.family, spec.needs_group, spec.needs_embeddings, spec.needs_gold) == ("ensemble", True, True, False)


# ---- order invariance ------------------------------------------------------------------------------

@pytest.mark.parametrize("trial", range(5))
def test_order_invariance(trial):
    r = random.Random(trial)
    answers = ["2"] * 5 + ["3"] * 3 + ["4"] * 2 + [None] * 2  # no tie for the majority
    texts = [boxed(a) if a else "no answer" for a in answers]
    embs = torch.randn(len(texts), 8, generator=torch.Generator().manual_seed(trial)) + 0.5
    comps = [comp(t, e) for t, e in zip(texts, embs)]
    base = scores(comps)
    perm = list(range(len(comps)))
    r.shuffle(perm)
    shuffled = scores([comps[i] for i in perm])
    assert shuffled == pytest.approx([base[i] for i in perm], abs=1e-9)
    assert all(0.5 <= base[i] <= 1 for i in range(5)) and all(-1 <= base[i] <= -0.5 for i in range(5, 12))
    assert max(base[:5]) == 1.0 and min(base[:5]) == 0.5  # min-max spans the range


# ---- through the real trainer: the embeddings are the rollout's ---------------------------------------

def test_the_reward_receives_the_rollouts_hidden_states_in_training(tiny_model, tmp_path, one_thread):  # noqa: F811
    cfg = tiny_config(tiny_model, tmp_path / "run", reward="evol_rl", val_problems=0, prompts_per_step=2, n_votes=4,
                      n_train=4, steps=1)
    trainer = Trainer(cfg, tiny_model)
    assert trainer.settings.embed, "needs_embeddings must make the trainer sample with embed=True"
    seen = []

    def spy(g, **options):  # the real reward, recording what it was given
        seen.append(g)
        return evol_rl(g, **options)

    trainer.reward = RewardSpec("evol_rl", spy, "ensemble", needs_group=True, needs_embeddings=True)
    step = trainer.train_step(0)
    hidden = trainer.policy.config.hidden_size
    got = torch.stack([c.embedding for g in seen for c in g.completions])  # (G * N, H)
    assert got.shape == (2 * 4, hidden) and got.dtype == torch.float32
    assert torch.equal(got, step.batch.embeddings)  # the rollout's own pooled states, no other pass
    assert got.norm(dim=1).gt(0).all() and not torch.allclose(got.norm(dim=1), torch.ones(len(got)))  # not normalised
    assert math.isfinite(step.metrics["reward/mean"]) and "reward/evol_rl/valid" in step.metrics
    assert call_reward(get_reward("evol_rl"), seen[0], {}).scores == evol_rl(seen[0]).scores
