"""The public API: explicit ``__all__``, a cheap ``import urlvr``, and the README's Python example, run as written."""

import os
import re
import subprocess
import sys

from conftest import REPO


def test_every_public_name_resolves():
    import urlvr

    for name in urlvr.__all__:
        assert getattr(urlvr, name) is not None, name
    assert set(urlvr.__all__) <= set(dir(urlvr))


def test_import_urlvr_loads_no_torch():
    code = "import sys, urlvr; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.stdout.strip() == "False", out.stderr


def test_the_readme_python_example_runs(tiny_model, tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- tested: tests/test_api.py -->\n```python\n(.*?)```", text, re.S)
    assert block, "README lost its tested Python example"
    monkeypatch.chdir(tmp_path)  # the example writes runs/api_example here
    namespace: dict = {}
    from urlvr.rewards import base

    try:
        exec(compile(block[1], "README.md", "exec"), namespace)
    finally:
        base._REGISTRY.pop("short_majority", None)
    assert namespace["summary"]["steps"] == 2
    assert (tmp_path / "runs" / "api_example" / "metrics.jsonl").is_file()
