"""Shadow-model training for U-LiRA: membership masks, each model's batches, and the
contract of train_ensemble: model i, stacked or looped, is train_model on its subset with
seeds[i] (same initial weights, batches, steps, schedule and optimizer)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from classunlearn.errors import ParameterError, TrainingDiverged
from classunlearn.models import Classifier, build_model
from classunlearn.shadows import (
    _subsets,
    _train_loop,
    _train_stacked,
    _Unsupported,
    balanced_halves,
    complementary_pairs,
    index_streams,
    train_ensemble,
)
from classunlearn.train import Recipe, accuracy, batch_sizes, epoch_batches, train_model

CPU = torch.device("cpu")


def _data(shape: tuple[int, ...], n: int = 48, classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


@torch.no_grad()
def _max_rel_diff(a: list[nn.Module], b: list[nn.Module], buffers: bool = False) -> float:
    """Largest relative difference ||a - b|| / ||b|| over every parameter of every model
    (with `buffers`: over every floating-point buffer, integer buffers must be equal)."""
    worst = 0.0
    for ma, mb in zip(a, b, strict=True):
        pairs = zip(ma.named_buffers(), mb.named_buffers(), strict=True) if buffers else \
            zip(ma.named_parameters(), mb.named_parameters(), strict=True)
        for (na, pa), (nb, pb) in pairs:
            assert na == nb and pa.shape == pb.shape
            if not pa.is_floating_point():
                assert torch.equal(pa, pb), na
                continue
            worst = max(worst, float((pa - pb).norm() / pb.norm().clamp_min(1e-12)))
    return worst


# --- balanced_halves ----------------------------------------------------------------------


@pytest.mark.parametrize("n_models", [2, 4, 8])
def test_balanced_halves_every_example_in_half_the_models(n_models):
    m = balanced_halves(101, n_models, seed=3)
    assert m.dtype == torch.bool and m.shape == (n_models, 101)
    assert (m.sum(0) == n_models // 2).all()
    assert (m.sum(1) > 0).all()
    # complementary pairs: model 2k + 1 trains on exactly what model 2k leaves out
    assert complementary_pairs(m) and (m[0::2] == ~m[1::2]).all()
    broken = m.clone()
    broken[1, 0] = broken[0, 0]
    assert not complementary_pairs(broken)


def test_balanced_halves_odd_count_adds_an_independent_half():
    m = balanced_halves(101, 5, seed=3)
    assert complementary_pairs(m[:4]) and not complementary_pairs(m)
    assert set(m.sum(0).tolist()) <= {2, 3}


def test_balanced_halves_is_seeded():
    assert torch.equal(balanced_halves(200, 8, 1), balanced_halves(200, 8, 1))
    assert not torch.equal(balanced_halves(200, 8, 1), balanced_halves(200, 8, 2))
    with pytest.raises(ParameterError, match="n_models >= 2"):
        balanced_halves(10, 1, 0)


def uneven_masks(n: int, sizes: list[int], seed: int) -> torch.Tensor:
    """Masks whose subsets have the given (different) sizes: the trainers must handle models
    that take different numbers of steps, and last batches of every size."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for size in sizes:
        row = torch.zeros(n, dtype=torch.bool)
        row[torch.randperm(n, generator=gen)[:size]] = True
        rows.append(row)
    return torch.stack(rows)


# --- index_streams ------------------------------------------------------------------------


def test_index_streams_are_train_models_batches():
    masks = uneven_masks(37, [16, 12, 9], seed=3)
    epochs, b, seeds = 3, 5, [7, 8, 9]
    streams = index_streams(masks, epochs, b, seeds)
    for i, (stream, seed) in enumerate(zip(streams, seeds)):
        subset = masks[i].nonzero().flatten()
        sizes = batch_sizes(len(subset), b)  # 16 -> 5, 5, 6 (a last batch of one merged),
        assert [len(t) for t in stream] == sizes * epochs  # 12 -> 5, 5, 2, 9 -> 5, 4
        for e in range(epochs):  # every epoch is one shuffled pass over the subset
            seen = torch.cat(stream[e * len(sizes):(e + 1) * len(sizes)])
            assert sorted(seen.tolist()) == subset.tolist()
        gen = torch.Generator().manual_seed(seed)  # what train_model draws on x[subset]
        expected = [subset[t] for _ in range(epochs) for t in epoch_batches(len(subset), b, gen)]
        assert all(torch.equal(u, v) for u, v in zip(stream, expected, strict=True))
    # model i's batches depend on seeds[i] only
    other = index_streams(masks, epochs, b, [7, 8, 10])
    assert all(torch.equal(u, v) for u, v in zip(streams[0] + streams[1], other[0] + other[1]))
    assert not all(torch.equal(u, v) for u, v in zip(streams[2], other[2]))


