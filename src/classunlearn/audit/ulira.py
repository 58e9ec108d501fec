"""U-LiRA for class unlearning (Hayes et al. 2024, class variant of ``docs/readings.md`` section 4).

A per-example likelihood-ratio test that asks, for a model and a forget-class example x,
whether the model was trained on x and then unlearned, or never trained on x. For every x
two Gaussians are fitted to the logit-scaled confidence phi = log(p_y / (1 - p_y)):

* IN: phi under shadow *unlearned* models whose original's random training half held x;
* OUT: phi under shadow *retrained* models (trained without the class, so never saw x).

The log-likelihood ratio log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out) > 0 says
"unlearned". Over a balanced set of target models the attack's accuracy measures how
distinguishable the method is from retraining; an ideal unlearner scores 50 % (chance).

Three rules of ours (see ``docs/audit.md``, U-LiRA):

* The variance mode (per-example or pooled) of each side is decided once per attack, from
  the smallest per-example count that any target will see (:func:`resolve_variance`), and
  used for every target. Deciding it per leave-one-out fold gave unlearned and retrained
  targets different modes (with N = 8 balanced halves: 3 vs 4 IN values around the cut-off
  4), which an ideal unlearner turned into a spurious 54 % accuracy.
* Leave-one-out targets leave a whole complementary pair out (:func:`ulira_leave_one_out`,
  ``folds="pairs"``, what ``"auto"`` picks for the bench's shadow sets): the shadows' halves
  come in pairs (``shadows.balanced_halves``), so a pair's training data is independent of
  the other pairs', and the pair's unlearned and retrained targets are scored against the
  same shadows at the same examples. Leaving out only the target reads as a reversed
  separation (its family's data is anti-correlated with its own); ``"paired"`` (one model
  of each kind left out) is the fallback for other masks.
* The headline numbers (the ``ulira`` and ``ulira_auc`` metrics) are cross-fitted
  (``accuracy_held_out``, ``auc_held_out``): the target models are split in two folds by
  index parity, the threshold and the direction are chosen on one fold and scored on the
  other, and the two folds averaged, so no number is chosen on the decisions it scores
  and an ideal unlearner reads near 50 whatever the number of shadows. They are two-sided
  all the same: a separation in the
  wrong direction (unlearned targets look *more* retrained than retrained ones) is learned
  on one fold and reads above 50 on the other. The in-sample numbers (``accuracy_best``,
  the two-sided best-threshold accuracy as in Hayes et al.'s tables, and the folded
  ``auc``) choose threshold and direction on the very decisions they score, which reads
  above 50 at chance (retrain, 8 shadows per side on digits, 2 seeds: 60.9 and 64.0 where
  the cross-fitted numbers read 52.2 and 53.9, with a large per-seed spread); they are
  kept for comparison with published tables, and the verdict's bootstrap uses the
  in-sample accuracy (against a null computed the same way). Cross-fitting removes the
  optimism of choosing on the scored decisions, not all chance structure: each fold's
  targets are shadows of the other's, so strong model-level effects leave the folds
  slightly correlated (docs/audit.md). The raw, signed values are kept next to them.

Pure functions: arrays of phi (models x examples) in, frozen dataclasses or numbers out. No
randomness is involved, so nothing needs a seed. Training the shadows is the caller's job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.special import logsumexp

from classunlearn.audit.checks import is_integral
from classunlearn.errors import ParameterError

VARIANCES: tuple[str, ...] = ("auto", "per_example", "global")
"""How the Gaussians' spread is estimated (see :func:`ulira_scores`)."""

DEFAULT_VARIANCE = "auto"
"""Per-example variance where every target sees enough shadows, the pooled one elsewhere."""

DEFAULT_MIN_IN_PER_EXAMPLE = 4
"""``"auto"`` cut-off: a side is per-example when every target sees at least this many values
of every example on that side (ours; the paper gives no number)."""

MIN_SHADOWS = 8
"""Fewest shadow models per side a study or audit may use (ours, measured: two independent
sets of retrained models on digits, one posing as unlearned, read a two-sided headline of 55
to 73 at N = 4 and 53 to 57 at N = 8 over 6 seeds; docs/audit.md)."""


