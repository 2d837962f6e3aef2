"""Comparing two evaluations (base vs trained) problem by problem: refuse unlike settings, pair, test.

Two ``results.json`` files are comparable when they share the sampling settings, k, n, seeds, data,
template and grader (:func:`settings_differences` names each difference; ``urlvr compare`` refuses
them unless ``--force``). :func:`compare_results` pairs problems by id and reports, per benchmark and
metric, the mean difference, a paired bootstrap CI over problems and a two-sided sign-flip p-value
(:func:`urlvr.evaluation.metrics.paired_difference`). :func:`transitions` counts, per benchmark, the
problems each side solves by majority vote and how they moved (solved → unsolved, unsolved → solved):
a mean can hide both a gain and a loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from urlvr.errors import UrlvrError
from urlvr.evaluation.metrics import _per_problem, paired_difference

__all__ = ["COMPARED_SETTINGS", "settings_differences", "compare_results", "transitions"]

COMPARED_SETTINGS = ("k", "n", "seeds", "temperature", "top_p", "max_new_tokens", "system_prompt", "chat",
                     "template_override")
"""Settings two results must share to be compared (besides data, template, grader per benchmark)."""
COMPARED_BENCHMARK = ("grader", "equivalence", "template", "rendering")
"""Per benchmark: a different grader, answer classes, template or rendered prompt (chat template, system
prompt) makes two results incomparable."""
_DATA_KEYS = ("task", "sha256", "options", "split", "problems", "limit")  # not the path: same bytes, same data


def settings_differences(base: dict, trained: dict) -> list[str]:
    """Human-readable differences that make two results incomparable (empty when comparable)."""
    out = []

    def diff(label: str, a: Any, b: Any) -> None:
        if a != b:
            out.append(f"{label}: {a!r} vs {b!r}")

    for key in COMPARED_SETTINGS:
        diff(key, base["settings"].get(key), trained["settings"].get(key))
    diff("grader version", base["grader"]["version"], trained["grader"]["version"])
    bb = {b["name"]: b for b in base["benchmarks"]}
    tb = {b["name"]: b for b in trained["benchmarks"]}
    diff("benchmarks", sorted(bb), sorted(tb))
    for name in sorted(set(bb) & set(tb)):
        for key in COMPARED_BENCHMARK:
            diff(f"{name} {key}", bb[name][key], tb[name][key])
        for key in _DATA_KEYS:
            diff(f"{name} data {key}", bb[name]["data"].get(key), tb[name]["data"].get(key))
    return out


def compare_results(base: dict, trained: dict, **bootstrap) -> list[dict]:
    """Paired comparisons per benchmark and metric (avg@k, maj@k, pass@n, greedy when both have it).

    Problems are paired by id (the ids both results hold); per problem the value is its mean over
    the seeds both results hold (normally all of them: differing seeds are refused without --force).
    """
    out = []
    tb = {b["name"]: b for b in trained["benchmarks"]}
    for b in base["benchmarks"]:
        t = tb.get(b["name"])
        if t is None:
            continue
        rows_b = {r["id"]: r for r in b["per_problem"]}
        rows_t = {r["id"]: r for r in t["per_problem"]}
        ids = [i for i in rows_b if i in rows_t]
        if not ids:
            raise UrlvrError(f"{b['name']}: the two results share no problem ids; nothing to pair")
        seeds_b, seeds_t = base["settings"]["seeds"], trained["settings"]["seeds"]
        common = [s for s in seeds_b if s in seeds_t]
        for metric in [m for m in rows_b[ids[0]] if m != "id" and m in rows_t[ids[0]]]:
            vb = _paired_values([rows_b[i][metric] for i in ids], seeds_b, common)
            vt = _paired_values([rows_t[i][metric] for i in ids], seeds_t, common)
            out.append({"benchmark": b["name"], "metric": "greedy_accuracy" if metric == "greedy" else metric,
                        "base": float(_per_problem(vb).mean()), "trained": float(_per_problem(vt).mean()),
                        **paired_difference(vb, vt, **bootstrap)})
    return out


def _paired_values(values: list, seeds: list, common: list) -> np.ndarray:
    """Per-problem values restricted to the ``common`` seeds: (P, S), or (P,) for greedy booleans.

    Without a common seed (a forced comparison) each side is averaged over its own seeds.
    """
    v = np.array(values, dtype=float)
    if v.ndim == 1:
        return v  # (P,)
    if not common:
        return v.mean(axis=1)  # (P,)
    return v[:, [seeds.index(s) for s in common]]  # (P, S)



def transitions(base: dict, trained: dict) -> list[dict]:
    """Per benchmark: how many paired problems moved between solved and unsolved under majority vote.

    A problem is *solved* by one side when its ``maj@k``, averaged over the seeds both results hold (its
    own seeds when none is shared), is at least 0.5. Returns rows ``{benchmark, metric, problems, solved_base,
    solved_trained, kept, lost, gained, never}`` (``lost``: solved → unsolved, ``gained``: unsolved → solved).
    """
    out = []
    tb = {b["name"]: b for b in trained["benchmarks"]}
    common = [s for s in base["settings"]["seeds"] if s in trained["settings"]["seeds"]]
    for b in base["benchmarks"]:
        t = tb.get(b["name"])
        rows_b = {r["id"]: r for r in b["per_problem"]}
        rows_t = {r["id"]: r for r in t["per_problem"]} if t is not None else {}
        ids = [i for i in rows_b if i in rows_t]
        metric = next((m for m in (rows_b[ids[0]] if ids else {}) if m.startswith("maj@")), None)
        if metric is None or metric not in rows_t[ids[0]]:
            continue
        solved = []
        for rows, seeds in ((rows_b, base["settings"]["seeds"]), (rows_t, trained["settings"]["seeds"])):
            v = _per_problem(_paired_values([rows[i][metric] for i in ids], seeds, common))  # (P,)
            solved.append(v >= 0.5)
        sb, st = solved
        out.append({"benchmark": b["name"], "metric": metric, "problems": len(ids),
                    "solved_base": int(sb.sum()), "solved_trained": int(st.sum()), "kept": int((sb & st).sum()),
                    "lost": int((sb & ~st).sum()), "gained": int((~sb & st).sum()),
                    "never": int((~sb & ~st).sum())})
    return out
