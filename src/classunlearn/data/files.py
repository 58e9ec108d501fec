"""Loaders of real datasets stored as local files in their standard published formats.

Each loader reads the files exactly as they are distributed (MNIST-style IDX files, the
CIFAR "python version" pickles, image folder trees such as Tiny-ImageNet-200, and plain
``.npz`` archives) and returns :class:`RawArrays`. Nothing is ever downloaded.

Every problem with the files -- missing, truncated, corrupt, the wrong shape -- is raised
as a one-line :class:`DataError` that names the file or folder, says what was expected
and where to put the data, so the CLI can print it without a traceback. Low-level
exceptions (``OSError``, ``struct.error``, ``zlib.error``, ``EOFError``, pickle errors,
PIL errors) are converted and never escape.

The CIFAR pickles are read with :func:`safe_unpickle`, a restricted unpickler that can
only rebuild numpy arrays and plain containers, so a tampered batch file cannot run
code.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from classunlearn.data.raw import RawArrays
from classunlearn.errors import DataError

__all__ = [
    "cifar_files",
    "idx_files",
    "imagefolder_files",
    "load_cifar",
    "load_idx",
    "load_imagefolder",
    "load_npz",
    "npz_files",
    "safe_unpickle",
]


# ----------------------------------------------------------------------------- helpers


def _one_line(message: str) -> str:
    """Collapse a message onto one line: the CLI prints errors as a single line."""
    return " ".join(message.split())


def _error(message: str) -> DataError:
    """Build a :class:`DataError` whose message is guaranteed to be a single line."""
    return DataError(_one_line(message))


def _describe(exc: BaseException) -> str:
    """Short, one-line description of a low-level exception, for embedding in a message."""
    text = _one_line(str(exc))
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_bytes(path: Path, what: str) -> bytes:
    """Read a whole file, turning any OS-level failure into a :class:`DataError`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _error(f"cannot read {what} {path}: {_describe(exc)}") from None


def _missing_dir_note(data_dir: Path) -> str:
    """A hint appended to not-found messages when the data dir itself does not exist."""
    return "" if data_dir.is_dir() else f" ({data_dir} does not exist)"


def _abs(paths: list[Path]) -> tuple[str, ...]:
    """Absolute path strings (not symlink-resolved), in order, each once."""
    return tuple(dict.fromkeys(os.path.abspath(p) for p in paths))


# --------------------------------------------------------------------------------- IDX

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte data, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte data, 1 dimension
_IDX_SIDE = 28

_IDX_TRAIN_IMAGES = "train-images-idx3-ubyte"
_IDX_TRAIN_LABELS = "train-labels-idx1-ubyte"
_IDX_TEST_IMAGES = "t10k-images-idx3-ubyte"
_IDX_TEST_LABELS = "t10k-labels-idx1-ubyte"
_IDX_FILES = (_IDX_TRAIN_IMAGES, _IDX_TRAIN_LABELS, _IDX_TEST_IMAGES, _IDX_TEST_LABELS)

