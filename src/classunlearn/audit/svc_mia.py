"""SVC-MIA ("MIA-efficacy"): the membership-inference score of Jia et al. 2023 / SalUn.

An RBF support-vector classifier (C = 3, gamma = "auto", as in SalUn's code) learns to tell
*members* (retain-train samples) from *non-members* (test samples) from one per-sample
feature of the model's output. It is then applied to the forget-train samples; the score is
the share of them predicted "non-member", in percent. A retrained model should put D_f
where it puts unseen data, so its score is the reference the other methods are compared
with (see ``docs/readings.md`` section 5).

Pure function: numpy arrays in, a frozen dataclass out. The only randomness is the seeded
subsample of members.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax, logsumexp, softmax

from classunlearn.audit.checks import is_integral, logit_matrix
from classunlearn.errors import ParameterError

FEATURES: tuple[str, ...] = ("confidence", "entropy", "m_entropy", "correctness", "probs")
"""Per-sample features the attack can use (see :func:`svc_mia`)."""

DEFAULT_FEATURE = "confidence"
"""The paper's default feature: softmax probability of the true label."""

SVC_C = 3.0
"""Regularisation of the RBF SVC, as in SalUn's ``SVC_fit_predict``."""

SVC_GAMMA = "auto"
"""Kernel width of the RBF SVC (1 / n_features), as in SalUn's ``SVC_fit_predict``."""

__all__ = ["DEFAULT_FEATURE", "FEATURES", "SVC_C", "SVC_GAMMA", "SvcMiaResult", "svc_mia"]


