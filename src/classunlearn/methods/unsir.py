"""UNSIR: learn error-maximising noise for the forget class(es), impair the model on that
noise mixed with a retain subsample, then repair it on the retain subsample.

Tarun, Chundawat, Mandal, Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE
Transactions on Neural Networks and Learning Systems 2023 (arXiv 2111.08947). The
authors' notebook: per forget class, a batch of noise N is optimised with Adam (lr 0.1,
5 × 8 steps) to maximise CE(model(N), f) − 0.1·mean‖N‖² against the frozen model; then one
epoch of Adam (lr 0.02) on the noise labelled f plus a retain subsample (impair) and one
epoch of Adam (lr 0.01) on the retain subsample alone (repair). The retain subsample is
``retain_fraction`` of D_r (the notebook keeps 1,000 of 5,000 images per CIFAR-10 class,
about 35 mini-batches of 256 per phase).

Scaled to our small datasets: one epoch over 20% of digits' D_r in batches of 256 is one or
two optimiser steps, far too few for the repair to undo the impair step (Acc_r fell to
about 90). The defaults therefore use half of D_r in batches of 16, which gives each
phase a few dozen steps as in the notebook (docs/methods.md has the numbers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from classunlearn.data.core import to_input
from classunlearn.errors import ParameterError
from classunlearn.methods import register
from classunlearn.methods.base import (
    Batch,
    FinetuneMethod,
    FinetuneParams,
    RunContext,
    UnlearnData,
)


@dataclass(frozen=True)
class UNSIRParams(FinetuneParams):
    """UNSIR: `lr`/`epochs` are the impair step's, `repair_lr` the repair step's."""

    epochs: int = 1  # epochs of the impair step and of the repair step (each)
    lr: float = 0.02  # impair learning rate
    repair_lr: float = 0.01
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    batch_size: int = 16  # scaled (notebook: 256), see the module docstring
    retain_fraction: float = 0.5  # scaled (notebook: 0.2)
    noise_size: int = 128  # noise samples per forget class
    noise_steps: int = 40  # Adam steps on the noise (5 epochs x 8 steps in the notebook)
    noise_lr: float = 0.1
    noise_reg: float = 0.1  # weight of mean ‖N‖² in the noise objective

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_size < 1 or self.noise_steps < 0:
            raise ParameterError("noise_size must be >= 1 and noise_steps >= 0, got "
                                 f"{self.noise_size}, {self.noise_steps}")
        if not (self.repair_lr >= 0 and self.noise_lr >= 0 and self.noise_reg >= 0):
            raise ParameterError("repair_lr, noise_lr and noise_reg must be >= 0")


def error_maximising_noise(model: nn.Module, shape: tuple[int, ...], label: int,
                           params: UNSIRParams, device: torch.device) -> torch.Tensor:
    """Noise that the frozen `model` finds as unlike class `label` as it can, with a
    penalty on its energy (UNSIR's noise objective)."""
    was_training = model.training
    model.eval()
    noise = torch.randn(params.noise_size, *shape, device=device, requires_grad=True)
    opt = torch.optim.Adam([noise], lr=params.noise_lr)
    target = torch.full((params.noise_size,), label, dtype=torch.int64, device=device)
    for _ in range(params.noise_steps):
        energy = noise.pow(2).flatten(1).sum(1).mean()
        loss = -F.cross_entropy(model(noise), target) + params.noise_reg * energy
        (grad,) = torch.autograd.grad(loss, noise)
        noise.grad = grad
        opt.step()
    model.train(was_training)
    return noise.detach()


@register
class UNSIR(FinetuneMethod):
    """UNSIR (Tarun et al., IEEE TNNLS 2023): error-maximising noise, impair, repair."""

    name = "unsir"
    summary = "error-maximising noise for the forget class, impair on it, repair on D_r"
    source = "Tarun et al. 2023, IEEE TNNLS, arXiv 2111.08947 (Fast Yet Effective ...)"
    Params = UNSIRParams
    # Chosen by scripts/tune_methods.py on the train splits (docs/methods.md).
    dataset_defaults: dict[str, dict] = {
        "digits": {"lr": 0.005, "repair_lr": 0.0003},
        "mnist-5k": {"lr": 0.002, "repair_lr": 0.0003},
        "mnist1d": {"lr": 0.005, "repair_lr": 0.001},
    }

    def phases(self, model: nn.Module, data: UnlearnData, params: UNSIRParams,
               ctx: RunContext) -> list[tuple[UnlearnData, UNSIRParams]]:
        """Impair: the noise, labelled with its forget class, and the retain subsample, at
        `lr`; repair: the same retain subsample alone, at `repair_lr`. Each phase has its
        own Adam, as in the notebook. The noise is learnt here, on the frozen model."""
        dev = ctx.device
        keep = max(1, round(params.retain_fraction * len(data.y_retain)))
        idx = torch.randperm(len(data.y_retain), generator=ctx.generator)[:keep]
        xr, yr = to_input(data.x_retain[idx].to(dev)), data.y_retain[idx].to(dev)
        shape = tuple(data.x_forget.shape[1:])
        noise = torch.cat([error_maximising_noise(model, shape, f, params, dev)
                           for f in data.forget_classes])
        noise_y = torch.cat([torch.full((params.noise_size,), f, dtype=torch.int64, device=dev)
                             for f in data.forget_classes])
        no_noise = dataclasses.replace(data, x_forget=noise[:0], y_forget=noise_y[:0],
                                       x_retain=xr, y_retain=yr)
        # the subsample is drawn above, once for both phases: the pools take all of it
        whole = dataclasses.replace(params, retain_fraction=1.0)
        return [(dataclasses.replace(no_noise, x_forget=noise, y_forget=noise_y), whole),
                (no_noise, dataclasses.replace(whole, lr=params.repair_lr))]

    def loss(self, model: nn.Module, batch: Batch, params: UNSIRParams, ctx: RunContext
             ) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)
