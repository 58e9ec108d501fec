"""MIA-NN: membership inference through the forget class's nearest neighbour class.

A model that truly never learned class f sends f's samples mostly to the class ``nn`` that
retrained models confuse it with. An RBF SVM is trained, on test-split samples only, to
tell f from nn from the model's outputs; its accuracy on held-out f samples (the share
identified as f) is the score. A model under audit is judged against the spread of the
same score among retrained reference models: leakage = |score - mean reference score|,
and z = leakage / sd of the reference scores (``docs/readings.md`` section 3).

Pure functions: numpy arrays in, frozen dataclasses out; the folds are seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import softmax

from classunlearn.audit.checks import is_integral, logit_matrix
from classunlearn.errors import ParameterError

FEATURES: tuple[str, ...] = ("logits", "probs", "nn_prob", "labels")
"""Feature kinds: full logit vector, softmax vector, probability of nn alone, one-hot arg-max."""

DEFAULT_FEATURE = "labels"
DEFAULT_FOLDS = 5  # stratified folds of the SVM's cross-validation: each class needs this many
"""Default feature kind, chosen by evidence (docs/readings.md section 3 item 5; docs/audit.md,
produced by scripts/mia_nn_evidence.py): on digits, mnist-5k and mnist1d, with 6 retrained
references per forget class, one-hot arg-max labels kept retrained models closest to their own
spread (mean leave-one-out |z| 1.09) while separating the original, RL and GA from them best
(their z exceeds a retrained model's in 97 % of pairs; probs and nn_prob 92 %, logits 84 %)."""

_SCORE_KWARGS = frozenset({"feature", "folds", "repeats", "seed", "svm_c", "svm_gamma"})

__all__ = [
    "DEFAULT_FEATURE",
    "FEATURES",
    "MiaNnResult",
    "MiaNnScore",
    "mia_nn_audit",
    "mia_nn_score",
    "nearest_neighbour_class",
]


@dataclass(frozen=True)
class MiaNnScore:
    """Result of :func:`mia_nn_score` for one model.

    Attributes:
        score: % of held-out forget-class samples the SVM identifies as the forget class,
            pooled over all folds and repeats.
        balanced_accuracy: pooled balanced accuracy (mean of the two per-class recalls), %.
        auc: area under the ROC of the SVM's decision function, %, mean over folds.
        n_forget: number of forget-class samples used.
        n_nn: number of nn-class samples used.
    """

    score: float
    balanced_accuracy: float
    auc: float
    n_forget: int
    n_nn: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-serialisable)."""
        return asdict(self)


@dataclass(frozen=True)
class MiaNnResult:
    """Result of :func:`mia_nn_audit`: a model's MIA-NN score against retrained references.

    Attributes:
        score, balanced_accuracy, auc: the audited model's :class:`MiaNnScore` figures (%).
        reference_scores: the score of each reference model (%), in the order given.
        reference_mean: their mean.
        reference_std: their standard deviation (ddof = 1); NaN with a single reference.
        gap: |score - reference_mean|, the MIA-NN leakage.
        z: gap / reference_std; NaN when there is one reference or the references all
            score the same (the spread is then unknown, and no number stands in for it).
        feature: the feature kind used.
    """

    score: float
    balanced_accuracy: float
    auc: float
    reference_scores: list[float]
    reference_mean: float
    reference_std: float
    gap: float
    z: float
    feature: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-serialisable; NaN stays a float NaN)."""
        out = asdict(self)
        out["reference_scores"] = list(self.reference_scores)
        return out



