"""The real-LM experiment on the real SmolLM2-135M-Instruct, cut to one candidate set and one training step: the
search's table, the chosen set, test-time training with majority vote, self-certainty and gold evaluated before
and after through the real harness, and the figure."""

import dataclasses
import json

from urlvr.experiments.plan import PLANS
from urlvr.experiments.real_lm import CANDIDATES, TTT_REWARDS
from urlvr.experiments.reproduce import reproduce


def test_real_lm_searches_chooses_and_trains_on_smollm2(smollm2, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    name = "1-digit +, 3-shot"
    plan = dataclasses.replace(PLANS["smoke"], real_lm="smollm2", real_lm_candidates=(name,), real_lm_k=4,
                               real_lm_steps=1, real_lm_seeds=1, real_lm_eval_seeds=1)
    out = reproduce(tmp_path / "r", plan=plan, only=["real_lm"], progress=False, jobs=1)
    [finding] = out["findings"]
    search = finding.numbers["search"]
    assert list(search) == [name] and search[name]["problems"] == CANDIDATES[name]["problems"]
    assert search[name]["maj"] > search[name]["avg"] >= 0.2  # seeded: the set qualifies, so the arms train
    assert finding.numbers["chosen"] == name and set(finding.numbers["ttt"]) == set(TTT_REWARDS)
    for reward in TTT_REWARDS:
        [arm] = finding.numbers["ttt"][reward]
        for metric in ("avg@4", "maj@4"):
            c = arm["comparisons"][metric]
            assert 0 <= c["base"] <= 1 and 0 <= c["trained"] <= 1 and c["ci_low"] <= c["diff"] <= c["ci_high"]
        run = tmp_path / "r" / "real_lm" / f"ttt_{reward}_s0" / "run"
        assert json.loads((run.parent / "result.json").read_text())["result"]["comparisons"]
        assert not (run / "checkpoints").exists()  # a full model per arm is not kept
    text = out["path"].read_text()
    assert "| majority_vote |" in text and "(chosen)" in text and (tmp_path / "r" / "fig6_real_lm.png").is_file()
