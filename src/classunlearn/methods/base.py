"""The small interface every unlearning method implements, and the shared fine-tuning loop.

A method maps (original model, forget/retain training data, hyperparameters) to an
unlearned model. It sees D_f and D_r only (:class:`UnlearnData`): never the test split and
never the retrained reference, unless it is an *oracle* (``oracle = True``), which is
printed as such everywhere.

Most methods fine-tune: subclass :class:`FinetuneMethod` and override ``loss`` (and, if
needed, ``prepare`` to precompute targets, ``samples`` to choose what to iterate over, or
``finish`` to turn the fine-tuned model into the result). Others override
:meth:`Method.run` directly.

:meth:`Method.unlearn_many` unlearns several models (U-LiRA's shadow originals), each with
its own data and seed; fine-tuning methods run them as one stacked ensemble
(:mod:`classunlearn.methods.stacked`), every model taking the steps its own ``unlearn``
takes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from classunlearn.data import ForgetSplit
from classunlearn.data.core import Images, cat_inputs, to_input
from classunlearn.errors import ParameterError
from classunlearn.train import (
    batches,
    check_loss,
    make_optimizer,
    make_scheduler,
    resolve_device,
    seed_everything,
    show_progress,
    validate_optimisation,
)


@dataclass
class UnlearnData:
    """What a method may read: D_f and D_r of docs/readings.md section 1, nothing else."""

    x_forget: torch.Tensor | Images  # Images: uint8, normalised per batch by to_input
    y_forget: torch.Tensor
    x_retain: torch.Tensor | Images
    y_retain: torch.Tensor
    forget_classes: tuple[int, ...]
    num_classes: int

    @classmethod
    def from_split(cls, split: ForgetSplit) -> UnlearnData:
        xf, yf = split.part("train_forget")
        xr, yr = split.part("train_retain")
        return cls(xf, yf, xr, yr, split.forget_classes, split.dataset.num_classes)

    @property
    def retain_classes(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.num_classes) if c not in self.forget_classes)


@dataclass
class RunContext:
    """Per-run state a method may use: device, seeded data-order generator, step counter."""

    device: torch.device
    generator: torch.Generator
    seed: int
    references: list[nn.Module] | None = None  # only handed to oracle methods
    steps: int = 0
    epoch: int = 0  # current epoch of a FinetuneMethod run
    notes: dict[str, Any] = field(default_factory=dict)
    # how the original was trained beyond the recipe (classunlearn.trainers.Training: a
    # plug-in trainer, an init checkpoint); only a method that retrains from scratch
    # (follows_recipe) is handed it, None: the recipe alone
    training: Any = None


@dataclass
class RunRecord:
    method: str
    params: dict
    forget_classes: list[int]
    seed: int
    wall_time_s: float
    steps: int
    oracle: bool
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodParams:
    """Base of every method's hyperparameter dataclass."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # optional fields, unset, stay out of run records and bench keys, so those read as
        # before the field existed: the output-layer name (TRW, BE) and the epoch share
        # (make_params resolves it into epochs)
        for optional in ("head", "epoch_share"):
            if optional in d and d[optional] is None:
                del d[optional]
        return d


@dataclass(frozen=True)
class FinetuneParams(MethodParams):
    """Optimiser settings shared by the fine-tuning methods (docs/readings.md section 2
    item 5)."""

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    schedule: str = "cosine"
    optimizer: str = "sgd"
    retain_fraction: float = 1.0  # share of D_r used (a seeded subsample); 1.0 = all of it
    # The budget relative to training: epochs as a share of the recipe the model was trained
    # with. make_params turns it into `epochs` = max(1, round(share x recipe epochs)), so one
    # value costs the same share of a retrain on every dataset (docs/performance.md, the
    # frontier); None: `epochs` as given.
    epoch_share: float | None = None

    def __post_init__(self) -> None:
        validate_optimisation(self.epochs, self.batch_size, self.lr, self.schedule,
                              self.optimizer)
        if not 0.0 < self.retain_fraction <= 1.0:
            raise ParameterError(f"retain_fraction must be in (0, 1], got {self.retain_fraction}")
        if self.epoch_share is not None and not 0.0 < self.epoch_share <= 10.0:
            raise ParameterError(f"epoch_share must be in (0, 10] (a share of the recipe's "
                                 f"epochs), got {self.epoch_share}")


def many_seeds(models: list[nn.Module], datas: list[UnlearnData], seeds: list[int] | None
               ) -> list[int]:
    """The seeds of an ``unlearn_many`` call (0, 1, ... for None); one model, data set and
    seed each, or a ParameterError."""
    seeds = list(range(len(models))) if seeds is None else list(seeds)
    if not len(models) == len(datas) == len(seeds):
        raise ParameterError(f"unlearn_many: {len(models)} models, {len(datas)} data sets and "
                             f"{len(seeds)} seeds; one of each per model")
    return seeds


