"""Speculative rewards, registered under family ``experimental``: stateful or not yet validated.

- :mod:`~urlvr.experimental.rnd`: ``rnd_novelty``, a random-network-distillation novelty bonus over a
  pooled embedding of the completion tokens (the predictor trains online: the reward has state).
- :mod:`~urlvr.experimental.consistency`: ``consistency``, completions of a perturbed prompt vote the
  pseudo-label of the original prompt's completions (UDA-style, Co-rewarding-I).

Importing this package registers both (``urlvr.rewards`` imports it).
"""

from urlvr.experimental import consistency, rnd  # noqa: F401  (registers the rewards)
from urlvr.experimental.consistency import perturb
from urlvr.experimental.rnd import reset_rnd

__all__ = ["perturb", "reset_rnd"]