def check_shadow_count(n: int) -> None:
    """Refuse a shadow count U-LiRA cannot read near chance for an ideal unlearner: 0 (no
    U-LiRA) or an even number >= MIN_SHADOWS (complementary pairs need an even number)."""
    if n != 0 and (n < MIN_SHADOWS or n % 2):
        raise ParameterError(
            f"--shadows must be 0 (no U-LiRA) or an even number >= {MIN_SHADOWS} (with fewer "
            "shadows even two sets of retrained models read far from chance; docs/audit.md), "
            f"got {n}")


FOLDS: tuple[str, ...] = ("auto", "pairs", "paired", "single")
"""Leave-one-out schemes of :func:`ulira_leave_one_out`."""

DEFAULT_FOLDS = "auto"
"""``"pairs"`` when the shadows come in complementary pairs (as ``shadows.balanced_halves``
makes them) and N = M, else ``"paired"``."""

DIRECTIONS: tuple[str, ...] = ("expected", "reversed", "none")
"""Values of :attr:`UliraResult.direction`."""

MAX_ROC_POINTS = 200
"""ROC curves in results are thinned to at most this many points (for plotting)."""

__all__ = [
    "DEFAULT_MIN_IN_PER_EXAMPLE",
    "DEFAULT_FOLDS",
    "DEFAULT_VARIANCE",
    "DIRECTIONS",
    "FOLDS",
    "MAX_ROC_POINTS",
    "VARIANCES",
    "UliraResult",
    "logit_confidence",
    "resolve_variance",
    "ulira_attack",
    "ulira_leave_one_out",
    "ulira_rows",
    "ulira_scores",
    "ulira_target_score",
]


