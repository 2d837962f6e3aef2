"""The GRPO trainer: generate → score → advantage → update → log, top to bottom.

One step: pick ``prompts_per_step`` problems, sample ``n_votes`` completions each (the rollout keeps the
old policy's per-token statistics), hand each *whole group* to the reward (label-free rewards get a
:class:`~urlvr.rewards.base.Group` without gold; only gold-using rewards get a ``LabeledGroup``), compute
group advantages on the first ``n_train`` completions, run ``updates_per_step`` PPO-clip mini-batch
updates (gradient accumulation over micro-batches), log label-free and oracle metrics, validate,
checkpoint. Every random choice is a function of ``(seed, step)``, so a resumed run continues exactly
as an uninterrupted one would.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from urlvr.advantages import get_advantage_estimator, get_advantage_modifier, semantic_entropy
from urlvr.config import TrainConfig
from urlvr.distributed import Dist
from urlvr.errors import UrlvrError
from urlvr.evaluation import sample_problems, summarize
from urlvr.files import append_jsonl, atomic_write, read_jsonl, write_json, write_text
from urlvr.loss import aggregate, kl_k3, loss_normaliser, policy_loss
from urlvr.metrics.health import group_clusters, health_metrics
from urlvr.metrics.oracle import oracle_metrics
from urlvr.rewards.base import (Completion, Group, LabeledGroup, RewardOutput, call_reward, check_options,
                               get_reward)
from urlvr.rollout import HFSampler, RolloutBatch, SamplingSettings
from urlvr.stats import sampled_logprobs, token_entropy

__all__ = ["train", "Trainer", "completion_logprobs"]


# ---------------------------------------------------------------------------------------------------
# pure-ish helpers: building groups, scoring, the policy forward
# ---------------------------------------------------------------------------------------------------
def make_groups(task, examples, batch: RolloutBatch, n: int, equivalence: str, vocab_size: int,
                eos_id: int | None) -> tuple[list[Group], list[LabeledGroup]]:
    """Split a rollout of len(examples) * n completions into label-free groups and their labelled twins."""
    groups, labeled = [], []
    for j, ex in enumerate(examples):
        comps = []
        for i in range(j * n, (j + 1) * n):
            m = batch.mask[i]
            ids = batch.tokens[i][m]
            comps.append(Completion(
                text=batch.texts[i], answer=task.extract(batch.texts[i]), token_ids=ids,
                logprob=batch.logprob[i][m], entropy=batch.entropy[i][m],
                self_certainty=batch.self_certainty[i][m], top2_gap=batch.top2_gap[i][m],
                truncated=bool(batch.truncated[i]), ends_with_eos=bool(len(ids) and ids[-1] == eos_id),
            ))
        kw = dict(problem=ex.problem, prompt=task.prompt(ex.problem), completions=tuple(comps),
                  canonical=task.canonical, verify=task.verify, equivalence=equivalence,
                  vocab_size=vocab_size, eos_token_id=eos_id)
        groups.append(Group(**kw))
        labeled.append(LabeledGroup(**kw, gold=ex.answer, check=task.check))
    return groups, labeled


def score_groups(spec, options: dict, groups: list[Group], labeled: list[LabeledGroup]):
    """Call the reward on every whole group. Returns rewards (G, N), valid (G, N), components, failures.

    A reward that raises for a group yields None for all of that group's completions (excluded from the
    loss, counted in reward/failed), never a silent 0.
    """
    G, N = len(groups), len(groups[0])
    rewards = torch.zeros(G, N)
    valid = torch.zeros(G, N, dtype=torch.bool)
    components: dict[str, list[float]] = {}
    errors: list[str] = []
    for g, group in enumerate(labeled if spec.needs_gold else groups):
        try:
            out = call_reward(spec, group, options)
        except UrlvrError:
            raise
        except Exception as e:  # an environment fault, not a verdict on the completion
            errors.append(f"{type(e).__name__}: {e}")
            out = RewardOutput([None] * N)
        for i, s in enumerate(out.scores):
            if s is not None and math.isfinite(s):
                rewards[g, i], valid[g, i] = s, True
        for name, vals in out.components.items():
            components.setdefault(name, []).extend(v for v in vals if v is not None)
    return rewards, valid, components, errors


def policy_inputs(batch: RolloutBatch, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompts followed by completions: (ids (B, P+T), attention (B, P+T), P)."""
    B, T = batch.tokens.shape
    P = max(len(p) for p in batch.prompt_ids)
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    att = torch.zeros((B, P + T), dtype=torch.long)
    for i, p in enumerate(batch.prompt_ids):
        ids[i, P - len(p) : P] = torch.tensor(p)
        att[i, P - len(p) : P] = 1
    ids[:, P:] = batch.tokens
    att[:, P:] = batch.mask.long()
    return ids, att, P


