"""classunlearn: make a trained classifier forget whole classes (TRW, RWFT and the
baselines) and audit the forgetting against retrained models with strong attacks."""

import types

import classunlearn.audit
import classunlearn.bench
from classunlearn._version import __version__ as __version__
from classunlearn.checkpoint import load_checkpoint, save_checkpoint
from classunlearn.data import DATASETS, Dataset, ForgetSplit, load_dataset
from classunlearn.errors import UserError
from classunlearn.methods import METHODS, make_params
from classunlearn.models import MODELS, build_model
from classunlearn.train import Recipe, default_recipe, predict_logits, train_model

# The Python API (classunlearn.api) is a face of the package, like the CLI: it is loaded on
# first call, so importing the engine never pulls it in. `cu.audit(...)` and `cu.bench(...)`
# share their names with the subpackages classunlearn.audit and classunlearn.bench; rather
# than shadow the subpackages with functions (which breaks `import classunlearn.bench.store
# as s` and dotted monkeypatching), the two modules are made callable: calling them calls
# the API function of the same name.


def _callable_module(module: types.ModuleType, api_name: str) -> None:
    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            from classunlearn import api

            return getattr(api, api_name)(*args, **kwargs)

    CallableModule.__call__.__doc__ = f"classunlearn.api.{api_name}: see its docstring"
    module.__class__ = CallableModule


_callable_module(classunlearn.audit, "audit")
_callable_module(classunlearn.bench, "bench")


def unlearn(*args, **kwargs):
    """Make a copy of a model forget classes: see :func:`classunlearn.api.unlearn`."""
    from classunlearn.api import unlearn as run

    return run(*args, **kwargs)


__all__ = [
    "DATASETS",
    "METHODS",
    "MODELS",
    "Dataset",
    "ForgetSplit",
    "Recipe",
    "UserError",
    "audit",
    "bench",
    "build_model",
    "default_recipe",
    "load_checkpoint",
    "load_dataset",
    "make_params",
    "predict_logits",
    "save_checkpoint",
    "train_model",
    "unlearn",
]
