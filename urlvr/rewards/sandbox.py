r"""Run generated Python against tests so that cheating earns nothing and nothing escapes (METHODS.md §4).

Three processes per :meth:`Sandbox.run`, none of them the trainer:

- **the candidate** (``python -I``) runs the code as module ``solution`` and then only answers
  requests: *get a global*, *call this object with these arguments*, *get an attribute or item*,
  *list / len / str / bool of an object*. Every value it sends back goes through a strict codec that
  knows only the exact types ``None bool int float complex str bytes bytearray list tuple dict set
  frozenset`` (subclasses refused); anything else (a function, an instance, an object whose ``__eq__``
  always says True) travels as an opaque *handle*. It never sees the tests, the expected values, or a
  pass/fail marker: there is none on its channel to forge.
- **the checker** (a fresh ``python -I``, outside the jail) runs each test snippet, any Python (an
  ``assert``, a loop, a ``try``), in its own namespace. The test's free names that are not builtins
  and not bound by the tests are fetched from the candidate (``from solution import f`` works too);
  calls, attributes and items on handles are requests to the candidate. ``==``, ``<``, ``in``,
  ``isinstance`` and ``assert`` therefore run on plain decoded values in the checker: patched
  ``builtins``/``compile``/``exec``, ``__eq__`` tricks or a forged marker in the candidate change
  nothing. A test passes when it runs to the end in the checker; the result travels on the checker's
  stdout (prefixed by a nonce it read from its stdin), which the candidate cannot reach.
- **the jail** around the candidate (where the platform allows it, probed once per process): fresh
  user, mount, PID, network, IPC and UTS namespaces; ``chroot`` into an empty tmpfs that holds only
  read-only binds of ``/usr``, the interpreter's and the virtualenv's folders, ``/dev/{null,zero,full,
  random,urandom}``, a read-only ``/proc`` of the new PID namespace and the working folder, a private
  tmpfs at the same path as the host's temporary folder (``HOME`` = ``TMPDIR`` = cwd). No ``/etc``,
  ``/home``, ``/root``, ``/tmp`` of the host; no network interface; no capability (a nested user
  namespace for a non-root trainer, ``setresuid`` to an unmapped-to-root uid for a root trainer, then
  ``exec`` and ``PR_SET_NO_NEW_PRIVS``). A root trainer's candidate runs as host ``nobody`` (65534).
  The trainer is outside the PID namespace: it cannot be seen or signalled, and ``os.getppid()`` is 0.
  Every process of the namespace dies with its init (``PR_SET_PDEATHSIG`` chain back to the
  trainer-started process), so ``setsid`` or double-forked children never outlive the run.

Limits (``resource.setrlimit`` before the first line of candidate code): ``RLIMIT_AS`` (memory, per
process), ``RLIMIT_CPU``, ``RLIMIT_NOFILE``, ``RLIMIT_FSIZE`` (the working folder is also a tmpfs of
``4 × max_file_mb``), and ``RLIMIT_NPROC`` (processes of the sandbox user *in its own user namespace*;
for a root trainer the candidate is ``nobody`` there, because the kernel never enforces NPROC for
init-namespace root). The trainer kills both process groups at the end or after ``timeout_s``; the
jail also kills itself after ``timeout_s + 5`` if the trainer is gone.

**How tests are checked, precisely.** A value crosses from the candidate only as plain data or a
handle. Handles compare equal only to themselves (``==`` is never delegated), are truthy per the
candidate's ``bool()`` (a bool), iterate over the candidate's ``list(obj)`` (so ``x in obj`` compares
in the checker), and have no arithmetic or ordering: a test that needs ``Point(1, 2) == Point(1, 2)``
or ``f(x) + 1`` on an instance fails (compare fields or ``str()`` instead). NumPy scalars become
Python scalars; arrays stay handles (``f(x).tolist()`` works). Arguments go the other way by the same
codec; functions in the test (``key=lambda ...``) become callbacks the candidate calls back into the
checker; lists, dicts, sets and bytearrays passed positionally are updated in place after the call
(in-place algorithms). Candidate globals are read when each test starts. A candidate exception that
is a builtin exception type is re-raised under that type (``except ValueError`` in a test works);
others as ``Exception``. If the candidate dies or breaks the protocol, the running test fails even
if it catches the error, and the run is ``crashed``.

**Without the jail** (no unprivileged user namespaces; or ``network="guard"``) the candidate runs as
the trainer's user with the same limits, its own session, and in-process guards (``socket`` refused,
``open``/``os`` writes outside the folder refused) that code can bypass (``_io``, ``posix``, ctypes,
a child). The checker still cannot be fooled, but the trainer is *not* protected: a warning line says
so once per process. Use ``network="namespace"`` to refuse running without the jail.

**Measured on the development machine** (Debian 12, kernel 6.18, util-linux 2.38, CPython 3.11, run
as root): unprivileged user namespaces work (``user.max_user_namespaces`` 96369), and in them mount,
PID (+ a fresh proc), network, IPC, UTS and cgroup namespaces; tmpfs and read-only bind remounts;
``chroot``; ``prctl``/``mount``/``unshare`` through ctypes. Inside the jail: effective capabilities
0, nested ``unshare(CLONE_NEWUSER)`` and ``chroot`` refused (EPERM), ``/usr`` and ``/`` read-only
(EROFS), no ``/etc``, connect → ENETUNREACH, ``kill(1)`` is a no-op. ``RLIMIT_NPROC`` is ignored for
host root (40 of 10 forks succeed) and enforced per user namespace otherwise (9 of 10 with 12 other
processes of the same uid on the host). ``bwrap``, ``newuidmap`` and seccomp (no libseccomp, no
Python binding) are absent; ``prlimit``, ``setpriv``, ``unshare`` and ``nsenter`` are present but not
needed. One ``run`` (3 tests, 2 shared cores) took 49 ms median before this design (one
``python -I`` under ``unshare --net``) and 82-102 ms with it (three interpreters, the jail's with
``-S``); 66 ms in guard mode. A non-root trainer (tried as ``nobody`` with the system Python) gets
the same facts through the nested user namespace.

Results: the number of tests passed and a status, ``ok`` (all tests ran), ``timeout`` or ``crashed``
(killed by a limit, the code exited, or the protocol broke); tests that reported before a kill keep
their result. A failure of the sandbox itself (an interpreter does not start, the jail cannot be set
up) raises :class:`SandboxError`, which a reward turns into None, never into a 0; a bad setting
raises :class:`~urlvr.errors.UrlvrError`.

>>> extract_code("Here:\n```python\nx = 1\n```\nand\n```py\ndef f():\n    return 2\n```")
'def f():\n    return 2\n'
>>> extract_code("def f(): return 1")
'def f(): return 1'
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from urlvr.console import echo
from urlvr.errors import UrlvrError

__all__ = ["Sandbox", "SandboxResult", "SandboxError", "extract_code", "NETWORK_MODES"]

NETWORK_MODES = ("auto", "namespace", "guard")
"""``namespace``: require the jail (a UrlvrError names why it is unavailable); ``auto``: the jail when
available, else the unprotected guard mode with a warning; ``guard``: never the jail (warns)."""

_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
_STDERR_TAIL = 2000
_MAX_REPLY = 8 << 20
"""Largest message (bytes) the checker accepts from the candidate; a longer one breaks the run."""
_SANDBOX_UID = 1000
"""The candidate's uid inside its user namespace (mapped to host ``nobody`` for a root trainer)."""


