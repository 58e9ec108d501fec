"""Datasets as tensors in memory, and the forget/retain split of paper.md section 1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from classunlearn.data.raw import RawArrays
from classunlearn.errors import DataError


@dataclass
class Dataset:
    """A classification dataset held in memory as float32/int64 tensors.

    Inputs are standardised with the *train* split's per-channel mean and std, so every
    model sees zero-mean, unit-variance inputs whatever the source format. ``files`` are
    the absolute paths of the files the loader read (empty for generated data).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    source: str = ""
    files: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @classmethod
    def from_raw(cls, name: str, raw: RawArrays, standardise: bool = True) -> Dataset:
        """Check a loader's arrays and turn them into tensors."""
        _check_raw(name, raw)
        x_train = torch.as_tensor(np.ascontiguousarray(raw.x_train), dtype=torch.float32)
        x_test = torch.as_tensor(np.ascontiguousarray(raw.x_test), dtype=torch.float32)
        if standardise:
            # One mean/std per channel (axis 1) for images and signals, one overall for vectors.
            dims = [0] + list(range(2, x_train.dim())) if x_train.dim() > 2 else [0, 1]
            mean = x_train.mean(dim=dims, keepdim=True)
            if x_train.numel() > mean.numel():
                std = x_train.std(dim=dims, keepdim=True).clamp_min(1e-6)
            else:  # one value per channel: no spread to measure (std would be NaN)
                std = torch.ones_like(mean)
            x_train = (x_train - mean) / std
            x_test = (x_test - mean) / std
        return cls(
            name=name,
            x_train=x_train,
            y_train=torch.as_tensor(raw.y_train, dtype=torch.int64),
            x_test=x_test,
            y_test=torch.as_tensor(raw.y_test, dtype=torch.int64),
            class_names=list(raw.class_names),
            source=raw.source,
            files=tuple(raw.files),
        )

    def class_counts(self, split: str = "train") -> list[int]:
        y = self.y_train if split == "train" else self.y_test
        return torch.bincount(y, minlength=self.num_classes).tolist()


def _check_raw(name: str, raw: RawArrays) -> None:
    k = len(raw.class_names)
    for part in ("train", "test"):
        x, y = getattr(raw, f"x_{part}"), getattr(raw, f"y_{part}")
        if len(x) != len(y):
            raise DataError(f"{name}: {len(x)} {part} inputs but {len(y)} labels; they must match")
        if len(y) == 0:
            raise DataError(f"{name}: the {part} split is empty; provide at least one sample")
        if y.min() < 0 or y.max() >= k:
            raise DataError(f"{name}: {part} labels must lie in 0..{k - 1} ({k} class names)")
        if not np.isfinite(x).all():
            raise DataError(f"{name}: {part} inputs contain NaN or infinity; clean the data")
    if raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise DataError(
            f"{name}: train inputs are shaped {raw.x_train.shape[1:]} but test inputs "
            f"{raw.x_test.shape[1:]}; both splits must share one shape"
        )


def parse_forget_classes(forget: Sequence[int | str], dataset: Dataset) -> tuple[int, ...]:
    """Turn class indices or names into a sorted tuple of indices, refusing bad requests."""
    if len(forget) == 0:
        raise DataError("no forget class given; pass at least one with --forget-class")
    out: list[int] = []
    for c in forget:
        if isinstance(c, str) and not c.lstrip("-").isdigit():
            if c not in dataset.class_names:
                raise DataError(
                    f"forget class '{c}' is not a class of {dataset.name}; "
                    f"choose an index 0..{dataset.num_classes - 1} or one of its class names"
                )
            idx = dataset.class_names.index(c)
        else:
            idx = int(c)
        if not 0 <= idx < dataset.num_classes:
            raise DataError(
                f"forget class {idx} is out of range for {dataset.name}, which has classes "
                f"0..{dataset.num_classes - 1}"
            )
        if idx in out:
            raise DataError(f"forget class {idx} is given twice; list each class once")
        out.append(idx)
    if len(out) >= dataset.num_classes:
        raise DataError(
            f"cannot forget all {dataset.num_classes} classes of {dataset.name}; "
            "leave at least one class to retain"
        )
    return tuple(sorted(out))


@dataclass
class ForgetSplit:
    """D_f, D_r, T_f, T_r of paper.md section 1 for a set of forget classes.

    Holds index tensors into the dataset, so a split costs no copy of the data.
    """

    dataset: Dataset
    forget_classes: tuple[int, ...]
    train_forget: torch.Tensor = field(init=False)
    train_retain: torch.Tensor = field(init=False)
    test_forget: torch.Tensor = field(init=False)
    test_retain: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        fc = torch.tensor(self.forget_classes, dtype=torch.int64)
        in_train = torch.isin(self.dataset.y_train, fc)
        in_test = torch.isin(self.dataset.y_test, fc)
        self.train_forget = torch.nonzero(in_train).flatten()
        self.train_retain = torch.nonzero(~in_train).flatten()
        self.test_forget = torch.nonzero(in_test).flatten()
        self.test_retain = torch.nonzero(~in_test).flatten()
        for c in self.forget_classes:
            if int((self.dataset.y_train == c).sum()) == 0:
                raise DataError(
                    f"forget class {c} has no training samples in {self.dataset.name}; "
                    "there is nothing to forget, pick another class"
                )

    @classmethod
    def make(cls, dataset: Dataset, forget: Sequence[int | str]) -> ForgetSplit:
        return cls(dataset, parse_forget_classes(forget, dataset))

    @property
    def retain_classes(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.dataset.num_classes) if c not in self.forget_classes)

    def part(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of one of 'train_forget', 'train_retain', 'test_forget', 'test_retain'."""
        idx = getattr(self, which)
        d = self.dataset
        x, y = (d.x_train, d.y_train) if which.startswith("train") else (d.x_test, d.y_test)
        return x[idx], y[idx]
