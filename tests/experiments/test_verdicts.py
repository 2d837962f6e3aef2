"""The verdict of every finding on hand-built curves: rise then fall, stable, the fall following the prior,
ties of censored MCS runs, an external reward that leads. No model is trained here."""

import math

import pytest

from urlvr.experiments.verdicts import (TOL, curve_stats, dataset_size_verdicts, describe, external_verdict,
                                        families_verdicts, mcs_verdict, rises_then_falls, stays, step_curve,
                                        tail_mean, val_curve, verdict)

STEPS = [0, 10, 20, 30, 40]
RISE_FALL = [[0.5, 0.7, 0.8, 0.7, 0.6], [0.5, 0.75, 0.7, 0.6, 0.55], [0.5, 0.6, 0.8, 0.75, 0.7]]
STABLE = [[0.5, 0.6, 0.7, 0.72, 0.71], [0.5, 0.55, 0.7, 0.7, 0.7], [0.5, 0.65, 0.7, 0.69, 0.7]]
FALLING = [[0.5, 0.45, 0.4, 0.3, 0.2], [0.5, 0.5, 0.4, 0.3, 0.25], [0.5, 0.48, 0.35, 0.3, 0.2]]
RISING = [[0.3, 0.5, 0.7, 0.8, 0.9]] * 3


def curves(shape):
    return curve_stats(shape, STEPS)


def test_seed_statistics():
    c = curve_stats([[0.5, 0.8, 0.6], [0.7, 0.8, 0.4]], [0, 10, 20])
    assert (c["start"], c["peak"], c["peak_step"], c["end"]) == pytest.approx((0.6, 0.8, 10, 0.5))
    assert (c["rise"], c["fall"]) == pytest.approx((0.2, 0.3))
    assert c["change_seeds"] == pytest.approx([0.1, -0.3])
    assert describe([0.2, None]) == "0.200 ± 0.000" and describe([]) == "-"


def test_shapes_are_judged_per_seed_with_the_margin():
    assert rises_then_falls(curves(RISE_FALL)) == (3, 3) and stays(curves(RISE_FALL)) == (0, 3)
    assert rises_then_falls(curves(STABLE)) == (0, 3) and stays(curves(STABLE)) == (3, 3)
    # a dip within the margin is not a fall; one beyond it is
    assert rises_then_falls(curves([[0.5, 0.8, 0.8 - TOL / 2]])) == (0, 1)
    assert rises_then_falls(curves([[0.5, 0.8, 0.8 - 2 * TOL]])) == (1, 1)


def test_families_reproduced_when_every_reward_rises_then_falls_and_the_fall_follows_the_prior():
    c = {("aligned", "majority_vote"): curves(RISE_FALL), ("misaligned", "majority_vote"): curves(FALLING),
         ("aligned", "self_certainty"): curves(RISE_FALL), ("misaligned", "self_certainty"): curves(FALLING),
         ("aligned", "gold"): curves(RISING), ("misaligned", "gold"): curves(RISING)}
    rise_fall, follows = families_verdicts(c, ["majority_vote", "self_certainty", "gold"])
    assert rise_fall.verdict == "reproduced" and "3/3" in rise_fall.why
    assert follows.verdict == "reproduced" and "gold improves both priors" in follows.why


def test_families_partly_and_not_reproduced():
    c = {("aligned", "majority_vote"): curves(RISE_FALL), ("misaligned", "majority_vote"): curves(FALLING),
         ("aligned", "self_certainty"): curves(STABLE), ("misaligned", "self_certainty"): curves(STABLE)}
    rise_fall, follows = families_verdicts(c, ["majority_vote", "self_certainty"])
    assert rise_fall.verdict == "partly reproduced" and rise_fall.checks == (True, False)
    assert follows.verdict == "partly reproduced" and follows.checks == (True, False)
    c = {("aligned", "majority_vote"): curves(STABLE), ("misaligned", "majority_vote"): curves(RISING)}
    assert [v.verdict for v in families_verdicts(c, ["majority_vote"])] == ["not reproduced"] * 2