class SandboxError(Exception):
    """The sandbox itself failed (not the code under test): the result is unknown."""


def extract_code(text: str) -> str:
    """The last ```` ```python ```` (or ``py``) fenced block, else the last fenced block, else the whole text."""
    blocks = _FENCE.findall(text)
    python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    return (python or [body for _, body in blocks] or [text])[-1]


@dataclass(frozen=True)
class SandboxResult:
    passed: int
    total: int
    status: str
    """``ok`` (every test ran), ``timeout`` (wall clock) or ``crashed`` (limit hit, process exited, protocol broken)."""
    failures: tuple[str, ...] = ()
    """``test <i>: <ExceptionType>`` for each failing test that reported."""
    stderr: str = ""
    """The tail of the code's stderr (for debugging; in the jail it can only hold what the jail can read)."""

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


# ---- the codec, shared by the candidate and the checker ------------------------------------------

_CODEC = r'''
_DEPTH = 100

def _encode(x, other, depth=0):
    t = type(x)
    if x is None or t is bool or t is str or t is float:
        return x
    if t is int:
        return x if -(1 << 53) < x < (1 << 53) else {"i": format(x, "x")}
    if depth > _DEPTH:
        raise ValueError("sandbox: value nested too deeply")
    d = depth + 1
    if t is list:
        return [_encode(v, other, d) for v in x]
    if t is tuple:
        return {"t": [_encode(v, other, d) for v in x]}
    if t is dict:
        return {"d": [[_encode(k, other, d), _encode(v, other, d)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"s" if t is set else "f": [_encode(v, other, d) for v in x]}
    if t is bytes or t is bytearray:
        return {"b" if t is bytes else "y": x.hex()}
    if t is complex:
        return {"c": [x.real, x.imag]}
    return other(x)

def _decode(j, other, depth=0):
    t = type(j)
    if j is None or t is bool or t is str or t is float or t is int:
        return j
    if depth > _DEPTH:
        raise ValueError("sandbox: value nested too deeply")
    d = depth + 1
    if t is list:
        return [_decode(v, other, d) for v in j]
    if t is not dict:
        raise ValueError("sandbox: malformed value")
    if len(j) != 1:
        return other(j)
    (tag, v), = j.items()
    if tag == "i" and type(v) is str:
        return int(v, 16)
    if tag in ("t", "s", "f") and type(v) is list:
        return {"t": tuple, "s": set, "f": frozenset}[tag](_decode(e, other, d) for e in v)
    if tag == "d" and type(v) is list:
        if not all(type(p) is list and len(p) == 2 for p in v):
            raise ValueError("sandbox: malformed dict")
        return {_decode(k, other, d): _decode(e, other, d) for k, e in v}
    if tag in ("b", "y") and type(v) is str:
        return (bytes if tag == "b" else bytearray).fromhex(v)
    if tag == "c" and type(v) is list and len(v) == 2 and all(type(e) in (int, float) for e in v):
        return complex(*v)
    return other(j)

def _dumps(msg):
    return json.dumps(msg, separators=(",", ":")) + "\n"
'''

