"""Invariant: every registered reward is equivariant to the order of the completions in a group."""

import dataclasses
import inspect

import pytest
import torch

from rewards._groups import FakeSampler, completion, group
from urlvr.experimental import reset_rnd
from urlvr.rewards import call_reward, get_reward, reward_names
from urlvr.rollout import SamplingSettings
from urlvr.tasks import get_task
from urlvr.tasks.base import Problem

PERMUTATION = [3, 0, 4, 1, 2]
TEXTS = ["so \\boxed{2}", "\\boxed{3}", "it is \\boxed{2}", "no answer", "\\boxed{5}"]
LINEAR = Problem("2x+1=5", "2x+1=5", data={"a": 2, "b": 1, "c": 5})
CODE = Problem("inc", "inc(x)", data={"tests": ["assert inc(1) == 2", "assert inc(0) == 1"]})
CODE_TEXTS = ["def inc(x): return x + 1", "def inc(x): return 2", "```python\ndef inc(x):\n    return x + 1\n```",
              "oops", "def inc(x): return 1"]


def distinct_rows(i: int, n: int) -> list[list[float]]:
    """Per-token logits that differ between completions and positions (so certainty rewards differ)."""
    return [[float((i + 1) * (t % 3)), float(i), 0.5 * t, 0.0] for t in range(n)]


def make(name: str):
    """A group and the options that let ``name`` run on it."""
    spec = get_reward(name)
    texts, problem, kw = TEXTS, Problem("1+1", "1+1", data={"a": 1, "op": "+", "b": 1}), {}
    if name == "verifier":
        texts, problem, kw = ["\\boxed{2}", "\\boxed{x=2}", "\\boxed{3}", "none", "\\boxed{4/2}"], LINEAR, {
            "verify": get_task("linear").verify}
    if name == "code_tests":
        texts, problem = CODE_TEXTS, CODE
    if name == "snr":  # ties for the runner-up go to the answer seen first (the source's rule): none here
        texts = TEXTS[:4] + ["\\boxed{2}"]
    if spec.needs_gold:
        kw["gold"] = "2"
    comps = [completion(t, distinct_rows(i, len(t) + 1)) for i, t in enumerate(texts)]
    if spec.needs_embeddings:  # the rollout's pooled states, distinct per completion
        comps = [dataclasses.replace(c, embedding=torch.tensor([1.0, i, (i * i) % 3, 0.5])) for i, c in enumerate(comps)]
    g = group(comps, problem=problem, **kw)
    options = {"mix": {"rewards": {"majority_vote": 1.0, "self_certainty": 0.5, "token_entropy": 0.25}},
               "semi_supervised": {"alpha": 0.0, "intrinsic": "semantic_cluster"},
               # SCOPE is order-dependent by design (consecutive subgroups, vote sets drawn by position):
               # one subgroup voting on every response is where its rule is order-invariant
               "scope": {"g": len(texts), "votes": len(texts)}}.get(name, {})
    if spec.needs_policy:
        options.update(sampler=FakeSampler(lambda p: "\\boxed{True}" if "\\boxed{2}" in p else "\\boxed{2} no"),
                       settings=SamplingSettings(max_new_tokens=8))
    return g, options


def score(name, g, options):
    reset_rnd()  # the one stateful reward: compare both orders from the same (fresh) state
    return call_reward(get_reward(name), g, options).scores


@pytest.mark.parametrize("name", reward_names())
def test_rewards_do_not_depend_on_completion_order(name, request):
    g, options = make(name)
    if get_reward(name).needs_scorer:  # the real tiny model scores the continuations
        from urlvr.loading import load_model
        from urlvr.rollout import HFSampler

        scorer = HFSampler(*load_model(request.getfixturevalue("tiny_model"), "cpu"))
        options.update(scorer=scorer, settings=SamplingSettings())
        if "initial_scorer" in inspect.signature(get_reward(name).fn).parameters:
            options["initial_scorer"] = scorer
    before = score(name, g, options)
    permuted = dataclasses.replace(g, completions=tuple(g.completions[i] for i in PERMUTATION))
    after = score(name, permuted, options)
    expected = [before[i] for i in PERMUTATION]
    assert [s is None for s in after] == [s is None for s in expected]
    assert [s for s in after if s is not None] == pytest.approx([s for s in expected if s is not None], abs=1e-6)
    assert len({s for s in before if s is not None}) > 1 or name == "random", f"{name}: constant scores test nothing"
    sampler = options.get("sampler")
    if sampler is not None:
        seeds = [seed for _, _, seed in sampler.calls]
        assert seeds[: len(seeds) // 2] == seeds[len(seeds) // 2:]
