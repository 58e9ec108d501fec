"""Tests of dataset content fingerprints and the file-hash cache (classunlearn.data.fingerprint).

The small datasets are written with the exact-format fixture builders of
``test_data_files.py``. Every test points the cache at ``tmp_path`` (CLASSUNLEARN_CACHE_DIR).
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_data_files import (
    IDX_STEMS,
    write_cifar,
    write_idx_set,
    write_imagefolder,
    write_npz,
    write_tiny,
)

from classunlearn.data import (
    dataset_files,
    dataset_files_sha256,
    dataset_fingerprint,
    load_dataset,
)
from classunlearn.data import fingerprint as fp
from classunlearn.errors import DataError


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(fp.CACHE_ENV, str(cache))
    return cache / "file-hashes.json"


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cache hashes of files written just now (the tests write their data just now)."""
    monkeypatch.setattr(fp, "_RACY_NS", 0)


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every file whose content the fingerprint code reads."""
    calls: list[str] = []
    real = fp._hash_file

    def counting(path: str) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(fp, "_hash_file", counting)
    return calls


def _idx(d: Path) -> None:
    write_idx_set(d)


def _idx_gz_torchvision(d: Path) -> None:
    write_idx_set(d / "FashionMNIST" / "raw", gz=True)


def _cifar10(d: Path) -> None:
    write_cifar(d, 10)


def _cifar100_no_meta(d: Path) -> None:
    write_cifar(d, 100, meta=False)


def _imagefolder(d: Path) -> None:
    write_imagefolder(d, test_name="val")


def _tiny(d: Path) -> None:
    write_tiny(d / "tiny-imagenet-200")


def _npz(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    write_npz(d / "data.npz")


# name, builder, number of files the loader reads
CASES: list[tuple[str, Callable[[Path], None], int]] = [
    ("mnist", _idx, 4),
    ("fashion-mnist", _idx_gz_torchvision, 4),
    ("cifar10", _cifar10, 7),
    ("cifar100", _cifar100_no_meta, 2),
    ("imagefolder", _imagefolder, 15),
    ("tinyimagenet", _tiny, 12 + 6 + 2),
    ("npz", _npz, 1),
]
IDS = [c[0] for c in CASES]


def _opened_under(root: Path, fn: Callable[[], object], monkeypatch: pytest.MonkeyPatch,
                  ) -> set[str]:
    """Absolute paths of the files under ``root`` that ``fn`` opens."""
    seen: set[str] = set()
    real_open = io.open

    def recording(file, *args, **kwargs):  # noqa: ANN001, ANN202 - mirrors open()
        if isinstance(file, (str, os.PathLike)):
            path = os.path.abspath(os.fspath(file))
            if path.startswith(str(root) + os.sep):
                seen.add(path)
        return real_open(file, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(io, "open", recording)
        m.setattr(builtins, "open", recording)
        fn()
    return seen


@pytest.mark.parametrize(("name", "build", "n_files"), CASES, ids=IDS)
def test_loader_reports_exactly_the_files_it_opens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
        build: Callable[[Path], None], n_files: int) -> None:
    data = tmp_path / "data"
    build(data)
    ds_box: list = []
    opened = _opened_under(data, lambda: ds_box.append(load_dataset(name, data)), monkeypatch)
    files = ds_box[0].files
    assert len(files) == n_files and all(os.path.isabs(f) for f in files)
    assert set(files) == opened
    assert dataset_files(name, data) == files  # discovery alone agrees with the loader
    assert dataset_files(name, str(data)) == files


@pytest.mark.parametrize(("name", "build", "n_files"), CASES, ids=IDS)
def test_same_files_same_fingerprint_and_moves_keep_it(
        tmp_path: Path, name: str, build: Callable[[Path], None], n_files: int) -> None:
    a = tmp_path / "a"
    build(a)
    first = dataset_fingerprint(name, a)
    assert len(first) == 64 and int(first, 16) >= 0
    assert dataset_fingerprint(name, str(a)) == first
    shutil.copytree(a, tmp_path / "copy")
    assert dataset_fingerprint(name, tmp_path / "copy") == first
    (tmp_path / "moved" / "deeper").mkdir(parents=True)
    shutil.move(str(a), tmp_path / "moved" / "deeper" / "b")
    assert dataset_fingerprint(name, tmp_path / "moved" / "deeper" / "b") == first


def test_dataset_name_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    assert dataset_fingerprint("mnist", tmp_path) != dataset_fingerprint("fashion-mnist", tmp_path)


@pytest.mark.parametrize(("name", "build", "n_files"), CASES, ids=IDS)
def test_rewrite_of_any_read_file_changes_fingerprint(
        tmp_path: Path, no_racy_window: None, name: str, build: Callable[[Path], None],
        n_files: int) -> None:
    build(tmp_path / "d")
    before = dataset_fingerprint(name, tmp_path / "d")
    for path in dataset_files(name, tmp_path / "d"):
        old = Path(path).read_bytes()
        st = os.stat(path)
        # Text files (Tiny's annotations, parsed to find the files) stay valid text.
        flipped = b" " if old.endswith(b"\n") else bytes([old[-1] ^ 0xFF])
        Path(path).write_bytes(old[:-1] + flipped)  # same size, new content
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # a later mtime
        assert dataset_fingerprint(name, tmp_path / "d") != before, path
        Path(path).write_bytes(old)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
        assert dataset_fingerprint(name, tmp_path / "d") == before, path


def test_same_size_rewrite_with_mtime_restored_is_detected_through_ctime(
        tmp_path: Path, no_racy_window: None, hash_calls: list[str]) -> None:
    write_idx_set(tmp_path)
    before = dataset_fingerprint("mnist", tmp_path)
    target = tmp_path / IDX_STEMS[0]
    st = os.stat(target)
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    time.sleep(0.05)  # past the filesystem's timestamp tick, so ctime moves
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # forge the old mtime back
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size, st.st_mtime_ns, st.st_ino)
    hash_calls.clear()
    assert dataset_fingerprint("mnist", tmp_path) != before
    assert hash_calls == [str(target)]  # only the changed file was read again


def test_cache_avoids_rereading_unchanged_files(
        tmp_path: Path, no_racy_window: None, hash_calls: list[str], cache_in_tmp: Path) -> None:
    write_tiny(tmp_path / "tiny")
    first = dataset_fingerprint("tinyimagenet", tmp_path / "tiny")
    assert len(hash_calls) == 20 and cache_in_tmp.is_file()
    hash_calls.clear()
    assert dataset_fingerprint("tinyimagenet", tmp_path / "tiny") == first
    assert dataset_files_sha256("tinyimagenet", tmp_path / "tiny")
    assert hash_calls == []
    entries = json.loads(cache_in_tmp.read_text())["files"]
    assert set(dataset_files("tinyimagenet", tmp_path / "tiny")) <= set(entries)


def test_files_changed_just_now_are_not_cached(tmp_path: Path, hash_calls: list[str]) -> None:
    # Default two-second window: a rewrite within the same timestamp tick would be invisible
    # to a (size, mtime, ctime, inode) check, so fresh files are hashed every time.
    write_idx_set(tmp_path)
    dataset_fingerprint("mnist", tmp_path)
    dataset_fingerprint("mnist", tmp_path)
    assert len(hash_calls) == 8


@pytest.mark.parametrize("garbage", [
    b"\x00\xff not json", b"", b"[]", b'{"version": 1, "files": []}',
    b'{"version": 99, "files": {}}',
    b'{"version": 1, "files": {"/x": [1, 2, 3, 4, "short"], "/y": "z"}}',
])
def test_corrupt_cache_is_ignored_and_rebuilt(
        tmp_path: Path, no_racy_window: None, cache_in_tmp: Path, garbage: bytes) -> None:
    write_cifar(tmp_path, 10)
    clean = dataset_fingerprint("cifar10", tmp_path)
    cache_in_tmp.write_bytes(garbage)
    assert dataset_fingerprint("cifar10", tmp_path) == clean
    rebuilt = json.loads(cache_in_tmp.read_text())
    assert rebuilt["version"] == 1 and len(rebuilt["files"]) == 7


def test_stale_cache_entry_is_not_trusted(
        tmp_path: Path, no_racy_window: None, cache_in_tmp: Path) -> None:
    write_idx_set(tmp_path)
    clean = dataset_fingerprint("mnist", tmp_path)
    data = json.loads(cache_in_tmp.read_text())
    for entry in data["files"].values():
        entry[0] += 1  # recorded size no longer matches the file
        entry[4] = "0" * 64
    cache_in_tmp.write_text(json.dumps(data))
    assert dataset_fingerprint("mnist", tmp_path) == clean


def test_unwritable_cache_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          ) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(fp.CACHE_ENV, str(blocker / "sub"))
    write_idx_set(tmp_path / "d")
    assert len(dataset_fingerprint("mnist", tmp_path / "d")) == 64


def test_files_sha256_are_content_hashes(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    got = dataset_files_sha256("imagefolder", tmp_path)
    assert list(got) == list(dataset_files("imagefolder", tmp_path))
    for path, digest in got.items():
        assert digest == hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_files_the_loader_ignores_do_not_matter(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    before = dataset_fingerprint("tinyimagenet", tmp_path)
    (tmp_path / "wnids.txt").write_text("changed\n")  # never read by the loader
    boxes = next((tmp_path / "train").glob("*/*_boxes.txt"))
    boxes.write_text("changed\n")
    (tmp_path / "test" / "images" / "test_0.JPEG").write_bytes(b"unlabelled, ignored")
    assert dataset_fingerprint("tinyimagenet", tmp_path) == before


def test_tree_changes_change_fingerprint(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    before = dataset_fingerprint("imagefolder", tmp_path)
    # Moving an image to another class folder relabels it: same bytes, other data.
    (tmp_path / "train" / "ant" / "ant_0.png").rename(tmp_path / "train" / "bee" / "ant_0.png")
    moved = dataset_fingerprint("imagefolder", tmp_path)
    assert moved != before
    shutil.copy(tmp_path / "train" / "bee" / "bee_0.png", tmp_path / "train" / "bee" / "x.png")
    assert dataset_fingerprint("imagefolder", tmp_path) not in (before, moved)
    (tmp_path / "train" / "bee" / "x.png").unlink()
    assert dataset_fingerprint("imagefolder", tmp_path) == moved


def test_npz_file_or_its_folder_same_fingerprint(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "data.npz")
    before = dataset_fingerprint("npz", path)
    assert dataset_fingerprint("npz", tmp_path) == before
    write_npz(path, y_train=np.arange(20) % 5)
    after = dataset_fingerprint("npz", path)
    assert after != before and dataset_fingerprint("npz", tmp_path) == after


def test_errors_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        dataset_fingerprint("nope", tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        dataset_fingerprint("mnist", None)
    with pytest.raises(DataError, match="MNIST not found"):
        dataset_fingerprint("mnist", tmp_path)


def test_embedded_fingerprints_fast_stable_distinct() -> None:
    seen = {}
    for name in ("digits", "mnist-5k", "mnist1d"):
        start = time.perf_counter()
        first = dataset_fingerprint(name)
        assert time.perf_counter() - start < 5.0  # measured: well under 0.1 s each
        assert dataset_fingerprint(name) == first == dataset_fingerprint(name, "/ignored")
        seen[name] = first
    assert len(set(seen.values())) == 3
    assert dataset_files("digits") == () and dataset_files_sha256("mnist1d") == {}
    (csv,) = dataset_files("mnist-5k")  # test_data_core checks the loader reports it too
    assert csv.endswith(".csv.gz") and os.path.isfile(csv)


def test_mnist_5k_recipe_follows_its_data_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from classunlearn.data import embedded

    (real,) = embedded.mnist_5k_files()
    fake = tmp_path / "mnist_5k.csv.gz"
    shutil.copy(real, fake)
    monkeypatch.setattr(embedded, "mnist_5k_files", lambda: (str(fake),))
    same = dataset_fingerprint("mnist-5k")
    monkeypatch.undo()
    monkeypatch.setenv(fp.CACHE_ENV, str(tmp_path / "cache"))
    assert dataset_fingerprint("mnist-5k") == same  # a copy of the file: same data
    monkeypatch.setattr(embedded, "mnist_5k_files", lambda: (str(fake),))
    fake.write_bytes(fake.read_bytes() + b"\n")
    assert dataset_fingerprint("mnist-5k") != same


def test_embedded_recipes_follow_package_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {n: dataset_fingerprint(n) for n in ("mnist-5k", "mnist1d")}
    real = fp._versions
    monkeypatch.setattr(fp, "_versions", lambda *p: [v + ".post9" for v in real(*p)])
    for name, value in before.items():
        assert dataset_fingerprint(name) != value
