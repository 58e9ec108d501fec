"""Python API for your own models and data: unlearn any classifier, then audit it.

    import classunlearn as cu
    unlearned, record = cu.unlearn(model, (x_train, y_train), forget_classes=[3], method="trw")
    report = cu.audit(unlearned, (x_train, y_train), (x_test, y_test), forget_classes=[3],
                      references=[retrained_model])

`model` is any ``torch.nn.Module`` mapping a batch of inputs to class logits. Data is an
``(x, y)`` pair of tensors or any ``torch.utils.data.Dataset`` yielding ``(x, y)`` pairs; it
is used as given (no normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from classunlearn.data import Dataset, ForgetSplit
from classunlearn.errors import ParameterError
from classunlearn.evaluate import SplitLogits, basic_metrics
from classunlearn.methods import RunRecord, UnlearnData, make_params
from classunlearn.train import Recipe

DataLike = tuple[torch.Tensor, torch.Tensor] | torch.utils.data.Dataset


def _tensors(data: DataLike, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
    elif isinstance(data, torch.utils.data.Dataset):
        pairs = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        if not pairs:
            raise ParameterError(f"{what} dataset is empty")
        x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        y = torch.as_tensor([int(p[1]) for p in pairs])
    else:
        raise ParameterError(f"{what} must be an (x, y) tuple of tensors or a torch Dataset")
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    if x.shape[0] != y.shape[0]:
        raise ParameterError(f"{what}: {x.shape[0]} inputs but {y.shape[0]} labels")
    return x, y


def _dataset(train: DataLike, test: DataLike | None, num_classes: int | None) -> Dataset:
    x_tr, y_tr = _tensors(train, "train")
    x_te, y_te = _tensors(test, "test") if test is not None else (x_tr[:0], y_tr[:0])
    k = num_classes or int(max(y_tr.max(), y_te.max() if len(y_te) else 0)) + 1
    return Dataset("user", x_tr, y_tr, x_te, y_te, [str(c) for c in range(k)], "user data")


def unlearn(
    model: nn.Module,
    train: DataLike,
    forget_classes: Sequence[int],
    method: str = "trw",
    params: dict[str, object] | None = None,
    seed: int = 0,
    device: str | None = None,
    num_classes: int | None = None,
    references: list[nn.Module] | None = None,
    recipe: Recipe | None = None,
) -> tuple[nn.Module, RunRecord]:
    """Make a copy of `model` forget `forget_classes` with `method` (see
    `classunlearn methods`); `params` overrides hyperparameters by name. Returns the
    unlearned copy and a run record (wall time, steps, parameters).

    ``method="retrain"`` trains a fresh copy of the architecture from scratch on D_r with
    `recipe`, which must be the recipe `model` was trained with (it takes no `params`)."""
    split = ForgetSplit.make(_dataset(train, None, num_classes), list(forget_classes))
    values = {k: str(v) for k, v in (params or {}).items()}
    cls, p = make_params(method, None, values, recipe=recipe)
    return cls().unlearn(model, UnlearnData.from_split(split), p, seed=seed, device=device,
                         references=references)


def audit(
    model: nn.Module,
    train: DataLike,
    test: DataLike,
    forget_classes: Sequence[int],
    references: list[nn.Module],
    num_classes: int | None = None,
) -> dict:
    """Accuracies on D_r, D_f, T_r, T_f, per-class test accuracy and TV distance to the
    mean output of `references` (models retrained without the forget classes)."""
    split = ForgetSplit.make(_dataset(train, test, num_classes), list(forget_classes))
    refs = [SplitLogits.of(r, split) for r in references]
    return basic_metrics(SplitLogits.of(model, split), split, refs)
