"""Tests for classunlearn.audit.mia_nn (MIA-NN: nearest neighbour class membership inference)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import softmax

from classunlearn.audit.mia_nn import (
    DEFAULT_FEATURE,
    FEATURES,
    MiaNnResult,
    MiaNnScore,
    _nn_features,
    mia_nn_audit,
    mia_nn_score,
    nearest_neighbour_class,
)
from classunlearn.errors import ParameterError

F, NN, K = 0, 1, 5
FAST = {"folds": 5, "repeats": 4}


def _labels(n_f: int = 60, n_nn: int = 60, n_other: int = 30) -> np.ndarray:
    other = np.arange(n_other) % (K - 2) + 2
    return np.concatenate([np.full(n_f, F), np.full(n_nn, NN), other])


def _retrained_like(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Test-split logits of a model retrained without F: forget samples go to NN, loosely."""
    z = rng.normal(0.0, 1.0, (labels.size, K))
    z[np.arange(labels.size), labels] += 4.0
    is_f = labels == F
    z[is_f, F] -= 4.0  # never predicts the forgotten class
    z[is_f, NN] += 2.0
    z[:, F] -= 3.0
    return z


def _leaky(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """A model that still puts forget samples confidently on the forget class."""
    z = _retrained_like(rng, labels)
    z[labels == F, F] += 12.0
    return z


# ------------------------------------------------------------------ nearest neighbour class


def test_nearest_neighbour_class_on_two_toy_references():
    ref1 = np.array([[0.1, 0.6, 0.3], [0.0, 0.2, 0.8]])  # mean (0.05, 0.40, 0.55)
    ref2 = np.array([[0.0, 0.9, 0.1]])  # mean (0.00, 0.90, 0.10)
    # mean over references: (0.025, 0.65, 0.325) -> class 1
    assert nearest_neighbour_class([ref1, ref2], [0]) == 1
    assert nearest_neighbour_class([ref1], [0]) == 2


def test_nearest_neighbour_class_weighs_references_equally():
    ref1 = np.tile([0.0, 0.2, 0.8], (3, 1))
    ref2 = np.array([[0.0, 1.0, 0.0]])
    # per-reference means average to (0, 0.6, 0.4) -> 1; pooling the 4 samples would give 2
    assert nearest_neighbour_class([ref1, ref2], [0]) == 1


def test_nearest_neighbour_class_skips_forget_classes():
    ref = np.array([[0.7, 0.2, 0.1, 0.0], [0.5, 0.1, 0.3, 0.1]])
    assert nearest_neighbour_class([ref], [0]) == 2  # means (0.6, 0.15, 0.2, 0.05)
    assert nearest_neighbour_class([ref], [0, 2]) == 1
    assert nearest_neighbour_class([ref], (0, 1, 2)) == 3


def test_nearest_neighbour_class_validation():
    ref = np.array([[0.5, 0.5]])
    for args in (
        ([], [0]),
        ([ref], [2]),
        ([ref], [0, 1]),
        ([ref, np.ones((2, 3)) / 3], [0]),
        ([np.array([[-1.0, 2.0]])], [0]),
    ):
        with pytest.raises(ParameterError) as err:
            nearest_neighbour_class(*args)
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------ score


def test_default_feature_is_listed():
    # chosen by evidence (docs/audit.md, scripts/mia_nn_evidence.py)
    assert DEFAULT_FEATURE == "labels"
    assert set(FEATURES) == {"logits", "probs", "nn_prob", "labels"}


def test_perfectly_separable_toy_scores_100():
    labels = np.array([F] * 10 + [NN] * 10)
    logits = np.zeros((20, 3))
    logits[labels == F, F] = 5.0
    logits[labels == NN, NN] = 5.0
    for feature in FEATURES:
        res = mia_nn_score(logits, labels, F, NN, feature=feature, folds=5, repeats=2)
        assert isinstance(res, MiaNnScore)
        assert res.score == 100.0, feature
        assert res.balanced_accuracy == 100.0
        assert res.n_forget == 10 and res.n_nn == 10


def test_nn_prob_feature_uses_only_nn_probability():
    # p(nn) has the same distribution for both classes; they differ in where the rest goes.
    rng = np.random.default_rng(5)
    labels = np.array([F] * 40 + [NN] * 40)
    logits = np.zeros((80, 3))
    logits[:, NN] = rng.normal(0.0, 1.0, 80)
    logits[labels == F, 0] = 3.0
    logits[labels == NN, 2] = 3.0
    feats = _nn_features(logits, NN, "nn_prob")
    assert feats.shape == (80, 1)
    np.testing.assert_allclose(feats[:, 0], softmax(logits, axis=1)[:, NN])
    full = mia_nn_score(logits, labels, F, NN, feature="probs", folds=5, repeats=2)
    alone = mia_nn_score(logits, labels, F, NN, feature="nn_prob", folds=5, repeats=2)
    assert full.balanced_accuracy > 95.0
    assert alone.balanced_accuracy < 75.0


def test_feature_kinds():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 3.0]])
    np.testing.assert_array_equal(_nn_features(logits, 1, "logits"), logits)
    np.testing.assert_allclose(_nn_features(logits, 1, "probs"), softmax(logits, axis=1))
    np.testing.assert_array_equal(_nn_features(logits, 1, "labels"), [[1, 0, 0], [0, 0, 1]])


