"""GA (gradient ascent, "NegGrad"): maximise the cross-entropy of D_f.

Thudi et al., "Unrolling SGD: Understanding Factors Influencing Machine Unlearning",
IEEE EuroS&P 2022 (arXiv 2109.13398). Jia et al. 2023 (arXiv 2304.04934) run it for a few
epochs at lr 1e-5 to 1e-4 on ResNet-18; our small MLPs need a larger rate (see
``dataset_defaults`` and docs/methods.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from classunlearn.methods import register
from classunlearn.methods.base import Batch, FinetuneMethod, FinetuneParams, RunContext


@dataclass(frozen=True)
class GAParams(FinetuneParams):
    """GA: ascent on the forget cross-entropy (paper range: lr 1e-5..1e-4, few epochs)."""

    epochs: int = 5
    lr: float = 1e-4
    schedule: str = "constant"


@register
class GA(FinetuneMethod):
    """Gradient ascent on the forget set (Thudi et al. 2022)."""

    name = "ga"
    summary = "gradient ascent: minimise -CE on D_f only"
    source = "Thudi et al. 2022, IEEE EuroS&P, arXiv 2109.13398"
    Params = GAParams
    samples = "forget"
    # Chosen by scripts/tune_methods.py on the train splits (docs/methods.md).
    dataset_defaults: dict[str, dict] = {
        "digits": {"lr": 0.01, "epochs": 3},
        "mnist-5k": {"lr": 0.02, "epochs": 1},
        "mnist1d": {"lr": 0.02, "epochs": 1},
    }

    def loss(self, model: nn.Module, batch: Batch, params: GAParams, ctx: RunContext
             ) -> torch.Tensor:
        return -F.cross_entropy(model(batch.x), batch.y)
