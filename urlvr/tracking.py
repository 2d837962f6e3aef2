"""Tracking sinks beside ``metrics.jsonl``: TensorBoard event files or a Weights & Biases run (offline).

``metrics.jsonl`` stays the source of truth; a sink receives the same rows from the trainer's one
logging call (rank 0 only) and writes them into the run folder: ``tensorboard/`` (event files, read with
``tensorboard --logdir RUN``) or ``wandb/`` (an offline run: no network needed, upload it later with
``wandb sync RUN/wandb/offline-run-*``). Both are optional extras (``pip install 'urlvr[tracking]'``);
asking for one that is not installed is one clear line before any work starts.

>>> sink = open_sink("none", None, {})
>>> sink.log({"step": 1, "reward/mean": 0.5}); sink.close()
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from urlvr.errors import UrlvrError

__all__ = ["Sink", "open_sink"]


class Sink:
    """Receives every logged row (``row["step"]`` is the x axis); the base class drops them."""

    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def _scalars(row: dict[str, Any]):
    for key, value in row.items():
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield key, float(value)


class _TensorBoard(Sink):
    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UrlvrError("report_to=tensorboard needs the tensorboard package; install it with "
                             "pip install 'urlvr[tracking]' or set report_to=none") from None
        self.writer = SummaryWriter(str(folder))

    def log(self, row: dict[str, Any]) -> None:
        for key, value in _scalars(row):
            self.writer.add_scalar(key, value, int(row["step"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB(Sink):
    def __init__(self, folder: Path, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise UrlvrError("report_to=wandb needs the wandb package; install it with pip install 'urlvr[tracking]' "
                             "or set report_to=none") from None
        folder.mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE", "offline")  # offline unless the user asked for online explicitly
        self.run = wandb.init(mode=mode, dir=str(folder), project=os.environ.get("WANDB_PROJECT", "urlvr"),
                              name=folder.parent.name, config=config,
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(dict(_scalars(row)), step=int(row["step"]))

    def close(self) -> None:
        self.run.finish()


def open_sink(report_to: str, run_dir: str | Path | None, config: dict[str, Any]) -> Sink:
    """The sink ``report_to`` names (``none``, ``tensorboard``, ``wandb``) writing into ``run_dir``."""
    if report_to == "none" or run_dir is None:
        return Sink()
    folder = Path(run_dir) / report_to
    if report_to == "tensorboard":
        return _TensorBoard(folder)
    if report_to == "wandb":
        return _WandB(folder, config)
    raise UrlvrError(f"report_to={report_to!r} is not one of: none, tensorboard, wandb")
