"""urlvr: unsupervised reinforcement learning with verifiable rewards for language models.

The public API (everything else is reachable by module path, but these names are the contract)::

    import urlvr

    @urlvr.register_reward("shortest_majority", family="ensemble")
    def shortest_majority(group, max_len: int = 8):
        ...

    cfg = urlvr.TrainConfig(model="testbed:aligned", reward="shortest_majority", steps=10)
    summary = urlvr.train(cfg)

Names are loaded on first use, so ``import urlvr`` stays cheap (no torch until you need it).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # configure and run
    "TrainConfig": "urlvr.config", "EvalConfig": "urlvr.config", "MCSConfig": "urlvr.config",
    "GainConfig": "urlvr.config", "load_config": "urlvr.config",
    "train": "urlvr.trainer", "Trainer": "urlvr.trainer",
    "evaluate": "urlvr.evaluation.harness",
    "model_collapse_step": "urlvr.watch.collapse", "resolve_model": "urlvr.loading",
    # plug in rewards and tasks
    "register_reward": "urlvr.rewards.base", "get_reward": "urlvr.rewards.base", "reward_names": "urlvr.rewards.base",
    "register_task": "urlvr.tasks.base", "get_task": "urlvr.tasks.base", "task_names": "urlvr.tasks.base",
    "Task": "urlvr.tasks.base",
    # the values a reward sees
    "Group": "urlvr.types", "LabeledGroup": "urlvr.types", "Completion": "urlvr.types", "Problem": "urlvr.types",
    "RewardOutput": "urlvr.types", "AnswerRules": "urlvr.types",
    "UrlvrError": "urlvr.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'urlvr' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
