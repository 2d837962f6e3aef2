"""urlvr: unsupervised reinforcement learning with verifiable rewards for language models."""

import os as _os

# OpenMP threads that spin while waiting collapse under any other load on a small machine (measured on
# 2 cores with other jobs running: 8 s per pretraining step with spinning, 0.15 s without). Set before
# torch loads OpenMP; an explicit OMP_WAIT_POLICY wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["__version__"]
