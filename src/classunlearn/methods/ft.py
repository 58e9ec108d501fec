"""FT: fine-tune the original model on D_r only, relying on catastrophic forgetting.

Warnecke et al., "Machine Unlearning of Features and Labels", NDSS 2023 (arXiv 2108.11577);
the same baseline as Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020
(arXiv 1911.04933), and Jia et al. 2023 (arXiv 2304.04934), whose code uses about 10
epochs at lr 0.01-0.1 (docs/readings.md section 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from classunlearn.methods import register
from classunlearn.methods.base import Batch, FinetuneMethod, FinetuneParams, RunContext


@dataclass(frozen=True)
class FTParams(FinetuneParams):
    """FT: plain SGD on D_r (defaults: 10 epochs, lr 0.01, as in docs/readings.md section 6)."""

    epochs: int = 10
    lr: float = 0.01


@register
class FT(FinetuneMethod):
    """Fine-tuning on the retain set (Warnecke et al. 2023; Golatkar et al. 2020)."""

    name = "ft"
    summary = "fine-tune on D_r only (catastrophic forgetting of the forget class)"
    source = "Warnecke et al. 2023, NDSS, arXiv 2108.11577; Golatkar et al. 2020, CVPR"
    Params = FTParams
    samples = "retain"
    # lr (and the method's other keys) chosen by scripts/tune_methods.py on the train splits;
    # epochs as a share of the recipe, the cheapest on the cost-privacy frontier
    # (benchmarks/frontier.py, docs/performance.md section 11; mnist1d: as tuned).
    dataset_defaults: dict[str, dict] = {
        "digits": {"lr": 0.3, "epoch_share": 10 / 10},
        "mnist-5k": {"lr": 0.1, "epoch_share": 10 / 7},
        "mnist1d": {"lr": 0.1, "epoch_share": 10 / 40},
    }

    def loss(self, model: nn.Module, batch: Batch, params: FTParams, ctx: RunContext
             ) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)
