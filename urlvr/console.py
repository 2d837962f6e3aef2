"""The one logging sink for people: a progress bar with the key metrics (library code never prints)."""

from __future__ import annotations

import sys

__all__ = ["ProgressBar", "echo"]

_SHOW = (("reward/mean", "r"), ("oracle/accuracy", "acc"), ("diag/majority_ratio", "maj"),
         ("policy/entropy", "H"), ("val/avg@", "val"))


def echo(msg: str = "") -> None:
    """A line for people, on stderr (stdout stays clean for results)."""
    print(msg, file=sys.stderr, flush=True)


class ProgressBar:
    def __init__(self, total: int, initial: int = 0, desc: str = "", enabled: bool = True):
        self.bar = None
        self.last_val = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, dynamic_ncols=True,
                            leave=True, mininterval=0.5)

    def update(self, metrics: dict) -> None:
        if self.bar is None:
            return
        post = {}
        for key, short in _SHOW:
            for k, v in metrics.items():
                if k.startswith(key) and v is not None:
                    post[short] = f"{v:.3f}"
                    if short == "val":
                        self.last_val = post[short]
        if "val" not in post and self.last_val:
            post["val"] = self.last_val
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
