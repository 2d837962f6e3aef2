r"""The values that flow through the pipeline: problems, answer rules, rollouts, completions, groups, rewards.

prompts → rollout (:class:`RolloutBatch`) → groups (:class:`Group`, one per prompt) → rewards
(:class:`RewardOutput`) → advantages → loss. Everything here is plain data.

**Gold answers are unreachable from a label-free** :class:`Group` **by construction.** A
:class:`Problem` has no answer field (the gold answer lives only in :class:`Example`, beside the
problem); a group carries :class:`AnswerRules`: plain functions (module-level functions, or partials of
them over option values) and, for math equivalence, the label-free view of the grader, which holds
only verdicts between *predicted* answers. Nothing a group can reach holds a task object, a dataset
or a gold-check cache; ``tests/test_types.py`` walks every attribute, closure, partial and bound
``__self__`` reachable from a group of every registered task to prove it. Only rewards registered
with ``needs_gold=True`` receive a :class:`LabeledGroup`, which adds ``gold``, ``check`` and the
step's batched gold verdicts ``correct``.

Per-token statistics are keyed by name (:data:`urlvr.stats.STAT_NAMES`): ``c.stats["entropy"]``, or
``c.entropy`` as an attribute.

>>> import torch
>>> z = torch.zeros(2)
>>> c = Completion("\\boxed{4}", "4", torch.tensor([5, 2]), {name: z for name in STAT_NAMES})
>>> g = Group(Problem("p", "2+2"), "2+2\n", (c, c))
>>> g.answers, g.cluster_ids(), float(c.entropy.sum())
(['4', '4'], [0, 0], 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from urlvr.answers import EQUIVALENCES, cluster_by_key, extract_boxed, strip_spaces
from urlvr.errors import UrlvrError
from urlvr.stats import STAT_NAMES

__all__ = [
    "Problem", "Example", "AnswerRules", "SamplingSettings", "RolloutBatch", "Completion", "Group", "LabeledGroup",
    "RewardOutput", "STAT_NAMES", "cluster_groups",
]


@dataclass(frozen=True)
class Problem:
    """A problem without its answer: all a label-free reward or verifier may read."""

    id: str
    """Stable identifier, unique within a task and split."""
    question: str
    """The question text, before any prompt template."""
    kind: str = ""
    """Problem type, for per-type reports (e.g. ``add/carry``)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Public structured data for verifiers (e.g. ``{"numbers": [...], "target": 24}``)."""


@dataclass(frozen=True)
class Example:
    """A problem and, when labelled, its gold answer (only gold rewards and oracle metrics read it)."""

    problem: Problem
    answer: str | None = None


def _no_verifier(problem: Problem, answer: str | None) -> bool | None:
    return None


@dataclass(frozen=True)
class AnswerRules:
    """How a task reads and compares answers, as plain functions that close over no gold answer.

    ``extract(text) -> answer | None``; ``canonical(answer) -> key`` (equal keys = same answer);
    ``verify(problem, answer) -> bool | None`` (a programmatic check against the *problem*, or None
    when the task has none); ``equivalence``: how votes compare answers by default (``canonical`` or
    ``math``); ``math``: the function clustering answers into math-verify classes (the label-free view
    of the run's grader, :meth:`urlvr.grading.Grader.clusterer`; default: a shared grader).
    """

    extract: Callable[[str], str | None] = extract_boxed
    canonical: Callable[[str], str] = strip_spaces
    verify: Callable[[Problem, str | None], bool | None] | None = None
    equivalence: str = "canonical"
    math: Callable[[list[str | None]], list[int | None]] | None = field(default=None, repr=False)

    def cluster(self, answers: list[str | None], equivalence: str | None = None) -> list[int | None]:
        """A cluster id per answer, numbered by first occurrence; None for answer-less completions."""
        return self.cluster_many([answers], equivalence)[0]

    def cluster_many(self, answer_lists: Sequence[Sequence[str | None]], equivalence: str | None = None
                     ) -> list[list[int | None]]:
        """:meth:`cluster` of several groups' answers at once: for ``math`` with a grader's clusterer, the
        comparisons of all groups go to its workers together (:meth:`urlvr.grading.Clusterer.cluster_many`)."""
        eq = equivalence or self.equivalence
        if eq == "canonical":
            return [cluster_by_key(list(answers), self.canonical) for answers in answer_lists]
        if eq == "math":
            math = self.math
            if math is None:
                from urlvr.grading import shared_grader

                math = shared_grader().clusterer()
            many = getattr(math, "cluster_many", None)  # a plain function clusters one group at a time
            return many([list(a) for a in answer_lists]) if many else [math(list(a)) for a in answer_lists]
        raise UrlvrError(f"unknown equivalence {eq!r}; choose one of: {', '.join(EQUIVALENCES)}")


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    greedy: bool = False
    """Take the argmax instead of sampling (statistics still use ``temperature``)."""
    embed: bool = False
    """Also keep each completion's mean-pooled final hidden state (:attr:`RolloutBatch.embeddings`)."""


class _StatsByName:
    """Mixin: the entries of ``self.stats`` read as attributes (``x.logprob`` is ``x.stats["logprob"]``)."""

    def __getattr__(self, name: str) -> torch.Tensor:
        stats = self.__dict__.get("stats")
        if stats is None or name.startswith("__") or name not in stats:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
        return stats[name]


@dataclass
class RolloutBatch(_StatsByName):
    """B completions. Token tensors are right-padded to the longest completion, length T."""

    prompt_ids: list[list[int]]
    """Prompt token ids per completion (no padding)."""
    tokens: torch.Tensor  # (B, T) int64, pad after EOS
    mask: torch.Tensor  # (B, T) bool, True on generated tokens (EOS included)
    stats: dict[str, torch.Tensor]
    """Per-token statistics of the rollout policy (B, T) float32 by name (:data:`STAT_NAMES`): ``logprob``
    = log p_t(y_t) under softmax(z/τ), ``entropy`` H(p_t), ``self_certainty`` KL(U || p_t), ``top2_gap``."""
    texts: list[str]
    truncated: torch.Tensor  # (B,) bool, hit max_new_tokens without EOS
    meta: dict = field(default_factory=dict)
    embeddings: torch.Tensor | None = None
    """(B, H) float32, when sampled with ``embed``: the policy's final-layer hidden state (after the final
    norm) mean-pooled over the generated tokens fed back during decoding (every generated token but
    the stop token and, when truncated, the last one), from the same forwards that produced the
    log-probs: no extra pass. Not L2-normalised. Zeros for an empty completion."""

    @property
    def lengths(self) -> torch.Tensor:  # (B,)
        return self.mask.sum(1)

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, idx: list[int]) -> "RolloutBatch":
        """The completions at ``idx``, in that order."""
        ix = torch.as_tensor(idx, dtype=torch.long)
        return RolloutBatch(
            prompt_ids=[self.prompt_ids[i] for i in idx], tokens=self.tokens[ix], mask=self.mask[ix],
            stats={k: v[ix] for k, v in self.stats.items()}, texts=[self.texts[i] for i in idx],
            truncated=self.truncated[ix], meta=dict(self.meta),
            embeddings=None if self.embeddings is None else self.embeddings[ix],
        )


