"""Named study configurations for `bench --preset NAME` (docs/cifar10.md).

A preset is a plain value: the model and its arguments, the training recipe (with its
augmentation), seeds, references, shadows and the training subset. It names a whole study so
that "the paper's CIFAR-10 study" and "the largest study this laptop finishes in an hour" are
one flag each; every field is still overridden by its own flag (``--model``, ``--model-arg``,
``--epochs``, ``--seeds``, ``--references``, ``--shadows``, ``--subset``, ``--test-subset``).

- ``paper``: ResNet-18 and the recipe of docs/readings.md section 7 (SGD lr 0.1, momentum 0.9,
  weight decay 5e-4, 200 epochs with a step schedule, batch 128, random crop and flip), 3 seeds,
  the whole training set. For GPUs: about 200 x 50,000 images per model.
- ``cpu``: a study of one forget class (every method, MIA-NN with 5 references, U-LiRA with
  16 shadows per side, 2 seeds) sized for an hour on the project's 2-core machine: a width-16
  CNN on a stratified 1,500-image subset, tested on 2,000 images. How it was chosen and what
  its study measured is in docs/cifar10.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from classunlearn.errors import ParameterError
from classunlearn.train import Recipe


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: str
    recipe: Recipe
    seeds: int
    references: int
    shadows: int
    model_kwargs: dict = field(default_factory=dict)
    subset: int | None = None  # training images (stratified); None: the whole split
    test_subset: int | None = None  # test images (stratified); None: the whole split


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("paper", "ResNet-18, the recipe of docs/readings.md section 7 (200 epochs), "
               "3 seeds; for GPUs",
               model="resnet18", model_kwargs={"width": 64},
               recipe=Recipe(epochs=200, batch_size=128, lr=0.1, momentum=0.9,
                             weight_decay=5e-4, schedule="step", augment="crop-flip"),
               seeds=3, references=5, shadows=16),
        Preset("cpu", "the largest study of one forget class that finishes in an hour on "
               "2 CPU cores (docs/cifar10.md)",
               model="cnn", model_kwargs={"width": 16},
               # 40 epochs at lr 0.1: 45.8% test accuracy on 1,000 images, where the first
               # reading (15 epochs, lr 0.05) underfit at 27.9%. 1,000 images: 22.5 min for
               # one forget class; 2,000: every unit 2.5x longer, about 70 min projected;
               # so 1,500 (docs/cifar10.md)
               recipe=Recipe(epochs=40, batch_size=128, lr=0.1, momentum=0.9,
                             weight_decay=5e-4, schedule="cosine", augment="crop-flip"),
               seeds=2, references=5, shadows=16, subset=1500, test_subset=2000),
    ]
}

# what bench uses when neither a preset nor a flag says otherwise
BENCH_DEFAULTS = {"seeds": 3, "references": 3, "shadows": 16}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ParameterError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def bench_settings(preset: str | None, given: dict) -> dict:
    """The study's settings: the built-in defaults, then the preset's values, then every
    flag the user gave (a value that is not None in `given`). A ``--model`` other than the
    preset's drops the preset's model arguments (they belong to its model)."""
    out: dict = {**BENCH_DEFAULTS, "model": None, "model_kwargs": {}, "recipe": None,
                 "subset": None, "test_subset": None}
    if preset is not None:
        p = get_preset(preset)
        out.update(model=p.model, model_kwargs=dict(p.model_kwargs), recipe=p.recipe.to_dict(),
                   seeds=p.seeds, references=p.references, shadows=p.shadows,
                   subset=p.subset, test_subset=p.test_subset)
        if given.get("model") not in (None, p.model) and not given.get("model_kwargs"):
            out["model_kwargs"] = {}
    out.update({k: v for k, v in given.items() if v is not None and v != {}})
    return out
