"""Group advantages and SEED-GRPO on hand-computed groups (urlvr/advantages.py)."""

import doctest
import math

import pytest
import torch

import urlvr.advantages.estimators
import urlvr.advantages.modifiers
from urlvr.advantages import (
    ADVANTAGE_ESTIMATORS, ADVANTAGE_MODIFIERS, AdvantageContext, SeedGRPO, build_modifier, get_advantage_estimator,
    get_advantage_modifier, group_advantages, semantic_entropy, seed_grpo_scale, zero_std_fraction,
)
from urlvr.errors import UrlvrError


def test_doctests():
    assert doctest.testmod(urlvr.advantages.estimators).failed == 0
    assert doctest.testmod(urlvr.advantages.modifiers).failed == 0


def test_grpo_unbiased_std_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # mean 0.25; unbiased var = (0.5625 + 3·0.0625) / 3 = 0.25 -> std 0.5
    adv = group_advantages(r, eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([[1.5, -0.5, -0.5, -0.5]]))
    adv_eps = group_advantages(r, eps=0.5)  # std + eps = 1
    torch.testing.assert_close(adv_eps, torch.tensor([[0.75, -0.25, -0.25, -0.25]]))


def test_groups_are_independent():
    r = torch.tensor([[1.0, 3.0], [10.0, 20.0]])
    adv = group_advantages(r, eps=0.0)
    s = 1 / math.sqrt(2)  # (x - mean) / unbiased std for two values = ±1/sqrt(2)
    torch.testing.assert_close(adv, torch.tensor([[-s, s], [-s, s]]))


def test_drgrpo_no_std_division():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 4.0, 6.0, 8.0]])
    adv = group_advantages(r, scale="none")
    torch.testing.assert_close(adv, torch.tensor([[0.75, -0.25, -0.25, -0.25], [-3.0, -1.0, 1.0, 3.0]]))
    torch.testing.assert_close(ADVANTAGE_ESTIMATORS["drgrpo"](r), adv)


def test_zero_std_group_is_exactly_zero():
    v = 0.02989949658513069  # float32 sum / 3 leaves a ~1e-9 residue that eps would amplify to ~1e-3
    r = torch.tensor([[0.1, 0.1, 0.1], [v, v, v], [1.0, 1.0, 1.0]])
    for scale in ("std", "none"):
        adv = group_advantages(r, scale=scale)
        assert (adv == 0).all()
    assert zero_std_fraction(r) == 1.0


def test_singleton_and_invalid_entries():
    r = torch.tensor([[1.0, float("nan"), 0.0, 5.0],   # valid 1, 0 -> ±1/sqrt(2); invalid -> 0
                      [3.0, 9.0, 9.0, 9.0]])           # one valid entry -> all 0
    valid = torch.tensor([[True, False, True, False], [True, False, False, False]])
    adv = group_advantages(r, valid, eps=0.0)
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(adv, torch.tensor([[s, 0.0, -s, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    adv_dr = group_advantages(r, valid, scale="none")
    torch.testing.assert_close(adv_dr, torch.tensor([[0.5, 0.0, -0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert zero_std_fraction(r, valid) == 0.5


def test_all_invalid_group():
    r = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    valid = torch.tensor([[False, False], [True, True]])
    adv = group_advantages(r, valid)
    assert (adv[0] == 0).all() and (adv[1] != 0).all()
    assert zero_std_fraction(r, valid) == 0.5


def test_zero_std_fraction_counts_groups():
    r = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    assert zero_std_fraction(r) == 0.5
    assert zero_std_fraction(torch.zeros(0, 4)) == 0.0


def test_registry():
    assert set(ADVANTAGE_ESTIMATORS) == {"grpo", "drgrpo"}
    r = torch.tensor([[1.0, 0.0, 0.0]])
    torch.testing.assert_close(get_advantage_estimator("grpo")(r), group_advantages(r, scale="std"))
    with pytest.raises(UrlvrError, match="drgrpo, grpo"):
        get_advantage_estimator("ppo")
    with pytest.raises(UrlvrError):
        group_advantages(r, scale="mad")
    assert get_advantage_modifier("seed_grpo") is SeedGRPO
    assert "seed_grpo" in ADVANTAGE_MODIFIERS
    with pytest.raises(UrlvrError, match="seed_grpo"):
        get_advantage_modifier("seed")
    with pytest.raises(UrlvrError, match="has no option 'beta'.*alpha"):
        build_modifier("seed_grpo", {"beta": 1})


def test_seed_grpo_modifier_equals_the_scale_on_the_first_n_train():
    clusters = [[0, 0, 1, 2, 3, 3], [0, 1, 2, 3, 0, 0]]  # only the first 4 count (n_train)
    ctx = AdvantageContext(step=0, seed=0, problem_ids=["a", "b"], clusters=clusters, answers=[[None] * 6] * 2,
                           rewards=torch.zeros(2, 6), valid=torch.ones(2, 6, dtype=torch.bool), n_train=4)
    adv = torch.tensor([[1.0, -1.0, 0.5, -0.5], [2.0, 0.0, -1.0, -1.0]])
    se = torch.tensor([semantic_entropy(c[:4]) for c in clusters])
    torch.testing.assert_close(build_modifier("seed_grpo", {"alpha": 0.5})(adv, ctx), seed_grpo_scale(adv, se, 4, 0.5))
    assert ctx.metrics["adv/seed_grpo/semantic_entropy"] == pytest.approx(float(se.mean()))


def test_semantic_entropy_by_hand():
    assert semantic_entropy([3, 3, 3, 3]) == 0.0
    assert semantic_entropy([1, 2, 3, 4]) == pytest.approx(math.log(4))
    assert semantic_entropy([1, 1, 2, 2]) == pytest.approx(math.log(2))
    # None answers are singleton clusters: {5, 5}, {None}, {None}
    assert semantic_entropy([5, None, 5, None]) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert semantic_entropy([None] * 4) == pytest.approx(math.log(4))
    assert semantic_entropy([]) == 0.0


def test_seed_grpo_scale_on_hand_built_groups():
    groups = [[7, 7, 7, 7], [1, 2, 3, 4], [1, 1, 2, 2]]
    se = torch.tensor([semantic_entropy(g) for g in groups])
    adv = torch.tensor([[1.0, -1.0, 2.0, 0.0]] * 3)
    out = seed_grpo_scale(adv, se, n=4, alpha=0.8)
    torch.testing.assert_close(out[0], adv[0])              # all same -> scale 1
    torch.testing.assert_close(out[1], adv[1] * (1 - 0.8))  # all different -> 1 - alpha
    torch.testing.assert_close(out[2], adv[2] * (1 - 0.8 * 0.5))  # log 2 / log 4 = 0.5
    torch.testing.assert_close(seed_grpo_scale(adv, se.tolist(), n=4, alpha=0.0), adv)


def test_seed_grpo_n1_scale_one():
    adv = torch.tensor([[0.3], [-0.2]])
    torch.testing.assert_close(seed_grpo_scale(adv, torch.zeros(2), n=1), adv)


def test_seed_grpo_shape_check():
    with pytest.raises(ValueError):
        seed_grpo_scale(torch.zeros(2, 4), torch.zeros(3), n=4)
