"""SalUn: random labelling restricted to the weights most salient for the forget loss.

Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in
Both Image Classification and Generation", ICLR 2024 (arXiv 2310.12508). Their code
computes the gradient of the forget cross-entropy over D_f (summed over batches, with the
model in eval mode), takes its magnitude, keeps the top ``threshold`` share of all weights
across the whole network (default 50%) and then runs RL, multiplying every gradient by the
mask. Masked-out weights here do not move at all: their gradient is zeroed (so momentum
never builds up) and, because SGD's weight decay would still shrink them, their values
are restored bit for bit after every step (``FinetuneMethod.mask``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from classunlearn.data.core import to_input
from classunlearn.errors import ParameterError
from classunlearn.methods import register
from classunlearn.methods.base import FinetuneParams, RunContext, UnlearnData
from classunlearn.methods.rl import RL


@dataclass(frozen=True)
class SalUnParams(FinetuneParams):
    """SalUn (defaults from Fan et al.'s code: threshold 0.5, RL for 10 epochs)."""

    epochs: int = 10
    lr: float = 0.01
    threshold: float = 0.5  # share of all weights kept trainable (highest saliency)
    mask_batch_size: int = 256  # batch size of the saliency pass (no effect on its value)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold <= 1.0:
            raise ParameterError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.mask_batch_size < 1:
            raise ParameterError(f"mask_batch_size must be >= 1, got {self.mask_batch_size}")


def saliency_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threshold: float,
                  batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Boolean mask per parameter: True for the top `threshold` share of |∇_θ CE(D_f)|,
    ranked globally over all parameters (exactly that many entries are True)."""
    was_training = model.training
    model.eval()
    params = dict(model.named_parameters())
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(0, len(x), batch_size):
        loss = F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size], reduction="sum")
        step = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for n, g in zip(params, step, strict=True):
            if g is not None:
                grads[n] += g
    model.train(was_training)
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = max(1, round(threshold * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True
    out, start = {}, 0
    for n, g in grads.items():
        out[n] = chosen[start:start + g.numel()].view_as(g)
        start += g.numel()
    return out


@register
class SalUn(RL):
    """Saliency unlearning (Fan et al., ICLR 2024): RL on the salient weights only."""

    name = "salun"
    summary = "RL restricted to the weights with the largest forget-loss gradient (50%)"
    source = "Fan et al. 2024, ICLR, arXiv 2310.12508 (SalUn)"
    Params = SalUnParams
    # lr (and the method's other keys) chosen by scripts/tune_methods.py on the train splits;
    # epochs as a share of the recipe, the cheapest on the cost-privacy frontier
    # (benchmarks/frontier.py, docs/performance.md section 11; mnist1d: as tuned).
    dataset_defaults: dict[str, dict] = {
        "digits": {"lr": 0.01, "epoch_share": 5 / 10},
        "mnist-5k": {"lr": 0.01, "epoch_share": 1 / 7},
        "mnist1d": {"lr": 0.01, "epoch_share": 10 / 40},
    }

    def prepare(self, model: nn.Module, data: UnlearnData, params: SalUnParams,
                ctx: RunContext) -> None:
        super().prepare(model, data, params, ctx)  # the random labels
        self.mask = saliency_mask(model, to_input(data.x_forget.to(ctx.device)),
                                  data.y_forget.to(ctx.device), params.threshold,
                                  params.mask_batch_size)
        kept = sum(int(m.sum()) for m in self.mask.values())
        ctx.notes["mask_share"] = kept / sum(m.numel() for m in self.mask.values())

    def finish(self, model: nn.Module, params: SalUnParams, ctx: RunContext) -> nn.Module:
        self.mask = None  # the method object keeps no per-run tensors
        return model
