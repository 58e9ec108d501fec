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
from dataclasses import dataclass

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
    return _layers(cls, dataset, recipe or default_recipe(dataset or ""), None, {}, {})[0]


@dataclass(frozen=True)
class ResolvedParams:
    """A method spec resolved through every layer of defaults (:func:`resolve_params`).
    ``sources`` names, for every parameter, the last layer that set it."""

    cls: type[Method]
    params: MethodParams
    sources: dict[str, str]


def _layers(cls: type[Method], dataset: str | None, recipe: Recipe, readings,
            variant: dict[str, str], values: dict[str, str]
            ) -> tuple[MethodParams, dict[str, str]]:
    """The layers, lowest first: the registry's dataclass defaults, the method's budget
    relative to the recipe (``recipe_budget``), its defaults for the dataset
    (``dataset_defaults``), the epoch share resolved against the recipe, the reading set,
    the variant in brackets, and the ``--set`` strings. Fields a method takes from the recipe
    (``recipe_fields``) come first, above the registry's."""
    params = cls.Params()
    sources = {f: "registry" for f in params.to_dict()}

    def apply(params: MethodParams, overrides: dict, source: str) -> MethodParams:
        sources.update({k: source for k in overrides})
        return dataclasses.replace(params, **overrides)

    from_recipe = {f: getattr(recipe, f) for f in getattr(cls, "recipe_fields", ())}
    if from_recipe:  # EU-k: its fresh layers train with the original's recipe
        params = apply(params, from_recipe, "the original's recipe")
    budget = dict(getattr(cls, "recipe_budget", {}))
    per_dataset = dict(getattr(cls, "dataset_defaults", {}).get(dataset or "", {}))
    if "epochs" in per_dataset:  # epochs given for the dataset replace the share
        budget.pop("epoch_share", None)
    params = apply(params, budget, "recipe budget")
    params = apply(params, per_dataset, f"{dataset} defaults")
    if getattr(params, "epoch_share", None) is not None:
        share = params.epoch_share
        params = resolve_epoch_share(params, recipe)
        sources["epochs"] = f"{share:g} x the recipe's {recipe.epochs} epochs"
    if readings is not None:
        from classunlearn.readings import get_readings

        r = get_readings(readings)
        params = apply(params, r.method_values(cls.name), f"readings {r.name}")
    explicit = {**variant, **values}
    if explicit:
        params = params_from_strings(cls, explicit, base=params)
        sources.update({k: "variant" for k in variant})
        sources.update({k: "--set" for k in values})
        share = getattr(params, "epoch_share", None)
        params = resolve_epoch_share(params, recipe, explicit=explicit)
        if share is not None and "epoch_share" in explicit:
            sources["epochs"] = f"--set epoch_share={share:g} x the recipe's {recipe.epochs}"
    sources = {k: v for k, v in sources.items() if k in params.to_dict()}
    return params, sources


def resolve_params(spec: str, dataset: str | None = None, values: dict[str, str] | None = None,
                   recipe: Recipe | None = None, readings=None) -> ResolvedParams:
    """Resolve a spec plus `--set` strings into the method, its params and where each value
    came from (:func:`_layers`; `readings`: a reading set's name or
    :class:`~classunlearn.readings.Readings`, None = no reading layer).

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
        params = cls.Params(**recipe.to_dict())
        return ResolvedParams(cls, params, {k: "the original's recipe" for k in params.to_dict()})
    params, sources = _layers(cls, dataset, recipe or default_recipe(dataset or ""), readings,
                              variant, dict(values or {}))
    return ResolvedParams(cls, params, sources)


def make_params(spec: str, dataset: str | None = None, values: dict[str, str] | None = None,
                recipe: Recipe | None = None, readings=None
                ) -> tuple[type[Method], MethodParams]:
    """(method class, params) of :func:`resolve_params`."""
    r = resolve_params(spec, dataset, values, recipe, readings)
    return r.cls, r.params


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
    "ResolvedParams",
    "RunRecord",
    "UnlearnData",
    "default_params",
    "make_params",
    "params_from_strings",
    "parse_spec",
    "register",
    "resolve_epoch_share",
    "resolve_params",
]
