r"""Self-Harmony (arXiv 2511.01191): the pseudo-label is the answer that survives reframing (METHODS-2026.md §4).

Branch O is the group (the trainer's rollout of the original prompt). Branch R is ``n`` completions the
**policy** writes through the sampler under the Reframer prompt (:data:`REFRAMER_PROMPT`: restate the
problem with one strategy, keep numbers and answer consistent, then ``STRATEGY:``, ``REWRITTEN
PROBLEM:``, ``SOLUTION:`` ending in ``\boxed{}``). With ``n_O(a)``, ``n_R(a)`` the counts of answer a in
each branch (empty answers dropped)::

    ŷ = argmax_{a in both branches}  n_O(a) · n_R(a) / (n_O(a) + n_R(a))     (strategy="harmonic")
    r_i = 1[ans(y_i) ≡ ŷ]   for branch O;   no answer in both branches -> no label -> all 0

With equal branch sizes this is the argmax of the harmonic mean of ``p_O = n_O/N`` and ``p_R = n_R/N``.
Ties: larger ``n_O + n_R``, then first appearance in branch O (the official code iterates a set, so its
tie order is arbitrary; ours depends on completion order only through such exact ties).
``laplace=True`` adds 1 to both counts and so also admits answers of one branch (official option, off).
``strategy="cross"`` (the official class default, overridden by its scripts): ŷ = branch R's majority
answer (ties: first occurrence in R).

Options (official defaults where it has them): ``n`` branch-R size (None: the group's size, the code's
N per branch); ``template`` the branch-R prompt with ``{prompt}`` (the rendered branch-O prompt) and/or
``{question}`` (the bare problem); the default prepends the Reframer text to the rendered prompt, right
for a model without a chat template (the testbed); for a chat model write a template carrying your
chat markup around ``{question}``. ``match="exact"``: exact-string answers (the code);
``"group"``: the group's equivalence (canonical key or math-verify classes) over both branches.
``temperature`` / ``max_new_tokens``: None = the run's (the official run samples both branches at the
same τ). ``seed``: branch R is seeded from it, the problem id and the group's (sorted) texts, so a
resumed run draws the same reframings and the label does not depend on completion order.

Components: ``labelled`` (1 when a label exists), ``reframe_answered`` (share of branch R with an
answer), ``reframe_agreement`` (``n_R(ŷ) / n``, 0 without a label), and the cost of branch R per
prompt: ``reframe_tokens`` (tokens generated) and ``reframe_s`` (seconds spent generating).

**Known deviation:** the paper trains branch R too (two GRPO groups per prompt, so the reframing skill
is learned). urlvr's trainer trains the rollout's completions only: branch R is used for the label and
is **not trained**. The configured-but-inactive format penalty and JS consistency term of the official
code are not implemented.

>>> harmony_label(["4", "4", "5", None], ["5", "4", "5", "5"])   # HM: 4 -> 2·1/3, 5 -> 1·3/4
'5'
>>> harmony_label(["4"], ["5"]), harmony_label(["4"], ["5"], laplace=True)   # no common answer; smoothed tie: first
(None, '4')
"""

from __future__ import annotations

import time
from typing import Any, Hashable, Sequence

from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.seeds import derive_seed
from urlvr.types import Group, RewardOutput, SamplingSettings

__all__ = ["self_harmony", "harmony_label", "cross_label", "REFRAMER_PROMPT", "REFRAMER_TEMPLATE",
           "HARMONY_STRATEGIES", "HARMONY_MATCHES"]

HARMONY_STRATEGIES = ("harmonic", "cross")
HARMONY_MATCHES = ("exact", "group")

REFRAMER_PROMPT = """You are the Reframer. Do not solve the original problem head-on. First restate it \
through one of the strategies below to see it from a new angle, then solve the problem you wrote, in the \
style of your restatement.

Strategies:
- Concretize: turn the abstract statement into a concrete story.
- Generalize: turn the specific case into a general formula or procedure, then apply it.
- Domain shift: move the problem to another field, for example from algebra to code or from logic to a game.
- Add noise: add distracting details that do not change the problem.
- Reverse: start from the goal and work backwards.
- Incremental complexity: first solve a small warm-up version to find the pattern, then apply it to the \
original numbers.
- Focus on constraints: present the problem as a puzzle about strict rules.
- Point-of-view shift: tell the problem from the viewpoint of something inside it.

Rules: name your strategy first. Keep the logic, every number and the final answer consistent with the \
original problem. Do not copy five or more consecutive words of the original.

Answer in this format:
STRATEGY: <the strategy you chose>
REWRITTEN PROBLEM: <your restatement>
SOLUTION: <your step-by-step solution, in the style of the restatement>, ending with the final answer \
in \\boxed{}.

ORIGINAL PROBLEM:
"""
"""The Reframer system text (our wording of the paper's prompt; ASCII, so the testbed's character
tokenizer reads every character)."""

REFRAMER_TEMPLATE = REFRAMER_PROMPT.replace("{", "{{").replace("}", "}}") + "{prompt}"
"""Default branch-R prompt: the Reframer text, then the rendered branch-O prompt. Fields ``{prompt}``,
``{question}``; write literal braces doubled."""


