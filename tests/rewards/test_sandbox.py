"""The code sandbox: limits, kills and refusals (a guard, not a security boundary; see its docstring)."""

import os
import tempfile
import time

import pytest

from urlvr.errors import UrlvrError
from urlvr.rewards.sandbox import Sandbox, _namespace_prefix, extract_code

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
    r = FAST.run("def f():\n    return 1\n", ["assert f() == 1", "import os; os._exit(0)", "assert True"])
    assert (r.passed, r.status) == (1, "crashed")


@pytest.mark.parametrize("network", ["guard", "auto"])
def test_network_calls_are_refused(network):
    code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n    error = ''\n"
            "except OSError as e:\n    error = str(e)\n")
    r = Sandbox(network=network).run(code, ["assert error", "assert 'network access is disabled' in error"])
    assert r.passed == 2


def test_network_namespace_is_used_when_available():
    if not _namespace_prefix():
        pytest.skip("unprivileged user namespaces are not available here")
    real = "import socket\nReal = socket.socket.__mro__[1]  # the class under the guard: bypass it\n"
    r = Sandbox(network="namespace").run(
        real + "try:\n    Real().connect(('1.1.1.1', 80))\n    ok = True\nexcept OSError:\n    ok = False\n",
        ["assert not ok"])
    assert r.passed == 1


def test_writes_outside_the_working_folder_are_refused(tmp_path):
    target = tmp_path / "escape.txt"
    code = (f"import os, pathlib\nerrors = []\nfor write in (lambda: open({str(target)!r}, 'w'),\n"
            f"              lambda: pathlib.Path({str(target)!r}).write_text('x'),\n"
            f"              lambda: os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT),\n"
            f"              lambda: os.remove({str(tmp_path)!r})):\n"
            "    try:\n        write()\n    except PermissionError:\n        errors.append(1)\n"
            "open('inside.txt', 'w').write('ok')\n")
    r = FAST.run(code, ["assert len(errors) == 4", "assert open('inside.txt').read() == 'ok'"])
    assert r.passed == 2, r
    assert not target.exists()


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


def test_bad_network_mode():
    with pytest.raises(UrlvrError, match="network mode"):
        Sandbox(network="cable").run("pass", [])


@pytest.mark.parametrize("text,code", [
    ("```python\na = 1\n```\n```\nb = 2\n```", "a = 1\n"),  # python block preferred over a plain one
    ("```\nb = 2\n```", "b = 2\n"),
    ("```py3\nx\n```", "x\n"),  # unknown label: still a fenced block
    ("just code", "just code"),
])
def test_extract_code(text, code):
    assert extract_code(text) == code
