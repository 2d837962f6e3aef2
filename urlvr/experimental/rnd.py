"""``rnd_novelty``: a random-network-distillation novelty bonus (RND, 1810.12894; METHODS.md §5).

A fixed, randomly initialised *target* MLP and a *predictor* MLP of the same shape map a completion's
representation ``x`` to ``dim`` numbers; the bonus is the predictor's error on it,
``e_i = mean_d (f̂(x_i) - f(x_i))_d²``, normalised by the running mean error over every completion
scored so far, ``r_i = e_i / ē`` (so rewards stay near 1 as the predictor improves; GRPO then
standardises them within the group). After scoring a group, the predictor takes ``updates`` Adam steps
on that group: completions like ones seen before become less novel. The bonus rewards exploration,
countering the entropy collapse every intrinsic reward drives; use it inside a ``mix``.

**Deviation from RND.** RND feeds the network's observation (here: a pooled hidden state). A
:class:`~urlvr.rewards.base.Group` carries token ids and per-token statistics but no hidden states,
so ``x`` is the mean over the completion's tokens of a fixed random embedding table (``buckets`` rows,
token id modulo ``buckets``): a random projection of the bag of tokens, blind to order.

**Why experimental: it has state.** The networks live in a module-level registry keyed by the
options, so the reward depends on every call before it in this process. The state is not
checkpointed (a resumed run starts a fresh predictor) and is shared by runs in one process with the
same options; :func:`reset_rnd` clears it. Scores of one group do not depend on its completion order.
"""

from __future__ import annotations

import torch
from torch import nn

from urlvr.errors import UrlvrError
from urlvr.rewards.base import register_reward
from urlvr.types import Completion, Group

__all__ = ["rnd_novelty", "reset_rnd"]


class _RND:
    """Target, predictor, embedding table and the running error mean for one option set."""

    def __init__(self, buckets: int, dim: int, hidden: int, lr: float, seed: int):
        with torch.random.fork_rng(devices=[]):  # deterministic init, the caller's RNG untouched
            torch.manual_seed(seed)
            self.table = torch.randn(buckets, dim)  # (buckets, dim)
            self.target = _mlp(dim, hidden).requires_grad_(False)
            self.predictor = _mlp(dim, hidden)
        self.opt = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.error_sum, self.error_count = 0.0, 0

    def represent(self, completions: tuple[Completion, ...]) -> torch.Tensor:
        """Mean random embedding of each completion's tokens. -> (N, dim)."""
        dim = self.table.shape[1]
        return torch.stack([self.table[c.token_ids.long() % len(self.table)].mean(0) if len(c.token_ids)
                            else torch.zeros(dim) for c in completions])

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        return (self.predictor(x) - self.target(x)).pow(2).mean(-1)  # (N,)


def _mlp(dim: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


_STATE: dict[tuple, _RND] = {}


def reset_rnd() -> None:
    """Forget every predictor (the next call starts afresh)."""
    _STATE.clear()


@register_reward("rnd_novelty", family="experimental", needs_group=True, source="RND (1810.12894)")
def rnd_novelty(group: Group, dim: int = 32, hidden: int = 64, lr: float = 1e-3, buckets: int = 4096,
                updates: int = 1, seed: int = 0) -> list[float]:
    """RND novelty ``e_i / ē``: predictor error on the completion's pooled random embedding, over its running mean.

    Stateful (see the module docstring); the predictor trains ``updates`` steps after scoring.
    """
    if min(dim, hidden, buckets) < 1 or updates < 0 or not lr > 0:
        raise UrlvrError("rnd_novelty: dim, hidden and buckets must be >= 1, updates >= 0 and lr > 0")
    key = (dim, hidden, lr, buckets, seed)
    state = _STATE.get(key)
    if state is None:
        state = _STATE[key] = _RND(buckets, dim, hidden, lr, seed)
    x = state.represent(group.completions)  # (N, dim)
    with torch.no_grad():
        err = state.errors(x)  # (N,)
    state.error_sum += float(err.sum())
    state.error_count += len(err)
    bonus = err / max(state.error_sum / state.error_count, 1e-12)
    with torch.enable_grad():
        for _ in range(updates):
            state.opt.zero_grad(set_to_none=True)
            state.errors(x).mean().backward()
            state.opt.step()
    return bonus.tolist()
