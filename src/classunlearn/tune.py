"""Learning rate and epochs for a model or dataset without tuned defaults.

Each method's defaults (its paper's, or ``dataset_defaults`` chosen for the embedded datasets
by scripts/tune_methods.py) may wreck a model they were never tried on. ``classunlearn tune``
and ``bench --tune`` choose them from a small grid by a rule that needs no retrained model:

1. a seeded, stratified :data:`VALIDATION_FRACTION` of D_r (per retained class) is held out;
   the method sees D_f and the rest of D_r, never the held-out part, never the test split;
2. every setting of the method's grid (:func:`grid_for`) unlearns the same original model
   with the same seed; it is scored by its accuracy on D_f (Acc_f) and on the held-out part
   (validation accuracy);
3. eligible settings drive Acc_f to at most :data:`FORGET_TARGET` percent; among them the one
   with the best validation accuracy wins; ties go to fewer epochs, then the smaller
   learning rate (:data:`TIE_ORDER`, then grid order);
4. if no setting is eligible, the one with the lowest Acc_f wins (best validation accuracy
   among equals) and the table says "no setting reached Acc_f <= 1%". A setting that
   diverges or that the method refuses is listed and never chosen.

Grids: :data:`FINETUNE_GRID` for every fine-tuning method (Params subclass FinetuneParams),
:data:`METHOD_GRIDS` for those that need their own (GA diverges fast, so smaller rates and
fewer epochs; UNSIR's `epochs` count its impair and repair passes; SSD has no learning
rate: its α and λ). ``retrain`` (follows the original's recipe), ``original`` (does
nothing) and oracle methods (they read retrained models, which this rule is built not to
need) are never tuned.

In bench, the tuning runs are units like any other (:func:`unit_tune`, keyed by
:func:`tune_key`), cached in the study's store; the study's seed-0 original is tuned once per
study and method, and the choice serves every seed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from classunlearn.errors import ParameterError, UserError
from classunlearn.methods import FinetuneParams, Method, UnlearnData, make_params, parse_spec
from classunlearn.table import markdown_table
from classunlearn.train import accuracy

FORGET_TARGET = 1.0
"""Eligible settings leave at most this accuracy (percent) on D_f."""
VALIDATION_FRACTION = 0.1
"""Share of each retained class of D_r held out to score the settings."""
RETAIN_DROP_WARN = 10.0
"""bench warns when a method's TA_r is more than this many points below the original's."""

# The grids, in display order. Ties between settings go to the smaller value of the keys in
# TIE_ORDER (fewer epochs, then smaller lr), then to the smaller value of the other keys.
FINETUNE_GRID: dict[str, tuple] = {"lr": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
                                   "epochs": (2, 5, 10)}
METHOD_GRIDS: dict[str, dict[str, tuple]] = {
    "ga": {"lr": (1e-4, 1e-3, 3e-3, 1e-2, 3e-2), "epochs": (1, 2, 3)},
    "unsir": {"lr": (1e-3, 2e-3, 5e-3, 2e-2), "epochs": (1, 2)},
    "ssd": {"alpha": (3.0, 10.0, 20.0, 30.0), "lam": (0.1, 1.0)},
}
TIE_ORDER = ("epochs", "lr")


def _cls(spec: str) -> type[Method]:
    return parse_spec(spec)[0]


def untunable_reason(cls: type[Method]) -> str | None:
    """Why a method is never tuned, or None."""
    if cls.follows_recipe:
        return "it retrains with the original model's recipe"
    if not cls.needs_training:
        return "it does not change the model"
    if cls.oracle:
        return "it is an ORACLE (reads retrained models, which tuning is built not to need)"
    if cls.name not in METHOD_GRIDS and not issubclass(cls.Params, FinetuneParams):
        return "it has no grid"
    return None


def is_tunable(spec: str) -> bool:
    return untunable_reason(_cls(spec)) is None


def grid_for(spec: str) -> dict[str, tuple]:
    """The grid of a method spec (``trw[weights]`` uses trw's); refuses unknown methods and
    methods that are never tuned."""
    cls = _cls(spec)  # unknown method: ParameterError listing the known ones
    why = untunable_reason(cls)
    if why:
        raise ParameterError(f"{spec} is not tuned: {why}")
    return dict(METHOD_GRIDS.get(cls.name, FINETUNE_GRID))


def tunable_methods(specs: list[str]) -> list[str]:
    return [s for s in specs if is_tunable(s)]


PAPER_METHODS = ("trw", "rwft", "trw-2r-budget", "trw-2r-oracle")
"""The paper's own methods: ``bench --tune baselines`` leaves them at the budget their reading
set gives them (docs/readings.md section 9) and tunes every other tunable method."""


def is_paper_method(spec: str) -> bool:
    return _cls(spec).name in PAPER_METHODS


def grid_keys(spec: str) -> tuple[str, ...]:
    """The keys tuning would choose for `spec` (none for a method that is never tuned)."""
    return tuple(grid_for(spec)) if is_tunable(spec) else ()


def _check_grid(spec: str, grid: dict) -> None:
    valid = {f.name for f in dataclasses.fields(_cls(spec).Params)}
    bad = [k for k in grid if k not in valid]
    if bad or not grid or any(not v for v in grid.values()):
        raise ParameterError(f"grid {grid} for {spec}: every key must be a hyperparameter of "
                             f"the method ({', '.join(sorted(valid))}) with at least one value")


def validation_split(y_retain: torch.Tensor, fraction: float = VALIDATION_FRACTION,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(seen, validation): positions in D_r. Per retained class, round(fraction * n) of its
    samples (at least 1 when it has 2 or more, never all of them), drawn with `seed`."""
    if not 0.0 < fraction < 1.0:
        raise ParameterError(f"validation fraction must be in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    val = []
    for c in torch.unique(y_retain).tolist():
        idx = torch.nonzero(y_retain == c).flatten()
        k = min(max(round(fraction * len(idx)), 1 if len(idx) > 1 else 0), len(idx) - 1)
        val.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    held = torch.sort(torch.cat(val)).values if val else torch.empty(0, dtype=torch.int64)
    mask = torch.ones(len(y_retain), dtype=torch.bool)
    mask[held] = False
    return torch.nonzero(mask).flatten(), held


# ------------------------------------------------------------------ the rule


@dataclass
class TuneResult:
    spec: str
    grid: dict[str, list]
    rows: list[dict]  # {"setting", "acc_forget", "val_acc", "steps", "wall_s", "error"}
    choice: dict | None  # None: every setting failed
    reached: bool  # some setting reached Acc_f <= FORGET_TARGET
    original: dict = field(default_factory=dict)  # the untouched model's Acc_f and val acc
    validation: dict = field(default_factory=dict)  # sizes, fraction, seed

    @property
    def chosen_row(self) -> dict | None:
        return next((r for r in self.rows if r["setting"] == self.choice), None)

    @property
    def note(self) -> str | None:
        if self.choice is None:
            return "every setting failed; the method keeps its defaults"
        notes = []
        if not self.reached:
            notes.append(f"no setting reached Acc_f <= {FORGET_TARGET:g}%: chose the lowest "
                         "Acc_f; this method may not forget this model")
        row, base = self.chosen_row, self.original.get("val_acc")
        if row and base is not None and row["val_acc"] < base - RETAIN_DROP_WARN:
            notes.append(f"the choice costs {base - row['val_acc']:.1f} points of validation "
                         f"accuracy ({row['val_acc']:.1f} against the original's {base:.1f}); "
                         "read the table before using it")
        return "; ".join(notes) or None

    def to_info(self) -> dict:
        return {"spec": self.spec, "grid": {k: list(v) for k, v in self.grid.items()},
                "table": self.rows, "choice": self.choice, "reached": self.reached,
                "note": self.note, "original": self.original, "validation": self.validation}

    @classmethod
    def from_info(cls, info: dict) -> TuneResult:
        return cls(info["spec"], info["grid"], info["table"], info["choice"], info["reached"],
                   info.get("original", {}), info.get("validation", {}))


def _tie_key(setting: dict, grid: dict) -> tuple:
    order = [k for k in TIE_ORDER if k in grid] + [k for k in grid if k not in TIE_ORDER]
    return tuple(setting[k] for k in order)


def choose(rows: list[dict], grid: dict) -> tuple[dict | None, bool]:
    """(chosen row, whether it is eligible) by the rule of the module docstring; rows with an
    ``error`` (diverged, refused) are never chosen."""
    ok = [r for r in rows if not r.get("error") and not math.isnan(r["acc_forget"])]
    if not ok:
        return None, False

    def val(r: dict) -> float:
        return -math.inf if math.isnan(r["val_acc"]) else r["val_acc"]

    eligible = [r for r in ok if r["acc_forget"] <= FORGET_TARGET]
    if eligible:
        return min(eligible, key=lambda r: (-val(r), _tie_key(r["setting"], grid))), True
    return min(ok, key=lambda r: (r["acc_forget"], -val(r), _tie_key(r["setting"], grid))), False


def tune_method(model: nn.Module, data: UnlearnData, spec: str,
                grid: dict[str, tuple] | None = None,
                validation_fraction: float = VALIDATION_FRACTION, seed: int = 0,
                dataset: str | None = None, values: dict[str, str] | None = None,
                device: str | torch.device | None = None,
                log: Callable[[str], None] | None = None) -> TuneResult:
    """Run every setting of `grid` (default :func:`grid_for`) on a copy of `model` and choose
    by the rule of the module docstring. `data` is the whole D_f and D_r; the method sees D_f
    and D_r without its validation part. `values` (``--set`` strings) fix the method's other
    hyperparameters; `dataset` picks its per-dataset defaults."""
    default = grid_for(spec)  # unknown or never-tuned method: refused here
    grid = dict(default if grid is None else grid)
    _check_grid(spec, grid)
    seen_pos, val_pos = validation_split(data.y_retain, validation_fraction, seed)
    seen = UnlearnData(data.x_forget, data.y_forget, data.x_retain[seen_pos],
                       data.y_retain[seen_pos], data.forget_classes, data.num_classes)
    xv, yv = data.x_retain[val_pos], data.y_retain[val_pos]
    base = {k: v for k, v in (values or {}).items() if k not in grid}
    rows = []
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        setting = dict(zip(keys, combo, strict=True))
        row = {"setting": setting, "acc_forget": math.nan, "val_acc": math.nan, "steps": 0,
               "wall_s": 0.0, "error": None}
        try:
            cls, params = make_params(spec, dataset, {**base, **{k: str(v)
                                                                for k, v in setting.items()}})
            out, record = cls().unlearn(model, seen, params, seed=seed, device=device)
        except UserError as e:  # refused (e.g. msteps > epochs) or diverged
            row["error"] = " ".join(str(e).split())
        else:
            row.update(acc_forget=accuracy(out, data.x_forget, data.y_forget),
                       val_acc=accuracy(out, xv, yv), steps=record.steps,
                       wall_s=record.wall_time_s)
        rows.append(row)
        if log:
            log(f"  tune {spec} {setting}: Acc_f {row['acc_forget']:.1f}, val "
                f"{row['val_acc']:.1f}" + (f" ({row['error']})" if row["error"] else ""))
    best, reached = choose(rows, grid)
    original = {"acc_forget": accuracy(model, data.x_forget, data.y_forget),
                "val_acc": accuracy(model, xv, yv)}
    validation = {"fraction": validation_fraction, "seed": seed, "n_validation": len(val_pos),
                  "n_seen_retain": len(seen_pos), "n_forget": len(data.y_forget)}
    return TuneResult(spec, {k: list(v) for k, v in grid.items()}, rows,
                      dict(best["setting"]) if best else None, reached, original, validation)


# ------------------------------------------------------------------ output


def _value(v: object) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def format_table(result: TuneResult) -> str:
    """The grid as a table: one row per setting, the chosen one marked."""
    keys = list(result.grid)
    header = [*keys, "Acc_f (D_f)", "val acc", "chosen"]
    body = []
    for r in result.rows:
        mark = "<-" if r["setting"] == result.choice else ""
        if r.get("error"):
            mark = "failed: " + r["error"][:60]
        body.append([*(_value(r["setting"][k]) for k in keys), r["acc_forget"], r["val_acc"],
                     mark])
    v, o = result.validation, result.original
    head = (f"### {result.spec}: Acc_f <= {FORGET_TARGET:g}% on D_f, then best accuracy on "
            f"{v.get('n_validation', '?')} retain samples held out of D_r "
            f"({v.get('fraction', VALIDATION_FRACTION):g}, seed {v.get('seed', 0)})")
    if o:
        head += (f"; original model: Acc_f {o['acc_forget']:.1f}, val acc "
                 f"{o['val_acc']:.1f}")
    note = f"\n{result.spec}: {result.note}" if result.note else ""
    return f"{head}\n\n{markdown_table(header, body)}{note}"


def chosen_line(result: TuneResult) -> str:
    """`ft: --set lr=0.01 --set epochs=5` (the `unlearn` flags of the choice)."""
    if result.choice is None:
        return f"{result.spec}: no setting (every one failed); keep the defaults"
    flags = " ".join(f"--set {k}={_value(v)}" for k, v in result.choice.items())
    return f"{result.spec}: {flags}" + ("" if result.reached else "  (Acc_f > 1%)")


# ------------------------------------------------------------------ bench units


def tune_key(ctx, spec: str, grid: dict, seed: int, original_key: str,
             params: dict | None = None,
             validation_fraction: float = VALIDATION_FRACTION) -> str:
    """Key of a tuning unit: the study (results format, data content), the method, its other
    hyperparameters, the grid, the seed, the validation share and the tuned model's key."""
    from classunlearn.bench.store import unit_key

    return unit_key({**ctx.spec(), "unit": "tune", "method": spec,
                     "grid": {k: list(v) for k, v in grid.items()}, "params": params or {},
                     "seed": seed, "original": original_key,
                     "validation_fraction": validation_fraction})


def unit_tune(ctx, spec: str, seed: int, original: dict, grid: dict,
              params: dict | None = None,
              validation_fraction: float = VALIDATION_FRACTION) -> tuple[dict, dict]:
    """Tune `spec` on the model whose weights are `original` (unit arrays). `params` fixes
    the method's other hyperparameters. Arrays: none; info: ``choice`` and ``table``."""
    from classunlearn.bench.units import _info, model_from_arrays

    start = time.perf_counter()
    split, _ = ctx.load()
    values = {k: str(v) for k, v in (params or {}).items() if k not in grid}
    result = tune_method(model_from_arrays(ctx, split, original), UnlearnData.from_split(split),
                         spec, grid, validation_fraction, seed, dataset=ctx.dataset,
                         values=values)
    return {}, _info(start, method=spec, **result.to_info())


def bench_tune_units(ctx, specs: dict, original_key: str, original_arrays: dict,
                     seed: int = 0) -> tuple[list, dict[str, str]]:
    """The tuning units of a study (one per tunable method, on the seed-0 original) and
    their keys by spec. `specs`: spec -> (method class, params), as the runner holds them."""
    units, keys = [], {}
    for spec, (_, params) in specs.items():
        if not is_tunable(spec):
            continue
        grid = grid_for(spec)
        p = {k: v for k, v in params.to_dict().items() if k not in grid}
        key = tune_key(ctx, spec, grid, seed, original_key, p)
        keys[spec] = key
        units.append((key, f"tune {spec}", unit_tune, (ctx, spec, seed, original_arrays, grid,
                                                          p)))
    return units, keys


def apply_tuning(specs: dict, done: dict, keys: dict[str, str],
                 explicit: dict[str, dict[str, str]], log: Callable[[str], None]
                 ) -> tuple[dict, dict]:
    """(specs with each tuned method's choice applied, what was tuned, for the details).
    An explicit ``--set`` of a tuned key wins over the tuned value (logged)."""
    out, tuned = dict(specs), {}
    for spec, key in keys.items():
        info = done[key][1]
        if info.get("failed"):
            log(f"tune {spec} FAILED ({info['failed']}): it keeps its defaults")
            continue
        result = TuneResult.from_info(info)
        log(format_table(result))
        if result.choice is None:
            log(f"{spec}: every setting failed; it keeps its defaults")
            tuned[spec] = {"choice": None, "applied": {}, "reached": False,
                           "note": result.note, "key": key}
            continue
        mine = explicit.get(spec, {})
        applied = {k: v for k, v in result.choice.items() if k not in mine}
        for k in result.choice:
            if k in mine:
                log(f"{spec}: --set {k}={mine[k]} wins over the tuned {k}="
                    f"{_value(result.choice[k])}")
        cls, params = specs[spec]
        out[spec] = (cls, dataclasses.replace(params, **applied))
        log(f"tuned {chosen_line(result)}" + (" (explicit --set kept)" if mine.keys()
                                               & result.choice.keys() else ""))
        tuned[spec] = {"choice": result.choice, "applied": applied, "reached": result.reached,
                       "note": result.note, "key": key}
    return out, tuned


# ------------------------------------------------------------------ the retain check


def retain_warnings(ta_retain: dict[str, float], original: float, tuned: set[str] = frozenset(),
                    threshold: float = RETAIN_DROP_WARN) -> list[str]:
    """One warning per method (not retrain, not original) whose TA_r (mean over seeds, %) is
    more than `threshold` points below the original model's `original`."""
    out = []
    if original is None or not math.isfinite(original):
        return out
    for method, ta in ta_retain.items():
        if _base(method) in ("retrain", "original") or ta is None or not math.isfinite(ta):
            continue
        if ta < original - threshold:
            hint = ("even with tuned settings; see the tuning table, or set lr/epochs"
                    if method in tuned else
                    "its defaults may not suit this model: run with --tune or set lr/epochs")
            out.append(f"WARNING: {method} leaves TA_r at {ta:.1f}% against the original's "
                       f"{original:.1f}%; {hint}")
    return out


def _base(spec: str) -> str:
    return spec.split("[", 1)[0]


def study_retain_warnings(rows: list[tuple], original_ta: Callable[[], float],
                          tuned: set[str] = frozenset()) -> list[str]:
    """The retain check of a study from its metric rows (study, method, seed, metric, value):
    the original's TA_r is the `original` row's mean when the study runs it, else
    `original_ta()` (the original models' own accuracy)."""
    per: dict[str, list[float]] = {}
    for _, method, _, metric, value in rows:
        if metric == "test_acc_retain" and value is not None and math.isfinite(value):
            per.setdefault(method, []).append(float(value))
    means = {m: sum(v) / len(v) for m, v in per.items()}
    ref = means["original"] if "original" in means else original_ta()
    return retain_warnings(means, ref, tuned)


# ------------------------------------------------------------------ a checkpoint


@dataclass
class CheckpointTuning:
    results: list[TuneResult]
    computed: int
    reused: int
    cache: str


def tune_checkpoint(checkpoint: str, forget: list[str], methods: list[str],
                    data_dir: str | None = None, cache: str | None = None, seed: int = 0,
                    log: Callable[[str], None] = print, trainer: str | None = None,
                    init: str | None = None) -> CheckpointTuning:
    """`classunlearn tune`: tune `methods` on one checkpoint, through the bench's units and
    store (`cache`, default ``.classunlearn-cache`` beside the checkpoint). The units' keys
    follow the sidecar's plug-in trainer and init checkpoint, re-hashed first (`trainer` /
    `init`: where they are now, if they moved)."""
    from pathlib import Path

    from classunlearn.bench.executors import LocalExecutor
    from classunlearn.bench.runner import run_units
    from classunlearn.bench.store import Store
    from classunlearn.bench.units import checkpoint_context, weights_to_arrays
    from classunlearn.checkpoint import load_checkpoint, load_meta
    from classunlearn.data import ForgetSplit, load_dataset
    from classunlearn.trainers import sidecar_training

    grids = {m: grid_for(m) for m in methods}  # unknown / untunable: refused before any work
    ckpt = Path(checkpoint)
    meta = load_meta(ckpt)
    if meta.method:
        raise ParameterError(f"{ckpt.name} is already unlearned ({meta.method.get('name')}); "
                             "tune on the original model, written by `classunlearn train`")
    training = sidecar_training(meta, ckpt, trainer, init)
    ds = load_dataset(meta.dataset, data_dir)
    model, meta = load_checkpoint(ckpt, ds)
    split = ForgetSplit.make(ds, forget)
    ctx = checkpoint_context(meta, data_dir, split.forget_classes, training)
    store_dir = Path(cache) if cache else ckpt.resolve().parent / ".classunlearn-cache"
    store = Store(store_dir)
    weights = weights_to_arrays(model)
    units, keys = [], {}
    for m in methods:
        _, params = make_params(m, meta.dataset)
        p = {k: v for k, v in params.to_dict().items() if k not in grids[m]}
        keys[m] = tune_key(ctx, m, grids[m], seed, meta.sha256, p)
        units.append((keys[m], f"tune {m}", unit_tune, (ctx, m, seed, weights, grids[m], p)))
    counts = {"computed": 0, "reused": 0}
    done = run_units(store, LocalExecutor(), units, counts, log, "tune")
    results = []
    for m in methods:
        info = done[keys[m]][1]
        if info.get("failed"):
            raise UserError(f"tuning {m} failed: {info['failed']}")
        results.append(TuneResult.from_info(info))
    return CheckpointTuning(results, counts["computed"], counts["reused"], str(store_dir))
