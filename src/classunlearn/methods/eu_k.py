"""EU-k: re-initialise the last k layers and train them from scratch on D_r, the rest frozen.

Goel et al., "Towards Adversarial Evaluations for Inexact Machine Unlearning", arXiv
2201.06640 (2022): "exact unlearning - k" retrains the last k layers on the retain set on
top of the original's frozen lower layers; exact for those layers, since nothing they
hold was fitted to D_f. It targets what fine-tuning leaves behind: the output layer keeps
what it learned about the forget class.

What is a layer, which are frozen and how (masked gradients, restored values, eval mode):
the readings in :mod:`.cf_k`, shared with CF-k. Here, in addition:

- the chosen layers get fresh weights from their own default initialisation
  (``reset_parameters``; batch-norm statistics reset too), drawn on the CPU under the
  run's seed in registration order, so they depend on the seed and nothing else (not on
  the original's weights, not on the device; the global RNG is left as it was). A layer
  without ``reset_parameters`` is refused.
- budget (a reading; the paper trains the k layers "from scratch"): the fresh layers
  train as a retrain of them would, with the original's own recipe: its epochs
  (``recipe_budget`` epoch_share 1.0) over all of D_r, its lr, momentum, weight decay,
  batch size, schedule and optimiser (``recipe_fields``). The recipe's augmentation is
  not applied (the fine-tuning loop never augments).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn

from classunlearn.errors import ParameterError
from classunlearn.methods import register
from classunlearn.methods.base import RunContext
from classunlearn.methods.cf_k import LastLayers, LastLayersParams
from classunlearn.train import Recipe

_RECIPE = Recipe()


@dataclass(frozen=True)
class EUkParams(LastLayersParams):
    """EU-k: the generic training recipe's settings; make_params replaces them with the
    original model's recipe (its epochs, lr, momentum, weight decay, batch size, schedule,
    optimiser), as a retrain of the k layers would use."""

    epochs: int = _RECIPE.epochs
    batch_size: int = _RECIPE.batch_size
    lr: float = _RECIPE.lr
    momentum: float = _RECIPE.momentum
    weight_decay: float = _RECIPE.weight_decay
    schedule: str = _RECIPE.schedule
    optimizer: str = _RECIPE.optimizer


def reinitialise_layers(layers: list[tuple[str, nn.Module]], seed: int, method: str) -> None:
    """Fresh weights for `layers` (in place): each module's ``reset_parameters`` on a CPU
    copy, in the order given, under `seed`; the global RNG is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in layers:
            if not callable(getattr(module, "reset_parameters", None)):
                raise ParameterError(
                    f"{method}: layer '{name}' ({type(module).__name__}) has no "
                    "reset_parameters, so it cannot be re-initialised; choose other layers "
                    "(--set layers=...) or use cf-k")
            fresh = copy.deepcopy(module).cpu()
            fresh.reset_parameters()
            own = chain(module.named_parameters(recurse=False),
                        module.named_buffers(recurse=False))
            with torch.no_grad():  # the layer's own tensors only, never a child's
                for key, tensor in own:
                    tensor.copy_(getattr(fresh, key))


@register
class EUk(LastLayers):
    """Exact unlearning of the last k layers (Goel et al. 2022): re-initialise them and
    train them from scratch on D_r with every other parameter frozen."""

    name = "eu-k"
    summary = ("re-initialise the last k layers (default k=1), train them from scratch on D_r "
               "with the rest frozen")
    source = ("Goel et al. 2022, Towards Adversarial Evaluations for Inexact Machine "
              "Unlearning, arXiv 2201.06640 (EU-k)")
    Params = EUkParams
    recipe_budget = {"epoch_share": 1.0}
    recipe_fields = ("lr", "momentum", "weight_decay", "batch_size", "schedule", "optimizer")

    def reset(self, layers: list[tuple[str, nn.Module]], ctx: RunContext) -> None:
        reinitialise_layers(layers, ctx.seed, self.name)
