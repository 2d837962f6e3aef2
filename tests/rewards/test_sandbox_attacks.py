"""The sandbox as a hostile candidate sees it (issue 17): every attack must earn nothing and escape nowhere.

Two tables. Attacks on *the reward* (cheating the checker) run in the jail and in the unprotected
guard mode alike: the checker never trusts the candidate's process. Attacks on *the machine* (signal
the trainer, write or read its files, fork, outlive the run, reach the network) need the jail and are
skipped where the platform has no unprivileged user namespaces.
"""

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import urlvr
from urlvr.rewards.sandbox import Sandbox, _jail_probe

JAIL = pytest.mark.skipif(_jail_probe() is not None, reason=f"no jail on this machine: {_jail_probe()}")
DOUBLE = ["assert f(2) == 4", "assert f(3) == 6", "assert f(-1) == -2"]

# ---- cheating the reward: (name, code, tests); every test must fail ------------------------------

CHEATS = [
    ("patch builtins.exec and compile",
     "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.compile = lambda *a, **k: None\n", DOUBLE),
    ("patch builtins.exec, then define nothing",
     "import builtins\n_real = builtins.exec\nbuiltins.exec = lambda src, *a, **k: _real('pass', *a, **k)\n", DOUBLE),
    ("__eq__ always True",
     "class A:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
     "def f(x):\n    return A()\n", DOUBLE),
    ("int subclass whose __eq__ is always True",
     "class I(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
     "def f(x):\n    return I(0)\n", DOUBLE),
    ("str subclass in a list, __eq__ True",
     "class S(str):\n    __eq__ = lambda self, other: True\n    __hash__ = str.__hash__\n"
     "def f(x):\n    return [S('')]\n", ["assert f(1) == ['a']", "assert f(1)[0] == 'a'"]),
    ("__ne__/__bool__ tricks under assert not",
     "class B:\n    __eq__ = __ne__ = lambda s, o: False\n    __bool__ = lambda s: False\n"
     "def f(x):\n    return B()\n", ["assert f(2) == 4", "assert not (f(2) != 4)"]),
    ("forge the old harness marker on every descriptor",
     "import os\nfor fd in range(3, 64):\n    for line in (b'0' * 32 + b' pass 0\\n', b'{\"ok\": 4}\\n'):\n"
     "        try:\n            os.write(fd, line)\n        except OSError:\n            pass\n"
     "print('0' * 32 + ' pass 0')\n", ["assert f(2) == 4"]),
    ("forge replies on the channel, then exit",
     "import os, sys\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'{\"ok\":4}\\n' * 10)\n"
     "    except OSError:\n        pass\n", ["assert f(2) == 4", "assert f(3) == 4"]),
    ("patch the sandbox's own encoder to answer 4",
     "import sys\nm = sys.modules['__main__']\nm._encode = lambda x, other, depth=0: 4\n"
     "def f(x):\n    return None\n", ["assert f(3) == 6", "assert f(-1) == -2"]),
    ("read the tests to learn the expected value",
     "import os, re\n"
     "def f(x):\n    seen = ''\n    for p in os.listdir('/proc') if os.path.isdir('/proc') else []:\n"
     "        for part in ('cmdline', 'environ'):\n            try:\n"
     "                seen += open(f'/proc/{p}/{part}', errors='replace').read()\n"
     "            except OSError:\n                pass\n"
     "    hits = re.findall('[0-9a-f]{40}', seen)\n    return hits[0] if hits else ''\n",
     None),  # tests filled in below with a random expected value
    ("os._exit inside a test that swallows every exception",
     "import os\ndef f(x):\n    os._exit(0)\n", ["try:\n    f(1)\nexcept BaseException:\n    pass"]),
    ("SystemExit from the code under test",
     "def f(x):\n    raise SystemExit(0)\n", ["assert f(2) == 4"]),
    ("redefine len in the solution",
     "def len(x):\n    return 3\ndef f(x):\n    return []\n", ["assert len(f(1)) == 3"]),
]


def _cheat_tests(name, tests):
    if tests is None:
        return [f"assert f(1) == {secrets.token_hex(20)!r}"]
    return tests


@pytest.mark.parametrize("network", ["auto", "guard"])
@pytest.mark.parametrize("name,code,tests", CHEATS, ids=[c[0] for c in CHEATS])
def test_cheating_earns_nothing(name, code, tests, network):
    tests = _cheat_tests(name, tests)
    r = Sandbox(network=network, timeout_s=10.0).run(code, tests)
    assert r.passed == 0, (name, r)


# ---- escaping: each attack with the host-side check that it did not work -------------------------

