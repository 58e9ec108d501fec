"""U-LiRA for class unlearning (Hayes et al. 2024, class variant of ``paper.md`` section 4).

A per-example likelihood-ratio test that asks, for a model and a forget-class example x,
whether the model was trained on x and then unlearned, or never trained on x. For every x
two Gaussians are fitted to the logit-scaled confidence phi = log(p_y / (1 - p_y)):

* IN: phi under shadow *unlearned* models whose original's random training half held x;
* OUT: phi under shadow *retrained* models (trained without the class, so never saw x).

The log-likelihood ratio log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out) > 0 says
"unlearned". Over a balanced set of target models the attack's accuracy measures how
distinguishable the method is from retraining; an ideal unlearner scores 50 % (chance).

Pure functions: arrays of phi (models x examples) in, frozen dataclasses or numbers out. No
randomness is involved, so nothing needs a seed. Training the shadows is the caller's job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from classunlearn.audit.checks import is_integral
from classunlearn.errors import ParameterError

VARIANCES: tuple[str, ...] = ("auto", "per_example", "global")
"""How the Gaussians' spread is estimated (see :func:`ulira_scores`)."""

DEFAULT_VARIANCE = "auto"
"""Per-example variance where there are enough shadows, the pooled one elsewhere."""

MAX_ROC_POINTS = 200
"""ROC curves in results are thinned to at most this many points (for plotting)."""

__all__ = [
    "DEFAULT_VARIANCE",
    "MAX_ROC_POINTS",
    "VARIANCES",
    "UliraResult",
    "logit_confidence",
    "ulira_attack",
    "ulira_leave_one_out",
    "ulira_scores",
    "ulira_target_score",
]


