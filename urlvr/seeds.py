"""Every seed urlvr derives, from named parts: one helper for integers, one for ``random.Random``.

A seed is a function of *what it is for* (the run's seed, a purpose, a step, a problem id), never of
the order in which work happens, so a group samples the same completions whichever batch, chunk or
process it lands in, and a resumed run continues exactly as an uninterrupted one would.

>>> derive_seed(0, "rollout", 3) == derive_seed("0", "rollout", "3")
True
>>> rng(0, "problems", 1).random() == rng(0, "problems", 1).random()
True
"""

from __future__ import annotations

import random
import zlib

__all__ = ["derive_seed", "rng"]


def derive_seed(*parts: object) -> int:
    """A 32-bit seed from named parts: ``crc32("p1/p2/...")`` (stable across runs and Python versions)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded with the text ``"p1/p2/..."`` (Python hashes text seeds with SHA-512)."""
    return random.Random("/".join(map(str, parts)))