def _int_arg(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ParameterError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _class_arg(name: str, value: Any, n_classes: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer class index, got {value!r}")
    if not 0 <= value < n_classes:
        raise ParameterError(f"{name} must lie in [0, {n_classes}), got {value}")
    return int(value)



def _labels(value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ParameterError(f"labels must be a 1-D array of {n} labels, got shape {arr.shape}")
    if arr.size and not is_integral(arr):
        raise ParameterError(f"labels must hold integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def nearest_neighbour_class(
    reference_forget_probs: list[np.ndarray], forget_classes: Sequence[int]
) -> int:
    """The class retrained references send forget samples to most: argmax of mean p_ref(c|x).

    For each reference the class probabilities are averaged over its forget samples; these
    per-reference means are averaged (each reference weighs the same even when the sample
    counts differ), and the arg-max over classes not in ``forget_classes`` is returned.
    Ties go to the smallest class index.

    Args:
        reference_forget_probs: one (n_i, K) array of class probabilities per reference
            model retrained without the forget classes, evaluated on forget-class samples.
        forget_classes: the forgotten class(es); never returned.

    Returns:
        The nearest neighbour class index.
    """
    if isinstance(reference_forget_probs, np.ndarray) and reference_forget_probs.ndim == 2:
        reference_forget_probs = [reference_forget_probs]
    if len(reference_forget_probs) == 0:
        raise ParameterError("reference_forget_probs is empty; pass at least one reference")
    means = []
    n_classes = None
    for i, ref in enumerate(reference_forget_probs):
        arr = logit_matrix(f"reference_forget_probs[{i}]", ref)
        if n_classes is None:
            n_classes = arr.shape[1]
        elif arr.shape[1] != n_classes:
            raise ParameterError(
                f"reference_forget_probs[{i}] has {arr.shape[1]} classes, the first has {n_classes}"
            )
        if arr.shape[0] == 0:
            raise ParameterError(f"reference_forget_probs[{i}] has no samples")
        if np.any(arr < 0):
            raise ParameterError(
                f"reference_forget_probs[{i}] has negative entries; pass probabilities, not logits"
            )
        means.append(arr.mean(axis=0))
    assert n_classes is not None
    forget = [_class_arg("forget class", c, n_classes) for c in np.atleast_1d(forget_classes)]
    if not forget:
        raise ParameterError("forget_classes is empty; pass at least one forget class")
    allowed = np.ones(n_classes, dtype=bool)
    allowed[forget] = False
    if not allowed.any():
        raise ParameterError(f"all {n_classes} classes are forget classes; none is left as nn")
    mean = np.mean(means, axis=0)
    mean[~allowed] = -np.inf
    return int(np.argmax(mean))


def _nn_features(logits: np.ndarray, nn_class: int, feature: str) -> np.ndarray:
    if feature == "logits":
        return logits
    if feature == "labels":
        return np.eye(logits.shape[1])[np.argmax(logits, axis=1)]
    probs = softmax(logits, axis=1)
    if feature == "probs":
        return probs
    return probs[:, [nn_class]]  # "nn_prob"


def _auc(truth: np.ndarray, decision: np.ndarray) -> float:
    """ROC AUC of binary `truth` (1 = positive) by the Mann-Whitney rank sum, ties counted
    half: sklearn's roc_auc_score to float rounding, without its per-call overhead (50
    calls per audited model)."""
    from scipy.stats import rankdata

    ranks = rankdata(decision)
    n_pos = int(truth.sum())
    n_neg = truth.size - n_pos
    return float((ranks[truth == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mia_nn_score(
    logits: np.ndarray,
    labels: np.ndarray,
    forget_class: int,
    nn_class: int,
    feature: str = DEFAULT_FEATURE,
    folds: int = DEFAULT_FOLDS,
    repeats: int = 10,
    seed: int = 0,
    svm_c: float = 1.0,
    svm_gamma: str | float = "scale",
) -> MiaNnScore:
    """How well an RBF SVM on a model's outputs tells forget-class from nn-class samples.

    Keeps the samples labelled ``forget_class`` or ``nn_class`` (pass TEST-split outputs:
    the attack needs no training data), builds ``feature`` from the logits, and runs
    ``repeats`` x ``folds`` stratified cross-validation (seeded) of StandardScaler (fitted on
    the training fold) + RBF SVC. A retrained model confuses f with nn, so it scores lower
    than a model that still recognises f; a model that pushes f to odd regions can score
    much lower still (or higher): judge the score against references, see
    :func:`mia_nn_audit`.

    Args:
        logits: (n, K) logits of the model on the test split.
        labels: (n,) true labels.
        forget_class: f.
        nn_class: the nearest neighbour class (:func:`nearest_neighbour_class`).
        feature: one of :data:`FEATURES`: ``"logits"`` (full vector), ``"probs"``
            (softmax), ``"nn_prob"`` (p(nn|x) alone), ``"labels"`` (one-hot arg-max; the
            default, :data:`DEFAULT_FEATURE`).
        folds: number of stratified folds; each class needs at least this many samples.
        repeats: number of repetitions with fresh fold assignments.
        seed: seeds the fold assignment (the same seed gives the same folds for every
            model scored on the same labels).
        svm_c: SVC regularisation. A reading: the paper does not give it; sklearn's default.
        svm_gamma: SVC kernel width. A reading: the paper does not give it; sklearn's
            default ``"scale"``.

    Returns:
        :class:`MiaNnScore`. Readings: the score and balanced accuracy pool the held-out
        predictions over all folds and repeats (each sample counts once per repeat); the
        AUC is the mean of per-fold AUCs, since decision values of different fits are not
        on one scale.
    """
    if feature not in FEATURES:
        raise ParameterError(f"unknown MIA-NN feature {feature!r}; choose one of {FEATURES}")
    folds = _int_arg("folds", folds, 2)
    repeats = _int_arg("repeats", repeats, 1)
    seed = _int_arg("seed", seed, 0)
    if isinstance(svm_c, bool) or not isinstance(svm_c, (int, float)) or not svm_c > 0:
        raise ParameterError(f"svm_c must be a positive number, got {svm_c!r}")
    gamma_ok = svm_gamma in ("scale", "auto") or (
        isinstance(svm_gamma, (int, float)) and not isinstance(svm_gamma, bool) and svm_gamma > 0
    )
    if not gamma_ok:
        raise ParameterError(
            f"svm_gamma must be 'scale', 'auto' or a positive number, got {svm_gamma!r}"
        )
    z = logit_matrix("logits", logits)
    y_all = _labels(labels, z.shape[0])
    forget_class = _class_arg("forget_class", forget_class, z.shape[1])
    nn_class = _class_arg("nn_class", nn_class, z.shape[1])
    if forget_class == nn_class:
        raise ParameterError(f"nn_class must differ from forget_class, both are {forget_class}")
    n_forget = int(np.sum(y_all == forget_class))
    n_nn = int(np.sum(y_all == nn_class))
    if n_forget < folds or n_nn < folds:
        raise ParameterError(
            f"MIA-NN with folds={folds} needs at least {folds} samples of each class; got "
            f"{n_forget} of forget class {forget_class} and {n_nn} of nn class {nn_class}"
        )
    keep = (y_all == forget_class) | (y_all == nn_class)
    x = _nn_features(z[keep], nn_class, feature)
    y = (y_all[keep] == forget_class).astype(np.int64)

    # sklearn is imported here, not with the package: bench workers that only train start
    # a second faster
    import sklearn
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    hit_forget = hit_nn = seen_forget = seen_nn = 0
    aucs = []
    # Inputs were validated above; skipping sklearn's per-call checks makes the 50 small fits
    # several times faster (its validation, not the SVM, dominated the profile).
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for train, test in cv.split(x, y):
            model = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=svm_c, gamma=svm_gamma))
            model.fit(x[train], y[train])
            decision = model.decision_function(x[test])
            pred = model.predict(x[test])  # sklearn's own call, ties at 0 included
            truth = y[test]
            hit_forget += int(np.sum((pred == 1) & (truth == 1)))
            hit_nn += int(np.sum((pred == 0) & (truth == 0)))
            seen_forget += int(np.sum(truth == 1))
            seen_nn += int(np.sum(truth == 0))
            aucs.append(_auc(truth, decision))
    recall_forget = hit_forget / seen_forget
    recall_nn = hit_nn / seen_nn
    return MiaNnScore(
        score=100.0 * recall_forget,
        balanced_accuracy=100.0 * (recall_forget + recall_nn) / 2.0,
        auc=100.0 * float(np.mean(aucs)),
        n_forget=n_forget,
        n_nn=n_nn,
    )


def mia_nn_audit(
    model_logits: np.ndarray,
    reference_logits: list[np.ndarray],
    labels: np.ndarray,
    forget_class: int,
    nn_class: int,
    reference_scores: Sequence[float] | None = None,
    **score_kwargs: Any,
) -> MiaNnResult:
    """MIA-NN leakage of a model: its score's distance from retrained references' scores.

    Scores the model and every reference with :func:`mia_nn_score` under the same
    arguments (so the same folds), then gap = |score - mean(reference scores)| and
    z = gap / sd(reference scores, ddof = 1). A perfect unlearner has a gap within the
    references' spread (z of order 1).

    z is NaN, never a stand-in number, when the spread is unknown: with a single reference
    (sd undefined) or when all references score exactly the same (sd = 0). To audit a
    reference model itself, pass the OTHER references (leave-one-out), never itself.

    Args:
        model_logits: (n, K) test-split logits of the audited model.
        reference_logits: list of (n, K) test-split logits, one per reference model
            retrained without the forget class, on the same samples.
        labels: (n,) true labels of those samples.
        forget_class: f.
        nn_class: the nearest neighbour class.
        reference_scores: the references' scores when already computed with the same
            ``score_kwargs`` (a study scores its references once, not once per method);
            ``reference_logits`` are then only checked for shape.
        **score_kwargs: passed to :func:`mia_nn_score` (``feature``, ``folds``,
            ``repeats``, ``seed``, ``svm_c``, ``svm_gamma``).

    Returns:
        :class:`MiaNnResult`.
    """
    unknown = set(score_kwargs) - _SCORE_KWARGS
    if unknown:
        raise ParameterError(
            f"unknown MIA-NN option(s) {sorted(unknown)}; allowed: {sorted(_SCORE_KWARGS)}"
        )
    if isinstance(reference_logits, np.ndarray) and reference_logits.ndim == 2:
        reference_logits = [reference_logits]
    if len(reference_logits) == 0:
        raise ParameterError("reference_logits is empty; pass at least one retrained reference")
    model = logit_matrix("model_logits", model_logits)
    for i, ref in enumerate(reference_logits):
        shape = np.shape(ref)
        if shape != model.shape:
            raise ParameterError(
                f"reference_logits[{i}] has shape {shape} but model_logits has {model.shape}"
            )
    feature = score_kwargs.get("feature", DEFAULT_FEATURE)
    own = mia_nn_score(model, labels, forget_class, nn_class, **score_kwargs)
    ref_scores = list(reference_scores) if reference_scores is not None else [
        mia_nn_score(ref, labels, forget_class, nn_class, **score_kwargs).score
        for ref in reference_logits
    ]
    ref_mean = float(np.mean(ref_scores))
    ref_std = float(np.std(ref_scores, ddof=1)) if len(ref_scores) > 1 else float("nan")
    gap = abs(own.score - ref_mean)
    # a spread at rounding level (identical scores summed in another order) is no spread
    z = gap / ref_std if np.isfinite(ref_std) and ref_std > 1e-9 else float("nan")
    return MiaNnResult(
        score=own.score,
        balanced_accuracy=own.balanced_accuracy,
        auc=own.auc,
        reference_scores=[float(s) for s in ref_scores],
        reference_mean=ref_mean,
        reference_std=ref_std,
        gap=float(gap),
        z=float(z),
        feature=str(feature),
    )
