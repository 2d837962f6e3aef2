r"""Run generated Python against tests in a separate, limited process (METHODS.md §4, code with tests).

Never in the trainer's process: each call starts ``python -I`` (isolated mode: no user site, no
``PYTHON*`` variables, no script folder on ``sys.path``) in a fresh temporary folder that is its
working directory and is deleted afterwards, with a minimal environment (no proxy variables,
``HOME`` and ``TMPDIR`` = that folder). A small harness, written next to the payload, then:

1. reads the code and tests and deletes the payload file;
2. sets hard resource limits with :func:`resource.setrlimit` in the child, before any user code:
   ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU seconds), ``RLIMIT_NOFILE`` (open files),
   ``RLIMIT_FSIZE`` (file size; writes beyond it fail). They are set by the harness rather than in a
   ``preexec_fn``, because ``preexec_fn`` is unsafe in a parent with threads (the trainer runs torch
   threads) and the limits take effect at the same point: before the first line of user code;
3. installs guards: ``socket.socket`` (and ``_socket.socket``) raise ``OSError``; ``open``/``io.open``
   /``os.open`` in a write mode, and ``os.remove``/``rename``/``mkdir``/... on a path whose real path
   lies outside the working folder raise ``PermissionError``;
4. runs the code as module ``solution`` (so ``if __name__ == "__main__"`` blocks do not run; stdin is
   empty, stdout is discarded, stderr goes to a capped file), then every test (an ``assert``
   statement or any snippet) in the code's namespace, reporting each result as it finishes on a
   private channel marked with a random nonce.

The parent enforces a wall-clock timeout and kills the whole process group (the child runs in its own
session). Where unprivileged user namespaces work (probed once), the child also runs under
``unshare --net --map-root-user``: a network namespace with no interface, so no network at all.

**Limits, honestly.** The in-process guards are a fence against accidents, not a security boundary:
code can reach the original functions (``ctypes``, ``_io``, ``posix``), spawn a process (no
``RLIMIT_NPROC``: it counts the user's processes machine-wide; children of the session die with it
unless they start their own session) and, without the network namespace, open sockets through
those routes. Run untrusted code at scale inside a container or VM.

Results: the number of tests passed and a status, ``ok`` (all tests ran), ``timeout`` or ``crashed``
(killed by a limit, or the code exited the process); tests that reported before a kill keep their
result. A failure of the sandbox itself (the interpreter does not start, the harness never reports
ready) raises :class:`SandboxError`, which a reward turns into None, never into a 0; a bad setting
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

from urlvr.errors import UrlvrError

__all__ = ["Sandbox", "SandboxResult", "SandboxError", "extract_code", "NETWORK_MODES"]

NETWORK_MODES = ("auto", "namespace", "guard")
"""``namespace``: require ``unshare --net`` (error if unavailable); ``guard``: only the socket guard;
``auto``: the namespace when available, else the guard."""

_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
_STDERR_TAIL = 2000


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
    """``ok`` (every test ran), ``timeout`` (wall clock) or ``crashed`` (limit hit or process exited)."""
    failures: tuple[str, ...] = ()
    """``test <i>: <ExceptionType>`` for each failing test that reported."""
    stderr: str = ""
    """The tail of the code's stderr (for debugging)."""

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


_HARNESS = r'''
import builtins, io, json, os, resource, signal, socket, sys

def main():
    root = os.path.realpath(os.getcwd())
    with open("payload.json", encoding="utf-8") as f:
        payload = json.load(f)
    os.remove("payload.json")
    nonce = payload.pop("nonce")
    chan = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails instead of killing us
    for name, (soft, hard) in payload["limits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))

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
    chan.write(f"{nonce} ready\n")
    namespace = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(compile(payload["code"], "solution.py", "exec"), namespace)
    except BaseException as e:
        chan.write(f"{nonce} code {type(e).__name__}\n")
    for i, test in enumerate(payload["tests"]):
        try:
            exec(compile(test, f"test_{i}.py", "exec"), namespace)
            chan.write(f"{nonce} pass {i}\n")
        except BaseException as e:
            chan.write(f"{nonce} fail {i} {type(e).__name__}\n")
    chan.write(f"{nonce} done\n")
    chan.flush()
    os._exit(0)  # skip atexit handlers the code may have registered

main()
'''


