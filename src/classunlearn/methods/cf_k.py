"""CF-k: fine-tune only the last k layers on D_r, every other parameter frozen.

Goel et al., "Towards Adversarial Evaluations for Inexact Machine Unlearning", arXiv
2201.06640 (2022): "catastrophic forgetting - k" trains the last k layers of the original
model on the retain set and leaves the rest as it is; EU-k (:mod:`.eu_k`) re-initialises
those layers first. This module also holds what both share: which modules are "layers",
the choice of the last k (or of named ones), and the frozen rest.

Readings (the paper counts layers of its ResNet/AllCNN without defining them for any
model):

- a *layer* is a module with parameters of its own (``nn.Linear``, convolutions, batch
  norm, ...; ``parameters(recurse=False)``), in the model's registration order
  (``named_modules()``), counted from the output: the registry models register their
  ``head`` last, so their final ``nn.Linear`` is layer 1. A plug-in model whose modules are
  registered in another order than they run names its layers instead: ``layers`` (dotted
  module names, comma-separated; a name may also be a container, meaning all the layers in
  it) overrides ``k``.
- frozen parameters do not move at all: their gradients are masked and their values
  restored after every step (``FinetuneMethod.mask``, as SalUn's masked weights), so
  neither weight decay nor momentum moves them.
- frozen layers (and frozen modules holding buffers) stay in eval mode while the rest
  trains (``FinetuneMethod.eval_modules``): their batch-norm statistics stay the
  original's. Modules without parameters (ReLU, pooling, dropout) follow the model's
  training mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from classunlearn.errors import ParameterError
from classunlearn.methods import register
from classunlearn.methods.base import (
    Batch,
    FinetuneMethod,
    FinetuneParams,
    RunContext,
    UnlearnData,
)
from classunlearn.methods.ft import FT


@dataclass(frozen=True)
class LastLayersParams(FinetuneParams):
    """The layers a CF-k or EU-k run trains: the last `k` modules with parameters of their
    own, counted from the output (the final nn.Linear is layer 1), or the modules named in
    `layers` (comma-separated dotted names; overrides k)."""

    k: int = 1
    layers: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ParameterError(f"k must be >= 1 (the number of layers trained, counted from "
                                 f"the output), got {self.k}")
        if self.layers is not None and not layer_names(self.layers):
            raise ParameterError("layers must name at least one module (comma-separated dotted "
                                 "names, e.g. 'head' or 'body.3,head'), got an empty string")


def layer_names(spec: str) -> list[str]:
    """'body.3, head' -> ['body.3', 'head']."""
    return [s.strip() for s in spec.split(",") if s.strip()]


def parameter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(dotted name, module) of every module with parameters of its own, in registration
    order (input to output for the registry's models)."""
    return [(n, m) for n, m in model.named_modules()
            if next(m.parameters(recurse=False), None) is not None]


def choose_layers(model: nn.Module, params: LastLayersParams, method: str
                  ) -> list[tuple[str, nn.Module]]:
    """The layers `params` names on `model` (in registration order), or a ParameterError in
    one line naming the model's layers."""
    layers = parameter_layers(model)
    names = [n or "(root)" for n, _ in layers]
    if params.layers is None:
        if params.k > len(layers):
            raise ParameterError(
                f"{method}: k={params.k} but the model has {len(layers)} layers with parameters "
                f"({', '.join(names)}); use k <= {len(layers)}")
        return layers[-params.k:]
    chosen: set[str] = set()
    for want in layer_names(params.layers):
        inside = [n for n, _ in layers if n == want or n.startswith(want + ".")]
        if not inside:
            raise ParameterError(
                f"{method}: layers='{params.layers}': '{want}' is not a layer of this model "
                f"(nor contains one); its layers, input to output: {', '.join(names)}")
        chosen.update(inside)
    return [(n, m) for n, m in layers if n in chosen]


class LastLayers(FinetuneMethod):
    """Fine-tuning of chosen layers on D_r with the rest of the model frozen (CF-k; EU-k
    re-initialises them first in ``reset``)."""

    Params = LastLayersParams
    samples = "retain"

    def reset(self, layers: list[tuple[str, nn.Module]], ctx: RunContext) -> None:
        """Hook: what happens to the chosen layers before training (CF-k: nothing)."""

    def prepare(self, model: nn.Module, data: UnlearnData, params: LastLayersParams,
                ctx: RunContext) -> None:
        layers = choose_layers(model, params, self.name)
        self.reset(layers, ctx)
        trained = {id(p) for _, m in layers for p in m.parameters(recurse=False)}
        self.mask = {n: torch.full_like(p, id(p) in trained, dtype=torch.bool)
                     for n, p in model.named_parameters()}
        chosen = {n for n, _ in layers}
        inside = tuple(n + "." for n in chosen)
        self.eval_modules = [
            n for n, m in model.named_modules()
            if n not in chosen and not n.startswith(inside)
            and (next(m.parameters(recurse=False), None) is not None
                 or next(m.buffers(recurse=False), None) is not None)]
        ctx.notes["layers"] = ",".join(n or "(root)" for n, _ in layers)

    def loss(self, model: nn.Module, batch: Batch, params: LastLayersParams, ctx: RunContext
             ) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)

    def finish(self, model: nn.Module, params: LastLayersParams, ctx: RunContext
               ) -> nn.Module:
        self.mask = self.eval_modules = None  # the method object keeps no per-run state
        return model


@dataclass(frozen=True)
class CFkParams(LastLayersParams):
    """CF-k (FT's defaults: 10 epochs, lr 0.01; the paper leaves k a parameter, k = 1 is
    our default)."""

    epochs: int = 10
    lr: float = 0.01


@register
class CFk(LastLayers):
    """Catastrophic forgetting of the last k layers (Goel et al. 2022): FT on D_r with all
    but the last k layers frozen."""

    name = "cf-k"
    summary = "fine-tune only the last k layers on D_r (default k=1), the rest frozen"
    source = ("Goel et al. 2022, Towards Adversarial Evaluations for Inexact Machine "
              "Unlearning, arXiv 2201.06640 (CF-k)")
    Params = CFkParams
    # FT's, as they are: a reading (the paper trains CF-k like its fine-tuning baseline);
    # not tuned for the frozen body (classunlearn tune picks lr and epochs for a model)
    dataset_defaults: dict[str, dict] = {k: dict(v) for k, v in FT.dataset_defaults.items()}