# ---- the candidate's side: runs the code, answers requests ---------------------------------------

_SERVER = r'''
import builtins, io, itertools, json, os, resource, signal, socket, sys, types
''' + _CODEC + r'''

def main():
    cfg = json.loads(sys.argv[1])
    rd = os.fdopen(os.dup(0), "r", encoding="utf-8", newline="\n")
    wr = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails instead of killing us
    for name, (soft, hard) in cfg["limits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if cfg["guards"]:
        _install_guards(os.path.realpath(os.getcwd()))
    objects = []

    def handle(x):
        t = type(x)
        if t.__module__ == "numpy" and getattr(x, "shape", None) == () and hasattr(x, "item"):
            v = x.item()
            if type(v) in (bool, int, float, complex, str, bytes):
                return v
        objects.append(x)
        return {"h": len(objects) - 1, "type": t.__name__[:60]}

    def enc(x):
        return _encode(x, handle)

    def send(msg):
        wr.write(_dumps(msg))
        wr.flush()

    def recv():
        line = rd.readline()
        if not line:
            os._exit(0)
        return json.loads(line)

    def callback(ident):
        def call(*args, **kwargs):
            send({"cb": ident, "args": enc(list(args)), "kwargs": enc(kwargs)})
            reply = serve_until_reply()
            if "raise" in reply:
                cls = getattr(builtins, str(reply["raise"]), None)
                raise (cls if isinstance(cls, type) and issubclass(cls, Exception) else Exception)(reply.get("msg"))
            return dec(reply["ret"])
        return call

    def resolve(j):
        if set(j) == {"h"}:
            return objects[j["h"]]
        if set(j) == {"cb"}:
            return callback(j["cb"])
        raise ValueError("sandbox: malformed value")

    def dec(j):
        return _decode(j, resolve)

    module = types.ModuleType("solution")
    module.__file__ = "solution.py"
    sys.modules["solution"] = module

    def answer(msg):
        op = msg.get("op")
        try:
            if op == "load":
                exec(compile(msg["code"], "solution.py", "exec"), module.__dict__)
                return {"ok": None}
            if op == "get":
                if msg["name"] not in module.__dict__:
                    return {"missing": True}
                return {"ok": enc(module.__dict__[msg["name"]])}
            obj = objects[msg["ref"]]
            if op == "call":
                args = dec(msg["args"])
                value = obj(*args, **dec(msg["kwargs"]))
                after = [enc(a) if type(a) in (list, dict, set, bytearray) else None for a in args]
                return {"ok": enc(value), "after": after}
            if op == "attr":
                value = getattr(obj, msg["name"])
            elif op == "setattr":
                value = setattr(obj, msg["name"], dec(msg["value"]))
            elif op == "item":
                value = obj[dec(msg["key"])]
            elif op == "iter":
                value = list(itertools.islice(iter(obj), 1_000_001))
                if len(value) > 1_000_000:
                    raise ValueError("sandbox: more than a million items")
            elif op == "len":
                value = len(obj)
            elif op == "str":
                value = str(obj)
            elif op == "bool":
                value = bool(obj)
            else:
                raise ValueError(f"sandbox: unknown request {op!r}")
            return {"ok": enc(value)}
        except BaseException as e:
            try:
                text = str(e)[:300]
            except BaseException:
                text = ""
            return {"raise": type(e).__name__[:60], "msg": text}

    def serve_until_reply():
        while True:
            msg = recv()
            if "op" not in msg:
                return msg
            send(answer(msg))

    send({"hello": True})
    serve_until_reply()
    os._exit(0)


def _install_guards(root):
    """Guard mode only: a fence against accidents, not a boundary (see the module docstring)."""
    def inside(path):
        if isinstance(path, int):
            return True
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        return real == root or real.startswith(root + os.sep)

    def refuse(path):
        raise PermissionError(f"sandbox: writing outside the working folder is refused: {path!r}")

    real_open, real_os_open = io.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & write_flags and not inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guard_paths(fn):
        def wrapper(*args, **kwargs):
            for a in args[:2]:
                if isinstance(a, (str, bytes, os.PathLike)) and not inside(a):
                    refuse(a)
            return fn(*args, **kwargs)
        return wrapper

    builtins.open = io.open = guarded_open
    os.open = guarded_os_open
    for name in ("remove", "unlink", "rmdir", "mkdir", "rename", "replace", "chmod", "chown", "symlink", "link",
                 "truncate", "utime"):
        if hasattr(os, name):
            setattr(os, name, guard_paths(getattr(os, name)))

    class NoNetwork(socket.socket):
        def __init__(self, *args, **kwargs):
            raise OSError("sandbox: network access is disabled")

    socket.socket = socket.SocketType = NoNetwork
    sys.modules["_socket"].socket = NoNetwork

main()
'''

