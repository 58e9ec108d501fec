"""Tests for classunlearn.audit.svc_mia (SalUn's MIA-efficacy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from classunlearn.audit.svc_mia import FEATURES, SvcMiaResult, _features, svc_mia
from classunlearn.errors import ParameterError


def _separated(rng: np.random.Generator, n_member: int = 80, n_nonmember: int = 40):
    """Members very confident on their label (p ~ 0.99), non-members at p ~ 0.5."""
    member = np.zeros((n_member, 2))
    member[:, 0] = 5.0 + rng.normal(0, 0.2, n_member)
    nonmember = rng.normal(0, 0.1, (n_nonmember, 2))
    return member, np.zeros(n_member, int), nonmember, np.zeros(n_nonmember, int)


@pytest.mark.parametrize("feature", ["confidence", "entropy", "m_entropy", "probs"])
def test_target_copies_of_nonmembers_score_100_and_members_0(feature):
    rng = np.random.default_rng(0)
    mem, y_mem, non, y_non = _separated(rng)
    as_non = svc_mia(mem, y_mem, non, y_non, non[:20].copy(), y_non[:20], feature=feature)
    as_mem = svc_mia(mem, y_mem, non, y_non, mem[:20].copy(), y_mem[:20], feature=feature)
    assert as_non.score == pytest.approx(100.0)
    assert as_mem.score == pytest.approx(0.0)
    assert as_non.feature == feature
    assert as_non.n_target == 20


def test_correctness_feature_on_toy_case():
    # Members all correct, non-members all wrong: correctness alone separates them.
    member = np.tile([[3.0, 0.0]], (10, 1))
    nonmember = np.tile([[0.0, 3.0]], (10, 1))
    labels = np.zeros(10, int)
    res = svc_mia(member, labels, nonmember, labels, nonmember[:4], labels[:4], "correctness")
    assert res.score == 100.0
    res = svc_mia(member, labels, nonmember, labels, member[:4], labels[:4], "correctness")
    assert res.score == 0.0


def test_result_is_a_frozen_dataclass_with_plain_dict():
    rng = np.random.default_rng(1)
    mem, y_mem, non, y_non = _separated(rng)
    res = svc_mia(mem, y_mem, non, y_non, non, y_non)
    assert isinstance(res, SvcMiaResult)
    assert res.feature == "confidence"  # the paper's default
    d = res.to_dict()
    assert d == {"score": res.score, "feature": "confidence", "n_target": len(non)}
    json.dumps(d)
    with pytest.raises(AttributeError):
        res.score = 3.0  # type: ignore[misc]


def test_seeded_member_subsample_is_reproducible():
    rng = np.random.default_rng(2)
    # Overlapping distributions so the subsample matters.
    mem = rng.normal(0, 1, (300, 3))
    non = rng.normal(0.3, 1, (50, 3))
    tgt = rng.normal(0.1, 1, (60, 3))
    y_mem, y_non, y_tgt = (rng.integers(0, 3, len(a)) for a in (mem, non, tgt))
    a = svc_mia(mem, y_mem, non, y_non, tgt, y_tgt, feature="probs", seed=5)
    b = svc_mia(mem, y_mem, non, y_non, tgt, y_tgt, feature="probs", seed=5)
    assert a == b
    scores = {svc_mia(mem, y_mem, non, y_non, tgt, y_tgt, "probs", seed=s).score for s in range(6)}
    assert len(scores) > 1  # the seed does drive the subsample


def test_features_match_definitions():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (7, 4))
    labels = rng.integers(0, 4, 7)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    rows = np.arange(7)
    np.testing.assert_allclose(_features(logits, labels, "probs"), p)
    np.testing.assert_allclose(_features(logits, labels, "confidence")[:, 0], p[rows, labels])
    np.testing.assert_allclose(_features(logits, labels, "entropy")[:, 0], scipy_entropy(p, axis=1))
    # Song & Mittal 2021: -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    expected = []
    for r, y in zip(p, labels, strict=True):
        val = -(1 - r[y]) * np.log(r[y])
        val -= sum(r[i] * np.log(1 - r[i]) for i in range(4) if i != y)
        expected.append(val)
    np.testing.assert_allclose(_features(logits, labels, "m_entropy")[:, 0], expected)
    corr = (np.argmax(logits, 1) == labels).astype(float)
    np.testing.assert_array_equal(_features(logits, labels, "correctness")[:, 0], corr)


def test_features_are_finite_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    labels = np.array([0, 0])
    for feature in FEATURES:
        assert np.all(np.isfinite(_features(logits, labels, feature))), feature
    # m_entropy of a sample confidently wrong: -log p_y = 2e4 (true term), plus
    # -p_1 log(1 - p_1) = -(log(e^-1e4 + e^0) - 1e4) = 1e4 from the wrong class.
    m = _features(logits, labels, "m_entropy")[:, 0]
    assert m[0] == pytest.approx(0.0, abs=1e-6)
    assert m[1] == pytest.approx(3e4, rel=1e-6)
    res = svc_mia(logits, labels, logits[::-1], labels, logits, labels, feature="m_entropy")
    assert 0.0 <= res.score <= 100.0


def _one_line(err: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(err.value)


def test_input_validation():
    rng = np.random.default_rng(4)
    mem, y_mem, non, y_non = _separated(rng)
    with pytest.raises(ParameterError) as err:
        svc_mia(mem, y_mem, non, y_non, non, y_non, feature="loss")
    _one_line(err)
    with pytest.raises(ParameterError) as err:
        svc_mia(mem, y_mem[:-1], non, y_non, non, y_non)
    _one_line(err)
    with pytest.raises(ParameterError) as err:
        svc_mia(mem, y_mem, non[:, :1], y_non, non, y_non)
    _one_line(err)
    with pytest.raises(ParameterError) as err:
        svc_mia(mem, y_mem, non, y_non, np.zeros((3, 3)), np.zeros(3, int))
    _one_line(err)
    with pytest.raises(ParameterError) as err:
        svc_mia(mem, y_mem + 2, non, y_non, non, y_non)
    _one_line(err)
    with pytest.raises(ParameterError) as err:
        svc_mia(mem, y_mem, non, y_non, non[:0], y_non[:0])
    _one_line(err)
    bad = mem.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ParameterError) as err:
        svc_mia(bad, y_mem, non, y_non, non, y_non)
    _one_line(err)
    with pytest.raises(ParameterError) as err:
        svc_mia(mem, y_mem + 0.5, non, y_non, non, y_non)
    _one_line(err)
