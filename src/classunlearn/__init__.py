"""classunlearn: make a trained classifier forget whole classes (TRW, RWFT and the
baselines) and audit the forgetting against retrained models with strong attacks."""

from classunlearn._version import __version__ as __version__
from classunlearn.api import audit, unlearn
from classunlearn.checkpoint import load_checkpoint, save_checkpoint
from classunlearn.data import DATASETS, Dataset, ForgetSplit, load_dataset
from classunlearn.errors import UserError
from classunlearn.methods import METHODS, make_params
from classunlearn.models import MODELS, build_model
from classunlearn.train import Recipe, default_recipe, predict_logits, train_model

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