def _counts(keys: Sequence[Hashable | None]) -> dict[Hashable, int]:
    out: dict[Hashable, int] = {}
    for k in keys:
        if k is not None:
            out[k] = out.get(k, 0) + 1
    return out


def harmony_label(branch_o: Sequence[Hashable | None], branch_r: Sequence[Hashable | None],
                  laplace: bool = False) -> Hashable | None:
    """``argmax_a n_O(a)·n_R(a)/(n_O(a)+n_R(a))`` over answers in both branches (None = no answer, dropped).

    Ties: larger ``n_O + n_R``, then first appearance (branch O, then branch R). ``laplace``: both counts
    +1, every answer of either branch a candidate. No candidate: None.
    """
    n_o, n_r = _counts(branch_o), _counts(branch_r)
    order = list(dict.fromkeys([k for k in [*branch_o, *branch_r] if k is not None]))  # first appearance
    best, best_key = None, None
    for rank, a in enumerate(order):
        o, r = n_o.get(a, 0), n_r.get(a, 0)
        if laplace:
            o, r = o + 1, r + 1
        elif not (o and r):
            continue
        key = (o * r / (o + r), o + r, -rank)
        if best_key is None or key > best_key:
            best, best_key = a, key
    return best


def cross_label(branch_r: Sequence[Hashable | None]) -> Hashable | None:
    """Branch R's majority answer (ties: first occurrence; None without an answer): the code's "cross"."""
    counts = _counts(branch_r)
    if not counts:
        return None
    top = max(counts.values())
    return next(k for k in branch_r if k is not None and counts[k] == top)


def _reframe_prompt(template: str, group: Group) -> str:
    try:
        return template.format(prompt=group.prompt, question=group.problem.question)
    except (KeyError, IndexError, ValueError) as e:
        raise UrlvrError(f"self_harmony: bad reframe template ({e!r}); use the fields {{prompt}} and/or "
                         "{question} and double literal braces") from None


def _exact(answer: str | None) -> str | None:
    return answer if answer is not None and answer.strip() else None  # empty answers are dropped


@register_reward("self_harmony", family="ensemble", needs_group=True, needs_policy=True,
                 source="Self-Harmony (2511.01191)")
def self_harmony(group: Group, sampler: Any = None, settings: Any = None, n: int | None = None,
                 template: str = REFRAMER_TEMPLATE, strategy: str = "harmonic", match: str = "exact",
                 laplace: bool = False, temperature: float | None = None, max_new_tokens: int | None = None,
                 seed: int = 0) -> RewardOutput:
    """Self-Harmony: reward 1 for the answer that agrees across the question and the policy's reframing.

    The label is the harmonic-mean vote over both branches (the group and the reframed prompt's answers);
    branch R is not trained."""
    if sampler is None:
        raise UrlvrError("self_harmony needs the policy: it is called by the trainer with sampler= and settings=")
    if strategy not in HARMONY_STRATEGIES:
        raise UrlvrError(f"unknown self_harmony strategy {strategy!r}; choose one of: {', '.join(HARMONY_STRATEGIES)}")
    if match not in HARMONY_MATCHES:
        raise UrlvrError(f"unknown self_harmony match {match!r}; choose one of: {', '.join(HARMONY_MATCHES)}")
    if "{prompt}" not in template and "{question}" not in template:
        raise UrlvrError("self_harmony: the reframe template has neither {prompt} nor {question}, so branch R "
                         "would not see the problem; put one of them in it")
    size = len(group) if n is None else n
    if not isinstance(size, int) or size < 1:
        raise UrlvrError(f"self_harmony: n (branch-R completions) must be an int >= 1, got {n!r}")
    run = settings if settings is not None else SamplingSettings()
    reframe = SamplingSettings(temperature=run.temperature if temperature is None else temperature, top_p=run.top_p,
                               max_new_tokens=max_new_tokens or run.max_new_tokens)
    t0 = time.perf_counter()
    batch = sampler.generate([_reframe_prompt(template, group)] * size, reframe,
                             seed=derive_seed(seed, "self_harmony", group.problem.id,
                                              *sorted(c.text for c in group.completions)))
    seconds = time.perf_counter() - t0
    answers_o = list(group.answers)
    answers_r = [group.rules.extract(t) for t in batch.texts]
    if match == "exact":
        keys_o, keys_r = [_exact(a) for a in answers_o], [_exact(a) for a in answers_r]
    else:
        ids = group.rules.cluster([_exact(a) for a in answers_o + answers_r])
        keys_o, keys_r = ids[: len(answers_o)], ids[len(answers_o):]
    label = harmony_label(keys_o, keys_r, laplace) if strategy == "harmonic" else cross_label(keys_r)
    scores = [float(label is not None and k == label) for k in keys_o]
    N = len(group)
    per_prompt = lambda v: [float(v)] * N  # noqa: E731  (a per-prompt value: the step mean is the prompt mean)
    return RewardOutput(scores, {
        "labelled": per_prompt(label is not None),
        "reframe_answered": per_prompt(sum(k is not None for k in keys_r) / size),
        "reframe_agreement": per_prompt(sum(k == label for k in keys_r) / size if label is not None else 0.0),
        "reframe_tokens": per_prompt(int(batch.mask.sum())),
        "reframe_s": per_prompt(seconds),
    })
