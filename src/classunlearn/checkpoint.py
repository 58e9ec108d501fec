"""Checkpoints: safetensors weights plus a JSON sidecar saying what the weights are.

``model.safetensors`` holds the tensors (safetensors never executes code on load) and
``model.json`` beside it holds the dataset, classes, excluded classes, model name and
arguments, training recipe, seed, the unlearning method if any, and the SHA-256 of the
weights file, checked on every load so a truncated or swapped file is refused. For a plug-in
model (``MODULE:FUNCTION``) it also holds the SHA-256 of the model's source file
(``model_source_sha256``), checked on every load so a changed model file is refused. A model
trained by a plug-in trainer or fine-tuned from an init checkpoint (``classunlearn.trainers``)
records the trainer's reference and file SHA-256 and the init checkpoint's path, SHA-256 and
prefix map; `forget`, `audit` and `tune` train its references and shadows the same way and
re-hash both files first (``trainers.sidecar_training``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from classunlearn.data import Dataset
from classunlearn.errors import CheckpointError, ParameterError, UserError
from classunlearn.models import build_model, is_plugin, model_source

FORMAT_VERSION = 1


@dataclass
class CheckpointMeta:
    """Everything that determines a checkpoint's weights, stored in its JSON sidecar."""

    dataset: str
    class_names: list[str]
    input_shape: list[int]
    model: str
    model_kwargs: dict = field(default_factory=dict)
    excluded_classes: list[int] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)
    seed: int = 0
    # set by `unlearn`: {"name": ..., "params": {...}, "forget_classes": [...], "seed": ...}
    method: dict | None = None
    parent_sha256: str | None = None  # weights the method started from
    # plug-in models (MODULE:FUNCTION) only: SHA-256 of the file that defines the model
    model_source_sha256: str | None = None
    # 8-bit image data: the per-channel mean and std (of the train split, in [0, 1] units)
    # the inputs were normalised with, (x / 255 - mean) / std; None for float data
    input_norm: dict | None = None
    sha256: str = ""
    format_version: int = FORMAT_VERSION
    # how it was trained beyond the recipe (classunlearn.trainers); written only when set,
    # so the sidecars of every other checkpoint read as before
    trainer: str | None = None  # plug-in trainer /abs/file.py:FUNCTION (or module:FUNCTION)
    trainer_sha256: str | None = None  # SHA-256 of the trainer's file
    init: str | None = None  # the init checkpoint it was fine-tuned from (absolute path)
    init_sha256: str | None = None  # that checkpoint's SHA-256
    init_map: dict | None = None  # {checkpoint prefix: model prefix}, or None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if not (k in TRAINING_FIELDS and v is None)}

    def set_training(self, training) -> None:
        """Record a :class:`classunlearn.trainers.Training` beyond its recipe."""
        self.recipe = training.recipe.to_dict()
        self.trainer, self.trainer_sha256 = training.trainer, training.trainer_sha256
        self.init, self.init_sha256 = training.init, training.init_sha256
        self.init_map = dict(training.init_map) if training.init_map else None

    @classmethod
    def from_dict(cls, d: dict) -> CheckpointMeta:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


TRAINING_FIELDS = ("trainer", "trainer_sha256", "init", "init_sha256", "init_map")


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


FILE_MODE = 0o666
"""Every output file (checkpoints, sidecars, records, reports, results.db) is created with
mode 0666 less the process's umask, as any file a program writes (0644 under the usual
umask 022): readable by whoever may read the folder. Tighten with ``umask 077``."""


