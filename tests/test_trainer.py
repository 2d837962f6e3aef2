import json
import math
from collections import Counter
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


@pytest.mark.parametrize("kl_coef, kl_every, measured", [
    (0.0, 3, [1, 4]),        # the reference forward on steps 1, 1 + 3 only
    (0.0, 0, []),            # never: and a full fine-tune keeps no frozen copy
    (0.01, 0, [1, 2, 3, 4]),  # a KL term needs it every step
])
def test_the_reference_forward_runs_only_when_needed(tiny_model, tmp_path, kl_coef, kl_every, measured):
    cfg = tiny_config(tiny_model, tmp_path / "run", kl_coef=kl_coef, kl_every=kl_every, val_problems=0, save_every=0)
    trainer = Trainer(cfg, tiny_model)
    assert (trainer.ref is None) == (not measured)
    rows = [trainer.train_step(i).metrics for i in range(4)]
    assert [r["step"] for r in rows if "policy/kl_initial" in r] == measured
    assert [r["step"] for r in rows if "loss/kl" in r] == measured
    assert all(math.isfinite(r["policy/kl_initial"]) and r["policy/kl_initial"] >= 0 for r in rows if r["step"] in measured)


def test_kl_every_does_not_change_the_training(tiny_model, tmp_path):
    params = []
    for every in (1, 0):
        trainer = Trainer(tiny_config(tiny_model, tmp_path / f"k{every}", kl_every=every, val_problems=0), tiny_model)
        for i in range(2):
            trainer.train_step(i)
        params.append([p.detach().clone() for p in trainer.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params))


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


# ---- resume never starts over by accident --------------------------------------------------------------

RESUMABLE = ["task_options={digits: 1, ops: '+'}", "train_problems=40", "val_problems=8", "prompts_per_step=4",
             "n_votes=4", "n_train=4", "max_new_tokens=8", "lr=1e-3", "val_every=2", "val_k=2", "save_every=2",
             "sample_every=1"]


def _run(*args):
    proc = _cli("train", *args, "--quiet")
    out, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _start(tiny_model, run, steps):
    rc, err = _run(str(REPO / "recipes" / "testbed_majority_vote.yaml"), f"model={tiny_model}", *RESUMABLE,
                   f"steps={steps}", f"out_dir={run}")
    assert rc == 0, err


@pytest.fixture(scope="module")
def six_steps(tiny_model, tmp_path_factory):
    """An uninterrupted 6-step run: what every resumed run below must reproduce."""
    run = tmp_path_factory.mktemp("resume") / "full"
    _start(tiny_model, run, 6)
    return _stable(read_jsonl(run / "metrics.jsonl"))


def _break(folder, how):
    if how == "truncated":
        (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])
    elif how == "nan":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder)
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        model.save_pretrained(folder)
    elif how == "no latest":
        (folder.parent / "latest").unlink()


@pytest.mark.parametrize("how", ["truncated", "nan", "no latest"])
def test_resume_falls_back_to_the_newest_good_checkpoint(tiny_model, tmp_path, six_steps, how):
    import shutil

    run = tmp_path / "run"
    _start(tiny_model, run, 2)
    shutil.copytree(run / "checkpoints" / "step_000002", tmp_path / "keep")
    rc, err = _run("--resume", str(run), "steps=4")  # writes step_000004 and drops step_000002
    assert rc == 0, err
    shutil.copytree(tmp_path / "keep", run / "checkpoints" / "step_000002")
    _break(run / "checkpoints" / "step_000004", how)
    if how == "truncated":  # step 4 went bad once before: both bad copies are kept
        (run / "checkpoints" / "unusable-step_000004").mkdir()
    rc, err = _run("--resume", str(run), "steps=6")
    assert rc == 0, err
    expected = "skipped step_000004" if how != "no latest" else "continuing from step_000004"
    assert expected in err and "Traceback" not in err, err
    assert (run / "checkpoints" / "unusable-step_000004").is_dir() == (how != "no latest")  # kept, never deleted
    assert (run / "checkpoints" / "unusable-step_000004.2").is_dir() == (how == "truncated")
    assert _stable(read_jsonl(run / "metrics.jsonl")) == six_steps
    samples = Counter(r["step"] for r in read_jsonl(run / "samples.jsonl"))
    assert samples == {s: 16 for s in range(1, 7)}  # 4 problems x 4 completions per step, each step once


