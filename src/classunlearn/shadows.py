"""Shadow models for U-LiRA (docs/readings.md section 4), trained as one stacked ensemble.

U-LiRA needs N shadow models per configuration, each trained from scratch on a random
half of the data. The contract of :func:`train_ensemble`: shadow model i is, to float
rounding, ``train.train_model`` on its half with ``seeds[i]`` (initial weights, batches,
number of steps, learning-rate schedule, optimizer), whichever engine trains it; so the
shadows, the bench's retrained models and the audit's replayed retrains are one
procedure, and U-LiRA cannot tell them apart by how they were trained.

Two engines. The loop calls ``train_model`` on each model in turn; it is the reference,
and the engine for models the stacked engine cannot run (``stacked=None`` falls back to
it). The stacked engine stacks the N copies' parameters into one tensor per layer; at
global step t every model that has not finished takes its own step t on its own batch
(batches of different sizes padded and masked out of the loss), and a written-out
SGD/Adam/AdamW (``_StackedOptimizer``, Nesterov too) updates all of them with a per-model
learning rate, since models with different subset sizes take different numbers of steps and
so run different schedules (and warm-ups); label smoothing enters each model's loss as in
train_model. With ``Recipe.augment`` each model's batch is augmented with its own generator
(``train.augment_generator(seeds[i])``), the draws train_model takes, in the same order.

Batch norm (``resnet18``) runs through the vmap fallback with stacked buffers: each model
normalises with its own batch statistics and updates its own running statistics and
num_batches_tracked. Padded rows would enter those statistics, so for such models each
step groups the models by batch width, one vmapped call per group (all models at once
except at epoch ends), and finished models sit out. Measured on this CPU with one thread,
8 ResNet-18s (width 8) for one epoch on 512 3x32x32 images, batches of 64: stacked 7.8 s,
loop 9.1 s (crop-flip: 6.8 s vs 9.4 s); so stacked is the default on the CPU as on CUDA.
In float32 the two engines agree to rounding, but a ReLU input within rounding of 0 can
flip between them; on tiny batch-norm batches (8 values a channel) that is amplified
(tests/test_shadows.py: exact in float64, 4e-5 at lr 1e-3 in float32).

How the stacked step runs, and why (measured on the 2-core CPU; ``benchmarks/shadows.py``):

- Models built from Linear/Conv/ReLU/pooling/Flatten layers (the registry's ``mlp`` and
  ``cnn``) run through a small interpreter over the stacked weights, not through
  ``vmap(functional_call)``: linear layers are one ``baddbmm`` for all models, with the
  weights stored as (N, in, out) so their gradients come out contiguous (no copy in
  AccumulateGrad). Other stackable models fall back to ``torch.func.vmap``.
- Convolutions. ``vmap`` turns a batched conv into one grouped conv; on this CPU with one
  thread, oneDNN's grouped conv (backward above all) is slower than the same convs run
  model by model. The digits CNN is compute-bound: convs are most of a step, and a
  model's own conv in channels-last layout already runs near the core's fp32 peak
  (about 100 GFLOP/s; 1.6x faster than NCHW for the 32-channel 8x8 layer), so batching
  cannot make them cheaper. With one thread each model's conv therefore runs on its own,
  channels-last; ``unbind`` keeps the backward one op per layer. On CUDA, and on a CPU
  with several threads, one grouped conv serves all models: there each op's launch or
  parallel region is what costs, and fewer, bigger ops win by far.
- An ``AdaptiveAvgPool`` whose output size equals its input size is the identity and is
  skipped (the digits CNN pools 4x4 to 4x4: about a tenth of a loop step); ReLUs after a
  conv or linear layer work in place.
- Inputs stay resident on the device in the layout the first layer wants.

Memory. A stacked call holds all its models' weights, gradients, optimizer states and
activations at once (3 to 6 times the loop's peak at N = 8 to 32), so the models are run in
chunks of :func:`chunk_size` (given, or as many as :func:`memory_budget` allows by the
estimate of :func:`model_memory`). The same machinery unlearns the shadows: see
``methods.stacked``.

``torch.compile`` is deliberately not used (docs/readings.md section 10: it returned zero
gradients on this CPU build).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from classunlearn.data.core import Images, to_input
from classunlearn.errors import ParameterError, TrainingDiverged
from classunlearn.models import MODELS, Classifier, build_model
from classunlearn.train import (
    Recipe,
    apply_augment,
    augment_draws,
    augment_generator,
    batch_sizes,
    check_augment,
    check_loss,
    epoch_batches,
    lr_factor,
    resolve_device,
    show_progress,
    train_model,
    warmup_steps,
)
from classunlearn.trainers import Training

# ---------------------------------------------------------------------------------------
# Which examples each shadow model sees, and in what order
# ---------------------------------------------------------------------------------------


def balanced_halves(n_examples: int, n_models: int, seed: int) -> torch.Tensor:
    """Membership masks for `n_models` shadow models over `n_examples` examples.

    Returns a bool tensor (n_models, n_examples): row i says which examples model i trains
    on. Models come in complementary pairs: model 2k trains on a random half of the
    examples (``ceil(n / 2)`` of them) and model 2k + 1 on the other half, each pair drawn
    independently. So, as in LiRA (Carlini et al. 2022), every example is in exactly
    ``n_models // 2`` models and has as many IN as OUT models; and, unlike an arbitrary
    balanced design, leaving one pair out leaves the other models' data independent of the
    pair's (U-LiRA's leave-one-out relies on that, see ``audit.ulira``). With an odd
    `n_models` the last model gets an independent random half. Depends on `seed` only.
    """
    if n_models < 2:
        raise ParameterError(f"balanced_halves needs n_models >= 2, got {n_models}")
    if n_examples < 1:
        raise ParameterError(f"balanced_halves needs n_examples >= 1, got {n_examples}")
    gen = torch.Generator().manual_seed(seed)
    half = (n_examples + 1) // 2
    rows = []
    for _ in range(n_models // 2):
        first = torch.zeros(n_examples, dtype=torch.bool)
        first[torch.randperm(n_examples, generator=gen)[:half]] = True
        rows += [first, ~first]
    if n_models % 2:
        last = torch.zeros(n_examples, dtype=torch.bool)
        last[torch.randperm(n_examples, generator=gen)[:half]] = True
        rows.append(last)
    return torch.stack(rows)


def complementary_pairs(masks) -> bool:
    """True when rows 2k and 2k + 1 of `masks` are complements for every k (an even number
    of rows), as :func:`balanced_halves` makes them."""
    m = torch.as_tensor(masks).bool()
    if m.dim() != 2 or m.shape[0] < 2 or m.shape[0] % 2:
        return False
    return bool((m[0::2] ^ m[1::2]).all())


def _subsets(masks: torch.Tensor) -> list[torch.Tensor]:
    if masks.dim() != 2 or masks.dtype != torch.bool:
        raise ParameterError(
            f"masks must be a bool tensor (n_models, n_examples), got {masks.dtype} "
            f"{tuple(masks.shape)}; see balanced_halves()"
        )
    subsets = [row.nonzero().flatten() for row in masks.cpu()]
    empty = [i for i, s in enumerate(subsets) if len(s) == 0]
    if empty:
        raise ParameterError(f"shadow model(s) {empty} have no training examples in masks")
    return subsets


def _check_stream_args(epochs: int, batch_size: int) -> None:
    if epochs < 0:
        raise ParameterError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")


def _model_stream(subset: torch.Tensor, epochs: int, batch_size: int, seed: int
                  ) -> Iterator[torch.Tensor]:
    """One model's batches, as indices into x: exactly what ``train_model(..., seed=seed)``
    draws on ``x[subset]``, mapped back through `subset`."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in epoch_batches(len(subset), batch_size, gen):
            yield subset[idx]


