"""l1-sparse: fine-tune on D_r with an L1 penalty γ_t‖θ‖₁ whose weight decays linearly.

Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023 (arXiv
2304.04934). Their code ("FT_l1") adds ``γ_t · Σ|θ|`` over all parameters to the retain
cross-entropy with γ_t = γ · (1 − t / (E − E₀)) in epoch t (γ = 5e-4, E₀ = ``no_l1_epochs``
final epochs without the penalty, 0 by default), SGD, about 10 epochs at lr about 0.01.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class L1SparseParams(FinetuneParams):
    """l1-sparse (defaults from Jia et al.'s code)."""

    epochs: int = 10
    lr: float = 0.01
    gamma: float = 5e-4  # initial L1 weight, decayed linearly to 0 over the L1 epochs
    no_l1_epochs: int = 0  # final epochs trained without the penalty

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma < 0:
            raise ParameterError(f"gamma must be >= 0, got {self.gamma}")
        if not 0 <= self.no_l1_epochs <= self.epochs:
            raise ParameterError(f"no_l1_epochs must be in 0..epochs, got {self.no_l1_epochs}")


def l1_weight(gamma: float, epoch: int, epochs: int, no_l1_epochs: int) -> float:
    """γ_t of Jia et al.: linear decay from γ in epoch 0, 0 in the last `no_l1_epochs`."""
    l1_epochs = epochs - no_l1_epochs
    if epoch >= l1_epochs:
        return 0.0
    return gamma * (1 - epoch / l1_epochs)


@register
class L1Sparse(FinetuneMethod):
    """Sparsity-aware fine-tuning (Jia et al., NeurIPS 2023)."""

    name = "l1-sparse"
    summary = "fine-tune on D_r plus a linearly decaying L1 penalty on all weights"
    source = "Jia et al. 2023, NeurIPS, arXiv 2304.04934 (Model Sparsity ... Unlearning)"
    Params = L1SparseParams
    samples = "retain"
    # lr (and the method's other keys) chosen by scripts/tune_methods.py on the train splits;
    # epochs as a share of the recipe, the cheapest on the cost-privacy frontier
    # (benchmarks/frontier.py, docs/performance.md section 11; mnist1d: as tuned).
    dataset_defaults: dict[str, dict] = {
        "digits": {"lr": 0.1, "gamma": 0.002, "epoch_share": 5 / 10},
        "mnist-5k": {"lr": 0.03, "gamma": 0.0005, "epoch_share": 10 / 7},
        "mnist1d": {"lr": 0.1, "gamma": 0.0005, "epoch_share": 10 / 40},
    }

    def prepare(self, model: nn.Module, data: UnlearnData, params: L1SparseParams,
                ctx: RunContext) -> None:
        # The loop does not expose the epoch: recover it from the step counter, with the
        # same pool size as FinetuneMethod._pool (D_r, or its retain_fraction subsample).
        n = len(data.y_retain)
        if params.retain_fraction < 1.0:
            n = max(1, round(params.retain_fraction * n))
        self.steps_per_epoch = math.ceil(n / params.batch_size)
        self.first_step = ctx.steps

    def loss(self, model: nn.Module, batch: Batch, params: L1SparseParams, ctx: RunContext
             ) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)  # + γ_t‖θ‖₁, added by the engine

    def l1_coefficient(self, params: L1SparseParams, ctx: RunContext) -> float:
        epoch = (ctx.steps - self.first_step) // self.steps_per_epoch
        return l1_weight(params.gamma, epoch, params.epochs, params.no_l1_epochs)