@functools.cache
def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only
    be read by setting it, which would race with threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: a kill never leaves half a file."""
    _atomic_write_all([(path, data)])


def _atomic_write_all(files: list[tuple[Path, bytes]]) -> None:
    """Write every file to a temp file beside it first, then rename them all: a full disk
    fails while writing the temps, before any old file is replaced, so it never leaves new
    weights beside an old sidecar."""
    tmps: list[str] = []
    try:
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            tmps.append(tmp)
            os.fchmod(fd, FILE_MODE & ~_umask())  # mkstemp makes 0600; outputs follow umask
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for (path, _), tmp in zip(files, tmps, strict=True):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: Path) -> None:
    """Fail before any work if the output location cannot be written."""
    folder = path if path.suffix == "" else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
                       None)
        why = f"{blocker} is a file, not a folder" if blocker else e.strerror
        raise UserError(f"cannot write to {folder}: {why}; choose a writable --out") from None


def save_checkpoint(model: nn.Module, meta: CheckpointMeta, path: str | Path) -> Path:
    """Write weights and sidecar atomically; returns the weights path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint path {path} must end in .safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_file = Path(tmp) / "w.safetensors"
        save_file(state, str(tmp_file), metadata={"format": "pt"})
        data = tmp_file.read_bytes()
    meta.sha256 = hashlib.sha256(data).hexdigest()
    try:
        _atomic_write_all([(path, data), (sidecar_path(path),
                                          json.dumps(meta.to_dict(), indent=2).encode())])
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; free disk "
                              "space or choose a writable --out (any old file there is kept)"
                              ) from None
    return path


def _sniff_untrusted(head: bytes, path: Path, size: int) -> None:
    """Refuse, without unpickling, what looks like a pickle or a torch.save zip. `head` is
    the file's first 9 bytes at least. A safetensors file starts with its header's length
    (8 bytes, little-endian) and then '{'; that length may itself start with 0x80 or 'PK'
    (e.g. 640 bytes is 80 02: pickle protocol 2), so a valid header is recognised first."""
    header_len = int.from_bytes(head[:8], "little")
    if len(head) >= 9 and head[8:9] == b"{" and 8 + header_len <= size:
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(
            f"{path} is a pickle/torch .pt file; classunlearn never unpickles files. Convert it "
            "once in a trusted session: "
            "safetensors.torch.save_file(model.state_dict(), 'x.safetensors')"
        )