# ---- the checker: runs the tests on plain values -------------------------------------------------

_CHECKER = r'''
import ast, builtins, json, os, resource, sys, types
''' + _CODEC + r'''

class Lost(BaseException):
    """The candidate's process is gone or broke the protocol (not catchable as Exception)."""

_state = {"lost": None}
_callbacks = []

def _lose(why):
    _state["lost"] = why
    raise Lost(why)

def _send(msg):
    try:
        _wr.write(_dumps(msg))
        _wr.flush()
    except (OSError, ValueError) as e:
        _lose(f"request failed: {e}")

def _recv():
    try:
        line = _rd.readline(_MAX + 1)
    except (OSError, ValueError, MemoryError) as e:
        _lose(f"reply failed: {e}")
    if not line.endswith("\n"):
        _lose("the candidate's process ended" if not line else "reply too long")
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError, MemoryError):
        _lose("unreadable reply")
    if type(msg) is not dict:
        _lose("malformed reply")
    return msg

def _out(x):
    def other(v):
        if type(v) is Remote:
            return {"h": object.__getattribute__(v, "_ref")}
        if callable(v):
            _callbacks.append(v)
            return {"cb": len(_callbacks) - 1}
        raise TypeError(f"sandbox: a {type(v).__name__} cannot be passed to the candidate's code")
    return _encode(x, other)

def _in(j):
    def other(t):
        if set(t) == {"h", "type"} and type(t["h"]) is int and type(t["type"]) is str:
            return Remote(t["h"], t["type"])
        if set(t) == {"cb"} and type(t["cb"]) is int and 0 <= t["cb"] < len(_callbacks):
            return _callbacks[t["cb"]]
        _lose("malformed value")
    try:
        return _decode(j, other)
    except Lost:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError, OverflowError):
        _lose("malformed value")

class CandidateError(Exception):
    """An exception of the candidate's code that is not a builtin exception type."""

def _raised(reply):
    name, msg = reply.get("raise"), reply.get("msg")
    if type(name) is not str or type(msg) is not str:
        _lose("malformed reply")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, Warning):
        try:
            return cls(msg)
        except Exception:
            pass
    return CandidateError(f"{name}: {msg}")

def _rpc(**msg):
    """Send one request; serve the candidate's callbacks until its reply; raise what it raised."""
    _send(msg)
    while True:
        reply = _recv()
        if "cb" in reply:
            ident, args, kwargs = reply.get("cb"), _in(reply.get("args")), _in(reply.get("kwargs"))
            if type(ident) is not int or not 0 <= ident < len(_callbacks) or type(args) is not list \
                    or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
                _lose("malformed callback")
            try:
                result = {"ret": _out(_callbacks[ident](*args, **kwargs))}
            except Lost:
                raise
            except Exception as e:
                result = {"raise": type(e).__name__, "msg": str(e)[:300]}
            _send(result)
            continue
        if "raise" in reply:
            raise _raised(reply)
        if "ok" in reply or "missing" in reply:
            return reply
        _lose("malformed reply")

class Remote:
    """A handle on an object that lives in the candidate's process; never compared by its own ``==``."""
    __slots__ = ("_ref", "_type")

    def __init__(self, ref, type_name):
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_type", type_name)

    def _ask(self, op, **kw):
        return _in(_rpc(op=op, ref=object.__getattribute__(self, "_ref"), **kw)["ok"])

    def __call__(self, *args, **kwargs):
        reply = _rpc(op="call", ref=self._ref, args=_out(list(args)), kwargs=_out(kwargs))
        after = reply.get("after")
        if type(after) is list and len(after) == len(args):
            for a, new in zip(args, after):
                if new is not None and type(a) in (list, dict, set, bytearray):
                    value = _in(new)
                    if type(value) is type(a):
                        if type(a) in (list, bytearray):
                            a[:] = value
                        else:
                            a.clear()
                            a.update(value)
        return _in(reply["ok"])

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._ask("attr", name=name)

    def __setattr__(self, name, value):
        self._ask("setattr", name=name, value=_out(value))

    def __getitem__(self, key):
        return self._ask("item", key=_out(key))

    def __iter__(self):
        items = self._ask("iter")
        if type(items) is not list:
            _lose("malformed reply")
        return iter(items)

    def __len__(self):
        return self._ask("len")

    def __bool__(self):
        value = self._ask("bool")
        if type(value) is not bool:
            _lose("malformed reply")
        return value

    def __str__(self):
        value = self._ask("str")
        if type(value) is not str:
            _lose("malformed reply")
        return value

    def __repr__(self):
        return f"<candidate {self._type} #{self._ref}>"

    def __eq__(self, other):
        return type(other) is Remote and other._ref == self._ref

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(("candidate", self._ref))

def _fetch(name):
    reply = _rpc(op="get", name=name)
    return _in(reply["ok"]) if "ok" in reply else None, "ok" in reply

def _names(tree):
    """(free names, bound names) of a test snippet; builtins are never fetched from the candidate."""
    used, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return used - bound - set(dir(builtins)), bound

def main():
    global _rd, _wr, _MAX
    payload = json.loads(sys.stdin.read())
    nonce, _MAX = payload["nonce"], payload["max_reply"]
    resource.setrlimit(resource.RLIMIT_AS, (payload["memory"],) * 2)
    _rd = os.fdopen(payload["rep_fd"], "r", encoding="utf-8", newline="\n")
    _wr = os.fdopen(payload["req_fd"], "w", encoding="utf-8", newline="\n")
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")  # results; a test's print goes to /dev/null
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

    def report(*words):
        out.write(" ".join([nonce, *map(str, words)]) + "\n")
        out.flush()

    try:
        if "hello" not in _recv():
            raise Lost("no greeting")
    except Lost:
        report("nojail")
        return
    report("ready")
    try:
        _rpc(op="load", code=payload["code"])
    except Lost:
        report("lost")
        return
    except Exception as e:
        report("code", type(e).__name__)

    def lookup(name):
        value, found = _fetch(name)
        if not found:
            raise AttributeError(f"module 'solution' has no attribute {name!r}")
        return value

    solution = types.ModuleType("solution")
    solution.__getattr__ = lookup
    sys.modules["solution"] = solution
    ns = {"__name__": "__test__", "__builtins__": builtins}
    defined = set()
    for i, test in enumerate(payload["tests"]):
        if _state["lost"] is not None:
            report("fail", i, "SandboxLost")
            continue
        error = None
        try:
            tree = ast.parse(test, f"test_{i}.py")
            free, bound = _names(tree)
            for name in sorted(free - defined):
                value, found = _fetch(name)
                if found:
                    ns[name] = value
            defined |= bound
            exec(compile(tree, f"test_{i}.py", "exec"), ns)
        except BaseException as e:  # noqa: the test's own failure, whatever it is
            error = type(e).__name__
        if _state["lost"] is not None:
            error = "SandboxLost"
        report("pass", i) if error is None else report("fail", i, error)
    if _state["lost"] is None:
        report("done")

main()
os._exit(0)
'''

