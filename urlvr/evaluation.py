"""Evaluation core: sample k completions per problem with pinned settings, grade, summarise.

- avg@k: mean gold accuracy over the k samples of each problem, averaged over problems;
- pass@k: unbiased estimator ``1 - C(n-c, k) / C(n, k)`` from n >= k samples with c correct, in the
  numerically stable product form ``1 - Π_{i=n-c+1}^{n} (1 - k/i)``;
- maj@k: accuracy of the majority answer among the k samples, votes over the task's equivalence
  classes of parsed answers; unparsable answers do not vote; ties go to the answer seen first; a
  problem with no parsable answer counts as wrong.

>>> round(pass_at_k(4, 1, 2), 4)
0.5
>>> pass_at_k(4, 0, 2), pass_at_k(4, 3, 2)
(0.0, 1.0)
"""

from __future__ import annotations

from typing import Sequence

from urlvr.rewards.voting import cluster_ids, majority
from urlvr.rollout import SamplingSettings

__all__ = ["pass_at_k", "sample_problems", "summarize"]


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


def sample_problems(sampler, task, examples, k: int, settings: SamplingSettings, seed: int,
                    equivalence: str = "canonical") -> list[dict]:
    """k completions per example; one row per completion: id, sample, text, answer, correct, cluster."""
    prompts = [task.prompt(e.problem) for e in examples for _ in range(k)]
    batch = sampler.generate(prompts, settings, seed=seed)
    rows = []
    for j, ex in enumerate(examples):
        texts = batch.texts[j * k : (j + 1) * k]
        answers = [task.extract(t) for t in texts]
        ids = cluster_ids(answers, equivalence, task.canonical)
        for i, (t, a) in enumerate(zip(texts, answers)):
            rows.append({
                "id": ex.problem.id, "kind": ex.problem.kind, "seed": seed, "sample": i, "completion": t,
                "answer": a, "correct": bool(ex.answer is not None and task.check(a, ex.answer)),
                "cluster": ids[i], "truncated": bool(batch.truncated[j * k + i]),
                "length": int(batch.mask[j * k + i].sum()),
            })
    return rows


def summarize(rows: Sequence[dict], k: int) -> dict[str, float]:
    """avg@k, maj@k, pass@1..k, truncation and unparsable rates of sample_problems' rows."""
    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["id"], []).append(r)
    n_prob = len(by_problem)
    out = {f"avg@{k}": 0.0, f"maj@{k}": 0.0}
    passk = {j: 0.0 for j in range(1, k + 1)}
    for rs in by_problem.values():
        rs = sorted(rs, key=lambda r: r["sample"])[:k]
        c = sum(r["correct"] for r in rs)
        out[f"avg@{k}"] += c / len(rs)
        winner, _ = majority([r["cluster"] for r in rs], empty="drop")
        out[f"maj@{k}"] += winner is not None and next(r["correct"] for r in rs if r["cluster"] == winner)
        for j in passk:
            if j <= len(rs):
                passk[j] += pass_at_k(len(rs), c, j)
    out = {m: v / max(1, n_prob) for m, v in out.items()}
    out.update({f"pass@{j}": v / max(1, n_prob) for j, v in passk.items()})
    out["truncation_rate"] = sum(r["truncated"] for r in rows) / max(1, len(rows))
    out["unparsable_rate"] = sum(r["answer"] is None for r in rows) / max(1, len(rows))
    out["length_mean"] = sum(r["length"] for r in rows) / max(1, len(rows))
    out["problems"] = n_prob
    return out
