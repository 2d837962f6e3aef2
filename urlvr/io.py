"""Atomic file and folder writes, and JSON/JSONL reading with line-numbered errors.

Every file urlvr writes goes through :func:`atomic_write` (write to a temp file in the same folder,
fsync, rename), and every folder (a model, a checkpoint) through :func:`atomic_folder`, so a crash or
``kill -9`` never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from urlvr.errors import UrlvrError

__all__ = ["cache_root", "sha256_file", "atomic_write", "atomic_folder", "write_text", "write_json", "append_jsonl", "read_jsonl", "read_json"]


def cache_root() -> Path:
    """Where urlvr keeps what it builds once (testbed models, converted real models): ``$URLVR_CACHE`` or
    ``~/.cache/urlvr``."""
    return Path(os.environ.get("URLVR_CACHE", Path.home() / ".cache" / "urlvr"))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside ``path``; on success fsync and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would outlive the rename
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` (an existing one is removed).

    >>> import tempfile
    >>> with atomic_folder(Path(tempfile.mkdtemp()) / "model") as tmp:
    ...     _ = (tmp / "config.json").write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would outlive the rename
        yield tmp
        for f in tmp.rglob("*"):  # files a library wrote through its own temp files (0600)
            if f.is_file() and not f.is_symlink():
                os.chmod(f, 0o666 & ~_umask())
        if path.exists():
            old = path.with_name(f".old-{path.name}.{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        code = _wrapped_os_error(e)
        if code is not None:  # e.g. safetensors' own error for a full disk: make it the OSError it is
            raise OSError(code, os.strerror(code), str(path)) from e
        raise


def _wrapped_os_error(e: BaseException) -> int | None:
    """The errno a library's non-OSError write failure carries in its text (``os error 28``), if any."""
    if isinstance(e, OSError):
        return None
    match = re.search(r"os error (\d+)", str(e))
    return int(match[1]) if match else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_jsonable)
        f.write("\n")


def append_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Append rows as JSON lines (one ``write`` call, flushed and fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, default=_jsonable) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UrlvrError(f"{path}: file not found; check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UrlvrError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise UrlvrError(f"{path}:{e.lineno}: malformed JSON ({e.msg}); fix or remove that line") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a malformed line raises a UrlvrError naming file and line number."""
    path = Path(path)
    if not path.is_file():
        raise UrlvrError(f"{path}: file not found; check the path")
    rows = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UrlvrError(f"{path}:{i}: not UTF-8 text (byte {e.start} of the line); save the file as UTF-8") \
                    from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UrlvrError(f"{path}:{i}: malformed JSON line ({e.msg}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise UrlvrError(f"{path}:{i}: expected a JSON object per line, got {type(row).__name__}")
            rows.append(row)
    return rows


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (set, tuple)):
        return list(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