class Method:
    """An unlearning method. Subclasses set the class attributes and override `run`."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `classunlearn methods`
    source: ClassVar[str]  # the paper it comes from
    Params: ClassVar[type[MethodParams]] = MethodParams
    oracle: ClassVar[bool] = False  # True: reads retrained references (labelled everywhere)
    needs_training: ClassVar[bool] = True  # False for no-op methods (original)
    # True: retrains from scratch with the original's recipe (make_params gives it that
    # recipe and nothing else)
    follows_recipe: ClassVar[bool] = False

    def run(self, model: nn.Module, data: UnlearnData, params: Any, ctx: RunContext
            ) -> nn.Module:
        raise NotImplementedError

    def check_call(self, params: MethodParams | None,
                   references: list[nn.Module] | None) -> MethodParams:
        """The params to run with (the defaults for None); refuses wrong ones."""
        params = self.Params() if params is None else params
        if not isinstance(params, self.Params):
            raise ParameterError(f"{self.name} takes {self.Params.__name__}, got "
                                 f"{type(params).__name__}")
        if self.oracle and not references:
            raise ParameterError(f"{self.name} is an oracle: it needs retrained reference "
                                 "models (pass --reference / references=)")
        return params

    def unlearn(
        self,
        model: nn.Module,
        data: UnlearnData,
        params: MethodParams | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        references: list[nn.Module] | None = None,
        training: Any = None,
    ) -> tuple[nn.Module, RunRecord]:
        """Unlearn a *copy* of `model`; the original is left untouched. `training`
        (:class:`classunlearn.trainers.Training`) reaches only a method that retrains from
        scratch (``retrain``): the original's trainer and init checkpoint."""
        params = self.check_call(params, references)
        dev = resolve_device(device)
        ctx = RunContext(dev, seed_everything(seed), seed,
                         references=references if self.oracle else None,
                         training=training if self.follows_recipe else None)
        work = copy.deepcopy(model).to(dev)
        start = time.perf_counter()
        out = self.run(work, data, params, ctx)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        record = RunRecord(self.name, params.to_dict(), list(data.forget_classes), seed, wall,
                           ctx.steps, self.oracle, ctx.notes)
        return out.cpu().eval(), record

    def unlearn_many(
        self,
        models: list[nn.Module],
        datas: list[UnlearnData],
        params: MethodParams | None = None,
        seeds: list[int] | None = None,
        device: str | torch.device | None = None,
        references: list[nn.Module] | None = None,
        stacked: bool | None = None,
        chunk: int | None = None,
        training: Any = None,
    ) -> list[tuple[nn.Module, RunRecord]]:
        """``unlearn(models[i], datas[i], params, seeds[i])`` for every i (seeds default to
        0, 1, ...). This base version loops; :class:`FinetuneMethod` stacks the models
        (`stacked`: None when it can, True or an error, False never; `chunk`: models per
        stacked call, None from the memory budget)."""
        seeds = many_seeds(models, datas, seeds)
        return [self.unlearn(m, d, params, seed=s, device=device, references=references,
                             training=training)
                for m, d, s in zip(models, datas, seeds)]


@dataclass
class Batch:
    """A mini-batch over D_f ∪ D_r. Rows with ``is_forget`` come from D_f; ``forget_row``
    gives their row in D_f (for per-sample targets), -1 for retain rows; ``retain_row``
    the row in D_r of retain rows, -1 for forget rows."""

    x: torch.Tensor
    y: torch.Tensor
    is_forget: torch.Tensor
    forget_row: torch.Tensor
    retain_row: torch.Tensor | None = None