_FASHION_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# name -> (display title, torchvision folder name, class names, how to get the files)
_IDX_DATASETS: dict[str, tuple[str, str, list[str], str]] = {
    "mnist": (
        "MNIST", "MNIST", [str(i) for i in range(10)],
        ("download the four IDX files from the official MNIST site (torchvision's MNIST "
         "class also saves them, in DIR/MNIST/raw) and pass --data-dir DIR"),
    ),
    "fashion-mnist": (
        "Fashion-MNIST", "FashionMNIST", _FASHION_NAMES,
        ("download the four IDX files from github.com/zalandoresearch/fashion-mnist "
         "(torchvision's FashionMNIST class also saves them, in DIR/FashionMNIST/raw) and pass "
         "--data-dir DIR"),
    ),
}


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    """Return ``directory/stem`` or ``directory/stem.gz`` (plain preferred), if either exists."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_bytes(path: Path) -> bytes:
    """Read an IDX file, gunzipping it when its name ends in ``.gz``."""
    raw = _read_bytes(path, "IDX file")
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise _error(
            f"cannot decompress {path}: {_describe(exc)}; the download is corrupt or "
            "incomplete, download it again"
        ) from None


def _parse_idx(path: Path, data: bytes, magic: int, ndim: int, kind: str) -> tuple[int, ...]:
    """Check an IDX header (magic, dims, exact payload length) and return the dims."""
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _error(
            f"{path} is truncated: {len(data)} bytes, but an IDX {kind} header alone needs "
            f"{header}; download the file again"
        )
    try:
        (found,) = struct.unpack(">I", data[:4])
        dims = struct.unpack(f">{ndim}I", data[4:header])
    except struct.error as exc:  # cannot happen after the length check; kept for safety
        raise _error(f"{path} has a malformed IDX header: {_describe(exc)}") from None
    if found != magic:
        raise _error(
            f"{path} is not an IDX {kind} file: magic number 0x{found:08x}, expected "
            f"0x{magic:08x}; check that the file is the right one and not corrupt"
        )
    expected = header + math.prod(dims)
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise _error(
            f"{path} is {state}: {len(data)} bytes, but its header (dims {list(dims)}) "
            f"implies {expected}; download the file again"
        )
    return tuple(int(d) for d in dims)


def _read_idx_images(path: Path) -> np.ndarray:
    """Read an IDX3 image file into float32 ``(N, 1, 28, 28)`` in [0, 1]."""
    data = _read_idx_bytes(path)
    n, rows, cols = _parse_idx(path, data, _IDX_IMAGES_MAGIC, 3, "image")
    if n == 0:
        raise _error(f"{path} holds no images (count 0 in its header); download it again")
    if (rows, cols) != (_IDX_SIDE, _IDX_SIDE):
        raise _error(
            f"{path} holds {rows}x{cols} images, expected {_IDX_SIDE}x{_IDX_SIDE}; "
            "use the original MNIST/Fashion-MNIST files"
        )
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16)
    return (pixels.reshape(n, 1, rows, cols).astype(np.float32) / 255.0).astype(np.float32)


def _read_idx_labels(path: Path, num_classes: int) -> np.ndarray:
    """Read an IDX1 label file into int64 ``(N,)``, checking every label is a valid class."""
    data = _read_idx_bytes(path)
    (n,) = _parse_idx(path, data, _IDX_LABELS_MAGIC, 1, "label")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    if n and int(labels.max()) >= num_classes:
        raise _error(
            f"{path} has label {int(labels.max())}, expected labels 0..{num_classes - 1}; "
            "the file is corrupt or from another dataset"
        )
    return labels


def _idx_layout(data_dir: Path, name: str) -> tuple[Path, dict[str, Path]]:
    """The folder :func:`load_idx` reads and its four files (stem -> path), or a DataError."""
    data_dir = Path(data_dir)
    spec = _IDX_DATASETS.get(name)
    if spec is None:
        raise _error(f"unknown IDX dataset {name!r}: expected one of {', '.join(_IDX_DATASETS)}")
    title, torch_name, _, howto = spec
    dirs = [data_dir, data_dir / name, data_dir / torch_name / "raw"]
    where = " or ".join(str(d) for d in dirs)
    chosen = next((d for d in dirs if _find_idx_file(d, _IDX_TRAIN_IMAGES) is not None), None)
    if chosen is None:
        raise _error(
            f"{title} not found: expected {_IDX_TRAIN_IMAGES}[.gz] in {where}"
            f"{_missing_dir_note(data_dir)}; {howto}"
        )
    paths: dict[str, Path] = {}
    for stem in _IDX_FILES:
        found = _find_idx_file(chosen, stem)
        if found is None:
            raise _error(
                f"{title} incomplete: {chosen / stem}[.gz] is missing (all four of "
                f"{', '.join(_IDX_FILES)} must be in {chosen}); {howto}"
            )
        paths[stem] = found
    return chosen, paths


def idx_files(data_dir: Path, name: str) -> tuple[str, ...]:
    """Absolute paths of the four IDX files :func:`load_idx` reads (without reading them)."""
    _, paths = _idx_layout(data_dir, name)
    return _abs([paths[stem] for stem in _IDX_FILES])


def load_idx(data_dir: Path, name: str) -> RawArrays:
    """Load MNIST or Fashion-MNIST from the four IDX files, gzipped or not.

    The files are looked for in ``data_dir``, then ``data_dir/<name>``, then
    ``data_dir/<Name>/raw`` (torchvision's layout, e.g. ``MNIST/raw``,
    ``FashionMNIST/raw``). Headers are parsed and checked here (magic number, 28x28
    images, exact payload length, as many labels as images) so a truncated download is
    reported clearly instead of producing garbage arrays.

    Returns float32 images ``(N, 1, 28, 28)`` in [0, 1] and int64 labels.
    """
    chosen, paths = _idx_layout(data_dir, name)
    class_names = _IDX_DATASETS[name][2]
    splits = []
    for images_stem, labels_stem in ((_IDX_TRAIN_IMAGES, _IDX_TRAIN_LABELS),
                                     (_IDX_TEST_IMAGES, _IDX_TEST_LABELS)):
        x = _read_idx_images(paths[images_stem])
        y = _read_idx_labels(paths[labels_stem], len(class_names))
        if len(x) != len(y):
            raise _error(
                f"{paths[labels_stem]} has {len(y)} labels but {paths[images_stem]} has "
                f"{len(x)} images; expected one label per image, download both again"
            )
        splits.append((x, y))
    (x_train, y_train), (x_test, y_test) = splits
    return RawArrays(x_train, y_train, x_test, y_test, list(class_names),
                     f"IDX files in {chosen}", _abs([paths[stem] for stem in _IDX_FILES]))


# ------------------------------------------------------------------------ safe unpickle


def _load_reconstruct() -> Callable[..., Any]:
    """numpy's array-rebuilding function, from wherever this numpy version keeps it.

    Imported from the real module, never via ``numpy.core`` (deprecated in numpy 2,
    importing it warns), even though python-2 pickles name ``numpy.core.multiarray``.
    """
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 1.26 only has numpy.core
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _latin1_encode(obj: object, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` as python-3 protocol-2 pickles use it for bytes.

    Those pickles store ``bytes`` as ``_codecs.encode(text, "latin1")``; only that exact
    use is allowed, not arbitrary codecs.
    """
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("codecs.encode is only allowed as encode(str, 'latin1')")
    return obj.encode("latin1")


