r"""urlvr rewards and diagnostics inside TRL's ``GRPOTrainer`` (the ``trl`` extra).

Three pieces:

- :func:`urlvr_reward_func` turns any urlvr reward into a TRL reward function
  (``(prompts, completions, completion_ids=None, **kwargs) -> list[float | None]``, with ``__name__``
  set for TRL's logging). It hands *whole groups* to the reward, as urlvr's own trainer does.
- :class:`URLVRGRPOTrainer`, a small ``GRPOTrainer`` subclass, tells the rewards the group size and
  the rollout's end-of-sequence facts and, when a reward needs them, computes the per-token
  statistics (log-prob, entropy, self-certainty, top-2 gap) of the completions.
- :func:`task_dataset` builds TRL's prompt dataset from a urlvr task.

Usage (``docs/scaling.md`` has the launch commands)::

    from trl import GRPOConfig
    from urlvr.integrations.trl import URLVRGRPOTrainer, task_dataset, urlvr_reward_func
    from urlvr.tasks import get_task

    task = get_task("arithmetic", digits=1, ops="+")
    trainer = URLVRGRPOTrainer(
        model="path/to/model", args=GRPOConfig("out", num_generations=8),
        reward_funcs=[urlvr_reward_func("majority_vote", task)],
        train_dataset=task_dataset(task, "train", 256))
    trainer.train()

**Groups stay whole across processes.** TRL's ``RepeatSampler`` puts the ``num_generations`` copies of
a prompt next to each other in the *global* generation batch, which accelerate then cuts into
contiguous per-process slices of ``per_device_train_batch_size × steps_per_generation`` rows.
``GRPOConfig`` checks only that the global batch is a multiple of ``num_generations``, so a group can
straddle processes (2 processes, ``per_device_train_batch_size=2``, ``num_generations=4``: each holds
half of the one group), and TRL calls reward functions on each process's slice before it gathers the
scores. So the adapter all-gathers the rows (texts, token ids, public problem columns, per-token
statistics; ``torch.distributed.all_gather_object``) into the global batch in process order, the order
TRL's own gather uses, cuts it into groups, lets each process score the groups that *start* in its
slice, all-gathers the scores and returns its own slice. Every process sees the same whole groups and
logs the same diagnostics; no group is scored twice. Single-process runs skip both gathers.

A group is a run of consecutive rows with the same prompt text (and ``id``, when the dataset has one), cut
into blocks of the group size: TRL's ``num_generations`` (``num_generations_eval`` in evaluation),
which :class:`URLVRGRPOTrainer` passes along; under a plain ``GRPOTrainer`` give ``num_generations=``
to :func:`urlvr_reward_func`, or each run of equal prompts is one group. A run that is not a multiple
of the group size, or groups of unequal sizes, raise :class:`~urlvr.errors.UrlvrError`.

**Problems and gold.** The dataset rows reach a TRL reward function as keyword lists, one entry per
completion. The adapter builds each :class:`~urlvr.tasks.base.Problem` from the columns ``id``,
``question`` (default: the prompt), ``kind`` and ``data`` (a dict or its JSON text). The gold column
(``answer`` by default) reaches only rewards registered with ``needs_gold=True`` (as a
:class:`~urlvr.types.LabeledGroup`) and the oracle metrics; label-free rewards get a
:class:`~urlvr.types.Group` built without it (:func:`urlvr.scoring.build_groups`, as in urlvr's trainer).

**Per-token statistics: one extra forward pass.** Certainty rewards (``needs_logits=True``) read
``Completion.logprob / entropy / self_certainty / top2_gap``, which need the full logits of the
distribution that produced each token. TRL 1.16 never materialises them: its fused LM head returns
only per-token log-probs (and entropies, mean logits, top-1 flags on request), and in the default
setting (``steps_per_generation == gradient_accumulation_steps``, no vLLM importance sampling) it does
not even run a scoring forward before the rewards; the entropies come later, in the loss forward.
Self-certainty and the top-2 gap cannot be recovered from those fields. So
:class:`URLVRGRPOTrainer` runs **one extra no-grad forward** of the current (= rollout) policy over
prompt + completion, only when some reward function needs logits, in chunks of ``stats_batch_size``
completions (peak memory about ``stats_batch_size × T × V`` logits), with left-padded prompts and
position ids from the attention mask (as ``generate`` sampled), at TRL's sampling temperature τ
(``p_t = softmax(z_t / τ)``, the urlvr sampler's convention; ``top_p`` / ``top_k`` are not applied, as
in urlvr). With tools, tool-output tokens inside the completion get statistics too.

**Rewards that score given continuations** (``needs_scorer``, e.g. CoVo and RLPR-style rewards)
get a scorer over TRL's current policy from :class:`URLVRGRPOTrainer`
(:meth:`~urlvr.rollout.HFSampler.score`, one no-grad forward per batch); under a plain
``GRPOTrainer`` they are refused with one line. Rewards that *sample* from the policy
(``needs_policy``: self-verification, consistency) are refused: TRL runs its own generation.

**Diagnostics through TRL's logging.** After scoring, the adapter logs urlvr's label-free health
metrics (:func:`~urlvr.watch.health.health_metrics`: ``reward/mean``, ``diag/majority_ratio``,
``diag/cluster_entropy``, ``rollout/unparsable_rate``, ...), the reward's named components
(``reward/<component>``) and, when every group has a gold answer, the oracle metrics
(``oracle/label_accuracy``, ...; monitoring only) through the ``log_metric`` hook TRL hands to reward
functions: they appear in TRL's logs (and ``eval_``-prefixed in evaluation) beside its own. With
several urlvr rewards in one trainer, keep ``log_diagnostics=True`` on one of them.
"""