def test_index_streams_refuse_bad_masks():
    masks = balanced_halves(10, 4, 0)
    with pytest.raises(ParameterError, match="seeds"):
        index_streams(masks, 1, 4, [0, 1])
    masks[2] = False
    with pytest.raises(ParameterError, match="no training examples"):
        index_streams(masks, 1, 4, [0, 1, 2, 3])
    with pytest.raises(ParameterError, match="bool tensor"):
        index_streams(masks.int(), 1, 4, [0, 1, 2, 3])


# --- the contract: model i == build_model + train_model on its subset ---------------------

RECIPES = {  # batch 5 on subsets of 16, 12 and 9: 3, 3 and 2 steps per epoch
    "sgd-cosine": Recipe(epochs=3, batch_size=5, lr=0.05),
    "sgd-step": Recipe(epochs=3, batch_size=5, lr=0.05, schedule="step"),
    # Adam divides by sqrt(v): a weight whose gradient is at rounding level in one engine
    # and exactly zero in the other still moves by up to lr, so its lr sets the difference
    # (measured: 7e-7 at lr 1e-3, 1e-5 at 5e-3).
    "adam": Recipe(epochs=3, batch_size=5, lr=1e-3, optimizer="adam"),
    "sgd-crop-flip": Recipe(epochs=3, batch_size=5, lr=0.05, schedule="step",
                            augment="crop-flip"),
}


def _alone(name, shape, x, y, masks, recipe, seeds, **kw) -> list[nn.Module]:
    return [train_model(build_model(name, shape, 5, seed=s, **kw), x[m], y[m], recipe, seed=s)
            for m, s in zip(masks, seeds)]


@pytest.mark.parametrize("stacked", [True, False])
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_each_shadow_model_is_train_model_on_its_subset(name, recipe, stacked):
    # crop-flip on colour images; the others on one-channel ones
    shape, seeds = (3, 8, 8) if "crop" in recipe else (1, 8, 8), [10, 11, 12]
    x, y = _data(shape, n=37)
    masks = uneven_masks(len(x), [16, 12, 9], seed=3)
    r = RECIPES[recipe]
    models = train_ensemble(name, shape, 5, x, y, masks, r, seeds, stacked=stacked)
    alone = _alone(name, shape, x, y, masks, r, seeds)
    init = [build_model(name, shape, 5, seed=s) for s in seeds]
    assert _max_rel_diff(alone, init) > 1e-2  # training did move the weights
    assert _max_rel_diff(models, alone) < (1e-5 if stacked else 1e-7)
    for m in models:
        assert not m.training and next(m.parameters()).device.type == "cpu"


@pytest.mark.parametrize("engine", ["split", "grouped", "vmap"])
@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (1, 40))])
def test_every_stacked_engine_matches_the_loop(engine, name, shape):
    """'split' is the CPU default, 'grouped' the CUDA one, 'vmap' the fallback."""
    x, y = _data(shape, n=37)
    subsets = _subsets(uneven_masks(len(x), [16, 12, 9], seed=3))
    recipe = RECIPES["sgd-cosine"]
    a = [build_model(name, shape, 5, seed=s) for s in range(3)]
    b = [build_model(name, shape, 5, seed=s) for s in range(3)]
    _train_loop(a, x, y, subsets, recipe, [0, 1, 2], CPU, "t")
    _train_stacked(b, shape, x, y, subsets, recipe, [0, 1, 2], CPU, "t", engine)
    assert _max_rel_diff(b, a) < 1e-5


def test_unknown_layers_fall_back_to_vmap():
    def tanh_net(seed: int) -> Classifier:
        torch.manual_seed(seed)
        return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.Tanh()), 6, 3)

    x, y = _data((8,), classes=3)
    subsets = _subsets(balanced_halves(len(x), 2, seed=0))
    recipe = Recipe(epochs=2, batch_size=5, lr=0.05)
    a, b = [tanh_net(s) for s in (0, 1)], [tanh_net(s) for s in (0, 1)]
    _train_loop(a, x, y, subsets, recipe, [0, 1], CPU, "t")
    _train_stacked(b, (8,), x, y, subsets, recipe, [0, 1], CPU, "t")  # engine picked: vmap
    assert _max_rel_diff(b, a) < 1e-5