@dataclass(frozen=True)
class SvcMiaResult:
    """Result of :func:`svc_mia`.

    Attributes:
        score: share of target samples predicted non-member, in percent (0..100).
        feature: the feature the SVC was trained on (always reported with the score).
        n_target: number of target (forget-train) samples scored.
    """

    score: float
    feature: str
    n_target: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-serialisable)."""
        return asdict(self)




def _labels(name: str, value: Any, n: int, n_classes: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ParameterError(f"{name} must be a 1-D array of {n} labels, got shape {arr.shape}")
    if arr.size and not is_integral(arr):
        raise ParameterError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ParameterError(
            f"{name} must lie in [0, {n_classes}), got values from {arr.min()} to {arr.max()}"
        )
    return arr


def _log1m_softmax(logits: np.ndarray) -> np.ndarray:
    """log(1 - p_i) for every class, stable for confident outputs.

    For every class but the row's arg-max, p_i <= 1/2 and ``log1p(-p_i)`` is accurate. For
    the arg-max class a, 1 - p_a = sum_{j != a} p_j, so log(1 - p_a) is computed as
    logsumexp(z_{j != a}) - logsumexp(z), which stays finite when p_a rounds to 1.
    """
    probs = softmax(logits, axis=1)
    out = np.log1p(-np.minimum(probs, 0.5))  # the arg-max column is overwritten below
    rows = np.arange(logits.shape[0])
    top = np.argmax(logits, axis=1)
    others = logits.copy()
    others[rows, top] = -np.inf
    out[rows, top] = logsumexp(others, axis=1) - logsumexp(logits, axis=1)
    return out


def _features(logits: np.ndarray, labels: np.ndarray, feature: str) -> np.ndarray:
    """The per-sample feature matrix (samples, dims) of kind ``feature``."""
    rows = np.arange(logits.shape[0])
    if feature == "probs":
        return softmax(logits, axis=1)
    if feature == "correctness":
        return (np.argmax(logits, axis=1) == labels).astype(float)[:, None]
    log_p = log_softmax(logits, axis=1)
    if feature == "confidence":
        return np.exp(log_p[rows, labels])[:, None]
    probs = np.exp(log_p)
    if feature == "entropy":
        return 0.0 - (probs * log_p).sum(axis=1)[:, None]  # 0.0 - x: no negative zeros
    # m_entropy (Song & Mittal 2021, eq. 6):
    #   -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    log_1mp = _log1m_softmax(logits)
    true_term = -np.exp(log_1mp[rows, labels]) * log_p[rows, labels]
    other = -probs * log_1mp
    other[rows, labels] = 0.0
    return (true_term + other.sum(axis=1))[:, None]


def svc_mia(
    shadow_member_logits: np.ndarray,
    shadow_member_labels: np.ndarray,
    shadow_nonmember_logits: np.ndarray,
    shadow_nonmember_labels: np.ndarray,
    target_logits: np.ndarray,
    target_labels: np.ndarray,
    feature: str = DEFAULT_FEATURE,
    seed: int = 0,
) -> SvcMiaResult:
    """SalUn's MIA-efficacy: % of target samples an RBF SVC calls "non-member".

    The SVC (C = 3, gamma = "auto", no feature scaling, as in SalUn) is fitted on
    ``feature`` of the members (label 1) against the non-members (label 0), then predicts
    the targets. Higher means the model treats the targets more like unseen data.

    Args:
        shadow_member_logits: logits (n_m, K) of members, i.e. retain-train samples (D_r).
        shadow_member_labels: their true labels (n_m,).
        shadow_nonmember_logits: logits (n_n, K) of non-members, i.e. test samples.
        shadow_nonmember_labels: their true labels (n_n,).
        target_logits: logits (n_t, K) of the samples under audit, i.e. D_f.
        target_labels: their true labels (n_t,).
        feature: one of :data:`FEATURES`: ``"confidence"`` (softmax probability of the true
            label, the paper's default), ``"entropy"`` (Shannon entropy of the softmax),
            ``"m_entropy"`` (modified entropy of Song & Mittal 2021, which uses the label),
            ``"correctness"`` (1 if the arg-max is the label), ``"probs"`` (the whole
            softmax vector).
        seed: seeds the member subsample.

    Returns:
        :class:`SvcMiaResult` with the score in percent.

    Readings (documented choices where SalUn and the paper leave room; docs/readings.md
    section 5):
        * When there are more members than non-members, a *random* seeded subset of members
          the size of the non-member set is used (SalUn takes the first ones); when there
          are fewer, all members are used and the non-members are not subsampled.
        * ``"m_entropy"`` follows Song & Mittal's definition per sample
          (-(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)); SalUn's code indexes whole
          columns by the label vector, which is not this quantity.
        * Softmax and logs are computed from logits (scipy.special), so no probability is
          clipped.
    """
    if feature not in FEATURES:
        raise ParameterError(f"unknown SVC-MIA feature {feature!r}; choose one of {FEATURES}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    member = logit_matrix("shadow_member_logits", shadow_member_logits)
    nonmember = logit_matrix("shadow_nonmember_logits", shadow_nonmember_logits)
    target = logit_matrix("target_logits", target_logits)
    n_classes = member.shape[1]
    for name, arr in (("shadow_nonmember_logits", nonmember), ("target_logits", target)):
        if arr.shape[1] != n_classes:
            raise ParameterError(
                f"{name} has {arr.shape[1]} classes but shadow_member_logits has {n_classes}"
            )
    for name, arr in (
        ("shadow_member_logits", member),
        ("shadow_nonmember_logits", nonmember),
        ("target_logits", target),
    ):
        if arr.shape[0] == 0:
            raise ParameterError(f"{name} is empty; SVC-MIA needs at least one sample in it")
    y_member = _labels("shadow_member_labels", shadow_member_labels, member.shape[0], n_classes)
    y_nonmember = _labels(
        "shadow_nonmember_labels", shadow_nonmember_labels, nonmember.shape[0], n_classes
    )
    y_target = _labels("target_labels", target_labels, target.shape[0], n_classes)

    if member.shape[0] > nonmember.shape[0]:
        rng = np.random.default_rng(int(seed))
        keep = np.sort(rng.choice(member.shape[0], size=nonmember.shape[0], replace=False))
        member, y_member = member[keep], y_member[keep]

    x_shadow = np.vstack(
        [_features(member, y_member, feature), _features(nonmember, y_nonmember, feature)]
    )
    y_shadow = np.concatenate([np.ones(member.shape[0]), np.zeros(nonmember.shape[0])])
    from sklearn.svm import SVC  # imported when used: see audit.mia_nn

    clf = SVC(C=SVC_C, gamma=SVC_GAMMA, kernel="rbf", random_state=int(seed))
    clf.fit(x_shadow, y_shadow)
    predicted = clf.predict(_features(target, y_target, feature))
    score = 100.0 * float(np.mean(predicted == 0))
    return SvcMiaResult(score=score, feature=feature, n_target=int(target.shape[0]))
