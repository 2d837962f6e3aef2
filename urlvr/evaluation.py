r"""Evaluation core: sample n completions per problem with pinned settings, grade, summarise, compare.

Per problem and sampling seed, from n >= k completions in sample order:

- avg@k: mean gold accuracy of the first k samples; reported as the mean over problems, and as
  mean ± std over seeds of the per-seed means;
- pass@j for every j <= n: unbiased estimator ``1 - C(n-c, j) / C(n, j)`` from the n samples with c
  correct, in the numerically stable product form ``1 - Π_{i=n-c+1}^{n} (1 - j/i)``;
- maj@k: the majority answer of the first k samples is correct. Votes go to equivalence classes of
  parsed answers (``math``: math-verify classes, so ``\frac{1}{2}``, ``0.5`` and ``1/2`` are one
  vote; ``canonical``: the task's voting key); unparsable answers do not vote; a tie goes to the class
  seen first; a problem with no parsable answer counts as wrong. The winner is graded through the
  first completion of its class.

Uncertainty: a seeded percentile bootstrap over problems (each problem's value is its mean over
seeds, so resampling problems keeps the seed average), 1000 resamples and 95 % by default. Two
results on the same problems and seeds are compared per problem: the mean difference, a paired
bootstrap CI over problems and a two-sided sign-flip permutation p-value (under "no difference"
each problem's trained-minus-base difference is as likely to have either sign).

>>> round(pass_at_k(4, 1, 2), 4)
0.5
>>> pass_at_k(4, 0, 2), pass_at_k(4, 3, 2)
(0.0, 1.0)
>>> lo, hi = bootstrap_ci([0.0, 1.0, 1.0, 0.0, 1.0])
>>> lo <= 0.6 <= hi
True
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

import numpy as np

from urlvr.errors import UrlvrError
from urlvr.rewards.voting import cluster_ids, majority
from urlvr.rollout import SamplingSettings

__all__ = [
    "pass_at_k", "sample_problems", "summarize", "gold_checks", "stream_seed", "problem_stats",
    "benchmark_metrics", "bootstrap_ci", "paired_difference", "RESULTS_SCHEMA", "check_schema",
    "settings_differences", "compare_results",
]

BOOTSTRAP = {"resamples": 1000, "permutations": 10000, "seed": 0, "level": 0.95}
"""Pinned resampling settings (recorded in every result)."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021), product form."""
    if not 0 < k <= n:
        raise ValueError(f"need 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def stream_seed(*parts: Any) -> int:
    """A sampling seed from named parts (stable across runs and Python versions)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


# ---- sampling and grading ---------------------------------------------------------------------------

def gold_checks(task, answers: Sequence[str | None], golds: Sequence[str | None]) -> list[bool]:
    """``task.check(answer, gold)`` for every pair; one batched math-verify call for ``math`` tasks.

    A ``jsonl`` task with the ``math`` grader checks with the process-wide grader's gold relation
    (math-verify in worker processes, pinned config, cached); sending the pairs in one batch keeps
    every worker busy instead of one round trip per completion. Verdicts equal ``task.check``'s.
    """
    if getattr(task, "grader", None) == "math":
        from urlvr.grading import default_grader

        todo = [i for i, (a, g) in enumerate(zip(answers, golds)) if a is not None and g is not None]
        verdicts = default_grader().equivalent_many([(golds[i], answers[i]) for i in todo])
        out = [False] * len(answers)
        for i, v in zip(todo, verdicts):
            out[i] = bool(v)
        return out
    return [bool(g is not None and task.check(a, g)) for a, g in zip(answers, golds)]


def sample_problems(sampler, task, examples, k: int, settings: SamplingSettings, seed: int,
                    equivalence: str = "canonical", render: Callable | None = None) -> list[dict]:
    """k completions per example; one row per completion.

    Row keys: id, kind, seed, sample, completion, answer, correct, cluster, truncated, length.
    ``render(problem) -> str`` builds the prompt (default ``task.prompt``; the evaluation CLI adds a
    system prompt or a chat template there).
    """
    render = render or task.prompt
    prompts = [render(e.problem) for e in examples for _ in range(k)]
    batch = sampler.generate(prompts, settings, seed=seed)
    answers = [task.extract(t) for t in batch.texts]
    correct = gold_checks(task, answers, [e.answer for e in examples for _ in range(k)])
    rows = []
    for j, ex in enumerate(examples):
        ids = cluster_ids(answers[j * k : (j + 1) * k], equivalence, task.canonical)
        for i in range(k):
            b = j * k + i
            rows.append({
                "id": ex.problem.id, "kind": ex.problem.kind, "seed": seed, "sample": i,
                "completion": batch.texts[b], "answer": answers[b], "correct": correct[b], "cluster": ids[i],
                "truncated": bool(batch.truncated[b]), "length": int(batch.mask[b].sum()),
            })
    return rows


# ---- per-problem statistics -----------------------------------------------------------------------

def problem_stats(rows: Sequence[dict], k: int) -> dict[tuple[Any, str], dict[str, float]]:
    """Statistics of each (seed, problem) group of rows, keyed ``(seed, id)``.

    Per group of n completions (sample order): ``avg@k`` and ``maj@k`` over the first k, ``pass@j``
    for j = 1..n over all n, and the shares of truncated and unparsable completions and mean length.
    """
    groups: dict[tuple[Any, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("seed"), r["id"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["sample"])
        n, c, first = len(rs), sum(r["correct"] for r in rs), rs[:k]
        winner, _ = majority([r["cluster"] for r in first], empty="drop")
        stats = {
            f"avg@{k}": sum(r["correct"] for r in first) / len(first),
            f"maj@{k}": float(winner is not None and next(r["correct"] for r in first if r["cluster"] == winner)),
            **{f"pass@{j}": pass_at_k(n, c, j) for j in range(1, n + 1)},
            "truncation_rate": sum(r["truncated"] for r in rs) / n,
            "unparsable_rate": sum(r["answer"] is None for r in rs) / n,
            "length_mean": sum(r["length"] for r in rs) / n,
        }
        out[key] = stats
    return out


def summarize(rows: Sequence[dict], k: int) -> dict[str, float]:
    """avg@k, maj@k, pass@1..k, truncation and unparsable rates of sample_problems' rows.

    Means over (seed, problem) groups; with one seed (the trainer's validation) that is the mean over
    problems. ``problems`` counts distinct problem ids.
    """
    stats = list(problem_stats(rows, k).values())
    names = [f"avg@{k}", f"maj@{k}", *(f"pass@{j}" for j in range(1, k + 1)), "truncation_rate",
             "unparsable_rate", "length_mean"]
    out = {m: sum(s.get(m, 0.0) for s in stats) / max(1, len(stats)) for m in names}
    out["problems"] = len({r["id"] for r in rows})
    return out


# ---- uncertainty ----------------------------------------------------------------------------------

def _per_problem(values) -> np.ndarray:
    """(P,) per-problem values: a (P,) array as is, a (P, S) array averaged over seeds."""
    v = np.asarray(values, dtype=float)
    return v.mean(axis=1) if v.ndim == 2 else v


def bootstrap_ci(values, resamples: int = BOOTSTRAP["resamples"], level: float = BOOTSTRAP["level"],
                 seed: int = BOOTSTRAP["seed"]) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over problems; ``values`` is (P,) or (P, S) (seed-averaged)."""
    v = _per_problem(values)  # (P,)
    if v.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)  # (B,)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_difference(base, trained, resamples: int = BOOTSTRAP["resamples"],
                      permutations: int = BOOTSTRAP["permutations"], level: float = BOOTSTRAP["level"],
                      seed: int = BOOTSTRAP["seed"]) -> dict[str, Any]:
    """Trained minus base on the same problems: mean difference, paired bootstrap CI, sign-flip p.

    ``base`` and ``trained`` are (P,) or (P, S) arrays with rows on the same problems. The p-value is
    two-sided, ``(1 + #{|mean(s·d)| >= |mean(d)|}) / (1 + permutations)`` over random signs s.

    >>> r = paired_difference([0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0])
    >>> r["diff"], r["p_value"] < 0.05
    (0.875, True)
    """
    d = _per_problem(trained) - _per_problem(base)  # (P,)
    lo, hi = bootstrap_ci(d, resamples, level, seed)
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(permutations, d.size))  # (R, P)
    null = np.abs((signs * d).mean(axis=1))  # (R,)
    p = (1 + int((null >= observed - 1e-12).sum())) / (1 + permutations)
    return {"diff": float(d.mean()), "ci_low": lo, "ci_high": hi, "p_value": float(p), "problems": int(d.size)}


