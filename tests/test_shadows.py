"""Shadow-model training for U-LiRA: membership masks, index streams, and the stacked
ensemble against the plain loop (same batches, same initial weights, same result)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from classunlearn.errors import ParameterError, TrainingDiverged
from classunlearn.models import Classifier, build_model
from classunlearn.shadows import (
    _model_epochs,
    _subsets,
    _train_loop,
    _train_stacked,
    balanced_halves,
    index_streams,
    train_ensemble,
)
from classunlearn.train import Recipe, accuracy

CPU = torch.device("cpu")


def _data(shape: tuple[int, ...], n: int = 48, classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


@torch.no_grad()
def _max_rel_diff(a: list[nn.Module], b: list[nn.Module]) -> float:
    """Largest relative difference ||a - b|| / ||b|| over every parameter of every model."""
    worst = 0.0
    for ma, mb in zip(a, b, strict=True):
        for (na, pa), (nb, pb) in zip(ma.named_parameters(), mb.named_parameters(), strict=True):
            assert na == nb and pa.shape == pb.shape
            worst = max(worst, float((pa - pb).norm() / pb.norm().clamp_min(1e-12)))
    return worst


# --- balanced_halves ----------------------------------------------------------------------


@pytest.mark.parametrize("n_models", [2, 5, 8])
def test_balanced_halves_every_example_in_half_the_models(n_models):
    m = balanced_halves(101, n_models, seed=3)
    assert m.dtype == torch.bool and m.shape == (n_models, 101)
    assert (m.sum(0) == n_models // 2).all()
    assert (m.sum(1) > 0).all()


def test_balanced_halves_is_seeded():
    assert torch.equal(balanced_halves(200, 8, 1), balanced_halves(200, 8, 1))
    assert not torch.equal(balanced_halves(200, 8, 1), balanced_halves(200, 8, 2))
    with pytest.raises(ParameterError, match="n_models >= 2"):
        balanced_halves(10, 1, 0)


# --- index_streams ------------------------------------------------------------------------


def test_index_streams_cover_each_subset_every_epoch():
    masks = balanced_halves(37, 6, seed=0)
    masks[0, :] = False
    masks[0, :5] = True  # one short subset: it wraps around within the epoch
    epochs, b = 3, 4
    s = index_streams(masks, epochs, b, seed=7)
    sizes = masks.sum(1)
    steps = math.ceil(int(sizes.max()) / b)
    assert s.dtype == torch.int64 and s.shape == (epochs * steps, 6, b)
    for i in range(6):
        subset = set(masks[i].nonzero().flatten().tolist())
        for e in range(epochs):
            seen = s[e * steps:(e + 1) * steps, i].flatten().tolist()
            assert set(seen) == subset  # inside the subset, and all of it
            n_i = len(subset)
            assert sorted(seen[:n_i]) == sorted(subset)  # one full shuffled pass first
    # each model gets its own order; the seed decides it
    assert torch.equal(s, index_streams(masks, epochs, b, seed=7))
    assert not torch.equal(s, index_streams(masks, epochs, b, seed=8))
    assert not torch.equal(s[:, 1], s[:, 2])


def test_the_loop_draws_the_same_stream_as_the_ensemble():
    masks = balanced_halves(30, 4, seed=2)
    s = index_streams(masks, 3, 4, seed=5)
    subsets = _subsets(masks)
    for i in range(4):
        assert torch.equal(torch.cat(list(_model_epochs(subsets, i, 3, 4, 5))), s[:, i])


def test_index_streams_refuse_bad_masks():
    masks = balanced_halves(10, 4, 0)
    masks[2] = False
    with pytest.raises(ParameterError, match="no training examples"):
        index_streams(masks, 1, 4, 0)
    with pytest.raises(ParameterError, match="bool tensor"):
        index_streams(masks.int(), 1, 4, 0)


# --- one step: stacked == loop ------------------------------------------------------------


@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (1, 40))])
def test_one_stacked_step_equals_the_loop(name, shape):
    x, y = _data(shape)
    masks = balanced_halves(len(x), 4, seed=0)
    one_step = Recipe(epochs=1, batch_size=32, lr=0.05)  # 24 examples per model: one batch
    seeds = [10, 11, 12, 13]
    kw = dict(model_name=name, input_shape=shape, num_classes=5, x=x, y=y, masks=masks,
              recipe=one_step, seeds=seeds)
    loop = train_ensemble(**kw, stacked=False)
    stacked = train_ensemble(**kw, stacked=True)
    init = [build_model(name, shape, 5, seed=s) for s in seeds]
    assert _max_rel_diff(loop, init) > 1e-3  # the step did move the weights
    assert _max_rel_diff(stacked, loop) < 1e-5
    for m in stacked:
        assert not m.training and next(m.parameters()).device.type == "cpu"


@pytest.mark.parametrize("engine", ["split", "grouped", "vmap"])
@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (1, 40))])
def test_every_stacked_engine_matches_the_loop_over_several_steps(engine, name, shape):
    """'split' is the CPU default, 'grouped' the CUDA one, 'vmap' the fallback."""
    x, y = _data(shape)
    subsets = _subsets(balanced_halves(len(x), 3, seed=1))
    recipe = Recipe(epochs=2, batch_size=8, lr=0.05)  # 3 steps per epoch, momentum active
    a = [build_model(name, shape, 5, seed=s) for s in range(3)]
    b = [build_model(name, shape, 5, seed=s) for s in range(3)]
    _train_loop(a, x, y, subsets, recipe, 0, CPU, "t")
    _train_stacked(b, shape, x, y, subsets, recipe, 0, CPU, "t", engine)
    assert _max_rel_diff(b, a) < 1e-5


def test_unknown_layers_fall_back_to_vmap():
    def tanh_net(seed: int) -> Classifier:
        torch.manual_seed(seed)
        return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.Tanh()), 6, 3)

    x, y = _data((8,), classes=3)
    subsets = _subsets(balanced_halves(len(x), 2, seed=0))
    recipe = Recipe(epochs=1, batch_size=8, lr=0.05)
    a, b = [tanh_net(s) for s in (0, 1)], [tanh_net(s) for s in (0, 1)]
    _train_loop(a, x, y, subsets, recipe, 0, CPU, "t")
    _train_stacked(b, (8,), x, y, subsets, recipe, 0, CPU, "t")  # engine picked: vmap
    assert _max_rel_diff(b, a) < 1e-5


# --- full training on digits --------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs,epochs", [("mlp", {}, 4), ("cnn", {"width": 8}, 8)])
def test_trained_ensemble_matches_the_loop_on_digits(digits, name, kwargs, epochs):
    n_models = 4
    masks = balanced_halves(len(digits.x_train), n_models, seed=0)
    recipe = Recipe(epochs=epochs, batch_size=64, lr=0.05)
    kw = dict(model_name=name, input_shape=digits.input_shape, num_classes=10,
              x=digits.x_train, y=digits.y_train, masks=masks, recipe=recipe,
              seeds=list(range(n_models)), model_kwargs=kwargs)
    rng_before = torch.get_rng_state()
    accs = {}
    for stacked in (False, True):
        models = train_ensemble(**kw, stacked=stacked)
        accs[stacked] = sum(accuracy(m, digits.x_test, digits.y_test) for m in models) / n_models
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert accs[False] > 70  # it learned
    assert abs(accs[True] - accs[False]) <= 1.0


# --- the loop path and bad input ----------------------------------------------------------


def test_resnet18_falls_back_to_the_loop():
    shape = (3, 8, 8)
    x, y = _data(shape, n=16, classes=3)
    masks = balanced_halves(len(x), 2, seed=0)
    recipe = Recipe(epochs=1, batch_size=4, lr=0.01)
    kw = dict(model_name="resnet18", input_shape=shape, num_classes=3, x=x, y=y, masks=masks,
              recipe=recipe, seeds=[0, 1], model_kwargs={"width": 4})
    models = train_ensemble(**kw)
    init = build_model("resnet18", shape, 3, seed=0, width=4)
    assert len(models) == 2 and not models[0].training
    assert _max_rel_diff(models[:1], [init]) > 1e-4
    assert models[0](x[:2]).shape == (2, 3)
    with pytest.raises(ParameterError, match="batch norm"):
        train_ensemble(**kw, stacked=True)


def test_bad_input_is_refused_in_one_line():
    x, y = _data((1, 8, 8), n=20)
    masks = balanced_halves(20, 2, 0)
    r = Recipe(epochs=1, batch_size=8)
    with pytest.raises(ParameterError, match="masks must be shaped"):
        train_ensemble("mlp", (1, 8, 8), 5, x, y, masks, r, seeds=[0, 1, 2])
    with pytest.raises(ParameterError, match="labels"):
        train_ensemble("mlp", (1, 8, 8), 5, x, y[:-1], masks, r, seeds=[0, 1])
    with pytest.raises(ParameterError, match="unknown model"):
        train_ensemble("vit", (1, 8, 8), 5, x, y, masks, r, seeds=[0, 1])


@pytest.mark.parametrize("stacked", [False, True])
def test_divergence_stops_and_names_the_model(stacked):
    x, y = _data((1, 8, 8), n=20)
    x = x * 1e3
    masks = balanced_halves(20, 2, 0)
    r = Recipe(epochs=5, batch_size=8, lr=1e6, momentum=0.0, schedule="constant")
    with pytest.raises(TrainingDiverged, match=r"shadow model \d"):
        train_ensemble("mlp", (1, 8, 8), 5, x, y, masks, r, seeds=[0, 1], stacked=stacked)
