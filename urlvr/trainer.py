"""The GRPO trainer: generate → score → advantage → update → log, top to bottom, and the one loop.

One step (:meth:`Trainer.train_step`): pick ``prompts_per_step`` problems, sample ``n_votes`` completions
each (the rollout keeps the old policy's per-token statistics), hand each *whole group* to the reward
(label-free rewards get a :class:`~urlvr.types.Group` without gold; only gold-using rewards get a
:class:`~urlvr.types.LabeledGroup`), compute group advantages on the first ``n_train`` completions, run
``updates_per_step`` PPO-clip mini-batch updates (gradient accumulation over micro-batches) and gather
the label-free and oracle metrics (:mod:`urlvr.scoring`).

The loop (:meth:`Trainer.steps`) exists once: it opens the run folder (``config.yaml``,
``metrics.jsonl``; on resume the last checkpoint), validates at step 0, then per step trains,
validates when due, feeds the collapse detector, logs the row, saves samples and checkpoints, and
yields a :class:`Step`. :func:`train`, the Model Collapse Step, GT Gain, test-time training, the
reproduction and the benchmarks all consume it; a consumer that has seen enough just stops iterating.
Every random choice is a function of ``(seed, step)``, so a resumed run continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import torch
import yaml

from urlvr.advantages import AdvantageContext, get_advantage_estimator
from urlvr.answers import visit_majority
from urlvr.config import TrainConfig
from urlvr.console import Bar, echo
from urlvr.distributed import Dist
from urlvr.errors import UrlvrError
from urlvr.evaluation.harness import sample_problems
from urlvr.evaluation.metrics import summarize
from urlvr.grading import shared_grader
from urlvr.io import append_jsonl, atomic_folder, atomic_write, read_jsonl, write_json, write_text
from urlvr.loading import is_adapter, load_model, pick_dtype, resolve_model
from urlvr.loss import aggregate, entropy_band_penalty, forking_mask, kl_k3, loss_normaliser, policy_loss
from urlvr.rewards.base import check_options, get_reward
from urlvr.prompts import Renderer
from urlvr.rollout import HFSampler, completion_logprobs, pack
from urlvr.scoring import build_groups, completions_from_batch, score_groups, step_metrics
from urlvr.seeds import derive_seed, rng
from urlvr.tasks import get_task
from urlvr.tracking import Sink, open_sink
from urlvr.types import Example, Group, LabeledGroup, RolloutBatch, SamplingSettings
from urlvr.watch.detector import CollapseDetector
from urlvr.watch.flips import FlipTracker
from urlvr.watch.oracle import SolvedTransitions, majority_correct
from urlvr.watch.health import group_clusters

__all__ = ["train", "Trainer", "Step", "Sampled", "summarize_run", "with_lora"]


class Sampled(NamedTuple):
    """One step's rollout as whole groups (:meth:`Trainer.sample_groups`)."""

    examples: list[Example]
    batch: RolloutBatch
    groups: list[Group]
    labeled: list[LabeledGroup]
    """The groups' twins with gold answers and verdicts: the oracle's, never a label-free reward's."""
    generate_s: float
    """Seconds spent generating."""


@dataclass
class Step:
    """What one step of the loop produced (yielded by :meth:`Trainer.steps`)."""

    step: int
    """1-based: the number of updates done."""
    metrics: dict[str, Any]
    """The row logged to ``metrics.jsonl`` (training, validation and detector metrics)."""
    batch: RolloutBatch
    examples: list[Example]
    groups: list[Group] = field(default_factory=list)
    checkpoint: Path | None = None
    """The checkpoint folder written after this step, if any."""


