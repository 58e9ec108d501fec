"""A fine-tuning method run on N models at once, with the machinery that trains the shadows.

U-LiRA replays every method on each of a study's N shadow originals, each with its own
half of the data and its own seed. :func:`unlearn_stacked` runs a :class:`FinetuneMethod`
on all of them as one stacked ensemble (``shadows._StackedNet``, or the vmap fallback for
other models, and ``shadows._StackedOptimizer``). Model i takes exactly the steps its own
``method.unlearn(models[i], datas[i], params, seed=seeds[i])`` takes, to float rounding:

- ``prepare`` and ``phases`` run on model i alone, on a copy of the method, after
  ``seed_everything(seeds[i])``, so its targets, masks, phases and random draws are model
  i's; the phases run one after the other, each as one stacked fit;
- model i's pool and batches come from its own generator, in the loop's order; models with
  more data take more steps (a finished model gets lr 0 and sits still);
- its learning rate follows its own schedule (``lr_factor`` over its own step count);
- its loss is the method's ``loss`` on its own batch, the model replaced by a view
  (:class:`ModelView`) that returns model i's slice of the stacked logits and weights.

A method that needs more than that (``run``, ``trainable`` or ``after_step`` overridden,
``loss`` calling the model on other inputs, layers kept in eval mode (``eval_modules``) on
a model only the vmap engine runs) or a model neither engine can run raises
:class:`Unstackable`; ``FinetuneMethod.unlearn_many`` then runs the loop instead.
The models are held `chunk` at a time (``shadows.chunk_size``) so that memory stays bounded.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from functools import partial
from itertools import accumulate

import torch
from torch import nn

from classunlearn.data.core import cat_inputs, to_input
from classunlearn.methods.base import (
    Batch,
    FinetuneMethod,
    FinetuneParams,
    RunContext,
    RunRecord,
    UnlearnData,
    lr_horizon,
    many_seeds,
)
from classunlearn.shadows import (
    _build_net,
    _check_losses,
    _stack_params,
    _StackedOptimizer,
    _unstack_params,
    _Unsupported,
    _VmapNet,
    chunk_size,
)
from classunlearn.train import (
    Recipe,
    lr_factor,
    resolve_device,
    seed_everything,
)


class Unstackable(_Unsupported):
    """This method or model cannot run as a stacked ensemble; run it one model at a time."""


class ModelView:
    """Model i of a stacked run, as the method's ``loss`` sees it: called on its batch it
    returns model i's logits from the stacked forward pass; ``parameters()`` are model i's
    slices of the stacked weights (gradients flow back into them)."""

    def __init__(self, x: torch.Tensor, logits: torch.Tensor,
                 weights: Callable[[], dict[str, torch.Tensor]]) -> None:
        self.x, self.logits, self.weights = x, logits, weights  # weights: made when asked

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x is not self.x:
            raise Unstackable("its loss calls the model on other inputs than the batch")
        return self.logits

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        yield from self.weights().items()

    def parameters(self) -> Iterator[torch.Tensor]:
        yield from self.weights().values()


def _check_method(method: FinetuneMethod) -> None:
    cls = type(method)
    for hook in ("run", "trainable", "after_step"):
        if getattr(cls, hook) is not getattr(FinetuneMethod, hook):
            raise Unstackable(f"it overrides {hook}")


def _stream(run: FinetuneMethod, pool: tuple, params: FinetuneParams, ctx: RunContext
            ) -> Iterator[tuple[torch.Tensor, float]]:
    """Model i's batches and learning-rate factors: what FinetuneMethod.run draws and
    schedules, setting ctx.epoch as it goes."""
    n, n_forget = len(pool[1]), int(pool[2].sum())
    horizon, step = lr_horizon(run, n, params), 0
    for ctx.epoch in range(params.epochs):
        for idx in run.batches_of_epoch(n_forget, n, params, ctx):
            yield idx, lr_factor(params.schedule, ctx.epoch if run.lr_per_epoch else step,
                                 horizon)
            step += 1


def _fit(method: FinetuneMethod, runs: list[FinetuneMethod], works: list[nn.Module],
         pools: list[tuple], ctxs: list[RunContext], params: FinetuneParams,
         dev: torch.device, offset: int) -> None:
    """Fine-tune the prepared `works` in place as one stacked ensemble."""
    n = len(works)
    shape = tuple(pools[0][0].shape[1:])
    try:
        net = _build_net(works, shape, dev, None)
    except _Unsupported as e:
        raise Unstackable(str(e)) from None
    if isinstance(net, _VmapNet) and any(r.eval_modules for r in runs):
        # the vmap engine runs every layer in training mode (batch norm updates its
        # statistics); the interpreter's layers behave the same in both modes
        raise Unstackable("it keeps frozen layers in eval mode, which the vmap engine "
                          "cannot")
    weights = _stack_params(works, net, dev)
    if isinstance(net, _VmapNet):
        try:
            net.probe(weights, to_input(pools[0][0][:2]))
        except _Unsupported as e:
            raise Unstackable(str(e)) from None
    update_masks = None
    if runs[0].mask:  # SalUn: the optimiser leaves the masked-out weights where they are
        update_masks = []
        for k, w in weights.items():
            m = torch.stack([r.mask[k] for r in runs])
            update_masks.append((m.transpose(1, 2) if k in net.transposed else m).to(w.dtype))
    opt = _StackedOptimizer(list(weights.values()), Recipe(
        epochs=params.epochs, batch_size=params.batch_size, lr=params.lr,
        momentum=params.momentum, weight_decay=params.weight_decay,
        schedule=params.schedule, optimizer=params.optimizer), update_masks)
    streams = [_stream(r, pool, params, c) for r, pool, c in zip(runs, pools, ctxs)]
    # each model's next batch, drawn after the previous step's loss as in the loop; None
    # once its run is over (a finished model gets lr 0 and sits still)
    upcoming = [next(stream, None) for stream in streams]
    # the pools end to end, so that one gather per field makes every model's batch
    starts = list(accumulate((len(pool[1]) for pool in pools[:-1]), initial=0))
    whole = (cat_inputs([pool[0] for pool in pools]),
             *(torch.cat([pool[j] for pool in pools]) for j in range(1, 5)))
    none = torch.empty(0, dtype=torch.int64)
    signs: dict[str, torch.Tensor] = {}  # the L1 penalty's sign(θ), per weight
    step = 0
    while any(u is not None for u in upcoming):
        active = [i for i in range(n) if upcoming[i] is not None]
        lr = torch.tensor([params.lr * upcoming[i][1] if upcoming[i] is not None else 0.0
                           for i in range(n)],
                          dtype=torch.float64)  # the python floats torch's optimizers take
        # (N, B) rows of `whole`, padded with row 0: padded rows' logits are never read, so
        # they add exact zeros to the gradients (a finished model's row is all padding)
        rows = [upcoming[i][0] + starts[i] if upcoming[i] is not None else none
                for i in range(n)]
        idx = nn.utils.rnn.pad_sequence(rows, batch_first=True).to(dev)
        b, flat = idx.shape[1], idx.flatten()
        xs = to_input(whole[0][flat]).unflatten(0, (n, b))
        fields = (xs, *(t[flat].view(n, b) for t in whole[1:]))  # x, y, is_forget, rows
        batch_of = {i: Batch(*(f[i, :len(rows[i])] for f in fields)) for i in active}
        logits = _forward(net, weights, xs, batch_of, dev)
        slices: dict[str, tuple[torch.Tensor, ...]] = {}  # filled by the first view asked
        losses = []
        for i in active:
            own = partial(_own_weights, i, weights, net.transposed, slices)
            view = ModelView(batch_of[i].x, logits[i], own)
            losses.append(runs[i].loss(view, batch_of[i], params, ctxs[i]))
        loss = torch.stack(losses)
        _check_losses(loss, f"method {method.name}", step, [offset + i for i in active])
        for w in weights.values():
            w.grad = None
        loss.sum().backward()
        l1 = [runs[i].l1_coefficient(params, ctxs[i]) for i in active]
        if any(l1):
            # the gradient of c_i ‖θ_i‖₁ is c_i sign(θ_i) (what autograd gives for abs, 0 at
            # 0): added straight to the stacked gradients, one pass per weight instead of
            # building, summing and differentiating |θ| for every model
            coef = torch.zeros(n, dtype=loss.dtype, device=dev)
            coef[torch.tensor(active, device=dev)] = torch.tensor(l1, dtype=loss.dtype,
                                                                  device=dev)
            with torch.no_grad():
                for k, w in weights.items():
                    # a kept buffer: a fresh stacked-size tensor every step costs page faults
                    sign = torch.sign(w, out=signs.setdefault(k, torch.empty_like(w)))
                    w.grad.addcmul_(sign, coef.view(-1, *[1] * (w.dim() - 1)))
        opt.step(lr.to(dev, next(iter(weights.values())).dtype))
        for i in active:
            ctxs[i].steps += 1
            upcoming[i] = next(streams[i], None)
        step += 1
    _unstack_params(works, weights, net)


def _own_weights(i: int, weights: dict[str, torch.Tensor], transposed: set[str],
                 slices: dict[str, tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
    """Model i's weights as views of the stacked ones, in the model's own layout; `slices`
    keeps one ``unbind`` per step for all models (a single op in the backward pass)."""
    if not slices:
        slices.update({k: v.unbind(0) for k, v in weights.items()})
    return {k: v[i].T if k in transposed else v[i] for k, v in slices.items()}


def _forward(net, weights: dict[str, torch.Tensor], xs: torch.Tensor,
             batch_of: dict[int, Batch], dev: torch.device) -> dict[int, torch.Tensor]:
    """Each active model's logits on its own batch, from stacked calls: one call for all
    models on the padded batches `xs` (N, B, ...), or, for batch norm, one call per batch
    width (padded rows would enter its statistics)."""
    if not net.exact_widths:
        n, b = xs.shape[:2]
        logits = net(weights, net.prepare(xs.flatten(0, 1)).unflatten(0, (n, b))).unbind(0)
        return {i: logits[i][:len(batch_of[i].x)] for i in batch_of}
    out: dict[int, torch.Tensor] = {}
    for width in sorted({len(c.x) for c in batch_of.values()}):
        members = [i for i, c in batch_of.items() if len(c.x) == width]
        sel = torch.tensor(members, device=dev)
        xb = torch.stack([batch_of[i].x for i in members])
        logits = net({k: v[sel] for k, v in weights.items()}, xb, sel).unbind(0)
        out.update(zip(members, logits))
    return out


def unlearn_stacked(method: FinetuneMethod, models: list[nn.Module], datas: list[UnlearnData],
                    params: FinetuneParams | None = None, seeds: list[int] | None = None,
                    device: str | torch.device | None = None,
                    references: list[nn.Module] | None = None, chunk: int | None = None
                    ) -> list[tuple[nn.Module, RunRecord]]:
    """What ``[method.unlearn(m, d, params, seed=s, device=device, references=references)
    for m, d, s in zip(models, datas, seeds)]`` returns (to float rounding), computed `chunk`
    models at a time as stacked ensembles (None: from ``shadows.memory_budget``). Each
    record's wall time is its chunk's, shared equally. Raises :class:`Unstackable` when the
    method or model cannot run stacked (it works on copies: `models` are never touched)."""
    _check_method(method)
    params = method.check_call(params, references)
    seeds = many_seeds(models, datas, seeds)
    dev = resolve_device(device)
    shape = tuple(datas[0].x_forget.shape[1:])
    size = chunk_size(models[0], shape, params.batch_size, len(models), chunk, dev)
    out: list[tuple[nn.Module, RunRecord]] = []
    for lo in range(0, len(models), size):
        start = time.perf_counter()
        runs, works, phases, ctxs = [], [], [], []
        for model, data, seed in zip(models[lo:lo + size], datas[lo:lo + size],
                                     seeds[lo:lo + size]):
            ctx = RunContext(dev, seed_everything(seed), seed,
                             references=references if method.oracle else None)
            run, work = copy.copy(method), copy.deepcopy(model).to(dev)
            run.prepare(work, data, params, ctx)
            phases.append(run.phases(work, data, params, ctx))
            runs.append(run)
            works.append(work.train())
            ctxs.append(ctx)
        if any(len(ph) != len(phases[0]) or [q for _, q in ph] != [q for _, q in phases[0]]
               for ph in phases):
            raise Unstackable("its phases differ between models")
        for p, (_, phase_params) in enumerate(phases[0]):
            # each phase's pool is drawn when the phase starts, as in FinetuneMethod.run
            pools = [tuple(t.to(dev) for t in run._pool(ph[p][0], phase_params, ctx))
                     for run, ph, ctx in zip(runs, phases, ctxs)]
            _fit(method, runs, works, pools, ctxs, phase_params, dev, lo)
        results = [run.finish(work.eval(), params, ctx)
                   for run, work, ctx in zip(runs, works, ctxs)]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall = (time.perf_counter() - start) / len(works)
        for result, data, ctx in zip(results, datas[lo:lo + size], ctxs):
            out.append((result.cpu().eval(), RunRecord(
                method.name, params.to_dict(), list(data.forget_classes), ctx.seed, wall,
                ctx.steps, method.oracle, ctx.notes)))
    return out
