"""Shared fixtures: one thread per test worker, no progress bars, small trained models."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("CLASSUNLEARN_PROGRESS", "0")
# file-hash cache of dataset fingerprints: never the user's ~/.cache during tests
os.environ.setdefault("CLASSUNLEARN_CACHE_DIR", tempfile.mkdtemp(prefix="cu-test-cache-"))

import io  # noqa: E402
import tarfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
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


# ------------------------------------------------------------------ CIFAR-10 extract

CIFAR_TAR = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg/cifar10-jpeg.tar.gz"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def cifar_extract(root: Path, train_per_class: int = 8, test_per_class: int = 6) -> str:
    """A few images per class of the shared CIFAR-10 JPEGs, or synthetic JPEGs in the same
    imagefolder layout when the archive is not at hand (CI). Returns which it wrote."""
    want = {("train", c): train_per_class for c in CLASSES}
    want.update({("test", c): test_per_class for c in CLASSES})
    if CIFAR_TAR.is_file():
        with tarfile.open(CIFAR_TAR) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 3 or want.get(parts[-3:-1], 0) <= 0:
                    continue
                want[parts[-3:-1]] -= 1
                target = root.joinpath(*parts[-3:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                if not any(want.values()):
                    return "cifar10"
    from PIL import Image

    rng = np.random.default_rng(0)
    for (split, c), n in want.items():
        folder = root / split / c
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(len(list(folder.glob("*.jpg"))), len(list(folder.glob("*.jpg"))) + n):
            base = np.full((32, 32, 3), 25 * CLASSES.index(c), np.uint8)
            pixels = np.clip(base + rng.integers(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="JPEG")
            (folder / f"{i:04d}.jpg").write_bytes(buf.getvalue())
    return "synthetic"


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar10")
    cifar_extract(root)
    return root
