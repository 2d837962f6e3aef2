import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, tiny_config
from urlvr.io import read_jsonl
from urlvr.trainer import Trainer, train

VOLATILE = ("time/",)


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


def test_tiny_run_changes_parameters_and_logs_finite_metrics(tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, tmp_path / "run", reward="majority_vote", kl_coef=0.01, entropy_coef=0.01)
    trainer = Trainer(cfg, tiny_model)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    metrics = trainer.train_step(0).metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    for key in ("reward/mean", "reward/zero_std_frac", "rollout/length_mean", "rollout/truncation_rate",
                "policy/entropy", "policy/self_certainty", "policy/kl_initial", "diag/majority_ratio",
                "loss/policy", "time/tokens_per_s", "oracle/accuracy", "oracle/label_accuracy"):
        assert key in metrics and math.isfinite(metrics[key]), key
    summary = train(cfg, progress=False)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert "val/avg@2" in rows[0] and "val/maj@2" in rows[-1]
    assert summary["steps"] == 4 and (tmp_path / "run" / "summary.json").exists()
    assert (tmp_path / "run" / "samples.jsonl").exists() and (tmp_path / "run" / "config.yaml").exists()


def test_micro_batches_give_the_same_update(tiny_model, tmp_path):
    params = []
    for micro in (0, 3):  # 0 = one batch of 16; 3 = six accumulated micro-batches (uneven last one)
        trainer = Trainer(tiny_config(tiny_model, tmp_path / f"m{micro}", micro_batch_size=micro), tiny_model)
        trainer.train_step(0)
        params.append([p.detach().clone() for p in trainer.model.parameters()])
    for a, b in zip(*params):
        assert torch.allclose(a, b, atol=1e-6)


def test_refuses_to_overwrite_a_run(tiny_model, tmp_path):
    from urlvr.errors import UrlvrError

    cfg = tiny_config(tiny_model, tmp_path / "run", steps=1)
    train(cfg, progress=False)
    with pytest.raises(UrlvrError, match="--resume"):
        train(cfg, progress=False)


def _cli(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "urlvr", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_resume_after_kill_equals_uninterrupted_run(tiny_model, tmp_path):
    common = [f"model={tiny_model}", "task_options={digits: 1, ops: '+'}", "train_problems=40", "val_problems=8",
              "prompts_per_step=4", "n_votes=4", "n_train=4", "max_new_tokens=8", "steps=8", "lr=1e-3",
              "val_every=3", "val_k=2", "save_every=2", "sample_every=4"]
    recipe = REPO / "recipes" / "testbed_majority_vote.yaml"
    full = _cli("train", str(recipe), *common, f"out_dir={tmp_path / 'full'}", "--quiet")
    assert full.wait(timeout=300) == 0, full.stderr.read()

    run = tmp_path / "killed"
    proc = _cli("train", str(recipe), *common, f"out_dir={run}", "--quiet")
    deadline = time.time() + 120
    while not (run / "checkpoints" / "latest").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = _cli("train", "--resume", str(run), "--quiet")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a = _stable(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    b = _stable(read_jsonl(run / "metrics.jsonl"))
    assert [r["step"] for r in b] == list(range(9))
    assert a == b


def test_a_scorer_reward_gets_the_policy_statistics_of_given_continuations(tiny_model, tmp_path):
    """A reward registered with needs_scorer scores continuations through Sampler.score inside a real run:
    rescoring a group's own completions gives back the rollout's log-probs (the policy has not moved yet)."""
    from urlvr.rewards import base

    seen = []

    @base.register_reward("_rescore", family="other", needs_scorer=True)
    def rescore(group, scorer=None, settings=None):
        scored = scorer.score([group.prompt] * len(group), [c.token_ids.tolist() for c in group.completions],
                              settings.temperature)
        seen.append(max(float((s.logprob - c.logprob).abs().max()) for s, c in zip(scored, group.completions)))
        return [float(s.logprob.sum()) for s in scored]

    try:
        cfg = tiny_config(tiny_model, tmp_path / "run", reward="_rescore", steps=1, val_problems=0, temperature=0.7)
        metrics = Trainer(cfg, tiny_model).train_step(0).metrics
    finally:
        del base._REGISTRY["_rescore"]
    assert len(seen) == cfg.prompts_per_step and max(seen) < 1e-4
    assert math.isfinite(metrics["reward/mean"]) and metrics["reward/mean"] < 0  # summed log-probs


def test_lora_trains_only_adapters_and_the_reference_is_the_base(tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, tmp_path / "run", reward="random", lora_rank=4, lora_targets="q_proj,v_proj",
                      kl_coef=0.1, val_problems=0)
    trainer = Trainer(cfg, tiny_model)
    assert trainer.ref is None  # no second copy of the model
    base = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if "lora_" not in n}
    adapters = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if "lora_B" in n}
    metrics = trainer.train_step(0).metrics
    assert adapters and all(not torch.equal(p, adapters[n]) for n, p in trainer.policy.named_parameters() if n in adapters)
    assert all(torch.equal(p, base[n]) for n, p in trainer.policy.named_parameters() if n in base)
    assert metrics["policy/kl_initial"] < 1e-6  # the first rollout is the base model itself (cache vs full forward)
    assert trainer.train_step(1).metrics["policy/kl_initial"] > 0  # adapters on vs off now differ


def test_gradient_checkpointing_gives_the_same_update(tiny_model, tmp_path):
    params = []
    for ckpt in (False, True):
        trainer = Trainer(tiny_config(tiny_model, tmp_path / f"g{ckpt}", gradient_checkpointing=ckpt), tiny_model)
        trainer.train_step(0)
        params.append([p.detach().clone() for p in trainer.model.parameters()])
    for a, b in zip(*params):
        assert torch.allclose(a, b, atol=1e-6)
