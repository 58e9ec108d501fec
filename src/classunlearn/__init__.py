"""classunlearn: make a trained classifier forget whole classes (TRW, RWFT and the
baselines) and audit the forgetting against retrained models with strong attacks."""

# The Python API (classunlearn.api) is a face of the package, like the CLI: it is loaded on
# first call, so importing the engine (classunlearn.bench, classunlearn.audit, ...) never pulls
# it in. The metrics subpackage classunlearn.audit is imported first so that the name `audit`
# below stays the API function.
import classunlearn.audit  # noqa: E402, F401
from classunlearn._version import __version__ as __version__
from classunlearn.checkpoint import load_checkpoint, save_checkpoint
from classunlearn.data import DATASETS, Dataset, ForgetSplit, load_dataset
from classunlearn.errors import UserError
from classunlearn.methods import METHODS, make_params
from classunlearn.models import MODELS, build_model
from classunlearn.train import Recipe, default_recipe, predict_logits, train_model


def unlearn(*args, **kwargs):
    """Make a copy of a model forget classes: see :func:`classunlearn.api.unlearn`."""
    from classunlearn.api import unlearn as run

    return run(*args, **kwargs)


def audit(*args, **kwargs):
    """Measure a model against retrained references: see :func:`classunlearn.api.audit`."""
    from classunlearn.api import audit as run

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
