"""The code sandbox: limits, kills and refusals, in the jail and in the unprotected guard mode.

Attacks are in test_sandbox_attacks.py, the checker's semantics in test_sandbox_checker.py."""

import os
import tempfile
import time

import pytest

from urlvr.errors import UrlvrError
from urlvr.rewards.sandbox import Sandbox, _jail_probe, extract_code

FAST = Sandbox(timeout_s=5.0, cpu_s=2)


def test_partial_pass_reports_each_test():
    r = FAST.run("def f(x):\n    return x * 2\n", ["assert f(2) == 4", "assert f(3) == 7", "assert f(0) == 0"])
    assert (r.passed, r.total, r.status, r.failures) == (2, 3, "ok", ("test 1: AssertionError",))
    assert r.fraction == pytest.approx(2 / 3)


def test_infinite_loop_is_killed_by_the_wall_clock():
    t0 = time.monotonic()
    r = Sandbox(timeout_s=1.0).run("while True:\n    pass\n", ["assert True"])
    assert r.status == "timeout" and r.passed == 0
    assert time.monotonic() - t0 < 4


def test_cpu_limit_kills_a_busy_loop():
    r = Sandbox(timeout_s=10.0, cpu_s=1).run("x = 0\nwhile True:\n    x += 1\n", ["assert True"])
    assert r.status == "crashed" and r.passed == 0


def test_tests_passed_before_a_crash_are_kept():
    code = "import os\ndef f():\n    return 1\ndef boom():\n    os._exit(0)\n"
    r = FAST.run(code, ["assert f() == 1", "boom()", "assert True"])
    assert (r.passed, r.status) == (1, "crashed")
    assert r.failures == ("test 1: SandboxLost", "test 2: SandboxLost")


def test_network_calls_are_refused():
    code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n    error = ''\n"
            "except OSError as e:\n    error = str(e)\n")
    r = Sandbox(network="guard").run(code, ["assert error", "assert 'network access is disabled' in error"])
    assert r.passed == 2
    r = Sandbox(network="auto").run(code, ["assert error"])
    assert r.passed == 1


@pytest.mark.parametrize("network", ["guard", "auto"])
def test_writes_outside_the_working_folder_are_refused(tmp_path, network):
    target = tmp_path / "escape.txt"
    code = (f"import os, pathlib\nerrors = []\nfor write in (lambda: open({str(target)!r}, 'w'),\n"
            f"              lambda: pathlib.Path({str(target)!r}).write_text('x'),\n"
            f"              lambda: os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT),\n"
            f"              lambda: os.remove({str(tmp_path)!r})):\n"
            "    try:\n        write()\n    except OSError:\n        errors.append(1)\n"
            "open('inside.txt', 'w').write('ok')\n")
    r = Sandbox(network=network).run(code, ["assert len(errors) == 4"])
    assert r.passed == 1, r
    assert not target.exists()


def test_the_candidates_files_are_read_through_the_candidate():
    code = "open('inside.txt', 'w').write('ok')\ndef read(p):\n    return open(p).read()\n"
    assert FAST.run(code, ["assert read('inside.txt') == 'ok'"]).passed == 1


def test_the_jail_is_used_when_available():
    if _jail_probe() is not None:
        pytest.skip(f"no jail here: {_jail_probe()}")
    probe = ("import os\nuid, ppid, top = os.getuid(), os.getppid(), sorted(os.listdir('/'))\n"
             "status = open('/proc/self/status').read() if os.path.exists('/proc/self/status') else 'CapEff: 0'\n"
             "caps = [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')][0]\n")
    r = Sandbox(network="namespace").run(probe, ["assert uid == 1000", "assert ppid == 0", "assert 'etc' not in top",
                                                 "assert 'home' not in top", "assert int(caps, 16) == 0"])
    assert r.passed == 5, r


def test_memory_limit_and_stdout_is_not_a_channel():
    nonce_forgery = "print('0' * 32 + ' pass 0')\nx = bytearray(4 * 1024 ** 3)\n"
    r = Sandbox(memory_mb=512).run(nonce_forgery, ["x"])
    assert r.passed == 0 and r.failures == ("test 0: NameError",)  # MemoryError stopped the code


def test_the_working_folder_is_removed_and_the_environment_is_bare():
    def folders():
        return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("urlvr-sandbox-")}

    before = folders()
    r = FAST.run("import os\ncwd = os.getcwd()\nenv = dict(os.environ)\n",
                 ["assert 'urlvr-sandbox-' in cwd", "assert not any('proxy' in k.lower() for k in env)",
                  "assert env['HOME'] == cwd"])
    assert r.passed == 3
    assert folders() <= before


def test_bad_settings():
    with pytest.raises(UrlvrError, match="network mode"):
        Sandbox(network="cable").run("pass", [])
    with pytest.raises(UrlvrError, match="max_processes must be a positive finite number"):
        Sandbox(max_processes=0).run("pass", [])
    with pytest.raises(UrlvrError, match="timeout_s"):
        Sandbox(timeout_s=float("nan")).run("pass", [])


def test_guard_mode_warns_loudly(capsys):
    from urlvr.rewards import sandbox

    sandbox._WARNED.clear()
    Sandbox(network="guard").run("pass", [])
    assert "WARNING: sandbox network='guard'" in capsys.readouterr().err


@pytest.mark.parametrize("text,code", [
    ("```python\na = 1\n```\n```\nb = 2\n```", "a = 1\n"),  # python block preferred over a plain one
    ("```\nb = 2\n```", "b = 2\n"),
    ("```py3\nx\n```", "x\n"),  # unknown label: still a fenced block
    ("just code", "just code"),
])
def test_extract_code(text, code):
    assert extract_code(text) == code
