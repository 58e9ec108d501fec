"""Accuracies and total-variation distance (docs/readings.md section 5), over logits only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import softmax

from classunlearn.errors import ParameterError


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def accuracy(logits, labels) -> float:
    """Top-1 accuracy in percent; nan for an empty set (there is nothing to measure)."""
    logits, labels = _np(logits), _np(labels)
    if len(labels) == 0:
        return float("nan")
    if len(logits) != len(labels):
        raise ParameterError(f"{len(logits)} logit rows but {len(labels)} labels")
    return float((logits.argmax(1) == labels).mean() * 100)


def per_class_accuracy(logits, labels, num_classes: int) -> list[float]:
    """Accuracy in percent for each class (nan where the class has no sample)."""
    logits, labels = _np(logits), _np(labels)
    pred = logits.argmax(1)
    return [float((pred[labels == c] == c).mean() * 100) if (labels == c).any() else float("nan")
            for c in range(num_classes)]


def tv_distance(logits_a, logits_b) -> float:
    """Mean over samples of ½ Σ_c |p_a(c|x) − p_b(c|x)| (softmax of each), in [0, 1]."""
    a, b = _np(logits_a), _np(logits_b)
    if a.shape != b.shape:
        raise ParameterError(f"logits shaped {a.shape} and {b.shape} cannot be compared")
    if len(a) == 0:
        return float("nan")
    return float(0.5 * np.abs(softmax(a, axis=1) - softmax(b, axis=1)).sum(1).mean())


def tv_to_references(logits, reference_logits: Sequence) -> float:
    """TV distance to the *mean* output distribution of the references (docs/readings.md
    section 5)."""
    if len(reference_logits) == 0:
        raise ParameterError("TV distance needs at least one reference model")
    p = softmax(_np(logits), axis=1)
    q = np.mean([softmax(_np(r), axis=1) for r in reference_logits], axis=0)
    if p.shape != q.shape:
        raise ParameterError(f"logits shaped {p.shape} and references {q.shape} do not match")
    if len(p) == 0:
        return float("nan")
    return float(0.5 * np.abs(p - q).sum(1).mean())


def tv_between_distributions(p, q) -> float:
    """½ Σ |p − q| for two probability vectors (or rows, averaged)."""
    p, q = np.atleast_2d(_np(p)), np.atleast_2d(_np(q))
    return float(0.5 * np.abs(p - q).sum(1).mean())


def avg_gap(metrics: dict[str, float], reference: dict[str, float],
            keys: Sequence[str]) -> float:
    """Mean absolute difference to the retrained model over the given metric keys, skipping
    metrics that either side lacks (nan); nan when none is shared."""
    diffs = [abs(metrics[k] - reference[k]) for k in keys
             if k in metrics and k in reference
             and np.isfinite(metrics[k]) and np.isfinite(reference[k])]
    return float(np.mean(diffs)) if diffs else float("nan")
