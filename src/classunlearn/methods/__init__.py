"""Registry of unlearning methods. Every module in this package that defines a
:class:`Method` subclass decorated with :func:`register` is found automatically.

A method spec may carry a variant in brackets, ``trw[weights]``: the value goes to the
method's ``variant_field`` (for TRW, the similarity source).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re

from classunlearn.errors import ParameterError
from classunlearn.methods.base import (
    Batch,
    FinetuneMethod,
    FinetuneParams,
    Method,
    MethodParams,
    RunContext,
    RunRecord,
    UnlearnData,
    params_from_strings,
)
from classunlearn.train import Recipe, default_recipe

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry under `cls.name`."""
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise RuntimeError(f"two methods are named {cls.name}")
    METHODS[cls.name] = cls
    return cls


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


_SPEC = re.compile(r"^([a-z0-9_-]+)(?:\[([a-z0-9_.-]+)\])?$")


def parse_spec(spec: str) -> tuple[type[Method], dict[str, str]]:
    """'trw[weights]' -> (TRW class, {'similarity': 'weights'})."""
    m = _SPEC.match(spec.strip().lower())
    if not m or m.group(1) not in METHODS:
        raise ParameterError(f"unknown method '{spec}'; run `classunlearn methods` to list them "
                             f"({', '.join(sorted(METHODS))})")
    cls = METHODS[m.group(1)]
    if m.group(2) is None:
        return cls, {}
    field_name = getattr(cls, "variant_field", None)
    if field_name is None:
        raise ParameterError(f"method '{cls.name}' has no [variant]; write just '{cls.name}'")
    return cls, {field_name: m.group(2)}


def default_params(cls: type[Method], dataset: str | None = None,
                   recipe: Recipe | None = None) -> MethodParams:
    """The method's Params with its default budget relative to the recipe (a fine-tuning
    method's ``recipe_budget``) and then its per-dataset defaults applied
    (``dataset_defaults``, chosen by scripts/tune_methods.py; epochs given there replace the
    share). An ``epoch_share`` is resolved into epochs against `recipe` (the dataset's
    default recipe when None), so the result runs as it is."""
    overrides = {**getattr(cls, "recipe_budget", {}),
                 **getattr(cls, "dataset_defaults", {}).get(dataset or "", {})}
    if "epochs" in overrides and "epoch_share" in overrides:
        del overrides["epoch_share"]
    params = dataclasses.replace(cls.Params(), **overrides)
    return resolve_epoch_share(params, recipe or default_recipe(dataset or ""))


def make_params(spec: str, dataset: str | None = None, values: dict[str, str] | None = None,
                recipe: Recipe | None = None) -> tuple[type[Method], MethodParams]:
    """Resolve a spec plus `--set` strings into (method class, params).

    A method that retrains from scratch (``follows_recipe``: ``retrain``) takes its parameters
    from `recipe`, the recipe the original model was trained with, and from nowhere else: it
    refuses `values` and refuses to run without a recipe, so the yardstick can never be
    trained differently from the model it judges."""
    cls, variant = parse_spec(spec)
    if cls.follows_recipe:
        if values:
            raise ParameterError(
                f"{cls.name} follows the original model's training recipe and takes no --set "
                f"({', '.join(sorted(values))}); change the recipe itself (bench: --epochs or "
                "--quick; unlearn: retrain the original with `classunlearn train`)")
        if recipe is None:
            raise ParameterError(
                f"{cls.name} needs the recipe the original model was trained with (the study's "
                "recipe, or the checkpoint's sidecar); none was given")
        return cls, cls.Params(**recipe.to_dict())
    merged = {**variant, **(values or {})}
    recipe = recipe or default_recipe(dataset or "")
    params = params_from_strings(cls, merged, base=default_params(cls, dataset, recipe))
    return cls, resolve_epoch_share(params, recipe, explicit=merged)


def resolve_epoch_share(params: MethodParams, recipe: Recipe, explicit: dict | None = None
                        ) -> MethodParams:
    """Turn a fine-tuning method's ``epoch_share`` into ``epochs`` against `recipe` (the one
    the model was trained with; the dataset's default recipe when unknown). Epochs given
    explicitly (`explicit`, the ``--set`` values) win over a default share."""
    if getattr(params, "epoch_share", None) is None:
        return params
    explicit = explicit or {}
    if "epochs" in explicit and "epoch_share" not in explicit:
        return dataclasses.replace(params, epoch_share=None)
    if "epochs" in explicit:
        raise ParameterError("give epochs or epoch_share, not both")
    epochs = max(1, round(params.epoch_share * recipe.epochs))
    return dataclasses.replace(params, epochs=epochs, epoch_share=None)


_discover()

__all__ = [
    "METHODS",
    "Batch",
    "FinetuneMethod",
    "FinetuneParams",
    "Method",
    "MethodParams",
    "RunContext",
    "RunRecord",
    "UnlearnData",
    "default_params",
    "make_params",
    "params_from_strings",
    "parse_spec",
    "register",
    "resolve_epoch_share",
]
