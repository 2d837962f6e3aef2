"""The certainty experiment's measurement (``measure_preferences``) on the real tiny testbed model: one step's
groups ranked by every intrinsic reward, and self-certainty recomputed from teacher-forced logits and split
into head/tail and spans, which must add back up to the reward the rollout's own statistics gave."""

from urlvr.experiments.measures import PREFERENCE_REWARDS, measure_preferences


def test_preferences_of_one_step_add_up_to_the_rollouts_self_certainty(tiny_model, tmp_path):
    settings = {"prompts_per_step": 6, "n_votes": 4, "n_train": 4, "max_new_tokens": 6, "train_problems": 12}
    out = measure_preferences(tiny_model, "arithmetic", {"digits": 1, "ops": "+"}, settings, tmp_path)
    assert out["groups"] == 6 and out["n"] == 4 and 0 <= out["base_rate"] <= 1
    assert set(out["rewards"]) == set(PREFERENCE_REWARDS)
    for r in out["rewards"].values():
        assert all(v is None or 0 <= v <= 1 for v in (r["auc"], r["top"]))
    sc = out["self_certainty"]
    n = sc["completions"]
    assert n["correct"] + n["wrong"] == 24  # every completion, each on its side
    # Σ over spans of head + tail = a completion's mean KL(U ‖ p_t): the side-weighted sums give the mean reward
    total = sum(n[side] * sum(sc["parts"][side].values()) for side in sc["parts"])
    assert abs(total / 24 - sc["mean"]) < 1e-3 * max(1.0, abs(sc["mean"]))
    for side in sc["parts"]:
        assert {k.split()[0] for k in sc["parts"][side]} <= {"format", "answer", "end"}