# (module, name) found in a pickle -> what it may resolve to. This is everything a numpy
# array pickled by python 2 (numpy.core...) or python 3 at protocols 2-4 refers to.
_PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _load_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _load_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build numpy arrays and plain python containers."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only allow-listed globals; anything else (os.system, exec...) is refused."""
        target = _PICKLE_ALLOWED.get((module, name))
        if target is None:
            raise DataError(_one_line(
                f"refusing to unpickle {module}.{name}: only numpy arrays, lists, dicts, "
                "strings and numbers are allowed"
            ))
        return target

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids never occur in dataset pickles; refuse them."""
        del pid
        raise DataError("refusing to unpickle a persistent id: not a plain data pickle")


def _reject_object_arrays(obj: object) -> None:
    """Walk containers (iteratively: pickles may be deep or cyclic); refuse object arrays."""
    stack = [obj]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise DataError("refusing a pickled numpy array of dtype object: "
                                "only numeric arrays are allowed")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)


def safe_unpickle(data: bytes) -> object:
    """Unpickle untrusted bytes that should hold only numpy arrays and plain containers.

    ``pickle.loads`` would run whatever callable a tampered file names; this unpickler
    resolves only the few globals a numpy array needs (``_reconstruct``, ``ndarray``,
    ``dtype`` and ``_codecs.encode`` restricted to latin-1) and refuses everything else.
    Python-2 strings come back as ``bytes`` (``encoding="bytes"``), as the CIFAR files
    need. Object arrays are refused. Any failure is a one-line :class:`DataError`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"safe_unpickle needs bytes, got {type(data).__name__}")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted input: any parse failure is bad data
        raise DataError(f"not a valid pickle ({_describe(exc)})") from None
    _reject_object_arrays(obj)
    return obj


# ------------------------------------------------------------------------------- CIFAR

_CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]

_CIFAR100_NAMES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest",
    "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower",
    "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit",
    "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
    "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train",
    "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_PIXELS = 3 * 32 * 32