def test_dataset_size_small_stable_large_rise_then_fall_and_the_kl_ratio():
    on_set = {32: curves(STABLE), 128: curves(STABLE), 512: curves(RISE_FALL), 2048: curves(RISE_FALL)}
    shape, shift = dataset_size_verdicts(on_set, {32: [0.05], 128: [0.06], 512: [0.2], 2048: [0.25]})
    assert shape.verdict == "reproduced" and shift.verdict == "reproduced"
    assert "large / small = 4.09" in shift.why and "needs >= 2" in shift.why
    _, shift = dataset_size_verdicts(on_set, {32: [0.08], 128: [0.08], 512: [0.08], 2048: [None, 0.09]})
    assert shift.verdict == "not reproduced"
    shape, _ = dataset_size_verdicts({32: curves(RISE_FALL), 512: curves(STABLE)}, {32: [0.1], 512: [0.1]})
    assert shape.verdict == "not reproduced" and shape.checks == (False, False)


def _mcs_row(model, mcs, censored, gt, acc0, passk=None):
    row = {"model": model, "mcs": mcs, "censored": censored, "gt_gain": gt, "acc_before": acc0}
    if passk is not None:
        row["passk_gain"] = passk
    return row


def test_mcs_ranking_agrees_with_gt_gain_and_beats_pass_at_k():
    rows = [_mcs_row("a", [400, 420], [False, False], [0.3, 0.32], [0.6, 0.6], passk=0.1),
            _mcs_row("b", [200, 220], [False, False], [0.2, 0.18], [0.5, 0.5], passk=0.3),
            _mcs_row("c", [50, 60], [False, False], [0.05, 0.02], [0.2, 0.2], passk=0.2)]
    v, corr = mcs_verdict(rows, passk=16, max_steps=500)
    assert corr["mcs_vs_gt"][0] == pytest.approx(1.0) and corr["passk_vs_gt"][0] == pytest.approx(-0.5)
    assert v.verdict == "reproduced" and v.checks == (True, True, True)


def test_censored_mcs_runs_tie_at_the_cap_and_fail_the_censoring_check():
    cap = 500
    rows = [_mcs_row("a", [cap, cap], [True, True], [0.3, 0.3], [0.6, 0.6]),
            _mcs_row("b", [cap, cap], [True, True], [0.2, 0.2], [0.5, 0.5]),
            _mcs_row("c", [100, cap], [False, True], [0.05, 0.05], [0.2, 0.2])]
    v, corr = mcs_verdict(rows, passk=0, max_steps=cap)
    rho = corr["mcs_vs_gt"][0]
    assert rho == pytest.approx(math.sqrt(3) / 2)  # a and b tie at the cap: their ranks average
    assert v.checks == (True, False, False)  # 5 of 6 runs censored; pass@k untested in this plan
    assert v.verdict == "partly reproduced" and "5 of 6 MCS runs censored" in v.why and "untested" in v.why
    all_tied = [_mcs_row(m, [cap], [True], [g], [0.5]) for m, g in (("a", 0.1), ("b", 0.2), ("c", 0.3))]
    v, corr = mcs_verdict(all_tied, passk=0, max_steps=cap)
    assert math.isnan(corr["mcs_vs_gt"][0]) and v.verdict == "not reproduced" and "n/a" in v.why


def test_external_verifier_leads_on_the_misaligned_prior():
    c = {("misaligned", "verifier"): curves(RISING), ("misaligned", "majority_vote"): curves(FALLING),
         ("aligned", "verifier"): curves(STABLE), ("aligned", "majority_vote"): curves(STABLE)}
    v = external_verdict(c, ["verifier", "majority_vote"], ["majority_vote"])
    assert v.verdict == "reproduced" and v.checks == (True, True, True)
    c[("misaligned", "verifier")] = curves(FALLING)
    assert external_verdict(c, ["verifier", "majority_vote"], ["majority_vote"]).verdict == "partly reproduced"


