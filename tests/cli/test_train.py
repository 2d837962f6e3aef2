"""Bad input through the real CLI: one clear line, exit code 2, no traceback, nothing half-written."""

import os
import subprocess
import sys

import pytest

from conftest import REPO
from urlvr.cli import main


def _fail(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_unknown_prior_and_task(capsys):
    assert "unknown prior 'confused'" in _fail(capsys, ["testbed", "build", "--prior", "confused", "--quiet"])
    assert "unknown task 'nope'" in _fail(capsys, ["testbed", "build", "--prior", "aligned", "--task", "nope"])
    assert "unknown model size" in _fail(capsys, ["testbed", "build", "--prior", "aligned", "--size", "huge"])


def test_model_folder_without_weights(capsys, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    line = _fail(capsys, ["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={tmp_path / 'm'}",
                          f"out_dir={tmp_path / 'run'}"])
    assert "no weights" in line
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_malformed_jsonl_and_missing_field(capsys, tmp_path, tiny_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1", "answer": "2", "id": "a"}\n{"prompt": "2+2", "answer": \n')
    line = _fail(capsys, ["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={tiny_model}", "task=jsonl",
                          f"task_options={{path: {bad}}}", f"out_dir={tmp_path / 'run'}"])
    assert f"{bad}:2" in line
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"question": "1+1", "answer": "2"}\n')
    line = _fail(capsys, ["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={tiny_model}", "task=jsonl",
                          f"task_options={{path: {missing}}}", f"out_dir={tmp_path / 'run2'}"])
    assert "prompt" in line and f"{missing}:1" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


@pytest.mark.parametrize("override,msg", [
    ("n_train=16", "n_train (16) > n_votes (8)"),
    ("lr=-1", "lr must be > 0"),
    ("lerning=3", "unknown config key"),
    ("reward=nonsense", "unknown reward"),
])
def test_bad_configs(capsys, tmp_path, override, msg):
    line = _fail(capsys, ["train", str(REPO / "recipes" / "testbed_gold.yaml"), override, f"out_dir={tmp_path / 'r'}"])
    assert msg in line


def test_exit_code_and_no_traceback_in_a_real_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "urlvr", "train", str(REPO / "recipes" / "testbed_gold.yaml"),
                          f"model={tmp_path / 'absent'}", f"out_dir={tmp_path / 'run'}"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: model folder") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# ---- misbehaving rewards (issue 17): one line, exit 2, never a hang, an exit 0 or a traceback -----------

BAD_REWARDS = '''
import math, time

def sleeps(group):
    while True:  # a Python loop: ended by the exception sent into its thread after the timeout
        time.sleep(0.05)

def sleeps_in_c(group):
    time.sleep(10 ** 6)  # one C call: the thread is abandoned (a daemon), the run still ends

def exits(group):
    raise SystemExit(0)

def interrupts(group):
    raise KeyboardInterrupt

def nans(group):
    return [math.nan] * len(group)

def infs(group):
    return [math.inf] * len(group)

def nones(group):
    return [None] * len(group)

def strings(group):
    return ["1.0"] * len(group)

def huge(group):
    return [1e308 * (i % 2) for i in range(len(group))]

def scalar(group):
    return 1.0

def raises(group):
    raise RuntimeError("backend down")
'''

# (reward in the module above, what its one line says)
MISBEHAVING = [
    ("sleeps", "did not return within 2 s on problem"),
    ("exits", "raised SystemExit(0); a reward returns scores and must not exit or interrupt the run"),
    ("interrupts", "raised KeyboardInterrupt()"),
    ("nans", "failed on every completion for 2 steps in a row (last value returned: nan)"),
    ("infs", "failed on every completion for 2 steps in a row (last value returned: inf)"),
    ("nones", "failed on every completion for 2 steps in a row (last value returned: None)"),
    ("strings", "returned '1.0' (str) for completion 0"),
    ("huge", "returned 1e+308 for completion 1"),
    ("scalar", "returned float 1.0 for a group"),
    ("raises", "failed on every completion for 2 steps in a row (last error: RuntimeError: backend down)"),
]


def _bad_reward_run(tiny_model, run, reward):
    return ["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={tiny_model}",
            "task_options={digits: 1, ops: '+'}", f"reward=urlvr_bad_rewards:{reward}", "steps=3",
            "prompts_per_step=2", "n_votes=4", "n_train=4", "val_problems=0", "max_new_tokens=8", "train_problems=20",
            "save_every=0", "sample_every=0", "max_failed_steps=2", "reward_timeout=2", f"out_dir={run}", "--quiet"]


@pytest.fixture
def bad_rewards(tmp_path, monkeypatch):
    (tmp_path / "urlvr_bad_rewards.py").write_text(BAD_REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("reward,msg", MISBEHAVING, ids=[m[0] for m in MISBEHAVING])
def test_a_misbehaving_reward_stops_the_run_with_one_line(capsys, tiny_model, bad_rewards, reward, msg):
    run = bad_rewards / "run"
    line = _fail(capsys, _bad_reward_run(tiny_model, run, reward))
    assert line.startswith(f"error: reward 'urlvr_bad_rewards:{reward}' ") and msg in line, line
    assert not (run / "summary.json").exists()


@pytest.mark.parametrize("reward", ["sleeps_in_c", "exits"])
def test_a_misbehaving_reward_in_a_real_process_exits_2(tiny_model, bad_rewards, reward):
    """A reward stuck in one C call, or one raising SystemExit(0), ends the process with code 2."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{bad_rewards}")
    res = subprocess.run([sys.executable, "-m", "urlvr", *_bad_reward_run(tiny_model, bad_rewards / "run", reward)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: reward 'urlvr_bad_rewards:{reward}' ")


# ---- pathological gold answers (issue 17): the grader never raises, train and eval finish --------------

def test_long_integer_and_heavy_golds_through_train_and_eval(tmp_path, tiny_model):
    """A 5,000-digit gold (past Python's int-string limit: a ValueError traceback in eval before) and a
    2^2^2^2^30 gold, graded by math-verify against the tiny model's boxed integers."""
    import json

    data = tmp_path / "long.jsonl"
    rows = [{"id": "a", "prompt": "9+5", "answer": "7" * 5000}, {"id": "b", "prompt": "2+2", "answer": "4"},
            {"id": "c", "prompt": "3+3", "answer": "2^{2^{2^{2^{30}}}}"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["train", str(REPO / "recipes" / "testbed_gold.yaml"), f"model={tiny_model}", "task=jsonl",
                 f"task_options={{path: {data}, template: \"{{question}}\\n\"}}", "equivalence=math", "steps=2",
                 "prompts_per_step=3", "n_votes=4", "n_train=4", "val_problems=0", "max_new_tokens=12",
                 "train_problems=3", "save_every=0", "sample_every=0", f"out_dir={tmp_path / 'run'}", "--quiet"]) == 0
    assert (tmp_path / "run" / "summary.json").is_file()
    assert main(["eval", "--model", tiny_model, "--data", str(data), "--k", "4", "--seeds", "1", "--max-new-tokens",
                 "12", "--template", "{question}\n", "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert any(s["answer"] is not None for s in samples)  # boxed answers were graded against the long golds


def test_more_bad_input_is_one_line(capsys, tmp_path, tiny_model):
    """Non-UTF-8 data, a report of a run with no rows, an --out that is a file (refused before sampling)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "1+1", "answer": "2"}\n{"prompt": "\xff", "answer": "1"}\n')
    assert f"{bad}:2: not UTF-8 text" in _fail(capsys, ["eval", "--model", tiny_model, "--data", str(bad), "--quiet"])
    run = tmp_path / "empty"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    assert "metrics.jsonl has no rows yet" in _fail(capsys, ["report", str(run)])
    assert not (run / "report").exists()
    (tmp_path / "afile").write_text("")
    line = _fail(capsys, ["eval", "--model", tiny_model, "--data", "arithmetic", "--option", "digits=1",
                          "--problems", "2", "--k", "1", "--out", str(tmp_path / "afile" / "sub"), "--quiet"])
    assert "is a file, not a folder" in line


@pytest.fixture
def small_disks(tmp_path):
    """A full (200 kB) and a read-only file system, mounted for the test (root only; skipped elsewhere)."""
    full, ro = tmp_path / "full", tmp_path / "ro"
    full.mkdir(), ro.mkdir()
    mounted = []
    for where, opts in ((full, "size=200k"), (ro, "ro")):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
        if done.returncode != 0:
            for m in mounted:
                subprocess.run(["umount", str(m)])
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
    yield full, ro
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)])


def test_a_full_or_read_only_disk_is_one_line(capsys, small_disks, tiny_model):
    full, ro = small_disks
    tiny = [f"model={tiny_model}", "task_options={digits: 1, ops: '+'}", "train_problems=40", "steps=2", "val_problems=0",
            "prompts_per_step=2", "n_votes=2", "n_train=2", "max_new_tokens=4", "save_every=2", "--quiet"]
    recipe = str(REPO / "recipes" / "testbed_gold.yaml")
    line = _fail(capsys, ["train", recipe, *tiny, f"out_dir={full / 'run'}"])  # the checkpoint does not fit
    assert "No space left on device" in line and "free some space" in line
    assert not list((full / "run" / "checkpoints").glob("step_*"))  # nothing half-written
    assert "Read-only file system" in _fail(capsys, ["train", recipe, *tiny, f"out_dir={ro / 'run'}"])
    assert "is not writable" in _fail(capsys, ["eval", "--model", tiny_model, "--data", "arithmetic", "--option",
                                               "digits=1", "--problems", "2", "--k", "1", "--out", str(ro / "e")])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_and_an_integer_dtype_are_one_line(capsys, tmp_path, tiny_model):
    recipe = str(REPO / "recipes" / "testbed_gold.yaml")
    common = [recipe, f"model={tiny_model}", "task_options={digits: 1, ops: '+'}", f"out_dir={tmp_path / 'run'}"]
    assert "this machine has no CUDA GPU" in _fail(capsys, ["train", *common, "device=cuda"])
    assert "dtype='int8' is not one of" in _fail(capsys, ["train", *common, "dtype=int8"])
    assert not (tmp_path / "run").exists()


def test_resume_of_a_moved_run_writes_to_the_folder_given(capsys, tmp_path, tiny_model):
    import shutil

    from urlvr.io import read_jsonl

    first, moved = tmp_path / "first", tmp_path / "moved"
    tiny = [f"model={tiny_model}", "task_options={digits: 1, ops: '+'}", "train_problems=40", "val_problems=0",
            "prompts_per_step=2", "n_votes=2", "n_train=2", "max_new_tokens=4", "save_every=2", "--quiet"]
    assert main(["train", str(REPO / "recipes" / "testbed_gold.yaml"), *tiny, "steps=2", f"out_dir={first}"]) == 0
    shutil.move(first, moved)
    capsys.readouterr()
    assert main(["train", "--resume", str(moved), "steps=4", "--quiet"]) == 0  # an override right after the folder
    err = capsys.readouterr().err
    assert "resume: out_dir" in err and "resume: steps: 2 -> 4" in err, err
    assert [r["step"] for r in read_jsonl(moved / "metrics.jsonl")] == [0, 1, 2, 3, 4] and not first.exists()


def test_train_without_a_recipe_takes_every_setting_from_the_command_line(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    assert main(["train", f"model={tiny_model}", "task=arithmetic", "task_options={digits: 1, ops: '+'}",
                 "train_problems=20", "val_problems=0", "prompts_per_step=2", "n_votes=2", "n_train=2",
                 "max_new_tokens=6", "steps=1", "save_every=0", f"out_dir={out}", "--quiet"]) == 0
    assert (out / "summary.json").is_file() and "reward: majority_vote" in (out / "config.yaml").read_text()
    capsys.readouterr()
    line = _fail(capsys, ["train", str(tmp_path / "nope.yaml")])  # a missing recipe is still named as one
    assert "nope.yaml not found" in line
