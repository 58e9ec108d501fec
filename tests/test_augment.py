"""Data augmentation as a recipe field: "crop-flip" (random crop, zero padding 4, random
horizontal flip), seeded from the training seed, drawn after the batch order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import classunlearn.train as train
from classunlearn.errors import ParameterError
from classunlearn.models import build_model
from classunlearn.train import (
    CROP_PADDING,
    DEFAULT_RECIPES,
    Recipe,
    augment_batch,
    augment_draws,
    augment_generator,
    crop_flip,
    crop_flip_draws,
    train_model,
)


def _reference_crop_flip(x, offsets, flips):
    """The per-sample definition: pad, slice, flip (what torchvision's RandomCrop(pad=4)
    and RandomHorizontalFlip do)."""
    p = CROP_PADDING
    h, w = x.shape[2:]
    out = []
    for img, (i, j), f in zip(x, offsets.tolist(), flips.tolist()):
        crop = F.pad(img, (p, p, p, p))[:, i : i + h, j : j + w]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 5, 7), (3, 32, 32)])
def test_crop_flip_is_the_per_sample_definition(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(17, *shape, generator=g)
    offsets, flips = crop_flip_draws(len(x), g)
    assert offsets.min() >= 0 and offsets.max() <= 2 * CROP_PADDING
    assert flips.any() and not flips.all()
    assert torch.equal(crop_flip(x, offsets, flips), _reference_crop_flip(x, offsets, flips))
    # the centre crop without a flip is the image itself
    centre = torch.full((len(x), 2), CROP_PADDING)
    assert torch.equal(crop_flip(x, centre, torch.zeros(len(x), dtype=torch.bool)), x)


def test_augment_batch_is_seeded_and_none_draws_nothing():
    x = torch.randn(9, 3, 8, 8)
    a = augment_batch(x, "crop-flip", augment_generator(3))
    b = augment_batch(x, "crop-flip", augment_generator(3))
    c = augment_batch(x, "crop-flip", augment_generator(4))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape
    g = augment_generator(3)
    state = g.get_state()
    assert augment_batch(x, "none", g) is x and augment_draws("none", 9, g) == ()
    assert torch.equal(g.get_state(), state)
    # the augmentation stream is not the data-order stream of the same seed
    assert not torch.equal(augment_generator(3).get_state(),
                           torch.Generator().manual_seed(3).get_state())


def test_recipe_field_validation_defaults_and_old_dicts():
    assert Recipe().augment == "none"
    with pytest.raises(ParameterError, match="augment"):
        Recipe(augment="mixup")
    old = Recipe().to_dict()
    del old["augment"]
    assert Recipe.from_dict(old) == Recipe()
    assert Recipe.from_dict(Recipe(augment="crop-flip").to_dict()).augment == "crop-flip"
    images = {"cifar10", "cifar100", "tinyimagenet"}
    for name, recipe in DEFAULT_RECIPES.items():
        assert recipe.augment == ("crop-flip" if name in images else "none"), name


def test_crop_flip_on_non_images_is_refused_when_training_starts():
    x, y = torch.randn(20, 40), torch.randint(0, 3, (20,))
    r = Recipe(epochs=1, batch_size=8, augment="crop-flip")  # the recipe itself is valid
    with pytest.raises(ParameterError, match="augment='crop-flip'.*image"):
        train_model(build_model("mlp", (40,), 3, seed=0), x, y, r, seed=0)


def test_train_model_augments_reproducibly_without_changing_the_batch_order(monkeypatch):
    x, y = torch.randn(30, 3, 8, 8), torch.randint(0, 3, (30,))
    seen: list[list[torch.Tensor]] = []
    epoch_batches = train.epoch_batches

    def spy(*a, **k):
        out = epoch_batches(*a, **k)
        seen[-1].extend(out)
        return out

    monkeypatch.setattr(train, "epoch_batches", spy)
    runs = {}
    for tag, aug in [("none", "none"), ("a", "crop-flip"), ("b", "crop-flip")]:
        seen.append([])
        r = Recipe(epochs=2, batch_size=8, lr=0.05, augment=aug)
        runs[tag] = train_model(build_model("cnn", (3, 8, 8), 3, seed=1, width=4), x, y, r,
                                seed=1)
    assert all(torch.equal(u, v) for u, v in zip(seen[0], seen[1], strict=True))
    for pa, pb in zip(runs["a"].parameters(), runs["b"].parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pn) for pa, pn in zip(runs["a"].parameters(),
                                                         runs["none"].parameters()))
