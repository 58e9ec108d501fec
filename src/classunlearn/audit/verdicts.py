"""Verdicts: one per attack, each with the rule that produced it and the numbers behind it.

The one documented place for the pass / fail rules of an audit (issue #13 item 2; the
reasons and the thresholds' evidence are in ``docs/audit.md``, "Verdicts"):

* accuracy (:func:`accuracy_verdict`): "pass" when the forget accuracy Acc_f lies in the
  references' range widened by a tolerance on both sides and the retain test accuracy TA_r
  is not below the references' minimum minus the tolerance; else "fail". The tolerance of
  each metric is max(``ACCURACY_TOLERANCE`` = 2 points, the references' sd (ddof = 1)):
  with M exchangeable references a new retrained model falls outside their bare range with
  probability 2 / (M + 1) (a third at M = 5), so the range alone would fail good models.
* MIA-NN (:func:`mia_nn_verdict`): "leaks" when z >= ``MIA_NN_Z_LEAK`` = 3 with at least
  ``MIA_NN_MIN_REFERENCES`` = 5 references; "within the references' spread" when
  z < ``MIA_NN_Z_SPREAD`` = 2 (at least 2 references, so that z exists); "inconclusive"
  otherwise (2 <= z < 3; z >= 2 with fewer than 5 references; z undefined). Measured false
  alarms of retrained models (docs/audit.md, "How many references"): z >= 2 flags 13 to 34
  % of them at M = 2 to 5, z >= 3 flags 7 to 11 % at M = 5 and 12 to 21 % at M = 2 or 3.
* U-LiRA (:func:`ulira_interval`, :func:`ulira_null`, :func:`ulira_verdict`): a bootstrap
  interval for the in-sample two-sided best-threshold balanced accuracy (the
  ``ulira_in_sample`` metric, "U-LiRA in-sample"; not the cross-fitted ``ulira`` headline),
  resampling target models and, within them, examples, compared with the same interval for
  the null, the attack run with ``retrain`` as the method (two retrained sets read 52 to 57
  against each other on digits, not 50): "distinguishable" when the method's lower end is
  above the null's upper end; "indistinguishable" when the method's point estimate is not
  above the null's upper end; "inconclusive" in between.

Pure functions over numbers and arrays; the bootstrap is seeded, so a verdict is
reproducible. Wiring into ``bench`` / ``audit`` is the caller's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from classunlearn.audit.ulira import (
    DEFAULT_FOLDS,
    DEFAULT_MIN_IN_PER_EXAMPLE,
    DEFAULT_VARIANCE,
    ulira_rows,
)
from classunlearn.errors import ParameterError

ATTACKS: tuple[str, ...] = ("accuracy", "mia_nn", "ulira")
"""Attacks a :class:`Verdict` can be about."""

OUTCOMES: dict[str, tuple[str, ...]] = {
    "accuracy": ("pass", "fail", "inconclusive"),
    "mia_nn": ("within the references' spread", "inconclusive", "leaks"),
    "ulira": ("indistinguishable", "inconclusive", "distinguishable"),
}
"""The fixed vocabulary of each attack's outcome (accuracy is inconclusive only without
references)."""

ACCURACY_TOLERANCE = 2.0
"""Smallest widening (percentage points) of the references' accuracy range (ours)."""

MIA_NN_Z_LEAK = 3.0
"""MIA-NN z at or above which a model "stands out" (docs/audit.md: 7 to 11 % false alarms
of retrained models at M = 5)."""

MIA_NN_Z_SPREAD = 2.0
"""MIA-NN z below which a model is "within the references' spread"."""

MIA_NN_MIN_REFERENCES = 5
"""Fewest references for a "leaks" verdict (docs/audit.md: at M = 2 or 3 even z >= 3 flags
12 to 21 % of retrained models)."""

ULIRA_N_BOOT = 1000
"""Bootstrap resamples of :func:`ulira_interval`."""

ULIRA_LEVEL = 0.95
"""Two-sided level of the U-LiRA intervals."""

