"""The collapse detector on synthetic metric series, its checkpointing, and its hooks in train()."""

import copy
import json
import random

import pytest

from conftest import tiny_config
from urlvr.watch.detector import CollapseDetector, window_slope
from urlvr.errors import UrlvrError


def feed(detector, rows):
    """Feed rows of metrics (step = index + 1); returns the events per step."""
    return [detector.update(step, row) for step, row in enumerate(rows, 1)]


def row(ratio, entropy, kl=0.001, length=10.0):
    return {"diag/majority_ratio": ratio, "policy/entropy": entropy, "policy/kl_initial": kl,
            "rollout/length_mean": length}


def rise_then_fall(n=120, peak=50, noise=0.0, seed=0):
    """Sharpening up to ``peak`` (ratio -> 1, entropy falls), then the policy drifts away (KL grows)."""
    rng = random.Random(seed)
    out = []
    for s in range(1, n + 1):
        ratio = min(1.0, 0.6 + 0.4 * s / peak)
        entropy = max(0.05, 1.0 - 0.8 * s / peak)
        kl = 0.002 if s <= peak else 0.002 + 0.02 * (s - peak)
        out.append(row(min(1.0, ratio + rng.uniform(-noise, noise)), entropy * (1 + rng.uniform(-noise, noise)), kl))
    return out


def test_rise_then_fall_fires_after_the_peak_and_before_the_end():
    d = CollapseDetector(window=10, patience=3)
    events = feed(d, rise_then_fall())
    fired = [s for s, e in enumerate(events, 1) if e.get("diag/collapse_fired")]
    assert len(fired) == 1  # fires once
    assert 50 <= fired[0] < 120
    assert d.state["peak_at"] <= fired[0]
    best = [s for s, e in enumerate(events, 1) if e.get("diag/collapse_best")]
    assert best == sorted(best) and best[-1] <= 50 and best[-1] == d.state["best_step"]
    assert all(s < d.state["peak_at"] for s in best)  # no new best once the fall is flagged


def test_noisy_rise_then_fall_still_fires_in_the_fall():
    d = CollapseDetector(window=10, patience=3)
    feed(d, rise_then_fall(noise=0.05, seed=3))
    assert d.state["fired_at"] is not None and 50 <= d.state["fired_at"] < 120


def test_flat_series_never_fires():
    rng = random.Random(0)
    d = CollapseDetector()
    events = feed(d, [row(0.7 + rng.uniform(-0.1, 0.1), 1.0 + rng.uniform(-0.2, 0.2), 0.01) for _ in range(300)])
    assert not any(e.get("diag/collapse_fired") or e.get("diag/collapse_peak") for e in events)


def test_rising_series_never_fires():
    """Healthy sharpening that has not saturated: ratio up to 0.9, entropy down to 60%, KL within budget."""
    d = CollapseDetector()
    rows = [row(0.5 + 0.4 * s / 200, 1.0 - 0.4 * s / 200, 0.0002 * s / 200) for s in range(1, 201)]
    events = feed(d, rows)
    assert d.state["fired_at"] is None and not any(e.get("diag/collapse_fired") for e in events)
    assert d.state["best_step"] > 150  # the best keeps moving up while the run improves


def test_length_collapse_fires():
    d = CollapseDetector(window=5, patience=2)
    rows = [row(1.0, 1.0, length=10.0)] * 10 + [row(1.0, 1.0, length=2.0)] * 20  # entropy unchanged
    feed(d, rows)
    assert d.state["fired_at"] is not None and d.state["fired_at"] > 10


def test_entropy_slope_and_ratios():
    d = CollapseDetector(window=5)
    events = feed(d, [row(0.5, 1.0 - 0.01 * s) for s in range(20)])
    assert events[-1]["diag/entropy_slope"] == pytest.approx(-0.01)
    assert events[0]["diag/entropy_slope"] == 0.0  # one point has no slope
    assert events[-1]["diag/entropy_ratio"] == pytest.approx((1 - 0.01 * 17) / (1 - 0.01 * 2))
    assert window_slope([1.0, 3.0, 5.0, 7.0]) == pytest.approx(2.0)


def test_missing_signals_log_nothing():
    d = CollapseDetector()
    assert d.update(1, {"reward/mean": 0.5}) == {}
    assert d.state["history"]["ratio"] == []