def _total_steps(subset: torch.Tensor, recipe: Recipe) -> int:
    return recipe.epochs * len(batch_sizes(len(subset), recipe.batch_size))


def index_streams(masks: torch.Tensor, epochs: int, batch_size: int, seeds: Sequence[int]
                  ) -> list[list[torch.Tensor]]:
    """The batches every shadow model trains on: entry i lists model i's batches in order,
    each an int64 tensor of indices into x.

    Model i makes its own shuffled pass over its subset (the True entries of ``masks[i]``)
    every epoch, drawn from ``torch.Generator().manual_seed(seeds[i])`` and cut by
    ``train.batch_sizes`` (the last batch keeps the rest; a last batch of one is merged
    into the one before): the batches ``train_model`` takes on that subset with that seed.
    Models with different subset sizes take different numbers of steps.
    """
    _check_stream_args(epochs, batch_size)
    subsets = _subsets(masks)
    if len(seeds) != len(subsets):
        raise ParameterError(f"{len(subsets)} masks but {len(seeds)} seeds; one seed per model")
    return [list(_model_stream(s, epochs, batch_size, seed)) for s, seed in zip(subsets, seeds)]


# ---------------------------------------------------------------------------------------
# The stacked forward pass
# ---------------------------------------------------------------------------------------

_CONVS = {nn.Conv1d: (1, F.conv1d), nn.Conv2d: (2, F.conv2d)}
_POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2}


class _Unsupported(Exception):
    """The interpreter cannot run this model; use the vmap fallback."""


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    if type(module) is nn.Sequential:
        out: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}{name}.")
        return out
    return [(prefix, module)]


def _pool_is_identity(m: nn.Module, spatial: tuple[int, ...]) -> bool:
    if not isinstance(m, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d):
        return False
    size = m.output_size
    size = (size,) * len(spatial) if isinstance(size, int) else tuple(size)
    return all(s is None or s == h for s, h in zip(size, spatial))