from __future__ import annotations

import json
import math
import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import torch

from urlvr.errors import UrlvrError

try:
    from trl import GRPOTrainer
except ImportError:  # the optional extra is missing
    raise UrlvrError("urlvr.integrations.trl needs TRL; install it with: pip install 'urlvr[trl]'") from None

from urlvr.rewards.base import check_options, get_reward
from urlvr.rollout import HFSampler, score_tokens
from urlvr.scoring import Scores, build_groups, score_groups, step_metrics
from urlvr.stats import STAT_NAMES
from urlvr.tasks.base import Task, get_task
from urlvr.types import Completion, Example, Problem, SamplingSettings

__all__ = ["urlvr_reward_func", "TRLReward", "URLVRGRPOTrainer", "task_dataset", "regroup", "ROLLOUT_COLUMN"]

ROLLOUT_COLUMN = "urlvr_rollout"
"""The private per-row column :class:`URLVRGRPOTrainer` adds for the rewards: group size, EOS facts,
vocabulary size and (when needed) the per-token statistics of the completion."""

_PROBLEM_COLUMNS = ("id", "question", "kind", "data")
_PER_TOKEN_KEYS = ("policy/entropy", "policy/self_certainty")
_EOS_KEYS = ("rollout/truncation_rate",)


# ---------------------------------------------------------------------------------------------------
# pure helpers: grouping, problems, per-token statistics
# ---------------------------------------------------------------------------------------------------
def regroup(keys: Sequence[Hashable], group_size: int | None = None) -> list[range]:
    """Cut rows into groups: runs of equal consecutive keys, then blocks of ``group_size`` within a run.

    >>> regroup(["a", "a", "b", "b"])
    [range(0, 2), range(2, 4)]
    >>> regroup(["a", "a", "a", "a"], group_size=2)
    [range(0, 2), range(2, 4)]
    """
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append(range(start, i))
            start = i
    if group_size is None:
        spans = runs
    else:
        if group_size < 1:
            raise UrlvrError(f"group size must be >= 1, got {group_size}")
        spans = []
        for run in runs:
            if len(run) % group_size:
                raise UrlvrError(
                    f"{len(run)} consecutive completions of one prompt is not a multiple of the group size "
                    f"{group_size}; TRL's sampler must place the num_generations completions of a prompt together, "
                    "and urlvr_reward_func(num_generations=...) must equal GRPOConfig's")
            spans += [range(s, s + group_size) for s in range(run.start, run.stop, group_size)]
    if len({len(s) for s in spans}) > 1:
        raise UrlvrError(
            f"groups of unequal sizes {sorted({len(s) for s in spans})}: two copies of one prompt landed next to each "
            "other; give urlvr_reward_func(num_generations=...) or train with URLVRGRPOTrainer")
    return spans


