"""`urlvr eval` and `urlvr compare` through the real CLI on the tiny testbed model."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA
from urlvr.evaluation.harness import RESULTS_SCHEMA, check_schema
from urlvr.io import read_jsonl
from urlvr.grading import grader_version

needs_data = pytest.mark.skipif(not (SHARED_DATA / "aime24.jsonl").is_file(),
                                reason=f"benchmark data not found at {SHARED_DATA} (expected <repo>/../shared/data)")
TINY = ["--k", "2", "--seeds", "2", "--max-new-tokens", "8", "--quiet"]


def urlvr(*args, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "urlvr", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(proc):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def testbed_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "base"
    proc = urlvr("eval", "--model", tiny_model, "--data", "arithmetic", "--option", "digits=1", "--option", "ops=+",
                 "--problems", "6", "--n", "3", "--greedy", "--out", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_eval_on_a_testbed_task(testbed_run, tiny_model):
    out, proc = testbed_run
    results = json.loads((out / "results.json").read_text())
    check_schema(results, RESULTS_SCHEMA)
    s = results["settings"]
    assert (s["k"], s["n"], s["seeds"], s["max_new_tokens"], s["greedy"]) == (2, 3, [0, 1], 8, True)
    assert results["grader"]["version"] == grader_version()
    assert set(results["versions"]) >= {"torch", "transformers", "math-verify", "urlvr"}
    weights = Path(tiny_model) / "model.safetensors"
    file_hash = hashlib.sha256(weights.read_bytes()).hexdigest()
    expected = hashlib.sha256(f"model.safetensors\0{file_hash}\n".encode()).hexdigest()
    assert results["model"]["weights_sha256"] == expected
    (bench,) = results["benchmarks"]
    assert bench["name"] == "arithmetic" and bench["data"]["problems"] == 6 and bench["data"]["split"] == "test"
    assert bench["grader"] == "task:arithmetic" and bench["template"] == "{question}\n"
    metrics = bench["metrics"]
    assert {"avg@2", "maj@2", "pass@1", "pass@2", "pass@3", "truncation_rate", "unparsable_rate",
            "greedy_accuracy"} <= set(metrics)
    for name, m in metrics.items():
        assert len(m["per_seed"]) == (1 if name == "greedy_accuracy" else 2)
        assert m["ci_low"] <= m["mean"] <= m["ci_high"]
    assert len(bench["per_problem"]) == 6 and len(bench["per_problem"][0]["avg@2"]) == 2
    samples = read_jsonl(out / "samples.jsonl")
    assert len(samples) == 6 * 3 * 2 + 6  # problems x n x seeds + greedy
    assert {"benchmark", "id", "seed", "sample", "completion", "answer", "correct"} <= set(samples[0])
    assert "avg@2" in proc.stdout and "95% CI" in proc.stdout


@needs_data
@pytest.mark.parametrize("name, grader, equivalence",
                         [("aime24", "math", "math"), ("gpqa_diamond", "choice", "canonical")])
def test_eval_on_benchmark_files(tiny_model, tmp_path, name, grader, equivalence):
    path = SHARED_DATA / f"{name}.jsonl"
    proc = urlvr("eval", "--model", tiny_model, "--data", path, "--grader", grader, "--limit", "3", "--cross-check",
                 "--out", tmp_path, *TINY)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    check_schema(results, RESULTS_SCHEMA)
    (bench,) = results["benchmarks"]
    assert bench["data"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert bench["data"]["path"] == str(path.resolve()) and bench["data"]["problems"] == 3
    assert (bench["grader"], bench["equivalence"]) == (grader, equivalence) and "\\boxed{{}}" in bench["template"]
    assert bench["metrics"]["unparsable_rate"]["mean"] > 0.5  # the arithmetic model writes garbage here
    assert bench["cross_check"]["pairs"] >= 0
    assert len(read_jsonl(tmp_path / "samples.jsonl")) == 3 * 2 * 2


def _variant(out: Path, dest: Path, **settings) -> Path:
    results = json.loads((out / "results.json").read_text())
    results["settings"].update(settings)
    dest.write_text(json.dumps(results))
    return dest


def test_compare_refuses_different_settings_and_accepts_with_force(testbed_run, tmp_path, capsys):
    from urlvr.cli import main

    out, _ = testbed_run
    hot = _variant(out, tmp_path / "hot.json", temperature=0.6)
    line = one_error_line(urlvr("compare", out, hot))  # the real command: exit 2, one line, no traceback
    assert "temperature: 1.0 vs 0.6" in line and "--force" in line

    forced = urlvr("compare", out, hot, "--force", "--out", tmp_path / "cmp.json")
    assert forced.returncode == 0, forced.stderr
    assert "different temperature: 1.0 vs 0.6" in forced.stderr and "maj@2" in forced.stdout
    assert json.loads((tmp_path / "cmp.json").read_text())["forced_differences"] == ["temperature: 1.0 vs 0.6"]

    assert main(["compare", str(out), str(out / "results.json")]) == 0  # in-process from here on
    table = capsys.readouterr().out
    assert "avg@2" in table and "greedy_accuracy" in table and "+0.000" in table
    assert "lost" in table and "gained" in table  # the per-problem transitions table
    moved = json.loads((tmp_path / "cmp.json").read_text())["transitions"]
    assert moved and all(r["lost"] == r["gained"] == 0 and r["kept"] + r["never"] == r["problems"] for r in moved)
    other = _variant(out, tmp_path / "sys.json", system_prompt="Think.", seeds=[0])
    assert main(["compare", str(out), str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "system_prompt" in err[0] and "seeds" in err[0]


def test_bad_input_is_one_line(tiny_model, tmp_path, capsys):
    from urlvr.cli import main

    line = one_error_line(urlvr("eval", "--model", tiny_model, "--data", tmp_path / "missing.jsonl", "--quiet"))
    assert "missing.jsonl: file not found" in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "prompt": "1+1?", "answer": "2"}\n{"id": "2", "prompt": oops}\n')
    other = tmp_path / "other.json"
    other.write_text('{"schema": "something else"}')
    cases = [  # in-process: the same main() as the command, without an interpreter start per case
        (["eval", "--data", bad], f"{bad}:2: malformed JSON"),
        (["eval", "--data", "arithmetic", "--k", "4", "--n", "2"], "--k (4) must be <= --n (2)"),
        (["eval", "--data", "nonsense"], "neither a registered task"),
        (["eval", "--data", "arithmetic", "--option", "grader=choice"], "with its own flag"),
        (["eval", "--data", "arithmetic", "--template", "no question"], "--template must contain {question}"),
        (["compare", other, other], "not an 'urlvr eval' result"),
    ]
    for args, message in cases:
        if args[0] == "eval":
            args = [*args, "--model", tiny_model, "--quiet"]
        assert main([str(a) for a in args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
