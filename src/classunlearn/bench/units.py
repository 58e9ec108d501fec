"""Units of work of a study: pure functions of specs and arrays, run by any executor.

Each returns ``(arrays, info)``: numpy arrays to store and a JSON-able dict (wall time,
failure message). They load the dataset themselves (embedded data is generated locally;
file datasets need the same --data-dir on every worker).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from classunlearn.audit.ulira import logit_confidence
from classunlearn.data import ForgetSplit, load_dataset
from classunlearn.errors import UserError
from classunlearn.methods import UnlearnData, make_params
from classunlearn.models import build_model
from classunlearn.train import Recipe, predict_logits, train_model


@dataclass(frozen=True)
class StudyContext:
    """What every unit of one study shares (JSON-able, part of every unit key)."""

    dataset: str
    data_dir: str | None
    model: str
    model_kwargs: dict
    recipe: dict
    forget_classes: tuple[int, ...]

    def spec(self) -> dict:
        return dict(self.__dict__)

    def load(self) -> tuple[ForgetSplit, Recipe]:
        ds = load_dataset(self.dataset, self.data_dir)
        return ForgetSplit(ds, tuple(self.forget_classes)), Recipe.from_dict(self.recipe)

    def new_model(self, split: ForgetSplit, seed: int) -> nn.Module:
        ds = split.dataset
        return build_model(self.model, ds.input_shape, ds.num_classes, seed=seed,
                           **self.model_kwargs)


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


def unit_train(ctx: StudyContext, seed: int, exclude_forget: bool) -> tuple[dict, dict]:
    """An original model (on D) or a retrained reference (on D_r), with its logits."""
    start = time.perf_counter()
    split, recipe = ctx.load()
    x, y = (split.part("train_retain") if exclude_forget
            else (split.dataset.x_train, split.dataset.y_train))
    model = train_model(ctx.new_model(split, seed), x, y, recipe, seed=seed)
    arrays = {**weights_to_arrays(model), **_logits(model, split)}
    return arrays, {"wall_s": time.perf_counter() - start}


def unit_shadows(ctx: StudyContext, seed: int, n: int, exclude_forget: bool
                 ) -> tuple[dict, dict]:
    """N shadow models on balanced random halves of D (originals) or of D_r (retrains).

    Arrays: `mask` (N, len(pool)) of which pool samples each shadow saw, `pool` (indices into
    the train split), φ of every shadow on D_f, and for originals the weights (`m{i}.`)."""
    from classunlearn.shadows import balanced_halves, train_ensemble

    start = time.perf_counter()
    split, recipe = ctx.load()
    ds = split.dataset
    pool = split.train_retain if exclude_forget else torch.arange(len(ds.y_train))
    masks = balanced_halves(len(pool), n, seed)
    models = train_ensemble(ctx.model, ds.input_shape, ds.num_classes, ds.x_train[pool],
                            ds.y_train[pool], masks, recipe, [seed * 1000 + i for i in range(n)],
                            model_kwargs=ctx.model_kwargs)
    xf, yf = split.part("train_forget")
    arrays: dict[str, np.ndarray] = {"mask": masks.numpy().astype(np.uint8),
                                     "pool": pool.numpy()}
    arrays["phi"] = np.stack([logit_confidence(predict_logits(m, xf).numpy(), yf.numpy())
                              for m in models])
    if not exclude_forget:
        for i, m in enumerate(models):
            arrays.update(weights_to_arrays(m, prefix=f"m{i}."))
    return arrays, {"wall_s": time.perf_counter() - start}


def unit_method(ctx: StudyContext, method_spec: str, params: dict, seed: int,
                original: dict, shadows: dict | None, references: list[dict]
                ) -> tuple[dict, dict]:
    """Run a method on the original model of this seed and on every shadow original.

    Arrays: the unlearned model's logits, and φ on D_f of each unlearned shadow (for U-LiRA).
    A diverging method is reported in `info["failed"]`, not raised, so the study goes on."""
    start = time.perf_counter()
    split, _ = ctx.load()
    cls, p = make_params(method_spec, ctx.dataset, {k: str(v) for k, v in params.items()})
    method = cls()
    refs = [model_from_arrays(ctx, split, r) for r in references] if cls.oracle else None
    info: dict = {"method": method_spec, "oracle": cls.oracle}
    try:
        unlearned, record = method.unlearn(model_from_arrays(ctx, split, original),
                                           UnlearnData.from_split(split), p, seed=seed,
                                           references=refs)
        arrays = _logits(unlearned, split)
        info.update(runtime_s=record.wall_time_s, steps=record.steps, params=record.params)
        if shadows is not None:
            arrays["phi"], info["shadow_runtime_s"] = unlearn_shadows(
                ctx, split, method, p, seed, shadows, refs)
    except UserError as e:  # diverged (TrainingDiverged) or refused: this method fails alone
        return {}, {**info, "failed": str(e), "wall_s": time.perf_counter() - start}
    return arrays, {**info, "wall_s": time.perf_counter() - start}


def unlearn_shadows(ctx: StudyContext, split: ForgetSplit, method, params, seed: int,
                     shadows: dict, refs) -> tuple[np.ndarray, float]:
    ds = split.dataset
    pool = torch.from_numpy(np.array(shadows["pool"]))
    masks = torch.from_numpy(np.array(shadows["mask"])).bool()
    forget = torch.isin(ds.y_train, torch.tensor(split.forget_classes))
    xf, yf = split.part("train_forget")
    phis, total = [], 0.0
    for i in range(len(masks)):
        seen = pool[masks[i]]
        f_idx, r_idx = seen[forget[seen]], seen[~forget[seen]]
        data = UnlearnData(ds.x_train[f_idx], ds.y_train[f_idx], ds.x_train[r_idx],
                           ds.y_train[r_idx], split.forget_classes, ds.num_classes)
        shadow = model_from_arrays(ctx, split, shadows, prefix=f"m{i}.")
        out, rec = method.unlearn(shadow, data, params, seed=seed * 1000 + i, references=refs)
        total += rec.wall_time_s
        phis.append(logit_confidence(predict_logits(out, xf).numpy(), yf.numpy()))
    return np.stack(phis), total