def test_kl_measured_every_few_steps_holds_its_last_value():
    # no sharpening (ratio and entropy flat): only the drift of the KL can fire
    rows = [row(0.6, 0.8, kl=0.004 * s) for s in range(1, 81)]
    sparse = [{k: v for k, v in r.items() if k != "policy/kl_initial" or (s - 1) % 5 == 0} for s, r in enumerate(rows, 1)]
    every, held, never = CollapseDetector(), CollapseDetector(), CollapseDetector()
    events = [feed(d, rs) for d, rs in ((every, rows), (held, sparse))]
    fired = [next(s for s, e in enumerate(ev, 1) if e.get("diag/collapse_fired")) for ev in events]
    assert all(ev[s - 1]["diag/collapse_drift"] == 1 for ev, s in zip(events, fired))  # fired by the drift
    assert fired[0] <= fired[1] <= fired[0] + 4  # at most kl_every - 1 = 4 steps late
    assert held.state["history"]["kl"][-2:] == [rows[75]["policy/kl_initial"]] * 2  # the step-76 value, held
    no_kl = feed(never, [{k: v for k, v in r.items() if k != "policy/kl_initial"} for r in rows])
    assert never.state["history"]["kl"] == [] and not any(e.get("diag/collapse_fired") for e in no_kl)


def test_state_dict_round_trip_continues_exactly():
    rows = rise_then_fall(noise=0.05)
    full = CollapseDetector(window=8)
    expected = feed(full, rows)
    first = CollapseDetector(window=8)
    feed(first, rows[:40])
    saved = json.loads(json.dumps(first.state_dict()))  # plain data: survives torch.save and JSON
    resumed = CollapseDetector(window=8)  # the settings come from the run's config, not the checkpoint
    resumed.load_state_dict(copy.deepcopy(saved))
    rest = [resumed.update(s, r) for s, r in enumerate(rows[40:], 41)]
    assert rest == expected[40:] and resumed.state == full.state


def test_a_resume_with_new_settings_keeps_them():
    first = CollapseDetector(window=8, patience=3)
    feed(first, rise_then_fall()[:20])
    resumed = CollapseDetector(window=4, patience=5)
    resumed.load_state_dict(first.state_dict())
    assert (resumed.window, resumed.patience) == (4, 5) and resumed.state == first.state


@pytest.mark.parametrize("kw", [dict(window=0), dict(patience=0), dict(ratio_threshold=1.5), dict(kl_margin=0)])
def test_bad_settings_are_rejected(kw):
    with pytest.raises(UrlvrError):
        CollapseDetector(**kw)


def test_config_fields_reach_the_detector_and_are_validated(tmp_path):
    from urlvr.config import config_from_dict

    cfg = tiny_config("testbed:aligned", tmp_path, collapse_window=7, collapse_kl_margin=5.0)
    d = CollapseDetector.from_config(cfg)
    assert (d.window, d.kl_margin, d.patience) == (7, 5.0, 3)
    with pytest.raises(UrlvrError, match="collapse_ratio"):
        config_from_dict({"collapse_ratio": 2})
    with pytest.raises(UrlvrError, match="collapse_window"):
        config_from_dict({"collapse_window": 0})


def test_train_keeps_the_best_checkpoint_and_stops_on_collapse(tiny_model, tmp_path, monkeypatch):
    """The trainer's wiring, with scripted detector events: best at step 2, fired at step 4."""
    from urlvr.io import read_jsonl
    from urlvr.trainer import train

    script = {2: {"diag/collapse_best": 1}, 4: {"diag/collapse_fired": 1}}
    monkeypatch.setattr(CollapseDetector, "update", lambda self, step, metrics: dict(script.get(step, {})))
    run = tmp_path / "run"
    cfg = tiny_config(tiny_model, run, steps=8, save_every=100, collapse_keep_best=True, collapse_stop=True)
    summary = train(cfg, progress=False)
    assert summary["stop_reason"] == "collapse detected at step 4" and summary["collapse_step"] == 4
    assert read_jsonl(run / "metrics.jsonl")[-1]["step"] == 4
    ckpts = run / "checkpoints"
    assert (ckpts / "best").read_text().strip() == "step_000002" and (ckpts / "step_000002" / "trainer_state.pt").is_file()
    assert (ckpts / "latest").read_text().strip() == "step_000004"


def test_the_best_checkpoint_is_not_kept_unless_asked(tiny_model, tmp_path, monkeypatch):
    from urlvr.trainer import train

    monkeypatch.setattr(CollapseDetector, "update", lambda self, step, metrics: {"diag/collapse_best": 1})
    train(tiny_config(tiny_model, tmp_path / "run", steps=3, save_every=100), progress=False)
    ckpts = tmp_path / "run" / "checkpoints"
    assert not (ckpts / "best").exists() and sorted(p.name for p in ckpts.glob("step_*")) == ["step_000003"]