def _text(x: Any) -> str:
    """A prompt or completion as text: a string as is, a conversation as its last message's content."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[-1], dict):
        content = x[-1].get("content", "")
        if isinstance(content, list):  # content blocks
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return str(x)


def _problem(prompt: str, row: dict[str, Any]) -> Problem:
    """The public problem of one dataset row (columns id, question, kind, data; defaults from the prompt)."""
    data = row.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data) if data else {}
        except json.JSONDecodeError:
            raise UrlvrError(f"the dataset's 'data' column must be a dict or its JSON text, got {data[:40]!r}") \
                from None
    qid, question = row.get("id"), row.get("question")
    return Problem(id=str(qid) if qid is not None else prompt, question=question if question is not None else prompt,
                   kind=str(row.get("kind") or ""), data=dict(data or {}))


# ---------------------------------------------------------------------------------------------------
# the reward adapter
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Row:
    """One completion and what the reward may know about it (pickled across processes)."""

    key: tuple
    prompt: str
    text: str
    token_ids: list[int]
    problem: Problem
    gold: str | None
    rollout: dict[str, Any] = field(default_factory=dict)


def _world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(obj: Any) -> list[Any]:
    """``obj`` from every process, in rank order (``[obj]`` when not distributed)."""
    _, world = _world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


class TRLReward:
    """A urlvr reward as a TRL reward function; build it with :func:`urlvr_reward_func`."""

    def __init__(self, name: str, task: Task | str, equivalence: str = "canonical", *,
                 num_generations: int | None = None, gold_column: str = "answer", log_diagnostics: bool = True,
                 **options: Any):
        self.spec = get_reward(name)
        if self.spec.needs_policy:
            raise UrlvrError(f"reward {name!r} samples from the policy through urlvr's sampler, which TRL does not run; "
                             "train it with 'urlvr train'")
        check_options(self.spec, options)  # a misspelt option fails here, not as a None score in every step
        self.task = get_task(task) if isinstance(task, str) else task
        self.equivalence, self.num_generations = equivalence, num_generations
        self.gold_column, self.log_diagnostics, self.options = gold_column, log_diagnostics, options
        self.needs_logits = self.spec.needs_logits
        self.scorer: HFSampler | None = None
        """Set by :class:`URLVRGRPOTrainer` for rewards that score given continuations (``needs_scorer``)."""
        self.settings: SamplingSettings | None = None
        """TRL's sampling settings, set with the scorer."""
        self.__name__ = re.split(r"[:.]", self.spec.name)[-1]  # TRL logs rewards/<__name__>/mean

    def __repr__(self) -> str:
        return f"urlvr_reward_func({self.spec.name!r}, task={self.task.name!r})"

    # ---- TRL's entry point ----------------------------------------------------------------------
    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]] | None = None,
                 **kwargs: Any) -> list[float | None]:
        rows = self._rows(prompts, completions, completion_ids, kwargs)
        rank, _ = _world()
        per_rank = _all_gather(rows)
        start = sum(len(r) for r in per_rank[:rank])
        everything = [r for part in per_rank for r in part]
        size = (rows[0].rollout.get("group_size") if rows else None) or self.num_generations
        spans = regroup([r.key for r in everything], size)
        groups, labeled = self._groups(everything, spans)
        scores = self._score(groups, labeled, spans, start, len(rows))
        if self.log_diagnostics and kwargs.get("log_metric") is not None:
            self._log(kwargs["log_metric"], groups, labeled, scores, everything)
        out: list[float | None] = [None] * len(rows)
        for g, span in enumerate(spans):
            for i, k in enumerate(span):
                if start <= k < start + len(rows):
                    out[k - start] = float(scores.rewards[g, i]) if scores.valid[g, i] else None
        return out

    # ---- steps ----------------------------------------------------------------------------------
    def _rows(self, prompts, completions, completion_ids, kwargs) -> list[_Row]:
        n = len(prompts)
        wanted = (*_PROBLEM_COLUMNS, self.gold_column, ROLLOUT_COLUMN)  # not TRL's other kwargs (environments...)
        columns = {k: kwargs[k] for k in wanted if isinstance(kwargs.get(k), list) and len(kwargs[k]) == n}
        if self.spec.needs_gold and self.gold_column not in columns:
            raise UrlvrError(f"reward {self.spec.name!r} needs gold answers, but the dataset has no "
                             f"{self.gold_column!r} column; add one or set gold_column=")
        rollouts = columns.get(ROLLOUT_COLUMN) or [{}] * n
        if self.needs_logits and not all(STAT_NAMES[0] in r for r in rollouts):
            raise UrlvrError(f"reward {self.spec.name!r} reads per-token statistics of the rollout, which TRL does not "
                             "hand to reward functions; train with urlvr.integrations.trl.URLVRGRPOTrainer")
        rows = []
        for i in range(n):
            row = {k: v[i] for k, v in columns.items()}
            prompt = _text(prompts[i])
            problem = _problem(prompt, row)
            gold = row.get(self.gold_column)
            rows.append(_Row(
                key=(prompt, problem.id), prompt=prompt, text=_text(completions[i]),
                token_ids=list(completion_ids[i]) if completion_ids is not None else [], problem=problem,
                gold=None if gold is None else str(gold), rollout=dict(rollouts[i] or {}),
            ))
        return rows

    def _groups(self, rows: list[_Row], spans: list[range]):
        """Label-free groups and their labelled twins (:func:`urlvr.scoring.build_groups`)."""
        task, rules, empty = self.task, self.task.rules(self.equivalence), torch.zeros(0)
        completions = []
        for span in spans:
            comps = []
            for k in span:
                r = rows[k]
                comps.append(Completion(
                    text=r.text, answer=rules.extract(r.text), token_ids=torch.tensor(r.token_ids, dtype=torch.long),
                    stats={s: torch.as_tensor(r.rollout[s], dtype=torch.float32) if s in r.rollout else empty
                           for s in STAT_NAMES},
                    truncated=bool(r.rollout.get("truncated", False)),
                    ends_with_eos=bool(r.rollout.get("ends_with_eos", True)),
                ))
            completions.append(comps)
        first = [rows[span.start] for span in spans]
        info = first[0].rollout if first else {}
        return build_groups(task, rules, [Example(r.problem, r.gold) for r in first], [r.prompt for r in first],
                            completions, vocab_size=int(info.get("vocab_size", 0)), eos_token_id=info.get("eos_token_id"))

    def _score(self, groups, labeled, spans, start: int, n_local: int):
        """Each process scores the groups that start in its slice; all processes get all scores."""
        own = [g for g, span in enumerate(spans) if start <= span.start < start + n_local]
        result: dict[str, Any] = {"own": own, "error": None}
        options = dict(self.options)
        if self.spec.needs_scorer:
            if self.scorer is None:
                result["error"] = (f"reward {self.spec.name!r} scores continuations under the policy; train it with "
                                   "urlvr.integrations.trl.URLVRGRPOTrainer, which hands it a scorer")
            options.update(scorer=self.scorer, settings=self.settings)
        if own and result["error"] is None:
            try:
                sc = score_groups(self.spec, options, [groups[g] for g in own], [labeled[g] for g in own])
                result.update(rewards=sc.rewards.tolist(), valid=sc.valid.tolist(), components=sc.components,
                              errors=sc.errors)
            except UrlvrError as e:  # raised on every process below, so none waits in a gather
                result["error"] = str(e)
        parts = _all_gather(result)
        for p in parts:
            if p["error"] is not None:
                raise UrlvrError(p["error"])
        N = len(spans[0]) if spans else 0
        rewards, valid = torch.zeros(len(spans), N), torch.zeros(len(spans), N, dtype=torch.bool)
        components: dict[str, list[float]] = {}
        errors: list[str] = []
        for p in parts:
            if p["own"]:
                rewards[p["own"]] = torch.tensor(p["rewards"])
                valid[p["own"]] = torch.tensor(p["valid"])
                for k, vals in p["components"].items():
                    components.setdefault(k, []).extend(vals)
                errors += p["errors"]
        return Scores(rewards, valid, components, errors)

    def _log(self, log_metric: Callable[[str, float], None], groups, labeled, scores: Scores,
             rows: list[_Row]) -> None:
        """Health, component and oracle metrics through TRL's ``log_metric`` (same values on every process)."""
        has_stats = all(STAT_NAMES[0] in r.rollout for r in rows)
        has_eos = all("truncated" in r.rollout for r in rows)
        drop = (() if has_stats else _PER_TOKEN_KEYS) + (() if has_eos else _EOS_KEYS)
        metrics = {k: v for k, v in step_metrics(groups, labeled, scores).items() if k not in drop}
        for k, v in sorted(metrics.items()):
            if v is not None and math.isfinite(float(v)):
                log_metric(k, float(v))


