"""One loader for every model: a testbed model folder or any local Hugging Face checkpoint.

``load_model(path)`` returns ``(model, tokenizer)``. The hub is never contacted: offline mode is forced
and a path that is not a folder with a config and weights fails at once with one clear line.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch

from urlvr.errors import UrlvrError

__all__ = ["load_model", "pick_device", "pick_dtype", "save_model"]

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
    """``auto``: bf16 on a GPU that supports it, fp32 elsewhere."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise UrlvrError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return table[dtype]


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
    import shutil
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
