"""Models: resolve a model name to a folder, and load any local Hugging Face checkpoint.

:func:`resolve_model` is the one place a model name becomes a folder: ``testbed:PRIOR[...]`` is built
(or taken from the cache) *for the run's task and task options*, anything else must be a local folder.
``load_model(path)`` returns ``(model, tokenizer)``. The hub is never contacted (``local_files_only``)
and a path that is not a folder with a config and weights fails at once with one clear line.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from urlvr.config import DTYPES
from urlvr.errors import UrlvrError
from urlvr.io import atomic_folder

__all__ = ["resolve_model", "load_model", "check_model_dir", "pick_device", "pick_dtype", "save_model"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UrlvrError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from None


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype ``dtype`` names (:data:`~urlvr.config.DTYPES`); ``auto``: bf16 on a GPU that has it, else fp32."""
    if dtype not in DTYPES:
        raise UrlvrError(f"unknown dtype {dtype!r}; use one of: {', '.join(DTYPES)}")
    name = DTYPES[dtype]
    if name is None:
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def resolve_model(name: str, task: str, task_options: dict | None) -> str:
    """The folder of model ``name``: a testbed prior built (or cached) for ``task`` and its options, else the path.

    A testbed prior is pretrained on a generated task's train split; on a benchmark file (``jsonl``) it
    would be pretrained on that benchmark's own gold answers, so that is refused.
    """
    from urlvr.testbed.priors import build_prior, parse_model

    spec = parse_model(name, task, task_options)
    if spec is None:
        return name
    if spec.task == "jsonl":
        raise UrlvrError(f"{name}: a testbed model cannot be built on a benchmark file (it would be pretrained on "
                         "the benchmark's gold answers); name a testbed task (testbed:aligned:arithmetic) or give a "
                         "real model folder")
    path, _, _ = build_prior(spec)
    return str(path)


def check_model_dir(path: str | os.PathLike) -> Path:
    """Fail with one line unless ``path`` is a local folder holding a config and weights."""
    p = Path(path)
    if not p.exists():
        raise UrlvrError(f"model folder {p} does not exist; give a local checkpoint folder or build one with "
                         "'urlvr testbed build' (the hub is not contacted)")
    if not p.is_dir():
        raise UrlvrError(f"model path {p} is not a folder; give the folder that holds config.json and the weights")
    if not (p / "config.json").is_file():
        raise UrlvrError(f"model folder {p} has no config.json; is this a Hugging Face checkpoint folder?")
    if not any((p / w).is_file() for w in _WEIGHT_FILES):
        raise UrlvrError(f"model folder {p} has no weights (expected one of {', '.join(_WEIGHT_FILES)})")
    return p


def load_model(path: str | os.PathLike, device: str = "auto", dtype: str = "auto"):
    """Load ``(model, tokenizer)`` from a local folder, offline; model in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = check_model_dir(path)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    try:
        tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UrlvrError(f"cannot load the tokenizer from {p}: {str(e).splitlines()[0]}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True, dtype=dt)
    except (OSError, ValueError) as e:
        raise UrlvrError(f"cannot load the model from {p}: {str(e).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(dev).eval()
    return model, tokenizer


def save_model(model, tokenizer, path: str | os.PathLike) -> None:
    """Save model and tokenizer to ``path`` atomically (a temp folder renamed into place)."""
    with atomic_folder(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
