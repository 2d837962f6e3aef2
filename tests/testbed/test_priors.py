import json

import pytest

from urlvr.errors import UrlvrError
from urlvr.loading import resolve_model
from urlvr.testbed.priors import PriorConfig, build_prior, format_card


def test_build_end_to_end_and_cache(tiny_model):
    from pathlib import Path

    card = json.loads((Path(tiny_model) / "prior_card.json").read_text())
    for key in ("greedy_accuracy", "sampled_accuracy", "maj_accuracy", "majority_ratio", "misaligned_share"):
        assert 0.0 <= card["by_kind"]["all"][key] <= 1.0
    assert card["spec"]["prior"] == "aligned"
    spec = PriorConfig(**card["spec"])
    path, card2, reused = build_prior(spec)  # second build: instant, from the cache
    assert reused and str(path) == tiny_model and card2 == card
    assert "maj@8" in format_card(card)


def test_misaligned_targets_follow_the_wrong_rule():
    import random

    from urlvr.tasks import get_task
    from urlvr.testbed.priors import _targets

    task = get_task("arithmetic", digits=2, ops="+")
    exs = [e for e in task.examples("train", 300) if task.systematic_error(e) is not None][:100]
    spec = PriorConfig(prior="misaligned", wrong_rate=1.0)
    targets = _targets(task, exs, spec, random.Random(0))
    assert all(task.extract(t) == task.systematic_error(e) for t, e in zip(targets, exs))
    aligned = _targets(task, exs, PriorConfig(prior="aligned", p_correct=1.0), random.Random(0))
    assert all(task.extract(t) == e.answer for t, e in zip(aligned, exs))


@pytest.mark.parametrize("kw,msg", [
    (dict(prior="confused"), "unknown prior"),
    (dict(p_correct=1.5), "p_correct"),
    (dict(steps=0), "steps"),
    (dict(size="huge", steps=1), "unknown model size"),
])
def test_bad_specs(kw, msg):
    with pytest.raises(UrlvrError, match=msg):
        PriorConfig(**kw)


def test_misaligned_needs_a_wrong_rule():
    with pytest.raises(UrlvrError, match="no systematic wrong rule"):
        build_prior(PriorConfig(prior="misaligned", task="countdown", steps=1))


def test_resolve_model_passes_paths_through_and_refuses_a_prior_on_a_benchmark_file(tmp_path):
    assert resolve_model(str(tmp_path), "arithmetic", {}) == str(tmp_path)
    with pytest.raises(UrlvrError, match="cannot be built on a benchmark file"):
        resolve_model("testbed:aligned", "jsonl", {"path": str(tmp_path / "bench.jsonl")})
