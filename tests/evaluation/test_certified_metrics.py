"""Certified-majority metrics of ``urlvr eval`` (--certify-eps): pure on hand-made rows, then through the real CLI."""

import json

import numpy as np
import pytest

from cli.test_evaluate import one_error_line, urlvr
from urlvr.certify import mmc
from urlvr.evaluation.harness import RESULTS_SCHEMA, check_schema
from urlvr.evaluation.metrics import CERTIFY_METRICS, benchmark_metrics, summarize
from urlvr.io import read_jsonl


def rows(table):
    """{(seed, id): [answer, ...]}; "4" is right, anything else wrong, None unparsable."""
    out = []
    for (seed, pid), answers in table.items():
        ids: dict = {}
        for i, a in enumerate(answers):
            out.append({"id": pid, "seed": seed, "sample": i, "answer": a, "correct": a == "4", "truncated": False,
                        "cluster": None if a is None else ids.setdefault(a, len(ids)), "length": 3})
    return out


TABLE = {(0, "a"): ["4"] * 8,                 # certified at vote 5, right
         (0, "b"): ["5"] * 6 + ["4", "4"],    # certified at vote 5, wrong
         (0, "c"): ["4", "5"] * 4,            # abstains; leader "4" by string
         (1, "a"): ["4"] * 8,
         (1, "b"): ["4", "5"] * 4,
         (1, "c"): [None] * 8}                # abstains, no leader: wrong


def test_certified_metrics_by_hand():
    metrics, table = benchmark_metrics(rows(TABLE), 2, 8, ["a", "b", "c"], [0, 1], certify_eps=0.1)
    assert metrics["certified_rate"]["per_seed"] == pytest.approx([2 / 3, 1 / 3])
    assert metrics["certified_rate"]["mean"] == pytest.approx(0.5)
    assert metrics["votes_to_certify"]["mean"] == 5.0 and metrics["votes_to_certify"]["per_seed"] == [5.0, 5.0]
    assert metrics["certified_accuracy"]["mean"] == pytest.approx(2 / 3)  # (right, wrong, right)
    assert metrics["certified_accuracy"]["per_seed"] == pytest.approx([0.5, 1.0])
    assert metrics["mmc_maj_accuracy"]["per_seed"] == pytest.approx([2 / 3, 2 / 3])  # a, c | a, b
    assert metrics["mmc_vote_share"]["mean"] == pytest.approx((5 + 5 + 8 + 5 + 8 + 8) / 6 / 8)
    for m in CERTIFY_METRICS:
        assert metrics[m]["ci_low"] <= metrics[m]["mean"] <= metrics[m]["ci_high"]
    assert set(table[0]) == {"id", "avg@2", "maj@2", "pass@8"}  # the per-problem table is unchanged


def test_certify_off_and_no_certificate():
    plain, _ = benchmark_metrics(rows(TABLE), 2, 8, ["a", "b", "c"], [0, 1])
    assert not set(CERTIFY_METRICS) & set(plain)
    with_eps, _ = benchmark_metrics(rows(TABLE), 2, 8, ["a", "b", "c"], [0, 1], certify_eps=0.1)
    assert {m: plain[m] for m in plain} == {m: with_eps[m] for m in plain}  # existing metrics unchanged
    short = {(0, "a"): ["4"] * 3}  # 3 votes cannot certify at 0.1: the conditional metrics are left out
    metrics, _ = benchmark_metrics(rows(short), 2, 3, ["a"], [0], certify_eps=0.1)
    assert metrics["certified_rate"]["mean"] == 0.0 and "votes_to_certify" not in metrics
    assert "certified_accuracy" not in metrics and metrics["mmc_maj_accuracy"]["mean"] == 1.0
    seedless, _ = benchmark_metrics(rows({(0, "a"): ["4"] * 8, (1, "a"): ["4", "5"] * 4}), 2, 8, ["a"], [0, 1],
                                    certify_eps=0.1)
    assert seedless["votes_to_certify"]["per_seed"][0] == 5.0 and np.isnan(seedless["votes_to_certify"]["per_seed"][1])
    assert set(summarize(rows(TABLE), 2)) == {"avg@2", "maj@2", "pass@1", "pass@2", "truncation_rate",
                                              "unparsable_rate", "length_mean", "problems"}


def test_eval_cli_reports_the_certificate(tiny_model, tmp_path):
    out = tmp_path / "eval"
    proc = urlvr("eval", "--model", tiny_model, "--data", "arithmetic", "--option", "digits=1", "--option", "ops=+",
                 "--problems", "4", "--n", "8", "--certify-eps", "0.9", "--max-new-tokens", "16", "--out", out,
                 "--k", "2", "--seeds", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    check_schema(results, RESULTS_SCHEMA)
    assert results["settings"]["certify_eps"] == 0.9 and results["settings"]["n"] == 8
    (bench,) = results["benchmarks"]
    metrics = bench["metrics"]
    # recompute from samples.jsonl: the MMC over each (seed, problem)'s answers in sample order
    samples = read_jsonl(out / "samples.jsonl")
    groups: dict = {}
    for r in sorted(samples, key=lambda r: r["sample"]):
        groups.setdefault((r["seed"], r["id"]), []).append(r)
    certs = []
    for rs in groups.values():
        first = {}
        for r in rs:
            if r["cluster"] is not None:
                first.setdefault(r["cluster"], r["answer"])
        certs.append(mmc([None if r["cluster"] is None else first[r["cluster"]] for r in rs], eps=0.9))
    assert metrics["certified_rate"]["mean"] == pytest.approx(np.mean([c.certified for c in certs]))
    assert metrics["mmc_vote_share"]["mean"] == pytest.approx(np.mean([c.votes_used for c in certs]) / 8)
    if any(c.certified for c in certs):
        used = [c.votes_used for c in certs if c.certified]
        assert metrics["votes_to_certify"]["mean"] == pytest.approx(np.mean(used))
    assert "certified_rate" in proc.stdout and "mmc_maj_accuracy" in proc.stdout
    assert {"avg@2", "maj@2", "pass@8"} <= set(metrics)


def test_eval_cli_rejects_a_bad_level(tiny_model):
    line = one_error_line(urlvr("eval", "--model", tiny_model, "--data", "arithmetic", "--certify-eps", "1.5",
                                "--quiet"))
    assert "--certify-eps must be in [0, 1)" in line
