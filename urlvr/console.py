"""The one sink for people: progress bars and lines on stderr (stdout stays clean for results).

Library code never prints; it reports progress through a :class:`Bar` its caller enabled (disabled:
nothing is drawn, nothing is imported) and the commands print through :func:`echo`. Machine-readable
output goes to files (``metrics.jsonl``), not here.

>>> with Bar(3, "steps", enabled=False) as bar:
...     bar.update(metrics={"reward/mean": 0.5})
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Bar", "echo"]

_SHOW = (("reward/mean", "r"), ("oracle/accuracy", "acc"), ("diag/majority_ratio", "maj"),
         ("policy/entropy", "H"), ("val/avg@", "val"))
"""Metrics a bar shows beside the count (prefix match), with their short names."""


def echo(msg: str = "") -> None:
    """A line for people, on stderr."""
    print(msg, file=sys.stderr, flush=True)


class Bar:
    """A tqdm progress bar on stderr, or a no-op when ``enabled`` is false.

    ``update(n, metrics)`` advances it and shows the key metrics of a training step (the last
    validation accuracy stays visible between validations). ``position`` stacks bars (0 at the top).
    """

    def __init__(self, total: int | None, desc: str = "", unit: str = "it", enabled: bool = True, initial: int = 0,
                 position: int | None = None, leave: bool = True):
        self._bar = None
        self._last_val: str | None = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                             leave=leave, position=position, mininterval=0.5)

    def update(self, n: int = 1, metrics: dict[str, Any] | None = None) -> None:
        if self._bar is None:
            return
        if metrics:
            post = {}
            for key, short in _SHOW:
                for k, v in metrics.items():
                    if k.startswith(key) and isinstance(v, (int, float)) and v is not None:
                        post[short] = f"{v:.3f}"
            if "val" in post:
                self._last_val = post["val"]
            elif self._last_val:
                post["val"] = self._last_val
            self._bar.set_postfix(post, refresh=False)
        self._bar.update(n)

    def describe(self, desc: str) -> None:
        if self._bar is not None:
            self._bar.set_description(desc)

    def reset(self, total: int, desc: str) -> None:
        """Start counting again from 0 to ``total`` under a new label."""
        if self._bar is not None:
            self._bar.reset(total=total)
            self._bar.set_description(desc)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
