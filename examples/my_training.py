"""A user's own training function, outside the classunlearn package (docs/own_training.md).

classunlearn trains every model its audit compares with (references, U-LiRA's shadow
originals and retrains, the `retrain` row) with it, wherever a trainer is accepted:
``classunlearn train --trainer examples/my_training.py:train ...`` (and `bench`), or
``trainer=train`` / ``trainer="examples/my_training.py:train"`` in ``cu.audit`` and
``cu.bench``. `forget`, `audit` and `tune` read it from the checkpoint's sidecar.

The contract: ``train(model, x, y, seed, device)`` gets a freshly built model (already
holding the ``--init`` checkpoint's weights, if any), the training inputs (float, as the
model takes them) and labels of what it must learn (D, D_r or a shadow's half), a seed and
a device; it returns the trained model and is deterministic for a given seed.
"""

import math

import torch
from torch import nn

EPOCHS = 5
BATCH_SIZE = 64
LR = 2e-3
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1
WARMUP_EPOCHS = 1


def schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int,
          device: torch.device) -> nn.Module:
    """AdamW with label smoothing, a linear warm-up then cosine, and random horizontal flips
    of image inputs; every random draw comes from a generator seeded by `seed`."""
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    per_epoch = math.ceil(len(x) / BATCH_SIZE)
    total, warmup = EPOCHS * per_epoch, WARMUP_EPOCHS * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedule(t, total, warmup))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=gen).split(BATCH_SIZE):
            xb = x[idx]
            if xb.dim() == 4:  # images: flip a random half left to right
                flip = torch.rand(len(xb), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = loss_fn(model(xb.to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model
