r"""Math-answer equivalence with math-verify, in worker processes with a hard per-call timeout.

Two relations, both on answer *strings* (the content of a ``\boxed{}``):

- **gold check** ``equivalent(gold, pred)``: math-verify's ``verify(parse(gold), parse(pred))``.
  It is asymmetric (assignments such as ``x=5`` and relation/interval conversions), so the cache key is
  the ordered pair.
- **cluster equivalence** (voting): ``verify(a, b) or verify(b, a)``, cached on the unordered pair.

Why workers: math-verify's own timeouts use ``signal.alarm`` and raise outside the main thread, and
sympy can run for minutes on inputs like ``2^{2^{2^{2^{30}}}}``. Each worker runs parse/verify in its
main thread under a soft ``SIGALRM`` limit; the parent also keeps a hard deadline and kills and
replaces a worker that does not answer (a long C-level computation ignores signals). Workers are
started lazily as fresh interpreters running this file (never ``fork``: the parent has torch loaded;
see :class:`_Worker` for why not ``multiprocessing``'s spawn), and a timed-out comparison counts as
*not equivalent*.

The math-verify call is pinned (:data:`GRADER_CONFIG`, :func:`grader_version`): a bare answer string
``s`` is parsed as ``\boxed{s}`` with ``LatexExtractionConfig`` then ``ExprExtractionConfig``, the
library defaults of math-verify 0.9.0 written out, so results do not drift with library defaults.

Cheap decisions made without math-verify (so a vote over 8 integers costs microseconds):
identical non-empty strings are equivalent, and two strings whose :func:`canonical_answer` are both
plain integers are equivalent exactly when the integers are equal (compared as digit strings: no
``int()``, so an answer past Python's 4,300-digit int-string limit never raises here).
:meth:`Grader.cross_check` compares raw math-verify verdicts with the string normaliser so either can
be audited.

**Pathological answers are bounded** (issue 17). Each worker checks every newly parsed form and
reports one it cannot compare: *unparsable* (math-verify extracts nothing), *heavy* (:func:`_heavy`:
its exact value would need more than :data:`HEAVY_BITS` bits, e.g. ``2^{2^{2^{2^{30}}}}``,
``(10^{100})!``, ``(x+1)^{1024}``; found by walking the sympy tree, nothing is evaluated), or its
parse timed out or raised. The parent keeps these in a **negative cache per answer form** (per
relation, keyed by :func:`canonical_answer`), so such a form costs at most one parse per worker and
is never sent again; it is equal only to itself. A comparison that times out for a form that passed
those checks (a *light but slow* form, e.g. ``(x+y+z)^{100}``) is cached per pair and blamed, as
verdicts arrive: on the side whose partner is healthy (two such strikes, outnumbering its finished
comparisons, make the form bad), and within a vote group on the form common to its timeouts
(:class:`_Budget`: suspected for the rest of the group; bad once two groups suspected it). A form
that turns bad or suspected is dropped from the comparisons still queued, and a worker busy with it
is replaced. Finally one vote group (:meth:`Clusterer.__call__`) spends at most ``group_budget``
seconds (default ``2 * timeout``) in math-verify once the workers are up.

**A step is graded in a few rounds** (issue 15). A *round* is one batch of comparisons spread over
the workers at once and waited for (the verdicts stream back one message each, so timeouts, blame and
skips act per comparison). :meth:`Grader.equivalent_many` sends all gold checks of a step in one
round; :meth:`Clusterer.cluster_many` clusters every vote group of a step in lockstep: in each round
every group compares its next class head with its forms still unassigned, so a step takes as many
rounds as its largest group opens classes with comparisons left (at most ``N - 1`` for groups of N),
not one round per class of every group. The comparisons, verdicts and classes are those of clustering
the groups one by one (a comparison two groups need is made once either way); only where a form turns
out bad or slow during a round does timing decide which of its comparisons are made or blamed, as it
does one group at a time. ``stats`` counts ``rounds``, batches ``sent`` and verdicts ``received``.

Worst case, stated: one vote group takes at most ``group_budget`` seconds after worker start-up
(plus replacing workers still busy at the cut-off; comparisons cut off count as not equivalent for
that call only). Groups clustered together keep a budget each, charged while a worker grades one of
the group's comparisons or restarts after being killed over one, not while they queue behind other
groups' comparisons; a call on G groups therefore takes at most ``G * group_budget`` seconds (the
bound of clustering them one by one) plus restarts of killed workers. Within a group a heavy or
unparsable form costs its parse (about 0.1 s), a form whose parse times out costs ``timeout`` once per
worker (in parallel), a light but slow group head about ``timeout`` (one round of timeouts on the
workers). Gold checks (:meth:`Grader.equivalent_many`) have no group budget: each comparison takes at
most ``timeout`` (+0.5 s before a hard kill); bad forms are skipped after their first parse, a light
but slow gold after two timeouts against healthy predictions.

>>> canonical_answer("\\left( 3, \\dfrac{\\pi}{2} \\right).")
'(3,\\frac{\\pi}{2})'
>>> canonical_answer("142.0"), canonical_answer("0.50"), canonical_answer("\\text{(C)}")
('142', '0.5', '(C)')
"""

from __future__ import annotations

import atexit
import collections
import itertools
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal, InvalidOperation
from importlib.metadata import version
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable

__all__ = ["Grader", "Clusterer", "shared_grader", "canonical_answer", "grader_version", "GRADER_CONFIG"]