def test_score_only_uses_forget_and_nn_samples_and_is_seeded():
    rng = np.random.default_rng(0)
    labels = _labels()
    logits = _retrained_like(rng, labels)
    a = mia_nn_score(logits, labels, F, NN, seed=3, **FAST)
    b = mia_nn_score(logits, labels, F, NN, seed=3, **FAST)
    assert a == b
    keep = (labels == F) | (labels == NN)
    c = mia_nn_score(logits[keep], labels[keep], F, NN, seed=3, **FAST)
    assert a == c
    assert a.n_forget == 60 and a.n_nn == 60
    assert 0.0 <= a.score <= 100.0 and 0.0 <= a.auc <= 100.0
    json.dumps(a.to_dict())


# ------------------------------------------------------------------ audit


def test_audit_uses_the_same_folds_for_model_and_references():
    rng = np.random.default_rng(1)
    labels = _labels()
    refs = [_retrained_like(rng, labels) for _ in range(3)]
    res = mia_nn_audit(refs[0].copy(), refs, labels, F, NN, **FAST)
    assert res.score == res.reference_scores[0]
    own = mia_nn_score(refs[0], labels, F, NN, **FAST)
    assert res.score == own.score and res.auc == own.auc


def test_audit_arithmetic():
    rng = np.random.default_rng(2)
    labels = _labels()
    refs = [_retrained_like(rng, labels) for _ in range(4)]
    model = _retrained_like(rng, labels)
    res = mia_nn_audit(model, refs, labels, F, NN, feature="nn_prob", **FAST)
    assert isinstance(res, MiaNnResult)
    assert res.feature == "nn_prob"
    scores = [mia_nn_score(r, labels, F, NN, feature="nn_prob", **FAST).score for r in refs]
    assert res.reference_scores == pytest.approx(scores)
    assert res.reference_mean == pytest.approx(np.mean(scores))
    assert res.reference_std == pytest.approx(np.std(scores, ddof=1))
    assert res.gap == pytest.approx(abs(res.score - np.mean(scores)))
    assert res.z == pytest.approx(res.gap / np.std(scores, ddof=1))
    d = res.to_dict()
    assert isinstance(d["reference_scores"], list)
    json.dumps(d)


def test_model_drawn_like_references_has_small_z_on_average():
    zs = []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        labels = _labels()
        refs = [_retrained_like(rng, labels) for _ in range(6)]
        model = _retrained_like(rng, labels)
        res = mia_nn_audit(model, refs, labels, F, NN, seed=seed, **FAST)
        assert res.reference_std > 0
        zs.append(res.z)
    assert np.mean(zs) < 2.0, zs


