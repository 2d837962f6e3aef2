"""urlvr rewards inside TRL's GRPOTrainer: regrouping, gold isolation, statistics, 1- and 2-process runs."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl", reason="TRL is the optional 'trl' extra: pip install 'urlvr[trl]'")

from conftest import REPO
from test_types import strings
from urlvr.errors import UrlvrError
from urlvr.integrations.trl import ROLLOUT_COLUMN, URLVRGRPOTrainer, regroup, task_dataset, urlvr_reward_func
from urlvr.rewards import Group, LabeledGroup, RewardSpec
from urlvr.rewards import base as reward_base
from urlvr.tasks import get_task

TASK = get_task("arithmetic", digits=1, ops="+")
GOLD = "gold-7f3a"  # a sentinel no completion or problem contains


def _spy(monkeypatch, name, needs_gold=False):
    """Register a reward under ``name`` (undone after the test) that records the groups it gets."""
    seen = []

    def spy(group):
        seen.append(group)
        return [float(i) for i in range(len(group))]

    monkeypatch.setitem(reward_base._REGISTRY, name, RewardSpec(name, spy, needs_group=True, needs_gold=needs_gold))
    return seen


def _batch(answers_by_prompt):
    """TRL's reward-call arguments: each prompt's completions next to each other, one column per dataset field."""
    prompts, completions, ids, answers = [], [], [], []
    for pid, answers_of in answers_by_prompt.items():
        for a in answers_of:
            prompts.append(f"{pid}\n")
            completions.append("no answer" if a is None else f"\\boxed{{{a}}}")
            ids.append(pid)
            answers.append(GOLD)
    return prompts, completions, dict(id=ids, question=ids, answer=answers)


# ---- grouping --------------------------------------------------------------------------------------
def test_regroup_cuts_runs_into_groups_of_the_group_size():
    assert regroup(["a", "a", "b", "b", "b", "b"], group_size=2) == [range(0, 2), range(2, 4), range(4, 6)]
    assert regroup(["a", "b", "a"]) == [range(0, 1), range(1, 2), range(2, 3)]
    with pytest.raises(UrlvrError, match="not a multiple"):
        regroup(["a", "a", "a", "b"], group_size=2)
    with pytest.raises(UrlvrError, match="unequal sizes"):
        regroup(["a", "a", "a", "a", "b", "b"])


def test_adapter_scores_whole_groups_and_maps_scores_back_to_rows():
    prompts, completions, cols = _batch({"1+1": ["2", "2", "3"], "2+3": ["5", None, "5"]})
    reward = urlvr_reward_func("majority_vote", TASK, num_generations=3)
    assert reward.__name__ == "majority_vote"
    assert reward(prompts, completions, **cols) == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_label_free_rewards_get_no_gold_and_gold_rewards_get_it(monkeypatch):
    prompts, completions, cols = _batch({"1+1": ["2", "3"], "4+4": ["8", "8"]})
    free, gold = _spy(monkeypatch, "spy_free"), _spy(monkeypatch, "spy_gold", needs_gold=True)
    urlvr_reward_func("spy_free", TASK, num_generations=2)(prompts, completions, **cols)
    urlvr_reward_func("spy_gold", TASK, num_generations=2)(prompts, completions, **cols)
    assert [type(g) for g in free] == [Group, Group] and [type(g) for g in gold] == [LabeledGroup, LabeledGroup]
    assert all(GOLD not in set(strings(g)) for g in free)
    assert [g.gold for g in gold] == [GOLD, GOLD]
    assert [(g.problem.id, g.answers) for g in free] == [("1+1", ["2", "3"]), ("4+4", ["8", "8"])]


def test_bad_inputs_fail_clearly():
    with pytest.raises(UrlvrError, match="no option 'emtpy'"):
        urlvr_reward_func("majority_vote", TASK, emtpy="drop")
    prompts, completions, cols = _batch({"1+1": ["2", "3"]})
    del cols["answer"]
    with pytest.raises(UrlvrError, match="no 'answer' column"):
        urlvr_reward_func("gold", TASK)(prompts, completions, **cols)
    with pytest.raises(UrlvrError, match="URLVRGRPOTrainer"):
        urlvr_reward_func("token_entropy", TASK)(prompts, completions, **cols)


def test_diagnostics_go_to_trls_log_metric():
    prompts, completions, cols = _batch({"1+1": ["2", "2", "3", None]})
    logged = {}
    urlvr_reward_func("majority_vote", TASK)(prompts, completions, log_metric=logged.__setitem__, **cols)
    assert logged["diag/majority_ratio"] == 0.5 and logged["reward/mean"] == 0.5
    assert logged["oracle/accuracy"] == 0.0  # monitoring only: every answer differs from the sentinel gold
    assert "policy/entropy" not in logged  # no per-token statistics were computed


# ---- GRPOTrainer runs ------------------------------------------------------------------------------
def _train(tiny_model, tmp_path, reward_funcs, **kw):
    from trl import GRPOConfig

    from urlvr.loading import load_model

    model, tok = load_model(tiny_model, "cpu", "float32")
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=12, learning_rate=1e-3, report_to="none", use_cpu=True,
                      logging_steps=1, save_strategy="no", seed=0, **kw)
    trainer = URLVRGRPOTrainer(model=model, args=args, reward_funcs=reward_funcs, processing_class=tok,
                               train_dataset=task_dataset(TASK, "train", 16))
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return [h for h in trainer.state.log_history if "loss" in h], changed


def test_grpo_trainer_with_a_group_reward(tiny_model, tmp_path):
    logs, changed = _train(tiny_model, tmp_path, [urlvr_reward_func("majority_vote", TASK, empty="drop")])
    assert len(logs) == 2
    for h in logs:
        for key in ("rewards/majority_vote/mean", "reward/mean", "diag/majority_ratio", "diag/cluster_entropy",
                    "rollout/truncation_rate", "oracle/label_accuracy"):
            assert math.isfinite(h[key]), key
        assert h["reward/mean"] == pytest.approx(h["rewards/majority_vote/mean"])  # TRL got the scores urlvr logged
        assert "policy/entropy" not in h  # no logit reward: no extra forward
    # the barely trained tiny model may state no answer in a whole step (all rewards 0, no update), so
    # parameters must change only when some group's rewards differed
    assert changed == any(h["frac_reward_zero_std"] < 1 for h in logs)


def test_grpo_trainer_with_a_logit_reward_matches_trls_own_entropy(tiny_model, tmp_path):
    logs, changed = _train(tiny_model, tmp_path, [urlvr_reward_func("token_entropy", TASK)], temperature=0.8)
    assert changed
    for h in logs:
        assert math.isfinite(h["rewards/token_entropy/mean"]) and h["policy/self_certainty"] >= 0
    # step 1 trains on-policy with one unpadded prompt per batch: the extra forward's token entropy must equal the
    # entropy TRL computes in its loss forward (same tokens, same alignment, same temperature)
    assert logs[0]["policy/entropy"] == pytest.approx(logs[0]["entropy"], abs=1e-4)


def test_two_processes_split_a_group_and_the_reward_still_sees_it_whole(tiny_model, tmp_path):
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    script = Path(__file__).with_name("_trl_two_processes.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           tiny_model, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    read = lambda name: [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]  # noqa: E731
    local = read("local.0.jsonl") + read("local.1.jsonl")
    assert len(local) == 4 and {r["rows"] for r in local} == {2}  # each process holds half of each group
    groups = read("groups.0.jsonl") + (read("groups.1.jsonl") if (tmp_path / "groups.1.jsonl").exists() else [])
    assert len(groups) == 2 and {g["size"] for g in groups} == {4}  # one whole group per step, scored once
    logs = [h for h in json.loads((tmp_path / "log_history.json").read_text()) if "loss" in h]
    # record_group scores i/4 by position: 0.375 only if all four completions were in one group
    assert [h["rewards/record_group/mean"] for h in logs] == [0.375, 0.375]
    assert all(math.isfinite(h["policy/entropy"]) for h in logs)


def test_a_scorer_reward_needs_the_urlvr_trainer():
    """Under a plain GRPOTrainer nobody hands a needs_scorer reward the policy: one clear line, no silent None."""
    from urlvr.rewards import base

    @base.register_reward("_trl_rescore", family="other", needs_scorer=True)
    def rescore(group, scorer=None, settings=None):
        return [0.0] * len(group)

    try:
        f = urlvr_reward_func("_trl_rescore", TASK)
        with pytest.raises(UrlvrError, match="URLVRGRPOTrainer, which hands it a scorer"):
            f(["1+1\n"] * 2, ["\\boxed{2}", "\\boxed{3}"], completion_ids=[[1], [2]])
    finally:
        del base._REGISTRY["_trl_rescore"]


def test_urlvr_trainer_hands_a_scorer_reward_the_policy(tiny_model, tmp_path):
    """URLVRGRPOTrainer gives a needs_scorer reward a scorer over TRL's policy: it scores the completions' own
    tokens, and their log-probs under that scorer agree with the extra statistics forward of the rollout."""
    from urlvr.rewards import base

    gaps = []

    @base.register_reward("_trl_rescore", family="other", needs_scorer=True, needs_logits=True)
    def rescore(group, scorer=None, settings=None):
        scored = scorer.score([group.prompt] * len(group), [c.token_ids.tolist() for c in group.completions],
                              settings.temperature)
        gaps.extend(float((s.logprob - c.logprob).abs().max()) for s, c in zip(scored, group.completions))
        return [float(s.logprob.mean()) for s in scored]

    try:
        logs, _ = _train(tiny_model, tmp_path, [urlvr_reward_func("_trl_rescore", TASK)], temperature=0.8)
    finally:
        del base._REGISTRY["_trl_rescore"]
    assert len(logs) == 2 and all(math.isfinite(h["rewards/_trl_rescore/mean"]) for h in logs)
    assert gaps and max(gaps) < 1e-4


def test_task_dataset_renders_prompts_as_urlvr_train_does(smollm2):
    """Given the tokenizer, TRL's prompt column is urlvr's Renderer output (chat template, system prompt)."""
    from urlvr.loading import load_model
    from urlvr.prompts import Renderer

    _, tok = load_model(smollm2, device="cpu")
    data = task_dataset(TASK, "train", 3, tokenizer=tok, system_prompt="Be exact.")
    render = Renderer(TASK.prompt, tok, "auto", "Be exact.")
    want = [render(e.problem) for e in TASK.examples("train", 3)]
    assert data["prompt"] == want and all(p.startswith("<|im_start|>system\nBe exact.") for p in want)
    plain = task_dataset(TASK, "train", 3, tokenizer=tok, chat="off")
    assert plain["prompt"] == [TASK.prompt(e.problem) for e in TASK.examples("train", 3)]