GRADER_CONFIG: dict[str, Any] = {
    "config": "v2",
    "wrap": "bare string s is parsed as \\boxed{s} (unless it already contains \\boxed)",
    "extraction_config": [
        "LatexExtractionConfig(try_extract_without_anchor=True, boxed_match_priority=50, "
        "normalization_config=NormalizationConfig(basic_latex=True, units=True, malformed_operators=True, "
        "nits=True, boxed='all', equations=False))",
        "ExprExtractionConfig(try_extract_without_anchor=True)",
    ],
    "fallback_mode": "first_match",
    "extraction_mode": "any_match",
    "float_rounding": 6,
    "numeric_precision": 15,
    "strict": True,
    "allow_set_relation_comp": False,
    "gold_relation": "verify(parse(gold), parse(pred))",
    "cluster_relation": "verify(a, b) or verify(b, a)",
    "shortcuts": "identical non-empty strings -> True; both canonical forms integers -> integer equality",
    "timeout": "soft SIGALRM in the worker + hard kill by the parent; a timeout counts as False",
    "bad_forms": "a form that is unparsable, heavy (exact value > 2^23 bits, n! weighted x4, compound symbolic "
                 "base ^ > 256), times out or fails in its parse, times out against 2 healthy partners, or is "
                 "suspected in 2 vote groups is equal only to itself (string shortcuts) from then on",
    "group_budget": "a vote group spends at most 2 x timeout in math-verify; comparisons past it count as False",
}
"""The pinned grading setup; bump ``config`` when any entry changes (it is part of the version)."""


def grader_version() -> str:
    """Identifies the grader for run records, e.g. ``math-verify==0.9.0;config=v2``."""
    return f"math-verify=={version('math-verify')};config={GRADER_CONFIG['config']}"


# ---- the cheap string normaliser --------------------------------------------------------------

_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SPACING = re.compile(r"(?<!\\)\\[!,;: ]|~")  # not the space after a ``\\`` row break
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\degree")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_INTEGER = re.compile(r"-?\d+")
_LONG_INTEGRAL = re.compile(r"\+?(-?\d+)(?:\.0*)?")


def canonical_answer(answer: str) -> str:
    r"""A cheap normal form for voting keys and shortcuts (not a proof of equivalence).

    Drops whitespace, ``\left``/``\right``, thin spaces (``\!``, ``\,``, ``\;``, ``\:``), ``$``
    delimiters, ``\text{..}``-style wrappers, degree marks (``^\circ``) and trailing full stops; turns
    ``\dfrac``/``\tfrac`` into ``\frac``; writes plain decimals in shortest form.

    >>> canonical_answer(" 10^{\\circ} "), canonical_answer("-0.0"), canonical_answer(".5")
    ('10', '0', '0.5')
    """
    s = answer.strip().strip("$")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _LEFT_RIGHT.sub("", s)
    s = _SPACING.sub("", s)
    s = _DEGREE.sub("", s)
    while True:
        unwrapped = _TEXT_WRAP.sub(r"\1", s)
        if unwrapped == s:
            break
        s = unwrapped
    s = "".join(s.split()).rstrip(".")
    return _normalise_number(s)


def _normalise_number(s: str) -> str:
    """``142.0`` -> ``142``, ``0.50`` -> ``0.5``, ``-0`` -> ``0``; anything else unchanged.

    Past 100 characters only ``<digits>.0…`` is shortened (to its digits), without ``int()``."""
    if len(s) > 100:
        m = _LONG_INTEGRAL.fullmatch(s)
        return s if m is None else "".join(_integer_key(m[1]))
    if not _NUMBER.fullmatch(s):
        return s
    try:
        d = Decimal(s)
    except InvalidOperation:
        return s
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def _integer_key(s: str) -> tuple[str, str]:
    """``-007`` -> ``("-", "7")``; ``-0`` -> ``("", "0")``: integer equality without ``int()``, whose
    4,300-digit string limit raises ``ValueError`` on long answers."""
    sign, digits = ("-", s[1:]) if s.startswith("-") else ("", s)
    digits = digits.lstrip("0") or "0"
    return ("" if digits == "0" else sign, digits)


def _shortcut(a: str, b: str) -> bool | None:
    """Verdict decidable without math-verify, or None."""
    if a.strip() and a.strip() == b.strip():
        return True
    ca, cb = canonical_answer(a), canonical_answer(b)
    if _INTEGER.fullmatch(ca) and _INTEGER.fullmatch(cb):
        return _integer_key(ca) == _integer_key(cb)
    return None


# ---- the worker process -----------------------------------------------------------------------

HEAVY_BITS = 1 << 23
"""A number-valued subexpression whose exact value would need more bits than this (about 2.5 million
decimal digits) makes an answer *heavy*: ``10^{10^{6}}`` (3.3 M bits) verifies in 0.3 s,
``10^{10^{7}}`` (33 M bits) runs past any timeout."""
HEAVY_FACTORIAL_WEIGHT = 4
"""``n!`` costs about this many times its bit size (``100000!`` verifies in 0.2 s, ``262144!`` in 2 s)."""
HEAVY_SYMBOLIC_EXPONENT = 256
"""A compound symbolic base raised to more than this expands into a huge polynomial:
``(x+1)^{1024}`` runs past any timeout (``x^{2^{22}}`` with a bare symbol as base stays cheap)."""


def _heavy(expr: Any) -> bool:
    """Whether math-verify would evaluate a huge exact number or polynomial for ``expr`` (a parse result).

    Walks the sympy tree once and bounds the bit size of every number-valued subexpression (see
    :data:`HEAVY_BITS`); nothing is evaluated. Recursion too deep counts as heavy.
    """
    import sympy

    def size(e, b: float) -> float:  # |value| of e: exact for a small integer, else 2^bits (may overflow)
        if isinstance(e, sympy.Integer) and abs(int(e)).bit_length() <= 64:
            return float(abs(int(e)))
        return 2.0 ** b

    def bits(e) -> float:  # upper estimate of log2 |value| of e; raises _Heavy past the limit
        if isinstance(e, sympy.Integer):
            n = abs(int(e))
            b = math.log2(n) if 1 < n.bit_length() < 1000 else float(n.bit_length())
        elif isinstance(e, sympy.Rational):
            b = float(abs(int(e.p)).bit_length() + int(e.q).bit_length())
        elif isinstance(e, (sympy.Float, sympy.NumberSymbol, sympy.Symbol)) or not isinstance(e, sympy.Basic):
            b = 64.0
        elif isinstance(e, sympy.Pow):
            base, exp = e.args
            bb, be = bits(base), bits(exp)
            if not exp.is_number or base in (sympy.S.Zero, sympy.S.One, sympy.S.NegativeOne):
                b = 64.0
            elif base.is_number:
                b = size(exp, be) * max(bb, 1.0)
            elif not isinstance(base, sympy.Symbol) and size(exp, be) > HEAVY_SYMBOLIC_EXPONENT:
                raise _Heavy
            else:
                b = 64.0
        elif isinstance(e, sympy.factorial):
            n = size(e.args[0], bits(e.args[0]))
            b = n * max(math.log2(max(n, 1.0)), 1.0) * HEAVY_FACTORIAL_WEIGHT
        elif isinstance(e, sympy.Mul):
            b = sum(bits(a) for a in e.args)
        elif isinstance(e, sympy.Add):
            b = max((bits(a) for a in e.args), default=0.0) + 1.0
        else:  # functions, containers, relations: their arguments must be light; the value is small
            b = max((bits(a) for a in e.args), default=0.0) if isinstance(e, sympy.Tuple) else 64.0
            for a in e.args:
                bits(a)
        if b > HEAVY_BITS:
            raise _Heavy
        return b

    try:
        for item in expr:
            if isinstance(item, sympy.MatrixBase):
                for x in item:
                    bits(x)
            elif isinstance(item, sympy.Basic):
                bits(item)
    except (_Heavy, RecursionError, OverflowError):
        return True
    return False


