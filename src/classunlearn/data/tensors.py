"""The ``tensors`` dataset: in-memory data of the Python API, saved so that bench units load it.

``cu.audit`` (U-LiRA) and ``cu.bench`` run the study's units, which load their data by dataset
name (``load_dataset(name, data_dir)``), in this process or in worker processes. The user's
tensors are therefore written to a ``.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``,
``num_classes``) and loaded back *exactly as given*: unlike the ``npz`` dataset, nothing is
scaled, reshaped, relabelled or standardised, and the class count is the model's output width
(classes without samples included), so the units see the very tensors the API was given.

:func:`save_tensors` writes the archive deterministically (fixed member order and zip
timestamps, no compression): the same tensors always give the same bytes, hence the same
dataset fingerprint and the same unit keys, wherever and whenever they are written. The file
is named by a hash of its content and written atomically (temp file + rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from classunlearn.data.raw import RawArrays
from classunlearn.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test", "num_classes")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def as_arrays(x_train, y_train, x_test, y_test, num_classes: int) -> dict[str, np.ndarray]:
    """The archive's arrays: inputs as float32, labels as int64, the class count."""
    return {"x_train": np.ascontiguousarray(np.asarray(x_train, dtype=np.float32)),
            "y_train": np.ascontiguousarray(np.asarray(y_train, dtype=np.int64)),
            "x_test": np.ascontiguousarray(np.asarray(x_test, dtype=np.float32)),
            "y_test": np.ascontiguousarray(np.asarray(y_test, dtype=np.int64)),
            "num_classes": np.asarray(int(num_classes), dtype=np.int64)}


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the arrays' names, dtypes, shapes and bytes."""
    h = hashlib.sha256(b"classunlearn-tensors-v1\n")
    for key in KEYS:
        a = arrays[key]
        h.update(f"{key} {a.dtype.str} {a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_tensors(folder: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write :func:`as_arrays` to ``folder/data-<content hash>.npz`` (kept if already
    there); return its path."""
    folder = Path(folder)
    path = folder / f"data-{content_sha256(arrays)[:20]}.npz"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".data-", suffix=".tmp", dir=folder)
    except OSError as e:
        raise DataError(f"cannot write the data to {folder} ({e.strerror or e}); pass a "
                        "writable folder as cache=") from None
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
            for key in KEYS:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arrays[key], allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_tensors(path: Path) -> RawArrays:
    """Read an archive written by :func:`save_tensors`, exactly as saved (no pickles)."""
    path = Path(path)
    try:
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as archive:
            missing = [k for k in KEYS if k not in archive.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)}: the 'tensors' dataset "
                                "reads archives written by the Python API (cu.audit, "
                                "cu.bench); for your own .npz use the 'npz' dataset")
            a = {k: archive[k] for k in KEYS}
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - not a zip, truncated, pickled members
        raise DataError(f"cannot read {path} as a 'tensors' archive ({type(e).__name__}: "
                        f"{e}); it is rewritten by the next cu.audit or cu.bench call "
                        "when removed") from None
    k = int(a["num_classes"])
    for part in ("train", "test"):
        x, y = a[f"x_{part}"], a[f"y_{part}"]
        if x.dtype != np.float32 or y.dtype != np.int64 or y.ndim != 1:
            raise DataError(f"{path}: x_{part} must be float32 and y_{part} int64 (N,); "
                            "write the archive with classunlearn.data.tensors.save_tensors")
    return RawArrays(a["x_train"], a["y_train"], a["x_test"], a["y_test"],
                     [str(c) for c in range(k)], f"tensors {path.name} (Python API data)",
                     (str(path.resolve()),))


def tensors_files(path: Path) -> tuple[str, ...]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"tensors file not found: {path}; the Python API writes it "
                        "(cu.audit, cu.bench)")
    return (str(path.resolve()),)
