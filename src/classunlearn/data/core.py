"""Datasets as tensors in memory, and the forget/retain split of docs/readings.md section 1."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from classunlearn.data.raw import RawArrays
from classunlearn.errors import DataError


class Images:
    """8-bit images kept as uint8, turned into model inputs one batch at a time.

    ``u8`` is ``(N, C, H, W)`` uint8 (possibly a read-only memory map shared by every
    worker); ``mean`` and ``std`` are ``(1, C, 1, 1)`` float32, computed on the train split.
    The float inputs a model sees are ``(u8 / 255 - mean) / std`` (:meth:`inputs`), exactly the
    values a float32 dataset scaled to [0, 1] and then standardised holds. Indexing and
    ``.to(device)`` keep the uint8 form (a subset costs a quarter of its float32 copy);
    :func:`to_input` makes floats at the batch boundary.
    """

    def __init__(self, u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.u8, self.mean, self.std = u8, mean, std

    def __len__(self) -> int:
        return len(self.u8)

    @property
    def shape(self) -> torch.Size:
        return self.u8.shape

    @property
    def device(self) -> torch.device:
        return self.u8.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # of the inputs it stands for

    def dim(self) -> int:
        return self.u8.dim()

    def __getitem__(self, idx) -> Images:
        if isinstance(idx, torch.Tensor):
            idx = idx.to(self.u8.device)
        return Images(self.u8[idx], self.mean, self.std)

    def to(self, device) -> Images:
        return Images(self.u8.to(device), self.mean.to(device), self.std.to(device))

    def inputs(self) -> torch.Tensor:
        """The float32 inputs of every image held (normalised)."""
        if self.u8.dim() < self.mean.dim():  # one image (x[i]): statistics shaped (C, 1, 1)
            return to_input(self.u8, self.mean[0], self.std[0])
        return to_input(self.u8, self.mean, self.std)

    def channel_range(self) -> torch.Tensor:
        """Per-channel max - min of the normalised inputs, shaped (1, C, 1, 1), without making
        them: normalisation is monotone, so it maps the uint8 extremes to the float ones."""
        dims = [0] + list(range(2, self.u8.dim()))
        hi = to_input(self.u8.amax(dim=dims, keepdim=True), self.mean, self.std)
        lo = to_input(self.u8.amin(dim=dims, keepdim=True), self.mean, self.std)
        return hi - lo


def to_input(x, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Model inputs of `x`: a float tensor is returned as is; :class:`Images` (or a uint8
    tensor with `mean` and `std`) become ``(x / 255 - mean) / std`` in float32."""
    if isinstance(x, Images):
        return x.inputs()
    if mean is None:
        return x
    m, s = mean.to(x.device), std.to(x.device)
    return (x.to(torch.float32) / 255.0 - m) / s


def cat_inputs(parts) -> torch.Tensor | Images:
    """``torch.cat`` of inputs that may be :class:`Images` (which stay uint8 when all are,
    with the same statistics) or float tensors (then all become float)."""
    parts = list(parts)
    if parts and all(isinstance(p, Images) for p in parts) and all(
            p.mean is parts[0].mean and p.std is parts[0].std for p in parts):
        return Images(torch.cat([p.u8 for p in parts]), parts[0].mean, parts[0].std)
    return torch.cat([to_input(p) for p in parts])


@dataclass
class Dataset:
    """A classification dataset held in memory: inputs, int64 labels.

    Inputs are standardised with the *train* split's per-channel mean and std, so every
    model sees zero-mean, unit-variance inputs whatever the source format. 8-bit images
    of the file datasets (every value exactly k/255, as the image loaders return them; the
    small embedded datasets stay float) are held as
    :class:`Images`: uint8 plus that mean and std, normalised per batch (:func:`to_input`)
    to exactly the float32 values a standardised float copy would hold, at a quarter of the
    memory. Other inputs are standardised float32 tensors. ``files`` are the absolute paths
    of the files the loader read (empty for generated data).
    """

    name: str
    x_train: torch.Tensor | Images
    y_train: torch.Tensor
    x_test: torch.Tensor | Images
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

    @property
    def norm_stats(self) -> dict | None:
        """``{"mean": [...], "std": [...]}`` per channel of :class:`Images` inputs (what
        :func:`to_input` applies after scaling to [0, 1]); None for float inputs."""
        if not isinstance(self.x_train, Images):
            return None
        return {"mean": self.x_train.mean.flatten().tolist(),
                "std": self.x_train.std.flatten().tolist()}

    @classmethod
    def from_raw(cls, name: str, raw: RawArrays, standardise: bool = True,
                 keep_8bit: bool = False) -> Dataset:
        """Check a loader's arrays and turn them into tensors. With `keep_8bit` (the file
        datasets of :func:`load_dataset`), 8-bit images are kept as :class:`Images`."""
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
            u8_train = as_8bit(x_train) if keep_8bit and x_train.dim() == 4 else None
            u8_test = as_8bit(x_test) if u8_train is not None else None
            if u8_train is not None and u8_test is not None:
                x_train, x_test = Images(u8_train, mean, std), Images(u8_test, mean, std)
            else:
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