def test_curves_from_metric_rows():
    rows = [{"step": 0, "val/avg@4": 0.5}] + [{"step": s, "oracle/accuracy": s / 10, "policy/kl_initial": s}
                                              for s in range(1, 11)] + [{"step": 10, "val/avg@4": 0.7}]
    assert val_curve(rows, 4) == ([0, 10], [0.5, 0.7])
    assert step_curve(rows, "oracle/accuracy", 5) == ([5, 10], [pytest.approx(0.3), pytest.approx(0.8)])
    assert tail_mean(rows, "policy/kl_initial", 0.2) == pytest.approx(9.5)
    assert verdict([]) == "reproduced"


# ---- the KL finding's and the self-certainty finding's pieces ----------------------------------------

def test_kl_quarters_average_each_quarter_of_the_steps_and_leave_unmeasured_quarters_empty():
    from urlvr.experiments.verdicts import kl_quarters

    rows = [{"step": 0, "policy/kl_initial": 9.0}] + [{"step": s} for s in range(1, 9)]
    for s, v in ((3, 1.0), (5, 2.0), (6, 4.0)):  # kl_every > 1: a value on some steps only; step 0 never counts
        rows[s]["policy/kl_initial"] = v
    assert kl_quarters(rows) == [None, 1.0, 3.0, None]


def test_sharpening_budget_is_minus_log_r0_per_token_and_nan_without_data():
    from urlvr.experiments.verdicts import sharpening_budget

    rows = [{"step": 0, "diag/majority_ratio": 0.01, "rollout/length_mean": 1.0},  # step 0 is not a training step
            {"step": 1, "diag/majority_ratio": 0.2, "rollout/length_mean": 4.0},
            {"step": 2, "diag/majority_ratio": 0.6, "rollout/length_mean": 6.0}]
    assert sharpening_budget(rows) == pytest.approx(-math.log(0.4) / 5.0)
    assert math.isnan(sharpening_budget([{"step": 1, "rollout/length_mean": 4.0}]))


def test_tail_fraction_is_the_tails_share_of_the_correct_minus_wrong_difference():
    from urlvr.experiments.verdicts import tail_fraction

    parts = {"correct": {"answer head": 1.0, "answer tail": 5.0, "format tail": 2.0},
             "wrong": {"answer head": 2.0, "answer tail": 2.0, "format tail": 2.0}}
    assert tail_fraction(parts) == pytest.approx(3.0 / 4.0)  # |+3| tail against |−1| head
    assert tail_fraction({"correct": {"answer tail": 1.0}}) is None  # no wrong completions
    assert tail_fraction({"correct": {"answer tail": 1.0}, "wrong": {"answer tail": 1.0}}) is None  # no difference


def _prefs(auc):
    return {"base_rate": 0.6, "self_certainty": {"within_group_diff": 0.5, "mean": 13.0, "parts": {}},
            "rewards": {"self_certainty": {"auc": auc, "top": 0.7}, "trajectory_entropy": {"auc": 1.0, "top": 1.0},
                        "majority_vote": {"auc": 1.0, "top": 1.0}}}


def test_certainty_explanation_reproduces_a_rise_that_holds_and_names_what_differs():
    from urlvr.experiments.verdicts import certainty_explanation

    holds = curves(STABLE)
    ablations = {"self_certainty": holds, "lr / 4": curves(FALLING), "answer span": curves(STABLE)}
    prefs = {"aligned": _prefs(0.9), "SmolLM2 (real LM)": _prefs(0.5)}
    v, why = certainty_explanation(prefs, ablations, {})
    assert v == "reproduced"
    assert "rises and holds" in why and "a preference for correct" in why and "not tiny" in why
    assert "(5) One change at a time: lr / 4 still fall" in why and "answer span do not" in why
    assert "SmolLM2 (real LM)" in why and "unlike the testbed" not in why  # AUC 0.5 is the same absence
    v, why = certainty_explanation({"aligned": _prefs(0.9)}, {"self_certainty": curves(RISE_FALL)}, {})
    assert v == "partly reproduced" and "rises then falls" in why and "(5)" not in why  # rises, does not hold