def load_meta(path: str | Path) -> CheckpointMeta:
    """Read and check a checkpoint's sidecar (not the weights)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found; pass the .safetensors file "
                              "written by `classunlearn train` or `unlearn`")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file; pass the .safetensors file "
                              "written by `classunlearn train` or `unlearn`")
    if path.suffix == ".json":
        raise CheckpointError(f"{path} is a sidecar; pass the .safetensors file beside it")
    try:
        with open(path, "rb") as f:  # a pickle is named as such, sidecar or not
            _sniff_untrusted(f.read(9), path, path.stat().st_size)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    side = sidecar_path(path)
    if not side.exists():
        raise CheckpointError(f"sidecar {side} is missing; keep the .json written beside "
                              f"{path.name}")
    try:
        raw = json.loads(side.read_text())
        if not isinstance(raw, dict):
            raise TypeError(f"a JSON {type(raw).__name__}, not an object")
        meta = CheckpointMeta.from_dict(raw)
        _check_meta_types(meta)
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"sidecar {side} is not valid checkpoint JSON ({e}); "
                              "re-create the checkpoint") from None
    return meta


def _check_meta_types(meta: CheckpointMeta) -> None:
    """Refuse a sidecar whose fields have the wrong JSON types (TypeError)."""
    def ints(v: object) -> bool:
        return isinstance(v, list) and all(type(i) is int for i in v)

    checks = {"dataset": isinstance(meta.dataset, str), "model": isinstance(meta.model, str),
              "class_names": isinstance(meta.class_names, list)
              and all(isinstance(c, str) for c in meta.class_names),
              "input_shape": ints(meta.input_shape) and all(i > 0 for i in meta.input_shape),
              "model_kwargs": isinstance(meta.model_kwargs, dict), "recipe":
              isinstance(meta.recipe, dict), "excluded_classes": ints(meta.excluded_classes),
              "sha256": isinstance(meta.sha256, str), "method": meta.method is None
              or isinstance(meta.method, dict), "model_source_sha256":
              meta.model_source_sha256 is None or isinstance(meta.model_source_sha256, str),
              "input_norm": meta.input_norm is None or isinstance(meta.input_norm, dict),
              **{k: getattr(meta, k) is None or isinstance(getattr(meta, k), str)
                 for k in TRAINING_FIELDS if k != "init_map"},
              "init_map": meta.init_map is None or (isinstance(meta.init_map, dict) and all(
                  isinstance(k, str) and isinstance(v, str) for k, v in meta.init_map.items()))}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise TypeError(f"field(s) {', '.join(bad)} have the wrong type")


def load_checkpoint(path: str | Path, dataset: Dataset | None = None
                    ) -> tuple[nn.Module, CheckpointMeta]:
    """Load weights into a freshly built model, refusing anything that does not match."""
    path = Path(path)
    meta = load_meta(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    _sniff_untrusted(data[:9], path, len(data))
    if hashlib.sha256(data).hexdigest() != meta.sha256:
        raise CheckpointError(f"{path} does not match the hash in its sidecar (truncated or "
                              "modified); re-create it")
    if dataset is not None:
        check_matches_dataset(meta, dataset, path)
    try:
        from safetensors.torch import load as load_bytes

        state = load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); re-create "
                              "it with `classunlearn train`") from None
    check_model_file(meta, path)
    try:
        model = build_model(meta.model, tuple(meta.input_shape), meta.num_classes,
                            **meta.model_kwargs)
    except (RuntimeError, ValueError, ParameterError) as e:
        raise CheckpointError(f"sidecar of {path} describes a model that cannot be built "
                              f"({e}); re-create the checkpoint") from None
    expected = model.state_dict()
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state))[:3]
        raise CheckpointError(f"{path} does not hold a '{meta.model}' model (missing tensors "
                              f"{missing}); was it written for another model?")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{path}: tensor {k} is shaped {tuple(v.shape)} but model "
                                  f"'{meta.model}' needs {tuple(expected[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: tensor {k} holds NaN or infinite weights; the model "
                                  "diverged, retrain or unlearn it again")
    model.load_state_dict(state)
    return model.eval(), meta


def check_model_file(meta: CheckpointMeta, path: Path | str) -> None:
    """A plug-in model's source file must be the one the checkpoint was written with (same
    SHA-256); registry models pass."""
    if not is_plugin(meta.model):
        return
    if not meta.model_source_sha256:
        raise CheckpointError(f"sidecar of {path} names plug-in model '{meta.model}' but records "
                              "no model_source_sha256; re-create the checkpoint with "
                              "`classunlearn train`")
    try:
        src = model_source(meta.model)
    except ParameterError as e:
        file = meta.model.rsplit(":", 1)[0]
        raise CheckpointError(
            f"{path} needs the file of its plug-in model '{meta.model}' "
            f"({str(e).split('; ')[0]}); put {file} "
            f"back where it was (SHA-256 {meta.model_source_sha256[:12]}...), or retrain with "
            "`classunlearn train --model PATH.py:FUNCTION` to use a model elsewhere") from None
    assert src is not None
    if src.sha256 != meta.model_source_sha256:
        raise CheckpointError(
            f"model file {src.path} changed since {Path(path).name} was written (SHA-256 "
            f"{meta.model_source_sha256[:12]}... recorded, {src.sha256[:12]}... now); restore "
            "that file as it was, or retrain with `classunlearn train --model "
            f"{meta.model}` to use the changed model")


def _first(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def check_matches_dataset(meta: CheckpointMeta, dataset: Dataset, path: Path | str) -> None:
    if (meta.class_names != dataset.class_names and sorted(meta.class_names)
            == sorted(dataset.class_names) and meta.dataset == dataset.name):
        raise CheckpointError(
            f"{path} orders the classes of '{meta.dataset}' differently from the data "
            f"(checkpoint: {_first(meta.class_names)}; data: {_first(dataset.class_names)}), "
            "so its class indices mean other "
            "classes; numeric class folders are now ordered by number: retrain the model with "
            "`classunlearn train`")
    if meta.class_names != dataset.class_names or list(meta.input_shape) != list(
        dataset.input_shape
    ):
        raise CheckpointError(
            f"{path} was trained on '{meta.dataset}' ({meta.num_classes} classes, inputs "
            f"{tuple(meta.input_shape)}) but the data is '{dataset.name}' "
            f"({dataset.num_classes} classes, inputs {dataset.input_shape}); pass the data it "
            "was trained on (--dataset / --data-dir)"
        )


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
