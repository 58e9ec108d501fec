"""Checkpoints: safetensors weights plus a JSON sidecar saying what the weights are.

``model.safetensors`` holds the tensors (safetensors never executes code on load) and
``model.json`` beside it holds the dataset, classes, excluded classes, model name and
arguments, training recipe, seed, the unlearning method if any, and the SHA-256 of the
weights file, checked on every load so a truncated or swapped file is refused.
"""

from __future__ import annotations

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
from classunlearn.errors import CheckpointError
from classunlearn.models import build_model

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
    sha256: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> CheckpointMeta:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        _atomic_write(path, data)
        _atomic_write(sidecar_path(path), json.dumps(meta.to_dict(), indent=2).encode())
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror}; "
                              "choose a writable --out location with free space") from None
    return path


def _sniff_untrusted(data: bytes, path: Path) -> None:
    if data[:2] == b"PK" or data[:1] == b"\x80":
        raise CheckpointError(
            f"{path} is a pickle/torch .pt file; classunlearn never unpickles files. Convert it "
            "once in a trusted session: "
            "safetensors.torch.save_file(model.state_dict(), 'x.safetensors')"
        )


def load_meta(path: str | Path) -> CheckpointMeta:
    """Read and check a checkpoint's sidecar (not the weights)."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found; pass the .safetensors file "
                              "written by `classunlearn train` or `unlearn`")
    if not side.exists():
        raise CheckpointError(f"sidecar {side} is missing; keep the .json written beside "
                              f"{path.name}")
    try:
        meta = CheckpointMeta.from_dict(json.loads(side.read_text()))
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"sidecar {side} is not valid checkpoint JSON ({e}); "
                              "re-create the checkpoint") from None
    return meta


def load_checkpoint(path: str | Path, dataset: Dataset | None = None
                    ) -> tuple[nn.Module, CheckpointMeta]:
    """Load weights into a freshly built model, refusing anything that does not match."""
    path = Path(path)
    meta = load_meta(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    _sniff_untrusted(data, path)
    if hashlib.sha256(data).hexdigest() != meta.sha256:
        raise CheckpointError(f"{path} does not match the hash in its sidecar (truncated or "
                              "modified); re-create it")
    if dataset is not None:
        check_matches_dataset(meta, dataset, path)
    try:
        from safetensors.torch import load as load_bytes

        state = load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
    model = build_model(meta.model, tuple(meta.input_shape), meta.num_classes,
                        **meta.model_kwargs)
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


def check_matches_dataset(meta: CheckpointMeta, dataset: Dataset, path: Path | str) -> None:
    if meta.class_names != dataset.class_names or list(meta.input_shape) != list(
        dataset.input_shape
    ):
        raise CheckpointError(
            f"{path} was trained on '{meta.dataset}' ({meta.num_classes} classes, inputs "
            f"{tuple(meta.input_shape)}) but the data is '{dataset.name}' "
            f"({dataset.num_classes} classes, inputs {dataset.input_shape}); pass the matching "
            "--dataset"
        )


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
