"""The std filter (RLPR): EMA and zeroing by hand, state round trip, and through the real trainer."""

import math

import pytest
import torch

from conftest import tiny_config
from urlvr.advantages import AdvantageContext, build_modifier
from urlvr.advantages.filters import StdFilter, group_reward_std
from urlvr.errors import UrlvrError
from urlvr.io import read_jsonl
from urlvr.trainer import Trainer, train


def ctx_of(rewards, valid=None, step=0, n_train=None):
    r = torch.tensor(rewards, dtype=torch.float32)  # (G, N)
    v = torch.ones_like(r, dtype=torch.bool) if valid is None else torch.tensor(valid)
    G, N = r.shape
    return AdvantageContext(step=step, seed=0, problem_ids=[f"p{g}" for g in range(G)], clusters=[[None] * N] * G,
                            answers=[[None] * N] * G, rewards=r, valid=v, n_train=n_train or N)


def sd(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_group_reward_std_is_unbiased_over_valid_entries():
    r = torch.tensor([[1.0, 0, 1, 0], [1.0, 5.0, 3.0, 9.0], [2.0, 0, 0, 0]])
    v = torch.tensor([[True] * 4, [True, False, True, False], [True, False, False, False]])
    std, enough = group_reward_std(r, v)
    assert std.tolist() == pytest.approx([sd([1, 0, 1, 0]), sd([1, 3]), 0.0])
    assert enough.tolist() == [True, True, False]


STEPS = [  # rewards per step (G=3, N=4): the EMA by hand
    [[1.0, 0, 1, 0], [1, 1, 1, 1], [0.5, 0.4, 0.6, 0.5]],
    [[1.0, 0, 0, 0], [0.9, 0.1, 0.5, 0.5], [0.2, 0.2, 0.2, 0.3]],
    [[1.0, 1, 0, 0], [0.0, 0, 0, 0], [0.3, 0.9, 0.1, 0.5]],
]


@pytest.mark.parametrize("beta, decay, warmup", [(0.5, 0.99, 1), (1.0, 0.5, 0), (0.8, 0.9, 2)])
def test_ema_and_zeroing_by_hand(beta, decay, warmup):
    f = StdFilter(beta=beta, decay=decay, warmup=warmup)
    ema = None
    for step, rewards in enumerate(STEPS):
        stds = [sd(row) for row in rewards]
        mean = sum(stds) / len(stds)
        ema = mean if ema is None else decay * ema + (1 - decay) * mean
        keep = [s >= beta * ema for s in stds] if step >= warmup else [True] * 3
        ctx = ctx_of(rewards, step=step)
        adv = torch.arange(12, dtype=torch.float32).view(3, 4) + 1
        out = f(adv, ctx)
        assert out.tolist() == [row if k else [0.0] * 4 for row, k in zip(adv.tolist(), keep)]
        assert f.ema == pytest.approx(ema)
        assert ctx.metrics["adv/std_filter/kept"] == pytest.approx(sum(keep) / 3)
    assert f.steps == 3


def test_some_prompts_are_filtered_and_some_kept_in_the_table():
    f = StdFilter(beta=1.0, warmup=0)
    out = f(torch.ones(3, 4), ctx_of(STEPS[0]))
    assert out.sum(1).tolist() == [4.0, 0.0, 0.0]  # 0.577 kept; 0 and 0.082 below the mean 0.22


def test_only_the_first_n_train_and_valid_rewards_count_and_j_columns_are_zeroed_together():
    f = StdFilter(beta=1.0, warmup=0)
    # group 0 varies only in the completions beyond n_train=2; group 1's varying entry is invalid
    rewards = [[1.0, 1.0, 0.0, 5.0], [0.0, 1.0, 9.0, 0.0]]
    valid = [[True] * 4, [True, True, False, True]]
    adv = torch.ones(2, 2, 3)  # (G, n_train, J)
    out = f(adv, ctx_of(rewards, valid, n_train=2))
    assert f.ema == pytest.approx((0.0 + sd([0.0, 1.0])) / 2)
    assert out[0].abs().sum() == 0 and torch.equal(out[1], adv[1])


def test_groups_without_two_valid_rewards_do_not_move_the_ema():
    f = StdFilter(warmup=0)
    f(torch.ones(2, 3), ctx_of([[1.0, 0, 0], [3.0, 0, 0]], [[True, False, False], [True, True, True]]))
    assert f.ema == pytest.approx(sd([3.0, 0, 0]))
    g = StdFilter(warmup=0)
    out = g(torch.ones(1, 2), ctx_of([[1.0, 0]], [[True, False]]))  # no usable group: no EMA, nothing filtered
    assert g.ema is None and torch.equal(out, torch.ones(1, 2))


def test_state_round_trip_continues_exactly():
    whole = StdFilter(beta=0.9, decay=0.7, warmup=1)
    outs = [whole(torch.ones(3, 4), ctx_of(r, step=i)) for i, r in enumerate(STEPS)]
    first = StdFilter(beta=0.9, decay=0.7, warmup=1)
    for i, r in enumerate(STEPS[:2]):
        first(torch.ones(3, 4), ctx_of(r, step=i))
    resumed = StdFilter(beta=0.9, decay=0.7, warmup=1)
    resumed.load_state_dict(first.state_dict())
    assert resumed.state_dict() == first.state_dict()
    assert torch.equal(resumed(torch.ones(3, 4), ctx_of(STEPS[2], step=2)), outs[2])
    fresh = StdFilter(beta=0.9, decay=0.7, warmup=1)
    fresh.load_state_dict({})  # a checkpoint from before the filter existed: a fresh start
    assert fresh.ema is None and fresh.steps == 0


def test_options_are_validated_with_one_line():
    assert isinstance(build_modifier("std_filter", {"beta": 0.5}), StdFilter)
    for bad in ({"beta": -1}, {"decay": 1.0}, {"warmup": -2}):
        with pytest.raises(UrlvrError, match="advantage_options.std_filter"):
            build_modifier("std_filter", bad)
    with pytest.raises(UrlvrError, match="no option 'ema'"):
        build_modifier("std_filter", {"ema": 0.3})


# ---- through the real trainer ------------------------------------------------------------------------

@pytest.fixture
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small(model, out, **kw):
    return tiny_config(model, out, val_problems=0, prompts_per_step=4, n_votes=4, n_train=4, steps=2, save_every=2,
                       sample_every=0, reward="random", advantage_modifier="std_filter", **kw)


def test_std_filter_zeroes_the_low_std_prompts_in_a_real_train_step(tiny_model, tmp_path, _one_thread):
    trainer = Trainer(small(tiny_model, tmp_path / "run", advantage_options={"std_filter": {"beta": 1.0, "warmup": 0}}),
                      tiny_model)
    seen = {}
    estimator, update = trainer.estimator, trainer.update

    def spy_estimator(r, v, **kw):
        seen["r"], seen["v"], seen["raw"] = r, v, estimator(r, v, **kw)
        return seen["raw"]

    def spy_update(batch, adv, keep, step):
        seen["final"] = adv
        return update(batch, adv, keep, step)

    trainer.estimator, trainer.update = spy_estimator, spy_update
    metrics = trainer.train_step(0).metrics
    std, enough = group_reward_std(seen["r"].double(), seen["v"])
    keep = std >= 1.0 * std[enough].mean()  # first step: the EMA is this step's mean std
    assert torch.equal(seen["final"].view(seen["raw"].shape), seen["raw"] * keep[:, None])
    assert seen["raw"][~keep].abs().sum() > 0 and keep.any(), "nothing zeroed or nothing kept: the test proves nothing"
    assert metrics["adv/std_filter/kept"] == pytest.approx(float(keep.double().mean()))


def test_std_filter_trains_logs_and_checkpoints_its_state(tiny_model, tmp_path, _one_thread):
    cfg = small(tiny_model, tmp_path / "run", advantage_options={"std_filter": {"beta": 1.0, "warmup": 1}})
    summary = train(cfg, progress=False)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert summary["steps"] == 2 and [r["step"] for r in rows] == [0, 1, 2]
    assert rows[1]["adv/std_filter/kept"] == 1.0  # warm-up step: nothing filtered
    assert 0.0 <= rows[2]["adv/std_filter/kept"] < 1.0 and rows[2]["adv/std_filter/ema"] > 0
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_000002" / "trainer_state.pt", weights_only=False)
    assert state["modifiers"]["std_filter"] == {"ema": pytest.approx(rows[2]["adv/std_filter/ema"]), "steps": 2}
    resumed = Trainer(cfg, tiny_model)
    resumed.load_checkpoint()
    (m,) = resumed.modifiers
    assert m.steps == 2 and m.ema == pytest.approx(rows[2]["adv/std_filter/ema"])
