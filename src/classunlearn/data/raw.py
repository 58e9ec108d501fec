"""The plain arrays every loader returns, before normalisation and splitting."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawArrays:
    """Train and test arrays as a loader found them.

    ``x_*`` are float32 arrays shaped ``(N, *input_shape)``: images as ``(N, C, H, W)``
    scaled to [0, 1], 1-D signals as ``(N, C, L)``, vectors as ``(N, D)``. ``y_*`` are
    int64 labels in ``[0, len(class_names))``. ``files`` lists the absolute paths of every
    file the loader read, in the order read (empty for data generated in memory); the
    dataset fingerprint (:mod:`classunlearn.data.fingerprint`) hashes exactly these.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str  # where the data came from, for `classunlearn datasets` and sidecars
    files: tuple[str, ...] = ()
