"""Every registered advantage modifier: documented in docs/rewards.md, trains on the tiny testbed model,
logs under ``adv/<name>/``, and a run resumed from a checkpoint equals the uninterrupted run (its state is
saved with the checkpoint)."""

import inspect
import math
import re

import pytest

from conftest import REPO, tiny_config
from rewards._groups import one_thread  # noqa: F401  (fixture)
from urlvr.advantages import get_advantage_modifier, modifier_names
from urlvr.io import read_jsonl
from urlvr.trainer import train

VOLATILE = ("time/",)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def doc_rows() -> dict[str, list[str]]:
    text = (REPO / "docs" / "rewards.md").read_text(encoding="utf-8")
    section = text.split("## Advantage modifiers", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([a-z_]+)` \|", line)
        if m:
            rows[m[1]] = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    return rows


def defaults_cell(cls) -> str:
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    return ", ".join(f"{p.name}={p.default!r}" for p in params) or "—"


def test_docs_list_every_modifier_as_registered():
    rows = doc_rows()
    assert set(rows) == set(modifier_names())
    for name, row in rows.items():
        cls = get_advantage_modifier(name)
        assert row[1] == cls.family and row[-1] == f"`{defaults_cell(cls)}`", (name, row)


def config(model, out, name, steps):
    return tiny_config(model, out, reward="majority_vote", advantage_modifier=name, val_problems=0,
                       prompts_per_step=2, n_votes=4, n_train=4, steps=steps, save_every=2, sample_every=0)


@pytest.mark.parametrize("name", modifier_names())
def test_every_modifier_trains_and_resumes_exactly(tiny_model, tmp_path, name):
    train(config(tiny_model, tmp_path / "full", name, 4), progress=False)
    train(config(tiny_model, tmp_path / "part", name, 2), progress=False)
    train(config(tiny_model, tmp_path / "part", name, 4), resume=True, progress=False)
    full = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    part = read_jsonl(tmp_path / "part" / "metrics.jsonl")
    assert [r["step"] for r in full] == [0, 1, 2, 3, 4]
    for row in full[1:]:
        assert math.isfinite(row["loss/policy"]) and any(k.startswith(f"adv/{name}/") for k in row), row
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]  # noqa: E731
    assert strip(full) == strip(part)
