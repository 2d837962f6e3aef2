"""Shared fixtures: tiny testbed models built once per session in a temporary cache (no hub)."""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    os.environ["URLVR_CACHE"] = str(tmp_path_factory.mktemp("urlvr-cache"))
    from urlvr.cli import quiet_libraries

    quiet_libraries()
    yield


@pytest.fixture(scope="session")
def tiny_model(_cache):
    """A tiny aligned arithmetic model (a few seconds of pretraining): its folder path."""
    from urlvr.testbed.priors import PriorConfig, build_prior

    spec = PriorConfig(prior="aligned", task="arithmetic", task_options={"digits": 1, "ops": "+"}, size="tiny",
                     steps=60, card_problems=8)
    path, _, _ = build_prior(spec)
    return str(path)


def tiny_config(model: str, out_dir, **kw):
    """A config for a seconds-long run on the tiny model."""
    from urlvr.config import config_from_dict

    base = dict(model=model, task="arithmetic", task_options={"digits": 1, "ops": "+"}, train_problems=40,
                val_problems=8, prompts_per_step=4, n_votes=4, n_train=4, max_new_tokens=8, steps=4, lr=1e-3,
                val_every=2, val_k=2, save_every=2, sample_every=2, out_dir=str(out_dir))
    base.update(kw)
    return config_from_dict(base)


@pytest.fixture(scope="session")
def smollm2(_cache):
    """The built-in real model, SmolLM2-135M-Instruct, converted once per session from its GGUF: its folder."""
    from urlvr.loading import resolve_model

    return resolve_model("smollm2", "arithmetic", {})