# ---- the jail: namespaces, read-only view, limits; then exec the candidate -----------------------

_JAIL = r'''
import ctypes, json, os, resource, select, signal, sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (
    0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000)
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC = 1, 2, 4, 8, 32, 4096, 16384
LOCKED = NOSUID | NODEV | NOEXEC | 1024 | 2048 | 4096  # statvfs flags = mount flags for these
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
libc = ctypes.CDLL(None, use_errno=True)


def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"sandbox jail: {what}: {os.strerror(e)}")


def mount(src, dst, fstype, flags, data=None):
    b = lambda s: None if s is None else os.fsencode(s)
    check(libc.mount(b(src), b(dst), b(fstype), ctypes.c_ulong(flags), b(data)), f"mount {dst}")


def die_with_parent(alive_fd):
    """SIGKILL when the parent dies; exit now if it already has (its end of ``alive_fd`` is closed)."""
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if select.select([alive_fd], [], [], 0)[0]:
        os._exit(1)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def build_root(cfg):
    root = cfg["root"]
    mount("tmpfs", root, "tmpfs", NOSUID | NODEV, "size=4m,nr_inodes=4096,mode=0755")
    for src in cfg["binds"]:
        dst = root + src
        if os.path.isdir(src):
            os.makedirs(dst, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            open(dst, "a").close()
        mount(src, dst, None, BIND | REC)
        extra = 0 if src.startswith("/dev/") else NODEV
        mount(None, dst, None, REMOUNT | BIND | RDONLY | NOSUID | extra | (os.statvfs(src).f_flag & LOCKED))
    for link, target in cfg["links"]:
        os.symlink(target, root + link)
    os.makedirs(root + "/proc")
    try:
        mount("proc", root + "/proc", "proc", NOSUID | NODEV | NOEXEC | RDONLY)
    except OSError:
        pass  # a host whose /proc is partly covered refuses a new one; Python does not need it
    work = root + cfg["work"]
    os.makedirs(work, exist_ok=True)
    owner = cfg["inner_uid"] if cfg["host_root"] else 0
    mount("tmpfs", work, "tmpfs", NOSUID | NODEV,
          f"size={cfg['work_mb']}m,nr_inodes=4096,mode=0700,uid={owner},gid={owner}")
    mount(None, root, None, REMOUNT | BIND | RDONLY | NOSUID | NODEV)
    return root


def init(cfg, alive_fd):
    """pid 1 of the new PID namespace: build the view, set limits, lose every privilege, exec."""
    die_with_parent(alive_fd)
    root = build_root(cfg)
    for name, (soft, hard) in cfg["limits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    inner = cfg["inner_uid"]
    if cfg["host_root"]:  # uid 1000 of this namespace is host nobody: setresuid drops every capability
        os.chroot(root)
        os.chdir(cfg["work"])
        os.setgroups([])
        os.setresgid(inner, inner, inner)
        os.setresuid(inner, inner, inner)
    else:  # one uid mapped: a nested user namespace (before chroot, which forbids it), then exec as its
        # non-root uid drops every capability
        check(libc.unshare(CLONE_NEWUSER), "unshare(user)")
        write("/proc/self/setgroups", "deny")
        write("/proc/self/uid_map", f"{inner} 0 1")
        write("/proc/self/gid_map", f"{inner} 0 1")
        os.chroot(root)
        os.chdir(cfg["work"])
    die_with_parent(alive_fd)  # credentials changed, which clears it: set it again
    os.close(alive_fd)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
    os.execve(cfg["python"], [cfg["python"], "-I", "-c", sys.argv[2], sys.argv[3]], cfg["env"])


def main():
    cfg = json.loads(sys.argv[1])
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    host_alive_r, host_alive_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(go_w)
            os.close(ready_r)
            os.close(host_alive_w)
            die_with_parent(host_alive_r)
            os.close(host_alive_r)
            check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC
                               | CLONE_NEWUTS), "unshare")
            os.write(ready_w, b"1")
            os.close(ready_w)
            if os.read(go_r, 1) != b"1":
                os._exit(1)
            os.close(go_r)
            alive_r, alive_w = os.pipe()
            pid1 = os.fork()
            if pid1 == 0:
                os.close(alive_w)
                init(cfg, alive_r)
            os.close(alive_r)
            _, status = os.waitpid(pid1, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        except BaseException as e:
            os.write(2, f"sandbox jail: {e}\n".encode())
            os._exit(97)
    os.close(go_r)
    os.close(ready_w)
    os.close(host_alive_r)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(cfg["deadline_s"])  # the jail ends even if the trainer is gone
    unshared = os.read(ready_r, 1) == b"1"
    os.close(ready_r)
    try:
        if not unshared:
            raise OSError("the namespaces could not be created")
        uid, gid = os.geteuid(), os.getegid()
        if cfg["host_root"]:
            maps = (f"0 0 1\n{cfg['inner_uid']} 65534 1", f"0 0 1\n{cfg['inner_uid']} 65534 1")
        else:
            write(f"/proc/{child}/setgroups", "deny")
            maps = (f"0 {uid} 1", f"0 {gid} 1")
        write(f"/proc/{child}/uid_map", maps[0])
        write(f"/proc/{child}/gid_map", maps[1])
        os.write(go_w, b"1")
    except OSError as e:
        os.write(2, f"sandbox jail: uid map: {e}\n".encode())
    os.close(go_w)
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)

main()
'''