def benchmark_metrics(rows: Sequence[dict], k: int, n: int, ids: Sequence[str], seeds: Sequence[Any],
                      greedy_rows: Sequence[dict] = (), **bootstrap) -> tuple[dict, list[dict]]:
    """Metrics of one benchmark and its per-problem table.

    Each metric: ``mean`` over problems and seeds, ``std_over_seeds`` (sample std of the per-seed
    means; 0 with one seed), ``per_seed`` means and the bootstrap ``ci_low``/``ci_high`` over
    problems. ``greedy_accuracy`` (one greedy completion per problem) is added when ``greedy_rows``
    are given. The per-problem table keeps avg@k, maj@k and pass@n per seed for paired comparisons.
    """
    names = [f"avg@{k}", f"maj@{k}", *(f"pass@{j}" for j in range(1, n + 1)), "truncation_rate",
             "unparsable_rate", "length_mean"]
    stats = problem_stats(rows, k)
    metrics = {}
    for m in names:
        mat = np.array([[stats[(s, i)][m] for s in seeds] for i in ids], dtype=float)  # (P, S)
        metrics[m] = _describe(mat, **bootstrap)
    table = [{"id": i, **{m: [stats[(s, i)][m] for s in seeds] for m in (f"avg@{k}", f"maj@{k}", f"pass@{n}")}}
             for i in ids]
    if greedy_rows:
        by_id = {r["id"]: bool(r["correct"]) for r in greedy_rows}
        metrics["greedy_accuracy"] = _describe(np.array([[by_id[i]] for i in ids], dtype=float), **bootstrap)
        for row in table:
            row["greedy"] = by_id[row["id"]]
    return metrics, table