@functools.lru_cache(maxsize=1)
def _namespace_prefix() -> tuple[str, ...]:
    """``unshare --net --map-root-user`` when it works here (probed once), else ()."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    cmd = (exe, "--net", "--map-root-user")
    try:
        ok = subprocess.run([*cmd, sys.executable, "-I", "-c", "pass"], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return cmd if ok else ()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class Sandbox:
    """Limits of one run; :meth:`run` executes code against tests (see the module docstring)."""

    timeout_s: float = 5.0
    """Wall-clock limit of the whole run (start-up included); the process group is then killed."""
    cpu_s: int = 5
    memory_mb: int = 1024
    """Address-space limit (``RLIMIT_AS``); the interpreter itself needs ~100 MB of it."""
    max_open_files: int = 64
    max_file_mb: int = 16
    network: str = "auto"
    """One of :data:`NETWORK_MODES`."""

    def _limits(self) -> dict[str, tuple[int, int]]:
        return {"RLIMIT_AS": (self.memory_mb << 20,) * 2, "RLIMIT_CPU": (self.cpu_s, self.cpu_s + 1),
                "RLIMIT_NOFILE": (self.max_open_files,) * 2, "RLIMIT_FSIZE": (self.max_file_mb << 20,) * 2}

    def _prefix(self) -> tuple[str, ...]:
        if self.network not in NETWORK_MODES:
            raise UrlvrError(f"unknown sandbox network mode {self.network!r}; "
                             f"choose one of: {', '.join(NETWORK_MODES)}")
        prefix = () if self.network == "guard" else _namespace_prefix()
        if self.network == "namespace" and not prefix:
            raise UrlvrError("sandbox network='namespace' but 'unshare --net --map-root-user' does not work here; "
                             "use network='auto' or 'guard'")
        return prefix

    def run(self, code: str, tests: Sequence[str]) -> SandboxResult:
        """Run ``code`` then each of ``tests`` in a fresh limited process; raises SandboxError on infra failure."""
        prefix = self._prefix()
        nonce = secrets.token_hex(16)
        try:
            with tempfile.TemporaryDirectory(prefix="urlvr-sandbox-") as tmp:
                folder = Path(tmp)
                (folder / "harness.py").write_text(_HARNESS, encoding="utf-8")
                (folder / "payload.json").write_text(json.dumps(
                    {"nonce": nonce, "code": code, "tests": list(tests), "limits": self._limits()}), encoding="utf-8")
                out, timed_out = self._spawn([*prefix, sys.executable, "-I", "harness.py"], folder)
                stderr = _tail(folder / "stderr.txt")
        except OSError as e:
            raise SandboxError(f"sandbox could not run: {e}") from e
        return _parse(out, nonce, len(tests), timed_out, stderr)

    def _spawn(self, cmd: list[str], folder: Path) -> tuple[str, bool]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(folder), "TMPDIR": str(folder)}
        with open(folder / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=self.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            timed_out = True
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired as e:  # a process outside the group holds the pipe
                proc.kill()
                raise SandboxError("sandbox: the killed process did not release its output") from e
        finally:
            _kill_group(proc)  # stray children of a finished run
        return out.decode("utf-8", "replace"), timed_out


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - _STDERR_TAIL))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _parse(out: str, nonce: str, total: int, timed_out: bool, stderr: str) -> SandboxResult:
    events = [line.split()[1:] for line in out.splitlines() if line.startswith(nonce + " ")]
    kinds = [e[0] for e in events if e]
    if "ready" not in kinds:
        raise SandboxError(f"sandbox harness did not start ({'timeout' if timed_out else 'exited'}): {stderr[-300:]}")
    passed = {int(e[1]) for e in events if e[0] == "pass" and len(e) > 1 and e[1].isdigit() and int(e[1]) < total}
    failures = tuple(f"test {e[1]}: {e[2]}" for e in events if e[0] == "fail" and len(e) > 2)
    status = "ok" if "done" in kinds else "timeout" if timed_out else "crashed"
    return SandboxResult(len(passed), total, status, failures, stderr)
