"""``urlvr report``: pages and plots of two tiny runs, every image loaded by a real headless browser."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO, tiny_config
from urlvr.io import append_jsonl, read_jsonl
from urlvr.report import PANELS, build_report, load_run
from urlvr.trainer import train

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                "--allow-file-access-from-files", "--virtual-time-budget=10000")
# Added to a copy of the page (beside it, so relative links resolve as in the original): after the
# load event, record how many <img> decoded to a real picture and which did not.
PROBE = ("<script>window.addEventListener('load', function () {var ok = 0, bad = [];"
         "for (var i = 0; i < document.images.length; i++) {var im = document.images[i];"
         "if (im.complete && im.naturalWidth > 0 && im.naturalHeight > 0) ok++; else bad.push(im.getAttribute('alt'));}"
         "document.body.setAttribute('data-images', ok + '/' + document.images.length + ' bad=' + bad.join(';'));"
         "});</script>")


@pytest.fixture(scope="module")
def two_runs(tiny_model, tmp_path_factory):
    """Two tiny runs (majority vote, gold), one with a collapse event written into its metrics."""
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for reward in ("majority_vote", "gold"):
        cfg = tiny_config(tiny_model, root / reward, reward=reward)
        train(cfg, progress=False)
        runs.append(root / reward)
    rows = read_jsonl(runs[0] / "metrics.jsonl")
    rows[2]["diag/collapse_fired"] = 1  # the detector rarely fires in 4 steps; the plot must mark it
    (runs[0] / "metrics.jsonl").unlink()
    append_jsonl(runs[0] / "metrics.jsonl", rows)
    return runs


def _browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def _images_in_browser(page: Path) -> str:
    """Open a probing copy of ``page`` in headless chromium; returns the ``data-images`` marker."""
    browser = _browser()
    probe = page.with_name("_probe_" + page.name)
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, *CHROME_FLAGS, f"--user-data-dir={profile}", "--dump-dom", probe.resolve().as_uri()]
        if os.geteuid() != 0:
            cmd.remove("--no-sandbox")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    probe.unlink()
    m = re.search(r'data-images="([^"]*)"', out.stdout)
    assert m, f"the page did not finish loading in {browser}: rc={out.returncode}\n{out.stderr[-2000:]}"
    return m.group(1)


def test_report_writes_pages_plots_and_tables(two_runs, tmp_path):
    out = tmp_path / "report"
    result = build_report(two_runs, out)
    names = {p.name for p in result["plots"]}
    assert names == {f"{p.name}.png" for p in PANELS} and result["missing"] == []
    for p in result["plots"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 200_000
    md = (out / "report.md").read_text()
    page = (out / "index.html").read_text()
    for name in names:  # relative links only: the folder opens anywhere
        assert f"](plots/{name})" in md and f'src="plots/{name}"' in page
    assert "majority_vote" in md and "gold" in md and "collapse detector fired" in md
    assert re.search(r"\| reward \| majority_vote \| gold \|", md)
    assert all(src.startswith("plots/") for src in re.findall(r'src="([^"]*)"', page))


def test_report_images_load_in_a_headless_browser(two_runs, tmp_path):
    if _browser() is None:
        pytest.skip("no chromium on PATH: install it with 'bash scripts/install_browser.sh' (Debian apt) to run "
                    "this test")
    out = tmp_path / "moved"
    build_report(two_runs, tmp_path / "report")
    shutil.move(tmp_path / "report", out)  # self-contained: still complete after moving the folder
    marker = _images_in_browser(out / "index.html")
    assert marker == f"{len(PANELS)}/{len(PANELS)} bad=", marker
    build_report(two_runs, tmp_path / "embedded", embed=True)
    shutil.rmtree(tmp_path / "embedded" / "plots")  # --embed: the page alone is enough
    assert _images_in_browser(tmp_path / "embedded" / "index.html") == f"{len(PANELS)}/{len(PANELS)} bad="


def test_report_cli_and_a_run_in_progress(two_runs, tmp_path):
    (two_runs[1] / "summary.json").rename(tmp_path / "summary.json")  # as if the run were still going
    try:
        run = load_run(two_runs[1])
        assert run.summary["stop_reason"].startswith("in progress") and run.summary["steps"] == 4
        proc = subprocess.run([sys.executable, "-m", "urlvr", "report", *map(str, two_runs), "--out",
                               str(tmp_path / "cli")], capture_output=True, text=True, cwd=REPO, timeout=300)
    finally:
        (tmp_path / "summary.json").rename(two_runs[1] / "summary.json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli" / "index.html").is_file() and (tmp_path / "cli" / "report.md").is_file()
    assert "in progress" in (tmp_path / "cli" / "report.md").read_text()


def test_report_rejects_a_folder_that_is_not_a_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "urlvr", "report", str(tmp_path)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "not a run folder" in proc.stderr


def test_plots_leave_out_metrics_no_run_logged(two_runs, tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    rows = [{k: v for k, v in r.items() if not k.startswith(("val/", "policy/kl"))}
            for r in read_jsonl(two_runs[1] / "metrics.jsonl")]
    append_jsonl(run / "metrics.jsonl", rows)
    result = build_report([run], tmp_path / "r")
    assert set(result["missing"]) == {"validation", "kl_initial"}
    assert "kl_initial, validation" in (tmp_path / "r" / "report.md").read_text()