@pytest.fixture
def canary():
    """A process of the trainer's own user that the candidate tries to kill."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


@JAIL
def test_the_trainer_cannot_be_signalled(canary):
    code = (f"import os, signal\nfor pid in (os.getppid(), {os.getpid()}, {canary.pid}, -1, 0):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
            "def f(x):\n    return 2 * x\n")
    r = Sandbox().run(code, DOUBLE)
    assert canary.poll() is None  # still running; and so are we
    assert r.passed in (0, 3)  # kill(0)/kill(-1) may take the candidate down with its own namespace


@JAIL
def test_writes_anywhere_are_refused(tmp_path):
    targets = [tmp_path / name for name in ("fileio", "posix", "system", "subprocess")]
    code = (f"import _io, os, posix, subprocess\nt = {[str(t) for t in targets]!r}\n"
            "def attempt(fn):\n    try:\n        fn()\n    except Exception:\n        pass\n"
            "attempt(lambda: _io.FileIO(t[0], 'w').write(b'x'))\n"
            "attempt(lambda: posix.write(posix.open(t[1], posix.O_WRONLY | posix.O_CREAT), b'x'))\n"
            "attempt(lambda: os.system(f'echo x > {t[2]}'))\n"
            "attempt(lambda: subprocess.run(['sh', '-c', f'echo x > {t[3]}']))\n"
            "for p in ('/usr/urlvr-escape', '/urlvr-escape', '/tmp/urlvr-escape'):\n"
            "    attempt(lambda: _io.FileIO(p, 'w'))\n")
    r = Sandbox().run(code, ["assert True"])
    assert r.status == "ok"
    assert not [t for t in targets if t.exists()]
    assert not [p for p in ("/usr/urlvr-escape", "/urlvr-escape", "/tmp/urlvr-escape") if os.path.exists(p)]


@JAIL
def test_the_trainers_files_cannot_be_read(tmp_path):
    token = secrets.token_hex(16)
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    repo_file = Path(urlvr.__file__)
    code = (f"import os, sys\nleaks = []\nfor p in ('/etc/passwd', '/etc/shadow', {str(secret)!r}, "
            f"{str(repo_file)!r}, {os.path.expanduser('~/.bash_history')!r}):\n"
            "    try:\n        data = open(p, errors='replace').read()\n        leaks.append(p)\n"
            "        sys.stderr.write(data)\n    except OSError:\n        pass\n"
            f"home = os.listdir({os.path.expanduser('~')!r}) if os.path.isdir({os.path.expanduser('~')!r}) else []\n")
    r = Sandbox().run(code, ["assert leaks"])
    assert r.passed == 0 and token not in r.stderr and "root:" not in r.stderr, r
    # what of the trainer's home folder is visible: at most the interpreter's folder chain
    visible = Sandbox().run(code, ["assert set(home) <= {'.pyenv', '.local', '.venv', '.cache'}"])
    assert visible.passed == 1


@JAIL
def test_forking_is_limited():
    code = ("import os, time\nn = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n"
            "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\n")
    r = Sandbox(max_processes=16).run(code, ["assert n >= 500", "assert n < 16"])
    assert (r.passed, r.failures) == (1, ("test 0: AssertionError",)), r


def _processes_with(token: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except (OSError, ValueError):
            pass
    return found


@JAIL
@pytest.mark.parametrize("how", ["setsid child", "double fork", "setsid in the candidate itself"])
def test_nothing_outlives_the_run(how):
    token = f"urlvr-orphan-{secrets.token_hex(6)}"
    sleeper = f"[sys.executable, '-c', 'import time; time.sleep(60)', {token!r}]"
    code = {
        "setsid child": f"import subprocess, sys\nsubprocess.Popen({sleeper}, start_new_session=True)\n",
        "double fork": (f"import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                        f"        os.execv(sys.executable, {sleeper})\n    os._exit(0)\n"),
        "setsid in the candidate itself": (f"import os, subprocess, sys\nos.setsid()\n"
                                           f"subprocess.Popen({sleeper})\n"),
    }[how]
    r = Sandbox().run(code + "import time\ntime.sleep(0.3)\n", ["assert True"])
    assert r.passed == 1, r
    deadline = time.monotonic() + 3
    while _processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _processes_with(token)


@JAIL
@pytest.mark.parametrize("route", ["socket.__mro__", "_socket", "child process"])
def test_no_network_even_to_localhost(route):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    connect = f"s.connect(('127.0.0.1', {port}))"
    code = {
        "socket.__mro__": f"import socket\ns = socket.socket.__mro__[1]()\n{connect}\n",
        "_socket": f"import _socket\ns = _socket.socket()\n{connect}\n",
        "child process": (f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', "
                          f"\"import socket; s = socket.socket(); {connect}\"], timeout=3)\n"),
    }[route]
    try:
        Sandbox().run(code, ["assert True"])
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


@JAIL
def test_disk_is_bounded():
    """Each file stops at max_file_mb (RLIMIT_FSIZE); all of them together at the tmpfs (4 × max_file_mb)."""
    code = ("total = 0\nfor i in range(20):\n    try:\n        with open(f'f{i}', 'wb') as f:\n"
            "            for _ in range(8):\n                f.write(b'x' * (1 << 20))\n                total += 1 << 20\n"
            "    except OSError:\n        pass\n")
    r = Sandbox(max_file_mb=4).run(code, ["assert total > 16 << 20", "assert total <= 16 << 20"])
    assert (r.passed, r.failures) == (1, ("test 0: AssertionError",)), r
