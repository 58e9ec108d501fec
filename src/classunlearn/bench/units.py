"""Units of work of a study, and the keys they are cached under.

Each unit is a pure function of specs and arrays, run by any executor, and returns
``(arrays, info)``: numpy arrays to store and a JSON-able dict (wall time, the package version
and device that computed it, a failure message). Units load the dataset themselves (embedded
data is generated locally; file datasets need the same --data-dir on every worker). 8-bit image
datasets are written once by the driver (:func:`classunlearn.data.share_dataset`, under
``--out/data/<fingerprint>``) and memory-mapped by every unit that can see that folder, so the
workers of a machine share one uint8 copy instead of each holding its own float32 one.

The key of a unit is a hash of everything that determines its output: the results format
(:data:`RESULTS_FORMAT`), the study (model, recipe, forget classes, and the *content* of the
data, never its path), the unit's own arguments and the keys of the units it reads. The bench
and the audit of one checkpoint build keys with the same functions here, so a bench ``--out``
folder serves as an audit cache and the other way round.

Seeds. Originals of study seed s use seed s; the M retrained references 1000 + j; the U-LiRA
shadow originals and retrains of seed s are the sets 2000 + s and 3000 + s (model i of a set
with seed S: S * 1000 + i); the ``retrain`` row of seed s uses seed 4000 + s, so it never
starts from the original's initial weights; an oracle's own references use 5000 + j.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from classunlearn._version import __version__
from classunlearn.audit.ulira import logit_confidence
from classunlearn.bench.store import unit_key
from classunlearn.data import ForgetSplit, load_dataset, subset_dataset
from classunlearn.errors import UserError
from classunlearn.methods import UnlearnData, make_params, parse_spec
from classunlearn.models import build_model, check_model_source
from classunlearn.train import Recipe, predict_logits, resolve_device
from classunlearn.trainers import Training, check_init, check_trainer_source, trainer_function

RESULTS_FORMAT = 2
"""Version of what units compute and store. Bump it whenever a change of code would change a
unit's output (a trainer, a method, a metric input): old artifacts then no longer match any
key and are recomputed, instead of being mixed silently with new ones. 2: trainers take
exactly the same steps (no padding); retrain follows the study's recipe; replays are units;
shadow halves come in complementary pairs. (Replays of fine-tuning methods run stacked since,
equal to the loop's to float rounding: not a change of format.)"""

SEED_REFERENCE = 1000
SEED_SHADOW_ORIGINALS = 2000
SEED_SHADOW_RETRAINS = 3000
SEED_RETRAIN = 4000
SEED_ORACLE_REFERENCE = 5000


@dataclass(frozen=True)
class StudyContext:
    """What every unit of one study shares. ``data_fingerprint`` is a hash of the data's
    content (:func:`classunlearn.data.dataset_fingerprint`): keys use it, not ``data_dir``."""

    dataset: str
    data_dir: str | None
    model: str
    model_kwargs: dict
    recipe: dict
    forget_classes: tuple[int, ...]
    data_fingerprint: str = ""
    # plug-in models (MODULE:FUNCTION): SHA-256 of the model's source file, so a changed
    # file gets new keys (never a stale cached result); "" for registry models
    model_source_sha256: str = ""
    # a folder of share_dataset(): units memory-map the data from there (one copy in the
    # page cache for every worker on the machine); a path, so never part of a key
    shared_data: str | None = None
    # --subset / --test-subset: a stratified subset drawn with `subset_seed`
    # (classunlearn.data.subset_dataset); None keeps the split whole
    subset: int | None = None
    test_subset: int | None = None
    subset_seed: int = 0
    # how every model trained from scratch is trained beyond the recipe
    # (classunlearn.trainers): a plug-in trainer MODULE:FUNCTION and its file's SHA-256
    # (keys name the function and the hash, not the path), an init checkpoint (its path is
    # never part of a key: its SHA-256 and prefix map are). "" / None: none, and the keys
    # are those of a study without them
    trainer: str = ""
    trainer_sha256: str = ""
    init: str = ""
    init_sha256: str = ""
    init_map: dict | None = None

    def spec(self) -> dict:
        """The part of every unit key that comes from the study (no path: content only)."""
        out = {k: v for k, v in self.__dict__.items()
               if k not in ("data_dir", "shared_data", "init")}
        out["forget_classes"] = list(self.forget_classes)
        if not self.model_source_sha256:  # registry models keep the keys they always had
            out.pop("model_source_sha256")
        if self.subset is None and self.test_subset is None:  # whole data: keys as before
            for k in ("subset", "test_subset", "subset_seed"):
                out.pop(k)
        if self.trainer:  # the function and its file's content, not where the file is
            out["trainer"] = trainer_function(self.trainer)
        else:
            out.pop("trainer")
            out.pop("trainer_sha256")
        if not self.init_sha256:
            out.pop("init_sha256")
            out.pop("init_map")
        elif not self.init_map:
            out.pop("init_map")
        return {"format": RESULTS_FORMAT, **out}

    def training(self, recipe: Recipe | None = None) -> Training:
        """How this study trains a model from scratch (recipe, trainer, init checkpoint)."""
        recipe = Recipe.from_dict(self.recipe) if recipe is None else recipe
        return Training(recipe, self.trainer or None, self.trainer_sha256 or None,
                        self.init or None, self.init_sha256 or None, self.init_map or None)

    @classmethod
    def of_training(cls, training: Training) -> dict:
        """The context fields of a :class:`Training` beyond its recipe (keyword arguments)."""
        return {"trainer": training.trainer or "", "trainer_sha256": training.trainer_sha256
                or "", "init": training.init or "", "init_sha256": training.init_sha256 or "",
                "init_map": dict(training.init_map) if training.init_map else None}

    def load(self) -> tuple[ForgetSplit, Recipe]:
        # every unit starts here: a plug-in's file must still be the one its keys name
        check_model_source(self.model, self.model_source_sha256)
        if self.trainer:  # and so must a plug-in trainer's and an init checkpoint's
            check_trainer_source(self.trainer, self.trainer_sha256)
        if self.init_sha256:
            check_init(self.init, self.init_sha256)
        ds = load_dataset(self.dataset, self.data_dir, shared=self.shared_data)
        ds = subset_dataset(ds, self.subset, self.test_subset, self.subset_seed)
        return ForgetSplit(ds, tuple(self.forget_classes)), Recipe.from_dict(self.recipe)

    def new_model(self, split: ForgetSplit, seed: int) -> nn.Module:
        ds = split.dataset
        return build_model(self.model, ds.input_shape, ds.num_classes, seed=seed,
                           **self.model_kwargs)


def checkpoint_context(meta, data_dir: str | None, forget_classes,
                       training: Training | None = None) -> StudyContext:
    """The study of one checkpoint (audit, forget, tune): its sidecar's dataset, model,
    recipe and, with `training` (``trainers.sidecar_training``), its plug-in trainer and
    init checkpoint; keys equal the bench's for the same study."""
    from classunlearn.data import dataset_fingerprint

    extra = StudyContext.of_training(training) if training is not None else {}
    return StudyContext(meta.dataset, data_dir, meta.model, dict(meta.model_kwargs),
                        dict(meta.recipe or {}), tuple(forget_classes),
                        dataset_fingerprint(meta.dataset, data_dir),
                        meta.model_source_sha256 or "", **extra)


# ------------------------------------------------------------------ keys


def original_key(ctx: StudyContext, seed: int) -> str:
    """Originals do not depend on the forget set: one per seed, shared by every study."""
    return unit_key({**ctx.spec(), "forget_classes": None, "unit": "original", "seed": seed})


def reference_key(ctx: StudyContext, seed: int) -> str:
    return unit_key({**ctx.spec(), "unit": "reference", "seed": seed})


def shadow_keys(ctx: StudyContext, n: int, seed_index: int) -> tuple[str, str]:
    """(shadow originals, shadow retrains) of one study seed."""
    base = ctx.spec()
    originals = unit_key({**base, "forget_classes": None, "unit": "shadows", "n": n,
                          "seed": seed_index, "exclude": False})
    retrains = unit_key({**base, "unit": "shadows", "n": n, "seed": seed_index,
                         "exclude": True})
    return originals, retrains


def method_key(ctx: StudyContext, spec: str, params: dict, seed: int, original: str,
               oracle_refs: list[str]) -> str:
    return unit_key({**ctx.spec(), "unit": "method", "method": spec, "params": params,
                     "seed": seed, "original": original, "oracle_refs": oracle_refs})


def replay_key(ctx: StudyContext, spec: str, params: dict, seed: int, shadows: str,
               oracle_refs: list[str]) -> str:
    """The method replayed on every shadow original of the set ``shadows`` (for U-LiRA)."""
    return unit_key({**ctx.spec(), "unit": "replay", "method": spec, "params": params,
                     "seed": seed, "shadows": shadows, "oracle_refs": oracle_refs})


# ------------------------------------------------------------------ helpers


def _info(start: float, **extra: object) -> dict:
    return {"wall_s": time.perf_counter() - start, "version": __version__,
            "format": RESULTS_FORMAT, "device": str(resolve_device()), **extra}


def weights_to_arrays(model: nn.Module, prefix: str = "w.") -> dict[str, np.ndarray]:
    return {prefix + k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def model_from_arrays(ctx: StudyContext, split: ForgetSplit, arrays: dict[str, np.ndarray],
                      prefix: str = "w.") -> nn.Module:
    model = ctx.new_model(split, seed=0)
    state = {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
             if k.startswith(prefix)}
    model.load_state_dict(state)
    return model.eval()


def _logits(model: nn.Module, split: ForgetSplit) -> dict[str, np.ndarray]:
    d = split.dataset
    return {"logits_train": predict_logits(model, d.x_train).numpy(),
            "logits_test": predict_logits(model, d.x_test).numpy()}


# ------------------------------------------------------------------ units


def unit_train(ctx: StudyContext, seed: int, exclude_forget: bool) -> tuple[dict, dict]:
    """An original model (on D) or a retrained reference (on D_r), with its logits: the one
    training procedure (``build_model`` then ``train_model``, both under `seed`; with the
    study's init checkpoint loaded in between, and its plug-in trainer in place of
    ``train_model``: ``ctx.training().train``)."""
    start = time.perf_counter()
    split, recipe = ctx.load()
    x, y = (split.part("train_retain") if exclude_forget
            else (split.dataset.x_train, split.dataset.y_train))
    model = ctx.training(recipe).train(ctx.new_model(split, seed), x, y, seed)
    arrays = {**weights_to_arrays(model), **_logits(model, split)}
    return arrays, _info(start)


def unit_shadows(ctx: StudyContext, seed: int, n: int, exclude_forget: bool
                 ) -> tuple[dict, dict]:
    """N shadow models on balanced random halves of D (originals) or of D_r (retrains).

    Model i is trained exactly as ``unit_train`` trains a model with seed ``seed * 1000 + i``,
    on its half. Arrays: `mask` (N, len(pool)) of which pool samples each shadow saw, `pool`
    (indices into the train split), φ of every shadow on D_f, and for originals the weights
    (`m{i}.`)."""
    from classunlearn.shadows import balanced_halves, train_ensemble

    start = time.perf_counter()
    split, recipe = ctx.load()
    ds = split.dataset
    pool = split.train_retain if exclude_forget else torch.arange(len(ds.y_train))
    masks = balanced_halves(len(pool), n, seed)
    models = train_ensemble(ctx.model, ds.input_shape, ds.num_classes, ds.x_train[pool],
                            ds.y_train[pool], masks, recipe, [seed * 1000 + i for i in range(n)],
                            model_kwargs=ctx.model_kwargs, training=ctx.training(recipe))
    xf, yf = split.part("train_forget")
    arrays: dict[str, np.ndarray] = {"mask": masks.numpy().astype(np.uint8),
                                     "pool": pool.numpy()}
    arrays["phi"] = np.stack([logit_confidence(predict_logits(m, xf).numpy(), yf.numpy())
                              for m in models])
    if not exclude_forget:
        for i, m in enumerate(models):
            arrays.update(weights_to_arrays(m, prefix=f"m{i}."))
    return arrays, _info(start)


def _training_of(ctx: StudyContext, method) -> dict:
    """``training=`` for a method that retrains from scratch (``retrain``) in a study with a
    plug-in trainer or an init checkpoint; nothing otherwise (other methods never see it)."""
    if method.follows_recipe and (ctx.trainer or ctx.init_sha256):
        return {"training": ctx.training()}
    return {}


def _method(ctx: StudyContext, split: ForgetSplit, method_spec: str, params: dict,
            oracle_refs: list[dict]):
    values = None if parse_spec(method_spec)[0].follows_recipe else {
        k: str(v) for k, v in params.items()}  # retrain: the study's recipe, nothing else
    cls, p = make_params(method_spec, ctx.dataset, values, recipe=Recipe.from_dict(ctx.recipe))
    refs = [model_from_arrays(ctx, split, r) for r in oracle_refs] if cls.oracle else None
    return cls(), p, refs


def unit_method(ctx: StudyContext, method_spec: str, params: dict, seed: int,
                original: dict, oracle_refs: list[dict]) -> tuple[dict, dict]:
    """Run a method on the original model of this seed: the unlearned model's logits.
    `oracle_refs` are the oracle's own retrained models (never the yardstick's references).
    A diverging method is reported in ``info["failed"]``, not raised, so the study goes on."""
    start = time.perf_counter()
    split, _ = ctx.load()
    method, p, refs = _method(ctx, split, method_spec, params, oracle_refs)
    info: dict = {"method": method_spec, "oracle": method.oracle}
    try:
        unlearned, record = method.unlearn(model_from_arrays(ctx, split, original),
                                           UnlearnData.from_split(split), p, seed=seed,
                                           references=refs, **_training_of(ctx, method))
    except UserError as e:  # diverged (TrainingDiverged) or refused: this method fails alone
        return {}, _info(start, **info, failed=str(e))
    info.update(runtime_s=record.wall_time_s, steps=record.steps, params=record.params)
    return _logits(unlearned, split), _info(start, **info)


def unit_replay(ctx: StudyContext, method_spec: str, params: dict, seed: int,
                shadows: dict, oracle_refs: list[dict]) -> tuple[dict, dict]:
    """Replay a method on every shadow original of `shadows` (a ``unit_shadows`` result) for
    U-LiRA: arrays ``phi`` (N, |D_f|) of the unlearned shadows on D_f. Shadow i is unlearned
    with seed ``seed * 1000 + i`` on the forget and retain samples of its own half."""
    start = time.perf_counter()
    split, _ = ctx.load()
    method, p, refs = _method(ctx, split, method_spec, params, oracle_refs)
    info: dict = {"method": method_spec}
    try:
        phi, runtime = unlearn_shadows(ctx, split, method, p, seed, shadows, refs)
    except UserError as e:
        return {}, _info(start, **info, failed=str(e))
    return {"phi": phi}, _info(start, **info, runtime_s=runtime)


def unlearn_shadows(ctx: StudyContext, split: ForgetSplit, method, params, seed: int,
                    shadows: dict, refs) -> tuple[np.ndarray, float]:
    """φ (N, |D_f|) of the N shadow originals unlearned, and the method's run time. Shadow i
    is ``method.unlearn`` on the forget and retain samples of its half with seed
    ``seed * 1000 + i``; fine-tuning methods run all N as one stacked ensemble
    (``Method.unlearn_many``: the same steps, equal to float rounding)."""
    ds = split.dataset
    pool = torch.from_numpy(np.array(shadows["pool"]))
    masks = torch.from_numpy(np.array(shadows["mask"])).bool()
    forget = torch.isin(ds.y_train, torch.tensor(split.forget_classes))
    xf, yf = split.part("train_forget")
    datas, models = [], []
    for i in range(len(masks)):
        seen = pool[masks[i]]
        f_idx, r_idx = seen[forget[seen]], seen[~forget[seen]]
        datas.append(UnlearnData(ds.x_train[f_idx], ds.y_train[f_idx], ds.x_train[r_idx],
                                 ds.y_train[r_idx], split.forget_classes, ds.num_classes))
        models.append(model_from_arrays(ctx, split, shadows, prefix=f"m{i}."))
    seeds = [seed * 1000 + i for i in range(len(masks))]
    results = method.unlearn_many(models, datas, params, seeds, references=refs,
                                  **_training_of(ctx, method))
    phis = [logit_confidence(predict_logits(out, xf).numpy(), yf.numpy()) for out, _ in results]
    return np.stack(phis), sum(rec.wall_time_s for _, rec in results)