def urlvr_reward_func(name: str, task: Task | str, equivalence: str = "canonical", **options: Any) -> TRLReward:
    """A TRL reward function that scores whole groups with the urlvr reward ``name``.

    Args:
        name: a registered reward (``urlvr.rewards.reward_names()``) or ``package.module:function``.
        task: the :class:`~urlvr.tasks.base.Task` (or its registered name) whose answer extraction,
            voting key, verifier and gold check the groups carry.
        equivalence: how answers are compared when voting: ``canonical`` or ``math``.
        **options: the reward's options, plus three for the adapter: ``num_generations`` (the group size
            under a plain ``GRPOTrainer``; :class:`URLVRGRPOTrainer` supplies it), ``gold_column``
            (default ``"answer"``) and ``log_diagnostics`` (default True).

    Returns:
        A callable with TRL's reward signature ``(prompts, completions, completion_ids=None, **kwargs)
        -> list[float | None]`` and ``__name__`` = the reward's name. See the module docstring for how
        groups stay whole across processes.
    """
    return TRLReward(name, task, equivalence, **options)


# ---------------------------------------------------------------------------------------------------
# the trainer subclass and the dataset
# ---------------------------------------------------------------------------------------------------
class URLVRGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that gives urlvr rewards the group size, EOS facts and per-token statistics.

    Arguments are ``GRPOTrainer``'s, plus ``stats_batch_size`` (completions per extra forward;
    default ``per_device_train_batch_size``). The extra no-grad forward (see the module docstring) runs
    only when a reward function has ``needs_logits``.
    """

    def __init__(self, *args: Any, stats_batch_size: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stats_batch_size = stats_batch_size or self.args.per_device_train_batch_size
        self._urlvr_prompt_ids: list[list[int]] | None = None

    def _generate(self, prompts: list):
        out = super()._generate(prompts)
        self._urlvr_prompt_ids = out[0]  # (prompt_ids, completion_ids, ...): kept for the statistics forward
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        mode = "train" if self.model.training else "eval"
        size = self.num_generations if mode == "train" else self.num_generations_eval
        tok = getattr(self.processing_class, "tokenizer", self.processing_class)  # a processor holds a tokenizer
        eos, pad_id = set(self.eos_token_ids), tok.pad_token_id
        stats: list[dict[str, torch.Tensor]] = [{} for _ in inputs]
        for f in self.reward_funcs:
            if getattr(f, "spec", None) is not None and f.spec.needs_scorer:
                f.scorer = _Scorer(self.accelerator.unwrap_model(self.model), tok, self.stats_batch_size)
                f.settings = SamplingSettings(self.temperature, 1.0, self.max_completion_length)
        if any(getattr(f, "needs_logits", False) for f in self.reward_funcs):
            try:
                from trl.models.utils import disable_gradient_checkpointing
                quiet = disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs)
            except ImportError:
                quiet = nullcontext()
            with quiet, self.accelerator.autocast():
                stats = score_tokens(self.model, self._urlvr_prompt_ids, completion_ids_list, self.temperature,
                                     pad_id if pad_id is not None else 0, self.stats_batch_size)
        vocab = self.model.config.get_text_config().vocab_size
        rows = []
        for x, ids, st in zip(inputs, completion_ids_list, stats):
            last = ids[-1] if len(ids) else None
            info = {"group_size": size, "vocab_size": vocab, "eos_token_id": tok.eos_token_id,
                    "ends_with_eos": last in eos, "truncated": last not in eos and last != pad_id, **st}
            rows.append({**x, ROLLOUT_COLUMN: info})
        return super()._calculate_rewards(rows, prompts, completions, completion_ids_list)


class _Scorer(HFSampler):
    """The scorer a ``needs_scorer`` reward gets under TRL: :meth:`HFSampler.score` over TRL's policy (no sampling)."""

    def __init__(self, model, tokenizer, batch_size: int):
        super().__init__(model, tokenizer, batch_size=batch_size)

    def generate(self, *args, **kwargs):
        raise UrlvrError("under TRL a reward may score continuations but not sample; train it with 'urlvr train'")


def task_dataset(task: Task | str, split: str = "train", n: int = 256, seed: int = 0, with_answers: bool = True,
                 tokenizer: Any = None, chat: str = "auto", system_prompt: str | None = None):
    """A TRL prompt dataset of a urlvr task's ``split``.

    Columns: ``prompt`` (rendered exactly as ``urlvr train`` renders it when ``tokenizer`` is given:
    :class:`urlvr.prompts.Renderer` with ``chat`` and ``system_prompt``; else the task's template),
    ``id``, ``question``, ``kind``, ``data`` (JSON text of the public problem data) and, with
    ``with_answers``, ``answer`` (gold: for gold rewards and oracle metrics only).
    """
    from datasets import Dataset

    from urlvr.prompts import Renderer

    task = get_task(task) if isinstance(task, str) else task
    render = Renderer(task.prompt, tokenizer, chat, system_prompt) if tokenizer is not None else task.prompt
    rows = []
    for ex in task.examples(split, n, seed=seed):
        p = ex.problem
        row = {"prompt": render(p), "id": p.id, "question": p.question, "kind": p.kind,
               "data": json.dumps(p.data, sort_keys=True)}
        if with_answers:
            row["answer"] = ex.answer
        rows.append(row)
    return Dataset.from_list(rows)