def _plan(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list, bool]:
    """The model as a list of (kind, module, parameter prefix) steps, and whether the first
    step is a Flatten (then inputs are gathered already flat). Raises _Unsupported."""
    if type(model) is not Classifier or type(model.body) is not nn.Sequential:
        raise _Unsupported("not a plain Classifier with a Sequential body")
    if any(True for _ in model.buffers()):
        raise _Unsupported("the model has buffers")
    leaves = _leaves(model.body, "body.") + [("head.", model.head)]
    spatial_dims: int | None = len(input_shape) - 1 if len(input_shape) > 1 else None
    steps: list[tuple[str, nn.Module, str]] = []
    flat_input = False
    for k, (prefix, m) in enumerate(leaves):
        kind = type(m)
        if kind is nn.Identity:
            continue
        if kind is nn.Flatten:
            if (m.start_dim, m.end_dim) != (1, -1):
                raise _Unsupported("Flatten with other dims")
            if spatial_dims is not None:
                if k == 0:
                    flat_input = True
                else:
                    steps.append(("flatten", m, prefix))
            spatial_dims = None
        elif kind is nn.Linear:
            if spatial_dims is not None:
                raise _Unsupported("Linear on unflattened input")
            steps.append(("linear", m, prefix))
        elif kind is nn.ReLU:
            steps.append(("relu", m, prefix))
        elif kind in _CONVS:
            if spatial_dims != _CONVS[kind][0] or m.groups != 1 or m.padding_mode != "zeros":
                raise _Unsupported(f"{m}")
            steps.append(("conv", m, prefix))
        elif kind in _POOLS:
            if spatial_dims != _POOLS[kind] or getattr(m, "return_indices", False):
                raise _Unsupported(f"{m}")
            steps.append(("pool", m, prefix))
        else:
            raise _Unsupported(f"layer {kind.__name__}")
    if spatial_dims is not None:
        raise _Unsupported("the output is not flat")
    return steps, flat_input


