"""Tests of the local-file dataset loaders (classunlearn.data.files).

Every fixture is written here, in ``tmp_path``, byte for byte in the format the real
dataset is published in (IDX headers, CIFAR "python version" pickles with bytes keys,
Tiny-ImageNet's folder tree and annotation file, plain ``.npz``), only tiny.
"""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from classunlearn.data.files import (
    load_cifar,
    load_idx,
    load_imagefolder,
    load_npz,
    safe_unpickle,
)
from classunlearn.errors import DataError

FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def expect_data_error(fn: Callable[[], object], *mentions: object) -> str:
    """Call ``fn``; it must raise DataError with a one-line message naming ``mentions``."""
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    for needle in mentions:
        assert str(needle) in message, f"{needle!s} not in: {message}"
    return message


# --------------------------------------------------------------------------------- IDX


def idx_images(pixels: np.ndarray) -> bytes:
    """An IDX3 image file: magic 0x00000803, big-endian N, rows, cols, then uint8 pixels."""
    n, rows, cols = pixels.shape
    return struct.pack(">IIII", 0x00000803, n, rows, cols) + pixels.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    """An IDX1 label file: magic 0x00000801, big-endian N, then uint8 labels."""
    return struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes()


def write_idx_set(directory: Path, n_train: int = 30, n_test: int = 12, gz: bool = False,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Write the four MNIST-style files (optionally gzipped, as on the official site)."""
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_STEMS[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_STEMS[1]: np.arange(n_train) % 10,
        IDX_STEMS[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_STEMS[3]: (np.arange(n_test) * 3) % 10,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        payload = idx_images(arr) if arr.ndim == 3 else idx_labels(arr)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / stem).write_bytes(payload)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("name", "subdir"),
    [("mnist", ""), ("mnist", "mnist"), ("mnist", "MNIST/raw"),
     ("fashion-mnist", ""), ("fashion-mnist", "fashion-mnist"),
     ("fashion-mnist", "FashionMNIST/raw")],
)
def test_idx_roundtrip(tmp_path: Path, name: str, subdir: str, gz: bool) -> None:
    arrays = write_idx_set(tmp_path / subdir if subdir else tmp_path, gz=gz)
    raw = load_idx(tmp_path, name)
    assert raw.x_train.shape == (30, 1, 28, 28) and raw.x_test.shape == (12, 1, 28, 28)
    assert raw.x_train.dtype == np.float32 and raw.x_test.dtype == np.float32
    assert raw.y_train.dtype == np.int64 and raw.y_test.dtype == np.int64
    assert raw.x_train.min() >= 0.0 and raw.x_train.max() <= 1.0
    np.testing.assert_allclose(raw.x_train[:, 0] * 255.0, arrays[IDX_STEMS[0]], atol=1e-3)
    np.testing.assert_allclose(raw.x_test[:, 0] * 255.0, arrays[IDX_STEMS[2]], atol=1e-3)
    np.testing.assert_array_equal(raw.y_train, arrays[IDX_STEMS[1]])
    np.testing.assert_array_equal(raw.y_test, arrays[IDX_STEMS[3]])
    assert len(raw.class_names) == 10
    if name == "mnist":
        assert raw.class_names == [str(i) for i in range(10)]
    else:
        assert raw.class_names[0] == "T-shirt/top" and raw.class_names[9] == "Ankle boot"
    assert raw.source.startswith("IDX files in ")


def test_idx_mixed_gz_and_plain(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=True)
    (tmp_path / f"{IDX_STEMS[3]}.gz").rename(tmp_path / "tmp.gz")
    (tmp_path / IDX_STEMS[3]).write_bytes(gzip.decompress((tmp_path / "tmp.gz").read_bytes()))
    assert len(load_idx(tmp_path, "mnist").y_test) == 12


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_missing_dir(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "nowhere"
    expect_data_error(lambda: load_idx(missing, name), "train-images-idx3-ubyte", missing,
                      "--data-dir")


def test_idx_empty_dir(tmp_path: Path) -> None:
    msg = expect_data_error(lambda: load_idx(tmp_path, "mnist"), "train-images-idx3-ubyte",
                            tmp_path, tmp_path / "MNIST" / "raw")
    assert msg.startswith("MNIST not found")


def test_idx_one_file_missing(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    (tmp_path / IDX_STEMS[3]).unlink()
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), tmp_path / IDX_STEMS[3])


@pytest.mark.parametrize("cut", [3, 10, 200, -1])
def test_idx_truncated(tmp_path: Path, cut: int) -> None:
    write_idx_set(tmp_path)
    path = tmp_path / IDX_STEMS[0]
    path.write_bytes(path.read_bytes()[:cut])
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), path)


def test_idx_truncated_gz(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=True)
    path = tmp_path / f"{IDX_STEMS[2]}.gz"
    path.write_bytes(path.read_bytes()[:-20])
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), path)


def test_idx_gz_that_is_not_gzip(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=True)
    path = tmp_path / f"{IDX_STEMS[1]}.gz"
    path.write_bytes(b"this is an html error page, not gzip")
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), path, "decompress")


def test_idx_too_long(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    path = tmp_path / IDX_STEMS[1]
    path.write_bytes(path.read_bytes() + b"\x00")
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), path)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    path = tmp_path / IDX_STEMS[0]
    data = bytearray(path.read_bytes())
    data[:4] = struct.pack(">I", 0x00000801)  # a label magic in an image file
    path.write_bytes(bytes(data))
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), path, "magic", "0x00000803")


def test_idx_swapped_files(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    images, labels = tmp_path / IDX_STEMS[2], tmp_path / IDX_STEMS[3]
    a, b = images.read_bytes(), labels.read_bytes()
    images.write_bytes(b)
    labels.write_bytes(a)
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), images, "magic")


def test_idx_count_mismatch(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    (tmp_path / IDX_STEMS[1]).write_bytes(idx_labels(np.zeros(29, dtype=np.uint8)))
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), tmp_path / IDX_STEMS[1],
                      "29 labels", "30 images")


def test_idx_wrong_image_size(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    path = tmp_path / IDX_STEMS[0]
    path.write_bytes(idx_images(np.zeros((30, 27, 27), dtype=np.uint8)))
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), path, "27x27", "28x28")


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    path = tmp_path / IDX_STEMS[3]
    path.write_bytes(idx_labels(np.full(12, 10, dtype=np.uint8)))
    expect_data_error(lambda: load_idx(tmp_path, "mnist"), path, "label 10")


def test_idx_unknown_name(tmp_path: Path) -> None:
    expect_data_error(lambda: load_idx(tmp_path, "kmnist"), "kmnist")


# ------------------------------------------------------------------------------- CIFAR

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                 b"horse", b"ship", b"truck"]


def py2_pickle(obj: object) -> bytes:
    """Pickle ``obj`` exactly as Python 2 + numpy wrote the CIFAR files (protocol 2).

    Python 2 ``str`` (here: ``bytes``) is a BINSTRING, and numpy arrays reference
    ``numpy.core.multiarray._reconstruct`` with a version-1 state tuple whose raw data is
    a BINSTRING; this cannot be produced by Python 3's pickler, so opcodes are written by
    hand. Supports dict, list, bytes, int and uint8 numpy arrays.
    """
    out = bytearray(b"\x80\x02")  # PROTO 2

    def emit(o: object) -> None:
        if isinstance(o, dict):
            out.extend(b"}")  # EMPTY_DICT
            if o:
                out.extend(b"(")  # MARK
                for k, v in o.items():
                    emit(k)
                    emit(v)
                out.extend(b"u")  # SETITEMS
        elif isinstance(o, list):
            out.extend(b"]")  # EMPTY_LIST
            if o:
                out.extend(b"(")
                for v in o:
                    emit(v)
                out.extend(b"e")  # APPENDS
        elif isinstance(o, bytes):
            if len(o) < 256:
                out.extend(b"U" + bytes([len(o)]) + o)  # SHORT_BINSTRING
            else:
                out.extend(b"T" + struct.pack("<i", len(o)) + o)  # BINSTRING
        elif isinstance(o, int):
            if 0 <= o < 256:
                out.extend(b"K" + bytes([o]))  # BININT1
            else:
                out.extend(b"J" + struct.pack("<i", o))  # BININT
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\n")  # GLOBAL
            out.extend(b"cnumpy\nndarray\n")
            emit(0)
            out.extend(b"\x85")  # TUPLE1
            emit(b"b")
            out.extend(b"\x87R")  # TUPLE3, REDUCE
            out.extend(b"(")  # state: (1, shape, dtype, is_fortran, rawdata)
            emit(1)
            out.extend(b"(")
            for dim in o.shape:
                emit(int(dim))
            out.extend(b"t")  # TUPLE
            out.extend(b"cnumpy\ndtype\n")
            emit(b"u1")
            emit(0)
            emit(1)
            out.extend(b"\x87R(")
            emit(3)
            emit(b"|")
            out.extend(b"NNN")
            emit(-1)
            emit(-1)
            emit(0)
            out.extend(b"tb")  # dtype state, BUILD
            out.extend(b"\x89")  # NEWFALSE: not fortran order
            emit(np.ascontiguousarray(o).tobytes())
            out.extend(b"tb")
        else:  # pragma: no cover - helper misuse
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")  # STOP
    return bytes(out)


def cifar_batch(n: int, num_classes: int, seed: int) -> dict[bytes, object]:
    """A batch dict with the published keys (bytes, as Python 2 wrote them)."""
    rng = np.random.default_rng(seed)
    batch: dict[bytes, object] = {
        b"batch_label": b"training batch 1 of 5",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    labels = [int(v) for v in rng.integers(0, num_classes, n)]
    if num_classes == 10:
        batch[b"labels"] = labels
    else:
        batch[b"fine_labels"] = labels
        batch[b"coarse_labels"] = [v // 5 for v in labels]
    return batch


def write_cifar(root: Path, num_classes: int, *, py2: bool = False, meta: bool = True,
                n: int = 6) -> dict[str, dict[bytes, object]]:
    """Write a tiny cifar-10-batches-py or cifar-100-python folder under ``root``."""
    dump = py2_pickle if py2 else (lambda obj: pickle.dumps(obj, protocol=2))
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta_name, meta_obj = "batches.meta", {b"num_cases_per_batch": 10000,
                                               b"label_names": CIFAR10_NAMES,
                                               b"num_vis": 3072}
    else:
        folder = root / "cifar-100-python"
        names = ["train", "test"]
        meta_name, meta_obj = "meta", {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate(names):
        batches[name] = cifar_batch(n if num_classes == 10 else 5 * n, num_classes, seed=i)
        (folder / name).write_bytes(dump(batches[name]))
    if meta:
        (folder / meta_name).write_bytes(dump(meta_obj))
    return batches


def test_py2_pickle_helper_matches_stdlib(tmp_path: Path) -> None:
    batch = cifar_batch(3, 10, seed=1)
    loaded = pickle.loads(py2_pickle(batch), encoding="bytes")  # trusted, test-made bytes
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"labels"] == batch[b"labels"]


@pytest.mark.parametrize("py2", [False, True])
@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("inside", [False, True])
def test_cifar_roundtrip(tmp_path: Path, num_classes: int, py2: bool, inside: bool) -> None:
    batches = write_cifar(tmp_path, num_classes, py2=py2)
    folder = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    raw = load_cifar(tmp_path / folder if inside else tmp_path, num_classes)
    train_names = ([f"data_batch_{i}" for i in range(1, 6)] if num_classes == 10
                   else ["train"])
    test_name = "test_batch" if num_classes == 10 else "test"
    key = b"labels" if num_classes == 10 else b"fine_labels"
    assert raw.x_train.shape == (30, 3, 32, 32) and raw.x_test.shape == (6 * (
        1 if num_classes == 10 else 5), 3, 32, 32)
    assert raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64
    assert raw.x_train.min() >= 0.0 and raw.x_train.max() <= 1.0
    data = np.concatenate([batches[n][b"data"] for n in train_names])
    # Row layout: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
    np.testing.assert_allclose(raw.x_train * 255.0, data.reshape(-1, 3, 32, 32), atol=1e-3)
    assert raw.x_train[0, 1, 0, 0] * 255 == pytest.approx(float(data[0, 1024]), abs=1e-3)
    expected_y = np.concatenate([batches[n][key] for n in train_names])
    np.testing.assert_array_equal(raw.y_train, expected_y)
    np.testing.assert_array_equal(raw.y_test, batches[test_name][key])
    if num_classes == 10:
        assert raw.class_names == [n.decode() for n in CIFAR10_NAMES]
    else:
        assert raw.class_names == [f"fine{i}" for i in range(100)]
    assert raw.source.endswith(folder)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_default_names_without_meta(tmp_path: Path, num_classes: int) -> None:
    write_cifar(tmp_path, num_classes, meta=False)
    names = load_cifar(tmp_path, num_classes).class_names
    assert len(names) == num_classes == len(set(names))
    assert names[0] == ("airplane" if num_classes == 10 else "apple")
    if num_classes == 100:
        assert names == sorted(names) and names[-1] == "worm"


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_missing_and_empty_dir(tmp_path: Path, num_classes: int) -> None:
    missing = tmp_path / "nope"
    expect_data_error(lambda: load_cifar(missing, num_classes), missing, "--data-dir",
                      "cifar.html")
    expect_data_error(lambda: load_cifar(tmp_path, num_classes), tmp_path,
                      "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")


def test_cifar_archive_not_extracted(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
    expect_data_error(lambda: load_cifar(tmp_path, 10), tmp_path / "cifar-10-python.tar.gz",
                      "tar -xzf")


def test_cifar_missing_batch(tmp_path: Path) -> None:
    write_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    path.unlink()
    expect_data_error(lambda: load_cifar(tmp_path, 10), path)


def test_cifar_wrong_keys(tmp_path: Path) -> None:
    write_cifar(tmp_path, 100)
    # A CIFAR-10 style batch (b"labels") where CIFAR-100 needs b"fine_labels".
    path = tmp_path / "cifar-100-python" / "train"
    path.write_bytes(pickle.dumps(cifar_batch(6, 10, seed=0), protocol=2))
    expect_data_error(lambda: load_cifar(tmp_path, 100), path, "fine_labels")


def test_cifar_str_keys_accepted(tmp_path: Path) -> None:
    write_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = cifar_batch(4, 10, seed=3)
    path.write_bytes(pickle.dumps({k.decode(): v for k, v in batch.items()}, protocol=2))
    assert len(load_cifar(tmp_path, 10).y_test) == 4


@pytest.mark.parametrize(
    ("data", "mention"),
    [(np.zeros((6, 3071), dtype=np.uint8), "(6, 3071)"),
     (np.zeros((6, 3, 32, 32), dtype=np.uint8), "(6, 3, 32, 32)"),
     (np.zeros((6, 3072), dtype=np.float32), "float32"),
     ([0] * 3072, "list")],
)
def test_cifar_wrong_data(tmp_path: Path, data: object, mention: str) -> None:
    write_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch = cifar_batch(6, 10, seed=0)
    batch[b"data"] = data
    path.write_bytes(pickle.dumps(batch, protocol=2))
    expect_data_error(lambda: load_cifar(tmp_path, 10), path, mention, "(N, 3072)")


@pytest.mark.parametrize(
    ("labels", "mention"),
    [([1, 2, 3], "3 entries"), ([0, 1, 2, 3, 4, 10], "label 10"), ([0] * 5 + [-1], "-1"),
     ([0.5] * 6, "non-integer"), (b"abcdef", "bytes")],
)
def test_cifar_bad_labels(tmp_path: Path, labels: object, mention: str) -> None:
    write_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = cifar_batch(6, 10, seed=0)
    batch[b"labels"] = labels
    path.write_bytes(pickle.dumps(batch, protocol=2))
    expect_data_error(lambda: load_cifar(tmp_path, 10), path, mention)


def test_cifar_not_a_dict(tmp_path: Path) -> None:
    write_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    expect_data_error(lambda: load_cifar(tmp_path, 10), path, "list")


def test_cifar_bad_meta(tmp_path: Path) -> None:
    write_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "batches.meta"
    path.write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    expect_data_error(lambda: load_cifar(tmp_path, 10), path, "label_names")


def test_cifar_bad_num_classes(tmp_path: Path) -> None:
    expect_data_error(lambda: load_cifar(tmp_path, 20), "20")


class _SystemCall:
    """Pickles as ``os.system(command)``: what a booby-trapped batch file would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


class _ExecCall:
    """Pickles as ``builtins.exec(source)``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (self.source,)


@pytest.mark.parametrize("kind", ["system", "exec"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_malicious_pickle_is_refused(tmp_path: Path, kind: str, protocol: int) -> None:
    write_cifar(tmp_path, 10)
    marker = tmp_path / "pwned"
    payload = (_SystemCall(f"touch {marker}") if kind == "system"
               else _ExecCall(f"open({str(marker)!r}, 'w').close()"))
    batch = cifar_batch(6, 10, seed=0)
    batch[b"batch_label"] = payload
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    msg = expect_data_error(lambda: load_cifar(tmp_path, 10), path, "refusing")
    assert ("system" in msg) if kind == "system" else ("exec" in msg)
    assert not marker.exists()


def test_safe_unpickle_accepts_py3_arrays_at_protocols_2_to_4() -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 3, 4):
        out = safe_unpickle(pickle.dumps({b"data": arr, "labels": [1, 2]}, protocol=protocol))
        assert isinstance(out, dict)
        np.testing.assert_array_equal(out[b"data"], arr)
        assert out["labels"] == [1, 2]


class _CodecCall:
    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return codecs.encode, ("abc", "rot13")


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(np.array([1, "a"], dtype=object), protocol=2),  # object array
        pickle.dumps(_CodecCall(), protocol=2),  # codecs.encode beyond latin-1
        pickle.dumps(np.int64(3), protocol=2),  # numpy scalar: not on the allow-list
        pickle.dumps(Path("/etc"), protocol=2),
        b"",
        b"not a pickle",
    ],
)
def test_safe_unpickle_refuses(payload: bytes) -> None:
    expect_data_error(lambda: safe_unpickle(payload))


# ------------------------------------------------------------------------ image folders


def save_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None
    Image.fromarray(pixels).save(path, format=fmt)


def write_imagefolder(root: Path, test_name: str = "test", size: int = 6,
                      ) -> dict[tuple[str, str], np.ndarray]:
    """A generic tree: root/train/<class>/*.png and root/<test_name>/<class>/*.png."""
    rng = np.random.default_rng(0)
    pixels = {}
    for split, count in (("train", 3), (test_name, 2)):
        for cls in ("cat", "ant", "bee"):
            for i in range(count):
                arr = rng.integers(0, 256, (size, size + 1, 3), dtype=np.uint8)
                save_image(root / split / cls / f"{cls}_{i}.png", arr)
                pixels[(split, f"{cls}_{i}")] = arr
    return pixels


def write_tiny(root: Path, words: bool = True) -> None:
    """A miniature Tiny-ImageNet-200: train/<wnid>/images, val/images + annotations."""
    rng = np.random.default_rng(1)
    wnids = ["n02099601", "n01443537", "n01629819"]
    for wnid in wnids:
        for i in range(4):
            save_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG",
                       rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{i}.JPEG\t0\t0\t7\t7\n" for i in range(4)))
    lines = []
    for i in range(6):
        save_image(root / "val" / "images" / f"val_{i}.JPEG",
                   rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        lines.append(f"val_{i}.JPEG\t{wnids[i % 3]}\t0\t0\t7\t7\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    save_image(root / "test" / "images" / "test_0.JPEG",  # unlabelled, must be ignored
               rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    if words:
        (root / "words.txt").write_text(
            "n00001740\tentity\n"
            "n01443537\tgoldfish, Carassius auratus\n"
            "n01629819\tEuropean fire salamander, Salamandra salamandra\n"
            "n02099601\tgolden retriever\n")


@pytest.mark.parametrize("test_name", ["test", "val"])
def test_imagefolder_roundtrip(tmp_path: Path, test_name: str) -> None:
    pixels = write_imagefolder(tmp_path, test_name)
    raw = load_imagefolder(tmp_path)
    assert raw.class_names == ["ant", "bee", "cat"]
    assert raw.x_train.shape == (9, 3, 6, 7) and raw.x_test.shape == (6, 3, 6, 7)
    assert raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64
    assert raw.x_train.min() >= 0.0 and raw.x_train.max() <= 1.0
    np.testing.assert_array_equal(raw.y_train, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(raw.y_test, [0, 0, 1, 1, 2, 2])
    # PNG is lossless: the first train image is ant_0, channels first.
    expected = pixels[("train", "ant_0")].transpose(2, 0, 1)
    np.testing.assert_allclose(raw.x_train[0] * 255.0, expected, atol=1e-3)
    assert raw.source.startswith("image folders in ")


def test_imagefolder_grayscale_and_jpeg_become_rgb(tmp_path: Path) -> None:
    save_image(tmp_path / "train" / "a" / "x.jpg", np.zeros((5, 5, 3), dtype=np.uint8))
    Image.fromarray(np.full((5, 5), 200, dtype=np.uint8)).save(tmp_path / "train" / "b.png")
    Image.fromarray(np.full((5, 5), 200, dtype=np.uint8)).save(
        tmp_path / "train" / "a" / "g.bmp")
    save_image(tmp_path / "test" / "a" / "y.jpeg", np.zeros((5, 5, 3), dtype=np.uint8))
    raw = load_imagefolder(tmp_path)
    assert raw.x_train.shape == (2, 3, 5, 5)
    assert raw.class_names == ["a"]


@pytest.mark.parametrize(("where", "name"), [("", "tinyimagenet"), ("tiny-imagenet-200",
                                                                     "tinyimagenet"),
                                             ("", "imagefolder")])
def test_tinyimagenet_roundtrip(tmp_path: Path, where: str, name: str) -> None:
    write_tiny(tmp_path / where if where else tmp_path)
    raw = load_imagefolder(tmp_path, name)
    assert raw.x_train.shape == (12, 3, 8, 8) and raw.x_test.shape == (6, 3, 8, 8)
    assert raw.x_train.dtype == np.float32 and raw.x_train.max() <= 1.0
    # classes sorted by wnid; names from words.txt (first synonym)
    assert raw.class_names == ["goldfish", "European fire salamander", "golden retriever"]
    np.testing.assert_array_equal(raw.y_train, np.repeat([0, 1, 2], 4))
    # val_i is annotated with wnids[i % 3] = n02099601 (2), n01443537 (0), n01629819 (1)
    np.testing.assert_array_equal(raw.y_test, [2, 0, 1, 2, 0, 1])
    assert raw.source.startswith("Tiny-ImageNet in ")


def test_tinyimagenet_without_words(tmp_path: Path) -> None:
    write_tiny(tmp_path, words=False)
    assert load_imagefolder(tmp_path, "tinyimagenet").class_names == [
        "n01443537", "n01629819", "n02099601"]


@pytest.mark.parametrize("name", ["imagefolder", "tinyimagenet"])
def test_imagefolder_missing_and_empty(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "absent"
    expect_data_error(lambda: load_imagefolder(missing, name), missing, "train")
    expect_data_error(lambda: load_imagefolder(tmp_path, name), tmp_path, "--data-dir")


def test_imagefolder_no_classes(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    expect_data_error(lambda: load_imagefolder(tmp_path), tmp_path / "train", "class")


def test_imagefolder_empty_class(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    (tmp_path / "train" / "dog").mkdir()
    expect_data_error(lambda: load_imagefolder(tmp_path), tmp_path / "train" / "dog",
                      "no images")


def test_imagefolder_no_test_split(tmp_path: Path) -> None:
    save_image(tmp_path / "train" / "a" / "x.png", np.zeros((4, 4, 3), dtype=np.uint8))
    expect_data_error(lambda: load_imagefolder(tmp_path), tmp_path / "test", tmp_path / "val")


def test_imagefolder_test_class_not_in_train(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    save_image(tmp_path / "test" / "dog" / "d.png", np.zeros((6, 7, 3), dtype=np.uint8))
    expect_data_error(lambda: load_imagefolder(tmp_path), tmp_path / "test" / "dog")


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00"])
def test_imagefolder_unreadable_image(tmp_path: Path, content: bytes) -> None:
    write_imagefolder(tmp_path)
    bad = tmp_path / "train" / "bee" / "bee_9.png"
    bad.write_bytes(content)
    expect_data_error(lambda: load_imagefolder(tmp_path), bad, "cannot read image")


def test_imagefolder_truncated_image(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    bad = tmp_path / "test" / "cat" / "cat_1.png"
    bad.write_bytes(bad.read_bytes()[:-30])
    expect_data_error(lambda: load_imagefolder(tmp_path), bad)


def test_imagefolder_mixed_sizes(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    odd = tmp_path / "test" / "bee" / "bee_big.png"
    save_image(odd, np.zeros((9, 9, 3), dtype=np.uint8))
    expect_data_error(lambda: load_imagefolder(tmp_path), odd, "9x9", "7x6")


def test_tinyimagenet_unknown_val_class(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    ann = tmp_path / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    expect_data_error(lambda: load_imagefolder(tmp_path, "tinyimagenet"), ann, "n99999999")


def test_tinyimagenet_bad_annotations(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    ann = tmp_path / "val" / "val_annotations.txt"
    ann.write_text("just-one-field\n")
    expect_data_error(lambda: load_imagefolder(tmp_path, "tinyimagenet"), ann, "line 1")
    ann.write_text("missing.JPEG\tn01443537\t0\t0\t1\t1\n")
    expect_data_error(lambda: load_imagefolder(tmp_path, "tinyimagenet"),
                      tmp_path / "val" / "images" / "missing.JPEG")
    ann.write_bytes(b"\xff\xfe\x00bad")
    expect_data_error(lambda: load_imagefolder(tmp_path, "tinyimagenet"), ann)


# --------------------------------------------------------------------------------- npz


def write_npz(path: Path, **arrays: object) -> Path:
    rng = np.random.default_rng(0)
    base: dict[str, object] = {
        "x_train": rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
        "y_train": np.arange(20) % 4,
        "x_test": rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8),
        "y_test": np.arange(8) % 4,
    }
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_npz_roundtrip_channels_last_uint8(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz")
    raw = load_npz(path)
    assert raw.x_train.shape == (20, 3, 8, 8) and raw.x_test.shape == (8, 3, 8, 8)
    assert raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64
    assert raw.x_train.min() >= 0.0 and raw.x_train.max() <= 1.0
    with np.load(path) as z:
        np.testing.assert_allclose(raw.x_train * 255.0, z["x_train"].transpose(0, 3, 1, 2),
                                   atol=1e-3)
    assert raw.class_names == ["0", "1", "2", "3"]
    assert raw.source == f"npz file {path}"


@pytest.mark.parametrize(
    ("x", "shape"),
    [(np.zeros((5, 7), dtype=np.float64), (5, 7)),
     (np.zeros((5, 6, 6), dtype=np.uint8), (5, 1, 6, 6)),
     (np.zeros((5, 3, 6, 6), dtype=np.float32), (5, 3, 6, 6)),
     (np.zeros((5, 6, 6, 1), dtype=np.float32), (5, 1, 6, 6))],
)
def test_npz_shapes(tmp_path: Path, x: np.ndarray, shape: tuple[int, ...]) -> None:
    path = write_npz(tmp_path / "d.npz", x_train=x, y_train=np.arange(5) % 2, x_test=x,
                     y_test=np.arange(5) % 2)
    raw = load_npz(path)
    assert raw.x_train.shape == shape and raw.x_test.shape == shape
    assert raw.x_train.dtype == np.float32


def test_npz_float_values_kept(tmp_path: Path) -> None:
    x = np.linspace(-3, 3, 40).reshape(10, 4)
    raw = load_npz(write_npz(tmp_path / "d.npz", x_train=x, y_train=np.arange(10) % 2,
                             x_test=x, y_test=np.arange(10) % 2))
    np.testing.assert_allclose(raw.x_train, x, rtol=1e-6)


def test_npz_labels_remapped(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", y_train=np.array([7, 3, -1, 7] * 5),
                     y_test=np.array([3, 12] * 4, dtype=np.uint8))
    raw = load_npz(path)
    assert raw.class_names == ["-1", "3", "7", "12"]
    np.testing.assert_array_equal(raw.y_train[:4], [2, 1, 0, 2])
    np.testing.assert_array_equal(raw.y_test[:2], [1, 3])
    assert raw.y_train.dtype == np.int64 and raw.y_test.dtype == np.int64


def test_npz_missing_file(tmp_path: Path) -> None:
    expect_data_error(lambda: load_npz(tmp_path / "none.npz"), tmp_path / "none.npz",
                      "np.savez")


def test_npz_missing_key(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", y_test=None)
    expect_data_error(lambda: load_npz(path), path, "y_test")


def test_npz_object_array(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz",
                     y_train=np.array([object()] * 20, dtype=object))
    expect_data_error(lambda: load_npz(path), path, "y_train", "object")


@pytest.mark.parametrize(
    ("override", "mention"),
    [({"x_train": np.zeros(20)}, "x_train"),
     ({"x_test": np.zeros((8, 2, 2, 2, 2))}, "x_test"),
     ({"y_train": np.zeros(19, dtype=int)}, "19 labels"),
     ({"y_test": np.zeros((8, 2), dtype=int)}, "y_test"),
     ({"y_train": np.zeros(20)}, "integer"),
     ({"x_test": np.full((8, 8, 8, 3), np.nan)}, "NaN"),
     ({"x_train": np.full((20, 4), 1e300)}, "x_train"),
     ({"x_test": np.zeros((8, 9, 8, 3), dtype=np.uint8)}, "same shape"),
     ({"x_train": np.array(["a"] * 20)}, "numeric")],
)
def test_npz_bad_arrays(tmp_path: Path, override: dict[str, np.ndarray], mention: str) -> None:
    path = write_npz(tmp_path / "d.npz", **override)
    expect_data_error(lambda: load_npz(path), path, mention)


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04truncated zip"])
def test_npz_not_an_archive(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    expect_data_error(lambda: load_npz(path), path)


def test_npz_single_npy(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    with path.open("wb") as fh:
        np.save(fh, np.zeros(3))
    expect_data_error(lambda: load_npz(path), path, ".npz")


# ----------------------------------------------------------------- property-based fuzzing


def only_data_error(fn: Callable[[], object]) -> None:
    """Run ``fn``; success or DataError (one line) are fine, any other exception fails."""
    try:
        fn()
    except DataError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(blob=st.binary(max_size=400), which=st.sampled_from(range(4)), gz=st.booleans())
def test_fuzz_idx_random_bytes(blob: bytes, which: int, gz: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_idx_set(root, n_train=3, n_test=2, gz=gz)
        (root / (IDX_STEMS[which] + (".gz" if gz else ""))).write_bytes(blob)
        only_data_error(lambda: load_idx(root, "mnist"))


@FUZZ
@given(data=st.data(), which=st.sampled_from(range(4)), gz=st.booleans())
def test_fuzz_idx_truncated(data: st.DataObject, which: int, gz: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_idx_set(root, n_train=3, n_test=2, gz=gz)
        path = root / (IDX_STEMS[which] + (".gz" if gz else ""))
        full = path.read_bytes()
        cut = data.draw(st.integers(0, len(full) - 1))
        path.write_bytes(full[:cut])
        with pytest.raises(DataError):
            load_idx(root, "mnist")


def _valid_cifar_pickle(py2: bool) -> bytes:
    batch = cifar_batch(2, 10, seed=0)
    return py2_pickle(batch) if py2 else pickle.dumps(batch, protocol=2)


@FUZZ
@given(blob=st.binary(max_size=400))
def test_fuzz_cifar_random_bytes(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar(root, 10, n=2)
        (root / "cifar-10-batches-py" / "test_batch").write_bytes(blob)
        with pytest.raises(DataError):
            load_cifar(root, 10)
        only_data_error(lambda: safe_unpickle(blob))


@FUZZ
@given(data=st.data(), py2=st.booleans())
def test_fuzz_cifar_truncated(data: st.DataObject, py2: bool) -> None:
    full = _valid_cifar_pickle(py2)
    cut = data.draw(st.integers(0, len(full) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar(root, 10, n=2)
        (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(full[:cut])
        with pytest.raises(DataError):
            load_cifar(root, 10)


@FUZZ
@given(data=st.data(), py2=st.booleans())
def test_fuzz_cifar_mutated(data: st.DataObject, py2: bool) -> None:
    blob = bytearray(_valid_cifar_pickle(py2))
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar(root, 10, n=2)
        (root / "cifar-10-batches-py" / "test_batch").write_bytes(bytes(blob))
        only_data_error(lambda: load_cifar(root, 10))


@FUZZ
@given(blob=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg", ".bmp"]))
def test_fuzz_image_and_npz_random_bytes(blob: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_image(root / "train" / "a" / "ok.png", np.zeros((4, 4, 3), dtype=np.uint8))
        (root / "test" / "a").mkdir(parents=True)
        (root / "test" / "a" / f"fuzz{suffix}").write_bytes(blob)
        only_data_error(lambda: load_imagefolder(root))
        (root / "d.npz").write_bytes(blob)
        with pytest.raises(DataError):
            load_npz(root / "d.npz")
