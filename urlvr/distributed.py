"""Data parallelism on an existing engine: Hugging Face accelerate.

Under ``accelerate launch`` (DDP, FSDP or DeepSpeed, one or many nodes: chosen by the accelerate
config) each process takes a share of every step's prompts **by whole groups** (a group never
straddles two processes, so votes see all their completions), computes its rewards and advantages
locally, and the gradients are averaged by the engine. The loss normaliser is summed over processes
and each local loss is scaled by the process count, so the update equals the single-process update on
the same global batch. Metrics are averaged over processes (weighted by their number of groups) and
logged by rank 0 only; checkpoints are written once, by rank 0, and resume with any process count.

Run alone (``urlvr train``) everything here is a no-op.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["Dist"]


class Dist:
    """The process group as the trainer needs it (wraps accelerate's ``Accelerator``)."""

    def __init__(self, device: torch.device):
        from accelerate import Accelerator

        self.acc = Accelerator(cpu=device.type == "cpu")
        # urlvr's own ``dtype`` setting decides autocast (the trainer's ``amp``), never accelerate's process-wide
        # state: TRL's GRPOConfig defaults to bf16 even on a CPU, and accelerate keeps that mixed precision for
        # every later Accelerator in the process, which would silently wrap urlvr's model in bf16 autocast
        self.acc.native_amp = False
        self.rank = self.acc.process_index
        self.world = self.acc.num_processes
        self.is_main = self.acc.is_main_process

    @property
    def device(self) -> torch.device:
        return self.acc.device

    def prepare(self, model, optimizer):
        """Wrap for the engine (DDP/FSDP/DeepSpeed); a no-op in a single process."""
        return self.acc.prepare(model, optimizer)

    def unwrap(self, model):
        return self.acc.unwrap_model(model)

    def shard(self, items: Sequence) -> list:
        """This process's share, by position: items[rank::world] (whole items, never split)."""
        return list(items[self.rank :: self.world])

    def sum(self, x: float) -> float:
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        return float(self.acc.reduce(t, reduction="sum"))

    def gather(self, obj: Any) -> list:
        """One object per process, in rank order."""
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def mean_metrics(self, metrics: dict[str, Any], weight: float) -> dict[str, Any]:
        """Average numeric metrics over processes, weighted (e.g. by groups); others from rank 0."""
        if self.world == 1:
            return metrics
        parts = self.gather((metrics, weight))
        total = sum(w for _, w in parts) or 1.0
        out = {}
        for key, value in metrics.items():
            if key == "step":
                out[key] = value
                continue
            vals = [(m.get(key), w) for m, w in parts]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in vals):
                out[key] = sum(v * w for v, w in vals) / total
            else:
                out[key] = value
        return out

    def no_sync(self, model, last: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
        from contextlib import nullcontext

        return nullcontext() if last or self.world == 1 else self.acc.no_sync(model)

    def barrier(self) -> None:
        self.acc.wait_for_everyone()
