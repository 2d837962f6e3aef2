"""``certified_only`` (ours): train only on prompts whose majority answer is certified by the MMC.

For each group, the Martingale Majority Certificate (:func:`urlvr.certify.mmc`, METHODS-2026.md §9)
runs over its ``n_votes`` answers in sampling order; the advantages of a group that is not certified
at level ``eps`` within those votes are set to 0, so only prompts whose pseudo-label is the
model's answer mode with anytime-valid confidence move the policy. This use of the certificate is
urlvr's own option (the paper certifies at evaluation and test time, not as a training filter).

Votes (``votes``): ``clusters`` (default) are the run's answer clusters (its equivalence, math-verify
classes included), each voting with the task key of its first answer (``ctx.canonical``; ties of the
MMC go by that string); ``answers`` are the task keys of the answers themselves. Answer-less
completions are elsewhere votes (:mod:`urlvr.certify`). Stateless.

Logged: ``adv/certified_only/certified_rate`` (share of groups certified),
``adv/certified_only/votes_used`` (mean votes read per group, ``n_votes`` when it abstains) and
``adv/certified_only/votes_to_certify`` (mean over certified groups; only on steps with one).

>>> import torch
>>> from urlvr.advantages.modifiers import AdvantageContext
>>> ctx = AdvantageContext(step=0, seed=0, problem_ids=["p", "q"], clusters=[[0] * 6, [0, 1] * 3],
...                        answers=[["4"] * 6, ["4", "5"] * 3], rewards=torch.zeros(2, 6),
...                        valid=torch.ones(2, 6, dtype=torch.bool), n_train=2)
>>> CertifiedOnly()(torch.ones(2, 2), ctx), ctx.metrics["adv/certified_only/votes_to_certify"]
(tensor([[1., 1.],
        [0., 0.]]), 5.0)
"""

from __future__ import annotations

from torch import Tensor

from urlvr.advantages.modifiers import AdvantageContext, AdvantageModifier, register_modifier
from urlvr.certify import ABSENT_RUNNER, PRIORS, mmc

__all__ = ["CertifiedOnly", "VOTES"]

VOTES = ("clusters", "answers")


@register_modifier("certified_only", family="ensemble")
class CertifiedOnly(AdvantageModifier):
    """Zero the advantages of groups whose ``n_votes`` answers do not certify a leader (MMC at ``eps``)."""

    def __init__(self, eps: float = 0.1, prior: str = "beta", K: int = 101, votes: str = "clusters",
                 absent_runner: str = "rest"):
        if not 0 < eps < 1:
            raise ValueError(f"eps must be in (0, 1) (the certificate's level), got {eps}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        if not (isinstance(K, int) and K >= 2):
            raise ValueError(f"K (grid points of the beta prior) must be an integer >= 2, got {K!r}")
        if votes not in VOTES:
            raise ValueError(f"votes must be one of {', '.join(VOTES)}, got {votes!r}")
        if absent_runner not in ABSENT_RUNNER:
            raise ValueError(f"absent_runner must be one of {', '.join(ABSENT_RUNNER)}, got {absent_runner!r}")
        self.eps, self.prior, self.K, self.votes, self.absent_runner = eps, prior, K, votes, absent_runner

    def keys(self, ctx: AdvantageContext, g: int) -> list[str | None]:
        """(n_votes,) the voting keys of group ``g`` (None = no answer)."""
        answers = ctx.answers[g]
        if self.votes == "answers":
            return [None if a is None else ctx.canonical(a) for a in answers]
        first: dict[int, str] = {}
        for c, a in zip(ctx.clusters[g], answers):
            if c is not None and c not in first:
                first[c] = ctx.canonical(a) if a is not None else str(c)
        return [None if c is None else first[c] for c in ctx.clusters[g]]

    def __call__(self, adv: Tensor, ctx: AdvantageContext) -> Tensor:
        certs = [mmc(self.keys(ctx, g), eps=self.eps, prior=self.prior, K=self.K, absent_runner=self.absent_runner)
                 for g in range(len(ctx.clusters))]  # (G,)
        keep = adv.new_tensor([float(c.certified) for c in certs])  # (G,)
        certified = [c.votes_used for c in certs if c.certified]
        ctx.metrics["adv/certified_only/certified_rate"] = len(certified) / max(1, len(certs))
        ctx.metrics["adv/certified_only/votes_used"] = sum(c.votes_used for c in certs) / max(1, len(certs))
        if certified:
            ctx.metrics["adv/certified_only/votes_to_certify"] = sum(certified) / len(certified)
        keep = keep.view(-1, *([1] * (adv.dim() - 1)))  # (G, 1) or (G, 1, 1)
        return (adv * keep).where(keep > 0, adv.new_zeros(()))
