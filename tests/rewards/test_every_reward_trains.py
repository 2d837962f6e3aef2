"""Every registered reward: documented, has a recipe, and trains end to end on the tiny testbed model.

Also through the real trainer: a raising reward is isolated (``reward/failed``) and then stops the run
with a clear error, and the SEED-GRPO modifier scales each group's advantages by its semantic entropy.
"""

import inspect
import math
import re
from pathlib import Path

import pytest
import torch

from conftest import REPO, tiny_config
from rewards._groups import one_thread  # noqa: F401  (fixture)
from urlvr.advantages import semantic_entropy
from urlvr.errors import UrlvrError
from urlvr.io import read_jsonl
from urlvr.rewards import get_reward, reward_names
from urlvr.rewards.base import RewardSpec
from urlvr.answers import cluster_by_key
from urlvr.trainer import Trainer, train

NOT_ON_THE_TESTBED = {"code_tests": "no testbed task carries tests (Problem.data['tests']); "
                                    "test_external.py scores a hand-built group through the sandbox"}
TASKS = {"verifier": {"task": "linear", "task_options": {}}}  # arithmetic has no verifier
OPTIONS = {"mix": {"rewards": {"majority_vote": 1.0, "self_certainty": 0.1}},
           "semi_supervised": {"alpha": 0.5}}


# ---- docs/rewards.md and the recipes are checked against the registry ------------------------------

def defaults_cell(spec: RewardSpec) -> str:
    """The 'defaults' column: every option and its default (long texts as …)."""
    params = list(inspect.signature(spec.fn).parameters.values())[1:]
    parts = [f"{p.name}=…" if isinstance(p.default, str) and "\n" in p.default else f"{p.name}={p.default!r}"
             for p in params if p.name not in ("sampler", "scorer", "initial_scorer", "settings")]
    return ", ".join(parts) or "—"


def doc_rows() -> dict[str, list[str]]:
    rows = {}
    text = (REPO / "docs" / "rewards.md").read_text(encoding="utf-8").split("## Advantage modifiers", 1)[0]
    for line in text.splitlines():  # the rewards table only: the modifiers' table follows it
        m = re.match(r"\| `([a-z_]+)` \|", line)
        if m:
            rows[m[1]] = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    return rows


@pytest.mark.parametrize("name", reward_names())
def test_reward_is_documented_as_registered(name):
    spec, row = get_reward(name), doc_rows().get(name)
    assert row is not None, f"{name} is missing from docs/rewards.md"
    yes = lambda flag: "yes" if flag else "no"  # noqa: E731
    assert row[1] == spec.family
    assert row[3:7] == [yes(spec.needs_logits), yes(spec.needs_group), yes(spec.needs_gold), yes(spec.needs_policy)]
    assert row[7] == spec.source
    assert row[8] == f"`{defaults_cell(spec)}`"


def test_docs_list_no_unregistered_reward_and_every_reward_has_a_recipe():
    assert set(doc_rows()) == set(reward_names())
    recipes = {p.stem.removeprefix("testbed_") for p in Path(REPO, "recipes").glob("testbed_*.yaml")}
    assert set(reward_names()) - recipes == set(NOT_ON_THE_TESTBED)


# ---- end to end -----------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def small(model, out, **kw):
    return tiny_config(model, out, val_problems=0, prompts_per_step=2, n_votes=4, n_train=4, steps=2,
                       save_every=2, sample_every=2, **kw)


@pytest.mark.parametrize("name", reward_names())
def test_every_reward_trains_two_steps(tiny_model, tmp_path, name):
    if name in NOT_ON_THE_TESTBED:
        pytest.skip(NOT_ON_THE_TESTBED[name])
    cfg = small(tiny_model, tmp_path / "run", reward=name, reward_options=OPTIONS.get(name, {}), **TASKS.get(name, {}))
    summary = train(cfg, progress=False)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert summary["steps"] == 2 and [r["step"] for r in rows] == [0, 1, 2]
    for row in rows[1:]:
        assert row["reward/failed"] < 1 and row["reward/errors"] == 0, row
        assert math.isfinite(row["reward/mean"]) and math.isfinite(row["loss/policy"])


# ---- failure isolation through the real trainer -----------------------------------------------------

def test_a_raising_reward_is_isolated_then_stops_the_run(tiny_model, tmp_path):
    trainer = Trainer(small(tiny_model, tmp_path / "run", max_failed_steps=2), tiny_model)
    calls = []

    def flaky(group):  # the first group of each step raises
        calls.append(group.problem.id)
        if len(calls) % 2 == 1:
            raise RuntimeError("grader crashed")
        return [1.0] * len(group)

    trainer.reward = RewardSpec("flaky", flaky)
    metrics = trainer.train_step(0).metrics
    assert metrics["reward/failed"] == 0.5 and metrics["reward/errors"] == 1  # one of two groups

    def broken(group):
        raise RuntimeError("grader crashed")

    trainer.reward = RewardSpec("broken", broken)
    metrics = trainer.train_step(1).metrics
    assert metrics["reward/failed"] == 1.0
    with pytest.raises(UrlvrError, match=r"failed on every completion for 2 steps.*RuntimeError: grader crashed"):
        trainer.train_step(2)


# ---- SEED-GRPO through the trainer ---------------------------------------------------------------------

def test_seed_grpo_scales_advantages_by_group_semantic_entropy(tiny_model, tmp_path):
    alpha = 0.5
    trainer = Trainer(small(tiny_model, tmp_path / "run", reward="random", advantage_modifier="seed_grpo",
                            seed_grpo_alpha=alpha), tiny_model)
    seen = {}
    estimator, update = trainer.estimator, trainer.update

    def spy_estimator(*args, **kw):
        seen["raw"] = estimator(*args, **kw)
        return seen["raw"]

    def spy_update(batch, adv, keep, step):
        seen["final"] = adv
        return update(batch, adv, keep, step)

    trainer.estimator, trainer.update = spy_estimator, spy_update
    result = trainer.train_step(0)
    batch, examples = result.batch, result.examples
    n = trainer.cfg.n_votes
    answers = [trainer.task.extract(t) for t in batch.texts]
    canonical = trainer.task.canonical
    clusters = [cluster_by_key(answers[g * n:(g + 1) * n], canonical) for g in range(len(examples))]
    entropy = torch.tensor([semantic_entropy(ids) for ids in clusters])
    scale = 1 - alpha * entropy / math.log(n)  # (G,)
    assert torch.allclose(seen["final"].view(len(examples), n), seen["raw"] * scale[:, None])
    assert seen["raw"].abs().sum() > 0 and (scale < 1).any(), "nothing to scale: the test would prove nothing"