# ---------------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------------
class Trainer:
    """A GRPO run of ``cfg`` on the model in folder ``model_path`` (resolve names with
    :func:`urlvr.loading.resolve_model` first: the trainer never builds a model)."""

    def __init__(self, cfg: TrainConfig, model_path: str | Path):
        if str(model_path).startswith("testbed:"):
            raise UrlvrError(f"{model_path} is a model name, not a folder; resolve it with "
                             "urlvr.loading.resolve_model(name, task, task_options) first")
        self.cfg, self.run_dir = cfg, Path(cfg.out_dir)
        self.task = get_task(cfg.task, **cfg.task_options)
        self.reward = get_reward(cfg.reward)
        self.reward_options = dict(cfg.reward_options)
        check_options(self.reward, self.reward_options)
        self.estimator = get_advantage_estimator(cfg.advantage)
        self.modifiers = cfg.modifiers()  # advantage plug-ins, in order; their state is saved with checkpoints
        self.grader = shared_grader(cfg.grader_workers, cfg.grader_timeout)
        self.rules = self.task.rules(cfg.equivalence, self.grader.clusterer())  # what label-free groups carry
        self.model, self.tok = load_model(model_path, cfg.device, "float32")
        self.render = Renderer(self.task.prompt, self.tok, cfg.chat, cfg.system_prompt)  # every prompt goes through it
        self.device = next(self.model.parameters()).device
        amp = pick_dtype(cfg.dtype, self.device)
        self.amp = torch.autocast(self.device.type, dtype=amp) if amp != torch.float32 else nullcontext()
        if cfg.lora_rank and is_adapter(model_path):
            raise UrlvrError(f"{model_path} is a LoRA adapter checkpoint; new adapters would be saved against its "
                             "base model without these ones. Train it with lora_rank=0, or merge it first")
        self.ref = None
        """The frozen initial model of a full fine-tune (with LoRA: the adapters-off model, no copy); kept only
        when something reads the initial policy (the KL term, ``policy/kl_initial``, an ``initial_scorer``)."""
        wants_initial = self.reward.needs_scorer and "initial_scorer" in inspect.signature(self.reward.fn).parameters
        if cfg.lora_rank:
            self.model = with_lora(self.model, cfg)
        elif cfg.kl_coef > 0 or cfg.kl_every > 0 or wants_initial:
            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        if cfg.gradient_checkpointing:  # transformers 5.2x renamed it (5.1x, as on the GPU machine, has the old name)
            if hasattr(self.model, "activation_checkpointing_enable"):
                self.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.dist = Dist(self.device)
        if cfg.prompts_per_step % self.dist.world:
            raise UrlvrError(f"prompts_per_step ({cfg.prompts_per_step}) is not divisible by the number of processes "
                             f"({self.dist.world}); groups are never split across processes, so choose a multiple")
        # fused: one kernel over all parameters (the default loop costs 0.45 s a step on SmolLM2's 135M, fused 0.13)
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr,
                                     weight_decay=cfg.weight_decay, fused=self.device.type in ("cpu", "cuda"))
        self.model, self.opt = self.dist.prepare(self.model, self.opt)
        self.policy = self.dist.unwrap(self.model)  # the bare model: sampling, saving
        self.sampler = HFSampler(self.policy, self.tok)
        self.settings = SamplingSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens,
                                         embed=self.reward.needs_embeddings)
        if self.reward.needs_policy:
            self.reward_options.update(sampler=self.sampler, settings=self.settings)
        if self.reward.needs_scorer:
            self.reward_options.update(scorer=self.sampler, settings=self.settings)
            if wants_initial:
                self.reward_options["initial_scorer"] = InitialScorer(self)
        self.train_set = self.task.examples(cfg.train_split, cfg.train_problems, seed=cfg.seed)
        self.val_set = (self.task.examples("validation", cfg.val_problems, seed=cfg.seed + 1)
                        if cfg.val_problems else [])
        self.failed_streak = 0
        self.nonfinite_streak = 0
        self.last_nonfinite = ""
        self.unusable: list[Path] = []
        """Checkpoints a resume could not use; moved aside as ``unusable-step_*`` so later saves never touch them."""
        self.detector = CollapseDetector.from_config(cfg)  # the watcher: label-free signals only
        self.flips = FlipTracker()  # label-free: each problem's majority answer across its visits
        self.transitions = SolvedTransitions()  # oracle: solved <-> unsolved across visits, monitoring only
        self.history: list[dict] = []
        """Every row logged so far (after a resume: from the run's metrics.jsonl)."""
        self.stop_reason = "not started"
        self.sink: Sink = Sink()
        """Tracking sink fed by the same rows as metrics.jsonl (``report_to``; rank 0)."""

    # ---- one step, top to bottom -------------------------------------------------------------------
    def sample_groups(self, step: int) -> Sampled:
        """Steps 1-2a of :meth:`train_step`: the step's problems, their ``n_votes`` completions each (with the old
        policy's per-token statistics) and the label-free groups with their labelled twins (gold checked in one
        batch). Seeded by ``(seed, step)``; changes no weights."""
        cfg, t0 = self.cfg, time.perf_counter()
        examples = rng(cfg.seed, "problems", step).sample(self.train_set, min(cfg.prompts_per_step, len(self.train_set)))
        examples = self.dist.shard(examples)  # this process's whole groups
        prompts = [self.render(e.problem) for e in examples]
        self.model.eval()
        with self.amp:
            seeds = [derive_seed(cfg.seed, "rollout", e.problem.id, step) for e in examples for _ in range(cfg.n_votes)]
            batch = self.sampler.generate([p for p in prompts for _ in range(cfg.n_votes)], self.settings, seed=seeds)
        t_gen = time.perf_counter() - t0
        comps = completions_from_batch(batch, self.rules)
        groups, labeled = build_groups(self.task, self.rules, examples, prompts,
                                       [comps[g * cfg.n_votes : (g + 1) * cfg.n_votes] for g in range(len(examples))],
                                       self.grader, self.policy.config.vocab_size, self.tok.eos_token_id)
        return Sampled(examples, batch, groups, labeled, t_gen)

    def train_step(self, step: int) -> Step:
        """Generate → score → advantage → update → metrics for step ``step`` (0-based); nothing is logged."""
        cfg, t0 = self.cfg, time.perf_counter()
        # 1. generate: n_votes completions per prompt, with the old policy's per-token statistics, as whole groups
        examples, batch, groups, labeled, t_gen = self.sample_groups(step)
        # 2. score: whole groups to the reward; gold (checked in one batch) only to gold rewards and the oracle
        scores = score_groups(self.reward, self.reward_options, groups, labeled, timeout=cfg.reward_timeout)
        self._count_failures(scores)
        # 3. advantages on the first n_train completions of each group
        r_train, v_train = scores.rewards[:, : cfg.n_train], scores.valid[:, : cfg.n_train]  # (G, n_train)
        adv = self.estimator(r_train, v_train, eps=cfg.advantage_eps)  # (G, n_train)
        clusters = group_clusters(groups)
        ctx = AdvantageContext(step, cfg.seed, [g.problem.id for g in groups], clusters, [g.answers for g in groups],
                               scores.rewards, scores.valid, cfg.n_train, canonical=self.rules.canonical)
        for modifier in self.modifiers:  # label-free plug-ins: (G, n_train) -> (G, n_train) or (G, n_train, J)
            adv = modifier(adv, ctx)
        train_idx = [g * cfg.n_votes + i for g in range(len(examples)) for i in range(cfg.n_train)]
        # 4. update (failed rewards leave the loss)
        self.model.train()
        upd = self.update(batch.select(train_idx), adv.reshape(len(train_idx), -1).squeeze(1), v_train.reshape(-1), step)
        self._count_nonfinite(upd["update/skipped_nonfinite"] > 0)
        t_step = time.perf_counter() - t0
        # 5. metrics: label-free health, reward components, then oracle metrics for monitoring only
        metrics: dict[str, Any] = {"step": step + 1, **step_metrics(groups, labeled, scores, clusters), **upd,
                                   **ctx.metrics}
        metrics.update(self._visit_metrics(ctx, labeled))
        n_tok = int(batch.mask.sum())
        metrics.update({"rollout/tokens": n_tok, "time/step_s": t_step, "time/generate_s": t_gen,
                        "time/tokens_per_s": n_tok / t_step})
        return Step(step + 1, self.dist.mean_metrics(metrics, len(examples)), batch, examples, groups)

    def _visit_metrics(self, ctx: AdvantageContext, labeled) -> dict[str, Any]:
        """Flips of each problem's majority answer since its last visit (``diag/flip_rate``, ...) and, when
        every group is labelled, the oracle's solved/unsolved transitions."""
        visits = [visit_majority(c, a, ctx.canonical) for c, a in zip(ctx.clusters, ctx.answers)]  # (G,)
        out = self.flips.update(ctx.problem_ids, [k for k, _, _ in visits], [mr for _, mr, _ in visits])
        if labeled and all(lg.correct is not None for lg in labeled):
            out.update(self.transitions.update(ctx.problem_ids,
                                               majority_correct([lg.correct for lg in labeled], ctx.clusters)))
        return out

    def _count_failures(self, scores) -> None:
        """A step without one finite score (the reward raised, or returned None/NaN/inf everywhere, e.g. SRT
        filtering every group) counts towards stopping."""
        all_failed = not self.dist.sum(float(scores.valid.sum()))
        self.failed_streak = self.failed_streak + 1 if all_failed else 0
        if self.failed_streak >= self.cfg.max_failed_steps:
            raise UrlvrError(f"reward {self.cfg.reward!r} failed on every completion for {self.failed_streak} steps "
                             f"in a row ({scores.failure}); fix the reward or raise max_failed_steps")

    def _count_nonfinite(self, skipped: bool) -> None:
        """Steps in a row with a skipped (non-finite) update; too many stop the run with one line."""
        self.nonfinite_streak = self.nonfinite_streak + 1 if skipped else 0
        if self.nonfinite_streak >= self.cfg.max_nonfinite_steps:
            raise UrlvrError(f"{self.nonfinite_streak} steps in a row had a non-finite loss or gradient norm "
                             f"(last: {self.last_nonfinite}); lower lr (now {self.cfg.lr:g}) or check the reward's "
                             "scale, then resume from the last checkpoint")

    def update(self, batch: RolloutBatch, adv: torch.Tensor, keep: torch.Tensor, step: int) -> dict[str, float]:
        """``updates_per_step`` PPO-clip mini-batch updates with gradient accumulation.

        ``adv`` (B,) one advantage per completion, or (B, J) for J summed surrogates; ``keep`` (B,) bool,
        False = no valid reward.
        """
        cfg = self.cfg
        ids, att, P = pack(batch.prompt_ids, batch.tokens, batch.mask, self.tok.pad_token_id)
        mask = batch.mask & keep[:, None]  # (B, T)
        if cfg.spine_rho:  # SPINE: loss and KL on the forking tokens only, chosen by the rollout's entropies
            mask = forking_mask(batch.entropy, mask, cfg.spine_rho, cfg.spine_scope)  # (B, T)
        old_lp = batch.logprob  # (B, T) from the rollout: the old policy
        B = len(batch)
        order = torch.randperm(B, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "perm", step)))
        mb = B // cfg.updates_per_step
        micro = cfg.micro_batch_size or mb
        stats: dict[str, float] = {}
        max_tok = cfg.max_new_tokens
        ref_lp = None  # (B, T) the initial model's log-probs: for the KL term, or every kl_every steps for the drift
        if cfg.kl_coef > 0 or (cfg.kl_every and step % cfg.kl_every == 0):
            with torch.no_grad(), self.amp, self._initial_model() as ref:
                ref_lp = torch.cat([
                    completion_logprobs(ref, ids[i : i + micro].to(self.device), att[i : i + micro].to(self.device),
                                        P, batch.tokens[i : i + micro].to(self.device), cfg.temperature,
                                        chunk=cfg.logprob_chunk)[0].float().cpu()
                    for i in range(0, B, micro)])  # (B, T)
        for u in range(cfg.updates_per_step):
            idx = order[u * mb : (u + 1) * mb]
            # normaliser of the *global* mini-batch; local losses x world undo the engine's gradient mean
            norm = self.dist.sum(loss_normaliser(mask[idx], cfg.loss_agg, max_tok)) / self.dist.world
            norm = max(norm, 1e-8)
            n_band = max(1.0, self.dist.sum(float(mask[idx].any(1).sum())) / self.dist.world)  # responses with a fork
            self.opt.zero_grad(set_to_none=True)
            acc: dict[str, float] = {}
            for s in range(0, mb, micro):  # gradient accumulation: micro-batch sums / the global normaliser
                j = idx[s : s + micro]
                dev = lambda x: x[j].to(self.device)  # noqa: E731
                with self.dist.no_sync(self.model, last=s + micro >= mb), self.amp:
                    lp, ent = completion_logprobs(self.model, dev(ids), dev(att), P, dev(batch.tokens),
                                                  cfg.temperature,
                                                  with_entropy=cfg.entropy_coef > 0 or cfg.spine_band_coef > 0,
                                                  chunk=cfg.logprob_chunk)
                    m = dev(mask)
                    loss, info = policy_loss(lp, dev(old_lp), dev(adv), m, cfg.eps_low, cfg.eps_high, cfg.loss_agg,
                                             max_tok, normaliser=norm)
                    kl = None if ref_lp is None else aggregate(kl_k3(lp, dev(ref_lp)), m, cfg.loss_agg, norm, max_tok)
                    total = loss + cfg.kl_coef * kl if cfg.kl_coef else loss
                    if cfg.entropy_coef:
                        total = total - cfg.entropy_coef * aggregate(ent, m, cfg.loss_agg, norm, max_tok)
                    if cfg.spine_band_coef:  # SPINE's entropy band on the forking tokens, per response
                        band = entropy_band_penalty(ent, m, cfg.spine_band_low, cfg.spine_band_high).sum() / n_band
                        total = total + cfg.spine_band_coef * band
                        acc["loss/band"] = acc.get("loss/band", 0.0) + float(band)
                    self.dist.acc.backward(total)
                w = len(j) / mb
                logged = {"loss/policy": float(loss.detach()), **{f"policy/{k}": v for k, v in info.items()}}
                if kl is not None:
                    logged["loss/kl"] = float(kl.detach())
                for k, v in logged.items():
                    acc[k] = acc.get(k, 0.0) + (float(v) if k.startswith("loss/") else float(v) * w)
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            finite = math.isfinite(float(gnorm))  # of the reduced gradients: every process decides alike
            if finite:
                self.opt.step()
            else:  # a NaN/inf update would poison every weight: skip it, count it (see train_step)
                self.opt.zero_grad(set_to_none=True)
                self.last_nonfinite = f"loss/policy={acc['loss/policy']}, grad_norm={float(gnorm)}"
            acc["update/skipped_nonfinite"] = float(not finite)
            acc["policy/grad_norm"] = float(gnorm)
            for k, v in acc.items():
                stats[k] = stats.get(k, 0.0) + v / cfg.updates_per_step
        if cfg.spine_rho:
            stats["policy/fork_share"] = float(mask.sum() / (batch.mask & keep[:, None]).sum().clamp(min=1))
        if ref_lp is not None:  # KL of the rollout policy to the initial model, from the sampled tokens (k3, >= 0)
            m = batch.mask
            stats["policy/kl_initial"] = float((kl_k3(old_lp, ref_lp) * m).sum() / m.sum().clamp(min=1))
        return stats

    @contextlib.contextmanager
    def _initial_model(self):
        """The initial policy: the frozen copy, or with LoRA the same model with its adapters off."""
        if self.ref is not None:
            yield self.ref
        elif not self.cfg.lora_rank:
            raise RuntimeError("the initial model was not kept (kl_coef = 0, kl_every = 0, no initial_scorer)")
        else:
            with self.policy.disable_adapter():
                yield self.policy

    # ---- validation ------------------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """avg@k, maj@k, pass@k of the current policy on the validation problems (``val/*``)."""
        cfg = self.cfg
        if not self.val_set:
            return {}
        self.model.eval()
        settings = SamplingSettings(cfg.val_temperature, cfg.top_p, cfg.max_new_tokens)
        with self.amp:
            rows = sample_problems(self.sampler, self.task, self.dist.shard(self.val_set), cfg.val_k, settings,
                                   seed=derive_seed(cfg.seed, "validation", 0), rules=self.rules, grader=self.grader,
                                   render=self.render)
        rows = [r for part in self.dist.gather(rows) for r in part]
        s = summarize(rows, cfg.val_k)
        k = cfg.val_k
        return {f"val/avg@{k}": s[f"avg@{k}"], f"val/maj@{k}": s[f"maj@{k}"], f"val/pass@{k}": s[f"pass@{k}"],
                "val/truncation_rate": s["truncation_rate"], "val/unparsable_rate": s["unparsable_rate"],
                "val/tokens": sum(r["length"] for r in rows)}

    # ---- the loop --------------------------------------------------------------------------------------
    def steps(self, resume: bool = False) -> Iterator[Step]:
        """Run (or resume) the training loop in ``cfg.out_dir``, yielding after every step.

        Before the first step: the run folder is opened (a finished run is never overwritten; on
        resume the last checkpoint is loaded and rows logged after it are dropped) and, on a fresh
        run, step 0 is validated. Each step then: :meth:`train_step`, validation every ``val_every``
        steps and at the end, the collapse detector, the row to ``metrics.jsonl``, samples and
        checkpoints when due. Stops early when the detector fires and ``collapse_stop`` is set
        (``stop_reason`` says why the loop ended). Under ``accelerate launch`` every process runs it on
        its share of the groups; only rank 0 writes files.
        """
        cfg = self.cfg
        start = self._open_run(resume)
        try:
            if start == 0:
                self._prepare_modifiers()
                self._log({"step": 0, **self.validate()})
            self.stop_reason = "completed"
            for i in range(start, cfg.steps):
                result = self.train_step(i)
                n, metrics = result.step, result.metrics
                last = n == cfg.steps
                if (cfg.val_every and n % cfg.val_every == 0) or last:
                    metrics.update(self.validate())
                metrics.update(self.detector.update(n, metrics))
                self._log(metrics)
                if self.dist.is_main and cfg.sample_every and (n % cfg.sample_every == 0 or last):
                    self._save_samples(result)
                fired = cfg.collapse_stop and bool(metrics.get("diag/collapse_fired"))
                best = cfg.collapse_keep_best and bool(metrics.get("diag/collapse_best"))
                if cfg.save_every and (n % cfg.save_every == 0 or last or fired or best):
                    result.checkpoint = self.save_checkpoint(n, best=best)
                yield result
                if fired:
                    self.stop_reason = f"collapse detected at step {n}"
                    return
        finally:
            self.sink.close()

    def _prepare_modifiers(self) -> None:
        """Before step 0: the initial policy's answer clusters on every training problem, for the modifiers
        that need them (``base_votes``; RESTRAIN's offline prompt weights). Seeded; saved in their state."""
        for m in self.modifiers:
            if not m.base_votes:
                continue
            self.model.eval()
            clusters: dict[str, list[int | None]] = {}
            examples = self.dist.shard(self.train_set)
            for s in range(0, len(examples), 32):
                part = examples[s : s + 32]
                prompts = [self.render(e.problem) for e in part for _ in range(m.base_votes)]
                seeds = [derive_seed(self.cfg.seed, "base_votes", e.problem.id) for e in part for _ in range(m.base_votes)]
                with self.amp:
                    batch = self.sampler.generate(prompts, self.settings, seed=seeds)
                answers = [self.rules.extract(t) for t in batch.texts]
                for j, e in enumerate(part):
                    clusters[e.problem.id] = self.rules.cluster(answers[j * m.base_votes : (j + 1) * m.base_votes])
            for part in self.dist.gather(clusters):
                clusters.update(part)
            m.prepare(clusters)

    def _open_run(self, resume: bool) -> int:
        """Prepare the run folder; returns the step to start from."""
        metrics_path = self.run_dir / "metrics.jsonl"
        if not resume and metrics_path.exists():
            raise UrlvrError(f"run folder {self.run_dir} already holds a run; resume it with 'urlvr train --resume "
                             f"{self.run_dir}' or choose another out_dir")
        start = self.load_checkpoint() if resume else 0
        # rows up to the checkpoint stay; later ones (and, before any checkpoint, all) are logged again
        self.history = [r for r in read_jsonl(metrics_path) if r["step"] <= start] \
            if start and metrics_path.exists() else []
        self.dist.barrier()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for folder in self.unusable:
                aside = folder.with_name(f"unusable-{folder.name}")
                for n in range(2, 1000):  # the same step can go bad twice: keep both
                    if not aside.exists():
                        break
                    aside = folder.with_name(f"unusable-{folder.name}.{n}")
                os.replace(folder, aside)
            for pattern in (".tmp-*", ".old-*"):  # what a save killed half-way leaves (atomic_folder)
                for stale in (self.run_dir / "checkpoints").glob(pattern):
                    shutil.rmtree(stale, ignore_errors=True)
            samples = self.run_dir / "samples.jsonl"
            if resume and samples.exists():
                with atomic_write(samples) as f:
                    f.writelines(json.dumps(r) + "\n" for r in read_jsonl(samples) if r["step"] <= start)
            with atomic_write(self.run_dir / "config.yaml") as f:
                yaml.safe_dump(self.cfg.to_dict(), f, sort_keys=False)
            first = self.train_set[0].problem
            write_json(self.run_dir / "prompt.json", {**self.render.describe(first), "problem": first.id,
                                                      "stop_token_ids": list(self.sampler.stop_ids)})
            self.sink = open_sink(self.cfg.report_to, self.run_dir, self.cfg.to_dict())
            with atomic_write(metrics_path) as f:  # drop rows logged after the checkpoint we resume from
                f.writelines(json.dumps(r) + "\n" for r in self.history)
        return start

    def _log(self, row: dict) -> None:
        self.history.append(row)
        if self.dist.is_main:
            append_jsonl(self.run_dir / "metrics.jsonl", [_finite(row)])
            self.sink.log(row)

    def _save_samples(self, result: Step) -> None:
        n = self.cfg.n_votes
        rows = [{"step": result.step, "problem": ex.problem.id, "question": ex.problem.question,
                 "completion": result.batch.texts[j * n + i]}
                for j, ex in enumerate(result.examples[:4]) for i in range(min(n, 4))]
        append_jsonl(self.run_dir / "samples.jsonl", rows)

    # ---- checkpoints -------------------------------------------------------------------------------------
    def save_checkpoint(self, step: int, best: bool = False) -> Path:
        """Rank 0 writes model, optimizer, RNG and step into a temp folder, then renames it into place."""
        ckpt_root = self.run_dir / "checkpoints"
        final = ckpt_root / f"step_{step:06d}"
        self.dist.barrier()
        if not self.dist.is_main:
            return final
        with atomic_folder(final) as tmp:
            self.policy.save_pretrained(tmp)
            self.tok.save_pretrained(tmp)
            torch.save({"optimizer": self.opt.state_dict(), "step": step, "failed_streak": self.failed_streak,
                        "nonfinite_streak": self.nonfinite_streak,
                        "collapse": self.detector.state_dict(), "torch_rng": torch.get_rng_state(),
                        "modifiers": {m.name: m.state_dict() for m in self.modifiers},
                        "flips": self.flips.state_dict(), "transitions": self.transitions.state_dict()},
                       tmp / "trainer_state.pt")
        write_text(ckpt_root / "latest", final.name + "\n")
        if best:  # the collapse detector's label-free best step, kept by the cleanup below
            write_text(ckpt_root / "best", final.name + "\n")
        keep = {final.name, (ckpt_root / "best").read_text().strip() if (ckpt_root / "best").exists() else ""}
        for old in ckpt_root.glob("step_*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self) -> int:
        """Load the newest usable checkpoint of the run folder; returns its step (0 when there is none).

        ``checkpoints/latest`` names the one to try first. If it is missing, or names a folder that is
        gone, unreadable or holds non-finite weights, the newest other ``step_*`` folder that reads is
        taken, with a line saying so. Everything is read and checked before the trainer is touched, and
        nothing is deleted.
        """
        ckpt_root = self.run_dir / "checkpoints"
        latest = ckpt_root / "latest"
        named = latest.read_text().strip() if latest.is_file() else None
        folders = sorted((f for f in ckpt_root.glob("step_*") if f.is_dir()), key=lambda f: f.name, reverse=True)
        skipped = []
        for folder in [f for f in folders if f.name == named] + [f for f in folders if f.name != named]:
            self.unusable.append(folder)  # until it proves usable: moved aside (never deleted) by _open_run
            try:
                state = torch.load(folder / "trainer_state.pt", weights_only=False)
                weights = self._read_weights(folder)
            except Exception as e:  # noqa: BLE001  (any unreadable checkpoint: fall back to an older one)
                skipped.append(f"{folder.name} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})")
                continue
            bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
            if bad:
                skipped.append(f"{folder.name} (non-finite weights in {bad[0]})")
                continue
            if skipped or folder.name != named:
                why = f"skipped {', '.join(skipped)}; kept as checkpoints/unusable-*" if skipped else \
                    ("checkpoints/latest is missing" if named is None else f"checkpoints/latest names {named}")
                echo(f"resume: continuing from {folder.name} ({why})")
            self.unusable.pop()
            self._apply_weights(weights)
            self.opt.load_state_dict(state["optimizer"])
            self.failed_streak = state["failed_streak"]
            self.nonfinite_streak = state.get("nonfinite_streak", 0)
            self.detector.load_state_dict(state["collapse"])  # its state; its settings stay the config's
            for m in self.modifiers:
                m.load_state_dict(state.get("modifiers", {}).get(m.name, {}))
            self.flips.load_state_dict(state.get("flips", {}))
            self.transitions.load_state_dict(state.get("transitions", {}))
            torch.set_rng_state(state["torch_rng"])
            return int(state["step"])
        if folders:
            echo(f"resume: no usable checkpoint (skipped {', '.join(skipped)}; kept as checkpoints/unusable-*); "
                 "starting again at step 0")
        return 0

    def _read_weights(self, folder: Path) -> dict[str, torch.Tensor]:
        """A checkpoint's weights: the whole model's state dict, or the LoRA adapters'."""
        if self.cfg.lora_rank:
            from safetensors.torch import load_file

            return load_file(folder / "adapter_model.safetensors")
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).state_dict()

    def _apply_weights(self, weights: dict[str, torch.Tensor]) -> None:
        if self.cfg.lora_rank:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.policy, weights)
        else:
            self.policy.load_state_dict(weights)