def stratified_indices(y: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """`n` indices into labels `y`, each class's share as in `y` (largest remainders make the
    total exactly `n`), drawn by a generator seeded with `seed`; sorted, so the subset keeps
    the split's order. Every class present in `y` keeps at least one sample."""
    counts = torch.bincount(y, minlength=num_classes).double()
    if not 0 < n <= len(y):
        raise DataError(f"a subset of {n} samples is not possible from {len(y)}; "
                        f"give a size between 1 and {len(y)}")
    present = int((counts > 0).sum())
    if n < present:
        raise DataError(f"a stratified subset of {n} samples cannot hold all {present} "
                        f"classes; give at least {present}")
    exact = counts * n / len(y)
    take = exact.floor().clamp_min((counts > 0).double()).long()
    by_remainder = torch.argsort(exact - exact.floor(), descending=True, stable=True)
    i = 0
    while int(take.sum()) != n:  # hand out (or take back) the rounding, largest remainder first
        c = int(by_remainder[i % num_classes])
        if int(take.sum()) < n and take[c] < counts[c]:
            take[c] += 1
        elif int(take.sum()) > n and take[c] > 1:
            take[c] -= 1
        i += 1
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=gen)[:int(take[c])]])
    return torch.cat(picked).sort().values


def subset_dataset(ds: Dataset, train: int | None = None, test: int | None = None,
                   seed: int = 0) -> Dataset:
    """A stratified, seeded subset of `ds`: `train` training samples and `test` test samples
    (None keeps that split whole). Normalisation stays the full training split's, so a
    subset's images are the same inputs they are in the whole dataset."""
    if train is None and test is None:
        return ds
    k = ds.num_classes
    tr = stratified_indices(ds.y_train, train, k, seed) if train is not None else None
    te = stratified_indices(ds.y_test, test, k, seed + 1) if test is not None else None
    return Dataset(
        name=ds.name,
        x_train=ds.x_train[tr] if tr is not None else ds.x_train,
        y_train=ds.y_train[tr] if tr is not None else ds.y_train,
        x_test=ds.x_test[te] if te is not None else ds.x_test,
        y_test=ds.y_test[te] if te is not None else ds.y_test,
        class_names=ds.class_names, source=ds.source, files=ds.files)


def as_8bit(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor | None:
    """`x` (float32 in [0, 1]) as uint8 when every value is exactly ``k / 255`` in float32
    (what ``uint8 / 255`` gives), so ``u8 / 255`` restores it bit for bit; else None."""
    out = torch.empty(x.shape, dtype=torch.uint8)
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        if xb.numel() and (xb.min() < 0 or xb.max() > 1):
            return None
        u8 = torch.round(xb * 255.0).to(torch.uint8)
        if not torch.equal(u8.to(torch.float32) / 255.0, xb):
            return None
        out[i:i + chunk] = u8
    return out


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


def _forget_class_index(c: int | str, dataset: Dataset) -> int:
    """The index one forget-class argument names (docs/forget.md, "Which class"): an int is an
    index; a string that names a class means that class; ``name:X`` and ``index:N`` say
    which reading is meant; a string that is a class's name and the index of another class
    is refused, showing both readings."""
    names = dataset.class_names
    if isinstance(c, numbers.Integral) and not isinstance(c, bool):
        return int(c)
    s = str(c)
    if s not in names and s.startswith(("name:", "index:")):
        kind, _, rest = s.partition(":")
        if kind == "name":
            if rest not in names:
                raise DataError(f"forget class '{s}': {dataset.name} has no class named "
                                f"'{rest}'; its classes are {_some(names)}")
            return names.index(rest)
        if not _is_int(rest):
            raise DataError(f"forget class '{s}': '{rest}' is not an index; write index:N "
                            f"with N in 0..{dataset.num_classes - 1}")
        return int(rest)
    if s in names:
        idx = names.index(s)
        if _is_int(s) and int(s) != idx and 0 <= int(s) < len(names):
            raise DataError(
                f"forget class '{s}' is ambiguous in {dataset.name}: it is the name of class "
                f"{idx} and the index of class {int(s)} (named '{names[int(s)]}'); write "
                f"name:{s} for class {idx} or index:{s} for class {int(s)}")
        return idx
    if not _is_int(s):
        raise DataError(
            f"forget class '{s}' is not a class of {dataset.name}; "
            f"choose an index 0..{dataset.num_classes - 1} or one of its class names"
        )
    return int(s)


def _is_int(s: str) -> bool:
    return s.lstrip("-").isascii() and s.lstrip("-").isdigit() and s.count("-") <= 1 \
        and not s.endswith("-")


def _some(names: list[str], n: int = 10) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def parse_forget_classes(forget: Sequence[int | str], dataset: Dataset) -> tuple[int, ...]:
    """Turn class indices or names into a sorted tuple of indices, refusing bad requests
    (an ambiguous value, one out of range, one given twice, every class)."""
    if len(forget) == 0:
        raise DataError("no forget class given; pass at least one with --forget-class")
    out: list[int] = []
    for c in forget:
        idx = _forget_class_index(c, dataset)
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


def describe_classes(indices: Sequence[int], class_names: Sequence[str]) -> str:
    """``3 (3)``, ``1 (automobile), 2 (bird)``: how every command shows resolved classes."""
    return ", ".join(f"{int(c)} ({class_names[int(c)]})" for c in indices)


@dataclass
class ForgetSplit:
    """D_f, D_r, T_f, T_r of docs/readings.md section 1 for a set of forget classes.

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
        return x[idx], y[idx]  # Images stay uint8: callers convert per batch (to_input)