@dataclass(frozen=True)
class Completion(_StatsByName):
    """One sampled completion and the rollout policy's per-token statistics (length T, no padding)."""

    text: str
    answer: str | None
    """Extracted final answer (the task's rule; by default the last ``\\boxed{}``), None if absent."""
    token_ids: torch.Tensor  # (T,) int64, EOS included when produced
    stats: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)
    """(T,) per-token statistics by name; read them as attributes too (``c.logprob``, ``c.entropy``,
    ``c.self_certainty`` = KL(U || p_t), true KL, ``c.top2_gap``)."""
    truncated: bool = False
    """Stopped at max_new_tokens without EOS."""
    ends_with_eos: bool = True
    embedding: torch.Tensor | None = field(default=None, repr=False)
    """(H,) the rollout's mean-pooled final hidden state, when the reward asked for it (``needs_embeddings``)."""


@dataclass(frozen=True)
class Group:
    """All completions of one prompt, as a label-free reward sees them."""

    problem: Problem
    prompt: str
    completions: tuple[Completion, ...]
    rules: AnswerRules = field(default_factory=AnswerRules, repr=False)
    """The task's answer rules: extraction, voting key, verifier, equivalence (no gold)."""
    vocab_size: int = 0
    eos_token_id: int | None = None
    _clusters: dict[str, tuple[int | None, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Cluster ids decided so far, per equivalence: a group is clustered once, so a step's reward and its
    metrics see the same clusters. A copy made by ``dataclasses.replace`` starts empty (it may hold other
    completions)."""

    def __len__(self) -> int:
        return len(self.completions)

    @property
    def answers(self) -> list[str | None]:
        return [c.answer for c in self.completions]

    @property
    def canonical(self) -> Callable[[str], str]:
        """The task's voting key for an answer (equal keys = same answer)."""
        return self.rules.canonical

    @property
    def verify(self) -> Callable[[Problem, str | None], bool | None]:
        """The task's programmatic check against the problem (returns None: the task has none)."""
        return self.rules.verify or _no_verifier

    @property
    def equivalence(self) -> str:
        """How answers are compared when voting: ``canonical`` (task key) or ``math`` (math-verify classes)."""
        return self.rules.equivalence

    def cluster_ids(self, equivalence: str | None = None) -> list[int | None]:
        """Answer-cluster id per completion under ``equivalence`` (default: the group's), decided once per
        group and equivalence (:func:`cluster_groups` decides those of a whole step at once)."""
        return cluster_groups([self], equivalence)[0]


def cluster_groups(groups: Sequence[Group], equivalence: str | None = None) -> list[list[int | None]]:
    """:meth:`Group.cluster_ids` of every group, the ones not clustered yet all at once.

    Groups that share answer rules go to :meth:`AnswerRules.cluster_many` together (``math``: the
    comparisons of every group in the same rounds on the grader's workers); groups with the same answers
    (a labelled twin) are clustered once. Each group remembers its ids: later calls cost nothing and agree.

    >>> z = torch.zeros(1).long()
    >>> g = [Group(Problem(str(i), "?"), "?", tuple(Completion("", a, z) for a in answers))
    ...      for i, answers in enumerate([["4", " 4", None], ["5", "6", "6"]])]
    >>> cluster_groups(g), g[1].cluster_ids()
    ([[0, 0, None], [0, 1, 1]], [0, 1, 1])
    """
    out: list[list[int | None]] = [[] for _ in groups]
    todo: dict[tuple[int, str], dict[tuple, list[int]]] = {}  # (rules, equivalence) -> answers -> groups
    for i, g in enumerate(groups):
        eq = equivalence or g.rules.equivalence
        if eq in g._clusters:
            out[i] = list(g._clusters[eq])
        else:
            todo.setdefault((id(g.rules), eq), {}).setdefault(tuple(g.answers), []).append(i)
    for (_, eq), by_answers in todo.items():
        rules = groups[next(iter(by_answers.values()))[0]].rules
        for answers, ids in zip(by_answers, rules.cluster_many(list(by_answers), eq)):
            for i in by_answers[answers]:
                groups[i]._clusters[eq] = tuple(ids)
                out[i] = list(ids)
    return out


def _no_check(answer: str | None, gold: str) -> bool:
    raise UrlvrError("this group has no gold check; build it with the task's check")


@dataclass(frozen=True)
class LabeledGroup(Group):
    """A group with its gold answer: given only to rewards registered with ``needs_gold=True``."""

    gold: str | None = None
    check: Callable[[str | None, str], bool] = field(default=_no_check, repr=False)
    """The task's gold check ``check(answer, gold)``."""
    correct: tuple[bool, ...] | None = None
    """Gold verdict per completion, computed once per step in one batch (None: not computed)."""

    def label_free(self) -> Group:
        """The plain :class:`Group` view: gold, check and verdicts dropped (the clusters decided so far kept)."""
        group = Group(self.problem, self.prompt, self.completions, self.rules, self.vocab_size, self.eos_token_id)
        group._clusters.update(self._clusters)
        return group


@dataclass
class RewardOutput:
    scores: list[float | None]
    components: dict[str, list[float | None]] = field(default_factory=dict)
