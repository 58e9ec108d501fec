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


def model_num_classes(model: nn.Module, x: torch.Tensor, what: str = "the model") -> int:
    """The class count of `model`: the width of its output on one input (one forward pass in
    eval mode, without gradients; the model's training mode is restored)."""
    if len(x) == 0:
        raise ParameterError("the train data is empty; pass at least one (x, y) sample")
    first = next(iter(model.parameters()), None)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x[:1].to(first.device if first is not None else "cpu"))
    except Exception as e:
        msg = " ".join(str(e).split())
        raise ParameterError(f"{what} fails on an input shaped {tuple(x[:1].shape)} "
                             f"({type(e).__name__}: {msg}); pass data shaped as it expects"
                             ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ParameterError(f"{what} maps a batch of 1 input to {shape}; it must return "
                             "class logits shaped (batch, num_classes) with num_classes >= 2")
    return int(out.shape[1])


def _dataset(model: nn.Module, train: DataLike, test: DataLike | None,
             num_classes: int | None, references: Sequence[nn.Module] = ()) -> Dataset:
    """The user's data as a Dataset whose class count is the model's output width; labels
    outside 0..K-1 and a `num_classes` or reference that disagrees with the model are
    refused."""
    x_tr, y_tr = _tensors(train, "train")
    x_te, y_te = _tensors(test, "test") if test is not None else (x_tr[:0], y_tr[:0])
    k = model_num_classes(model, x_tr)
    if num_classes is not None and num_classes != k:
        raise ParameterError(f"num_classes={num_classes} but the model outputs {k} logits; "
                             f"pass num_classes={k} or leave it out (it is read from the "
                             "model)")
    for i, ref in enumerate(references):
        k_ref = model_num_classes(ref, x_tr, f"reference {i}")
        if k_ref != k:
            raise ParameterError(f"reference {i} outputs {k_ref} logits but the model {k}; "
                                 "references must be the same architecture over the same "
                                 "classes")
    for what, y in (("train", y_tr), ("test", y_te)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise ParameterError(f"{what} label {bad} is outside 0..{k - 1}: the model "
                                 f"outputs {k} logits, one per class; relabel the data as "
                                 f"0..{k - 1} or pass the model trained on it")
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
    `recipe`, which must be the recipe `model` was trained with (it takes no `params`).

    The class count is the width of the model's output (`num_classes`, if given, must
    agree); labels must lie in 0..K-1, and classes without samples are fine."""
    split = ForgetSplit.make(_dataset(model, train, None, num_classes, references or ()),
                             list(forget_classes))
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
    mean output of `references` (models retrained without the forget classes). The class
    count is the width of the model's output, as in :func:`unlearn`."""
    split = ForgetSplit.make(_dataset(model, train, test, num_classes, references),
                             list(forget_classes))
    refs = [SplitLogits.of(r, split) for r in references]
    return basic_metrics(SplitLogits.of(model, split), split, refs)