@dataclass(frozen=True)
class UliraResult:
    """Result of :func:`ulira_leave_one_out` / :func:`ulira_attack`.

    Each decision is one (target model, forget example) pair: positive when the target is
    an unlearned model and the example was in its original's training half, negative for a
    retrained target (every example). The two sides are weighted to weigh the same. The
    expected direction is "higher LLR = unlearned".

    In-sample, two-sided (folded) numbers, 50 = no separation, 100 = perfectly separated
    in either direction (a separation in the reversed direction is a separation too); the
    threshold and direction are chosen on the decisions scored, so they read above 50 at
    chance (the headline is ``accuracy_held_out`` / ``auc_held_out``, below):

    Attributes:
        accuracy_best: balanced accuracy at the best threshold on the LLR, best over
            thresholds *and both directions*, % (= 50 + 50 max |TPR - FPR|; optimistic: the
            threshold is chosen on the same decisions, as in Hayes et al.; the
            ``ulira_in_sample`` metric and the verdict's statistic).
        accuracy_at_zero: balanced accuracy at LLR threshold 0, folded: max(a, 100 - a) of
            the raw ``accuracy_at_zero_raw`` a (the better of "unlearned iff LLR > 0" and its
            inverse), %.
        auc: area under the ROC curve, folded: 50 + |auc_raw - 50|, % (the
            ``ulira_auc_in_sample`` metric).
        tpr_at_1pct_fpr: true-positive rate at the largest threshold with FPR <= 1 %, with
            the scores oriented by ``direction`` (negated when "reversed"), %.
        roc_fpr: false-positive rates of the ROC curve, oriented by ``direction`` (its area
            is ``auc``; at most 200 points, for plots).
        roc_tpr: matching true-positive rates.
        n_unlearned: number of unlearned target models.
        n_retrained: number of retrained target models.
        n_positive: number of positive decisions (unlearned target, in-half example).
        n_negative: number of negative decisions (retrained target, example).
        variance: the variance mode asked for ("auto", "per_example" or "global").

    Raw (signed, one-sided) values, the cross-fitted headline and the resolved settings:

    Attributes:
        direction: "expected" when auc_raw > 50 (unlearned targets get the higher LLRs),
            "reversed" when auc_raw < 50, "none" when it is exactly 50.
        auc_raw: the signed AUC, % (below 50: reversed separation).
        accuracy_best_one_sided: best-threshold balanced accuracy in the expected direction
            only (the pre-fix ``accuracy_best``), %.
        accuracy_at_zero_raw: balanced accuracy of "unlearned iff LLR > 0", %.
        accuracy_held_out: two-fold cross-fitted balanced accuracy, %: target models are
            split by index parity (unlearned and retrained alike), the threshold *and* the
            direction are chosen on one fold and applied to the other, and the two accuracies
            averaged. Not folded, no selection optimism (near 50 at chance, a single
            attack may read below; see :func:`_cross_fitted`). The ``ulira`` headline
            metric. None when a side has fewer than 2 target models.
        auc_held_out: two-fold cross-fitted AUC, %, on the same folds: the direction is
            the sign of one fold's raw AUC - 50 (ties: the expected direction), the other
            fold's AUC is read in that orientation, and the two averaged. Near 50 at
            chance. The ``ulira_auc`` headline metric. None when ``accuracy_held_out``
            is.
        variance_in: the mode used for the IN side ("per_example" or "global").
        variance_out: the mode used for the OUT side.
        min_count_in: the smallest number of IN values of an example that any target saw
            (examples with none left out): what ``variance_in`` was decided from.
        min_count_out: the same for OUT.
        min_in_per_example: the ``"auto"`` cut-off in force.
        folds: the leave-one-out scheme used ("pairs", "paired" or "single"), "explicit"
            for :func:`ulira_attack` (held-out targets).
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
    direction: str
    auc_raw: float
    accuracy_best_one_sided: float
    accuracy_at_zero_raw: float
    accuracy_held_out: float | None
    auc_held_out: float | None
    variance_in: str
    variance_out: str
    min_count_in: int
    min_count_out: int
    min_in_per_example: int
    folds: str = "explicit"

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


# --------------------------------------------------------------------------- variance rule


def _smallest_count(counts: np.ndarray) -> int:
    """Smallest positive entry of ``counts`` (0 when there is none)."""
    positive = counts[counts > 0]
    return int(positive.min()) if positive.size else 0


def resolve_variance(
    variance: str,
    min_count_in: int,
    min_count_out: int,
    min_in_per_example: int = DEFAULT_MIN_IN_PER_EXAMPLE,
) -> tuple[str, str]:
    """The (IN, OUT) variance modes of one attack, decided once for all its targets.

    ``"per_example"`` and ``"global"`` apply to both sides as asked. ``"auto"`` decides each
    side on its own: per-example when the smallest per-example count that any target of the
    attack sees on that side (``min_count_in`` / ``min_count_out``) is at least
    ``min_in_per_example``, else pooled ("global") for every example of that side. One mode
    per side and attack, never per target: in a leave-one-out attack an unlearned target
    sees one IN value fewer and one OUT value more than a retrained target, and a mode
    switched between them would tell the two kinds of target apart by itself.

    Args:
        variance: ``"auto"``, ``"per_example"`` or ``"global"``.
        min_count_in: smallest number of IN values of an example (with any) a target sees.
        min_count_out: the same for OUT.
        min_in_per_example: the ``"auto"`` cut-off.

    Returns:
        (mode for IN, mode for OUT), each ``"per_example"`` or ``"global"``.
    """
    _options(variance, min_in_per_example, 1.0)
    if variance != "auto":
        return variance, variance

    def pick(count: int) -> str:
        return "per_example" if count >= min_in_per_example else "global"

    return pick(int(min_count_in)), pick(int(min_count_out))


# --------------------------------------------------------------------------- Gaussians


def _gaussian(
    phi: np.ndarray, mask: np.ndarray, mode: str, min_std: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and sd of ``phi`` (models, examples) over the models where ``mask``.

    ``mode`` is ``"per_example"`` (each example's own variance, NaN with fewer than 2
    values) or ``"global"``: the within-example variance pooled over examples,
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
    if mode == "per_example":
        var = per_example
    else:
        dof = int(np.sum(np.maximum(count - 1, 0)))
        if dof > 0:
            pooled = float(resid2.sum() / dof)
        else:
            values = phi[mask]
            pooled = float(np.var(values, ddof=1)) if values.size >= 2 else float("nan")
        var = np.full(phi.shape[1], pooled)
    with np.errstate(invalid="ignore"):
        std = np.where(np.isnan(var), np.nan, np.maximum(np.sqrt(var), min_std))
    return mean, std


def ulira_scores(
    in_phi: np.ndarray,
    in_mask: np.ndarray,
    out_phi: np.ndarray,
    target_phi: np.ndarray,
    target_mask: np.ndarray | None = None,
    min_in_per_example: int = DEFAULT_MIN_IN_PER_EXAMPLE,
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
        min_in_per_example: ``variance="auto"`` cut-off (see :func:`resolve_variance`):
            the IN side is per-example when every example with an IN value has at least
            this many, else every example uses the pooled IN variance; likewise OUT with M.
        variance: ``"auto"`` (default), ``"per_example"`` (always the example's own
            variance; NaN where it has fewer than 2 values) or ``"global"`` (always the
            pooled variance). A reading: the paper says "per-example, or a global variance
            when there are few shadows" without a cut-off; ``min_in_per_example = 4`` and
            the one-mode-per-side rule are ours.
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
    modes = resolve_variance(
        variance, _smallest_count(in_mask.sum(axis=0)), out_phi.shape[0], min_in_per_example
    )
    llr = _llr(in_phi, in_mask, out_phi, target, modes, min_std)
    llr = np.where(t_mask, llr, np.nan)
    return llr[0] if squeeze else llr


def _llr(
    in_phi: np.ndarray,
    in_mask: np.ndarray,
    out_phi: np.ndarray,
    target: np.ndarray,
    modes: tuple[str, str],
    min_std: float,
) -> np.ndarray:
    """LLR for validated arrays; target is (T, n); modes = resolved (IN, OUT) variance."""
    mu_in, sd_in = _gaussian(in_phi, in_mask, modes[0], min_std)
    out_mask = np.ones(out_phi.shape, dtype=bool)
    mu_out, sd_out = _gaussian(out_phi, out_mask, modes[1], min_std)
    with np.errstate(invalid="ignore"):
        from scipy.stats import norm  # here, not at import: scipy.stats and sklearn cost
        # every bench worker a second and a half of start-up
        return norm.logpdf(target, mu_in, sd_in) - norm.logpdf(target, mu_out, sd_out)


# --------------------------------------------------------------------------- summary


def _thin(fpr: np.ndarray, tpr: np.ndarray, limit: int = MAX_ROC_POINTS) -> tuple[list, list]:
    if fpr.size > limit:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, limit)).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return [float(v) for v in fpr], [float(v) for v in tpr]


def _finite(rows: list[np.ndarray]) -> np.ndarray:
    values = np.concatenate(rows) if rows else np.zeros(0)
    return values[np.isfinite(values)]


def _roc(positive: np.ndarray, negative: np.ndarray, drop: bool = False):
    """ROC of "positive iff score >= threshold" (per-class rates, so balanced by design)."""
    scores = np.concatenate([positive, negative])
    truth = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    from sklearn.metrics import roc_curve

    return roc_curve(truth, scores, drop_intermediate=drop)


def _best_rule(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float]:
    """(sign, threshold) of the best balanced rule "positive iff sign * LLR >= threshold"
    over both directions (ties: the expected direction, then the first threshold)."""
    best = (-1.0, 1.0, np.inf)
    for sign in (1.0, -1.0):
        fpr, tpr, thresholds = _roc(sign * positive, sign * negative)
        k = int(np.argmax(tpr - fpr))
        if tpr[k] - fpr[k] > best[0]:
            best = (float(tpr[k] - fpr[k]), sign, float(thresholds[k]))
    return best[1], best[2]


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Signed AUC (%) of "higher score = positive" (ties count one half)."""
    from sklearn.metrics import roc_auc_score

    truth = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    return 100.0 * float(roc_auc_score(truth, np.concatenate([positive, negative])))