def _view() -> tuple[list[str], list[tuple[str, str]]]:
    """Read-only binds (folders and device files) and top-level symlinks the jail's root needs."""
    wanted = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", sys.prefix, sys.base_prefix,
              sys.exec_prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)]
    links, folders = [], []
    for path in wanted:
        if os.path.islink(path) and path.count("/") == 1:
            links.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            folders.append(os.path.realpath(path))
    binds: list[str] = []
    for path in sorted(set(folders)):
        if not any(path == b or path.startswith(b + "/") for b in binds):
            binds.append(path)
    links = [(link, target) for link, target in dict(links).items() if link not in binds]
    devices = [d for d in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom") if os.path.exists(d)]
    return binds + devices, links


def _env(folder: str) -> dict[str, str]:
    # one thread per BLAS/OpenMP pool: RLIMIT_NPROC counts threads, and a sandbox should not take every core
    single = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": folder, "TMPDIR": folder, **single}


@functools.lru_cache(maxsize=1)
def _jail_probe() -> str | None:
    """None when the jail works here (probed once per process), else why it does not."""
    probe = "import os, sys; sys.stdout.write(f'jail {os.getuid()} {os.getppid()} {os.listdir(\"/\") and 1}')"
    try:
        with tempfile.TemporaryDirectory(prefix="urlvr-sandbox-") as tmp:
            os.chmod(tmp, 0o755)
            cfg = _jail_config(tmp, {}, 5)
            r = subprocess.run([sys.executable, "-I", "-S", "-c", _JAIL, json.dumps(cfg), probe, "{}"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=20, cwd=tmp, env=_env(tmp))
    except (OSError, subprocess.SubprocessError) as e:
        return f"the jail could not start: {e}"
    if r.returncode == 0 and r.stdout.decode(errors="replace") == f"jail {_SANDBOX_UID} 0 1":
        return None
    lines = (r.stderr.decode(errors="replace").strip() or f"exit {r.returncode}").splitlines()
    return lines[-1][:200]


def _jail_config(folder: str, limits: dict, deadline_s: int, work_mb: int = 64) -> dict:
    binds, links = _view()
    return {"root": folder, "work": folder, "binds": binds, "links": links, "limits": limits,
            "inner_uid": _SANDBOX_UID, "host_root": os.geteuid() == 0, "python": sys.executable,
            "env": _env(folder), "work_mb": work_mb, "deadline_s": deadline_s}


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        echo(f"WARNING: {message}")


def _kill_group(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class Sandbox:
    """Limits of one run; :meth:`run` executes code against tests (see the module docstring)."""

    timeout_s: float = 5.0
    """Wall-clock limit of the whole run (start-up included); every process is then killed."""
    cpu_s: int = 5
    memory_mb: int = 1024
    """Address-space limit (``RLIMIT_AS``) per process; the interpreter itself needs ~100 MB of it."""
    max_open_files: int = 64
    max_file_mb: int = 16
    """Largest file the code may write; its working folder holds at most 4 × this."""
    max_processes: int = 32
    """``RLIMIT_NPROC`` in the jail (processes *and threads* of its user namespace); not applied without the jail."""
    network: str = "auto"
    """One of :data:`NETWORK_MODES`."""

    def _limits(self, jail: bool) -> dict[str, tuple[int, int]]:
        limits = {"RLIMIT_AS": (self.memory_mb << 20,) * 2, "RLIMIT_CPU": (self.cpu_s, self.cpu_s + 1),
                  "RLIMIT_NOFILE": (self.max_open_files,) * 2, "RLIMIT_FSIZE": (self.max_file_mb << 20,) * 2}
        if jail:
            limits["RLIMIT_NPROC"] = (self.max_processes,) * 2
        return limits

    def _use_jail(self) -> bool:
        if self.network not in NETWORK_MODES:
            raise UrlvrError(f"unknown sandbox network mode {self.network!r}; "
                             f"choose one of: {', '.join(NETWORK_MODES)}")
        for name in ("timeout_s", "cpu_s", "memory_mb", "max_open_files", "max_file_mb", "max_processes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < float("inf"):
                raise UrlvrError(f"sandbox {name} must be a positive finite number, got {value!r}")
        if self.network == "guard":
            _warn_once("sandbox network='guard': generated code runs without the jail; it can reach the network, "
                       "read and write your files and signal the trainer (use network='auto' or 'namespace')")
            return False
        why = _jail_probe()
        if why is None:
            return True
        if self.network == "namespace":
            raise UrlvrError(f"sandbox network='namespace' needs unprivileged user namespaces, unavailable here "
                             f"({why}); enable them (sysctl kernel.unprivileged_userns_clone=1) or use network='auto'")
        _warn_once(f"sandbox: no jail on this machine ({why}); generated code runs unprotected: it can reach the "
                   "network, read and write your files and signal the trainer")
        return False

    def run(self, code: str, tests: Sequence[str]) -> SandboxResult:
        """Run ``code``, then check each of ``tests`` against it (see the module docstring); raises SandboxError on infra failure."""
        jail = self._use_jail()
        nonce = secrets.token_hex(16)
        deadline = int(self.timeout_s) + 5
        try:
            with tempfile.TemporaryDirectory(prefix="urlvr-sandbox-") as tmp, tempfile.TemporaryFile() as err:
                server_cfg = json.dumps({"limits": {} if jail else self._limits(False), "guards": not jail})
                if jail:
                    os.chmod(tmp, 0o755)  # only a mount point: the jail puts a private tmpfs over it
                    cfg = _jail_config(tmp, self._limits(True), deadline, work_mb=4 * self.max_file_mb)
                    cmd = [sys.executable, "-I", "-S", "-c", _JAIL, json.dumps(cfg), _SERVER, server_cfg]
                else:
                    cmd = [sys.executable, "-I", "-c", _SERVER, server_cfg]
                out, timed_out, checker_err = self._spawn(cmd, tmp, err, code, list(tests), nonce)
                stderr = _tail(err)
        except OSError as e:
            raise SandboxError(f"sandbox could not run: {e}") from e
        return _parse(out, nonce, len(tests), timed_out, stderr, checker_err)

    def _spawn(self, cmd: list[str], folder: str, err, code: str, tests: list[str],
               nonce: str) -> tuple[str, bool, str]:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        candidate = checker = None
        try:
            candidate = subprocess.Popen(cmd, cwd=folder, env=_env(folder), stdin=req_r, stdout=rep_w, stderr=err,
                                         start_new_session=True)
            os.close(req_r)
            os.close(rep_w)
            req_r = rep_w = -1
            payload = json.dumps({"nonce": nonce, "code": code, "tests": tests, "req_fd": req_w, "rep_fd": rep_r,
                                  "max_reply": _MAX_REPLY, "memory": max(self.memory_mb, 1024) << 20})
            checker = subprocess.Popen([sys.executable, "-I", "-c", _CHECKER], cwd=folder, env=_env(folder),
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       pass_fds=(req_w, rep_r), start_new_session=True)
            os.close(req_w)
            os.close(rep_r)
            req_w = rep_r = -1
            try:
                out, checker_err = checker.communicate(payload.encode(), timeout=self.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill_group(checker)
                _kill_group(candidate)
                out, checker_err = checker.communicate(timeout=5)
                timed_out = True
            return out.decode("utf-8", "replace"), timed_out, checker_err.decode("utf-8", "replace")
        finally:
            for fd in (req_r, req_w, rep_r, rep_w):
                if fd >= 0:
                    os.close(fd)
            for proc in (checker, candidate):
                _kill_group(proc)
                if proc is not None:
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass


def _tail(f) -> str:
    try:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _STDERR_TAIL))
        return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _parse(out: str, nonce: str, total: int, timed_out: bool, stderr: str, checker_err: str) -> SandboxResult:
    events = [line.split()[1:] for line in out.splitlines() if line.startswith(nonce + " ")]
    kinds = [e[0] for e in events if e]
    if "ready" not in kinds:
        why = "timeout" if timed_out else "the candidate's process never answered" if "nojail" in kinds else "exited"
        raise SandboxError(f"sandbox did not start ({why}): {(stderr or checker_err)[-300:]}")
    passed = {int(e[1]) for e in events if e[0] == "pass" and len(e) > 1 and e[1].isdigit() and int(e[1]) < total}
    failures = tuple(f"test {e[1]}: {e[2]}" for e in events if e[0] == "fail" and len(e) > 2)
    status = "ok" if "done" in kinds else "timeout" if timed_out else "crashed"
    return SandboxResult(len(passed), total, status, failures, stderr)
