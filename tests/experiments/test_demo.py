"""``urlvr demo``'s pipeline on tiny models: both priors built in parallel worker processes, four runs, the
summary with its table and verdict lines; rerunning retrains the runs but reuses the cached models."""

import json

from urlvr.experiments.demo import REWARDS, run_demo

TINY = {"aligned": "testbed:aligned:arithmetic:tiny?steps=40&card_problems=8",
        "misaligned": "testbed:misaligned:arithmetic:tiny?steps=30&card_problems=8"}
SETTINGS = dict(task_options={"digits": 1, "ops": "+"}, train_problems=40, val_problems=8, prompts_per_step=4,
                n_votes=4, n_train=4, max_new_tokens=8, val_every=2, val_k=2, save_every=2, sample_every=2)


def test_demo_builds_both_priors_in_parallel_and_trains_four_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines = []
    out = tmp_path / "demo"
    text = run_demo(str(out), steps=2, progress=True, say=lines.append, jobs=2, models=TINY, settings=SETTINGS)
    assert text.startswith("# urlvr demo") and text == (out / "summary.md").read_text()
    assert "| aligned | majority_vote |" in text and "| misaligned | gold |" in text
    assert text.count("- [") == 4  # the four verdict lines
    cards = [line for line in lines if line.startswith(("aligned prior:", "misaligned prior:"))]
    assert len(cards) == 2 and all("maj@8" in line for line in lines if "kind" in line)
    runs = json.loads((out / "summary.json").read_text())["runs"]
    assert [(r["prior"], r["reward"]) for r in runs] == [(p, r) for p in TINY for r in REWARDS]
    for prior in TINY:
        for reward in REWARDS:
            run = out / f"{prior}_{reward}"
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            assert [r["step"] for r in rows] == [0, 1, 2]
            assert (run / "checkpoints" / "latest").is_file()  # the demo keeps its checkpoints
    stamp = (out / "aligned_gold" / "metrics.jsonl").stat().st_mtime_ns
    again = []
    run_demo(str(out), steps=1, progress=False, say=again.append, jobs=1, models=TINY, settings=SETTINGS)
    assert (out / "aligned_gold" / "metrics.jsonl").stat().st_mtime_ns != stamp  # retrained
    rows = (out / "aligned_gold" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and len([line for line in again if line.startswith("aligned prior:")]) == 1
