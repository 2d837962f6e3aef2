"""What the benchmarks share: a testbed model on disk, side-by-side timing, and the report lines.

Every comparison runs its arms in one process (or one parent process) on the same machine, in turn,
repetition after repetition (``A B A B ...``), after warm-up rounds that are not counted, so that a
change in the machine's load hits every arm alike. Figures are medians with the spread (min–max) of
the repetitions.

Threads: the benchmarks default to one torch thread (``--threads``). On a machine shared with other
jobs (a load average above the core count), OpenMP worker threads that spin-wait for a descheduled
sibling make every small kernel erratic: the same rollout measured 0.36 s with one thread and 2–20 s
with two. Both arms of a comparison always use the same setting.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__all__ = ["REPO", "add_common_args", "add_workload_args", "setup", "testbed_model", "urlvr_trainer", "trl_trainer",
           "TRL_PRESETS", "bench_model", "cpu_seconds",
           "interleaved", "summary", "machine", "ratio"]


def add_common_args(ap, reps: int = 5, warmup: int = 1) -> None:
    ap.add_argument("--quick", action="store_true", help="small settings, finishes in about a minute")
    ap.add_argument("--reps", type=int, default=reps, help=f"timed repetitions per arm (default {reps})")
    ap.add_argument("--warmup", type=int, default=warmup, help=f"untimed rounds first (default {warmup})")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every arm (default 1, see harness.py)")


def add_workload_args(ap, size: str = "tiny") -> None:
    """The GRPO work of a step: model size, prompts, group size, maximum response length."""
    ap.add_argument("--size", default=size,
                    help=f"a random-weight testbed size (tiny, small, base) or smollm2 (real weights); default {size}")
    ap.add_argument("--prompts", type=int, default=8, help="prompts (groups) per step (default 8)")
    ap.add_argument("--group", type=int, default=8, help="completions per prompt (default 8)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="maximum response length (default 32)")


def setup(threads: int) -> None:
    """Same thread count for every arm; quiet library warnings."""
    import torch

    torch.set_num_threads(threads)
    from urlvr.cli import quiet_libraries

    quiet_libraries()


def testbed_model(size: str = "tiny", folder: str | Path | None = None, seed: int = 0) -> str:
    """A randomly initialised testbed model (``urlvr.testbed``) and the char tokenizer, saved in a folder.

    No pretraining: for timing, the weights only need the right shapes. Returns the folder path.
    """
    from urlvr.loading import save_model
    from urlvr.testbed.models import build_model
    from urlvr.testbed.tokenizer import char_tokenizer

    folder = Path(folder or tempfile.mkdtemp(prefix=f"urlvr-bench-{size}-")) / size
    if not (folder / "config.json").is_file():
        tok = char_tokenizer()
        save_model(build_model(size, len(tok), seed=seed), tok, folder)
    return str(folder)


def bench_model(size: str, folder: str | Path | None = None) -> str:
    """The folder of a benchmark model: a random-weight testbed size (``tiny``, ``small``, ``base``) or a real
    model name (``smollm2``: SmolLM2-135M-Instruct, its real weights, converted once)."""
    from urlvr.testbed.models import MODEL_SIZES

    if size in MODEL_SIZES:
        return testbed_model(size, folder)
    from urlvr.loading import resolve_model

    return resolve_model(size, "arithmetic", {})


def urlvr_trainer(path: str, out: str | Path, prompts: int, group: int, max_new_tokens: int, reward: str = "gold",
                  lr: float = 1e-5, **settings):
    """urlvr's :class:`~urlvr.trainer.Trainer` on the benchmark work: arithmetic prompts, τ = 1, no top-p,
    one update per step, no KL term, no validation, no checkpoints or samples, on the CPU, prompts as plain
    text (``chat=off``, as TRL sends a string prompt). ``settings`` override any other config key. Drive it with
    its one loop, ``trainer.steps()`` (each ``next`` is one whole step, its metrics row logged as in a real run)."""
    from urlvr.config import TrainConfig
    from urlvr.trainer import Trainer

    cfg = TrainConfig(
        model=path, task="arithmetic", train_problems=max(512, prompts), val_problems=0, reward=reward,
        prompts_per_step=prompts, n_votes=group, n_train=group, max_new_tokens=max_new_tokens, temperature=1.0,
        top_p=1.0, lr=lr, steps=10_000, seed=0, device="cpu", out_dir=str(out), save_every=0, sample_every=0,
        chat="off", **settings)
    return Trainer(cfg, path)


TRL_PRESETS = {
    "default": {},
    "best": {"gradient_checkpointing": False, "bf16": False},
}
"""TRL settings beyond the shared work: ``default`` leaves ``GRPOConfig``'s own defaults (on TRL 1.16:
gradient checkpointing on, bf16 autocast on, also on the CPU with ``use_cpu``); ``best`` is TRL at its fastest
for the same work: no gradient checkpointing (nothing to save memory for at these sizes) and the same dtype
as urlvr's default (float32). Both generate with the KV cache (TRL turns checkpointing off around ``generate``)."""


