"""Known truths for U-LiRA, by simulation (docs/audit.md, U-LiRA).

phi of every model is a per-example centre (drawn once) plus unit noise; the unlearned side
may be shifted. With no shift the unlearned and retrained models come from the very same
distribution (an ideal unlearner), and every reported U-LiRA number must read chance. The
masks follow the balanced-halves rule of the shadow sets: every example is in exactly N/2
of the N unlearned models.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from classunlearn.audit.ulira import (
    _loo_counts,
    _loo_decisions,
    _summarise,
    ulira_attack,
    ulira_leave_one_out,
)

N_EXAMPLES = 200


def _balanced_mask(rng: np.random.Generator, n_models: int, n: int) -> np.ndarray:
    """(n_models, n) bool, every column True in exactly n_models // 2 rows."""
    return np.argsort(rng.random((n_models, n)), axis=0) < n_models // 2


def _world(seed: int, n_models: int, shift: float = 0.0, n: int = N_EXAMPLES):
    rng = np.random.default_rng(seed)
    centre = rng.normal(0.0, 2.0, n)
    mask = _balanced_mask(rng, n_models, n)
    unlearned = centre + shift + rng.normal(0.0, 1.0, (n_models, n))
    retrained = centre + rng.normal(0.0, 1.0, (n_models, n))
    return unlearned, mask, retrained


@pytest.mark.parametrize("n_models", [8, 16, 32])
def test_identical_distributions_read_chance(n_models):
    # Measured (docs/audit.md): before the fix the headline accuracy averaged 54.6 at N = 8
    # over these seeds (the IN variance mode differed between unlearned and retrained
    # targets); now 52.2. What remains above 50 in the headline is the optimism of a best
    # threshold (and direction) chosen on the same decisions: the held-out variant, which
    # chooses them on the other half of the targets, averages 49.8.
    results = [ulira_leave_one_out(*_world(seed, n_models)) for seed in range(5)]

    def mean(field: str) -> float:
        return float(np.mean([getattr(r, field) for r in results]))

    assert abs(mean("accuracy_best") - 50.0) < 3.0, mean("accuracy_best")
    assert abs(mean("accuracy_at_zero") - 50.0) < 2.5, mean("accuracy_at_zero")
    assert abs(mean("auc") - 50.0) < 2.5, mean("auc")
    assert abs(mean("auc_raw") - 50.0) < 2.0, mean("auc_raw")
    assert abs(mean("accuracy_best_one_sided") - 50.0) < 2.5
    assert abs(mean("accuracy_at_zero_raw") - 50.0) < 2.0
    assert abs(mean("accuracy_held_out") - 50.0) < 2.0, mean("accuracy_held_out")
    assert abs(mean("auc_held_out") - 50.0) < 2.5, mean("auc_held_out")
    assert mean("tpr_at_1pct_fpr") < 5.0
    for r in results:
        assert r.accuracy_best >= 50.0 and r.auc >= 50.0 and r.accuracy_at_zero >= 50.0


# ------------------------------------------------------------------ the cross-fitted headline
# Decisions of one target model are correlated: each model has its own offset (and its own
# noise scale), as real models do. The in-sample numbers choose the threshold and the
# direction on the decisions they score, so they read above 50 for an ideal unlearner; the
# cross-fitted ones (the `ulira` and `ulira_auc` metrics) choose them on the other half of
# the target models. Measured over 300 replicates (n = 150, offset sd 0.4), mean (sd of one
# replicate): cross-fitted accuracy 50.4 (2.1), 50.6 (1.4), 50.3 (1.0) at N = 8, 16, 32;
# cross-fitted AUC 50.6 (3.0), 50.7 (2.0), 50.2 (1.4); in-sample accuracy 52.9 (1.2), 52.1
# (0.8), 51.5 (0.6). Over 30 replicates 3 standard errors are at most 1.6, inside the 2-point
# tolerance. What is left above 50 in the cross-fitted numbers is not selection: each fold's
# targets are shadows of the other fold's, so the two folds share the chance difference
# between the two finite sets of models (docs/audit.md, U-LiRA; it grows with the model
# effect: about +2.5 at N = 8 with an offset sd twice the noise, against +8 in-sample).


