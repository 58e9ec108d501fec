"""Input checks shared by the metric functions: one-line ParameterErrors, nothing else."""

from __future__ import annotations

from typing import Any

import numpy as np

from classunlearn.errors import ParameterError


def is_integral(arr: np.ndarray) -> bool:
    """True for integer arrays and for float arrays holding whole numbers only."""
    if np.issubdtype(arr.dtype, np.integer):
        return True
    return bool(np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))


def logit_matrix(name: str, value: Any) -> np.ndarray:
    """A finite (samples, classes) float array with at least two classes."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 2:
        raise ParameterError(
            f"{name} must be a 2-D array (samples, classes), got shape {arr.shape}"
        )
    if arr.shape[1] < 2:
        raise ParameterError(f"{name} must have at least 2 classes, got {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} contains NaN or infinite values")
    return arr
