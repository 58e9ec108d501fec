"""Shadow models for U-LiRA (paper.md section 4), trained as one stacked ensemble.

U-LiRA needs N shadow models per configuration, each trained from scratch on a random
half of the data. :func:`train_ensemble` trains them together: the N copies' parameters
are stacked into one tensor per layer, one forward/backward computes every model's loss
on its own batch, and one optimizer (``train.make_optimizer``) steps all of them. SGD and
Adam act element by element, so each model follows the update it would get alone; the
plain loop (one model after another, same batches) is the reference path and the path
for models with batch norm (``MODELS[name].stackable`` is False).

How the stacked step runs, and why (measured on the 2-core CPU; ``benchmarks/shadows.py``):

- Models built from Linear/Conv/ReLU/pooling/Flatten layers (the registry's ``mlp`` and
  ``cnn``) run through a small interpreter over the stacked weights, not through
  ``vmap(functional_call)``: linear layers are one ``baddbmm`` for all models, with the
  weights stored as (N, in, out) so their gradients come out contiguous (no copy in
  AccumulateGrad). Other stackable models fall back to ``torch.func.vmap``.
- The optimizer runs fused (one kernel per stacked tensor).
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
- Inputs stay resident on the device in the layout the first layer wants; each epoch's
  batch indices for all models are drawn in one go.

``torch.compile`` is deliberately not used (design.md: it returned zero gradients on this
CPU build).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from classunlearn.errors import ParameterError, TrainingDiverged
from classunlearn.models import MODELS, Classifier, build_model
from classunlearn.train import (
    Recipe,
    check_loss,
    make_optimizer,
    make_scheduler,
    resolve_device,
    show_progress,
)

# ---------------------------------------------------------------------------------------
# Which examples each shadow model sees, and in what order
# ---------------------------------------------------------------------------------------


def balanced_halves(n_examples: int, n_models: int, seed: int) -> torch.Tensor:
    """Membership masks for `n_models` shadow models over `n_examples` examples.

    Returns a bool tensor (n_models, n_examples): row i says which examples model i trains
    on. As in LiRA (Carlini et al. 2022), every example is in exactly ``n_models // 2``
    models (a random choice per example), so each model gets about half the data and
    every example has as many IN as OUT models. Depends on `seed` only.
    """
    if n_models < 2:
        raise ParameterError(f"balanced_halves needs n_models >= 2, got {n_models}")
    if n_examples < 1:
        raise ParameterError(f"balanced_halves needs n_examples >= 1, got {n_examples}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.rand(n_models, n_examples, generator=gen).argsort(dim=0)
    return order < n_models // 2


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


def _stream_generators(n_models: int, seed: int) -> list[torch.Generator]:
    """One independent generator per model, mixed from (seed, model index)."""
    gens = []
    for i in range(n_models):
        state = np.random.SeedSequence([seed % 2**64, i]).generate_state(1, np.uint64)[0]
        gens.append(torch.Generator().manual_seed(int(state)))
    return gens


def _epoch_order(subset: torch.Tensor, gen: torch.Generator, steps: int, batch_size: int
                 ) -> torch.Tensor:
    """One epoch for one model: a shuffled pass over its subset, wrapped around to fill
    `steps` full batches; int64 (steps, batch_size)."""
    order = subset[torch.randperm(len(subset), generator=gen)]
    return order[torch.arange(steps * batch_size) % len(subset)].view(steps, batch_size)


def _steps_per_epoch(subsets: Sequence[torch.Tensor], batch_size: int) -> int:
    return math.ceil(max(len(s) for s in subsets) / batch_size)


def _check_stream_args(epochs: int, batch_size: int) -> None:
    if epochs < 0:
        raise ParameterError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")


def _epochs(subsets: Sequence[torch.Tensor], epochs: int, batch_size: int, seed: int
            ) -> Iterator[torch.Tensor]:
    """Yield each epoch's batches for all models: int64 (steps_per_epoch, n_models, B)."""
    steps = _steps_per_epoch(subsets, batch_size)
    gens = _stream_generators(len(subsets), seed)
    for _ in range(epochs):
        yield torch.stack([_epoch_order(s, g, steps, batch_size) for s, g in zip(subsets, gens)],
                          dim=1)


def _model_epochs(subsets: Sequence[torch.Tensor], i: int, epochs: int, batch_size: int,
                  seed: int) -> Iterator[torch.Tensor]:
    """Model i's column of :func:`_epochs` (the same draws), without drawing the others."""
    steps = _steps_per_epoch(subsets, batch_size)
    gen = _stream_generators(len(subsets), seed)[i]
    for _ in range(epochs):
        yield _epoch_order(subsets[i], gen, steps, batch_size)