class _StackedNet:
    """Runs N copies of a Linear/Conv/ReLU/pool/Flatten model on stacked weights.

    Activations are held in one of three forms: ``dense`` (N, B, F); ``split``, a list of
    N per-model tensors (B, C, *spatial) (CPU convolutions, channels-last for 2-D); or
    ``grouped`` (B, N*C, *spatial), where one grouped convolution serves all models.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], conv_mode: str
                 ) -> None:
        if conv_mode not in ("split", "grouped"):
            raise ValueError(f"conv_mode must be 'split' or 'grouped', got {conv_mode!r}")
        self.steps, self.flat_input = _plan(model, input_shape)
        # Linear weights are stacked as (N, in, out): the matmul's weight gradient then
        # comes out contiguous and AccumulateGrad does not copy it every step.
        self.transposed = {p + "weight" for kind, _, p in self.steps if kind == "linear"}
        self.conv_mode = conv_mode
        self.channels_last = conv_mode == "split" and len(input_shape) == 3

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The inputs as they stay resident on the device, in the first layer's layout."""
        if self.flat_input or x.dim() == 2:
            return x.reshape(len(x), -1).contiguous()
        if self.channels_last:
            return x.permute(0, 2, 3, 1).contiguous()  # (n, H, W, C)
        return x.contiguous()

    exact_widths = False  # padded rows are weighted out of the loss; no buffers

    def __call__(self, params: dict[str, torch.Tensor], xb: torch.Tensor,
                 members: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, B, K) of the N models on their batches xb (N, B, ...), each already in
        the layout :meth:`prepare` gives (``xr[idx]`` for idx (N, B))."""
        n, b = xb.shape[:2]
        if xb.dim() == 3:
            form, h = "dense", xb
        elif self.conv_mode == "split":
            form = "split"
            h = [t.permute(0, 3, 1, 2) for t in xb.unbind(0)] if self.channels_last \
                else list(xb.unbind(0))
        else:
            form, h = "grouped", xb.transpose(0, 1).flatten(1, 2)
        fresh = False  # h was just made by a conv or linear layer (safe to overwrite)
        for kind, m, prefix in self.steps:
            if kind == "relu":
                # In place after conv/linear: their backward needs their inputs, not outputs.
                relu = torch.relu_ if fresh else torch.relu
                h = [relu(t) for t in h] if form == "split" else relu(h)
            elif kind == "linear":  # weights stored transposed: (N, in, out)
                w = params[prefix + "weight"]
                bias = params.get(prefix + "bias")
                h = torch.bmm(h, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), h, w)
            elif kind == "pool":
                spatial = tuple((h[0] if form == "split" else h).shape[2:])
                if not _pool_is_identity(m, spatial):
                    h = [m(t) for t in h] if form == "split" else m(h)
            elif kind == "conv":
                conv = _CONVS[type(m)][1]
                w, bias = params[prefix + "weight"], params.get(prefix + "bias")
                args = (m.stride, m.padding, m.dilation)
                if form == "split":
                    biases = bias.unbind(0) if bias is not None else [None] * n
                    h = [conv(t, wi, bi, *args) for t, wi, bi in zip(h, w.unbind(0), biases)]
                else:
                    h = conv(h, w.flatten(0, 1), None if bias is None else bias.flatten(),
                             *args, groups=n)
            elif kind == "flatten":
                if form == "split":
                    h = torch.stack([t.flatten(1) for t in h])
                elif form == "grouped":
                    h = h.reshape(b, n, -1).transpose(0, 1)
                form = "dense"
            fresh = kind in ("conv", "linear")
        return h


class _VmapNet:
    """Fallback for models the interpreter does not know (other layers, batch norm):
    torch.func.vmap over functional_call, one stacked copy of every parameter and buffer.

    Buffers (batch norm's running statistics and num_batches_tracked) are stacked too and
    updated in place, each model's from its own batch statistics; so a call must not hold
    padded rows or finished models (``exact_widths``: the trainer groups models by batch
    width and passes the group's indices as `members`)."""

    def __init__(self, model: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
        from torch.func import functional_call, vmap

        base = copy.deepcopy(model).to("meta").train()
        self.buffers = buffers

        def one(p: dict, bufs: dict, xb: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (p, bufs), (xb,))

        self.fn = vmap(one)
        self.transposed: set[str] = set()
        self.flat_input, self.channels_last = False, False
        self.exact_widths = bool(buffers)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def probe(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> None:
        """Run the models once on two examples (buffers copied, nothing kept); raises
        _Unsupported when vmap cannot run them (dropout, data-dependent control flow)."""
        bufs = {k: v.clone() for k, v in self.buffers.items()}
        n = len(next(iter(params.values())))
        xb = x[:2].unsqueeze(0).expand(n, *x[:2].shape)
        try:
            with torch.no_grad():
                self.fn({k: v.detach() for k, v in params.items()}, bufs, xb)
        except (RuntimeError, ValueError, NotImplementedError, TypeError) as e:
            raise _Unsupported(f"vmap: {e}") from None

    def __call__(self, params: dict[str, torch.Tensor], xb: torch.Tensor,
                 members: torch.Tensor | None = None) -> torch.Tensor:
        if members is None:
            return self.fn(params, self.buffers, xb)
        bufs = {k: v[members] for k, v in self.buffers.items()}
        out = self.fn(params, bufs, xb)
        with torch.no_grad():
            for k, v in bufs.items():
                self.buffers[k][members] = v
        return out


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def _check_inputs(x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, seeds: list[int]
                  ) -> list[torch.Tensor]:
    if len(x) != len(y):
        raise ParameterError(f"{len(x)} inputs but {len(y)} labels; they must match")
    if masks.dim() != 2 or masks.shape != (len(seeds), len(x)):
        raise ParameterError(
            f"masks must be shaped (len(seeds), len(x)) = ({len(seeds)}, {len(x)}), got "
            f"{tuple(masks.shape)}; build them with balanced_halves(len(x), len(seeds), seed)"
        )
    return _subsets(masks)


def _check_losses(per_model: torch.Tensor, desc: str, step: int,
                  numbers: Sequence[int] | None = None) -> None:
    """check_loss on the largest |loss| (losses may be negative: gradient ascent), naming
    its model when the run stops: ``numbers[i]`` for row i (default i)."""
    try:
        check_loss(per_model.detach().abs().max(), desc, step)
    except TrainingDiverged:
        values = torch.nan_to_num(per_model.detach().abs(), nan=math.inf)
        i = int(values.argmax())
        number = i if numbers is None else numbers[i]
        check_loss(per_model[i], f"{desc} (shadow model {number})", step)
        raise


def _fused_sgd_works(dev: torch.device) -> bool:
    """Whether torch's fused SGD kernel (``torch._fused_sgd_``, what ``SGD(fused=True)``
    runs; CPU since torch 2.4) runs on this device type (probed once per type)."""
    if dev.type not in _FUSED_SGD:
        fused = getattr(torch, "_fused_sgd_", None)
        try:
            p, g, b = (torch.ones(3, device=dev) for _ in range(3))
            fused([p], [g], [b], weight_decay=0.5, momentum=0.9, lr=0.0, dampening=0.0,
                  nesterov=False, maximize=False, is_first_step=False)
            _FUSED_SGD[dev.type] = bool(torch.equal(b.cpu(), torch.full((3,), 2.4)))
        except (TypeError, RuntimeError, NotImplementedError):
            _FUSED_SGD[dev.type] = False
    return _FUSED_SGD[dev.type]


_FUSED_SGD: dict[str, bool] = {}


class _StackedOptimizer:
    """``train.make_optimizer``'s optimizer over stacked parameters, with its own learning
    rate for each model: torch.optim.SGD (dampening 0, Nesterov when the recipe says so),
    torch.optim.Adam (default betas and eps, L2 weight decay, not AMSGrad) or
    torch.optim.AdamW (the same Adam step, the weights first shrunk by lr x weight decay),
    written out because torch's optimizers take one learning rate per tensor and each model
    here has its own schedule.
    """

    def __init__(self, params: list[torch.Tensor], recipe: Recipe,
                 update_masks: list[torch.Tensor | None] | None = None) -> None:
        # update_masks (one per parameter, 0/1 in its dtype, or None) freeze entries: their
        # gradient, weight decay included, is zeroed before the update, so they never move;
        # exactly what masking the gradient and restoring the frozen entries gives (SalUn),
        # at one multiply per step instead of three passes
        self.params, self.recipe = params, recipe
        self.update_masks = update_masks or [None] * len(params)
        self.state: list[list[torch.Tensor]] = [[] for _ in params]
        self.steps = 0
        # SGD with momentum: weight decay and the momentum buffer in one pass of torch's
        # fused kernel (given lr 0, it leaves the weights alone), then each model's own
        # learning rate in one more; bitwise what the three separate passes give
        # (tests/test_shadows.py), and the optimizer step of a fine-tuning replay on 16
        # MLPs about a third cheaper (docs/performance.md section 11)
        self.fused = (recipe.optimizer == "sgd" and recipe.momentum != 0 and bool(params)
                      and not getattr(recipe, "nesterov", False)
                      and _fused_sgd_works(params[0].device))

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """Update every model; lr is (N,), model i's learning rate for this step. Works in
        place on the gradients (they are dropped before the next backward)."""
        r = self.recipe
        self.steps += 1
        if self.fused:
            self._fused_sgd_step(lr)
            return
        for p, state, keep in zip(self.params, self.state, self.update_masks, strict=True):
            lr_p = lr.view(-1, *[1] * (p.dim() - 1))
            if r.optimizer == "adamw":  # decoupled: p *= 1 - lr * wd (frozen entries stay)
                if r.weight_decay != 0:
                    shrink = lr_p * r.weight_decay
                    p.mul_(1 - (shrink if keep is None else shrink * keep))
                g = p.grad if keep is None else p.grad.mul_(keep)
            else:
                g = self._decay_and_mask(p, keep)
            if r.optimizer in ("adam", "adamw"):
                beta1, beta2, eps = 0.9, 0.999, 1e-8
                if not state:  # m, v, and two buffers for the step's temporaries
                    state += [torch.zeros_like(p) for _ in range(4)]
                m, v, denom, update = state
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                # torch.optim.Adam's arithmetic, written into kept buffers: a fresh tensor
                # of the stacked size every step cost page faults in long-lived workers
                torch.sqrt(v, out=denom).div_(math.sqrt(1 - beta2 ** self.steps)).add_(eps)
                torch.mul(m, lr_p / (1 - beta1 ** self.steps), out=update)
                p.addcdiv_(update, denom, value=-1)
            else:
                if r.momentum != 0:
                    if not state:
                        state.append(g.clone())
                    else:
                        state[0].mul_(r.momentum).add_(g)
                    # Nesterov (torch.optim.SGD): the step is g + momentum x buffer
                    g = g.add_(state[0], alpha=r.momentum) if getattr(r, "nesterov", False) \
                        else state[0]
                p.addcmul_(g, lr_p, value=-1)

    def _decay_and_mask(self, p: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """p's gradient with the weight decay added, then the update mask applied, in place."""
        g = p.grad
        if self.recipe.weight_decay != 0:
            g.add_(p, alpha=self.recipe.weight_decay)
        if keep is not None:
            g.mul_(keep)
        return g

    def _fused_sgd_step(self, lr: torch.Tensor) -> None:
        r = self.recipe
        masked = any(keep is not None for keep in self.update_masks)
        if masked:  # the mask applies after the weight decay: both by hand, then none fused
            for p, keep in zip(self.params, self.update_masks):
                self._decay_and_mask(p, keep)
        first = not self.state[0]
        if first:
            for p, state in zip(self.params, self.state):
                state.append(torch.empty_like(p))
        torch._fused_sgd_(self.params, [p.grad for p in self.params],
                          [state[0] for state in self.state],
                          weight_decay=0.0 if masked else float(r.weight_decay),
                          momentum=float(r.momentum), lr=0.0, dampening=0.0, nesterov=False,
                          maximize=False, is_first_step=first)
        for p, state in zip(self.params, self.state):
            p.addcmul_(state[0], lr.view(-1, *[1] * (p.dim() - 1)), value=-1)


def _train_loop(models: list[nn.Module], x: torch.Tensor, y: torch.Tensor,
                subsets: list[torch.Tensor], recipe: Recipe, seeds: Sequence[int],
                dev: torch.device, desc: str, training: Training | None = None) -> None:
    """The reference engine: train_model (or the plug-in trainer of `training`), one by
    one, in place."""
    for i, (model, subset, seed) in enumerate(zip(models, subsets, seeds)):
        if training is not None and training.trainer:
            training.fit(model, x[subset], y[subset], seed, dev)
        else:
            train_model(model, x[subset], y[subset], recipe, seed=seed, device=dev,
                        desc=f"{desc} (shadow model {i})")
        model.zero_grad(set_to_none=True)  # return bare models: no gradient buffers


def _default_conv_mode(dev: torch.device) -> str:
    """'split' (one conv call per model, channels-last) on a single-threaded CPU, where it
    measured fastest; 'grouped' (one grouped conv for all models) on CUDA and on a CPU
    with several threads, where the number of parallel regions per step dominates."""
    return "split" if dev.type == "cpu" and torch.get_num_threads() == 1 else "grouped"


def _build_net(models: list[nn.Module], input_shape: tuple[int, ...], dev: torch.device,
               engine: str | None) -> _StackedNet | _VmapNet:
    if engine != "vmap":
        try:
            return _StackedNet(models[0], input_shape, engine or _default_conv_mode(dev))
        except _Unsupported:
            if engine is not None:
                raise
    bufs = [dict(m.named_buffers()) for m in models]
    return _VmapNet(models[0], {k: torch.stack([b[k] for b in bufs]).to(dev) for k in bufs[0]})


def _stack_params(models: list[nn.Module], net: _StackedNet | _VmapNet, dev: torch.device
                  ) -> dict[str, torch.Tensor]:
    """The models' parameters as one leaf tensor (N, ...) per name, on `dev`; linear
    weights the interpreter runs are stored transposed (``net.transposed``)."""
    named = [dict(m.named_parameters()) for m in models]

    def stack(k: str) -> torch.Tensor:
        t = torch.stack([p[k].detach() for p in named])
        return t.transpose(1, 2) if k in net.transposed else t

    return {k: stack(k).to(dev).contiguous().requires_grad_() for k in named[0]}


@torch.no_grad()
def _unstack_params(models: list[nn.Module], params: dict[str, torch.Tensor],
                    net: _StackedNet | _VmapNet) -> None:
    """Copy model i's slice of the stacked parameters (and buffers) back into models[i],
    wherever that model lives."""
    for i, model in enumerate(models):
        for k, v in model.named_parameters():
            w = params[k][i].detach()
            v.copy_(w.T if k in net.transposed else w)
        if isinstance(net, _VmapNet):
            for k, v in model.named_buffers():
                v.copy_(net.buffers[k][i])


# ---------------------------------------------------------------------------------------
# Bounded memory: how many models one stacked call holds
# ---------------------------------------------------------------------------------------

MEMORY_ENV = "CLASSUNLEARN_STACK_MEMORY_MB"
CPU_MEMORY_BUDGET_MB = 1024


def memory_budget(device: torch.device) -> int:
    """Bytes a stacked call may use for its models: ``$CLASSUNLEARN_STACK_MEMORY_MB`` MiB
    when set; else a quarter of the free memory on CUDA, CPU_MEMORY_BUDGET_MB on the CPU."""
    env = os.environ.get(MEMORY_ENV)
    if env:
        return int(float(env) * 2**20)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    return CPU_MEMORY_BUDGET_MB * 2**20


def model_memory(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> int:
    """Rough bytes one model adds to a stacked step: its weights, gradient and two optimizer
    states, plus a batch's input and every layer's output, each kept for the backward pass
    and met again as a gradient (measured on a meta-device copy; nothing is computed)."""
    meta = copy.deepcopy(model).to("meta").train()
    outputs = 0

    def count(_m: nn.Module, _inputs: object, out: object) -> None:
        nonlocal outputs
        outputs += out.numel() if isinstance(out, torch.Tensor) else 0

    hooks = [m.register_forward_hook(count) for m in meta.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            meta(torch.empty(2, *input_shape, device="meta"))
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        outputs = 0  # a layer without meta support: count the weights only
    finally:
        for h in hooks:
            h.remove()
    first = next(model.parameters(), None)
    item = first.element_size() if first is not None else 4
    n_params = sum(p.numel() for p in model.parameters())
    activations = batch_size * (math.prod(input_shape) + outputs // 2)
    return item * (4 * n_params + 3 * activations)


def chunk_size(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, n: int,
               chunk: int | None, device: torch.device) -> int:
    """How many of n models one stacked call holds: `chunk` when given, else as many as
    :func:`memory_budget` allows by :func:`model_memory` (at least 1, at most n). Models are
    independent, so chunked runs equal unchunked ones to float rounding."""
    if chunk is not None:
        if chunk < 1:
            raise ParameterError(f"chunk must be >= 1 (models per stacked call), got {chunk}")
        return min(chunk, n)
    per_model = max(model_memory(model, input_shape, batch_size), 1)
    return max(1, min(n, memory_budget(device) // per_model))


def _train_stacked(models: list[nn.Module], input_shape: tuple[int, ...], x: torch.Tensor,
                   y: torch.Tensor, subsets: list[torch.Tensor], recipe: Recipe,
                   seeds: Sequence[int], dev: torch.device, desc: str,
                   engine: str | None = None, offset: int = 0) -> None:
    """Train `models` in place as one stacked ensemble. `engine`: None picks the
    interpreter (conv mode from :func:`_default_conv_mode`) with vmap as the fallback;
    tests may force "split", "grouped" or "vmap". Raises _Unsupported, before touching
    the models, when neither can run them. `offset`: the first model's number in messages."""
    n = len(models)
    net = _build_net(models, input_shape, dev, engine)
    params = _stack_params(models, net, dev)
    kind = recipe.augment
    check_augment(kind, tuple(x.shape[1:]))
    # With augmentation the inputs stay (n, C, H, W): each batch is gathered, augmented,
    # then put in the first layer's layout.
    xd = x.to(dev)
    # 8-bit images stay uint8 on the device: each batch is normalised, then prepared.
    images = isinstance(xd, Images)
    xr = xd if kind != "none" or images else net.prepare(xd)
    if isinstance(net, _VmapNet):
        net.probe(params, to_input(xr[:2]) if images else xr)
    opt = _StackedOptimizer(list(params.values()), recipe)
    dtype = next(iter(params.values())).dtype
    yd = y.to(dev)
    streams = [_model_stream(s, recipe.epochs, recipe.batch_size, seed)
               for s, seed in zip(subsets, seeds)]
    aug_gens = [augment_generator(seed) for seed in seeds]  # as train_model's, per model
    totals = [_total_steps(s, recipe) for s in subsets]
    warmups = [warmup_steps(recipe, len(batch_sizes(len(s), recipe.batch_size)))
               for s in subsets]  # each model's own warm-up, as train_model's
    none = torch.empty(0, dtype=torch.int64)

    def batch(idx: torch.Tensor, members: list[int], widths: list[int]) -> torch.Tensor:
        """The group's batches xr[idx] (G, B, ...), each model's augmented with its own
        generator (the draws train_model takes, in the same order)."""
        g, b = idx.shape
        xb = to_input(xr[idx.flatten()]).unflatten(0, (g, b)) if images else xr[idx]
        if kind == "none":
            return net.prepare(xb.flatten(0, 1)).unflatten(0, (g, b)) if images else xb
        per = [augment_draws(kind, w, aug_gens[i]) for i, w in zip(members, widths)]
        draws = tuple(nn.utils.rnn.pad_sequence([d[t] for d in per], batch_first=True)
                      .to(dev).flatten(0, 1) for t in range(len(per[0])))
        xb = apply_augment(kind, xb.flatten(0, 1), draws)
        return net.prepare(xb).unflatten(0, (g, b))

    for step in tqdm(range(max(totals)), desc=desc, unit="step", disable=not show_progress(),
                     leave=False):
        # At global step t every model with t < its total takes its own step t; batches of
        # different sizes are padded with index 0 and weighted 0, so each model's loss is
        # the mean over its own batch, as in train_model. A finished model gets lr 0: its
        # momentum/Adam buffers still move, but it never steps again. A model with buffers
        # (batch norm) must not see padded rows: its models are grouped by batch width,
        # one call per group, and finished models sit out.
        rows = [next(it) if step < total else none for it, total in zip(streams, totals)]
        sizes = [len(r) for r in rows]
        lr = torch.tensor([recipe.lr * lr_factor(recipe.schedule, step, total, warm)
                           if step < total else 0.0 for total, warm in zip(totals, warmups)],
                          dtype=torch.float64).to(dev, dtype)  # float64: exact python floats
        if net.exact_widths:
            groups = [[i for i in range(n) if sizes[i] == w]
                      for w in sorted({s for s in sizes if s})]
        else:
            groups = [list(range(n))]
        losses, where = [], []
        for members in groups:
            sel = None if len(members) == n else torch.tensor(members, device=dev)
            p = params if sel is None else {k: v[sel] for k, v in params.items()}
            widths = [sizes[i] for i in members]
            idx = nn.utils.rnn.pad_sequence([rows[i] for i in members], batch_first=True)
            w = torch.tensor(widths)
            weight = (torch.arange(idx.shape[1]) < w[:, None]) / w.clamp_min(1)[:, None]
            idx, weight = idx.to(dev), weight.to(dev, dtype)
            logits = net(p, batch(idx, members, widths), sel)
            k = logits.shape[-1]
            ce = F.cross_entropy(logits.reshape(-1, k), yd[idx].flatten(), reduction="none",
                                 label_smoothing=recipe.label_smoothing)
            losses.append((ce.view(len(members), -1) * weight).sum(1))
            where += members
        per_model = losses[0] if len(groups) == 1 and len(where) == n else \
            torch.zeros(n, device=dev, dtype=dtype).index_put(
                (torch.tensor(where, device=dev),), torch.cat(losses))
        _check_losses(per_model, desc, step, range(offset, offset + n))
        for p in params.values():
            p.grad = None
        per_model.sum().backward()
        opt.step(lr)
    _unstack_params(models, params, net)
    for model in models:
        model.cpu().eval()


def train_ensemble(model_name: str, input_shape: tuple[int, ...], num_classes: int,
                   x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, recipe: Recipe,
                   seeds: list[int], model_kwargs: dict | None = None, device=None,
                   stacked: bool | None = None, desc: str = "shadows",
                   chunk: int | None = None, training: Training | None = None
                   ) -> list[nn.Module]:
    """Train one shadow model per row of `masks`, all on the same recipe.

    Model i is what ::

        m = build_model(model_name, input_shape, num_classes, seed=seeds[i], **model_kwargs)
        train_model(m, x[masks[i]], y[masks[i]], recipe, seed=seeds[i])

    computes (to float rounding): the same initial weights, batches (see
    :func:`index_streams`), augmentation draws, number of steps, learning-rate schedule,
    optimizer, and batch-norm running statistics.

    ``stacked=None`` trains the registry's models as one stacked ensemble (batch-norm
    models too), except models neither the interpreter nor vmap can run (e.g. dropout),
    which are trained one by one with ``train_model``, as are models outside the registry
    (plug-ins); True/False force it (True on a model the stacked engine cannot run is an
    error). ``MODELS[name].stackable`` is not consulted.
    A loss that turns NaN or explodes stops the run (``TrainingDiverged``, naming the
    shadow model and step).

    The stacked engine holds `chunk` models at a time (None: as many as
    :func:`memory_budget` allows, see :func:`chunk_size`), so its peak memory stays bounded
    whatever N; the result does not depend on it beyond float rounding.

    `training` (:class:`classunlearn.trainers.Training`, whose recipe must be `recipe`) adds
    what the original was trained with beyond the recipe: each model first takes the init
    checkpoint's weights (after ``build_model``), and a plug-in trainer replaces
    ``train_model``; a plug-in trainer cannot be stacked, so its models train one at a time
    (``stacked=True`` is then an error).

    Returns the N models on the CPU in eval mode. The global RNG is left untouched.
    """
    if training is not None and training.recipe != recipe:
        raise ParameterError("train_ensemble: training.recipe differs from recipe; pass one")
    if len(seeds) == 0:
        raise ParameterError("train_ensemble needs at least one seed (one per shadow model)")
    _check_stream_args(recipe.epochs, recipe.batch_size)
    subsets = _check_inputs(x, y, masks, seeds)
    check_augment(recipe.augment, tuple(x.shape[1:]))
    # build_model refuses unknown names in one line
    models = [build_model(model_name, input_shape, num_classes, seed=s, **(model_kwargs or {}))
              for s in seeds]
    if training is not None:
        for m in models:  # a pretrained start (no RNG drawn): as unit_train's models
            training.start(m)
    dev = resolve_device(device)
    # A model outside the registry (a user's plug-in) is trained one by one unless asked.
    use_stacked = model_name in MODELS if stacked is None else stacked
    if training is not None and not training.stackable:
        if stacked:
            raise ParameterError("a plug-in trainer cannot be stacked (it trains one model "
                                 "at a time); use stacked=None or False")
        use_stacked = False
    # train_model (the loop engine) seeds the global RNG; keep the caller's.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        if use_stacked:
            size = chunk_size(models[0], tuple(input_shape), recipe.batch_size, len(models),
                              chunk, dev)
            try:
                for lo in range(0, len(models), size):  # _Unsupported comes from the first
                    hi = lo + size
                    _train_stacked(models[lo:hi], tuple(input_shape), x, y, subsets[lo:hi],
                                   recipe, seeds[lo:hi], dev, desc, offset=lo)
            except _Unsupported as e:
                if stacked:
                    raise ParameterError(
                        f"model '{model_name}' cannot be trained as a stacked ensemble ({e}); "
                        "use stacked=None or False") from None
                use_stacked = False
        if not use_stacked:
            _train_loop(models, x, y, subsets, recipe, seeds, dev, desc, training)
    return models


__all__ = ["balanced_halves", "chunk_size", "complementary_pairs", "index_streams",
           "memory_budget", "model_memory", "train_ensemble"]
