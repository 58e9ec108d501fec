"""classunlearn: make a trained classifier forget whole classes (TRW, RWFT and the
baselines) and audit the forgetting against retrained models with strong attacks."""

import types

import classunlearn.audit  # both load their own names lazily: cheap here
import classunlearn.bench
from classunlearn._lazy import lazy_names
from classunlearn._version import __version__ as __version__

# The names below are loaded on first use (PEP 562), not with the package: the command line
# starts the bench's worker processes before it imports torch (``cli.cmd_bench``), so that
# the workers boot while the driver loads (docs/performance.md section 11).
_LAZY = {
    "DATASETS": "classunlearn.data", "Dataset": "classunlearn.data",
    "ForgetSplit": "classunlearn.data", "load_dataset": "classunlearn.data",
    "UserError": "classunlearn.errors",
    "METHODS": "classunlearn.methods", "make_params": "classunlearn.methods",
    "MODELS": "classunlearn.models", "build_model": "classunlearn.models",
    "Recipe": "classunlearn.train", "default_recipe": "classunlearn.train",
    "predict_logits": "classunlearn.train", "train_model": "classunlearn.train",
    "load_checkpoint": "classunlearn.checkpoint", "save_checkpoint": "classunlearn.checkpoint",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


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


def forget(*args, **kwargs):
    """A deletion request end to end (``classunlearn forget``): see
    :func:`classunlearn.api.forget`."""
    from classunlearn.api import forget as run

    return run(*args, **kwargs)


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
    "forget",
    "load_checkpoint",
    "load_dataset",
    "make_params",
    "predict_logits",
    "save_checkpoint",
    "train_model",
    "unlearn",
]