def _model_world(seed: int, n_models: int, shift: float = 0.0, n: int = 150,
                 offset_sd: float = 0.4):
    """phi = per-example centre + a per-model offset + per-model noise (a per-model scale
    times unit noise); the unlearned side shifted by `shift`, else from the same
    distribution as the retrained side. Masks: complementary pairs, as the shadow sets."""
    from classunlearn.shadows import balanced_halves

    rng = np.random.default_rng(seed)
    centre = rng.normal(0.0, 2.0, n)
    mask = balanced_halves(n, n_models, seed).numpy().astype(bool)

    def side(offset: float) -> np.ndarray:
        scale = rng.uniform(0.75, 1.25, (n_models, 1))
        return (centre + offset + rng.normal(0.0, offset_sd, (n_models, 1))
                + scale * rng.normal(0.0, 1.0, (n_models, n)))

    return side(shift), mask, side(0.0)


@pytest.mark.parametrize("n_models", [8, 16, 32])
def test_cross_fitted_headline_reads_chance_where_in_sample_does_not(n_models):
    results = [ulira_leave_one_out(*_model_world(seed, n_models)) for seed in range(30)]
    assert {r.folds for r in results} == {"pairs"}

    def mean_se(field: str) -> tuple[float, float]:
        v = np.array([getattr(r, field) for r in results])
        return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))

    for field in ("accuracy_held_out", "auc_held_out"):
        mean, se = mean_se(field)
        assert 3 * se < 2.0, (field, se)  # the check can see a 2-point bias
        assert abs(mean - 50.0) < 2.0, (field, mean, se)
    # the bias the cross-fitted headline removes: in-sample threshold and direction
    mean, se = mean_se("accuracy_best")
    assert mean > 51.0 and mean - 50.0 > 8 * se, (mean, se)
    assert mean > mean_se("accuracy_held_out")[0] + 0.75


def test_cross_fitted_headline_reads_a_separation():
    for n_models in (8, 16, 32):
        res = ulira_leave_one_out(*_model_world(0, n_models, shift=8.0))
        assert res.direction == "expected"
        assert res.accuracy_held_out > 99.0 and res.auc_held_out > 99.9, res
    # reversed: the unlearned targets lower than retrained ones, the shadows saying the
    # opposite; each fold learns the direction on the other one
    for shift, accuracy, auc in ((-2.0, 75.0, 85.0), (-0.5, 55.0, 58.0)):
        res = _reversed_case(shift)
        assert res.direction == "reversed" and res.auc_raw < 50.0
        assert res.n_unlearned == res.n_retrained == 4
        assert res.accuracy_held_out > accuracy and res.auc_held_out > auc, res


def test_paired_folds_remove_the_leave_one_out_count_bias():
    # With "single" folds an unlearned target sees one IN value fewer and one OUT value
    # more than a retrained target, so even an ideal unlearner reads as a reversed
    # separation (raw AUC 48.0 over these 20 seeds at N = 8); paired folds: 50.1.
    paired = [ulira_leave_one_out(*_world(seed, 8)).auc_raw for seed in range(20)]
    single = [ulira_leave_one_out(*_world(seed, 8), folds="single").auc_raw for seed in range(20)]
    assert abs(np.mean(paired) - 50.0) < 1.0, np.mean(paired)
    assert np.mean(single) < 49.0, np.mean(single)


