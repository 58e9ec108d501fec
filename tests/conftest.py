"""Shared fixtures: one thread per test worker, no progress bars, small trained models."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("CLASSUNLEARN_PROGRESS", "0")
# file-hash cache of dataset fingerprints: never the user's ~/.cache during tests
os.environ.setdefault("CLASSUNLEARN_CACHE_DIR", tempfile.mkdtemp(prefix="cu-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from classunlearn.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_models(digits):
    """An original MLP and two references retrained without class 3 (short recipe)."""
    from classunlearn.data import ForgetSplit
    from classunlearn.models import build_model
    from classunlearn.train import Recipe, train_model

    recipe = Recipe(epochs=15, batch_size=64, lr=0.05)
    split = ForgetSplit.make(digits, [3])
    original = train_model(build_model("mlp", digits.input_shape, 10, seed=0), digits.x_train,
                           digits.y_train, recipe, seed=0)
    xr, yr = split.part("train_retain")
    refs = [train_model(build_model("mlp", digits.input_shape, 10, seed=s), xr, yr, recipe,
                        seed=s)
            for s in (1, 2)]
    return split, original, refs