def _cross_fitted(pos_rows: list[np.ndarray], neg_rows: list[np.ndarray]
                  ) -> tuple[float, float] | None:
    """Two-fold cross-fitted (balanced accuracy, AUC), both %, or None with fewer than 2
    target models on a side (or a fold without a finite decision on a side).

    The folds are the target models' index parity, unlearned and retrained alike (under
    ``"pairs"`` the two targets of a pair fall in different folds, each with its partner of
    the other kind). On each fold the rule is chosen on the *other* fold and applied to this
    one: the accuracy's threshold and direction (:func:`_best_rule`), and the AUC's
    direction (the sign of the other fold's raw AUC - 50, ties to the expected direction).
    The two folds' values are averaged. Nothing is chosen on the decisions it is scored on,
    so when the two sides come from one distribution neither number carries the in-sample
    optimism, and a single attack may read below 50 (a direction learned on one fold that
    the other does not share). Not quite 50 in expectation: each fold's targets are shadows
    of the other fold's, so the folds share the chance difference between the two finite
    sets of models (measured in docs/audit.md: a few tenths of a point with weak model
    effects, up to about 3 at N = 8 with strong ones, against about 8 in-sample).
    """
    if len(pos_rows) < 2 or len(neg_rows) < 2:
        return None
    accuracies, aucs = [], []
    for fold in (0, 1):
        fit_p, fit_n = _finite(pos_rows[1 - fold :: 2]), _finite(neg_rows[1 - fold :: 2])
        test_p, test_n = _finite(pos_rows[fold::2]), _finite(neg_rows[fold::2])
        if min(fit_p.size, fit_n.size, test_p.size, test_n.size) == 0:
            return None
        sign, threshold = _best_rule(fit_p, fit_n)
        tpr = float(np.mean(sign * test_p >= threshold))
        tnr = float(np.mean(sign * test_n < threshold))
        accuracies.append(50.0 * (tpr + tnr))
        test_auc = _auc(test_p, test_n)
        aucs.append(100.0 - test_auc if _auc(fit_p, fit_n) < 50.0 else test_auc)
    return float(np.mean(accuracies)), float(np.mean(aucs))