def test_variance_mode_is_decided_once_for_every_target():
    # N = 8 balanced halves: every example has 4 IN values. A target leaves out one model
    # whose half held the example, so 3 IN values (< 4: pooled) at its decisions; OUT has
    # M - 1 = 7 (per-example). Before the fix an unlearned target used pooled IN and a
    # retrained target (4 IN values under "single" folds) per-example IN.
    unlearned, mask, retrained = _world(0, 8)
    for folds in ("paired", "single"):
        assert _loo_counts(mask, 8, folds) == (3, 7)
        res = ulira_leave_one_out(unlearned, mask, retrained, folds=folds)
        assert (res.variance_in, res.variance_out) == ("global", "per_example")
        assert (res.min_count_in, res.min_count_out, res.min_in_per_example) == (3, 7, 4)
        rows = _loo_decisions(unlearned, mask, retrained, ("global", "per_example"), 1e-6, folds)
        same = _summarise(*rows, "auto", ("global", "per_example"), (3, 7), 4)
        assert res == replace(same, folds=folds)
    # N = 10: 4 IN values at every decision -> per-example on both sides
    res = ulira_leave_one_out(*_world(0, 10))
    assert (res.variance_in, res.variance_out, res.min_count_in) == ("per_example",) * 2 + (4,)


def test_variance_decision_hand_case():
    # N = 4 unlearned, M = 3 retrained, 3 examples with IN counts 1, 3, 4.
    mask = np.array(
        [
            [True, True, True],
            [False, True, True],
            [False, True, True],
            [False, False, True],
        ]
    )
    # paired: decisions see c_e - 1 = 0 (no value: no decision), 2, 3 -> 2; OUT M - 1 = 2.
    assert _loo_counts(mask, 3, "paired") == (2, 2)
    # single: a retrained target also decides at example 0, with its 1 IN value -> 1.
    assert _loo_counts(mask, 3, "single") == (1, 2)
    rng = np.random.default_rng(3)
    unlearned, retrained = rng.normal(0, 1, (4, 3)), rng.normal(0, 1, (3, 3))
    paired = ulira_leave_one_out(unlearned, mask, retrained, min_in_per_example=2)
    assert (paired.variance_in, paired.variance_out, paired.min_count_in) == (
        "per_example",
        "per_example",
        2,
    )
    single = ulira_leave_one_out(unlearned, mask, retrained, min_in_per_example=2, folds="single")
    assert (single.variance_in, single.variance_out, single.min_count_in) == (
        "global",
        "per_example",
        1,
    )
    strict = ulira_leave_one_out(unlearned, mask, retrained, min_in_per_example=3)
    assert (strict.variance_in, strict.variance_out) == ("global", "global")


def _reversed_case(target_shift: float):
    """Shadows say IN = higher phi; the unlearned *targets* are lower than retrained ones."""
    rng = np.random.default_rng(11)
    n, shadows = N_EXAMPLES, 16
    centre = rng.normal(0.0, 2.0, n)
    in_phi = centre + 2.0 + rng.normal(0.0, 1.0, (shadows, n))
    in_mask = _balanced_mask(rng, shadows, n)
    out_phi = centre + rng.normal(0.0, 1.0, (shadows, n))
    u_targets = centre + target_shift + rng.normal(0.0, 1.0, (4, n))
    u_mask = _balanced_mask(rng, 4, n)
    r_targets = centre + rng.normal(0.0, 1.0, (4, n))
    return ulira_attack(in_phi, in_mask, out_phi, u_targets, u_mask, r_targets, variance="global")


