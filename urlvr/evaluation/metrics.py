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

Certified self-consistency (``certify_eps`` > 0, :mod:`urlvr.certify`): the Martingale Majority
Certificate runs over each problem's n answers in sample order (voting keys: the answer string of
each equivalence class's first completion; ties by that string; unparsable answers are elsewhere
votes). The samples are i.i.d., so stopping at the first certifying vote of the drawn sequence *is*
the adaptive-votes procedure with budget n. Per problem: certified (0/1), votes used (n when it
abstains), and the returned leader graded through its class's first completion:

- ``certified_rate``: share of problems certified within the n votes at level ε;
- ``votes_to_certify``: mean votes used by the certified problems (pooled over problems and seeds);
- ``certified_accuracy``: gold accuracy of the certified leader on the certified problems (pooled);
- ``mmc_maj_accuracy``: gold accuracy of the leader returned, certified or abstained (the
  adaptive-votes majority answer; no parsable answer counts as wrong);
- ``mmc_vote_share``: mean votes used over all problems / n (1 − it is the sampling saved).

The two conditional metrics are left out when no problem certified; a seed without a certified
problem has a NaN per-seed value (left out of ``std_over_seeds``).

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
from urlvr.certify import mmc

__all__ = ["pass_at_k", "summarize", "problem_stats", "benchmark_metrics", "bootstrap_ci", "paired_difference",
           "BOOTSTRAP", "certificate_stats", "CERTIFY_METRICS"]

BOOTSTRAP = {"resamples": 1000, "permutations": 10000, "seed": 0, "level": 0.95}
"""Pinned resampling settings (recorded in every result)."""
CERTIFY_METRICS = ("certified_rate", "votes_to_certify", "certified_accuracy", "mmc_maj_accuracy", "mmc_vote_share")
"""Reported when ``certify_eps`` > 0 (module docstring)."""


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

def certificate_stats(rs: Sequence[dict], eps: float) -> dict[str, float]:
    """The MMC over one (seed, problem) group's rows in sample order (module docstring).

    ``certified`` and ``mmc_correct`` are 0/1, ``votes_used`` a count; ``certified_votes`` and
    ``certified_correct`` are those values on a certified problem and 0 otherwise (the numerators of
    the pooled conditional means).

    >>> rows = [{"sample": i, "cluster": 0, "answer": "4", "correct": True} for i in range(6)]
    >>> certificate_stats(rows, 0.1)["votes_used"], certificate_stats(rows[:4], 0.1)["certified"]
    (5.0, 0.0)
    """
    rs = sorted(rs, key=lambda r: r["sample"])
    first: dict[int, dict] = {}
    for r in rs:
        if r["cluster"] is not None:
            first.setdefault(r["cluster"], r)
    keys = {c: str(r["answer"]) for c, r in first.items()}
    votes = [None if r["cluster"] is None else keys[r["cluster"]] for r in rs]
    cert = mmc(votes, eps=eps)
    by_key = {keys[c]: r for c, r in first.items()}
    correct = float(cert.leader is not None and bool(by_key[cert.leader]["correct"]))
    certified = float(cert.certified)
    return {"certified": certified, "votes_used": float(cert.votes_used), "mmc_correct": correct,
            "certified_votes": certified * cert.votes_used, "certified_correct": certified * correct}


def problem_stats(rows: Sequence[dict], k: int, certify_eps: float = 0.0) -> dict[tuple[Any, str], dict[str, float]]:
    """Statistics of each (seed, problem) group of rows, keyed ``(seed, id)``.

    Per group of n completions (sample order): ``avg@k`` and ``maj@k`` over the first k, ``pass@j``
    for j = 1..n over all n, and the shares of truncated and unparsable completions and mean length;
    with ``certify_eps`` > 0 also :func:`certificate_stats` over all n.
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
        if certify_eps > 0:
            stats.update(certificate_stats(rs, certify_eps))
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
                      greedy_rows: Sequence[dict] = (), certify_eps: float = 0.0,
                      **bootstrap) -> tuple[dict, list[dict]]:
    """Metrics of one benchmark and its per-problem table.

    Each metric: ``mean`` over problems and seeds, ``std_over_seeds`` (sample std of the per-seed
    means; 0 with one seed), ``per_seed`` means and the bootstrap ``ci_low``/``ci_high`` over
    problems. ``greedy_accuracy`` (one greedy completion per problem) is added when ``greedy_rows``
    are given, the :data:`CERTIFY_METRICS` when ``certify_eps`` > 0. The per-problem table keeps
    avg@k, maj@k and pass@n per seed for paired comparisons.
    """
    names = [f"avg@{k}", f"maj@{k}", *(f"pass@{j}" for j in range(1, n + 1)), "truncation_rate",
             "unparsable_rate", "length_mean"]
    stats = problem_stats(rows, k, certify_eps)
    metrics = {}
    for m in names:
        mat = np.array([[stats[(s, i)][m] for s in seeds] for i in ids], dtype=float)  # (P, S)
        metrics[m] = _describe(mat, **bootstrap)
    if certify_eps > 0:
        grid = lambda m: np.array([[stats[(s, i)][m] for s in seeds] for i in ids], dtype=float)  # noqa: E731  (P, S)
        certified = grid("certified")
        metrics["certified_rate"] = _describe(certified, **bootstrap)
        if certified.sum() > 0:
            metrics["votes_to_certify"] = _describe_ratio(grid("certified_votes"), certified, **bootstrap)
            metrics["certified_accuracy"] = _describe_ratio(grid("certified_correct"), certified, **bootstrap)
        metrics["mmc_maj_accuracy"] = _describe(grid("mmc_correct"), **bootstrap)
        metrics["mmc_vote_share"] = _describe(grid("votes_used") / n, **bootstrap)
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


def _describe_ratio(num: np.ndarray, den: np.ndarray, resamples: int = BOOTSTRAP["resamples"],
                    level: float = BOOTSTRAP["level"], seed: int = BOOTSTRAP["seed"]) -> dict[str, Any]:
    """Summary of a pooled conditional mean ``Σ num / Σ den`` of two (P, S) arrays (``den`` 0/1, Σ den > 0).

    ``per_seed``: the ratio per seed (NaN for a seed with ``Σ den = 0``); ``std_over_seeds`` over the
    finite ones; the CI resamples problems (resamples with ``Σ den = 0`` are dropped).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = num.sum(axis=0) / den.sum(axis=0)  # (S,)
    finite = per_seed[np.isfinite(per_seed)]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, num.shape[0], size=(resamples, num.shape[0]))  # (B, P)
    n_b, d_b = num.sum(axis=1)[pick].sum(axis=1), den.sum(axis=1)[pick].sum(axis=1)  # (B,)
    ratios = n_b[d_b > 0] / d_b[d_b > 0]
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return {"mean": float(num.sum() / den.sum()), "std_over_seeds": std,
            "ci_low": float(lo), "ci_high": float(hi), "per_seed": [float(x) for x in per_seed]}