@pytest.mark.parametrize("stacked", [True, False])
def test_the_global_rng_is_left_untouched(stacked):
    x, y = _data((1, 8, 8), n=20)
    masks = balanced_halves(20, 2, 0)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    train_ensemble("mlp", (1, 8, 8), 5, x, y, masks, Recipe(epochs=1, batch_size=8), [0, 1],
                   stacked=stacked)
    assert torch.equal(torch.get_rng_state(), before)


# --- full training on digits --------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs,epochs", [("mlp", {}, 4), ("cnn", {"width": 8}, 8)])
def test_trained_ensemble_matches_the_loop_on_digits(digits, name, kwargs, epochs):
    n_models = 4
    masks = balanced_halves(len(digits.x_train), n_models, seed=0)
    recipe = Recipe(epochs=epochs, batch_size=64, lr=0.05)
    kw = dict(model_name=name, input_shape=digits.input_shape, num_classes=10,
              x=digits.x_train, y=digits.y_train, masks=masks, recipe=recipe,
              seeds=list(range(n_models)), model_kwargs=kwargs)
    models = {stacked: train_ensemble(**kw, stacked=stacked) for stacked in (False, True)}
    # Close, not float-equal over 80 steps: digits has many exact zeros, so max-pool ties
    # are broken by rounding, and one flipped tie is then amplified (measured: 2e-7 with
    # the CPU's split convs, 5e-3 for one cnn model with grouped convs).
    assert _max_rel_diff(models[True], models[False]) < 1e-2
    acc = sum(accuracy(m, digits.x_test, digits.y_test) for m in models[True]) / n_models
    assert acc > 70  # it learned


# --- the loop path and bad input ----------------------------------------------------------


@pytest.mark.parametrize("augment", ["none", "crop-flip"])
def test_resnet18_trains_in_the_loop_as_train_model(augment):
    shape = (3, 8, 8)
    x, y = _data(shape, n=23, classes=3)
    masks = uneven_masks(len(x), [9, 14], seed=2)  # batches of 4: 4, 5 and 4, 4, 4, 2
    recipe = Recipe(epochs=2, batch_size=4, lr=0.01, augment=augment)
    kw = dict(model_name="resnet18", input_shape=shape, num_classes=3, x=x, y=y, masks=masks,
              recipe=recipe, seeds=[0, 1], model_kwargs={"width": 4})
    models = train_ensemble(**kw, stacked=False)
    alone = [train_model(build_model("resnet18", shape, 3, seed=s, width=4), x[m], y[m],
                         recipe, seed=s) for m, s in zip(masks, [0, 1])]
    init = build_model("resnet18", shape, 3, seed=0, width=4)
    assert len(models) == 2 and not models[0].training
    assert _max_rel_diff(models[:1], [init]) > 1e-4
    assert _max_rel_diff(models, alone) < 1e-7
    assert _max_rel_diff(models, alone, buffers=True) < 1e-7  # batch-norm statistics too


# --- batch norm in the stacked engine (vmap, models grouped by batch width) ---------------

# 3 models on subsets of 30, 24 and 19 in batches of 8: 8, 8, 8, 6 / 8, 8, 8 / 8, 8, 3 a
# epoch, so some steps group the models by width and some models have finished.
BN_SIZES, BN_SEEDS = [30, 24, 19], [0, 1, 2]


def _bn_pair(recipe: Recipe, dtype: torch.dtype) -> tuple[list[nn.Module], list[nn.Module]]:
    shape = (3, 8, 8)
    x, y = _data(shape, n=64, classes=3)
    subsets = _subsets(uneven_masks(len(x), BN_SIZES, seed=3))
    a = [build_model("resnet18", shape, 3, seed=s, width=4).to(dtype) for s in BN_SEEDS]
    b = [build_model("resnet18", shape, 3, seed=s, width=4).to(dtype) for s in BN_SEEDS]
    _train_loop(a, x.to(dtype), y, subsets, recipe, BN_SEEDS, CPU, "t")
    _train_stacked(b, shape, x.to(dtype), y, subsets, recipe, BN_SEEDS, CPU, "t")
    return b, a