def _summarise(
    pos_rows: list[np.ndarray],
    neg_rows: list[np.ndarray],
    variance: str,
    modes: tuple[str, str],
    counts: tuple[int, int],
    min_in_per_example: int,
) -> UliraResult:
    """Balanced ROC statistics of per-target positive (unlearned) and negative LLR rows."""
    positive, negative = _finite(pos_rows), _finite(neg_rows)
    if positive.size == 0 or negative.size == 0:
        raise ParameterError(
            f"U-LiRA has {positive.size} unlearned and {negative.size} retrained decisions with "
            "a finite score; it needs both (check the masks and the number of shadows)"
        )
    scores = np.concatenate([positive, negative])
    truth = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    fpr, tpr, _ = _roc(positive, negative)
    gap = tpr - fpr
    accuracy_two_sided = 50.0 + 50.0 * float(np.max(np.abs(gap)))
    accuracy_one_sided = 50.0 + 50.0 * float(np.max(gap))
    accuracy_zero = 100.0 * (float(np.mean(positive > 0)) + float(np.mean(negative <= 0))) / 2.0
    from sklearn.metrics import roc_auc_score

    auc_raw = 100.0 * float(roc_auc_score(truth, scores))
    direction = "expected" if auc_raw > 50.0 else "reversed" if auc_raw < 50.0 else "none"
    sign = -1.0 if direction == "reversed" else 1.0
    o_fpr, o_tpr, _ = _roc(sign * positive, sign * negative)
    tpr_low = 100.0 * float(np.max(o_tpr[o_fpr <= 0.01]))
    plot_fpr, plot_tpr, _ = _roc(sign * positive, sign * negative, drop=True)
    roc_fpr, roc_tpr = _thin(plot_fpr, plot_tpr)
    crossed = _cross_fitted(pos_rows, neg_rows)
    return UliraResult(
        accuracy_best=accuracy_two_sided,
        accuracy_at_zero=50.0 + abs(accuracy_zero - 50.0),
        auc=50.0 + abs(auc_raw - 50.0),
        tpr_at_1pct_fpr=tpr_low,
        roc_fpr=roc_fpr,
        roc_tpr=roc_tpr,
        n_unlearned=len(pos_rows),
        n_retrained=len(neg_rows),
        n_positive=int(positive.size),
        n_negative=int(negative.size),
        variance=variance,
        direction=direction,
        auc_raw=auc_raw,
        accuracy_best_one_sided=accuracy_one_sided,
        accuracy_at_zero_raw=accuracy_zero,
        accuracy_held_out=None if crossed is None else crossed[0],
        auc_held_out=None if crossed is None else crossed[1],
        variance_in=modes[0],
        variance_out=modes[1],
        min_count_in=int(counts[0]),
        min_count_out=int(counts[1]),
        min_in_per_example=int(min_in_per_example),
    )


# --------------------------------------------------------------------------- attacks


def _complementary_pairs(mask: np.ndarray) -> bool:
    """Rows 2k and 2k + 1 are complements for every k (an even number of rows)."""
    return mask.shape[0] >= 2 and mask.shape[0] % 2 == 0 and bool(
        np.all(mask[0::2] ^ mask[1::2]))


