"""Python API for your own models and data: unlearn any classifier, then audit it.

    import classunlearn as cu
    unlearned, record = cu.unlearn(model, (x_train, y_train), forget_classes=[3], method="trw")
    report = cu.audit(unlearned, (x_train, y_train), (x_test, y_test), forget_classes=[3],
                      references=[retrained_model])

`model` is any ``torch.nn.Module`` mapping a batch of inputs to class logits. Data is an
``(x, y)`` pair of tensors or any ``torch.utils.data.Dataset`` yielding ``(x, y)`` pairs; it
is used as given (no normalisation).

Every metric of the CLI audit, U-LiRA included, and the whole study (``cu.bench``) run on your
own architecture and data: pass the function that builds the architecture (``model_fn``,
``(input_shape, num_classes) -> nn.Module``, defined at module level in a ``.py`` file, or a
``"path/to/file.py:FUNCTION"`` string) and the recipe the model was trained with::

    report = cu.audit(unlearned, train, test, [3], references, model_fn=build,
                      recipe=recipe, record=record)          # record: what cu.unlearn returned
    result = cu.bench(build, train, test, [3], recipe=recipe, out="runs/mine")

Trained your model your own way (AdamW, warm-up, label smoothing, your augmentation) or
fine-tuned it from a pretrained backbone? Pass ``trainer=`` (your training function,
``(model, x, y, seed, device) -> model``, module-level in a ``.py`` file) and ``init=`` (the
backbone's ``.safetensors``): every shadow, reference and retrained model is then trained
that way (docs/own_training.md). ``cu.forget`` is ``classunlearn forget``.

Both go through the engine of the CLI, not a copy of it: the data is saved once (content-keyed,
exactly as given) as the ``tensors`` dataset, the model function becomes a plug-in
``FILE.py:FUNCTION``, and the bench units, their keys and the metric functions do the rest
(docs/own_model.md).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from classunlearn.data import Dataset, ForgetSplit
from classunlearn.errors import ParameterError, UserError
from classunlearn.evaluate import SplitLogits
from classunlearn.methods import RunRecord, UnlearnData, make_params
from classunlearn.train import Recipe

DataLike = tuple[torch.Tensor, torch.Tensor] | torch.utils.data.Dataset


def _tensors(data: DataLike, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
    elif isinstance(data, torch.utils.data.Dataset):
        pairs = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        if not pairs:
            raise ParameterError(f"{what} dataset is empty")
        x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        y = torch.as_tensor([int(p[1]) for p in pairs])
    else:
        raise ParameterError(f"{what} must be an (x, y) tuple of tensors or a torch Dataset")
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    if x.shape[0] != y.shape[0]:
        raise ParameterError(f"{what}: {x.shape[0]} inputs but {y.shape[0]} labels")
    return x, y


def model_num_classes(model: nn.Module, x: torch.Tensor, what: str = "the model") -> int:
    """The class count of `model`: the width of its output on one input (one forward pass in
    eval mode, without gradients; the model's training mode is restored)."""
    if len(x) == 0:
        raise ParameterError("the train data is empty; pass at least one (x, y) sample")
    first = next(iter(model.parameters()), None)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x[:1].to(first.device if first is not None else "cpu"))
    except Exception as e:
        msg = " ".join(str(e).split())
        raise ParameterError(f"{what} fails on an input shaped {tuple(x[:1].shape)} "
                             f"({type(e).__name__}: {msg}); pass data shaped as it expects"
                             ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ParameterError(f"{what} maps a batch of 1 input to {shape}; it must return "
                             "class logits shaped (batch, num_classes) with num_classes >= 2")
    return int(out.shape[1])


def _dataset(model: nn.Module, train: DataLike, test: DataLike | None,
             num_classes: int | None, references: Sequence[nn.Module] = ()) -> Dataset:
    """The user's data as a Dataset whose class count is the model's output width; labels
    outside 0..K-1 and a `num_classes` or reference that disagrees with the model are
    refused."""
    x_tr, y_tr = _tensors(train, "train")
    x_te, y_te = _tensors(test, "test") if test is not None else (x_tr[:0], y_tr[:0])
    k = model_num_classes(model, x_tr)
    if num_classes is not None and num_classes != k:
        raise ParameterError(f"num_classes={num_classes} but the model outputs {k} logits; "
                             f"pass num_classes={k} or leave it out (it is read from the "
                             "model)")
    for i, ref in enumerate(references):
        k_ref = model_num_classes(ref, x_tr, f"reference {i}")
        if k_ref != k:
            raise ParameterError(f"reference {i} outputs {k_ref} logits but the model {k}; "
                                 "references must be the same architecture over the same "
                                 "classes")
    for what, y in (("train", y_tr), ("test", y_te)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise ParameterError(f"{what} label {bad} is outside 0..{k - 1}: the model "
                                 f"outputs {k} logits, one per class; relabel the data as "
                                 f"0..{k - 1} or pass the model trained on it")
    return Dataset("user", x_tr, y_tr, x_te, y_te, [str(c) for c in range(k)], "user data")


def unlearn(
    model: nn.Module,
    train: DataLike,
    forget_classes: Sequence[int],
    method: str = "trw",
    params: dict[str, object] | None = None,
    seed: int = 0,
    device: str | None = None,
    num_classes: int | None = None,
    references: list[nn.Module] | None = None,
    recipe: Recipe | None = None,
    readings: str = "default",
) -> tuple[nn.Module, RunRecord]:
    """Make a copy of `model` forget `forget_classes` with `method` (see
    `classunlearn methods`); `params` overrides hyperparameters by name. Returns the
    unlearned copy and a run record (wall time, steps, parameters).

    ``method="retrain"`` trains a fresh copy of the architecture from scratch on D_r with
    `recipe`, which must be the recipe `model` was trained with (it takes no `params`).

    `readings` ("default" or "paper", docs/readings.md section 9) is the reading set whose
    values TRW and RWFT start from; `params` wins over it.

    The class count is the width of the model's output (`num_classes`, if given, must
    agree); labels must lie in 0..K-1, and classes without samples are fine."""
    split = ForgetSplit.make(_dataset(model, train, None, num_classes, references or ()),
                             list(forget_classes))
    values = {k: str(v) for k, v in (params or {}).items()}
    cls, p = make_params(method, None, values, recipe=recipe, readings=readings)
    return cls().unlearn(model, UnlearnData.from_split(split), p, seed=seed, device=device,
                         references=references)


ModelFn = Callable[..., nn.Module] | str

DATASET = "tensors"
"""The dataset name of the user's data in bench units (classunlearn.data.tensors)."""

_FACTORY_HOW = ("define it at module level in a .py file (def build(input_shape, num_classes): "
                "... return model), import it from there and pass that function, or pass "
                "'path/to/file.py:build': shadow and retrained models are built from that "
                "file, in worker processes too")


def model_reference(model_fn: ModelFn) -> str:
    """The plug-in reference ``/abs/path/file.py:FUNCTION`` of a model factory.

    A string is a model name as the CLI's ``--model`` takes it (``FILE.py:FUNCTION``,
    ``dotted.module:FUNCTION`` or a registry name such as ``mlp``). A callable must be
    importable from its file: a function or class defined at module level in a ``.py`` file.
    Lambdas, closures, callable objects and functions of a script run as ``__main__`` or of
    a notebook are refused, saying how to fix it."""
    from classunlearn.models import MODELS, canonical_model_name, is_plugin, model_source

    if isinstance(model_fn, str):
        name = model_fn.strip()
        if not is_plugin(name) and name not in MODELS:
            raise ParameterError(f"model_fn '{model_fn}' is neither a registry model "
                                 f"({', '.join(MODELS)}) nor 'MODULE:FUNCTION'; "
                                 f"{_FACTORY_HOW}")
        model_source(name)  # the file or module exists
        return canonical_model_name(name)
    if isinstance(model_fn, nn.Module):
        raise ParameterError("model_fn is a model, not the function that builds one; "
                             + _FACTORY_HOW)
    if not callable(model_fn):
        raise ParameterError(f"model_fn must be a function (input_shape, num_classes) -> "
                             f"nn.Module or a 'MODULE:FUNCTION' string, got a "
                             f"{type(model_fn).__name__}; {_FACTORY_HOW}")
    qual = getattr(model_fn, "__qualname__", None)
    module_name = getattr(model_fn, "__module__", None)
    label = qual or type(model_fn).__name__
    if not isinstance(qual, str) or "<lambda>" in qual or "<locals>" in qual:
        kind = ("a lambda" if qual and "<lambda>" in qual else
                "defined inside another function" if qual else "not a plain function")
        raise ParameterError(f"model_fn {label} is {kind}, so it cannot be rebuilt from a "
                             f"file; {_FACTORY_HOW}")
    module = sys.modules.get(module_name or "")
    file = getattr(module, "__file__", None)
    if module_name == "__main__":
        raise ParameterError(f"model_fn {qual} is defined in the running script or notebook "
                             "(__main__), whose file would run again when imported; "
                             f"{_FACTORY_HOW}")
    if not file or not str(file).endswith(".py"):
        raise ParameterError(f"model_fn {qual} comes from module '{module_name}', which has no "
                             f".py file to import it from; {_FACTORY_HOW}")
    return f"{Path(file).resolve()}:{qual}"


def trainer_reference(trainer: Callable[..., nn.Module] | str) -> str:
    """The plug-in reference ``/abs/path/file.py:FUNCTION`` of a training function: a string
    as the CLI's ``--trainer`` takes it, or a function defined at module level in a ``.py``
    file (lambdas, closures and functions of ``__main__`` are refused: shadow models are
    trained by it in worker processes too)."""
    from classunlearn.trainers import canonical_trainer

    how = ("define it at module level in a .py file (def train(model, x, y, seed, device): "
           "... return model), import it from there and pass that function, or pass "
           "'path/to/file.py:train'")
    if isinstance(trainer, str):
        return canonical_trainer(trainer)
    if isinstance(trainer, nn.Module) or not callable(trainer):
        raise ParameterError(f"trainer must be a training function or a 'FILE.py:FUNCTION' "
                             f"string, got a {type(trainer).__name__}; {how}")
    qual = getattr(trainer, "__qualname__", None)
    module = sys.modules.get(getattr(trainer, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    if not isinstance(qual, str) or "<lambda>" in qual or "<locals>" in qual:
        raise ParameterError(f"trainer {qual or type(trainer).__name__} is not a module-level "
                             f"function, so it cannot be loaded from a file; {how}")
    if getattr(trainer, "__module__", None) == "__main__" or not file \
            or not str(file).endswith(".py"):
        raise ParameterError(f"trainer {qual} is not defined in an importable .py file (it "
                             f"comes from '{getattr(trainer, '__module__', None)}'); {how}")
    return canonical_trainer(f"{Path(file).resolve()}:{qual}")


def _training(recipe: Recipe, trainer, init, init_map):
    """The :class:`classunlearn.trainers.Training` of the API's trainer=/init= arguments."""
    from classunlearn.trainers import make_training

    return make_training(recipe, trainer_reference(trainer) if trainer is not None else None,
                         init, init_map)


def _check_architecture(model: nn.Module, model_ref: str, input_shape: tuple[int, ...],
                        num_classes: int) -> None:
    """Refuse a `model_fn` whose model does not have the audited model's parameters."""
    from classunlearn.models import build_model

    built = build_model(model_ref, input_shape, num_classes, seed=0)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise ParameterError(f"model_fn ({model_ref}) builds a model whose parameters differ "
                             f"from the audited model's (e.g. {diff}); pass the function "
                             "that built the audited model")


def _save_data(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor,
               y_te: torch.Tensor, num_classes: int, cache: str | Path | None
               ) -> tuple[Path, Path]:
    """(cache folder, data file): the data saved as the ``tensors`` dataset, named by its
    content hash. The default cache is a folder under the system temp dir named by that hash
    too, so the same data always finds its units again."""
    from classunlearn.data.tensors import as_arrays, content_sha256, save_tensors

    arrays = as_arrays(x_tr.numpy(), y_tr.numpy(), x_te.numpy(), y_te.numpy(), num_classes)
    digest = content_sha256(arrays)[:20]
    folder = Path(cache) if cache is not None else (
        Path(tempfile.gettempdir()) / "classunlearn-api" / digest)
    return folder, save_tensors(folder, arrays)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _groups(metrics: str | Sequence[str]) -> list[str]:
    from classunlearn.bench.audit import parse_metric_groups

    return parse_metric_groups(metrics if isinstance(metrics, str) else ",".join(metrics))


# contract keys measured with another key of their group: a missing one shares its reason
_GROUP_OF = {"ulira_auc": "ulira", "ulira_in_sample": "ulira", "mia_nn_gap": "mia_nn",
             "mia_nn_z": "mia_nn", "test_acc_forget": "acc_forget"}


def audit(
    model: nn.Module,
    train: DataLike,
    test: DataLike,
    forget_classes: Sequence[int],
    references: Sequence[nn.Module],
    num_classes: int | None = None,
    *,
    model_fn: ModelFn | None = None,
    recipe: Recipe | None = None,
    record: RunRecord | None = None,
    shadows: int = 16,
    metrics: str | Sequence[str] = "all",
    cache: str | Path | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    readings: str = "default",
    mia_feature: str | None = None,
    svc_feature: str | None = None,
    trainer: Callable[..., nn.Module] | str | None = None,
    init: str | Path | None = None,
    init_map: dict[str, str] | None = None,
) -> dict:
    """Every metric of ``classunlearn audit`` for an in-memory model, computed by the same
    functions: Acc_r, Acc_f, TA_r, TA_f (and per-class test accuracy), TV distance to the
    references' mean output, SVC-MIA, MIA-NN (score, gap, z against the references' spread),
    U-LiRA with shadow models, Avg.Gap and the method's runtime. Percentages except TV.

    `references` are models retrained without the forget classes (2 or more for MIA-NN z).
    U-LiRA replays the method that made `model` on shadow models of its architecture, so it
    needs `model_fn` (builds the architecture: a module-level function in a ``.py`` file, or
    ``"FILE.py:FUNCTION"``), `recipe` (how `model` was trained; the shadows are trained the
    same way) and `record` (the RunRecord ``cu.unlearn`` returned: method, parameters, seed).
    Without them ``ulira`` and ``ulira_auc`` are None and ``result["unavailable"]["ulira"]``
    says what is missing; no number stands in. Shadow models are bench units cached in
    `cache` (default: a folder under the system temp dir named by the data's content hash),
    so a second audit on the same data reuses them. `metrics` is "all" or a list of groups
    (accuracy, tv, svc_mia, mia_nn, ulira). `readings` ("default" or "paper",
    docs/readings.md section 9) picks the attacks' features; `mia_feature` and `svc_feature`
    win over it. `trainer` (your training function, ``(model, x, y, seed, device) ->
    model``, module-level in a ``.py`` file, or ``"FILE.py:FUNCTION"``) and `init` (a
    ``.safetensors`` checkpoint the model was fine-tuned from; `init_map` renames its
    tensors ``{checkpoint prefix: model prefix}``) say how `model` was trained beyond
    `recipe`: the shadows are trained the same way (docs/own_training.md). The references
    you pass must have been trained that way too: nothing here can check it.

    Returns a dict with every contract key (``acc_retain``, ``acc_forget``,
    ``test_acc_retain``, ``test_acc_forget``, ``svc_mia``, ``mia_nn``, ``mia_nn_gap``,
    ``mia_nn_z``, ``ulira``, ``ulira_auc`` (cross-fitted), ``ulira_in_sample`` (the
    in-sample best-threshold accuracy, the verdict's statistic), ``tv``, ``avg_gap``,
    ``runtime_s``; None where not measured) and the other metrics of the CLI's JSON at the
    top level, plus
    ``unavailable`` (key -> why), ``avg_gap_keys`` (the metrics Avg.Gap averages
    |model - references' mean| over), ``avg_gap_left_out``, ``references`` (each reference
    audited against the others), ``reference_mean`` and ``ulira_details``."""
    from classunlearn.bench.audit import CONTRACT_KEYS, check_shadows, measure

    groups = _groups(metrics)
    check_shadows(shadows, groups)
    refs = list(references or [])
    if not refs:
        raise ParameterError("references: pass at least one model retrained without the forget "
                             "classes (the yardstick of TV, MIA-NN and Avg.Gap; 2 or more for "
                             "MIA-NN z)")
    if recipe is not None and not isinstance(recipe, Recipe):
        raise ParameterError(f"recipe must be a cu.Recipe (how the model was trained), got a "
                             f"{type(recipe).__name__}")
    if record is not None and not isinstance(record, RunRecord):
        raise ParameterError(f"record must be the RunRecord cu.unlearn returned, got a "
                             f"{type(record).__name__}")
    model_ref = model_reference(model_fn) if model_fn is not None else None
    ds = _dataset(model, train, test, num_classes, refs)
    split = ForgetSplit.make(ds, list(forget_classes))
    if model_ref is not None:
        _check_architecture(model, model_ref, ds.input_shape, ds.num_classes)
    logits = SplitLogits.of(model, split)  # once per model, reused by every metric
    ref_logits = [SplitLogits.of(r, split) for r in refs]

    training = None
    if recipe is not None and (trainer is not None or init is not None):
        training = _training(recipe, trainer, init, init_map)  # checked before any work
    elif trainer is not None or init is not None:
        raise ParameterError("trainer= and init= say how the model was trained beyond its "
                             "recipe: pass recipe= too")

    def ulira():
        return _ulira(split, model_ref, recipe, record, shadows, cache,
                      [logits, *ref_logits], log or _stderr, training)

    from classunlearn.readings import attack_features

    mia_feature, svc_feature = attack_features(readings, mia_feature, svc_feature)
    core = measure(split, logits, ref_logits, groups, mia_feature=mia_feature,
                   svc_feature=svc_feature, seed=seed, ulira=ulira,
                   runtime_s=record.wall_time_s if record is not None else None,
                   runtime_missing="pass record= (the RunRecord cu.unlearn returned): it "
                   "holds the method's wall time")
    unavailable = core["unavailable"]
    for key in CONTRACT_KEYS:  # every missing contract key says why
        if core["metrics"].get(key) is None and key not in unavailable:
            group = _GROUP_OF.get(key, key)
            unavailable[key] = unavailable.get(group, f"not requested (metrics={metrics!r})")
    return {**core["metrics"], "forget_classes": list(split.forget_classes),
            "method": record.method if record is not None else None,
            "method_params": record.params if record is not None else None,
            "metric_groups": groups, "avg_gap_keys": core["avg_gap_keys"],
            "avg_gap_left_out": core["avg_gap_left_out"], "references": core["references"],
            "reference_mean": core["reference_mean"], "ulira_details": core["ulira_details"],
            "unavailable": unavailable}


def _ulira(split: ForgetSplit, model_ref: str | None, recipe: Recipe | None,
           record: RunRecord | None, shadows: int, cache: str | Path | None,
           audited: list[SplitLogits], log: Callable[[str], None], training=None):
    """U-LiRA through the bench's units (``bench.audit.replay_ulira``), or why not."""
    from classunlearn.bench.audit import (
        RecordedMethod,
        UliraOutcome,
        announce_training,
        rebuild_method,
        replay_ulira,
    )
    from classunlearn.bench.units import StudyContext
    from classunlearn.data import dataset_fingerprint
    from classunlearn.models import model_source_sha256

    if shadows == 0:
        return UliraOutcome({}, {}, "skipped (shadows=0)")
    missing = [n for n, v in (("model_fn", model_ref), ("recipe", recipe), ("record", record))
               if v is None]
    if missing:
        return UliraOutcome({}, {}, f"{', '.join(missing)} not given: pass model_fn and recipe "
                            "(how the model was trained) to train shadow models, and record "
                            "(what cu.unlearn returned) to replay the method on them")
    assert model_ref is not None and recipe is not None and record is not None
    done = tuple(sorted(int(c) for c in record.forget_classes))
    if done != tuple(split.forget_classes):
        return UliraOutcome({}, {}, f"the record is of unlearning classes {list(done)}, not the "
                            f"audited forget classes {list(split.forget_classes)}")
    if record.oracle:
        return UliraOutcome({}, {}, f"{record.method} is an oracle: U-LiRA replays it with the "
                            "retrained models it read, which a RunRecord does not hold (the "
                            "CLI's unlearn records them; audit its checkpoint there)")
    method = RecordedMethod(record.method, dict(record.params), int(record.seed),
                            "the RunRecord cu.unlearn returned")
    try:
        cls, params = rebuild_method(method, DATASET, recipe.to_dict())
    except UserError as e:
        return UliraOutcome({}, {}, f"the recorded method cannot be rebuilt: {e}")
    if cls.follows_recipe:
        given = recipe.to_dict()
        differ = sorted(k for k, v in record.params.items() if k in given and given[k] != v)
        if differ:
            raise ParameterError(f"record is a retrain with {differ} = "
                                 f"{[record.params[k] for k in differ]} but recipe= has "
                                 f"{[given[k] for k in differ]}; retrain follows the "
                                 "original's recipe: pass the recipe the model was trained with")
    d = split.dataset
    folder, path = _save_data(d.x_train, d.y_train, d.x_test, d.y_test, d.num_classes, cache)
    extra = StudyContext.of_training(training) if training is not None else {}
    ctx = StudyContext(DATASET, str(path), model_ref, {}, recipe.to_dict(),
                       tuple(split.forget_classes), dataset_fingerprint(DATASET, path),
                       model_source_sha256(model_ref) or "", **extra)
    announce_training(ctx, log)
    return replay_ulira(ctx, split, method, cls, params, shadows, folder, audited, [], [], log)


def _studies(forget_classes: int | Sequence[int] | Sequence[Sequence[int]]) -> list[list[str]]:
    """One study per forget set: ``3`` or ``[3, 8]`` (forgotten together) is one study,
    ``[[3], [8]]`` two."""
    if isinstance(forget_classes, int | str):
        return [[str(forget_classes)]]
    items = list(forget_classes)
    if items and all(isinstance(c, Sequence) and not isinstance(c, str) for c in items):
        return [[str(c) for c in fs] for fs in items]
    return [[str(c) for c in items]]


def bench(
    model_fn: ModelFn,
    train: DataLike,
    test: DataLike,
    forget_classes: int | Sequence[int] | Sequence[Sequence[int]],
    *,
    recipe: Recipe,
    methods: str | Sequence[str] = "all",
    seeds: int = 3,
    shadows: int = 16,
    references: int = 3,
    out: str | Path = "runs/bench",
    executor: str = "local",
    num_classes: int | None = None,
    log: Callable[[str], None] = _stderr,
    trainer: Callable[..., nn.Module] | str | None = None,
    init: str | Path | None = None,
    init_map: dict[str, str] | None = None,
    **more: object,
):
    """The whole study of ``classunlearn bench`` on your architecture and data: originals
    (one per seed), `references` models retrained without the forget classes, U-LiRA shadow
    sets, and every method in `methods` ("all", "trw,ft" or a list) run on each original and
    replayed on the shadows, all trained with `recipe`. Writes results.db, results.json,
    results.csv, report.md and report.html in `out` (resumable: a rerun reuses every finished
    unit) and returns the :class:`~classunlearn.bench.runner.BenchResult` (``.summary``:
    method -> metric -> mean/std).

    `model_fn` builds the architecture (see :func:`model_reference`); the class count is
    `num_classes`, else the largest label + 1. `forget_classes`: ``3`` or ``[3, 8]`` (one
    study forgetting them together) or ``[[3], [8]]`` (two studies). The data is saved in
    `out` as the ``tensors`` dataset (exactly as given). `executor`: "local" (this process),
    "process" (one single-threaded worker per core; workers start by re-importing the
    calling script, so guard a script's top level with ``if __name__ == "__main__":``) or
    "ray" (every node needs the same `out` path and model file). Any other BenchConfig
    field passes through `more` (``readings="paper"``, ``tune="baselines"``, ``quick=True``,
    ``epochs=5``,
    ``method_params={"trw": {"beta": "5"}}``, ``model_kwargs={...}``, ``workers=2``, ...).
    `trainer` and `init` (`init_map`), as in :func:`audit`: every model the study trains
    from scratch (originals, references, shadows, the retrain row) is trained by your
    function and/or starts from the checkpoint (docs/own_training.md)."""
    import dataclasses

    from classunlearn.bench.runner import ALL_METHODS, BenchConfig, run_bench
    from classunlearn.data.tensors import as_arrays, save_tensors

    if not isinstance(recipe, Recipe):
        raise ParameterError(f"recipe must be a cu.Recipe (how every model of the study is "
                             f"trained), got a {type(recipe).__name__}")
    fields = {f.name for f in dataclasses.fields(BenchConfig)}
    fixed = {"dataset", "data_dir", "model", "recipe", "forget_classes", "methods", "seeds",
             "shadows", "references", "executor", "out", "trainer", "init", "init_map"}
    bad = sorted(set(more) - (fields - fixed))
    if bad:
        raise ParameterError(f"cu.bench got unknown or fixed argument(s) {bad}; it passes "
                             f"these on: {', '.join(sorted(fields - fixed))}")
    model_ref = model_reference(model_fn)
    x_tr, y_tr = _tensors(train, "train")
    x_te, y_te = _tensors(test, "test")
    if len(y_tr) == 0 or len(y_te) == 0:
        raise ParameterError("cu.bench needs train and test samples; one of them is empty")
    low, high = int(min(y_tr.min(), y_te.min())), int(max(y_tr.max(), y_te.max()))
    k = num_classes if num_classes is not None else high + 1
    if low < 0 or high >= k or k < 2:
        raise ParameterError(f"labels run from {low} to {high}, but classes are 0..{k - 1}; "
                             "relabel the data as 0..K-1 (K >= 2) or fix num_classes")
    method_list = (list(ALL_METHODS) if methods == "all" else
                   [m.strip() for m in methods.split(",") if m.strip()]
                   if isinstance(methods, str) else list(methods))
    arrays = as_arrays(x_tr.numpy(), y_tr.numpy(), x_te.numpy(), y_te.numpy(), k)
    path = save_tensors(Path(out), arrays)  # named by its content hash
    cfg = BenchConfig(dataset=DATASET, data_dir=str(path), model=model_ref,
                      forget_classes=_studies(forget_classes), methods=method_list,
                      seeds=seeds, shadows=shadows, references=references,
                      executor=executor, out=str(out), recipe=recipe.to_dict(),
                      trainer=trainer_reference(trainer) if trainer is not None else None,
                      init=str(init) if init is not None else None,
                      init_map=dict(init_map) if init_map else None,
                      **more)  # type: ignore[arg-type]
    return run_bench(cfg, log=log)


def _forget_argv(checkpoint, forget_classes, out, params=None, **flags: object) -> list[str]:
    """The `classunlearn forget` arguments equivalent to a ``cu.forget`` call (the record's
    ``command``)."""
    argv = ["forget", "--checkpoint", str(checkpoint), "--forget-class",
            *(str(c) for c in forget_classes), "--out", str(out)]
    for k, v in flags.items():
        if v is None or v is False or (k == "note" and not v) or (k == "seed" and v == 0) \
                or (k == "readings" and v == "default"):
            continue
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    for k, v in (params or {}).items():
        argv += ["--set", f"{k}={v}"]
    return argv


def forget(
    checkpoint: str | Path,
    forget_classes: Sequence[int | str],
    out: str | Path,
    *,
    method: str | None = None,
    references: int | None = None,
    shadows: int | None = None,
    note: str = "",
    previous: str | Path | None = None,
    cache: str | Path | None = None,
    seed: int = 0,
    params: dict[str, object] | None = None,
    readings: str = "default",
    mia_feature: str | None = None,
    tune: bool = False,
    data_dir: str | Path | None = None,
    trainer: Callable[..., nn.Module] | str | None = None,
    init: str | Path | None = None,
    log: Callable[[str], None] = _stderr,
):
    """``classunlearn forget`` from Python: unlearn `forget_classes` from the checkpoint
    (written by ``classunlearn train``), train what the audit needs and the cache lacks
    (references retrained without the classes, U-LiRA shadows: as the checkpoint's sidecar
    says the original was trained, its plug-in trainer and init checkpoint included), audit
    and write ``out/unlearned.safetensors``, ``out/record.json`` and ``out/record.html``.
    Every argument is the command's flag of the same name (defaults: method rwft, 5
    references, 16 shadows; `params` is ``--set``); `trainer` / `init` say where the
    sidecar's trainer file / init checkpoint are now if they moved (same SHA-256 required).

    Returns the :class:`~classunlearn.forget.ForgetResult`: ``.record`` (the sealed record,
    as record.json holds it; ``.record["verdicts"]``), ``.units_computed``,
    ``.units_reused``; ``classunlearn.forget.exit_code(result.record)`` is the command's exit
    status (3 when an attack tells the model from retrained ones). Bad input raises a
    ``UserError`` (the command's exit 2)."""
    import importlib

    engine = importlib.import_module("classunlearn.forget")  # the module, not this function

    req = engine.ForgetRequest(
        checkpoint=Path(checkpoint), forget_classes=[str(c) for c in forget_classes],
        out=Path(out), data_dir=str(data_dir) if data_dir is not None else None,
        method=method or engine.DEFAULT_FORGET_METHOD,
        references=engine.DEFAULT_REFERENCES if references is None else references,
        shadows=engine.DEFAULT_SHADOWS if shadows is None else shadows, note=note,
        previous=Path(previous) if previous is not None else None,
        cache=Path(cache) if cache is not None else None, seed=seed,
        command=_forget_argv(checkpoint, forget_classes, out, method=method,
                             references=references, shadows=shadows, note=note,
                             previous=previous, cache=cache, seed=seed, readings=readings,
                             mia_feature=mia_feature, tune=tune, data_dir=data_dir,
                             params=params),
        params={k: str(v) for k, v in (params or {}).items()}, readings=readings,
        mia_feature=mia_feature, tune=tune,
        trainer=trainer_reference(trainer) if trainer is not None else None,
        init=str(init) if init is not None else None)
    return engine.run_forget(req, log=log)
