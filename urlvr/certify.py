r"""Certified self-consistency: the Martingale Majority Certificate (MMC, METHODS-2026.md §9).

Votes (answer keys) arrive one at a time. Two anytime-valid e-processes test, at level ε, that the
current leader is the mode of the answer distribution; sampling stops at the first vote after which
both reach ``1/ε`` (the leader is *certified*), or abstains at the budget.

**Rule** (two contenders, one update, no re-check: the paper's Algorithm 1 and the experiments'
setting). Before each new vote X: A = current leader, B = runner-up (counts descending, ties by
``str(key)``; B absent while fewer than two answers have been seen). Counts s (X = A), f (X = B),
o (X elsewhere); ``m(s, f)`` is the posterior mean of θ (leader vs runner-up) given (s, f), and
``m(s, o)`` that of λ (leader vs the rest) given (s, o)::

    X = A:      e_run ← e_run · 2 m(s, f),        e_oth ← e_oth · 2 m(s, o),   s += 1
    X = B:      e_run ← e_run · 2 (1 − m(s, f)),  f += 1     (B absent: any answer ≠ A, ``absent_runner="rest"``)
    otherwise:  e_oth ← e_oth · 2 (1 − m(s, o)),  o += 1
    stop when e_run ≥ 1/ε and e_oth ≥ 1/ε: (A, certified); at the budget: (leader, abstained)

A vote cast while there is no leader yet (the first answered vote) only initialises. With the
mixture prior the product telescopes to ``e_run = 2^{s+f} ∫ θ^s (1−θ)^f π(dθ)`` (and likewise e_oth).

**Decisions urlvr states.**

- *Before a runner-up exists* (``absent_runner``): X = A updates e_run too, so unanimous votes
  certify (the official class without a known answer set only updates the pairwise process once two
  answers exist, and never certifies them). A vote X ≠ A at such a step:

  - ``"rest"`` (default, urlvr's reading): B stands for *every other answer*, so the vote counts
    against the leader in e_run (f += 1) and leaves e_oth alone. "A beats all the rest together"
    implies "A beats any one answer", so e_run stays a supermartingale under the null: anytime-valid.
    On two answers this is exactly what passing the candidate set does.
  - ``"never"``: METHODS-2026 §9 read literally ("absent B = never matched"): the vote is an elsewhere
    vote (o += 1) and e_run does not move. Then the first e_run factor has expectation
    ``½ · 2 m(0, 0) + ½ > 1`` under a fair coin: not a supermartingale. Simulated under a fair
    two-answer distribution (ε = 0.1, Beta prior) its false-certification rate is 0.083 / 0.100 /
    0.115 at budgets 16 / 64 / 256, against 0.065 / 0.075 / 0.089 for ``"rest"``. Kept for parity.
- *Answer-less votes* (``None``) never become A or B and always count as **elsewhere** votes
  (o += 1), with or without a runner-up: "no answer" is one more way the leader can fail to be
  chosen, so it only makes certification harder (conservative: the leader must beat the other
  answers *and* the answer-less together, so a model that answers less than half the time never
  certifies). e_run never sees them, which keeps it valid for "A beats every other answer". A
  ``None`` before the first answer only counts as a used vote.
- The leader at certification is always the leader after the certifying vote too: only an X = A vote
  can raise both e-values, and it keeps A in front.

**Priors** (``prior``): ``"beta"`` (default), a Beta(½, ½) truncated to [0.5001, 0.9999] and
discretised on ``K`` equally spaced points (weights ∝ the density, normalised; K = 101 in the
experiments, 41 in the official class); ``"ratio"``, the plug-in ``q = clip((s+½)/(s+f+1), 0.50001,
0.99999)`` of the counts *before* the vote (the "ratio update" file). Both are e-processes: each
factor's multiplier depends only on past votes and lies in (½, 1), so under "A is not ahead"
(θ ≤ ½) every factor has expectation ≤ 1 and Ville's inequality bounds the chance of ever crossing
``1/ε`` by ε, however long one keeps sampling. The third official variant, which re-applies the
*latest* q to the whole history (``e = 2^{s+f} q^s (1−q)^f`` with q fitted to the very votes it
scores), is deliberately not offered: it is a plug-in likelihood ratio, not a supermartingale under
the null, so Ville's inequality does not apply and its false-certification rate is not bounded by ε
(under a fair coin it crosses any fixed level eventually, by the law of the iterated logarithm).

Defaults of the experiments: ε = 0.1 (results also at 0.4), budget 64, two contenders.

>>> c = mmc(["7"] * 7)
>>> c.leader, c.certified, c.votes_used, round(c.e_runner, 3) == round(c.e_other, 3)
('7', True, 5, True)
>>> mmc(["7", "8"] * 10).certified, mmc([]).leader
(False, None)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Hashable, Sequence

from urlvr.errors import UrlvrError

__all__ = ["PRIORS", "ABSENT_RUNNER", "Certificate", "mmc", "beta_grid", "posterior_mean", "ratio_q", "mixture_e",
           "contenders"]

PRIORS = ("beta", "ratio")
"""``beta``: discretised truncated Beta(½, ½) mixture; ``ratio``: the plug-in running-ratio point prior."""
GRID = (0.5001, 0.9999)
"""Support of the truncated Beta prior (the official code's)."""
RATIO_CLIP = (0.50001, 0.99999)
ABSENT_RUNNER = ("rest", "never")
"""How a non-leader vote counts while no runner-up exists (module docstring)."""


@dataclass(frozen=True)
class Certificate:
    """What :func:`mmc` decided about one vote sequence."""

    leader: Hashable | None
    """The certified leader, or (abstained) the leader after the last vote; None without any answer."""
    certified: bool
    votes_used: int
    """Votes read: up to and including the certifying one, else all of them (the budget)."""
    e_runner: float
    """Leader-vs-runner-up e-value when sampling stopped."""
    e_other: float
    """Leader-vs-the-rest e-value when sampling stopped."""
    s: int = 0
    f: int = 0
    o: int = 0


@lru_cache(maxsize=None)
def beta_grid(K: int = 101) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(points, weights) of the truncated Beta(½, ½) prior on ``K`` equally spaced points of [0.5001, 0.9999].

    >>> qs, ws = beta_grid(3)
    >>> qs[1], round(sum(ws), 12)
    (0.75, 1.0)
    """
    lo, hi = GRID
    qs = tuple(lo + (hi - lo) * k / (K - 1) for k in range(K))  # (K,)
    raw = [q ** -0.5 * (1.0 - q) ** -0.5 for q in qs]  # Beta(½, ½) density up to its constant
    z = sum(raw)
    return qs, tuple(r / z for r in raw)


@lru_cache(maxsize=None)
def _log_moment(K: int, s: int, f: int) -> float:
    """``log Σ_k w_k q_k^s (1 − q_k)^f`` (log-sum-exp)."""
    qs, ws = beta_grid(K)
    terms = [math.log(w) + s * math.log(q) + f * math.log1p(-q) for q, w in zip(qs, ws)]  # (K,)
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def posterior_mean(s: int, f: int, K: int = 101) -> float:
    """``E[θ | s, f]`` under the discretised truncated Beta(½, ½) prior."""
    return math.exp(_log_moment(K, s + 1, f) - _log_moment(K, s, f))


def mixture_e(s: int, f: int, K: int = 101) -> float:
    """The closed form ``2^{s+f} Σ_k w_k q_k^s (1 − q_k)^f`` of the Beta-prior e-process after (s, f)."""
    return math.exp((s + f) * math.log(2.0) + _log_moment(K, s, f))


def ratio_q(s: int, f: int) -> float:
    """The plug-in point prior ``clip((s + ½) / (s + f + 1), 0.50001, 0.99999)``."""
    return min(max((s + 0.5) / (s + f + 1), RATIO_CLIP[0]), RATIO_CLIP[1])


def contenders(counts: dict) -> tuple[Hashable | None, Hashable | None]:
    """(leader, runner-up) of answer counts: counts descending, ties by ``str(key)``; None when absent.

    >>> contenders({"b": 2, "a": 2, "c": 1}), contenders({"x": 1}), contenders({})
    (('a', 'b'), ('x', None), (None, None))
    """
    ranked = sorted(counts, key=lambda a: (-counts[a], str(a)))
    return (ranked[0] if ranked else None), (ranked[1] if len(ranked) > 1 else None)


def mmc(votes: Sequence[Hashable | None], eps: float = 0.1, prior: str = "beta", K: int = 101,
        budget: int | None = None, absent_runner: str = "rest") -> Certificate:
    """Run the MMC over ``votes`` in order; stop at the first certification (see the module docstring).

    ``votes``: answer keys (equal keys = the same answer), None = no answer. ``budget``: at most this
    many votes are read (default: all of them). ``eps`` in (0, 1); ``K`` >= 2 grid points (``beta``).
    ``absent_runner``: ``"rest"`` or ``"never"`` (module docstring).
    """
    if not 0 < eps < 1:
        raise UrlvrError(f"MMC eps must be in (0, 1) (the level of the certificate), got {eps}")
    if prior not in PRIORS:
        raise UrlvrError(f"unknown MMC prior {prior!r}; choose one of: {', '.join(PRIORS)}")
    if not (isinstance(K, int) and K >= 2):
        raise UrlvrError(f"MMC K (grid points of the beta prior) must be an integer >= 2, got {K!r}")
    if absent_runner not in ABSENT_RUNNER:
        raise UrlvrError(f"unknown MMC absent_runner {absent_runner!r}; choose one of: {', '.join(ABSENT_RUNNER)}")
    if budget is not None and budget < 1:
        raise UrlvrError(f"MMC budget must be >= 1 vote, got {budget}")
    mean = (lambda a, b: posterior_mean(a, b, K)) if prior == "beta" else ratio_q
    level = math.log(1.0 / eps)
    counts: dict[Hashable, int] = {}
    s = f = o = used = 0
    log_run = log_oth = 0.0
    for x in votes[: budget if budget is not None else len(votes)]:
        used += 1
        a, b = contenders(counts)
        if a is not None:
            if x is not None and x == a:
                log_run += math.log(2.0 * mean(s, f))
                log_oth += math.log(2.0 * mean(s, o))
                s += 1
            elif x is not None and (x == b or (b is None and absent_runner == "rest")):
                log_run += math.log(2.0 * (1.0 - mean(s, f)))
                f += 1
            else:  # another answer, or no answer (always elsewhere)
                log_oth += math.log(2.0 * (1.0 - mean(s, o)))
                o += 1
        if x is not None:
            counts[x] = counts.get(x, 0) + 1
        if log_run >= level and log_oth >= level:
            return Certificate(a, True, used, math.exp(log_run), math.exp(log_oth), s, f, o)
    return Certificate(contenders(counts)[0], False, used, math.exp(log_run), math.exp(log_oth), s, f, o)