def trl_trainer(path: str, out: str | Path, prompts: int, group: int, max_new_tokens: int, steps: int,
                lr: float = 1e-5, callbacks=(), preset: str = "best"):
    """TRL's ``GRPOTrainer`` on the same work as :func:`urlvr_trainer`.

    Same model folder and arithmetic prompts; urlvr's ``gold`` reward written as a TRL reward function
    (extract the answer, check it); β = 0 (no reference model), one optimiser step per generation
    (``gradient_accumulation_steps = num_iterations = 1``), constant learning rate, token-mean loss
    (``dapo``), τ = 1 with no top-k / top-p; no logging, progress bar or checkpoints; the rest is
    :data:`TRL_PRESETS` ``[preset]``. Run it with ``train()``; the model is ``trainer.model``.
    """
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from urlvr.loading import load_model
    from urlvr.tasks import get_task

    task = get_task("arithmetic")

    def gold(prompts, completions, answer, **kw):
        return [float(task.check(task.extract(c), a)) for c, a in zip(completions, answer)]

    rows = [{"prompt": task.prompt(e.problem), "answer": e.answer}
            for e in task.examples("train", max(512, prompts), seed=0)]
    model, tok = load_model(path, device="cpu", dtype="float32")
    args = GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=prompts * group, num_generations=group,
        max_completion_length=max_new_tokens, learning_rate=lr, lr_scheduler_type="constant", max_steps=steps,
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, loss_type="dapo", gradient_accumulation_steps=1,
        num_iterations=1, disable_dropout=True, logging_steps=steps + 1, disable_tqdm=True, save_strategy="no",
        report_to="none", use_cpu=True, seed=0, dataloader_num_workers=0, **TRL_PRESETS[preset])
    trainer = GRPOTrainer(model=model, reward_funcs=[gold], args=args, processing_class=tok,
                          train_dataset=Dataset.from_list(rows), callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)  # its end-of-training summary line
    return trainer


def interleaved(arms: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each arm: ``warmup`` untimed rounds, then ``reps`` rounds ``A B C, A B C, ...``."""
    for _ in range(warmup):
        for fn in arms.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(reps):
        for name, fn in arms.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(xs: list[float], scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    """``median [min–max]`` of ``xs × scale``."""
    ys = [x * scale for x in xs]
    return f"{fmt.format(statistics.median(ys))} [{fmt.format(min(ys))}–{fmt.format(max(ys))}]"


def ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median of the per-repetition ratios a_i / b_i (paired: same round), with their min and max."""
    rs = [x / y for x, y in zip(a, b)]
    return statistics.median(rs), min(rs), max(rs)


def cpu_seconds() -> float:
    """CPU time of this process and its live children (e.g. the grader's worker processes)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me] + me.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def machine() -> str:
    """One line: CPU, cores, torch threads, versions, load average, date."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}; {os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} threads); "
            f"transformers {transformers.__version__}; python {platform.python_version()}; load average {load}; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")
