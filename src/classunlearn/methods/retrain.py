"""Retrain: the gold standard every method is compared with (docs/readings.md section 1).

Not an unlearning method in the strict sense: it throws the original weights away,
re-initialises every module of the same architecture under the run's seed and trains it
from scratch on D_r with the recipe held in :class:`RetrainParams`. That recipe is the
original model's own (``methods.make_params(..., recipe=...)``: the study's recipe in
`bench`, the checkpoint's sidecar in `unlearn`), never a default of its own, so the result
is the retrained model θ_r of docs/readings.md section 1: the same procedure as the original
(``build_model`` under a seed, then ``train.train_model`` under the same seed; for the
registry's models re-initialising under a seed gives the same weights as building under
it), on D_r, from a fresh seed.

When the original was trained by a plug-in trainer or fine-tuned from an init checkpoint
(``classunlearn.trainers``), the run's ``RunContext.training`` carries them (the bench units
and `unlearn` pass the study's or the sidecar's): the fresh model first takes the init
checkpoint's weights, then the trainer trains it, as the original was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from classunlearn.errors import ParameterError
from classunlearn.methods import register
from classunlearn.methods.base import Method, MethodParams, RunContext, UnlearnData
from classunlearn.train import RECIPE_EXTRAS, Recipe, train_model

_RECIPE = Recipe()


@dataclass(frozen=True)
class RetrainParams(MethodParams):
    """The training recipe, field for field as :class:`classunlearn.train.Recipe`."""

    epochs: int = _RECIPE.epochs
    batch_size: int = _RECIPE.batch_size
    lr: float = _RECIPE.lr
    momentum: float = _RECIPE.momentum
    weight_decay: float = _RECIPE.weight_decay
    schedule: str = _RECIPE.schedule
    optimizer: str = _RECIPE.optimizer
    augment: str = _RECIPE.augment
    label_smoothing: float = _RECIPE.label_smoothing
    warmup_epochs: float = _RECIPE.warmup_epochs
    nesterov: bool = _RECIPE.nesterov

    def __post_init__(self) -> None:
        self.recipe()  # Recipe validates every field

    def to_dict(self) -> dict:
        """As ``Recipe.to_dict``: the later fields only where they differ from their
        default, so run records and bench keys read as before they existed."""
        d = super().to_dict()
        return {k: v for k, v in d.items() if not (k in RECIPE_EXTRAS and v == RECIPE_EXTRAS[k])}

    def recipe(self) -> Recipe:
        return Recipe(**self.to_dict())


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every module's parameters (``reset_parameters``) under `seed`, in place;
    batch-norm running statistics are reset too."""
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return model


@register
class Retrain(Method):
    """Retraining from scratch on D_r (the reference of docs/readings.md section 1)."""

    name = "retrain"
    summary = "retrain from scratch on D_r with the original's training recipe (gold standard)"
    source = ("the exact-unlearning reference (docs/readings.md section 1; e.g. Bourtoule et al. "
              "2021)")
    Params = RetrainParams
    follows_recipe = True

    def run(self, model: nn.Module, data: UnlearnData, params: RetrainParams, ctx: RunContext
            ) -> nn.Module:
        reinitialise(model, ctx.seed)
        training = ctx.training
        if training is not None:
            if training.recipe != params.recipe():
                raise ParameterError("retrain: the training procedure's recipe differs from "
                                     "its parameters; pass the recipe the original was "
                                     "trained with")
            out = training.train(model, data.x_retain, data.y_retain, ctx.seed,
                                 device=ctx.device, desc=self.name)
        else:
            out = train_model(model, data.x_retain, data.y_retain, params.recipe(),
                              seed=ctx.seed, device=ctx.device, desc=self.name)
        ctx.steps += params.epochs * math.ceil(len(data.y_retain) / params.batch_size)
        return out