class FinetuneMethod(Method):
    """Fine-tuning on mini-batches drawn from D_f and/or D_r; override `loss`.

    ``loss`` must call the model once, on ``batch.x``, and may read its ``parameters()``;
    per-run state (targets, masks) goes on ``self`` in ``prepare``. Then the stacked engine
    (:meth:`unlearn_many`) can run it: it copies the method once per model, and hands
    ``loss`` a view of that model's logits and weights. A method that overrides ``run``,
    ``trainable`` or ``after_step`` is run one model at a time.
    """

    Params = FinetuneParams
    samples: ClassVar[str] = "both"  # which data an epoch runs over: both | retain | forget
    # Set by `prepare` to freeze weights: {parameter name: bool tensor}, True where the
    # weight trains. Gradients are multiplied by it, and False entries are restored after
    # every step (weight decay and momentum never move them).
    mask: dict[str, torch.Tensor] | None = None
    # Set by `prepare` to keep parts of the model in eval mode while it fine-tunes: dotted
    # submodule names whose own ``training`` flag is cleared after ``model.train()`` (not
    # their children's). EU-k and CF-k list their frozen layers, so batch-norm statistics
    # there never change. None: the whole model trains (every other method).
    eval_modules: list[str] | None = None
    # The default budget relative to the recipe the model was trained with, e.g.
    # {"epoch_share": 0.5, "retain_fraction": 0.1}: make_params (bench, CLI, API) applies it
    # on every dataset, under any ``dataset_defaults``; chosen on the cost-privacy frontier
    # (docs/performance.md section 8). Empty: the Params dataclass's epochs as they are.
    recipe_budget: ClassVar[dict[str, float]] = {}
    # Fields make_params copies from the recipe the model was trained with (below the
    # budget and the per-dataset defaults), e.g. EU-k's ("lr", "momentum", ...): its fresh
    # layers train as a retrain would. Empty: none.
    recipe_fields: ClassVar[tuple[str, ...]] = ()
    # The learning-rate schedule advances once per epoch (over `epochs`) instead of once
    # per step (over all the run's steps).
    lr_per_epoch: ClassVar[bool] = False

    def prepare(self, model: nn.Module, data: UnlearnData, params: Any, ctx: RunContext
                ) -> None:
        """Hook: precompute anything the loss needs (targets, masks) from the frozen model."""

    def loss(self, model: nn.Module, batch: Batch, params: Any, ctx: RunContext
             ) -> torch.Tensor:
        raise NotImplementedError

    def phases(self, model: nn.Module, data: UnlearnData, params: Any, ctx: RunContext
               ) -> list[tuple[UnlearnData, Any]]:
        """Hook: the fine-tuning runs the method makes, in order, each over its own data
        with its own params and a fresh optimiser (called once, after `prepare`, on the
        frozen model): by default one, over `data` with `params`. UNSIR has two (impair on
        noise and D_r, then repair on D_r at another learning rate)."""
        return [(data, params)]

    def batches_of_epoch(self, n_forget: int, n: int, params: Any, ctx: RunContext
                         ) -> list[torch.Tensor]:
        """Hook: one epoch's batches, as row indices into the pool (its `n_forget` D_f rows
        first, then D_r's): by default a shuffle of all `n` rows cut into batches."""
        return batches(n, params.batch_size, ctx.generator)

    def l1_coefficient(self, params: Any, ctx: RunContext) -> float:
        """Hook: the weight of an L1 penalty on all parameters, added to this step's loss
        (0: none). The engine adds it, so that the stacked one takes every model's norm in
        one pass over the stacked weights instead of one per model and parameter."""
        return 0.0

    def trainable(self, model: nn.Module, params: Any) -> list[nn.Parameter]:
        """Hook: the parameters the optimiser updates (all by default)."""
        return list(model.parameters())

    def after_step(self, model: nn.Module, params: Any, ctx: RunContext) -> None:
        """Hook: runs after every optimiser step."""

    def finish(self, model: nn.Module, params: Any, ctx: RunContext) -> nn.Module:
        """Hook: the result, from the fine-tuned model (e.g. drop an added output unit)."""
        return model

    def unlearn_many(
        self,
        models: list[nn.Module],
        datas: list[UnlearnData],
        params: MethodParams | None = None,
        seeds: list[int] | None = None,
        device: str | torch.device | None = None,
        references: list[nn.Module] | None = None,
        stacked: bool | None = None,
        chunk: int | None = None,
    ) -> list[tuple[nn.Module, RunRecord]]:
        """:meth:`Method.unlearn_many` as one stacked ensemble (see the class docstring)
        when the method and the model allow it; else one model at a time."""
        from classunlearn.methods.stacked import Unstackable, unlearn_stacked

        if stacked is not False and len(models) > 1:
            try:
                return unlearn_stacked(self, models, datas, params, seeds, device,
                                       references, chunk)
            except Unstackable as e:
                if stacked:
                    raise ParameterError(f"{self.name} cannot run stacked ({e}); use "
                                         "stacked=None or False") from None
        return super().unlearn_many(models, datas, params, seeds, device, references)

    def run(self, model: nn.Module, data: UnlearnData, params: FinetuneParams, ctx: RunContext
            ) -> nn.Module:
        if params.epoch_share is not None:
            raise ParameterError(
                f"{self.name}: epoch_share={params.epoch_share} is a share of the training "
                "recipe's epochs; resolve it with classunlearn.methods.make_params(spec, "
                "recipe=...) or give epochs instead")
        self.prepare(model, data, params, ctx)
        for phase_data, phase_params in self.phases(model, data, params, ctx):
            self._fine_tune(model, phase_data, phase_params, ctx)
        return self.finish(model.eval(), params, ctx)

    def _fine_tune(self, model: nn.Module, data: UnlearnData, params: FinetuneParams,
                   ctx: RunContext) -> None:
        """One fine-tuning run (a phase) of `model`, in place."""
        dev = ctx.device
        x, y, is_forget, forget_row, retain_row = (t.to(dev) for t in
                                                   self._pool(data, params, ctx))
        n_forget = int(is_forget.sum())
        opt = make_optimizer(self.trainable(model, params), params.optimizer, params.lr,
                             params.momentum, params.weight_decay)
        sched = make_scheduler(opt, params.schedule, lr_horizon(self, len(x), params))
        mask = self.mask
        frozen = {n: p.detach().clone() for n, p in model.named_parameters()} if mask else {}
        model.train()
        for name in self.eval_modules or ():
            model.get_submodule(name).training = False  # this module only
        for ctx.epoch in tqdm(range(params.epochs), desc=self.name, unit="ep", leave=False,
                              disable=not show_progress()):
            for idx in self.batches_of_epoch(n_forget, len(x), params, ctx):
                idx = idx.to(dev)
                batch = Batch(to_input(x[idx]), y[idx], is_forget[idx], forget_row[idx],
                              retain_row[idx])
                loss = self.loss(model, batch, params, ctx)
                l1 = self.l1_coefficient(params, ctx)
                if l1:
                    loss = loss + l1 * sum(p.abs().sum() for p in model.parameters())
                check_loss(loss, f"method {self.name}", ctx.steps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if mask:
                    for n, p in model.named_parameters():
                        p.grad.mul_(mask[n])
                opt.step()
                if not self.lr_per_epoch:
                    sched.step()
                if mask:
                    with torch.no_grad():
                        for n, p in model.named_parameters():
                            p.copy_(torch.where(mask[n], p, frozen[n]))
                self.after_step(model, params, ctx)
                ctx.steps += 1
            if self.lr_per_epoch:
                sched.step()

    def _pool(self, data: UnlearnData, params: FinetuneParams, ctx: RunContext):
        n_f = len(data.y_forget)
        retain_idx = torch.arange(len(data.y_retain))
        if params.retain_fraction < 1.0:
            keep = max(1, round(params.retain_fraction * len(retain_idx)))
            retain_idx = torch.randperm(len(retain_idx), generator=ctx.generator)[:keep]
        parts_x, parts_y, flags, rows, r_rows = [], [], [], [], []
        if self.samples in ("both", "forget"):
            parts_x.append(data.x_forget)
            parts_y.append(data.y_forget)
            flags.append(torch.ones(n_f, dtype=torch.bool))
            rows.append(torch.arange(n_f))
            r_rows.append(torch.full((n_f,), -1, dtype=torch.int64))
        if self.samples in ("both", "retain"):
            parts_x.append(data.x_retain[retain_idx])
            parts_y.append(data.y_retain[retain_idx])
            flags.append(torch.zeros(len(retain_idx), dtype=torch.bool))
            rows.append(torch.full((len(retain_idx),), -1, dtype=torch.int64))
            r_rows.append(retain_idx)
        return (cat_inputs(parts_x), torch.cat(parts_y), torch.cat(flags), torch.cat(rows),
                torch.cat(r_rows))


def lr_horizon(method: FinetuneMethod, n: int, params: FinetuneParams) -> int:
    """What the schedule runs over: the epochs, or every step of a run over a pool of n."""
    if method.lr_per_epoch:
        return params.epochs
    return params.epochs * math.ceil(n / params.batch_size)


# ---- hyperparameters from strings (`--set key=value`) ----

def _coerce(value: str, typ: Any, key: str, method: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", "null", ""):
            return None
        typ = args[0]
    try:
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(value)
        if typ is float:
            out = float(value)
            if not math.isfinite(out):
                raise ValueError
            return out
        if typ is str:
            return value
    except ValueError:
        raise ParameterError(f"{method}: {key}={value!r} is not a valid {typ.__name__}") from None
    raise ParameterError(f"{method}: cannot set {key} from the command line")


def params_from_strings(method: type[Method], values: dict[str, str], base: Any = None) -> Any:
    """Build `method.Params` from string values, refusing unknown keys and bad types."""
    hints = typing.get_type_hints(method.Params)
    valid = [f.name for f in fields(method.Params)]
    kwargs = {}
    for key, value in values.items():
        if key not in valid:
            raise ParameterError(f"{method.name} has no hyperparameter '{key}'; valid keys: "
                                 f"{', '.join(valid)}")
        kwargs[key] = _coerce(value, hints[key], key, method.name)
    base = method.Params() if base is None else base
    try:
        return dataclasses.replace(base, **kwargs)
    except TypeError as e:
        raise ParameterError(f"{method.name}: {e}") from None