class _Heavy(Exception):
    pass


class _SoftTimeout(BaseException):
    """Raised by the worker's SIGALRM handler; a BaseException so math-verify's ``except Exception``
    does not swallow it."""


def _worker_main(inbox: Connection, outbox: Connection, soft_timeout: float | None) -> None:
    """Worker loop: receive lists of ``(kind, a, b)``, send back one verdict per item as it finishes.

    A verdict is True, False, ``"timeout"``, ``"error"`` (verify failed), or ``("bad", side, reason)``
    when answer ``side`` (0 for ``a``, 1 for ``b``) cannot be compared at all: ``reason`` is
    ``"unparsable"`` (math-verify extracted nothing), ``"parse_timeout"``, ``"parse_error"`` or
    ``"heavy"`` (:func:`_heavy`). A form's status is cached here with its parse, and the parent keeps
    it per form, so such an answer is never parsed or compared again. Runs math-verify in this
    process's main thread with its own signal timeouts off; ``soft_timeout`` seconds of SIGALRM bound
    each item. Python's 4,300-digit int-string limit stays on (it keeps ``int(str)`` linear): a
    conversion past it inside math-verify is a ``ValueError``, caught like any other error.
    """
    import logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, LatexNormalizationConfig, parse, verify

    extraction = [
        LatexExtractionConfig(
            try_extract_without_anchor=True,
            boxed_match_priority=50,
            normalization_config=LatexNormalizationConfig(
                basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="all", equations=False,
            ),
        ),
        ExprExtractionConfig(try_extract_without_anchor=True),
    ]
    parsed: dict[str, tuple[Any, str | None]] = {}  # form -> (parse result, None or why it is bad)

    def parse_one(s: str) -> tuple[Any, str | None]:
        if s not in parsed:
            if len(parsed) > 20_000:
                parsed.clear()
            text = s if "\\boxed" in s else "\\boxed{" + s + "}"
            try:
                result = parse(text, extraction, fallback_mode="first_match", extraction_mode="any_match",
                               parsing_timeout=None)
            except _SoftTimeout:
                parsed[s] = ([], "parse_timeout")  # never re-run here; the parent caches it too
                raise
            except Exception:  # e.g. a long integer past the int-string limit
                result, status = [], "parse_error"
            else:
                status = "unparsable" if not result else "heavy" if _heavy(result) else None
            parsed[s] = (result, status)
        return parsed[s]

    def same(gold: Any, pred: Any) -> bool:
        return verify(gold, pred, float_rounding=6, numeric_precision=15, strict=True,
                      allow_set_relation_comp=False, timeout_seconds=None)

    armed = [False]  # the alarm raises only while an item runs (not while its result is sent)

    def on_alarm(signum, frame):
        if armed[0]:
            raise _SoftTimeout()

    def grade(kind: str, a: str, b: str):
        side = 0
        try:
            pa, bad = parse_one(a)
            if bad:
                return ("bad", 0, bad)
            side = 1
            pb, bad = parse_one(b)
            if bad:
                return ("bad", 1, bad)
            side = None
            return same(pa, pb) or (kind == "sym" and same(pb, pa))
        except _SoftTimeout:
            return "timeout" if side is None else ("bad", side, "parse_timeout")

    signal.signal(signal.SIGALRM, on_alarm)
    same(parse_one("\\frac{1}{2}")[0], parse_one("(0.5, x^2)")[0])  # warm up the LaTeX parser
    outbox.send("ready")
    while True:
        try:
            batch = inbox.recv()
        except EOFError:
            return
        if batch is None:
            return
        for kind, a, b in batch:
            try:
                if soft_timeout:
                    armed[0] = True
                    signal.setitimer(signal.ITIMER_REAL, soft_timeout)
                verdict = grade(kind, a, b)
                armed[0] = False
            except _SoftTimeout:  # the alarm landed between grade's own handlers
                verdict = "timeout"
            except Exception:  # a math-verify/sympy bug on odd input: not equivalent
                verdict = "error"
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            outbox.send(verdict)


