r"""Evaluation metrics: pure functions of graded samples (no model, no files).

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

from typing import Any, Sequence

import numpy as np

from urlvr.answers import majority

__all__ = ["pass_at_k", "summarize", "problem_stats", "benchmark_metrics", "bootstrap_ci", "paired_difference",
           "BOOTSTRAP"]

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
    """avg@k, maj@k, pass@1..k, truncation and unparsable rates of ``sample_problems``' rows.

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