@dataclass(frozen=True)
class UliraResult:
    """Result of :func:`ulira_leave_one_out` / :func:`ulira_attack`.

    Each decision is one (target model, forget example) pair: positive when the target is
    an unlearned model and the example was in its original's training half, negative for a
    retrained target (every example). The two sides are weighted to weigh the same.

    Attributes:
        accuracy_best: balanced accuracy at the best threshold on the LLR, % (optimistic:
            the threshold is chosen on the same decisions, as in Hayes et al.).
        accuracy_at_zero: balanced accuracy at LLR threshold 0 ("unlearned" iff LLR > 0), %.
        auc: area under the ROC curve, %.
        tpr_at_1pct_fpr: true-positive rate at the largest threshold with FPR <= 1 %, %.
        roc_fpr: false-positive rates of the ROC curve (at most 200 points, for plots).
        roc_tpr: matching true-positive rates.
        n_unlearned: number of unlearned target models.
        n_retrained: number of retrained target models.
        n_positive: number of positive decisions (unlearned target, in-half example).
        n_negative: number of negative decisions (retrained target, example).
        variance: the variance mode used.
    """

    accuracy_best: float
    accuracy_at_zero: float
    auc: float
    tpr_at_1pct_fpr: float
    roc_fpr: list[float]
    roc_tpr: list[float]
    n_unlearned: int
    n_retrained: int
    n_positive: int
    n_negative: int
    variance: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-serialisable)."""
        return asdict(self)


# --------------------------------------------------------------------------- validation



def _phi_matrix(name: str, value: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 2:
        raise ParameterError(
            f"{name} must be a 2-D array (models, examples), got shape {arr.shape}"
        )
    if n is not None and arr.shape[1] != n:
        raise ParameterError(f"{name} has {arr.shape[1]} examples, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} contains NaN or infinite values")
    return arr


def _mask(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ParameterError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype != bool:
        if not np.all((arr == 0) | (arr == 1)):
            raise ParameterError(f"{name} must be boolean (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def _options(variance: str, min_in_per_example: int, min_std: float) -> None:
    if variance not in VARIANCES:
        raise ParameterError(f"unknown U-LiRA variance {variance!r}; choose one of {VARIANCES}")
    if (
        isinstance(min_in_per_example, bool)
        or not isinstance(min_in_per_example, (int, np.integer))
        or min_in_per_example < 2
    ):
        raise ParameterError(
            f"min_in_per_example must be an integer >= 2, got {min_in_per_example!r}"
        )
    if not isinstance(min_std, (int, float)) or not min_std > 0:
        raise ParameterError(f"min_std must be a positive number, got {min_std!r}")


# --------------------------------------------------------------------------- phi


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi = log(p_y / (1 - p_y)), the logit-scaled confidence of the true label (LiRA).

    Computed as z_y - logsumexp(z_c, c != y), which equals log(p_y / (1 - p_y)) exactly and
    stays finite for huge logits (a softmax followed by a log would give +-inf).

    Args:
        logits: (..., K) logits, e.g. (n, K) for one model or (models, n, K) for a stack.
        labels: true labels, broadcastable to ``logits.shape[:-1]`` (e.g. (n,)).

    Returns:
        phi with shape ``logits.shape[:-1]``.
    """
    z = np.asarray(logits, dtype=float)
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ParameterError(f"logits must have a last axis of at least 2 classes, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ParameterError("logits contains NaN or infinite values")
    y = np.asarray(labels)
    if y.size and not is_integral(y):
        raise ParameterError(f"labels must hold integer class labels, got dtype {y.dtype}")
    try:
        y = np.broadcast_to(y.astype(np.int64), z.shape[:-1])
    except ValueError:
        raise ParameterError(
            f"labels of shape {np.shape(labels)} do not fit logits of shape {z.shape}"
        ) from None
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ParameterError(f"labels must lie in [0, {z.shape[-1]}), got {y.min()}..{y.max()}")
    idx = y[..., None]
    z_true = np.take_along_axis(z, idx, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, idx, -np.inf, axis=-1)
    return z_true - logsumexp(others, axis=-1)


# --------------------------------------------------------------------------- Gaussians


def _gaussian(
    phi: np.ndarray, mask: np.ndarray, variance: str, min_count: int, min_std: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and sd of ``phi`` (models, examples) over the models where ``mask``.

    The pooled ("global") variance is the within-example variance pooled over examples,
    sum_e sum_i (phi_ie - mu_e)^2 / sum_e (n_e - 1). When no example has two values (one
    shadow each), it falls back to the variance of all values around their grand mean (the
    fixed variance of Carlini et al.'s LiRA). Examples with no value get a NaN mean.
    """
    count = mask.sum(axis=0)
    total = np.where(mask, phi, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        resid2 = np.where(mask, (phi - mean) ** 2, 0.0).sum(axis=0)
        per_example = np.where(count >= 2, resid2 / np.maximum(count - 1, 1), np.nan)
    dof = int(np.sum(np.maximum(count - 1, 0)))
    if dof > 0:
        pooled = float(resid2.sum() / dof)
    else:
        values = phi[mask]
        pooled = float(np.var(values, ddof=1)) if values.size >= 2 else float("nan")
    if variance == "global":
        var = np.full(phi.shape[1], pooled)
    elif variance == "per_example":
        var = per_example
    else:
        var = np.where(count >= min_count, per_example, pooled)
    with np.errstate(invalid="ignore"):
        std = np.where(np.isnan(var), np.nan, np.maximum(np.sqrt(var), min_std))
    return mean, std


def ulira_scores(
    in_phi: np.ndarray,
    in_mask: np.ndarray,
    out_phi: np.ndarray,
    target_phi: np.ndarray,
    target_mask: np.ndarray | None = None,
    min_in_per_example: int = 4,
    variance: str = DEFAULT_VARIANCE,
    min_std: float = 1e-6,
) -> np.ndarray:
    """Log-likelihood ratio "unlearned vs retrained" for every (target, example).

    LLR = log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out) (scipy.stats.norm.logpdf),
    with per-example means: IN over the shadow unlearned models where ``in_mask`` (the
    example was in that shadow original's training half), OUT over all shadow retrained
    models.

    Args:
        in_phi: (N, n) phi of shadow unlearned models on the n forget examples.
        in_mask: (N, n) bool, True where the example was in that shadow's training half.
        out_phi: (M, n) phi of shadow retrained models.
        target_phi: (T, n) or (n,) phi of the target model(s).
        target_mask: same shape as ``target_phi``; False entries give NaN. Default: all.
        min_in_per_example: an example with fewer IN (or OUT) values than this uses the
            pooled variance of its side instead of its own (``variance="auto"``).
        variance: ``"auto"`` (default), ``"per_example"`` (always the example's own
            variance; NaN where it has fewer than 2 values) or ``"global"`` (always the
            pooled variance). A reading: the paper says "per-example, or a global variance
            when there are few shadows" without a cut-off; ``min_in_per_example = 4`` is ours.
        min_std: floor on every standard deviation, so identical shadow values do not give
            an infinite ratio (a numerical guard).

    Returns:
        LLR array shaped like ``target_phi``; NaN where ``target_mask`` is False or the
        example has no IN value (or too few values for ``"per_example"``).

    Readings: means are arithmetic means (LiRA's code uses medians); variances use
    ddof = 1; the pooled variance is the within-example one (see ``_gaussian``).
    """
    _options(variance, min_in_per_example, min_std)
    in_phi = _phi_matrix("in_phi", in_phi)
    n = in_phi.shape[1]
    in_mask = _mask("in_mask", in_mask, in_phi.shape)
    out_phi = _phi_matrix("out_phi", out_phi, n)
    if in_phi.shape[0] == 0 or out_phi.shape[0] == 0:
        raise ParameterError("U-LiRA needs at least one IN and one OUT shadow model")
    target = np.asarray(target_phi, dtype=float)
    squeeze = target.ndim == 1
    target = _phi_matrix("target_phi", target[None, :] if squeeze else target, n)
    if target_mask is None:
        t_mask = np.ones(target.shape, dtype=bool)
    else:
        raw_mask = np.asarray(target_mask)
        t_mask = _mask("target_mask", raw_mask[None, :] if squeeze else raw_mask, target.shape)
    llr = _llr(in_phi, in_mask, out_phi, target, variance, min_in_per_example, min_std)
    llr = np.where(t_mask, llr, np.nan)
    return llr[0] if squeeze else llr


def _llr(
    in_phi: np.ndarray,
    in_mask: np.ndarray,
    out_phi: np.ndarray,
    target: np.ndarray,
    variance: str,
    min_count: int,
    min_std: float,
) -> np.ndarray:
    """LLR for validated arrays; target is (T, n)."""
    mu_in, sd_in = _gaussian(in_phi, in_mask, variance, min_count, min_std)
    out_mask = np.ones(out_phi.shape, dtype=bool)
    mu_out, sd_out = _gaussian(out_phi, out_mask, variance, min_count, min_std)
    with np.errstate(invalid="ignore"):
        return norm.logpdf(target, mu_in, sd_in) - norm.logpdf(target, mu_out, sd_out)


# --------------------------------------------------------------------------- attacks


def _thin(fpr: np.ndarray, tpr: np.ndarray, limit: int = MAX_ROC_POINTS) -> tuple[list, list]:
    if fpr.size > limit:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, limit)).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return [float(v) for v in fpr], [float(v) for v in tpr]


def _summarise(
    positive: np.ndarray, negative: np.ndarray, n_unlearned: int, n_retrained: int, variance: str
) -> UliraResult:
    """Balanced ROC statistics of positive (unlearned) and negative (retrained) LLRs."""
    positive = positive[np.isfinite(positive)]
    negative = negative[np.isfinite(negative)]
    if positive.size == 0 or negative.size == 0:
        raise ParameterError(
            f"U-LiRA has {positive.size} unlearned and {negative.size} retrained decisions with "
            "a finite score; it needs both (check the masks and the number of shadows)"
        )
    scores = np.concatenate([positive, negative])
    truth = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    weight = np.concatenate(
        [np.full(positive.size, 0.5 / positive.size), np.full(negative.size, 0.5 / negative.size)]
    )
    fpr, tpr, _ = roc_curve(truth, scores, sample_weight=weight, drop_intermediate=False)
    accuracy_best = 100.0 * float(np.max((tpr + 1.0 - fpr) / 2.0))
    accuracy_zero = 100.0 * (float(np.mean(positive > 0)) + float(np.mean(negative <= 0))) / 2.0
    tpr_low = 100.0 * float(np.max(tpr[fpr <= 0.01]))
    auc = 100.0 * float(roc_auc_score(truth, scores, sample_weight=weight))
    plot_fpr, plot_tpr, _ = roc_curve(truth, scores, sample_weight=weight)
    roc_fpr, roc_tpr = _thin(plot_fpr, plot_tpr)
    return UliraResult(
        accuracy_best=accuracy_best,
        accuracy_at_zero=accuracy_zero,
        auc=auc,
        tpr_at_1pct_fpr=tpr_low,
        roc_fpr=roc_fpr,
        roc_tpr=roc_tpr,
        n_unlearned=int(n_unlearned),
        n_retrained=int(n_retrained),
        n_positive=int(positive.size),
        n_negative=int(negative.size),
        variance=variance,
    )


def _loo_decisions(
    unlearned_phi: np.ndarray,
    unlearned_mask: np.ndarray,
    retrained_phi: np.ndarray,
    variance: str,
    min_count: int,
    min_std: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-target LLR rows of the leave-one-out attack (validated inputs).

    Returns (positive rows, negative rows): for unlearned target i, the LLRs at the examples
    in its half with shadows = all other unlearned models (IN) and every retrained model
    (OUT); for retrained target j, the LLRs at every example with shadows = every unlearned
    model (IN) and all other retrained models (OUT). A target is never its own shadow.
    """
    n_unlearned, n_retrained = unlearned_phi.shape[0], retrained_phi.shape[0]
    positive = []
    for i in range(n_unlearned):
        others = np.arange(n_unlearned) != i
        row = _llr(
            unlearned_phi[others],
            unlearned_mask[others],
            retrained_phi,
            unlearned_phi[i : i + 1],
            variance,
            min_count,
            min_std,
        )[0]
        positive.append(row[unlearned_mask[i]])
    negative = []
    for j in range(n_retrained):
        others = np.arange(n_retrained) != j
        row = _llr(
            unlearned_phi,
            unlearned_mask,
            retrained_phi[others],
            retrained_phi[j : j + 1],
            variance,
            min_count,
            min_std,
        )[0]
        negative.append(row)
    return positive, negative


def ulira_leave_one_out(
    unlearned_phi: np.ndarray,
    unlearned_mask: np.ndarray,
    retrained_phi: np.ndarray,
    variance: str = DEFAULT_VARIANCE,
    min_in_per_example: int = 4,
    min_std: float = 1e-6,
) -> UliraResult:
    """U-LiRA with leave-one-out targets: each of the N + M models is the target in turn.

    The other N - 1 unlearned and M retrained models (or N unlearned and M - 1 retrained)
    are the shadows; a target is never its own shadow. Decisions: (unlearned target, example
    in its original's half) is positive, (retrained target, every example) is negative; both
    sides are weighted to weigh the same.

    Args:
        unlearned_phi: (N, n) phi of the unlearned shadow models on the forget examples.
        unlearned_mask: (N, n) bool, True where the example was in that model's half.
        retrained_phi: (M, n) phi of the retrained shadow models.
        variance, min_in_per_example, min_std: see :func:`ulira_scores`.

    Returns:
        :class:`UliraResult` (accuracy at the best threshold and at 0, AUC, TPR at 1 % FPR,
        thinned ROC points).
    """
    _options(variance, min_in_per_example, min_std)
    unlearned_phi = _phi_matrix("unlearned_phi", unlearned_phi)
    unlearned_mask = _mask("unlearned_mask", unlearned_mask, unlearned_phi.shape)
    retrained_phi = _phi_matrix("retrained_phi", retrained_phi, unlearned_phi.shape[1])
    if unlearned_phi.shape[0] < 2 or retrained_phi.shape[0] < 2:
        raise ParameterError(
            f"leave-one-out U-LiRA needs at least 2 unlearned and 2 retrained models, got "
            f"{unlearned_phi.shape[0]} and {retrained_phi.shape[0]}"
        )
    positive, negative = _loo_decisions(
        unlearned_phi, unlearned_mask, retrained_phi, variance, min_in_per_example, min_std
    )
    return _summarise(
        np.concatenate(positive),
        np.concatenate(negative),
        unlearned_phi.shape[0],
        retrained_phi.shape[0],
        variance,
    )


def ulira_attack(
    in_phi: np.ndarray,
    in_mask: np.ndarray,
    out_phi: np.ndarray,
    unlearned_target_phi: np.ndarray,
    unlearned_target_mask: np.ndarray,
    retrained_target_phi: np.ndarray,
    variance: str = DEFAULT_VARIANCE,
    min_in_per_example: int = 4,
    min_std: float = 1e-6,
) -> UliraResult:
    """U-LiRA with explicit held-out targets (shadows and targets must be disjoint models).

    Args:
        in_phi: (N, n) phi of shadow unlearned models; in_mask: (N, n) their halves.
        out_phi: (M, n) phi of shadow retrained models.
        unlearned_target_phi: (T_u, n) phi of unlearned target models.
        unlearned_target_mask: (T_u, n) bool, True where the example was in the target's
            original's training half (only those examples are decisions).
        retrained_target_phi: (T_r, n) phi of retrained target models (every example is a
            decision).
        variance, min_in_per_example, min_std: see :func:`ulira_scores`.

    Returns:
        :class:`UliraResult`, with n_unlearned = T_u and n_retrained = T_r.
    """
    _options(variance, min_in_per_example, min_std)
    in_phi = _phi_matrix("in_phi", in_phi)
    n = in_phi.shape[1]
    in_mask = _mask("in_mask", in_mask, in_phi.shape)
    out_phi = _phi_matrix("out_phi", out_phi, n)
    u_phi = _phi_matrix("unlearned_target_phi", unlearned_target_phi, n)
    u_mask = _mask("unlearned_target_mask", unlearned_target_mask, u_phi.shape)
    r_phi = _phi_matrix("retrained_target_phi", retrained_target_phi, n)
    if in_phi.shape[0] == 0 or out_phi.shape[0] == 0:
        raise ParameterError("U-LiRA needs at least one IN and one OUT shadow model")
    pos = _llr(in_phi, in_mask, out_phi, u_phi, variance, min_in_per_example, min_std)
    neg = _llr(in_phi, in_mask, out_phi, r_phi, variance, min_in_per_example, min_std)
    return _summarise(pos[u_mask], neg.ravel(), u_phi.shape[0], r_phi.shape[0], variance)


def ulira_target_score(
    model_phi: np.ndarray,
    in_mask: np.ndarray | None,
    in_phi: np.ndarray,
    in_mask_shadows: np.ndarray,
    out_phi: np.ndarray,
    variance: str = DEFAULT_VARIANCE,
    min_in_per_example: int = 4,
    min_std: float = 1e-6,
) -> float:
    """Share (%) of one audited model's examples that the shadows classify "unlearned".

    The LLR of ``model_phi`` against the shadows (see :func:`ulira_scores`) is thresholded
    at 0 ("unlearned" iff LLR > 0) over the examples where ``in_mask`` is True (for an
    unlearned model: its original's half; for a retrained model: all of them, pass None).
    Used to report the retrained model's own score. The audited model must not be one of
    the shadows.

    Returns:
        The share in percent; examples with an undefined LLR are left out, and NaN is
        returned if none is left.
    """
    model = np.asarray(model_phi, dtype=float)
    if model.ndim != 1:
        raise ParameterError(f"model_phi must be a 1-D array (examples,), got shape {model.shape}")
    mask = np.ones(model.shape, dtype=bool) if in_mask is None else in_mask
    mask = _mask("in_mask", mask, model.shape)
    llr = ulira_scores(
        in_phi,
        in_mask_shadows,
        out_phi,
        model,
        mask,
        min_in_per_example=min_in_per_example,
        variance=variance,
        min_std=min_std,
    )
    decided = llr[np.isfinite(llr)]
    if decided.size == 0:
        return float("nan")
    return 100.0 * float(np.mean(decided > 0))