class InitialScorer:
    """:meth:`~urlvr.rollout.Sampler.score` with the *initial* policy (the frozen reference, or adapters off)."""

    def __init__(self, trainer: "Trainer"):
        self._trainer = trainer

    def score(self, prompts, continuations, temperature: float = 1.0):
        t = self._trainer
        with t._initial_model() as model:
            return HFSampler(model, t.tok, stop_ids=t.sampler.stop_ids).score(prompts, continuations, temperature)

    def token_texts(self, token_ids):
        return self._trainer.sampler.token_texts(token_ids)


def with_lora(model, cfg: TrainConfig):
    """``model`` with LoRA adapters (peft) per the config's ``lora_*`` fields; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora_targets.strip()
    modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    try:
        return get_peft_model(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                                lora_dropout=cfg.lora_dropout, target_modules=modules,
                                                task_type="CAUSAL_LM"))
    except ValueError as e:
        raise UrlvrError(f"lora_targets={targets!r}: {str(e).splitlines()[0]}; use all-linear or names of the "
                         "model's linear layers (q_proj,v_proj for Llama)") from None


def _finite(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def train(cfg: TrainConfig, resume: bool = False, on_step: Callable[[dict], None] | None = None,
          progress: bool = True) -> dict:
    """Run (or resume) training into ``cfg.out_dir``; returns the summary written to summary.json.

    The model is resolved first (a ``testbed:`` prior is built or taken from the cache for the run's
    task); ``on_step(metrics)`` is called after every step on rank 0.
    """
    trainer = Trainer(cfg, resolve_model(cfg.model, cfg.task, cfg.task_options))
    main = trainer.dist.is_main
    with Bar(cfg.steps, f"train {cfg.reward}", unit="step", enabled=progress and main) as bar:
        done = None
        for result in trainer.steps(resume):
            done = result.step - 1 if done is None else done
            bar.update(result.step - done, metrics=result.metrics)
            done = result.step
            if on_step and main:
                on_step(result.metrics)
    summary = summarize_run(trainer.history, cfg, trainer.stop_reason)
    summary["processes"] = trainer.dist.world
    if main:
        write_json(trainer.run_dir / "summary.json", summary)
    return summary


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