def test_leaky_model_has_large_z():
    rng = np.random.default_rng(7)
    labels = _labels()
    refs = [_retrained_like(rng, labels) for _ in range(6)]
    res = mia_nn_audit(_leaky(rng, labels), refs, labels, F, NN, **FAST)
    assert res.score > 97.0
    assert res.score > max(res.reference_scores)
    assert res.z > 3.0, res


def test_z_is_nan_with_one_reference_or_zero_spread():
    rng = np.random.default_rng(3)
    labels = _labels()
    ref = _retrained_like(rng, labels)
    model = _leaky(rng, labels)
    one = mia_nn_audit(model, [ref], labels, F, NN, **FAST)
    assert math.isnan(one.reference_std) and math.isnan(one.z)
    assert one.gap == pytest.approx(abs(one.score - one.reference_scores[0]))
    same = mia_nn_audit(model, [ref, ref.copy()], labels, F, NN, **FAST)
    assert same.reference_std == 0.0 and math.isnan(same.z)


# ------------------------------------------------------------------ validation


def _raises_one_line(fn, *args, match: str | None = None, **kwargs) -> None:
    with pytest.raises(ParameterError, match=match) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)


def test_validation_errors():
    rng = np.random.default_rng(4)
    labels = _labels()
    logits = _retrained_like(rng, labels)
    _raises_one_line(mia_nn_score, logits, labels[:-1], F, NN)
    _raises_one_line(mia_nn_score, logits, labels, F, F)
    _raises_one_line(mia_nn_score, logits, labels, F, K)
    _raises_one_line(mia_nn_score, logits, labels, F, NN, feature="softmax")
    _raises_one_line(mia_nn_score, logits, labels, F, NN, folds=1)
    _raises_one_line(mia_nn_score, logits[:, :1], labels, F, NN)
    _raises_one_line(mia_nn_score, logits, labels, F, NN, svm_gamma="wide")
    _raises_one_line(mia_nn_score, logits, labels, F, NN, svm_c=0.0)
    # a class absent from the split, and too few samples: the message says how many
    absent = labels.copy()
    absent[absent == F] = 2
    _raises_one_line(mia_nn_score, logits, absent, F, NN, match="0 of forget class 0")
    few = np.concatenate([np.flatnonzero(labels == F)[:3], np.flatnonzero(labels == NN)])
    _raises_one_line(mia_nn_score, logits[few], labels[few], F, NN, match="got 3 of forget")
    refs = [_retrained_like(rng, labels) for _ in range(2)]
    _raises_one_line(mia_nn_audit, logits, [], labels, F, NN)
    _raises_one_line(mia_nn_audit, logits, [refs[0][:-1]], labels, F, NN)
    _raises_one_line(mia_nn_audit, logits, refs, labels, F, NN, fold=3)


def test_rounding_level_spread_gives_unknown_z():
    rng = np.random.default_rng(0)
    labels = np.array([F] * 20 + [NN] * 20)
    logits = rng.normal(size=(40, 4))
    logits[labels == F, F] += 5
    res = mia_nn_audit(logits, [logits, logits], labels, F, NN,
                       reference_scores=[50.0, 50.0 + 1e-13], folds=5, repeats=1)
    assert np.isnan(res.z) and not np.isnan(res.reference_std)


def test_fold_auc_equals_sklearns_with_ties():
    from sklearn.metrics import roc_auc_score

    from classunlearn.audit.mia_nn import _auc

    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.integers(0, 2, 40)
        truth[:2] = [0, 1]
        decision = np.round(rng.normal(size=40), 1)  # rounded: many ties
        assert abs(_auc(truth, decision) - roc_auc_score(truth, decision)) < 1e-12
    assert _auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert _auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
