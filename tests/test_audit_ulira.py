"""Tests for classunlearn.audit.ulira (U-LiRA, class variant)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import softmax

from classunlearn.audit.ulira import (
    DEFAULT_VARIANCE,
    DIRECTIONS,
    MAX_ROC_POINTS,
    UliraResult,
    _loo_decisions,
    _summarise,
    logit_confidence,
    resolve_variance,
    ulira_attack,
    ulira_leave_one_out,
    ulira_scores,
    ulira_target_score,
)
from classunlearn.errors import ParameterError


def _log_normal(x: float, mu: float, var: float) -> float:
    return -0.5 * math.log(2 * math.pi * var) - (x - mu) ** 2 / (2 * var)


def _population(rng: np.random.Generator, n_models: int, n: int, centre: np.ndarray, shift=0.0):
    """phi of n_models models on n examples: per-example centre + unit noise (+ shift)."""
    return centre + shift + rng.normal(0.0, 1.0, (n_models, n))


# ------------------------------------------------------------------ logit confidence


def test_logit_confidence_hand_values():
    assert logit_confidence(np.array([[0.0, 0.0]]), np.array([0]))[0] == 0.0
    val = logit_confidence(np.array([[math.log(3.0), 0.0]]), np.array([0]))[0]
    assert val == pytest.approx(math.log(3.0))  # p = 3/4, p / (1 - p) = 3
    # three classes, label 2: p_y / (1 - p_y) = e^1 / (e^0 + e^0) = e / 2
    val = logit_confidence(np.array([[0.0, 0.0, 1.0]]), np.array([2]))[0]
    assert val == pytest.approx(1.0 - math.log(2.0))


def test_logit_confidence_is_finite_for_huge_logits():
    logits = np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4 - 1.0], [0.0, -1e4]])
    phi = logit_confidence(logits, np.array([0, 0, 0, 0]))
    assert np.all(np.isfinite(phi))
    np.testing.assert_allclose(phi, [2e4, -2e4, 1.0, 1e4])


def test_logit_confidence_matches_softmax_on_moderate_logits_and_batches():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 6, 4))  # (models, examples, classes)
    labels = rng.integers(0, 4, 6)
    p = np.take_along_axis(softmax(logits, axis=-1), np.broadcast_to(labels, (3, 6))[..., None], -1)
    expected = np.log(p / (1 - p))[..., 0]
    np.testing.assert_allclose(logit_confidence(logits, labels), expected, rtol=1e-10)
    assert logit_confidence(logits, labels).shape == (3, 6)


def test_logit_confidence_validation():
    for logits, labels in (
        (np.zeros((2, 1)), np.zeros(2, int)),
        (np.zeros((2, 3)), np.array([0, 3])),
        (np.zeros((2, 3)), np.zeros(3, int)),
        (np.array([[0.0, np.nan]]), np.zeros(1, int)),
        (np.zeros((2, 3)), np.array([0.5, 1.0])),
    ):
        with pytest.raises(ParameterError) as err:
            logit_confidence(logits, labels)
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------ LLR


def test_llr_one_shadow_each_matches_hand_calculation():
    # One IN and one OUT value per example: both sides fall back to the variance of all
    # their values: var([1, 3], ddof=1) = 2 and var([0, -2], ddof=1) = 2.
    in_phi = np.array([[1.0, 3.0]])
    out_phi = np.array([[0.0, -2.0]])
    target = np.array([[2.0, 0.0]])
    llr = ulira_scores(in_phi, np.ones((1, 2), bool), out_phi, target)
    # example 0: (-(2-1)^2 + (2-0)^2) / (2*2) = 0.75; example 1: (-(0-3)^2 + (0+2)^2) / 4
    np.testing.assert_allclose(llr, [[0.75, -1.25]])


def test_llr_per_example_matches_hand_calculation():
    in_phi = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 7.0], [3.0, 7.0]])
    out_phi = np.array([[-4.0, 0.0], [-2.0, 0.0], [-2.0, 1.0], [0.0, 3.0]])
    target = np.array([0.5, 4.0])
    llr = ulira_scores(in_phi, np.ones_like(in_phi, bool), out_phi, target, variance="per_example")
    # example 0: IN mean 1.5 var 5/3; OUT mean -2 var 8/3
    # example 1: IN mean 6 var 4/3;   OUT mean 1 var 2
    expected = [
        _log_normal(0.5, 1.5, 5 / 3) - _log_normal(0.5, -2.0, 8 / 3),
        _log_normal(4.0, 6.0, 4 / 3) - _log_normal(4.0, 1.0, 2.0),
    ]
    np.testing.assert_allclose(llr, expected)
    assert llr.shape == (2,)
    # enough shadows: "auto" is per-example
    np.testing.assert_allclose(ulira_scores(in_phi, np.ones((4, 2), bool), out_phi, target), llr)
    # "global" uses the pooled within-example variance: (5 + 4) / 6 = 1.5 and (8 + 6) / 6
    glob = ulira_scores(in_phi, np.ones((4, 2), bool), out_phi, target, variance="global")
    expected = [
        _log_normal(0.5, 1.5, 1.5) - _log_normal(0.5, -2.0, 14 / 6),
        _log_normal(4.0, 6.0, 1.5) - _log_normal(4.0, 1.0, 14 / 6),
    ]
    np.testing.assert_allclose(glob, expected)


def test_auto_variance_decides_once_per_side_from_the_smallest_count():
    # Updated: "auto" used to switch per example (example 1 pooled, the others their own
    # variance). It now decides once per side: one example with 3 IN values (< 4) makes the
    # whole IN side pooled; OUT (8 values per example) stays per-example.
    rng = np.random.default_rng(1)
    in_phi = rng.normal(0, 1, (8, 3))
    out_phi = rng.normal(0, 1, (8, 3))
    mask = np.ones((8, 3), bool)
    mask[3:, 1] = False  # example 1 has only 3 IN values
    target = rng.normal(0, 1, (2, 3))
    auto = ulira_scores(in_phi, mask, out_phi, target, min_in_per_example=4)
    per = ulira_scores(in_phi, mask, out_phi, target, variance="per_example")
    glob = ulira_scores(in_phi, mask, out_phi, target, variance="global")
    # IN pooled over all examples: sum of squared residuals / sum (n_e - 1)
    mu_in = np.array([in_phi[mask[:, e], e].mean() for e in range(3)])
    ss = sum(((in_phi[mask[:, e], e] - mu_in[e]) ** 2).sum() for e in range(3))
    sd_in = math.sqrt(ss / (7 + 2 + 7))
    mu_out, sd_out = out_phi.mean(0), out_phi.std(0, ddof=1)
    expected = np.array(
        [
            [
                _log_normal(t[e], mu_in[e], sd_in**2) - _log_normal(t[e], mu_out[e], sd_out[e] ** 2)
                for e in range(3)
            ]
            for t in target
        ]
    )
    np.testing.assert_allclose(auto, expected)
    assert not np.allclose(auto, per) and not np.allclose(auto, glob)
    # with the cut-off at 3 every example has enough: per-example on both sides
    np.testing.assert_allclose(
        ulira_scores(in_phi, mask, out_phi, target, min_in_per_example=3), per
    )
    # 8 OUT values: a cut-off of 9 makes both sides pooled
    np.testing.assert_allclose(
        ulira_scores(in_phi, mask, out_phi, target, min_in_per_example=9), glob
    )


def test_resolve_variance_hand_cases():
    assert resolve_variance("auto", 3, 7) == ("global", "per_example")
    assert resolve_variance("auto", 4, 3) == ("per_example", "global")
    assert resolve_variance("auto", 4, 4, min_in_per_example=5) == ("global", "global")
    assert resolve_variance("global", 100, 100) == ("global", "global")
    assert resolve_variance("per_example", 1, 1) == ("per_example", "per_example")
    with pytest.raises(ParameterError):
        resolve_variance("median", 4, 4)


def test_llr_nan_where_masked_or_no_in_value():
    in_phi = np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]])
    mask = np.array([[True, True, False], [True, True, False]])
    out_phi = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    target = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t_mask = np.array([[True, False, True], [True, True, True]])
    llr = ulira_scores(in_phi, mask, out_phi, target, t_mask)
    assert np.isfinite(llr[0, 0]) and np.isfinite(llr[1, :2]).all()
    assert np.isnan(llr[0, 1])  # target_mask False
    assert np.isnan(llr[:, 2]).all()  # no IN value for example 2


# ------------------------------------------------------------------ attacks


def test_same_distribution_scores_chance():
    rng = np.random.default_rng(2)
    n, shadows = 300, 16
    centre = rng.normal(0.0, 2.0, n)
    unlearned = _population(rng, shadows, n, centre)
    retrained = _population(rng, shadows, n, centre)
    mask = rng.random((shadows, n)) < 0.5
    res = ulira_leave_one_out(unlearned, mask, retrained)
    assert isinstance(res, UliraResult)
    for value in (res.accuracy_best, res.accuracy_at_zero, res.auc):
        assert 44.0 <= value <= 56.0, res
    assert res.n_unlearned == shadows and res.n_retrained == shadows
    # paired folds (N = M): retrained target j decides at unlearned model j's half
    assert res.n_positive == int(mask.sum()) and res.n_negative == int(mask.sum())
    assert res.variance == DEFAULT_VARIANCE and res.direction in DIRECTIONS
    single = ulira_leave_one_out(unlearned, mask, retrained, folds="single")
    assert single.n_negative == shadows * n  # every example of every retrained target


def test_shifted_unlearned_distribution_is_detected():
    rng = np.random.default_rng(3)
    n, shadows = 300, 16
    centre = rng.normal(0.0, 2.0, n)
    unlearned = _population(rng, shadows, n, centre, shift=4.0)
    retrained = _population(rng, shadows, n, centre)
    mask = rng.random((shadows, n)) < 0.5
    res = ulira_leave_one_out(unlearned, mask, retrained)
    assert res.accuracy_best > 90.0 and res.accuracy_at_zero > 90.0 and res.auc > 95.0
    assert res.tpr_at_1pct_fpr > 50.0
    assert len(res.roc_fpr) == len(res.roc_tpr) <= MAX_ROC_POINTS
    assert res.roc_fpr[0] == 0.0 and res.roc_fpr[-1] == 1.0 and res.roc_tpr[-1] == 1.0
    assert all(np.diff(res.roc_fpr) >= 0)
    json.dumps(res.to_dict())


@pytest.mark.parametrize("variance", ["per_example", "global"])
def test_leave_one_out_rows_exclude_the_target_from_the_shadows(variance):
    # Updated for the resolved-modes signature and the paired scheme (the default).
    rng = np.random.default_rng(4)
    n = 12
    unlearned = rng.normal(0, 1, (5, n))
    mask = rng.random((5, n)) < 0.5
    retrained = rng.normal(0, 1, (4, n))
    modes = (variance, variance)
    positive, negative = _loo_decisions(unlearned, mask, retrained, modes, 1e-6, "single")
    for i in range(5):
        keep = np.arange(5) != i
        row = ulira_scores(unlearned[keep], mask[keep], retrained, unlearned[i], variance=variance)
        np.testing.assert_allclose(positive[i], row[mask[i]])
    for j in range(4):
        keep = np.arange(4) != j
        row = ulira_scores(unlearned, mask, retrained[keep], retrained[j], variance=variance)
        np.testing.assert_allclose(negative[j], row)
    # paired: unlearned i also leaves retrained i mod 4 out; retrained j leaves unlearned
    # j mod 5 out and decides at that model's half
    positive, negative = _loo_decisions(unlearned, mask, retrained, modes, 1e-6, "paired")
    for i in range(5):
        ku, kr = np.arange(5) != i, np.arange(4) != i % 4
        row = ulira_scores(unlearned[ku], mask[ku], retrained[kr], unlearned[i], variance=variance)
        np.testing.assert_allclose(positive[i], row[mask[i]])
    for j in range(4):
        ku, kr = np.arange(5) != j, np.arange(4) != j
        row = ulira_scores(unlearned[ku], mask[ku], retrained[kr], retrained[j], variance=variance)
        np.testing.assert_allclose(negative[j], row[mask[j]])


def test_leave_one_out_never_uses_the_target_as_its_own_shadow():
    # Same distribution, 3 shadows each side, many examples. If a target were among its own
    # shadows its IN (or OUT) mean would lean towards it and the attack would look strong;
    # computed here for contrast. Correct leave-one-out stays near chance.
    rng = np.random.default_rng(5)
    n = 2000
    unlearned = rng.normal(0, 1, (3, n))
    retrained = rng.normal(0, 1, (3, n))
    mask = np.ones((3, n), bool)
    res = ulira_leave_one_out(unlearned, mask, retrained, variance="global")
    assert res.accuracy_at_zero < 56.0 and res.auc < 56.0
    leaky_pos = ulira_scores(unlearned, mask, retrained, unlearned, variance="global")
    leaky_neg = ulira_scores(unlearned, mask, retrained, retrained, variance="global")
    leaky_acc = 50.0 * (np.mean(leaky_pos > 0) + np.mean(leaky_neg <= 0))
    assert leaky_acc > 60.0  # what self-inclusion would have produced


def test_attack_with_held_out_targets():
    rng = np.random.default_rng(6)
    n = 200
    centre = rng.normal(0.0, 2.0, n)
    in_phi = _population(rng, 12, n, centre, shift=4.0)
    in_mask = rng.random((12, n)) < 0.5
    out_phi = _population(rng, 12, n, centre)
    u_targets = _population(rng, 4, n, centre, shift=4.0)
    u_mask = rng.random((4, n)) < 0.5
    r_targets = _population(rng, 4, n, centre)
    res = ulira_attack(in_phi, in_mask, out_phi, u_targets, u_mask, r_targets)
    assert res.accuracy_best > 90.0 and res.n_unlearned == 4 and res.n_retrained == 4
    assert res.n_positive == int(u_mask.sum()) and res.n_negative == 4 * n
    same = ulira_attack(
        in_phi - 4.0, in_mask, out_phi, u_targets - 4.0, u_mask, r_targets, variance="global"
    )
    assert 42.0 <= same.accuracy_at_zero <= 58.0 and 42.0 <= same.auc <= 58.0


def test_balanced_weighting_hand_case():
    # Shadows: IN around +1, OUT around -1 (two examples). Targets chosen so the LLR signs
    # are known: 1 of 2 positives right, all 6 negatives right -> balanced 75 %, not 87.5 %.
    in_phi = np.array([[1.0, 1.0], [1.2, 1.2], [0.8, 0.8]])
    out_phi = -in_phi
    in_mask = np.ones((3, 2), bool)
    u_t = np.array([[1.0, -1.0]])
    r_t = np.full((3, 2), -1.0)
    res = ulira_attack(in_phi, in_mask, out_phi, u_t, np.ones((1, 2), bool), r_t)
    assert res.accuracy_at_zero == pytest.approx(75.0)
    assert res.accuracy_best == pytest.approx(75.0)
    assert res.n_positive == 2 and res.n_negative == 6


def test_target_score():
    rng = np.random.default_rng(7)
    n = 100
    centre = rng.normal(0.0, 2.0, n)
    in_phi = _population(rng, 8, n, centre, shift=4.0)
    in_mask = np.ones((8, n), bool)
    out_phi = _population(rng, 8, n, centre)
    retrained_model = centre + rng.normal(0.0, 1.0, n)
    unlearned_model = centre + 4.0 + rng.normal(0.0, 1.0, n)
    assert ulira_target_score(retrained_model, None, in_phi, in_mask, out_phi) < 10.0
    assert ulira_target_score(unlearned_model, None, in_phi, in_mask, out_phi) > 90.0
    half = np.arange(n) < 10
    share = ulira_target_score(unlearned_model, half, in_phi, in_mask, out_phi)
    assert share == pytest.approx(
        100.0 * np.mean(ulira_scores(in_phi, in_mask, out_phi, unlearned_model)[half] > 0)
    )


def test_validation_errors():
    rng = np.random.default_rng(8)
    u = rng.normal(0, 1, (4, 6))
    m = np.ones((4, 6), bool)
    r = rng.normal(0, 1, (4, 6))
    bad_calls = [
        lambda: ulira_scores(u, m[:, :5], r, u),
        lambda: ulira_scores(u, m, r[:, :5], u),
        lambda: ulira_scores(u, m, r, u[:, :5]),
        lambda: ulira_scores(u, m, r, u, m[:2]),
        lambda: ulira_scores(u, m, r, u, variance="median"),
        lambda: ulira_scores(u, m, r, u, min_in_per_example=1),
        lambda: ulira_scores(u[:0], m[:0], r, u),
        lambda: ulira_scores(u, m * 2, r, u),
        lambda: ulira_leave_one_out(u[:1], m[:1], r),
        lambda: ulira_leave_one_out(u, m, r[:1]),
        lambda: ulira_leave_one_out(u, np.zeros_like(m), r),  # no positive decision
        lambda: ulira_leave_one_out(u, m, r, folds="pairs"),
        lambda: ulira_attack(u, m, r, u, m[:, :3], r),
        lambda: ulira_target_score(u, None, u, m, r),
        lambda: ulira_target_score(u[0], m[0, :3], u, m, r),
    ]
    for call in bad_calls:
        with pytest.raises(ParameterError) as err:
            call()
        assert "\n" not in str(err.value)
    nan = u.copy()
    nan[0, 0] = np.inf
    with pytest.raises(ParameterError):
        ulira_leave_one_out(nan, m, r)


def test_two_sided_summary_hand_case():
    # Positive LLRs 1, 2 (two unlearned targets), negative 3, 4 (two retrained targets):
    # perfectly separated, in the reversed direction.
    pos_rows, neg_rows = [np.array([1.0]), np.array([2.0])], [np.array([3.0]), np.array([4.0])]
    res = _summarise(pos_rows, neg_rows, "auto", ("global", "global"), (1, 1), 4)
    assert res.direction == "reversed"
    assert res.auc_raw == 0.0 and res.auc == 100.0
    assert res.accuracy_best_one_sided == 50.0 and res.accuracy_best == 100.0
    # "unlearned iff LLR > 0": both positives right, both negatives wrong -> 50 either way
    assert res.accuracy_at_zero_raw == 50.0 and res.accuracy_at_zero == 50.0
    assert res.tpr_at_1pct_fpr == 100.0  # oriented: lower LLR = unlearned
    # held out: fit on targets 1 (pos 2, neg 4) -> "unlearned iff LLR <= 2", applied to
    # targets 0 (1 yes, 3 no): 100; fit on targets 0 -> "iff LLR <= 1", applied to targets
    # 1 (2 no, 4 no): 50; mean 75
    assert res.accuracy_held_out == 75.0
    # cross-fitted AUC: each fold's raw AUC is 0, so the other fold orients it "reversed"
    # and reads 100 - 0 on both
    assert res.auc_held_out == 100.0
    assert res.n_positive == 2 and res.n_negative == 2
    same = _summarise(neg_rows, pos_rows, "auto", ("global", "global"), (1, 1), 4)
    assert same.direction == "expected" and same.auc == same.auc_raw == 100.0
    tie = _summarise([np.array([1.0])], [np.array([1.0])], "auto", ("global", "global"), (1, 1), 4)
    assert tie.direction == "none" and tie.auc == 50.0 and tie.accuracy_held_out is None
    assert tie.auc_held_out is None


def test_cross_fitted_auc_hand_case():
    # targets 0: positive LLRs 1, 3, negative 2, 2 (raw AUC 50); targets 1: positive 0,
    # negative 5 (raw AUC 0). Fold 0 (scored on targets 0): targets 1 orient it "reversed",
    # 100 - 50 = 50. Fold 1 (scored on targets 1): targets 0 are a tie, which goes to the
    # expected direction, so the raw 0 stands. Mean 25: below 50 is possible (a direction
    # the other fold does not share), the in-sample folded AUC cannot go there.
    pos_rows = [np.array([1.0, 3.0]), np.array([0.0])]
    neg_rows = [np.array([2.0, 2.0]), np.array([5.0])]
    res = _summarise(pos_rows, neg_rows, "auto", ("global", "global"), (1, 1), 4)
    assert res.auc_held_out == 25.0
    assert res.auc >= 50.0 and res.accuracy_held_out is not None


def test_result_reports_the_resolved_variance_and_serialises():
    rng = np.random.default_rng(9)
    n = 30
    in_phi, out_phi = rng.normal(0, 1, (6, n)), rng.normal(0, 1, (3, n))
    in_mask = np.argsort(rng.random((6, n)), axis=0) < 3  # 3 IN values per example
    res = ulira_attack(in_phi, in_mask, out_phi, rng.normal(0, 1, (1, n)), in_mask[:1], out_phi)
    assert (res.variance_in, res.variance_out) == ("global", "global")
    assert (res.min_count_in, res.min_count_out, res.min_in_per_example) == (3, 3, 4)
    assert res.accuracy_held_out is None  # one unlearned target: no two folds
    assert res.auc_held_out is None
    json.loads(json.dumps(res.to_dict()))
    low = ulira_attack(
        in_phi, in_mask, out_phi, in_phi[:2], in_mask[:2], out_phi, min_in_per_example=3
    )
    assert (low.variance_in, low.variance_out) == ("per_example", "per_example")
    assert low.accuracy_held_out is not None and low.auc_held_out is not None