class _Worker:
    """One worker process, its two pipe ends and the items it has in flight.

    Started as ``python -P grading.py --worker`` rather than through ``multiprocessing``: the spawn
    and forkserver start methods re-import the caller's ``__main__`` (a training script with torch)
    in every worker and fail when it lacks a ``__main__`` guard; a plain interpreter running this
    stdlib-only file avoids both, and the pipes still carry ``multiprocessing.connection`` messages.
    """

    def __init__(self, soft_timeout: float | None):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        args = [sys.executable, "-P", __file__, "--worker", str(to_child_r), str(from_child_w), str(soft_timeout or 0)]
        try:
            self.proc = subprocess.Popen(args, pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.send_conn = Connection(to_child_w, readable=False)
        self.conn = Connection(from_child_r, writable=False)
        self.ready = False
        self.started = time.monotonic()
        self.inflight: collections.deque[int] = collections.deque()
        self.deadline: float | None = None
        self.blame: Any = None  # the vote group (_Budget) over whose comparison the worker this one replaces was killed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.send_conn.close()
        self.conn.close()

    def close(self) -> None:
        try:
            self.send_conn.send(None)
            self.proc.wait(timeout=1)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()


# ---- the worker pool and its verdict caches -------------------------------------------------------

def _one_per_group(pending: collections.deque, budgets: list, n: int) -> list[int]:
    """Take up to ``n`` items from ``pending`` (in order) with at most one per vote group (:class:`_Budget`): a
    worker grades its batch item after item, so two items of one group in a batch would charge the group for
    both in turn and delay its skips; spread over batches they run side by side, as one group alone does."""
    batch, groups = [], set()
    for i in pending:
        if len(batch) == n:
            break
        b = budgets[i]
        if b is None or id(b) not in groups:
            batch.append(i)
            if b is not None:
                groups.add(id(b))
    for i in batch:
        pending.remove(i)
    return batch


class _Pool:
    """Worker processes and the loop that grades a list of items on them (no verdict is kept here)."""

    GRACE = 0.5
    KILL_AFTER = 0.25
    """A worker still busy this long with a form that turned bad is replaced (a restart costs ~1 s)."""
    STARTUP_LIMIT = 180.0

    def __init__(self, workers: int, timeout: float, soft_timeout: bool, group_budget: float | None = None):
        self.workers, self.timeout, self.soft_timeout = workers, timeout, soft_timeout
        self.group_budget = 2 * timeout if group_budget is None else group_budget
        self.stats = {"calls": 0, "cache_hits": 0, "shortcuts": 0, "timeouts": 0, "errors": 0, "restarts": 0,
                      "bad_forms": 0, "bad_form_hits": 0, "over_budget": 0, "rounds": 0, "sent": 0, "received": 0}
        self._workers: list[_Worker] = []
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            for w in self._workers:
                w.close()
            self._workers = []

    def _start_worker(self) -> _Worker:
        return _Worker(self.timeout if self.soft_timeout else None)

    def _replace(self, w: _Worker, blame: "_Budget | None" = None) -> None:
        """Kill ``w`` and start another; its start-up counts for ``blame`` (the group it was killed over)."""
        w.kill()
        fresh = self._start_worker()
        fresh.blame = blame
        self._workers[self._workers.index(w)] = fresh
        self.stats["restarts"] += 1

    def _wait_ready(self) -> None:
        """Start missing workers and wait until every one has said ready (not part of any budget)."""
        while len(self._workers) < self.workers:
            self._workers.append(self._start_worker())
        while not all(w.ready for w in self._workers):
            starting = [w for w in self._workers if not w.ready]
            for conn in wait([w.conn for w in starting], timeout=1.0):
                w = next(w for w in starting if w.conn is conn)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    raise RuntimeError(f"grader worker exited while starting (code {w.proc.wait()}); "
                                       "see its error output above") from None
                w.ready = msg == "ready" or w.ready
            for w in starting:
                if not w.ready and time.monotonic() - w.started > self.STARTUP_LIMIT:
                    raise RuntimeError(f"grader worker did not start within {self.STARTUP_LIMIT:.0f} s")

    def run(self, items: list[tuple[str, str, str]], budgets: "list[_Budget | None] | None" = None,
            on_result: Callable[[int, Any], None] | None = None, skip: Callable[[int], bool] | None = None) -> list:
        """Grade ``items`` on the workers in one **round**: all of them spread over the workers at once, one
        verdict per item. Caller holds the lock.

        ``budgets[i]``: the vote group (:class:`_Budget`) item ``i`` belongs to, or None (no limit). A group
        is charged, once the workers are up, the time during which a worker grades one of its items, and
        the time it has items waiting while a worker killed over one of its items restarts; not the time
        its items wait behind other groups' items (for a round of one group: about the round's wall
        time, as before rounds were shared). Once a group's seconds are spent, its items not yet graded
        get ``"over_budget"`` at once and a worker busy with one of them is killed and replaced; the
        other groups' items go on.

        ``on_result(i, verdict)`` is called as each verdict arrives; an item for which ``skip(i)`` is true
        when its turn comes is not sent (``"skipped"``). ``stats``: ``rounds`` +1 when anything is sent,
        ``sent`` (batches written to workers) and ``received`` (verdicts read back).
        """
        budgets = list(budgets) if budgets is not None else [None] * len(items)
        # a group already out of time: its items are decided at once (no waiting for replaced workers either)
        results: list = ["over_budget" if b is not None and b.left <= 0 else None for b in budgets]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            self._wait_ready()
            self._run(items, budgets, results, todo, on_result or (lambda i, v: None), skip or (lambda i: False))
        for r in results:
            if r == "timeout" or (isinstance(r, tuple) and r[2] == "parse_timeout"):
                self.stats["timeouts"] += 1
            elif r == "error":
                self.stats["errors"] += 1
            elif r == "over_budget":
                self.stats["over_budget"] += 1
        return results

    def _run(self, items: list[tuple[str, str, str]], budgets: list, results: list, todo: list[int], on_result,
             skip) -> None:
        self.stats["calls"] += len(todo)
        self.stats["rounds"] += 1
        pending = collections.deque(todo)
        hard = self.timeout + (self.GRACE if self.soft_timeout else 0.0)
        chunk = max(1, min(16, len(todo) // (4 * self.workers)))  # small batches: skips act at once
        charged_at, charging = time.monotonic(), set()  # budgets charged for the time since charged_at
        wake = None  # when to look again at a worker busy with an item dropped meanwhile
        while True:
            now = time.monotonic()
            for b in charging:
                b.left -= now - charged_at
            charged_at = now
            for b in {budgets[i] for i in pending} | charging:
                if b is not None and b.left <= 0:
                    self._cut(b, budgets, results, pending)
            for i in [i for i in pending if skip(i)]:  # whether or not a worker is free
                results[i] = "skipped"
                pending.remove(i)
            if not pending and not any(w.inflight for w in self._workers):
                break
            for w in self._workers:
                if w.ready and not w.inflight and pending:
                    batch = _one_per_group(pending, budgets, chunk)
                    try:
                        w.send_conn.send([items[i] for i in batch])
                    except (OSError, ValueError):  # worker died while idle: retry on a fresh one
                        pending.extendleft(reversed(batch))
                        self._replace(w)
                        continue
                    self.stats["sent"] += 1
                    w.inflight.extend(batch)
                    w.deadline = now + hard
            # charged: the groups a worker is grading, and a group waiting for a worker killed over its comparison
            charging = {budgets[w.inflight[0]] for w in self._workers if w.inflight and results[w.inflight[0]] is None}
            restarting = {w.blame for w in self._workers if not w.ready}
            charging |= {budgets[i] for i in pending if budgets[i] in restarting}
            charging.discard(None)
            deadlines = [w.deadline for w in self._workers if w.inflight] + [t for t in [wake] if t is not None]
            deadlines += [now + max(0.0, b.left) for b in charging]
            starting = [w for w in self._workers if not w.ready]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else 1.0
            ready_conns = wait([w.conn for w in self._workers], timeout=wait_s)
            while ready_conns:
                timed_out = False
                for conn in ready_conns:
                    w = next(w for w in self._workers if w.conn is conn)
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        if not w.ready:
                            raise RuntimeError(f"grader worker exited while starting (code {w.proc.wait()}); "
                                               "see its error output above") from None
                        self._fail(w, budgets, results, pending, "error", on_result)
                        continue
                    if msg == "ready":
                        w.ready = True
                    else:
                        self.stats["received"] += 1
                        i = w.inflight.popleft()
                        w.deadline = time.monotonic() + hard if w.inflight else None
                        if results[i] is None:  # not cut off meanwhile (a late verdict changes nothing)
                            results[i] = msg
                            on_result(i, msg)
                            timed_out = timed_out or msg == "timeout"
                # soft timeouts of items sent together land together: take them all before sending more,
                # so that a form blamed by them is skipped at once
                ready_conns = wait([w.conn for w in self._workers], timeout=0.05) if timed_out else []
            now, wake = time.monotonic(), None
            for w in list(self._workers):  # an item dropped meanwhile (a form turned bad, its group cut off)
                if w.inflight and w.deadline is not None and (results[w.inflight[0]] is not None or
                                                             skip(w.inflight[0])):
                    started = w.deadline - hard
                    if now - started < self.KILL_AFTER:  # a quick item (a heavy form) ends by itself
                        wake = started + self.KILL_AFTER if wake is None else min(wake, started + self.KILL_AFTER)
                        continue
                    i = w.inflight.popleft()
                    if results[i] is None:
                        results[i] = "skipped"
                    self._requeue(w, results, pending, budgets[i])
            now = time.monotonic()
            for w in list(self._workers):
                if w.inflight and w.deadline is not None and now > w.deadline:
                    self._fail(w, budgets, results, pending, "timeout", on_result)
            for w in starting:
                if not w.ready and w in self._workers and now - w.started > self.STARTUP_LIMIT:
                    raise RuntimeError(f"grader worker did not start within {self.STARTUP_LIMIT:.0f} s")

    def _cut(self, budget: "_Budget", budgets: list, results: list, pending: collections.deque) -> None:
        """``budget`` is spent: its items not yet graded are ``"over_budget"``; a worker busy with one is replaced."""
        for i in [i for i in pending if budgets[i] is budget]:
            results[i] = "over_budget"
            pending.remove(i)
        for w in list(self._workers):
            for i in w.inflight:
                if budgets[i] is budget and results[i] is None:
                    results[i] = "over_budget"  # queued behind another group's item: dropped when reached
            if w.inflight and budgets[w.inflight[0]] is budget:
                w.inflight.popleft()
                self._requeue(w, results, pending, budget)

    def _requeue(self, w: _Worker, results: list, pending: collections.deque, blame: "_Budget | None") -> None:
        """Replace ``w`` (killed over a comparison of ``blame``); its items not yet decided go back to the queue."""
        pending.extendleft(reversed([i for i in w.inflight if results[i] is None]))
        w.inflight.clear()
        self._replace(w, blame)

    def _fail(self, w: _Worker, budgets: list, results: list, pending: collections.deque, verdict: str,
              on_result) -> None:
        """The item ``w`` is working on gets ``verdict``; ``w`` is replaced, its other items go back to the queue."""
        i = w.inflight.popleft() if w.inflight else None
        self._requeue(w, results, pending, None if i is None else budgets[i])
        if i is not None and results[i] is None:
            results[i] = verdict
            on_result(i, verdict)


STRIKES = 2
"""Comparisons timed out against healthy partners that make a form bad (see ``_Verdicts._blame``)."""


class _Budget:
    """One vote group's grading: seconds it may still spend, and the forms it suspects.

    A form in :data:`STRIKES` or more of the group's timeouts, in more of them than each of its
    partners, that never finished a comparison, is *suspected* for the rest of the group: its
    remaining comparisons count as not equivalent (not cached). This catches a slow group head
    compared with fresh forms, where no partner is healthy yet. A form suspected in two groups is
    a bad form from then on (``verify_timeout``). Risk, stated: a brand-new answer compared first
    with two slow ones is suspected wrongly in that group (and made bad if that happens twice).
    """

    def __init__(self, seconds: float):
        self.left = seconds  # taken off by the pool while a worker grades one of the group's comparisons
        self.timeouts: collections.Counter[str] = collections.Counter()
        self.partners: dict[str, list[str]] = {}
        self.suspects: set[str] = set()

    def suspect(self, a: str, b: str, record: Callable[[str], list[int]]) -> list[str]:
        """Count the timeout of ``a`` against ``b``; returns the forms it makes suspected."""
        ca, cb = canonical_answer(a), canonical_answer(b)
        for f, g in ((ca, cb), (cb, ca)):
            self.timeouts[f] += 1
            self.partners.setdefault(f, []).append(g)
        new = []
        for f, form in ((ca, a), (cb, b)):
            n = self.timeouts[f]
            if (f not in self.suspects and n >= STRIKES and record(form)[0] == 0
                    and all(self.timeouts[p] < n for p in self.partners[f])):
                self.suspects.add(f)
                new.append(form)
        return new

    def suspected(self, form: str) -> bool:
        return bool(self.suspects) and canonical_answer(form) in self.suspects


class _Verdicts:
    """One relation's verdict cache in front of a pool: shortcuts, known-bad forms, the cache, math-verify.

    Besides pair verdicts it keeps a **negative cache per answer form** (keyed by
    :func:`canonical_answer`): a form the workers reported unparsable, heavy, or whose parse timed out
    or failed, or one that keeps timing out against healthy answers (:data:`STRIKES`), is compared with
    nothing again; it is equal only to itself (the string shortcuts).
    """

    def __init__(self, pool: _Pool, cache_size: int):
        self.pool, self.cache_size = pool, cache_size
        self._cache: dict[tuple[str, str, str], bool] = {}
        self._bad: dict[str, str] = {}  # canonical form -> why it cannot be compared
        self._records: dict[str, list[int]] = {}  # canonical form -> [finished, timeouts blamed]
        self._suspicions: dict[str, int] = {}  # canonical form -> vote groups that suspected it

    def decide(self, items: list[tuple[str, str | None, str | None]], budget: _Budget | None = None) -> list[bool]:
        """Verdicts of ``(kind, a, b)`` items (None on either side: False), one group's budget for all."""
        return self.decide_many([(items, budget)])[0]

    def decide_many(self, batches: list[tuple[list[tuple[str, str | None, str | None]], _Budget | None]]
                    ) -> list[list[bool]]:
        """:meth:`decide` for several vote groups at once, each ``(items, budget)``: whatever needs
        math-verify goes to the workers in one round, each comparison charged to its own group's budget."""
        flat = [(item, budget) for items, budget in batches for item in items]
        out: list[bool | None] = [None] * len(flat)
        todo: list[int] = []
        for i, ((_, a, b), _) in enumerate(flat):
            if a is None or b is None:
                out[i] = False
                continue
            quick = _shortcut(a, b)
            if quick is not None:
                out[i] = quick
                self.pool.stats["shortcuts"] += 1
                continue
            todo.append(i)
        verdicts = self.math_verify([flat[i][0] for i in todo], [flat[i][1] for i in todo])  # type: ignore[misc]
        for i, v in zip(todo, verdicts):
            out[i] = v
        split, start = [], 0
        for items, _ in batches:
            split.append(out[start : start + len(items)])
            start += len(items)
        return split  # type: ignore[return-value]

    def bad_form(self, answer: str) -> str | None:
        """Why ``answer`` cannot be compared (``unparsable``, ``heavy``, ``parse_timeout``,
        ``parse_error``, ``verify_timeout``), or None."""
        return self._bad.get(canonical_answer(answer)) if self._bad else None

    def math_verify(self, items: list[tuple[str, str, str]], budgets: list[_Budget | None] | None = None
                    ) -> list[bool]:
        """Cached math-verify verdicts; distinct uncached items go to the workers once, in one round.

        ``budgets[i]``: the vote group of item ``i`` (its budget and its suspected forms), or None. An item
        asked by several groups is graded once, charged to the first of them (as if that group had been
        graded first and the others found the verdict in the cache)."""
        budgets = budgets if budgets is not None else [None] * len(items)
        out: list[bool | None] = [None] * len(items)
        wanted: dict[tuple[str, str, str], list[int]] = {}
        owner: dict[tuple[str, str, str], _Budget | None] = {}
        for i, ((kind, a, b), budget) in enumerate(zip(items, budgets)):
            key = (kind, *sorted((a, b))) if kind == "sym" else (kind, a, b)
            if key in self._cache:
                out[i] = self._cache[key]
                self.pool.stats["cache_hits"] += 1
            elif self.bad_form(a) or self.bad_form(b) or (budget is not None and (budget.suspected(a) or
                                                                                 budget.suspected(b))):
                out[i] = False
                self.pool.stats["bad_form_hits"] += 1
            else:
                wanted.setdefault(key, []).append(i)
                owner.setdefault(key, budget)
        if wanted:
            # comparisons with answers known to be healthy first: a slow form is then blamed (and its
            # remaining comparisons skipped) after its first round of timeouts
            keys = sorted(wanted, key=lambda k: -sum(self._healthy(f) for f in k[1:]))
            groups = [owner[k] for k in keys]
            canon = {f: canonical_answer(f) for k in keys for f in k[1:]}

            def on_result(j: int, verdict: Any) -> None:  # as verdicts arrive: later items may be skipped
                key, budget = keys[j], groups[j]
                if isinstance(verdict, tuple):  # ("bad", side, reason): that form is never compared again
                    self._remember_bad(key[1 + verdict[1]], verdict[2])
                elif verdict is True or verdict is False:
                    for form in key[1:]:
                        self._record(form)[0] += 1
                elif verdict == "timeout":
                    self._blame(key[1], key[2])
                    for form in budget.suspect(key[1], key[2], self._record) if budget is not None else []:
                        c = canonical_answer(form)
                        self._store(self._suspicions, c, self._suspicions.get(c, 0) + 1)
                        if self._suspicions[c] >= 2:
                            self._remember_bad(form, "verify_timeout")

            def skip(j: int) -> bool:  # a form of it turned bad, or suspected in its group
                budget = groups[j]
                return any(canon[f] in self._bad or (budget is not None and canon[f] in budget.suspects)
                           for f in keys[j][1:])

            with self.pool.lock:
                raw = self.pool.run(keys, groups, on_result, skip)
            for key, verdict in zip(keys, raw):
                ok = verdict is True
                for i in wanted[key]:
                    out[i] = ok
                if verdict == "skipped":  # a form of it turned bad during this round
                    self.pool.stats["bad_form_hits"] += len(wanted[key])
                elif verdict != "over_budget":  # over budget is undecided, not a verdict: not cached
                    self._store(self._cache, key, ok)
        return out  # type: ignore[return-value]

    def _record(self, form: str) -> list[int]:
        """``[comparisons finished in time, timeouts blamed on it]`` of a form."""
        canon = canonical_answer(form)
        rec = self._records.get(canon)
        if rec is None:
            rec = [0, 0]
            self._store(self._records, canon, rec)
        return rec

    def _healthy(self, form: str) -> bool:
        rec = self._records.get(canonical_answer(form))
        return rec is not None and rec[0] > rec[1]

    def _blame(self, a: str, b: str) -> None:
        """A comparison timed out: the side whose partner is healthy (more comparisons finished than
        timeouts blamed) takes a strike; :data:`STRIKES` strikes, outnumbering its own finished
        comparisons, make it a bad form (``verify_timeout``). A timeout between two unproven forms
        blames neither (it stays a pair verdict)."""
        ra, rb = self._record(a), self._record(b)
        healthy_a, healthy_b = ra[0] > ra[1], rb[0] > rb[1]
        for form, rec, partner_healthy in ((a, ra, healthy_b), (b, rb, healthy_a)):
            if partner_healthy:
                rec[1] += 1
                if rec[1] >= STRIKES and rec[1] > rec[0]:
                    self._remember_bad(form, "verify_timeout")

    def _remember_bad(self, form: str, reason: str) -> None:
        canon = canonical_answer(form)
        if canon not in self._bad:
            self._store(self._bad, canon, reason)
            self.pool.stats["bad_forms"] += 1

    def _store(self, cache: dict, key: Any, value: Any) -> None:
        if len(cache) >= self.cache_size:  # drop the oldest tenth (dicts keep insertion order)
            for old in list(itertools.islice(cache, max(1, self.cache_size // 10))):
                del cache[old]
        cache[key] = value


class Clusterer:
    r"""The label-free view of a :class:`Grader`: math-verify answer classes, nothing about gold.

    It shares the grader's worker processes but has its own verdict cache, which only ever holds
    pairs of *predicted* answers: a reward handed this object cannot reach a gold answer or a gold
    verdict (the gold relation's cache stays with the :class:`Grader`).

    >>> shared_grader().clusterer()(["7", "7.0", None, "8", " 7"])
    [0, 0, None, 1, 0]
    """

    def __init__(self, verdicts: _Verdicts):
        self._verdicts = verdicts

    def __reduce__(self):
        p = self._verdicts.pool
        return (_shared_clusterer, (p.workers, p.timeout))

    def __call__(self, answers: list[str | None]) -> list[int | None]:
        """Equivalence-class id per answer (None for None), numbered by first occurrence.

        Answers with the same :func:`canonical_answer` share a class at no cost; among the first raw
        strings of the distinct canonical forms, a form joins the class of the earliest class head it
        is equivalent to. Forms are compared with class heads only, one batch per class: the first
        unassigned form heads a new class and every form still unassigned is compared with it, so F
        distinct forms in C classes take at most F·C comparisons rather than all F(F−1)/2 pairs.

        **Worst case, bounded**: a call spends at most the grader's ``group_budget`` seconds (default
        2 × ``timeout``) in math-verify once the workers are up (their start-up, once per process, is
        not counted). Past it, comparisons not yet made count as *not equivalent* for this call only
        (not cached; ``stats["over_budget"]``) and busy workers are replaced. Unparsable, heavy and
        parse-timed-out forms are known per form after their first parse and cost nothing more.
        """
        return self.cluster_many([answers])[0]

    def cluster_many(self, groups: Iterable[list[str | None]]) -> list[list[int | None]]:
        """:meth:`__call__` for every vote group of a step at once: the same classes, in fewer rounds.

        Every group advances its class heads in lockstep: in each **round** every group still
        clustering compares its next head with its forms still unassigned, and the comparisons of all
        groups go to the workers together (one :class:`_Pool` round, spread over the workers). A step's
        clustering thus takes as many rounds as its largest group has classes to open, not one round per
        class of every group. Each group keeps its own ``group_budget``, charged only while a worker
        grades one of *its* comparisons or restarts after being killed over one (not while they queue
        behind other groups'), and its own suspected forms; so each group spends at most
        ``group_budget`` seconds in math-verify, and the call at most ``len(groups) × group_budget``
        plus restarts of killed workers: the bound of calling :meth:`__call__` per group.

        >>> shared_grader().clusterer().cluster_many([["7", "7.0", None], ["8", "9", "8"]])
        [[0, 0, None], [0, 1, 0]]
        """
        budget = self._verdicts.pool.group_budget
        states = [_Clustering(list(answers), _Budget(budget)) for answers in groups]
        while True:
            active = [s for s in states if s.pending]
            if not active:
                break
            rounds = self._verdicts.decide_many([(s.open_class(), s.budget) for s in active])
            for s, verdicts in zip(active, rounds):
                s.assign(verdicts)
        return [s.ids() for s in states]


class _Clustering:
    """One vote group being clustered: its distinct forms, the classes opened so far, the forms left."""

    def __init__(self, answers: list[str | None], budget: _Budget):
        self.budget = budget
        self.keys = [None if a is None else canonical_answer(a) for a in answers]
        self.reps: dict[str, str] = {}  # canonical form -> its first raw string
        for a, k in zip(answers, self.keys):
            if k is not None:
                self.reps.setdefault(k, a)  # type: ignore[arg-type]
        self.class_of: dict[str, int] = {}
        self.classes = 0
        self.pending = list(self.reps)  # forms without a class, in order of first occurrence

    def open_class(self) -> list[tuple[str, str, str]]:
        """The first unassigned form heads the next class: its comparisons with the other unassigned forms."""
        head = self.pending[0]
        self.class_of[head] = self.classes
        self.classes += 1
        return [("sym", self.reps[head], self.reps[form]) for form in self.pending[1:]]

    def assign(self, verdicts: list[bool]) -> None:
        """Forms equivalent to the new head join its class; the others stay unassigned."""
        head, rest = self.pending[0], self.pending[1:]
        self.pending = []
        for form, same in zip(rest, verdicts):
            if same:
                self.class_of[form] = self.class_of[head]
            else:
                self.pending.append(form)

    def ids(self) -> list[int | None]:
        return [None if k is None else self.class_of[k] for k in self.keys]


class Grader:
    """A small lazily started pool of math-verify workers with verdict caches.

    ``workers`` processes are started on the first request; each comparison is bounded by
    ``timeout`` seconds (soft SIGALRM in the worker, then a hard kill and respawn ``0.5`` s later),
    and one vote group (:meth:`cluster`) by ``group_budget`` seconds (default ``2 * timeout``).
    ``stats`` counts ``calls`` (comparisons sent to workers), ``cache_hits``, ``shortcuts``,
    ``timeouts``, ``errors``, ``restarts``, ``bad_forms`` (answer forms found unparsable, heavy or
    timing out in their parse: never compared again), ``bad_form_hits`` (comparisons that skipped
    math-verify for that reason) and ``over_budget`` (comparisons a vote group's budget cut off).
    Thread-safe; pickles as a fresh grader with the same settings; use as a context manager or call
    :meth:`close`. Gold checks and answer clusters keep separate caches (pair verdicts and bad forms);
    :meth:`clusterer` hands out the clustering side alone (for label-free rewards).

    Nothing here raises on odd answers: long integers (past Python's 4,300-digit int-string limit)
    are compared as digit strings in this process, and whatever math-verify raises in a worker is an
    ``error`` verdict (not equivalent).

    ``soft_timeout=False`` leaves only the parent's hard deadline (tests use it to exercise the kill
    path).
    """

    def __init__(self, workers: int = 2, timeout: float = 5.0, *, soft_timeout: bool = True,
                 cache_size: int = 200_000, group_budget: float | None = None):
        if workers < 1 or not timeout > 0 or (group_budget is not None and not group_budget > 0):
            raise ValueError(f"need workers >= 1, timeout > 0 and group_budget > 0, got workers={workers}, "
                             f"timeout={timeout}, group_budget={group_budget}")
        self.workers, self.timeout, self.soft_timeout, self.cache_size = workers, timeout, soft_timeout, cache_size
        self.group_budget = 2 * timeout if group_budget is None else group_budget
        self._pool = _Pool(workers, timeout, soft_timeout, self.group_budget)
        self._gold = _Verdicts(self._pool, cache_size)
        self._sym = _Verdicts(self._pool, cache_size)

    @property
    def stats(self) -> dict[str, int]:
        return self._pool.stats

    def __reduce__(self):
        return (_new_grader, (self.workers, self.timeout, self.soft_timeout, self.cache_size, self.group_budget))

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (a later request starts new ones)."""
        self._pool.close()

    def equivalent(self, a: str | None, b: str | None) -> bool:
        """Gold check: is ``b`` (prediction) equivalent to ``a`` (gold)?"""
        return self.equivalent_many([(a, b)])[0]

    def equivalent_many(self, pairs: Iterable[tuple[str | None, str | None]]) -> list[bool]:
        """Gold checks for ``(gold, pred)`` pairs in one batch; None or a timeout is not equivalent.

        >>> Grader().equivalent_many([("3", "3.0"), ("3", "4"), ("3", None)])  # shortcuts, no workers
        [True, False, False]
        """
        return self._gold.decide([("gold", g, p) for g, p in pairs])

    def clusterer(self) -> Clusterer:
        """The label-free clustering view (shares the workers, not the gold cache)."""
        return Clusterer(self._sym)

    def cluster(self, answers: list[str | None]) -> list[int | None]:
        r"""Math-verify equivalence classes of ``answers`` (see :class:`Clusterer`).

        >>> Grader().cluster(["7", "7.0", None, "8", " 7"])
        [0, 0, None, 1, 0]
        """
        return self.clusterer()(answers)

    def cluster_many(self, groups: Iterable[list[str | None]]) -> list[list[int | None]]:
        """:meth:`cluster` of every vote group of a step, in lockstep rounds (:meth:`Clusterer.cluster_many`)."""
        return self.clusterer().cluster_many(groups)

    def cross_check(self, pairs: Iterable[tuple[str, str]]) -> list[dict]:
        """Pairs where raw math-verify (no shortcuts) and canonical-string equality disagree.

        Each row: ``{"gold", "pred", "math_verify", "canonical"}``. A timeout counts as False.
        """
        pairs = list(pairs)
        verified = self._gold.math_verify([("gold", g, p) for g, p in pairs])
        rows = []
        for (g, p), mv in zip(pairs, verified):
            canon = canonical_answer(g) == canonical_answer(p)
            if mv != canon:
                rows.append({"gold": g, "pred": p, "math_verify": mv, "canonical": canon})
        return rows


# ---- graders shared within a process ---------------------------------------------------------------

_SHARED: dict[tuple[int, float], Grader] = {}
_SHARED_LOCK = threading.Lock()


def shared_grader(workers: int = 2, timeout: float = 5.0) -> Grader:
    """The process's :class:`Grader` with these settings (config fields ``grader_workers`` and
    ``grader_timeout``), created on first use and closed at exit; equal settings share one pool."""
    key = (int(workers), float(timeout))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Grader(*key)
            atexit.register(_SHARED[key].close)
        return _SHARED[key]


def _new_grader(workers: int, timeout: float, soft_timeout: bool, cache_size: int,
                group_budget: float | None = None) -> Grader:
    return Grader(workers, timeout, soft_timeout=soft_timeout, cache_size=cache_size, group_budget=group_budget)


def _shared_clusterer(workers: int, timeout: float) -> Clusterer:
    return shared_grader(workers, timeout).clusterer()


def _worker_cli() -> None:
    """Entry point of a worker process: ``grading.py --worker IN_FD OUT_FD SOFT_TIMEOUT``."""
    in_fd, out_fd, soft = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    _worker_main(Connection(in_fd, writable=False), Connection(out_fd, readable=False), soft or None)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker_cli()
