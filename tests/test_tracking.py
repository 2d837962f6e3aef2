"""Tracking sinks: TensorBoard and W&B (offline, no network) fed by the same rows as metrics.jsonl."""

from conftest import tiny_config
from urlvr.io import read_jsonl
from urlvr.trainer import train


def test_tensorboard_events_hold_the_metrics_rows(tiny_model, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    train(tiny_config(tiny_model, run, steps=2, report_to="tensorboard"), progress=False)
    rows = read_jsonl(run / "metrics.jsonl")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    got = {(e.step, round(e.value, 5)) for e in events.Scalars("reward/mean")}
    want = {(r["step"], round(r["reward/mean"], 5)) for r in rows if "reward/mean" in r}
    assert want and got == want
    assert {e.step for e in events.Scalars("val/avg@2")} == {r["step"] for r in rows if "val/avg@2" in r}


def test_wandb_offline_run_needs_no_network(tiny_model, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # urlvr's default is offline
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    run = tmp_path / "wb"
    train(tiny_config(tiny_model, run, steps=1, report_to="wandb"), progress=False)
    offline = list((run / "wandb").glob("wandb/offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
    assert len(read_jsonl(run / "metrics.jsonl")) == 2  # metrics.jsonl stays the source of truth