def resolve_folds(folds: str, unlearned_mask: np.ndarray, n_retrained: int) -> str:
    """The leave-one-out scheme an attack uses: ``"auto"`` is ``"pairs"`` when the unlearned
    shadows' halves are complementary pairs and there are as many retrained shadows (the
    bench's shadow sets, ``shadows.balanced_halves``, both come in pairs), else
    ``"paired"``. ``"pairs"`` on other masks is refused."""
    if folds not in FOLDS:
        raise ParameterError(f"unknown U-LiRA folds {folds!r}; choose one of {FOLDS}")
    fits = _complementary_pairs(unlearned_mask) and n_retrained == unlearned_mask.shape[0]
    if folds == "auto":
        return "pairs" if fits else "paired"
    if folds == "pairs" and not fits:
        raise ParameterError("U-LiRA folds 'pairs' need complementary halves (rows 2k and "
                             "2k + 1 of the mask) and as many retrained as unlearned shadows")
    return folds


def _loo_counts(unlearned_mask: np.ndarray, n_retrained: int, folds: str) -> tuple[int, int]:
    """Smallest per-example (IN, OUT) counts at the decisions of every leave-one-out target.

    ``"paired"``: every target decides at examples in the half of an unlearned model left
    out of its shadows, so sees c_e - 1 IN values there (c_e = the example's IN count), and
    M - 1 OUT values. ``"single"``: a retrained target sees every example's full c_e and
    M - 1 OUT values; the unlearned target i sees c_e - mask[i, e] IN values and M OUT.
    """
    count = unlearned_mask.sum(axis=0)
    if folds == "pairs":  # the partner never holds the target's examples: c_e - 1 IN values
        return _smallest_count(count[count > 0] - 1), n_retrained - 2
    if folds == "paired":
        return _smallest_count(count[count > 0] - 1), n_retrained - 1
    seen = np.vstack([count[None, :], count[None, :] - unlearned_mask])
    return _smallest_count(seen), n_retrained - 1


