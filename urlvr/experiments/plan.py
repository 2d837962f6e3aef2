"""The sizes of a reproduction: ``full`` (the paper's plan), ``quick`` (CI-sized) and ``smoke`` (the tests).

Each is a :class:`~urlvr.config.Plan` (validated like every config).
"""

from __future__ import annotations

from urlvr.config import Plan

__all__ = ["PLANS", "Plan"]

PLANS: dict[str, Plan] = {
    "full": Plan("full", seeds=3),
    "quick": Plan("quick", seeds=3, val_problems=64, families=("self_certainty", "majority_vote", "gold"),
                  families_steps=80, sizes=(32, 512), sizes_steps=80, mcs_max_steps=200, gt_steps=20,
                  gt_eval_problems=64, passk=0, external_models=("testbed:misaligned:linear",),
                  external_rewards=("verifier", "majority_vote"), external_steps=50, passk_n=0,
                  certainty_groups=32, certainty_steps=80, certainty_ablations=("self_certainty", "lr / 4"),
                  certainty_variants=False, real_lm=""),
    "smoke": Plan("smoke", seeds=1, task_options={"digits": 1, "ops": "+"},
                  aligned="testbed:aligned:arithmetic:tiny?steps=60&card_problems=8",  # = the tests' tiny_model
                  misaligned="testbed:misaligned:arithmetic:tiny?steps=30&card_problems=8",
                  prompts_per_step=4, n=4, max_new_tokens=8, val_problems=8, val_every=2, val_k=2,
                  families=("majority_vote", "self_certainty"), families_train=40, families_steps=2,
                  sizes=(8, 32), sizes_steps=2,
                  mcs_models=("testbed:aligned:arithmetic:tiny?steps=60&card_problems=8",
                              "testbed:misaligned:arithmetic:tiny?steps=30&card_problems=8"),
                  mcs_max_steps=2, mcs_train=40, mcs_seeds=1, gt_steps=2, gt_eval_problems=8, passk=2,
                  external_models=("testbed:misaligned:linear:tiny?steps=20&card_problems=8",),
                  external_rewards=("verifier", "majority_vote"), external_train=40, external_steps=2,
                  methods=("majority_vote", "spine"), methods_train=40, methods_steps=2, passk_n=4,
                  certainty_groups=4, certainty_steps=2, certainty_ablations=("self_certainty", "lr / 4"),
                  certainty_variants=False, real_lm=""),
}
"""``full`` (the paper's plan, the certainty explanation and the real-LM finding; its measured time is in
docs/findings/FINDINGS.md), ``quick`` (5.2 min with the testbed models built, 13.1 min from scratch), ``smoke``
(the tests: seconds)."""
