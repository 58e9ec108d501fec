"""BE (Boundary Expanding): add a shadow output unit, send D_f to it, then prune it.

Chen et al., "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
Decision Space", CVPR 2023 (arXiv 2303.11570). The authors' code widens the final linear
layer by one freshly initialised row, fine-tunes the whole widened network on D_f labelled
with the shadow class (SGD lr 1e-5, momentum 0.9, 10 epochs), and then drops the row, so
the model keeps its architecture and class count. All forget classes share one shadow unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from classunlearn.methods import register
from classunlearn.methods.base import (
    Batch,
    FinetuneMethod,
    FinetuneParams,
    RunContext,
    UnlearnData,
)
from classunlearn.models import final_linear


@dataclass(frozen=True)
class BEParams(FinetuneParams):
    """Boundary Expanding (defaults from the authors' code)."""

    epochs: int = 10
    lr: float = 1e-5
    weight_decay: float = 0.0
    schedule: str = "constant"
    # The output nn.Linear that gets the shadow row, as its dotted name in the model (e.g.
    # "fc", "classifier.3"); None: the model's `head`, else the one nn.Linear with one output
    # per class (models.final_linear).
    head: str | None = None


def _replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put `new` where `old` sits in `model` (found by identity, at any depth)."""
    for name, module in model.named_modules():
        if module is old:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
            return
    raise ValueError("module not found in the model")


def widen(head: nn.Linear, extra: int) -> nn.Linear:
    """A copy of `head` with `extra` freshly initialised output rows appended."""
    wide = nn.Linear(head.in_features, head.out_features + extra, bias=head.bias is not None)
    wide = wide.to(device=head.weight.device, dtype=head.weight.dtype)
    with torch.no_grad():
        wide.weight[:head.out_features] = head.weight
        if head.bias is not None:
            wide.bias[:head.out_features] = head.bias
    return wide


def narrow(head: nn.Linear, keep: int) -> nn.Linear:
    """A copy of `head` restricted to its first `keep` output rows."""
    out = nn.Linear(head.in_features, keep, bias=head.bias is not None)
    out = out.to(device=head.weight.device, dtype=head.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(head.weight[:keep])
        if head.bias is not None:
            out.bias.copy_(head.bias[:keep])
    return out


@register
class BE(FinetuneMethod):
    """Boundary Expanding (Chen et al., CVPR 2023)."""

    name = "be"
    summary = "boundary expanding: fine-tune D_f toward an extra shadow class, then prune it"
    source = "Chen et al. 2023, CVPR, arXiv 2303.11570 (Boundary Unlearning)"
    Params = BEParams
    samples = "forget"
    # Chosen by scripts/tune_methods.py on the train splits (docs/methods.md).
    dataset_defaults: dict[str, dict] = {
        "digits": {"lr": 0.001, "epochs": 5},
        "mnist-5k": {"lr": 0.001, "epochs": 5},
        "mnist1d": {"lr": 1e-05, "epochs": 10},
    }

    def prepare(self, model: nn.Module, data: UnlearnData, params: BEParams, ctx: RunContext
                ) -> None:
        head = final_linear(model, params.head, data.num_classes)
        self.num_outputs = head.out_features
        self.head = widen(head, 1)  # the shadow unit is output number `num_outputs`
        _replace_module(model, head, self.head)

    def loss(self, model: nn.Module, batch: Batch, params: BEParams, ctx: RunContext
             ) -> torch.Tensor:
        logits = model(batch.x)
        return F.cross_entropy(logits, torch.full_like(batch.y, self.num_outputs))

    def finish(self, model: nn.Module, params: BEParams, ctx: RunContext) -> nn.Module:
        _replace_module(model, self.head, narrow(self.head, self.num_outputs))
        del self.head
        return model
