"""urlvr: unsupervised reinforcement learning with verifiable rewards for language models."""

__version__ = "0.1.0"
__all__ = ["__version__"]