def test_reversed_separation_does_not_read_as_chance():
    res = _reversed_case(-2.0)
    assert res.direction == "reversed"
    assert res.auc_raw < 15.0 and res.auc == pytest.approx(100.0 - res.auc_raw)
    assert res.accuracy_best > 75.0 and res.auc > 85.0
    # at LLR 0 both kinds of target mostly read "retrained" here (LLR = 2 (phi - c) - 2 < 0
    # for both): the fixed threshold separates little in either direction; folded anyway
    assert res.accuracy_at_zero_raw < 50.0
    assert res.accuracy_at_zero == pytest.approx(100.0 - res.accuracy_at_zero_raw)
    assert res.accuracy_best_one_sided < 52.0  # what the old headline read
    assert res.accuracy_held_out > 75.0  # the direction is learned on the other fold
    assert res.auc_held_out > 85.0
    assert res.tpr_at_1pct_fpr > 5.0
    # the ROC in results is oriented: its area is the folded AUC
    assert np.trapezoid(res.roc_tpr, res.roc_fpr) == pytest.approx(res.auc / 100.0, abs=0.01)
    mild = _reversed_case(-0.5)
    assert mild.direction == "reversed" and mild.accuracy_best > 55.0 and mild.auc > 57.0
    assert mild.accuracy_best_one_sided < 52.0


def test_leaky_unlearner_reads_near_100():
    res = ulira_leave_one_out(*_world(0, 8, shift=6.0))
    assert res.direction == "expected"
    assert res.accuracy_best > 99.0 and res.accuracy_at_zero > 99.0 and res.auc > 99.5
    assert res.accuracy_held_out > 99.0 and res.tpr_at_1pct_fpr > 95.0
    assert res.auc_held_out > 99.5
    assert res.auc == res.auc_raw and res.accuracy_at_zero == res.accuracy_at_zero_raw
    assert res.accuracy_best == pytest.approx(res.accuracy_best_one_sided)


# ------------------------------------------------------------------ shared training data
# Real shadow models are not independent given their halves: with a balanced design every
# retain sample is in exactly N/2 models of a family, so a model's training data is
# anti-correlated with its family's. A target drawn from the IN family then looks *less*
# like IN than a retrained target looks like OUT: on digits (MLP, N = 8, two independent
# sets of retrained models, 6 seeds) paired folds read raw AUC 36 to 45, every seed below 50.
# Complementary pairs (shadows.balanced_halves) and leaving a whole pair out remove it.


def _family(rng, masks: np.ndarray, centre: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """phi of models trained on the retain halves `masks` (models x retain samples): the
    per-example centre, plus what the retain samples each model saw add, plus noise."""
    return centre + masks @ effect + rng.normal(0.0, 0.3, (len(masks), len(centre)))


def _shared_data_world(seed: int, n_models: int, pairs: bool):
    from classunlearn.shadows import balanced_halves

    rng = np.random.default_rng(seed)
    n, n_retain = 120, 60
    centre = rng.normal(0.0, 2.0, n)
    effect = rng.normal(0.0, 0.4, (n_retain, n))  # retain sample r moves phi of example e
    if pairs:
        halves = [balanced_halves(n_retain, n_models, seed * 10 + k).numpy() for k in (1, 2)]
        mask = balanced_halves(n, n_models, seed * 10 + 3).numpy()
    else:
        halves = [_balanced_mask(rng, n_models, n_retain) for _ in (1, 2)]
        mask = _balanced_mask(rng, n_models, n)
    unlearned = _family(rng, halves[0].astype(float), centre, effect)
    retrained = _family(rng, halves[1].astype(float), centre, effect)
    return unlearned, mask, retrained


def test_pair_folds_remove_the_shared_data_bias():
    torch.manual_seed(0)
    argsort = [ulira_leave_one_out(*_shared_data_world(s, 8, pairs=False)) for s in range(12)]
    pairs = [ulira_leave_one_out(*_shared_data_world(s, 8, pairs=True)) for s in range(12)]
    assert {r.folds for r in argsort} == {"paired"} and {r.folds for r in pairs} == {"pairs"}
    raw_argsort = np.mean([r.auc_raw for r in argsort])
    raw_pairs = np.mean([r.auc_raw for r in pairs])
    print(f"raw AUC, shared data, N = 8: argsort halves + paired folds {raw_argsort:.1f}, "
          f"complementary pairs + pair folds {raw_pairs:.1f}")
    assert raw_argsort < 46.0
    assert abs(raw_pairs - 50.0) < 2.0