class _CifarSpec:
    """File names and pickle keys of one CIFAR variant, as published."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        if num_classes == 10:
            self.title = "CIFAR-10"
            self.folder = "cifar-10-batches-py"
            self.archive = "cifar-10-python.tar.gz"
            self.train = [f"data_batch_{i}" for i in range(1, 6)]
            self.test = ["test_batch"]
            self.meta = "batches.meta"
            self.label_key = "labels"
            self.names_key = "label_names"
            self.default_names = _CIFAR10_NAMES
            self.listing = "data_batch_1..5, test_batch, batches.meta"
        else:
            self.title = "CIFAR-100"
            self.folder = "cifar-100-python"
            self.archive = "cifar-100-python.tar.gz"
            self.train = ["train"]
            self.test = ["test"]
            self.meta = "meta"
            self.label_key = "fine_labels"
            self.names_key = "fine_label_names"
            self.default_names = _CIFAR100_NAMES
            self.listing = "train, test, meta"

    def howto(self, data_dir: Path) -> str:
        """Where to get the files and where to put them."""
        return (f"download {self.archive} from {_CIFAR_URL}, extract it into {data_dir} "
                "and pass --data-dir")


def _str_keys(obj: dict) -> dict[str, Any]:
    """The dict with bytes keys (python-2 pickles) decoded to str; other keys dropped."""
    out: dict[str, Any] = {}
    for raw_key, value in obj.items():
        key = raw_key.decode("latin-1") if isinstance(raw_key, bytes) else raw_key
        if isinstance(key, str):
            out[key] = value
    return out


def _unpickle_dict(path: Path, expected: str) -> dict[str, Any]:
    """Read a pickle file safely and check that it is a dict; keys come back as str."""
    try:
        obj = safe_unpickle(_read_bytes(path, "CIFAR file"))
    except DataError as exc:
        raise _error(
            f"{path} is not a valid CIFAR file ({exc}); expected {expected}; the file is "
            "corrupt or not genuine, download it again"
        ) from None
    if not isinstance(obj, dict):
        raise _error(f"{path} holds a pickled {type(obj).__name__}, expected {expected}")
    return _str_keys(obj)


def _cifar_labels(path: Path, key: str, raw: object, n: int, num_classes: int) -> np.ndarray:
    """Validate a CIFAR label list (python ints or an integer array) against ``n`` images."""
    expected = f"{key} as a list of {n} integers in 0..{num_classes - 1}"
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise _error(f"{path}: {key} is a {raw.dtype} array of shape {raw.shape}, "
                         f"expected {expected}")
        labels = raw.astype(np.int64)
    elif isinstance(raw, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise _error(f"{path}: {key} holds non-integer values, expected {expected}")
        if any(v < 0 or v >= num_classes for v in raw):
            bad = next(v for v in raw if v < 0 or v >= num_classes)
            raise _error(f"{path}: {key} has label {bad}, expected {expected}")
        labels = np.asarray(raw, dtype=np.int64).reshape(-1)
    else:
        raise _error(f"{path}: {key} is a {type(raw).__name__}, expected {expected}")
    if len(labels) != n:
        raise _error(f"{path}: {key} has {len(labels)} entries but data has {n} rows; "
                     f"expected {expected}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise _error(f"{path}: {key} has label {bad}, expected {expected}")
    return labels


def _load_cifar_batch(path: Path, spec: _CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """Load and validate one CIFAR batch: ``data`` (N, 3072) uint8 plus N labels."""
    expected = f"a pickled dict with keys data (N x 3072 uint8) and {spec.label_key}"
    batch = _unpickle_dict(path, expected)
    missing = [k for k in ("data", spec.label_key) if k not in batch]
    if missing:
        found = ", ".join(sorted(batch)) or "none"
        raise _error(f"{path} lacks key(s) {', '.join(missing)} (has: {found}); expected "
                     f"{expected}; is this a {spec.title} file?")
    data = batch["data"]
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != _CIFAR_PIXELS or data.shape[0] == 0):
        got = (f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else f"a {type(data).__name__}")
        raise _error(f"{path}: data is {got}, expected a uint8 array of shape (N, 3072) "
                     "with N > 0")
    labels = _cifar_labels(path, spec.label_key, batch[spec.label_key], data.shape[0],
                           spec.num_classes)
    images = data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32, copy=False), labels


def _cifar_names(path: Path, spec: _CifarSpec) -> list[str]:
    """Class names from the meta file, or the published defaults when it is absent."""
    if not path.is_file():
        return list(spec.default_names)
    expected = f"a pickled dict with {spec.names_key}: a list of {spec.num_classes} names"
    meta = _unpickle_dict(path, expected)
    raw = meta.get(spec.names_key)
    if not isinstance(raw, (list, tuple)) or len(raw) != spec.num_classes or not all(
            isinstance(v, (bytes, str)) for v in raw):
        raise _error(f"{path}: {spec.names_key} is missing or malformed, expected {expected}; "
                     "delete the file to use the default names")
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in raw]


def _cifar_layout(data_dir: Path, num_classes: int) -> tuple[_CifarSpec, Path, list[Path]]:
    """The spec, folder and batch files (train, then test) :func:`load_cifar` reads."""
    data_dir = Path(data_dir)
    if num_classes not in (10, 100):
        raise _error(f"CIFAR has 10 or 100 classes, not {num_classes}")
    spec = _CifarSpec(num_classes)
    dirs = [data_dir, data_dir / spec.folder]
    root = next((d for d in dirs if (d / spec.train[0]).is_file()), None)
    if root is None:
        archive = next((d / spec.archive for d in dirs if (d / spec.archive).is_file()), None)
        if archive is not None:
            raise _error(f"{spec.title} not extracted: found {archive} but no {spec.folder} "
                         f"folder; run: tar -xzf {archive} -C {archive.parent}")
        raise _error(
            f"{spec.title} not found: expected {spec.folder}/ with {spec.listing} in "
            f"{data_dir}{_missing_dir_note(data_dir)}; {spec.howto(data_dir)}"
        )
    for file_name in spec.train + spec.test:
        if not (root / file_name).is_file():
            raise _error(f"{spec.title} incomplete: {root / file_name} is missing (expected "
                         f"{spec.listing} in {root}); {spec.howto(data_dir)}")
    return spec, root, [root / f for f in spec.train + spec.test]


def cifar_files(data_dir: Path, num_classes: int) -> tuple[str, ...]:
    """Absolute paths of the files :func:`load_cifar` reads: batches, then meta if present."""
    spec, root, batches = _cifar_layout(data_dir, num_classes)
    meta = root / spec.meta
    return _abs(batches + ([meta] if meta.is_file() else []))


def load_cifar(data_dir: Path, num_classes: int) -> RawArrays:
    """Load CIFAR-10 or CIFAR-100 from the official "python version" pickles.

    Looks for ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``,
    ``batches.meta``) or ``cifar-100-python`` (``train``, ``test``, ``meta``; fine labels)
    in ``data_dir`` itself or in its child of that name. The pickles are read with
    :func:`safe_unpickle` (never ``pickle.load``) and each batch is checked: N x 3072
    uint8 data and N labels in range. Class names come from the meta file, or the
    published defaults when it is missing.

    Returns float32 images ``(N, 3, 32, 32)`` in [0, 1] and int64 labels.
    """
    spec, root, batches = _cifar_layout(data_dir, num_classes)
    train = [_load_cifar_batch(root / f, spec) for f in spec.train]
    test = [_load_cifar_batch(root / f, spec) for f in spec.test]
    meta = root / spec.meta
    names = _cifar_names(meta, spec)
    read = batches + ([meta] if meta.is_file() else [])
    return RawArrays(
        np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
        np.concatenate([x for x, _ in test]), np.concatenate([y for _, y in test]),
        names, f"{spec.title} pickles in {root}", _abs(read),
    )


# ------------------------------------------------------------------------- image folders

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
_TINY_FOLDER = "tiny-imagenet-200"
_TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def _image_files(folder: Path) -> list[Path]:
    """All image files under ``folder`` (recursively, e.g. Tiny's ``<wnid>/images/``), sorted."""
    try:
        files = [p for p in folder.rglob("*")
                 if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()
                 and not p.name.startswith(".")]
    except OSError as exc:
        raise _error(f"cannot list {folder}: {_describe(exc)}") from None
    return sorted(files)


def class_order(names: list[str]) -> list[str]:
    """Class folder names in class-index order: numerically when every name is a decimal
    number (``1, 2, 10``, not ``1, 10, 2``: issue #26), else as text."""
    if names and all(n.isascii() and n.isdigit() for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return sorted(names)


def _class_dirs(folder: Path) -> list[str]:
    """Names of the (non-hidden) class sub-folders of ``folder``, in :func:`class_order`."""
    try:
        return class_order([d.name for d in folder.iterdir()
                            if d.is_dir() and not d.name.startswith(".")])
    except OSError as exc:
        raise _error(f"cannot list {folder}: {_describe(exc)}") from None


def _read_text(path: Path) -> str:
    """Read a small UTF-8 text file (annotations, words.txt) as a :class:`DataError` on failure."""
    raw = _read_bytes(path, "file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(f"{path} is not UTF-8 text: {_describe(exc)}") from None


def _folder_items(split_dir: Path, index: dict[str, int], require_images: bool,
                  ) -> list[tuple[Path, int]]:
    """``(image, label)`` pairs of a ``split/<class>/...`` tree whose classes are known."""
    items: list[tuple[Path, int]] = []
    for cls in _class_dirs(split_dir):
        if cls not in index:
            raise _error(f"class folder {split_dir / cls} has no counterpart in the train "
                         f"folder (train classes: {', '.join(sorted(index)[:10])}"
                         f"{', ...' if len(index) > 10 else ''}); add it to train or remove it")
        files = _image_files(split_dir / cls)
        if not files and require_images:
            raise _error(f"class folder {split_dir / cls} has no images "
                         "(.png, .jpg, .jpeg, .bmp); add images or remove the folder")
        items.extend((f, index[cls]) for f in files)
    return items


def _tiny_val_items(root: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    """``(image, label)`` pairs from Tiny-ImageNet's ``val/val_annotations.txt``."""
    ann = root / "val" / "val_annotations.txt"
    images = root / "val" / "images"
    items: list[tuple[Path, int]] = []
    for lineno, line in enumerate(_read_text(ann).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise _error(f"{ann} line {lineno} is malformed: expected "
                         "filename<TAB>wnid<TAB>bbox...")
        fname, wnid = parts[0].strip(), parts[1].strip()
        if Path(fname).name != fname:
            raise _error(f"{ann} line {lineno}: {fname!r} is not a plain file name")
        if wnid not in index:
            raise _error(f"{ann} line {lineno}: class {wnid} has no folder in {root / 'train'}; "
                         "the train and val folders are from different datasets")
        path = images / fname
        if not path.is_file():
            raise _error(f"{path} is listed in {ann} (line {lineno}) but missing; "
                         f"unzip tiny-imagenet-200.zip again")
        items.append((path, index[wnid]))
    if not items:
        raise _error(f"{ann} lists no images; expected filename<TAB>wnid lines")
    return items


def _tiny_names(root: Path, classes: list[str]) -> list[str]:
    """Readable names from ``words.txt`` (first synonym), or the wnids themselves."""
    words = root / "words.txt"
    if not words.is_file():
        return list(classes)
    table: dict[str, str] = {}
    for line in _read_text(words).splitlines():
        wnid, sep, names = line.partition("\t")
        if sep and names.strip():
            table[wnid.strip()] = names.split(",")[0].strip()
    names = [table.get(c, c) for c in classes]
    dupes = {n for n in names if names.count(n) > 1}
    return [f"{n} ({c})" if n in dupes else n for n, c in zip(names, classes, strict=True)]


def _decode_image(path: Path) -> np.ndarray:
    """Decode one image with PIL as RGB uint8 ``(H, W, 3)``; any failure names the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise _error(f"cannot read image {path}: {_describe(exc)}; replace or delete "
                     "the file") from None


def _read_images(items: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image into one float32 ``(N, 3, H, W)`` array; all must share a size."""
    first_path = items[0][0]
    first = _decode_image(first_path)
    height, width = first.shape[:2]
    x = np.empty((len(items), 3, height, width), dtype=np.float32)
    y = np.empty(len(items), dtype=np.int64)
    for i, (path, label) in enumerate(items):
        pixels = first if i == 0 else _decode_image(path)
        if pixels.shape != first.shape:
            raise _error(
                f"image {path} is {pixels.shape[1]}x{pixels.shape[0]} pixels but expected "
                f"{width}x{height} (the size of {first_path}); resize all images to one size"
            )
        x[i] = pixels.transpose(2, 0, 1)
        y[i] = label
    x /= np.float32(255.0)
    return x, y


class _FolderLayout:
    """What :func:`load_imagefolder` found: the tree's root, classes, images and text files."""

    def __init__(self, root: Path, classes: list[str], train_items: list[tuple[Path, int]],
                 test_items: list[tuple[Path, int]], is_tiny: bool) -> None:
        self.root = root
        self.classes = classes
        self.train_items = train_items
        self.test_items = test_items
        self.is_tiny = is_tiny

    def files(self) -> tuple[str, ...]:
        """Every file the loader reads: the images (train, then test), then Tiny's text files."""
        paths = [p for p, _ in self.train_items + self.test_items]
        if self.is_tiny:
            paths.append(self.root / "val" / "val_annotations.txt")
            words = self.root / "words.txt"
            if words.is_file():
                paths.append(words)
        return _abs(paths)


def _imagefolder_layout(data_dir: Path, name: str) -> _FolderLayout:
    """Find the tree, its classes and its labelled images without decoding any image."""
    data_dir = Path(data_dir)
    if name not in ("imagefolder", "tinyimagenet"):
        raise _error(f"unknown image folder dataset {name!r}: expected imagefolder or "
                     "tinyimagenet")
    tiny = name == "tinyimagenet"
    dirs = [data_dir, data_dir / _TINY_FOLDER] if tiny else [data_dir]
    root = next((d for d in dirs if (d / "train").is_dir()), None)
    if root is None:
        where = " or ".join(str(d) for d in dirs) + _missing_dir_note(data_dir)
        if tiny:
            raise _error(f"Tiny-ImageNet not found: expected train/<wnid>/images/*.JPEG and "
                         f"val/ in {where}; download {_TINY_URL}, unzip it into {data_dir} "
                         "and pass --data-dir")
        raise _error(f"image folder dataset not found: expected train/<class>/<images> and "
                     f"test/<class>/<images> (or val/) in {where}; put one folder per class "
                     "and pass --data-dir")

    train_dir = root / "train"
    classes = _class_dirs(train_dir)
    if not classes:
        raise _error(f"{train_dir} has no class folders: expected {train_dir}/<class>/<images>")
    index = {c: i for i, c in enumerate(classes)}
    train_items = _folder_items(train_dir, index, require_images=True)

    is_tiny = (root / "val" / "val_annotations.txt").is_file()
    if is_tiny:
        test_items = _tiny_val_items(root, index)
    else:
        test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
        if test_dir is None:
            raise _error(f"no test images: expected {root / 'test'}/<class>/<images> or "
                         f"{root / 'val'}/<class>/<images>")
        test_items = _folder_items(test_dir, index, require_images=False)
        if not test_items:
            raise _error(f"{test_dir} holds no images: expected {test_dir}/<class>/<images> "
                         "(.png, .jpg, .jpeg, .bmp)")

    return _FolderLayout(root, classes, train_items, test_items, is_tiny)


def imagefolder_files(data_dir: Path, name: str = "imagefolder") -> tuple[str, ...]:
    """Absolute paths of every file :func:`load_imagefolder` reads (images are not decoded)."""
    return _imagefolder_layout(data_dir, name).files()


def load_imagefolder(data_dir: Path, name: str = "imagefolder") -> RawArrays:
    """Load an image tree: generic ``train/<class>/*`` + ``test|val/<class>/*``, or Tiny-ImageNet.

    Tiny-ImageNet-200 (``train/<wnid>/images/*.JPEG``, ``val/images`` labelled by
    ``val/val_annotations.txt``, optional ``words.txt``) is recognised by its annotation
    file; with ``name="tinyimagenet"`` the tree may also sit in
    ``data_dir/tiny-imagenet-200``. Classes are the train sub-folders sorted by name
    (numerically when every name is a number: :func:`class_order`); a
    test class missing from train is an error. Images are read with PIL as RGB and must
    all have the same size.

    Returns float32 images ``(N, 3, H, W)`` in [0, 1] and int64 labels.
    """
    layout = _imagefolder_layout(data_dir, name)
    root, is_tiny = layout.root, layout.is_tiny
    x, y = _read_images(layout.train_items + layout.test_items)
    n_train = len(layout.train_items)
    names = _tiny_names(root, layout.classes) if is_tiny else list(layout.classes)
    kind = "Tiny-ImageNet" if is_tiny else "image folders"
    return RawArrays(x[:n_train], y[:n_train], x[n_train:], y[n_train:], names,
                     f"{kind} in {root}", layout.files())


# --------------------------------------------------------------------------------- npz

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_HOWTO = "save one with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"


def _npz_features(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """Convert an npz feature array to float32 channels-first, per the documented rules."""
    if x.dtype.kind not in "biuf":
        raise _error(f"{path}: {key} has dtype {x.dtype}, expected a numeric array")
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0:
        raise _error(f"{path}: {key} has shape {x.shape}, expected (N, D), (N, H, W), "
                     "(N, C, H, W) or (N, H, W, C) with N > 0")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        out = x.astype(np.float32)
    if x.dtype == np.uint8:
        out /= np.float32(255.0)
    if not np.isfinite(out).all():
        raise _error(f"{path}: {key} has NaN or infinite values (or values too large for "
                     "float32); clean the data first")
    if out.ndim == 3:
        out = out[:, None, :, :]
    elif out.ndim == 4 and out.shape[3] in (1, 3, 4) and out.shape[1] > 4 and out.shape[2] > 4:
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out, dtype=np.float32)


def _npz_labels(path: Path, key: str, y: np.ndarray, n: int, x_key: str) -> np.ndarray:
    """Check an npz label array: integers, one per sample."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise _error(f"{path}: {key} has shape {y.shape}, expected (N,) class labels")
    if y.dtype.kind not in "iu":
        raise _error(f"{path}: {key} has dtype {y.dtype}, expected integer class labels "
                     "(save them with y.astype(int))")
    if len(y) != n:
        raise _error(f"{path}: {key} has {len(y)} labels but {x_key} has {n} samples; "
                     "expected one label per sample")
    if y.dtype == np.uint64 and len(y) and int(y.max()) > np.iinfo(np.int64).max:
        raise _error(f"{path}: {key} has label {int(y.max())}, too large for a class label")
    return y.astype(np.int64)


def _npz_member(path: Path, archive: Any, key: str) -> np.ndarray:
    """Read one array from an open archive; a pickled object array is refused by name."""
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _error(f"{path}: {key} is a pickled object array, which is refused; "
                         "save numeric arrays only") from None
        raise


def npz_files(path: Path) -> tuple[str, ...]:
    """The absolute path of the archive :func:`load_npz` reads, checking that it exists."""
    path = Path(path)
    if not path.is_file():
        raise _error(f"npz file not found: {path}; {_NPZ_HOWTO} and pass --data-dir")
    return _abs([path])


def load_npz(path: Path) -> RawArrays:
    """Load ``x_train, y_train, x_test, y_test`` from a ``.npz`` archive (no pickles).

    ``uint8`` features are scaled by 1/255; ``(N, H, W)`` gains a channel axis;
    ``(N, H, W, C)`` with C in (1, 3, 4) and H, W > 4 becomes channels-first; ``(N, D)``
    stays. Labels must be integers; if they are not exactly ``0..K-1`` they are remapped
    to the sorted unique labels of train and test, whose original values become the class
    names.
    """
    path = Path(path)
    howto = _NPZ_HOWTO
    files = npz_files(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        # Open the file ourselves: np.load leaks its own handle when the zip is corrupt.
        with path.open("rb") as fh:
            archive = np.load(fh, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise _error(f"{path} is a single .npy array, expected a .npz archive with "
                             f"keys {', '.join(_NPZ_KEYS)}; {howto}")
            with archive:
                missing = [k for k in _NPZ_KEYS if k not in archive.files]
                if missing:
                    raise _error(f"{path} lacks key(s) {', '.join(missing)} (has: "
                                 f"{', '.join(archive.files) or 'none'}); expected "
                                 f"{', '.join(_NPZ_KEYS)}; {howto}")
                for key in _NPZ_KEYS:
                    arrays[key] = _npz_member(path, archive, key)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, OSError, ValueError, EOFError, zlib
        raise _error(f"cannot read {path} as a .npz archive: {_describe(exc)}; {howto}"
                     ) from None

    x_train = _npz_features(path, "x_train", arrays["x_train"])
    x_test = _npz_features(path, "x_test", arrays["x_test"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise _error(f"{path}: x_train samples have shape {x_train.shape[1:]} but x_test "
                     f"samples have {x_test.shape[1:]}; expected the same shape")
    y_train = _npz_labels(path, "y_train", arrays["y_train"], len(x_train), "x_train")
    y_test = _npz_labels(path, "y_test", arrays["y_test"], len(x_test), "x_test")

    values = np.unique(np.concatenate([y_train, y_test]))
    if values[0] == 0 and values[-1] == len(values) - 1:
        names = [str(i) for i in range(len(values))]
    else:
        names = [str(v) for v in values.tolist()]
        y_train = np.searchsorted(values, y_train)
        y_test = np.searchsorted(values, y_test)
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    return RawArrays(x_train, y_train, x_test, y_test, names, f"npz file {path}", files)