def test_resume_before_any_checkpoint_duplicates_nothing_and_cleans_stale_folders(tiny_model, tmp_path, six_steps):
    run = tmp_path / "run"
    rc, err = _run(str(REPO / "recipes" / "testbed_majority_vote.yaml"), f"model={tiny_model}", *RESUMABLE,
                   "steps=6", "save_every=0", f"out_dir={run}")  # no checkpoint at all
    assert rc == 0, err
    (run / "checkpoints" / ".tmp-step_000002.abc").mkdir(parents=True)  # what a save killed half-way leaves
    rc, err = _run("--resume", str(run), "save_every=2")
    assert rc == 0, err
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert _stable(read_jsonl(run / "metrics.jsonl")) == six_steps  # each step once, as uninterrupted
    assert Counter(r["step"] for r in read_jsonl(run / "samples.jsonl")) == {s: 16 for s in range(1, 7)}


def test_non_finite_updates_are_skipped_then_stop_the_run(tiny_model, tmp_path):
    run = tmp_path / "run"
    rc, err = _run(str(REPO / "recipes" / "testbed_majority_vote.yaml"), f"model={tiny_model}", *RESUMABLE,
                   "steps=20", "lr=1e30", "reward=random", "reward_options={}", "val_problems=0", f"out_dir={run}")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "3 steps in a row had a non-finite loss or gradient norm" in lines[0], err
    rows = read_jsonl(run / "metrics.jsonl")
    skipped = [r["update/skipped_nonfinite"] for r in rows if "update/skipped_nonfinite" in r]
    assert skipped[-2:] == [1.0, 1.0] and len(skipped) < 20  # logged: the two before the step that stops the run


def test_written_files_respect_the_umask(tiny_model, tmp_path):
    """Atomic writes (temp file or folder, then rename) leave ordinary permissions, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        train(tiny_config(tiny_model, run, steps=1, save_every=1, val_problems=0), progress=False)
    finally:
        os.umask(old)
    for path in (run / "metrics.jsonl", run / "summary.json", run / "checkpoints" / "step_000001" / "model.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert (run / "checkpoints" / "step_000001").stat().st_mode & 0o777 == 0o755


def test_spine_trains_on_the_forking_tokens_only(tiny_model, tmp_path):
    """rho = 1 is the plain loss exactly; rho = 0.2 keeps a fifth of the tokens and changes the update."""
    kw = dict(reward="majority_vote", steps=2, val_problems=0, save_every=0, sample_every=0)
    plain = train(tiny_config(tiny_model, tmp_path / "plain", **kw), progress=False)
    everything = train(tiny_config(tiny_model, tmp_path / "all", spine_rho=1.0, **kw), progress=False)
    spine = train(tiny_config(tiny_model, tmp_path / "spine", spine_rho=0.2, spine_band_coef=0.5, **kw),
                  progress=False)
    rows = {name: read_jsonl(tmp_path / name / "metrics.jsonl")[1:] for name in ("plain", "all", "spine")}
    assert [r["loss/policy"] for r in rows["plain"]] == [r["loss/policy"] for r in rows["all"]]
    assert all(r["policy/fork_share"] == 1.0 for r in rows["all"])
    for r in rows["spine"]:
        assert 0.2 <= r["policy/fork_share"] < 0.3 and math.isfinite(r["loss/band"])
    assert rows["spine"][1]["policy/entropy"] != rows["plain"][1]["policy/entropy"]
    assert plain["steps"] == everything["steps"] == spine["steps"] == 2