def completion_logprobs(model, ids: torch.Tensor, att: torch.Tensor, P: int, tokens: torch.Tensor,
                        temperature: float, with_entropy: bool = False):
    """Log-probs (B, T) of the completion tokens under ``model`` (and entropies if asked), one forward."""
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    T = tokens.shape[1]
    # only the last T+1 positions go through the LM head: what matters for real vocabularies and prompts
    logits = model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=T + 1).logits  # (B, T+1, V)
    z = logits[:, :-1, :].float()  # (B, T, V): the logits that produced each completion token
    lp = sampled_logprobs(z, tokens, temperature)  # (B, T)
    return (lp, token_entropy(z, temperature)) if with_entropy else (lp, None)


# ---------------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, on_step: Callable[[dict], None] | None = None):
        from urlvr.loading import load_model
        from urlvr.tasks import get_task
        from urlvr.testbed.priors import resolve_model

        self.cfg, self.run_dir, self.on_step = cfg, Path(run_dir), on_step
        self.task = get_task(cfg.task, **cfg.task_options)
        self.reward = get_reward(cfg.reward)
        self.reward_options = dict(cfg.reward_options)
        self.estimator = get_advantage_estimator(cfg.advantage)
        self.modifier = get_advantage_modifier(cfg.advantage_modifier) if cfg.advantage_modifier else None
        self.model_path = resolve_model(cfg.model, cfg.task, cfg.task_options)  # a testbed prior fits the task
        self.model, self.tok = load_model(self.model_path, cfg.device, "float32")
        self.device = next(self.model.parameters()).device
        self.amp = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                    and cfg.dtype in ("auto", "bf16", "bfloat16") else nullcontext())
        self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.dist = Dist(self.device)
        if cfg.prompts_per_step % self.dist.world:
            raise UrlvrError(f"prompts_per_step ({cfg.prompts_per_step}) is not divisible by the number of processes "
                             f"({self.dist.world}); groups are never split across processes, so choose a multiple")
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.model, self.opt = self.dist.prepare(self.model, self.opt)
        self.policy = self.dist.unwrap(self.model)  # the bare model: sampling, saving
        self.sampler = HFSampler(self.policy, self.tok)
        self.settings = SamplingSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
        check_options(self.reward, self.reward_options)
        if self.reward.needs_policy:
            self.reward_options.update(sampler=self.sampler, settings=self.settings)
        self.train_set = self.task.examples(cfg.train_split, cfg.train_problems, seed=cfg.seed)
        self.val_set = (self.task.examples("validation", cfg.val_problems, seed=cfg.seed + 1)
                        if cfg.val_problems else [])
        self.step = 0
        self.failed_streak = 0
        from urlvr.diagnostics import CollapseDetector  # the watcher: label-free signals only

        self.collapse = CollapseDetector.from_config(cfg)

    # ---- one step, top to bottom -------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, Any]:
        cfg, t0 = self.cfg, time.perf_counter()
        rng = random.Random(f"{cfg.seed}/problems/{step}")
        examples = rng.sample(self.train_set, min(cfg.prompts_per_step, len(self.train_set)))
        examples = self.dist.shard(examples)  # this process's whole groups
        # 1. generate: n_votes completions per prompt, with the old policy's per-token statistics
        prompts = [self.task.prompt(e.problem) for e in examples for _ in range(cfg.n_votes)]
        self.model.eval()
        with self.amp:
            seeds = [_seed(cfg.seed, f"rollout/{e.problem.id}", step) for e in examples for _ in range(cfg.n_votes)]
            batch = self.sampler.generate(prompts, self.settings, seed=seeds)
        t_gen = time.perf_counter() - t0
        # 2. score: whole groups to the reward; gold only to gold rewards
        groups, labeled = make_groups(self.task, examples, batch, cfg.n_votes, cfg.equivalence,
                                      self.policy.config.vocab_size, self.tok.eos_token_id)
        rewards, valid, components, errors = score_groups(self.reward, self.reward_options, groups, labeled)
        # a step with errors and no score at all counts towards stopping; a reward that abstains (None
        # without an error, e.g. SRT below its threshold) does not
        all_failed = not self.dist.sum(float(valid.sum())) and self.dist.sum(float(len(errors)))
        self.failed_streak = self.failed_streak + 1 if all_failed else 0
        if self.failed_streak >= cfg.max_failed_steps:
            raise UrlvrError(f"reward {cfg.reward!r} failed on every completion for {self.failed_streak} steps "
                             f"in a row (last error: {errors[-1] if errors else 'no valid score'}); fix the reward")
        # 3. advantages on the first n_train completions of each group
        r_train, v_train = rewards[:, : cfg.n_train], valid[:, : cfg.n_train]  # (G, n_train)
        adv = self.estimator(r_train, v_train, eps=cfg.advantage_eps)  # (G, n_train)
        clusters = group_clusters(groups)
        if self.modifier is not None:
            ent = [semantic_entropy(ids[: cfg.n_train]) for ids in clusters]
            adv = self.modifier(adv, ent, cfg.n_train, alpha=cfg.seed_grpo_alpha)
        train_idx = [g * cfg.n_votes + i for g in range(len(examples)) for i in range(cfg.n_train)]
        train_batch = batch.select(train_idx)
        keep = v_train.reshape(-1)  # failed rewards leave the loss
        # 4. update
        self.model.train()
        upd = self.update(train_batch, adv.reshape(-1), keep)
        t_step = time.perf_counter() - t0
        # 5. log: label-free health, then oracle metrics for monitoring only
        metrics = {"step": step + 1}
        metrics.update(health_metrics(groups, rewards, valid, clusters))
        metrics.update(upd)
        metrics.update({f"reward/{k}": sum(v) / len(v) for k, v in components.items() if v})
        correct = [[lg.check(c.answer, lg.gold) for c in lg.completions] for lg in labeled if lg.gold is not None]
        if len(correct) == len(labeled):
            metrics.update(oracle_metrics(correct, clusters, rewards, valid))
        n_tok = int(batch.mask.sum())
        metrics.update({"time/step_s": t_step, "time/generate_s": t_gen, "time/tokens_per_s": n_tok / t_step,
                        "reward/errors": len(errors)})
        return self.dist.mean_metrics(metrics, len(examples)), batch, examples

    def update(self, batch: RolloutBatch, adv: torch.Tensor, keep: torch.Tensor) -> dict[str, float]:
        """``updates_per_step`` PPO-clip mini-batch updates with gradient accumulation."""
        cfg = self.cfg
        ids, att, P = policy_inputs(batch, self.tok.pad_token_id)
        mask = batch.mask & keep[:, None]  # (B, T)
        old_lp = batch.logprob  # (B, T) from the rollout: the old policy
        B = len(batch)
        order = torch.randperm(B, generator=torch.Generator().manual_seed(_seed(cfg.seed, "perm", self.step)))
        mb = B // cfg.updates_per_step
        micro = cfg.micro_batch_size or mb
        stats: dict[str, float] = {}
        max_tok = cfg.max_new_tokens
        with torch.no_grad(), self.amp:  # the initial model's log-probs: KL penalty and policy/kl_initial
            ref_lp = torch.cat([
                completion_logprobs(self.ref, ids[i : i + micro].to(self.device), att[i : i + micro].to(self.device),
                                    P, batch.tokens[i : i + micro].to(self.device), cfg.temperature)[0].cpu()
                for i in range(0, B, micro)])  # (B, T)
        for u in range(cfg.updates_per_step):
            idx = order[u * mb : (u + 1) * mb]
            # normaliser of the *global* mini-batch; local losses x world undo the engine's gradient mean
            norm = self.dist.sum(loss_normaliser(mask[idx], cfg.loss_agg, max_tok)) / self.dist.world
            norm = max(norm, 1e-8)
            self.opt.zero_grad(set_to_none=True)
            acc: dict[str, float] = {}
            for s in range(0, mb, micro):  # gradient accumulation: micro-batch sums / the global normaliser
                j = idx[s : s + micro]
                dev = lambda x: x[j].to(self.device)  # noqa: E731
                with self.dist.no_sync(self.model, last=s + micro >= mb), self.amp:
                    lp, ent = completion_logprobs(self.model, dev(ids), dev(att), P, dev(batch.tokens),
                                                  cfg.temperature, with_entropy=cfg.entropy_coef > 0)
                    m = dev(mask)
                    loss, info = policy_loss(lp, dev(old_lp), dev(adv), m, cfg.eps_low, cfg.eps_high, cfg.loss_agg,
                                             max_tok, normaliser=norm)
                    kl = aggregate(kl_k3(lp, dev(ref_lp)), m, cfg.loss_agg, norm, max_tok)
                    total = loss + cfg.kl_coef * kl
                    if ent is not None:
                        total = total - cfg.entropy_coef * aggregate(ent, m, cfg.loss_agg, norm, max_tok)
                    self.dist.acc.backward(total)
                w = len(j) / mb
                for k, v in {"loss/policy": float(loss), "loss/kl": float(kl), **{f"policy/{k}": v for k, v in info.items()}}.items():
                    acc[k] = acc.get(k, 0.0) + (float(v) if k.startswith("loss/") else float(v) * w)
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opt.step()
            acc["policy/grad_norm"] = float(gnorm)
            for k, v in acc.items():
                stats[k] = stats.get(k, 0.0) + v / cfg.updates_per_step
        # KL of the rollout policy to the initial model, from the sampled tokens (k3, >= 0)
        m = batch.mask
        stats["policy/kl_initial"] = float((kl_k3(old_lp, ref_lp) * m).sum() / m.sum().clamp(min=1))
        return stats

    # ---- validation ------------------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        cfg = self.cfg
        if not self.val_set:
            return {}
        self.model.eval()
        settings = SamplingSettings(cfg.val_temperature, cfg.top_p, cfg.max_new_tokens)
        with self.amp:
            rows = sample_problems(self.sampler, self.task, self.dist.shard(self.val_set), cfg.val_k, settings,
                                   seed=_seed(cfg.seed, "validation"), equivalence=cfg.equivalence)
        rows = [r for part in self.dist.gather(rows) for r in part]
        s = summarize(rows, cfg.val_k)
        k = cfg.val_k
        return {f"val/avg@{k}": s[f"avg@{k}"], f"val/maj@{k}": s[f"maj@{k}"], f"val/pass@{k}": s[f"pass@{k}"],
                "val/truncation_rate": s["truncation_rate"], "val/unparsable_rate": s["unparsable_rate"]}

    # ---- checkpoints -------------------------------------------------------------------------------------
    def save_checkpoint(self, step: int, best: bool = False) -> None:
        """Rank 0 writes model, optimizer, RNG and step into a temp folder, then renames it into place."""
        self.dist.barrier()
        if not self.dist.is_main:
            return
        ckpt_root = self.run_dir / "checkpoints"
        ckpt_root.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_root / f".tmp-{step:06d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.policy.save_pretrained(tmp)
        self.tok.save_pretrained(tmp)
        torch.save({"optimizer": self.opt.state_dict(), "step": step, "failed_streak": self.failed_streak,
                    "collapse": self.collapse.state_dict(), "torch_rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
        final = ckpt_root / f"step_{step:06d}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text(ckpt_root / "latest", final.name + "\n")
        if best:  # the collapse detector's label-free best step, kept by the cleanup below
            write_text(ckpt_root / "best", final.name + "\n")
        keep = {final.name, (ckpt_root / "best").read_text().strip() if (ckpt_root / "best").exists() else ""}
        for old in ckpt_root.glob("step_*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self) -> int:
        from transformers import AutoModelForCausalLM

        ckpt_root = self.run_dir / "checkpoints"
        latest = ckpt_root / "latest"
        if not latest.is_file():
            return 0
        folder = ckpt_root / latest.read_text().strip()
        state = torch.load(folder / "trainer_state.pt", weights_only=False)
        loaded = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        self.policy.load_state_dict(loaded.state_dict())
        self.opt.load_state_dict(state["optimizer"])
        self.failed_streak = state["failed_streak"]
        self.collapse.load_state_dict(state["collapse"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"])


def _seed(seed: int, purpose: str, step: int = 0) -> int:
    import zlib

    return zlib.crc32(f"{seed}/{purpose}/{step}".encode())


def _finite(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def train(cfg: TrainConfig, resume: bool = False, on_step: Callable[[dict], None] | None = None,
          progress: bool = True) -> dict:
    """Run (or resume) training into ``cfg.out_dir``; returns the summary written to summary.json.

    Under ``accelerate launch`` every process runs this loop on its share of the groups; only rank 0
    writes files and shows progress.
    """
    from urlvr.console import ProgressBar

    run_dir = Path(cfg.out_dir)
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise UrlvrError(f"run folder {run_dir} already holds a run; resume it with 'urlvr train --resume {run_dir}' "
                         "or choose another out_dir")
    trainer = Trainer(cfg, run_dir, on_step)
    main = trainer.dist.is_main
    start = trainer.load_checkpoint() if resume else 0
    metrics_path = run_dir / "metrics.jsonl"
    history = [r for r in read_jsonl(metrics_path) if r["step"] <= start] if metrics_path.exists() else []
    trainer.dist.barrier()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            with atomic_write(run_dir / "config.yaml") as f:
                yaml.safe_dump(dataclasses.asdict(cfg), f, sort_keys=False)
        with atomic_write(metrics_path) as f:  # drop rows logged after the checkpoint we resume from
            f.writelines(json.dumps(r) + "\n" for r in history)

    def log(row: dict) -> None:
        history.append(row)
        if main:
            append_jsonl(metrics_path, [_finite(row)])

    if start == 0:
        log({"step": 0, **trainer.validate()})
    bar = ProgressBar(cfg.steps, initial=start, desc=f"train {cfg.reward}", enabled=progress and main)
    stop_reason = "completed"
    for step in range(start, cfg.steps):
        trainer.step = step
        metrics, batch, examples = trainer.train_step(step)
        last = step + 1 == cfg.steps
        if (step + 1) % cfg.val_every == 0 or last:
            metrics.update(trainer.validate())
        metrics.update(trainer.collapse.update(step + 1, metrics))
        log(metrics)
        if main and ((step + 1) % cfg.sample_every == 0 or last):
            _save_samples(run_dir, step + 1, batch, examples, cfg.n_votes)
        fired = cfg.collapse_stop and metrics.get("diag/collapse_fired")
        best = cfg.collapse_keep_best and bool(metrics.get("diag/collapse_best"))
        if (step + 1) % cfg.save_every == 0 or last or fired or best:
            trainer.save_checkpoint(step + 1, best=best)
        bar.update(metrics)
        if on_step and main:
            on_step(metrics)
        if fired:
            stop_reason = f"collapse detected at step {step + 1}"
            break
    bar.close()
    summary = summarize_run(history, cfg, stop_reason)
    summary["processes"] = trainer.dist.world
    if main:
        write_json(run_dir / "summary.json", summary)
    return summary


def _save_samples(run_dir: Path, step: int, batch: RolloutBatch, examples, n: int) -> None:
    rows = [{"step": step, "problem": ex.problem.id, "question": ex.problem.question, "completion": batch.texts[j * n + i]}
            for j, ex in enumerate(examples[:4]) for i in range(min(n, 4))]
    append_jsonl(run_dir / "samples.jsonl", rows)


def summarize_run(history: list[dict], cfg: TrainConfig, stop_reason: str) -> dict:
    """Validation before / at its peak / at the end, and the last oracle and health metrics."""
    k = cfg.val_k
    key = f"val/avg@{k}"
    vals = [(r["step"], r[key]) for r in history if r.get(key) is not None]
    out: dict[str, Any] = {"reward": cfg.reward, "model": cfg.model, "steps": history[-1]["step"] if history else 0,
                           "stop_reason": stop_reason, "metric": key}
    if vals:
        peak = max(vals, key=lambda t: t[1])
        out.update(val_before=vals[0][1], val_peak=peak[1], val_peak_step=peak[0], val_end=vals[-1][1])
    train_rows = [r for r in history if r["step"] > 0 and "oracle/label_accuracy" in r]
    if train_rows:
        tail = train_rows[-max(1, len(train_rows) // 5):]
        for m in ("oracle/label_accuracy", "oracle/accuracy", "oracle/reward_accuracy", "diag/majority_ratio",
                  "policy/entropy", "policy/kl_initial"):
            vs = [r[m] for r in tail if r.get(m) is not None]
            if vs:
                out[m.split("/")[1] + "_end"] = sum(vs) / len(vs)
    fired = [r["step"] for r in history if r.get("diag/collapse_fired")]
    out["collapse_step"] = fired[0] if fired else None
    return out