@pytest.mark.parametrize("augment", ["none", "crop-flip"])
def test_stacked_batch_norm_is_the_loop_in_float64(augment):
    """Each model's own batch statistics, running statistics and num_batches_tracked: in
    float64, where rounding cannot flip a ReLU, the stacked ensemble is the loop (measured:
    2e-7 on weights, 9e-8 on running statistics, relative, per tensor)."""
    recipe = Recipe(epochs=2, batch_size=8, lr=1e-3, schedule="step", augment=augment)
    stacked, loop = _bn_pair(recipe, torch.float64)
    assert _max_rel_diff(stacked, loop) < 1e-5
    assert _max_rel_diff(stacked, loop, buffers=True) < 1e-5
    assert all(not m.training for m in stacked)


@pytest.mark.parametrize("augment", ["none", "crop-flip"])
def test_train_ensemble_stacks_resnet18_as_train_model(augment):
    """float32 through train_ensemble(stacked=True). On 8x8 inputs with batches of 8,
    ResNet-18's batch norm sees 8 values a channel in its last stage and a ReLU input
    within rounding of 0 flips now and then, so the tolerance holds for a small lr only
    (measured 4e-5 on weights, 2e-5 on running statistics at lr 1e-3; at lr 1e-2 one
    flipped ReLU gives 2e-2, as does float32 against float64 in the loop itself)."""
    shape = (3, 8, 8)
    x, y = _data(shape, n=64, classes=3)
    masks = uneven_masks(len(x), BN_SIZES, seed=3)
    recipe = Recipe(epochs=2, batch_size=8, lr=1e-3, schedule="step", augment=augment)
    models = train_ensemble("resnet18", shape, 3, x, y, masks, recipe, BN_SEEDS,
                            model_kwargs={"width": 4}, stacked=True)
    alone = [train_model(build_model("resnet18", shape, 3, seed=s, width=4), x[m], y[m],
                         recipe, seed=s) for m, s in zip(masks, BN_SEEDS)]
    assert _max_rel_diff(models, alone) < 2e-4
    assert _max_rel_diff(models, alone, buffers=True) < 2e-4
    assert all(int(m.body[1].num_batches_tracked) == 2 * len(batch_sizes(n, 8))
               for m, n in zip(models, BN_SIZES))


def test_a_model_vmap_cannot_run_is_refused_by_the_stacked_engine():
    def dropout_net(seed: int) -> Classifier:
        torch.manual_seed(seed)
        return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.Dropout(0.5)), 6, 3)

    x, y = _data((8,), classes=3)
    subsets = _subsets(balanced_halves(len(x), 2, seed=0))
    models = [dropout_net(s) for s in (0, 1)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    with pytest.raises(_Unsupported):
        _train_stacked(models, (8,), x, y, subsets, Recipe(epochs=1, batch_size=5), [0, 1],
                       CPU, "t")
    for m, sd in zip(models, before):  # refused before touching the models
        assert all(torch.equal(v, m.state_dict()[k]) for k, v in sd.items())


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


@pytest.mark.parametrize("n, wd, masked", [(16, 5e-4, False), (16, 0.0, True), (5, 5e-4, True)])
def test_fused_sgd_step_equals_the_written_out_passes(n, wd, masked):
    """SGD's weight decay and momentum in torch's fused kernel (lr 0), then each model's own
    step: bitwise the three written-out passes where the stacked tensors fill whole SIMD
    vectors (N = 16), within rounding elsewhere (the kernel's scalar tail), first step and
    update masks included."""
    from classunlearn.shadows import _FUSED_SGD, _fused_sgd_works, _StackedOptimizer

    if not _fused_sgd_works(torch.device("cpu")):
        pytest.skip("this torch has no fused SGD kernel on the CPU")
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 16), (16,), (16, 3)]
    start = [torch.randn(n, *s, generator=gen) for s in shapes]
    masks = [(torch.rand(n, *s, generator=gen) > 0.3).float() for s in shapes] if masked \
        else None
    finals = []
    for fused in (False, True):
        _FUSED_SGD["cpu"] = fused
        try:
            params = [t.clone() for t in start]
            opt = _StackedOptimizer(params, Recipe(epochs=1, batch_size=4, lr=0.1,
                                                   weight_decay=wd), masks)
            assert opt.fused == fused
            g = torch.Generator().manual_seed(1)
            for _ in range(6):
                for p in params:
                    p.grad = torch.randn(p.shape, generator=g)
                lr = torch.rand(n, generator=g)
                lr[0] = 0.0  # a finished model
                opt.step(lr)
            finals.append(params)
        finally:
            del _FUSED_SGD["cpu"]
    for a, b in zip(*finals):
        if n == 16:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