def _describe(mat: np.ndarray, **bootstrap) -> dict[str, Any]:
    """Summary of a (P, S) metric array."""
    per_seed = mat.mean(axis=0)  # (S,)
    lo, hi = bootstrap_ci(mat, **bootstrap)
    std = float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0
    return {"mean": float(mat.mean()), "std_over_seeds": std, "ci_low": lo, "ci_high": hi,
            "per_seed": [float(x) for x in per_seed]}


# ---- results: schema and comparison ---------------------------------------------------------------

_NUM = (int, float)
_STR_OR_NONE = (str, type(None))
_METRIC = {"mean": _NUM, "std_over_seeds": _NUM, "ci_low": _NUM, "ci_high": _NUM, "per_seed": [_NUM]}
RESULTS_SCHEMA: dict[str, Any] = {
    "schema": str,
    "created": str,
    "command": str,
    "model": {"name": str, "path": str, "weights_sha256": str, "weights_files": [{"name": str, "bytes": int}]},
    "settings": {
        "k": int, "n": int, "seeds": [int], "temperature": _NUM, "top_p": _NUM, "max_new_tokens": int,
        "greedy": bool, "system_prompt": _STR_OR_NONE, "chat": bool, "template_override": _STR_OR_NONE,
        "batch_size": int, "device": str, "dtype": str,
        "bootstrap": {"resamples": int, "permutations": int, "seed": int, "level": _NUM},
    },
    "grader": {"version": str, "config": dict, "stats": dict},
    "versions": {"python": str, "torch": str, "transformers": str, "math-verify": str, "numpy": str, "urlvr": str},
    "benchmarks": [{
        "name": str,
        "data": {"task": str, "path": _STR_OR_NONE, "sha256": str, "options": dict, "split": str,
                 "problems": int, "limit": (int, type(None))},
        "grader": str, "equivalence": str, "template": str,
        "metrics": {"*": _METRIC},
        "per_problem": [{"id": str, "*": (list, bool)}],
        "cross_check": (dict, type(None)),
    }],
    "seconds": _NUM,
}
"""Required keys and types of ``results.json``: a type or tuple of types, a nested dict, a one-item
list (every element), and ``"*"`` for every other key of a dict. Extra keys are allowed."""


def check_schema(obj: Any, schema: Any = RESULTS_SCHEMA, where: str = "results") -> None:
    """Raise UrlvrError naming the first key that is missing or of the wrong type."""
    if isinstance(schema, dict):
        if not isinstance(obj, dict):
            raise UrlvrError(f"{where}: expected an object, got {type(obj).__name__}")
        for key, sub in schema.items():
            if key == "*":
                for other in set(obj) - set(schema):
                    check_schema(obj[other], sub, f"{where}.{other}")
            elif key not in obj:
                raise UrlvrError(f"{where}: missing key {key!r}")
            else:
                check_schema(obj[key], sub, f"{where}.{key}")
    elif isinstance(schema, list):
        if not isinstance(obj, list):
            raise UrlvrError(f"{where}: expected a list, got {type(obj).__name__}")
        for i, item in enumerate(obj):
            check_schema(item, schema[0], f"{where}[{i}]")
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        if not isinstance(obj, types) or (isinstance(obj, bool) and bool not in types):  # bool is an int
            names = " or ".join(t.__name__ for t in types)
            raise UrlvrError(f"{where}: expected {names}, got {type(obj).__name__}")


COMPARED_SETTINGS = ("k", "n", "seeds", "temperature", "top_p", "max_new_tokens", "system_prompt", "chat",
                     "template_override")
"""Settings two results must share to be compared (besides data, template, grader per benchmark)."""
COMPARED_BENCHMARK = ("grader", "equivalence", "template")
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