def _loo_decisions(
    unlearned_phi: np.ndarray,
    unlearned_mask: np.ndarray,
    retrained_phi: np.ndarray,
    modes: tuple[str, str],
    min_std: float,
    folds: str = DEFAULT_FOLDS,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-target LLR rows of the leave-one-out attack (validated inputs, resolved modes).

    Returns (positive rows, negative rows). A target is never its own shadow; every target
    uses the same ``modes`` (IN, OUT).

    * ``"paired"``: unlearned target i is scored with shadows = the unlearned models but i
      (IN) and the retrained models but i mod M (OUT), at the examples in i's half;
      retrained target j with shadows = the unlearned models but j mod N and the retrained
      models but j, at the examples in the half of unlearned model j mod N. With N = M, the
      two targets of pair k see the very same shadows and decide at the same examples.
    * ``"single"``: unlearned target i with all other unlearned (IN) and every retrained
      model (OUT), at its half; retrained target j with every unlearned model and all other
      retrained models, at every example.
    """
    n_unlearned, n_retrained = unlearned_phi.shape[0], retrained_phi.shape[0]
    if folds == "pairs":
        return _pair_decisions(unlearned_phi, unlearned_mask, retrained_phi, modes, min_std)
    paired = folds == "paired"
    positive = []
    for i in range(n_unlearned):
        keep_u = np.arange(n_unlearned) != i
        keep_r = np.arange(n_retrained) != (i % n_retrained if paired else -1)
        row = _llr(
            unlearned_phi[keep_u],
            unlearned_mask[keep_u],
            retrained_phi[keep_r],
            unlearned_phi[i : i + 1],
            modes,
            min_std,
        )[0]
        positive.append(row[unlearned_mask[i]])
    negative = []
    for j in range(n_retrained):
        keep_u = np.arange(n_unlearned) != (j % n_unlearned if paired else -1)
        keep_r = np.arange(n_retrained) != j
        row = _llr(
            unlearned_phi[keep_u],
            unlearned_mask[keep_u],
            retrained_phi[keep_r],
            retrained_phi[j : j + 1],
            modes,
            min_std,
        )[0]
        negative.append(row[unlearned_mask[j % n_unlearned]] if paired else row)
    return positive, negative


def _pair_decisions(
    unlearned_phi: np.ndarray,
    unlearned_mask: np.ndarray,
    retrained_phi: np.ndarray,
    modes: tuple[str, str],
    min_std: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``"pairs"``: for each complementary pair k (models 2k and 2k + 1 of both kinds), the
    shadows are every other pair; the four models of pair k are the targets (unlearned 2k
    and retrained 2k at the examples of unlearned 2k's half, likewise 2k + 1). A pair's data
    is independent of the other pairs', so under an ideal unlearner the unlearned and the
    retrained target are exchangeable given the shadows."""
    positive, negative = [], []
    n = unlearned_phi.shape[0]
    for k in range(0, n, 2):
        keep = np.ones(n, dtype=bool)
        keep[k:k + 2] = False
        targets = np.vstack([unlearned_phi[k:k + 2], retrained_phi[k:k + 2]])
        rows = _llr(unlearned_phi[keep], unlearned_mask[keep], retrained_phi[keep], targets,
                    modes, min_std)
        for t in (0, 1):
            positive.append(rows[t][unlearned_mask[k + t]])
            negative.append(rows[2 + t][unlearned_mask[k + t]])
    return positive, negative


def ulira_leave_one_out(
    unlearned_phi: np.ndarray,
    unlearned_mask: np.ndarray,
    retrained_phi: np.ndarray,
    variance: str = DEFAULT_VARIANCE,
    min_in_per_example: int = DEFAULT_MIN_IN_PER_EXAMPLE,
    min_std: float = 1e-6,
    folds: str = DEFAULT_FOLDS,
) -> UliraResult:
    """U-LiRA with leave-one-out targets: each of the N + M models is the target in turn.

    A target is never its own shadow. Decisions: (unlearned target, example in its
    original's half) is positive, (retrained target, example) is negative; both sides are
    weighted to weigh the same.

    ``folds`` (ours; docs/audit.md): ``"auto"`` (default) is ``"pairs"`` when the shadows'
    halves are complementary pairs (``shadows.balanced_halves``) and N = M, else
    ``"paired"``. ``"pairs"``: for each pair k the shadows are the other pairs of both kinds
    and the pair's four models are the targets, so a target's data is independent of its
    shadows'. ``"paired"``: every target leaves one model of *each* kind out (unlearned i
    with retrained i mod M) and a retrained target decides at its partner's half.
    ``"single"``: only the target is left out, which reads as a reversed separation.

    The variance modes are decided once (:func:`resolve_variance`) from the smallest
    per-example counts over all targets' decisions: IN from min over examples of c_e - 1,
    OUT from M - 2 under "pairs", M - 1 otherwise. With balanced halves (c_e = N/2
    everywhere) and the default cut-off 4: IN per-example iff N/2 - 1 >= 4 (N >= 10), OUT
    iff M - 2 >= 4 under pairs (M >= 6).

    Args:
        unlearned_phi: (N, n) phi of the unlearned shadow models on the forget examples.
        unlearned_mask: (N, n) bool, True where the example was in that model's half.
        retrained_phi: (M, n) phi of the retrained shadow models.
        variance, min_in_per_example, min_std: see :func:`ulira_scores`.
        folds: ``"auto"`` (default), ``"pairs"``, ``"paired"`` or ``"single"``, see above.

    Returns:
        :class:`UliraResult` (two-sided accuracy at the best threshold and at 0, folded AUC,
        TPR at 1 % FPR, thinned ROC points, the raw values and the direction).
    """
    positive, negative, modes, counts, folds = _loo_rows(
        unlearned_phi, unlearned_mask, retrained_phi, variance, min_in_per_example, min_std,
        folds)
    result = _summarise(positive, negative, variance, modes, counts, min_in_per_example)
    return replace(result, folds=folds)


def ulira_rows(
    unlearned_phi: np.ndarray,
    unlearned_mask: np.ndarray,
    retrained_phi: np.ndarray,
    variance: str = DEFAULT_VARIANCE,
    min_in_per_example: int = DEFAULT_MIN_IN_PER_EXAMPLE,
    min_std: float = 1e-6,
    folds: str = DEFAULT_FOLDS,
) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """The per-target LLR rows behind :func:`ulira_leave_one_out` (same arguments, same
    validation, same decisions): (positive rows, negative rows, resolved folds). Row i of
    each list holds one target model's LLRs at its decisions (unlearned target: the
    examples of its original's half; retrained target: see the folds). Under ``"pairs"``
    and ``"paired"`` with N = M, positive row i and negative row i were scored against the
    same shadows at the same examples, and under ``"pairs"`` rows 2k and 2k + 1 are the
    targets of pair k (:func:`classunlearn.audit.verdicts.ulira_interval` resamples them
    together). ``_summarise`` of these rows is the leave-one-out result."""
    positive, negative, _, _, folds = _loo_rows(
        unlearned_phi, unlearned_mask, retrained_phi, variance, min_in_per_example, min_std,
        folds)
    return positive, negative, folds


def _loo_rows(unlearned_phi, unlearned_mask, retrained_phi, variance, min_in_per_example,
              min_std, folds):
    """Validated leave-one-out rows: (positive, negative, modes, counts, folds)."""
    _options(variance, min_in_per_example, min_std)
    unlearned_phi = _phi_matrix("unlearned_phi", unlearned_phi)
    unlearned_mask = _mask("unlearned_mask", unlearned_mask, unlearned_phi.shape)
    retrained_phi = _phi_matrix("retrained_phi", retrained_phi, unlearned_phi.shape[1])
    if unlearned_phi.shape[0] < 2 or retrained_phi.shape[0] < 2:
        raise ParameterError(
            f"leave-one-out U-LiRA needs at least 2 unlearned and 2 retrained models, got "
            f"{unlearned_phi.shape[0]} and {retrained_phi.shape[0]}"
        )
    folds = resolve_folds(folds, unlearned_mask, retrained_phi.shape[0])
    if folds == "pairs" and unlearned_phi.shape[0] < 4:
        raise ParameterError("U-LiRA with complementary pairs needs at least 4 shadows per "
                             "side (2 pairs): one pair is the targets, the others the shadows")
    counts = _loo_counts(unlearned_mask, retrained_phi.shape[0], folds)
    modes = resolve_variance(variance, counts[0], counts[1], min_in_per_example)
    positive, negative = _loo_decisions(
        unlearned_phi, unlearned_mask, retrained_phi, modes, min_std, folds
    )
    return positive, negative, modes, counts, folds


def ulira_attack(
    in_phi: np.ndarray,
    in_mask: np.ndarray,
    out_phi: np.ndarray,
    unlearned_target_phi: np.ndarray,
    unlearned_target_mask: np.ndarray,
    retrained_target_phi: np.ndarray,
    variance: str = DEFAULT_VARIANCE,
    min_in_per_example: int = DEFAULT_MIN_IN_PER_EXAMPLE,
    min_std: float = 1e-6,
) -> UliraResult:
    """U-LiRA with explicit held-out targets (shadows and targets must be disjoint models).

    Every target sees the same shadows, so the variance modes are decided once from their
    counts (smallest IN count of an example with any, and M), as in :func:`ulira_scores`.

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
    counts = (_smallest_count(in_mask.sum(axis=0)), out_phi.shape[0])
    modes = resolve_variance(variance, counts[0], counts[1], min_in_per_example)
    pos = _llr(in_phi, in_mask, out_phi, u_phi, modes, min_std)
    neg = _llr(in_phi, in_mask, out_phi, r_phi, modes, min_std)
    pos_rows = [pos[k][u_mask[k]] for k in range(pos.shape[0])]
    neg_rows = [neg[k] for k in range(neg.shape[0])]
    return _summarise(pos_rows, neg_rows, variance, modes, counts, min_in_per_example)


def ulira_target_score(
    model_phi: np.ndarray,
    in_mask: np.ndarray | None,
    in_phi: np.ndarray,
    in_mask_shadows: np.ndarray,
    out_phi: np.ndarray,
    variance: str = DEFAULT_VARIANCE,
    min_in_per_example: int = DEFAULT_MIN_IN_PER_EXAMPLE,
    min_std: float = 1e-6,
) -> float:
    """Share (%) of one audited model's examples that the shadows classify "unlearned".

    The LLR of ``model_phi`` against the shadows (see :func:`ulira_scores`) is thresholded
    at 0 ("unlearned" iff LLR > 0) over the examples where ``in_mask`` is True (for an
    unlearned model: its original's half; for a retrained model: all of them, pass None).
    Used to report the retrained model's own score. The audited model must not be one of
    the shadows. ``"auto"`` resolves from these shadows' counts (all N and M of them), as in
    :func:`ulira_scores`; pass ``variance`` explicitly to match another attack's modes.

    Returns:
        The share in percent (raw, one-sided: it is a rate, not a separation); examples
        with an undefined LLR are left out, and NaN is returned if none is left.
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
