"""RL (random labels): relabel each forget sample with a fixed random retained class and
fine-tune on D_r plus the relabelled D_f.

Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020 (arXiv 1911.04933);
used as a baseline by Hayes et al. 2024 (arXiv 2403.01218), Jia et al. 2023 (arXiv
2304.04934) and Fan et al. 2024 (SalUn, arXiv 2310.12508), whose code trains about 10
epochs at lr about 0.01.
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


@dataclass(frozen=True)
class RLParams(FinetuneParams):
    """RL: fine-tuning on D_r ∪ relabelled D_f (10 epochs, lr 0.01 as in SalUn's code)."""

    epochs: int = 10
    lr: float = 0.01


def random_labels(data: UnlearnData, generator: torch.Generator) -> torch.Tensor:
    """One fixed random label per forget sample, drawn uniformly from the retained classes
    (so never the sample's own label, nor any other forget class)."""
    keep = torch.tensor(data.retain_classes, dtype=torch.int64)
    pick = torch.randint(len(keep), (len(data.y_forget),), generator=generator)
    return keep[pick]


def relabelled(batch: Batch, labels: torch.Tensor) -> torch.Tensor:
    """The batch's labels with every forget row replaced by its random label."""
    return torch.where(batch.is_forget, labels[batch.forget_row.clamp_min(0)], batch.y)


@register
class RL(FinetuneMethod):
    """Random labelling (Golatkar et al. 2020; Hayes et al. 2024)."""

    name = "rl"
    summary = "random labels: fine-tune on D_r plus D_f relabelled to random retained classes"
    source = "Golatkar et al. 2020, CVPR, arXiv 1911.04933; Hayes et al. 2024, arXiv 2403.01218"
    Params = RLParams
    # lr (and the method's other keys) chosen by scripts/tune_methods.py on the train splits;
    # epochs as a share of the recipe, the cheapest on the cost-privacy frontier
    # (benchmarks/frontier.py, docs/performance.md section 11; mnist1d: as tuned).
    dataset_defaults: dict[str, dict] = {
        "digits": {"lr": 0.01, "epoch_share": 5 / 10},
        "mnist-5k": {"lr": 0.01, "epoch_share": 1 / 7},
        "mnist1d": {"lr": 0.01, "epoch_share": 10 / 40},
    }

    def prepare(self, model: nn.Module, data: UnlearnData, params: RLParams, ctx: RunContext
                ) -> None:
        self.labels = random_labels(data, ctx.generator).to(ctx.device)

    def loss(self, model: nn.Module, batch: Batch, params: RLParams, ctx: RunContext
             ) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), relabelled(batch, self.labels))