__all__ = [
    "ACCURACY_TOLERANCE",
    "ATTACKS",
    "MIA_NN_MIN_REFERENCES",
    "MIA_NN_Z_LEAK",
    "MIA_NN_Z_SPREAD",
    "OUTCOMES",
    "ULIRA_LEVEL",
    "ULIRA_N_BOOT",
    "UliraInterval",
    "Verdict",
    "accuracy_verdict",
    "best_threshold_accuracy",
    "method_verdicts",
    "mia_nn_verdict",
    "ulira_interval",
    "ulira_null",
    "ulira_phi_interval",
    "ulira_verdict",
    "verdict_record",
]


@dataclass(frozen=True)
class Verdict:
    """One attack's verdict.

    Attributes:
        attack: "accuracy", "mia_nn" or "ulira".
        outcome: one of ``OUTCOMES[attack]``.
        passed: True (looks retrained), False (fails / leaks / distinguishable), None
            (inconclusive).
        rule: one sentence stating the rule with its thresholds.
        numbers: the numbers the rule was applied to.
    """

    attack: str
    outcome: str
    passed: bool | None
    rule: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ParameterError(f"unknown attack {self.attack!r}; choose one of {ATTACKS}")
        if self.outcome not in OUTCOMES[self.attack]:
            raise ParameterError(f"unknown {self.attack} outcome {self.outcome!r}; choose one "
                                 f"of {OUTCOMES[self.attack]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-serialisable; NaN stays a float NaN)."""
        return asdict(self)


def _number(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    return out


def _numbers(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} contains NaN or infinite values")
    return arr


# --------------------------------------------------------------------------- accuracy


def accuracy_verdict(
    acc_forget: float,
    test_acc_retain: float,
    ref_acc_forget: Sequence[float],
    ref_test_acc_retain: Sequence[float],
    tolerance: float = ACCURACY_TOLERANCE,
) -> Verdict:
    """Acc_f and TA_r (percent) against the references' range.

    Each metric's tolerance is max(``tolerance``, sd of the references' values, ddof = 1;
    0 with one reference). "pass" iff min(ref Acc_f) - tol_f <= Acc_f <= max(ref Acc_f) +
    tol_f and TA_r >= min(ref TA_r) - tol_r (a higher TA_r is no failure); "fail" otherwise;
    "inconclusive" without references.
    """
    acc_f = _number("acc_forget", acc_forget)
    ta_r = _number("test_acc_retain", test_acc_retain)
    tol = _number("tolerance", tolerance)
    if not tol >= 0:
        raise ParameterError(f"tolerance must be >= 0, got {tolerance!r}")
    refs_f = _numbers("ref_acc_forget", ref_acc_forget)
    refs_r = _numbers("ref_test_acc_retain", ref_test_acc_retain)
    rule = (f"pass iff Acc_f lies in the references' Acc_f range widened by max({tol:g} "
            "points, their sd) on both sides and TA_r is at least the references' minimum "
            "TA_r minus max(" f"{tol:g} points, their sd)")
    numbers: dict[str, Any] = {"acc_forget": acc_f, "test_acc_retain": ta_r,
                               "n_references": int(refs_f.size)}
    if refs_f.size == 0 or refs_r.size == 0:
        return Verdict("accuracy", "inconclusive", None, rule + "; no references: inconclusive",
                       numbers)

    def widen(values: np.ndarray) -> float:
        sd = float(np.std(values, ddof=1)) if values.size >= 2 else 0.0
        return max(tol, sd)

    tol_f, tol_r = widen(refs_f), widen(refs_r)
    low_f, high_f = float(refs_f.min()) - tol_f, float(refs_f.max()) + tol_f
    low_r = float(refs_r.min()) - tol_r
    forget_ok = math.isfinite(acc_f) and low_f <= acc_f <= high_f
    retain_ok = math.isfinite(ta_r) and ta_r >= low_r
    numbers.update(ref_acc_forget_min=float(refs_f.min()), ref_acc_forget_max=float(refs_f.max()),
                   tolerance_forget=tol_f, acc_forget_low=low_f, acc_forget_high=high_f,
                   ref_test_acc_retain_min=float(refs_r.min()), tolerance_retain=tol_r,
                   test_acc_retain_low=low_r, forget_ok=forget_ok, retain_ok=retain_ok)
    passed = forget_ok and retain_ok
    return Verdict("accuracy", "pass" if passed else "fail", passed, rule, numbers)


# --------------------------------------------------------------------------- MIA-NN


def mia_nn_verdict(
    z: float | None,
    n_references: int,
    z_leak: float = MIA_NN_Z_LEAK,
    min_references: int = MIA_NN_MIN_REFERENCES,
    z_spread: float = MIA_NN_Z_SPREAD,
) -> Verdict:
    """MIA-NN z (gap / references' sd) and the number of references M.

    "leaks" iff |z| >= ``z_leak`` and M >= ``min_references``; "within the references'
    spread" iff |z| < ``z_spread`` and M >= 2; "inconclusive" otherwise (z_spread <= |z| <
    z_leak; |z| >= z_spread with M < min_references; z undefined, i.e. None / NaN, or M < 2).
    """
    if isinstance(n_references, bool) or not isinstance(n_references, (int, np.integer)) \
            or n_references < 0:
        raise ParameterError(f"n_references must be an integer >= 0, got {n_references!r}")
    z_leak, z_spread = _number("z_leak", z_leak), _number("z_spread", z_spread)
    if not 0 < z_spread <= z_leak:
        raise ParameterError(f"need 0 < z_spread <= z_leak, got {z_spread} and {z_leak}")
    if isinstance(min_references, bool) or not isinstance(min_references, (int, np.integer)) \
            or min_references < 2:
        raise ParameterError(f"min_references must be an integer >= 2, got {min_references!r}")
    value = float("nan") if z is None else abs(_number("z", z))
    m = int(n_references)
    rule = (f"leaks iff z >= {z_leak:g} with at least {min_references} references; within the "
            f"references' spread iff z < {z_spread:g} (at least 2 references); else "
            "inconclusive")
    numbers = {"z": value, "n_references": m, "z_leak": z_leak, "z_spread": z_spread,
               "min_references": int(min_references)}
    if m < 2 or not math.isfinite(value):
        outcome = "inconclusive"
    elif value >= z_leak and m >= min_references:
        outcome = "leaks"
    elif value < z_spread:
        outcome = "within the references' spread"
    else:
        outcome = "inconclusive"
    passed = {"leaks": False, "within the references' spread": True}.get(outcome)
    return Verdict("mia_nn", outcome, passed, rule, numbers)


# --------------------------------------------------------------------------- U-LiRA


@dataclass(frozen=True)
class UliraInterval:
    """Bootstrap interval of U-LiRA's two-sided best-threshold balanced accuracy (%).

    Attributes:
        point: the accuracy on all decisions (= ``UliraResult.accuracy_best`` of the rows,
            the ``ulira_in_sample`` metric).
        low, high: the percentile interval's ends.
        level: its two-sided level (0.95: the 2.5 and 97.5 percentiles).
        n_boot: bootstrap resamples; seed: their seed.
        n_positive_rows, n_negative_rows: target models (rows) on each side.
        block: rows resampled together (1: positive row i with negative row i; 2: the two
            targets of a complementary pair too; 0: the two sides resampled apart).
    """

    point: float
    low: float
    high: float
    level: float
    n_boot: int
    seed: int
    n_positive_rows: int
    n_negative_rows: int
    block: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_threshold_accuracy(positive: np.ndarray, negative: np.ndarray) -> float:
    """Two-sided best-threshold balanced accuracy (%) = 50 + 50 max_t |TPR(t) - FPR(t)|, the
    Kolmogorov-Smirnov distance of the two samples (NaN and inf values are dropped)."""
    pos = np.asarray(positive, dtype=float).ravel()
    neg = np.asarray(negative, dtype=float).ravel()
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if pos.size == 0 or neg.size == 0:
        raise ParameterError("U-LiRA needs finite positive and negative decisions")
    # one sort of both samples: at the last of each run of equal values the running counts
    # are #pos <= v and #neg <= v, the empirical CDFs' numerators at every threshold v
    values = np.concatenate([pos, neg])
    order = np.argsort(values)  # any order within ties: only each run's end is read
    is_pos = order < pos.size
    n_pos, n_neg = np.cumsum(is_pos), np.cumsum(~is_pos)
    ranked = values[order]
    last = np.append(ranked[1:] != ranked[:-1], True)
    gap = n_pos[last] / pos.size - n_neg[last] / neg.size
    return 50.0 + 50.0 * float(np.max(np.abs(gap)))


def _resampled_ks(pos: np.ndarray, neg: np.ndarray,
                  draws: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """:func:`best_threshold_accuracy` of every resample (indices into `pos` and `neg`),
    equal to calling it on each, without a sort per resample: each pooled value is mapped
    once to the rank of its distinct value, a resample's empirical CDFs are the running
    sums of its counts per rank (thresholds where it has no value repeat its previous gap).
    Chunked so a chunk's count table stays near 64K entries: cache-sized tables measured
    fastest (2.2x the sort per resample on a 16-shadow study's rows; 4M-entry tables were
    slower than it, paying page faults on every fresh allocation)."""
    values = np.concatenate([pos, neg])
    distinct, run = np.unique(values, return_inverse=True)
    width = distinct.size
    chunk = max(1, (1 << 16) // width)
    out = np.empty(len(draws))
    for start in range(0, len(draws), chunk):
        part = draws[start:start + chunk]
        offsets = np.arange(len(part), dtype=np.int64) * width
        cdfs = []
        for side, shift in ((0, 0), (1, pos.size)):
            idx = np.concatenate([run[d[side] + shift] + off for d, off in zip(part, offsets)])
            counts = np.bincount(idx, minlength=len(part) * width).reshape(len(part), width)
            sizes = np.array([d[side].size for d in part])[:, None]
            cdfs.append(np.cumsum(counts, axis=1) / sizes)
        out[start:start + len(part)] = 50.0 + 50.0 * np.max(np.abs(cdfs[0] - cdfs[1]), axis=1)
    return out


def _rows(name: str, rows: Sequence[Any]) -> list[np.ndarray]:
    out = []
    for r in rows:
        a = np.asarray(r, dtype=float).ravel()
        out.append(a[np.isfinite(a)])
    if not out or all(a.size == 0 for a in out):
        raise ParameterError(f"{name} needs at least one row with a finite value")
    return out


def ulira_interval(
    positive_rows: Sequence[Any],
    negative_rows: Sequence[Any],
    n_boot: int = ULIRA_N_BOOT,
    seed: int = 0,
    level: float = ULIRA_LEVEL,
    block: int | None = None,
) -> UliraInterval:
    """Percentile bootstrap interval of the two-sided best-threshold balanced accuracy.

    Decisions of one target model are correlated (one model, one set of shadows), so the
    bootstrap resamples whole target rows, then examples within each drawn row (a two-stage
    bootstrap). ``block`` says which rows travel together: positive row i and negative row i
    share their shadows and examples under the ``"pairs"`` / ``"paired"`` folds, and under
    ``"pairs"`` rows 2k and 2k + 1 are the targets of one pair; so ``block`` = b >= 1 draws
    groups of b consecutive indices, each with its positive and its negative rows (needs as
    many rows on both sides, a multiple of b), and ``block`` = 0 draws the two sides apart.
    Default: 1 when the sides have as many rows, else 0 (:func:`ulira_phi_interval` passes
    2 for ``"pairs"``).

    The point estimate is the statistic on all decisions (the ``ulira_in_sample`` metric:
    in-sample threshold and direction; not the cross-fitted ``ulira`` headline), and every
    resample chooses its own threshold and direction,
    so the interval carries the same optimism as the point; compare it with a null computed
    the same way (:func:`ulira_null`), never with 50.
    """
    pos, neg = _rows("positive_rows", positive_rows), _rows("negative_rows", negative_rows)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 10:
        raise ParameterError(f"n_boot must be an integer >= 10, got {n_boot!r}")
    level = _number("level", level)
    if not 0 < level < 1:
        raise ParameterError(f"level must lie in (0, 1), got {level}")
    if block is None:
        block = 1 if len(pos) == len(neg) else 0
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 0:
        raise ParameterError(f"block must be an integer >= 0, got {block!r}")
    if block and (len(pos) != len(neg) or len(pos) % block):
        raise ParameterError(f"block {block} needs as many positive as negative rows, a "
                             f"multiple of {block}; got {len(pos)} and {len(neg)}")
    point = best_threshold_accuracy(np.concatenate(pos), np.concatenate(neg))
    rng = np.random.default_rng(seed)
    def flat(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sizes = np.array([r.size for r in rows])
        return np.concatenate(rows), sizes, np.cumsum(sizes) - sizes

    # every row in one flat array: a draw of rows, then of examples within each drawn row,
    # is one vectorised gather (a loop over rows cost most of the audit stage)
    pos_flat, neg_flat = flat(pos), flat(neg)

    def draw(side: tuple[np.ndarray, np.ndarray, np.ndarray], picks: np.ndarray
             ) -> np.ndarray:
        """Flat indices of the examples drawn within the rows `picks`."""
        _, sizes, starts = side
        counts = sizes[picks]
        n = np.repeat(counts, counts)  # each drawn example's row size
        u = rng.random(n.size)
        u *= n
        within = u.astype(np.int64)  # the floor: u >= 0
        np.minimum(within, n - 1, out=within)
        within += np.repeat(starts[picks], counts)
        return within

    draws = []
    while len(draws) < n_boot:
        if block:
            groups = rng.integers(0, len(pos) // block, len(pos) // block)
            picks = (groups[:, None] * block + np.arange(block)[None, :]).ravel()
            p, n = draw(pos_flat, picks), draw(neg_flat, picks)
        else:
            p = draw(pos_flat, rng.integers(0, len(pos), len(pos)))
            n = draw(neg_flat, rng.integers(0, len(neg), len(neg)))
        if p.size and n.size:  # a resample of empty rows only has no statistic
            draws.append((p, n))
    stats = _resampled_ks(pos_flat[0], neg_flat[0], draws)
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return UliraInterval(point=point, low=float(low), high=float(high), level=level,
                         n_boot=int(n_boot), seed=int(seed), n_positive_rows=len(pos),
                         n_negative_rows=len(neg), block=int(block))


def ulira_phi_interval(
    unlearned_phi: np.ndarray,
    unlearned_mask: np.ndarray,
    retrained_phi: np.ndarray,
    n_boot: int = ULIRA_N_BOOT,
    seed: int = 0,
    level: float = ULIRA_LEVEL,
    variance: str = DEFAULT_VARIANCE,
    min_in_per_example: int = DEFAULT_MIN_IN_PER_EXAMPLE,
    min_std: float = 1e-6,
    folds: str = DEFAULT_FOLDS,
) -> UliraInterval:
    """:func:`ulira_interval` of the leave-one-out attack's rows
    (:func:`classunlearn.audit.ulira.ulira_rows`, the same arguments as
    ``ulira_leave_one_out``; the point equals its ``accuracy_best``). Under ``"pairs"`` the
    two targets of a pair are resampled together (block 2)."""
    pos, neg, folds = ulira_rows(unlearned_phi, unlearned_mask, retrained_phi,
                                 variance=variance, min_in_per_example=min_in_per_example,
                                 min_std=min_std, folds=folds)
    block = 2 if folds == "pairs" else (1 if len(pos) == len(neg) else 0)
    return ulira_interval(pos, neg, n_boot=n_boot, seed=seed, level=level, block=block)


def ulira_null(
    retrain_replay_phi: np.ndarray,
    unlearned_mask: np.ndarray,
    retrained_phi: np.ndarray,
    n_boot: int = ULIRA_N_BOOT,
    seed: int = 0,
    level: float = ULIRA_LEVEL,
    **options: Any,
) -> UliraInterval:
    """The null of the U-LiRA verdict: the interval of the same attack when the method
    replayed on the shadow originals is ``retrain`` (``retrain_replay_phi``, N x |D_f|), on
    the same shadow sets (``unlearned_mask``, ``retrained_phi``) with the same options.
    In the bench that is the ``retrain`` method's replay of the same study seed; in a
    single-checkpoint audit a ``retrain`` replay unit on the same shadows."""
    return ulira_phi_interval(retrain_replay_phi, unlearned_mask, retrained_phi,
                              n_boot=n_boot, seed=seed, level=level, **options)


def _interval(name: str, value: UliraInterval | Mapping[str, Any]) -> tuple[float, float, float]:
    get = value.get if isinstance(value, Mapping) else lambda k: getattr(value, k)
    try:
        out = (float(get("point")), float(get("low")), float(get("high")))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ParameterError(f"{name} must be a UliraInterval or a mapping with point, low "
                             "and high") from None
    if not all(math.isfinite(v) for v in out) or not out[1] <= out[2]:
        raise ParameterError(f"{name} must have finite point, low <= high, got {out}")
    return out


def ulira_verdict(interval: UliraInterval | Mapping[str, Any],
                  null: UliraInterval | Mapping[str, Any]) -> Verdict:
    """The method's interval against the null's (both from :func:`ulira_interval`, or
    mappings with ``point``, ``low``, ``high``).

    "distinguishable" iff the method's lower end > the null's upper end (the two intervals
    do not overlap, the method above); "indistinguishable" iff the method's point estimate
    <= the null's upper end; "inconclusive" otherwise (point above the null's interval, but
    the method's interval reaches into it).
    """
    point, low, high = _interval("interval", interval)
    n_point, n_low, n_high = _interval("null", null)
    rule = ("distinguishable iff the lower end of the attack's interval is above the upper "
            "end of the null's (the attack on a retrain replay, same shadows); "
            "indistinguishable iff its point estimate is at most the null's upper end; else "
            "inconclusive")
    numbers = {"point": point, "low": low, "high": high, "null_point": n_point,
               "null_low": n_low, "null_high": n_high}
    for key in ("level", "n_boot", "seed"):
        v = interval.get(key) if isinstance(interval, Mapping) else getattr(interval, key, None)
        if v is not None:
            numbers[key] = v
    if low > n_high:
        outcome, passed = "distinguishable", False
    elif point <= n_high:
        outcome, passed = "indistinguishable", True
    else:
        outcome, passed = "inconclusive", None
    return Verdict("ulira", outcome, passed, rule, numbers)


# --------------------------------------------------------------------------- all three


def verdict_record(v: Verdict) -> dict[str, Any]:
    """A verdict as stored in ``record.json``, ``audit --json`` and the bench's
    ``results.json``: ``to_dict()`` plus ``verdict`` (= ``outcome``, the key those documents
    use)."""
    return {"attack": v.attack, "verdict": v.outcome, **{k: x for k, x in v.to_dict().items()
                                                          if k != "attack"}}


def method_verdicts(
    metrics: Mapping[str, Any],
    ref_acc_forget: Sequence[float],
    ref_test_acc_retain: Sequence[float],
    interval: UliraInterval | Mapping[str, Any] | None = None,
    null: UliraInterval | Mapping[str, Any] | None = None,
    n_references: int | None = None,
) -> list[Verdict]:
    """The verdicts of one audited model, in ``ATTACKS`` order: accuracy (``acc_forget``,
    ``test_acc_retain`` of `metrics` against the references'), MIA-NN (``mia_nn_z`` of
    `metrics`, M = `n_references`, default the number of reference accuracies), and
    U-LiRA when both its `interval` and its `null` are given. An attack whose numbers are
    missing from `metrics` gets no verdict. The one place the bench, ``audit`` and
    ``forget`` turn numbers into verdicts."""
    out = []
    if metrics.get("acc_forget") is not None and metrics.get("test_acc_retain") is not None:
        out.append(accuracy_verdict(metrics["acc_forget"], metrics["test_acc_retain"],
                                    ref_acc_forget, ref_test_acc_retain))
    if metrics.get("mia_nn") is not None:
        m = len(ref_acc_forget) if n_references is None else n_references
        out.append(mia_nn_verdict(metrics.get("mia_nn_z"), m))
    if interval is not None and null is not None:
        out.append(ulira_verdict(interval, null))
    return out