def index_streams(masks: torch.Tensor, epochs: int, batch_size: int, seed: int
                  ) -> torch.Tensor:
    """The batches every shadow model trains on: int64 (steps, n_models, batch_size).

    Model i makes its own shuffled pass over its subset (the True entries of ``masks[i]``)
    every epoch. All models take the same number of steps per epoch, ``ceil(max subset
    size / batch_size)``, and every batch is full: a subset that runs out wraps around to
    the start of the same epoch's order. Model i's draws depend on (seed, i) only.
    """
    _check_stream_args(epochs, batch_size)
    subsets = _subsets(masks)
    parts = list(_epochs(subsets, epochs, batch_size, seed))
    if not parts:
        return torch.empty(0, len(subsets), batch_size, dtype=torch.int64)
    return torch.cat(parts)


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

    def __call__(self, params: dict[str, torch.Tensor], xr: torch.Tensor, idx: torch.Tensor
                 ) -> torch.Tensor:
        """Logits (N, B, K) of the N models on their batches ``xr[idx]`` (idx: (N, B))."""
        n, b = idx.shape
        xb = xr[idx]
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
    """Fallback for stackable models the interpreter does not know: torch.func.vmap over
    functional_call, one stacked copy of every parameter and buffer."""

    def __init__(self, model: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
        from torch.func import functional_call, vmap

        base = copy.deepcopy(model).to("meta")
        self.buffers = buffers

        def one(p: dict, bufs: dict, xb: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (p, bufs), (xb,))

        self.fn = vmap(one)
        self.transposed: set[str] = set()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __call__(self, params: dict[str, torch.Tensor], xr: torch.Tensor, idx: torch.Tensor
                 ) -> torch.Tensor:
        return self.fn(params, self.buffers, xr[idx])


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


def _check_losses(per_model: torch.Tensor, desc: str, step: int) -> None:
    """check_loss on the worst model, naming it when the run stops."""
    try:
        check_loss(per_model.max(), desc, step)
    except TrainingDiverged:
        values = torch.nan_to_num(per_model.detach(), nan=math.inf)
        i = int(values.argmax())
        check_loss(per_model[i], f"{desc} (shadow model {i})", step)
        raise


def _prefer_fused(opt: torch.optim.Optimizer) -> None:
    """Switch SGD/Adam to their fused kernels (one pass over each stacked tensor instead of
    three or four ops per tensor); same arithmetic up to float rounding. A no-op where
    fused kernels are not available. (train.make_optimizer has no `fused` argument.)"""
    params = [p for g in opt.param_groups for p in g["params"]]
    if not isinstance(opt, torch.optim.SGD | torch.optim.Adam) or not all(
        p.dtype in (torch.float32, torch.float64) and p.device.type in ("cpu", "cuda")
        for p in params
    ):
        return
    for group in opt.param_groups:
        if "fused" in group:
            group["foreach"] = False
            group["fused"] = True


def _train_loop(models: list[nn.Module], x: torch.Tensor, y: torch.Tensor,
                subsets: list[torch.Tensor], recipe: Recipe, stream_seed: int,
                dev: torch.device, desc: str) -> None:
    xd, yd = x.to(dev), y.to(dev)
    total = recipe.epochs * _steps_per_epoch(subsets, recipe.batch_size)
    bar = tqdm(total=len(models) * recipe.epochs, desc=desc, unit="model-ep",
               disable=not show_progress(), leave=False)
    for i, model in enumerate(models):
        model.to(dev).train()
        opt = make_optimizer(model.parameters(), recipe.optimizer, recipe.lr, recipe.momentum,
                             recipe.weight_decay)
        sched = make_scheduler(opt, recipe.schedule, total)
        step = 0
        for epoch in _model_epochs(subsets, i, recipe.epochs, recipe.batch_size, stream_seed):
            for idx in epoch.to(dev):
                loss = F.cross_entropy(model(xd[idx]), yd[idx])
                check_loss(loss, f"{desc} (shadow model {i})", step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
            bar.update(1)
        model.zero_grad(set_to_none=True)  # return bare models: no gradient buffers
        model.cpu().eval()
    bar.close()


def _default_conv_mode(dev: torch.device) -> str:
    """'split' (one conv call per model, channels-last) on a single-threaded CPU, where it
    measured fastest; 'grouped' (one grouped conv for all models) on CUDA and on a CPU
    with several threads, where the number of parallel regions per step dominates."""
    return "split" if dev.type == "cpu" and torch.get_num_threads() == 1 else "grouped"


def _train_stacked(models: list[nn.Module], input_shape: tuple[int, ...], x: torch.Tensor,
                   y: torch.Tensor, subsets: list[torch.Tensor], recipe: Recipe,
                   stream_seed: int, dev: torch.device, desc: str,
                   engine: str | None = None) -> None:
    """Train `models` in place as one stacked ensemble. `engine`: None picks the
    interpreter (conv mode from :func:`_default_conv_mode`) with vmap as the fallback;
    tests may force "split", "grouped" or "vmap"."""
    n = len(models)
    net: _StackedNet | _VmapNet
    if engine != "vmap":
        mode = engine or _default_conv_mode(dev)
        try:
            net = _StackedNet(models[0], input_shape, mode)
        except _Unsupported:
            if engine is not None:
                raise
            engine = "vmap"
    if engine == "vmap":
        bufs = [dict(m.named_buffers()) for m in models]
        net = _VmapNet(models[0], {k: torch.stack([b[k] for b in bufs]).to(dev)
                                   for k in bufs[0]})
    named = [dict(m.named_parameters()) for m in models]

    def stack(k: str) -> torch.Tensor:
        t = torch.stack([p[k].detach() for p in named])
        return t.transpose(1, 2) if k in net.transposed else t

    params = {k: stack(k).to(dev).contiguous().requires_grad_() for k in named[0]}
    opt = make_optimizer(list(params.values()), recipe.optimizer, recipe.lr, recipe.momentum,
                         recipe.weight_decay)
    _prefer_fused(opt)
    sched = make_scheduler(opt, recipe.schedule,
                           recipe.epochs * _steps_per_epoch(subsets, recipe.batch_size))
    xr, yd = net.prepare(x.to(dev)), y.to(dev)
    step = 0
    epochs = _epochs(subsets, recipe.epochs, recipe.batch_size, stream_seed)
    for epoch in tqdm(epochs, total=recipe.epochs, desc=desc, unit="ep",
                      disable=not show_progress(), leave=False):
        for idx in epoch.to(dev):
            logits = net(params, xr, idx)
            k = logits.shape[-1]
            per_model = F.cross_entropy(logits.reshape(-1, k), yd[idx].flatten(),
                                        reduction="none").view(n, -1).mean(1)
            _check_losses(per_model, desc, step)
            opt.zero_grad(set_to_none=True)
            per_model.sum().backward()
            opt.step()
            sched.step()
            step += 1
    with torch.no_grad():
        for i, (model, p) in enumerate(zip(models, named)):
            for k, v in p.items():
                w = params[k][i].detach()
                v.copy_((w.T if k in net.transposed else w).cpu())
            model.cpu().eval()


def train_ensemble(model_name: str, input_shape: tuple[int, ...], num_classes: int,
                   x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, recipe: Recipe,
                   seeds: list[int], model_kwargs: dict | None = None, device=None,
                   stacked: bool | None = None, desc: str = "shadows") -> list[nn.Module]:
    """Train one shadow model per row of `masks`, all on the same recipe.

    Model i is ``build_model(model_name, input_shape, num_classes, seed=seeds[i],
    **model_kwargs)`` trained with cross-entropy on ``x[masks[i]]``, with the optimizer,
    momentum, weight decay and learning-rate schedule of ``train.train_model`` (the
    schedule spans epochs x steps-per-epoch steps). Batches come from
    ``index_streams(masks, recipe.epochs, recipe.batch_size, seed=seeds[0])``: every batch
    is full and all models take the same number of steps.

    ``stacked=None`` trains the models as one stacked ensemble when the model can be
    stacked (``MODELS[model_name].stackable``: no batch norm) and one by one otherwise;
    True/False force it (True on a non-stackable model is an error). Both paths consume
    the same batches, so from the same initial weights they compute the same models (up
    to float rounding). A loss that turns NaN or explodes stops the run
    (``TrainingDiverged``, naming the shadow model and step).

    Returns the N models on the CPU in eval mode. The global RNG is left untouched.
    """
    if model_name not in MODELS:
        raise ParameterError(f"unknown model '{model_name}'; choose one of: {', '.join(MODELS)}")
    if len(seeds) == 0:
        raise ParameterError("train_ensemble needs at least one seed (one per shadow model)")
    _check_stream_args(recipe.epochs, recipe.batch_size)
    subsets = _check_inputs(x, y, masks, seeds)
    stackable = MODELS[model_name].stackable
    if stacked and not stackable:
        raise ParameterError(
            f"model '{model_name}' cannot be trained as a stacked ensemble (it has batch "
            "norm); use stacked=None or False"
        )
    use_stacked = stackable if stacked is None else stacked
    models = [build_model(model_name, input_shape, num_classes, seed=s, **(model_kwargs or {}))
              for s in seeds]
    dev = resolve_device(device)
    if use_stacked:
        _train_stacked(models, tuple(input_shape), x, y, subsets, recipe, seeds[0], dev, desc)
    else:
        _train_loop(models, x, y, subsets, recipe, seeds[0], dev, desc)
    return models


__all__ = ["balanced_halves", "index_streams", "train_ensemble"]
