"""EU-k and CF-k (Goel et al. 2022): the layers they train, the frozen rest that never moves,
EU-k's fresh layers, their defaults, and their stacked runs on the shadows."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from classunlearn.errors import ParameterError
from classunlearn.methods import METHODS, FinetuneParams, UnlearnData, make_params
from classunlearn.methods.cf_k import parameter_layers
from classunlearn.methods.eu_k import reinitialise_layers
from classunlearn.models import build_model
from classunlearn.train import Recipe, accuracy

RECIPE = Recipe(epochs=15, batch_size=64, lr=0.05)  # the digits_models fixture's
NAMES = ["eu-k", "cf-k"]


@pytest.fixture(scope="module")
def setup(digits_models):
    split, original, _ = digits_models
    return split, UnlearnData.from_split(split), original


def _params(name, **changes):
    return dataclasses.replace(make_params(name, "digits", recipe=RECIPE)[1], **changes)


def _accs(model, split):
    xr, yr = split.part("train_retain")
    xf, yf = split.part("train_forget")
    return accuracy(model, xr, yr), accuracy(model, xf, yf)


def _frozen_unchanged(before, after, trained: set[str]) -> int:
    """Asserts every parameter outside `trained` layers is bitwise unchanged; returns how
    many trained tensors moved."""
    moved = 0
    b, a = dict(before.named_parameters()), dict(after.named_parameters())
    for key in b:
        layer = key.rsplit(".", 1)[0]
        if layer in trained:
            moved += not torch.equal(b[key], a[key])
        else:
            assert torch.equal(b[key], a[key]), key
    return moved


# ------------------------------------------------------------------ registry and defaults

def test_registered_with_paper_and_params():
    for name in NAMES:
        cls = METHODS[name]
        assert cls.name == name and cls.summary and "\n" not in cls.summary
        assert "2201.06640" in cls.source and cls.__doc__
        assert issubclass(cls.Params, FinetuneParams) and cls.Params.__dataclass_params__.frozen
        p = cls.Params()
        assert p.k == 1 and p.layers is None


def test_defaults():
    # EU-k: a retrain of its layers, with the original's recipe
    recipe = Recipe(epochs=7, batch_size=32, lr=0.02, momentum=0.8, weight_decay=1e-4,
                    schedule="step", optimizer="sgd")
    p = make_params("eu-k", "mnist-5k", recipe=recipe)[1]
    assert (p.epochs, p.batch_size, p.lr, p.momentum, p.weight_decay, p.schedule,
            p.retain_fraction) == (7, 32, 0.02, 0.8, 1e-4, "step", 1.0)
    # --set wins
    assert make_params("eu-k", "digits", {"lr": "0.1", "epochs": "3"})[1].lr == 0.1
    # CF-k: FT's defaults on every dataset
    for dataset in ("digits", "mnist-5k", "mnist1d", "cifar10"):
        ft, cf = (make_params(n, dataset)[1] for n in ("ft", "cf-k"))
        assert (cf.lr, cf.epochs) == (ft.lr, ft.epochs), dataset
    p = make_params("cf-k", "digits", {"layers": "body.3,head", "k": "2"})[1]
    assert p.layers == "body.3,head" and p.k == 2


@pytest.mark.parametrize("arch,shape,kw", [("mlp", (1, 8, 8), {}), ("cnn", (1, 8, 8), {}),
                                           ("resnet18", (3, 16, 16), {"width": 8})])
def test_layer_one_is_the_final_linear(arch, shape, kw):
    model = build_model(arch, shape, 10, seed=0, **kw)
    layers = parameter_layers(model)
    assert layers[-1][0] == "head" and layers[-1][1] is model.head
    assert all(any(True for _ in m.parameters(recurse=False)) for _, m in layers)


# ------------------------------------------------------------------ what moves and what does not

@pytest.mark.parametrize("name", NAMES)
def test_frozen_layers_do_not_move_at_all(setup, name):
    split, data, original = setup
    params = _params(name, k=2, epochs=3)
    assert params.weight_decay > 0 and params.momentum > 0  # both would leak without care
    out, record = METHODS[name]().unlearn(original, data, params, seed=0)
    assert record.notes["layers"] == "body.3,head"
    assert _frozen_unchanged(original, out, {"body.3", "head"}) == 4


def test_eu_k_fresh_layers_depend_on_the_seed_only():
    a, b, c = (build_model("mlp", (64,), 10, seed=s) for s in (0, 1, 0))
    state = torch.random.get_rng_state()
    for m, seed in ((a, 5), (b, 5), (c, 6)):
        reinitialise_layers(parameter_layers(m)[-2:], seed, "eu-k")
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    fresh = build_model("mlp", (64,), 10, seed=0)
    assert not torch.equal(a.head.weight, fresh.head.weight)  # re-drawn
    assert torch.equal(a.body[1].weight, fresh.body[1].weight)  # layer 3: kept
    # the same seed gives the same layers whatever the original; another seed others
    assert torch.equal(a.head.weight, b.head.weight) and torch.equal(a.body[3].bias, b.body[3].bias)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_eu_k_result_depends_on_the_seed(setup):
    _, data, original = setup
    params = _params("eu-k", epochs=1)
    one, two, other = (METHODS["eu-k"]().unlearn(original, data, params, seed=s)[0]
                       for s in (1, 1, 2))
    assert torch.equal(one.head.weight, two.head.weight)
    assert not torch.equal(one.head.weight, other.head.weight)


def test_eu_k_forgets_on_digits_and_keeps_the_rest(setup):
    split, data, original = setup
    acc_r0, acc_f0 = _accs(original, split)
    out, _ = METHODS["eu-k"]().unlearn(original, data, _params("eu-k"), seed=0)
    acc_r, acc_f = _accs(out, split)
    assert acc_f0 > 95 and acc_f <= 1.0, acc_f
    assert acc_r >= acc_r0 - 2, (acc_r0, acc_r)
    # the output layer of EU-k never saw class 3: its logit sits below every retained one
    xf, _ = split.part("train_forget")
    with torch.no_grad():
        assert float(F.softmax(out(xf), 1)[:, 3].max()) < 0.05


# ------------------------------------------------------------------ addressing the layers

def test_layers_by_name(setup):
    _, data, original = setup
    params = _params("cf-k", epochs=1, layers="body.3")  # overrides k
    out, record = METHODS["cf-k"]().unlearn(original, data, params, seed=0)
    assert record.notes["layers"] == "body.3"
    assert _frozen_unchanged(original, out, {"body.3"}) == 2
    # a container stands for the layers in it
    params = _params("cf-k", epochs=1, layers="body")
    out, record = METHODS["cf-k"]().unlearn(original, data, params, seed=0)
    assert record.notes["layers"] == "body.1,body.3"
    assert torch.equal(out.head.weight, original.head.weight)


@pytest.mark.parametrize("name", NAMES)
def test_bad_layers_are_refused_in_one_line(setup, name):
    _, data, original = setup
    with pytest.raises(ParameterError) as e:
        METHODS[name]().unlearn(original, data, _params(name, layers="head,fc9"), seed=0)
    msg = str(e.value)
    assert "\n" not in msg and "'fc9'" in msg and "body.1, body.3, head" in msg
    with pytest.raises(ParameterError, match=r"k=4 but the model has 3 layers.*k <= 3"):
        METHODS[name]().unlearn(original, data, _params(name, k=4), seed=0)
    with pytest.raises(ParameterError, match="k must be >= 1"):
        make_params(name, "digits", {"k": "0"})
    with pytest.raises(ParameterError, match="at least one"):
        make_params(name, "digits", {"layers": " , "})


# ------------------------------------------------------------------ stacked on the shadows

K = 4
SEEDS = [5, 6, 7]


def _data(shape, sizes=(40, 53, 47)):
    out = []
    for seed, n in enumerate(sizes):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(n, *shape, generator=g), torch.randint(0, K, (n,), generator=g)
        f = y == 1
        out.append(UnlearnData(x[f], y[f], x[~f], y[~f], (1,), K))
    return out


@pytest.mark.parametrize("arch,shape,kw,k", [("mlp", (10,), {"hidden": 16}, 2),
                                             ("cnn", (1, 8, 8), {"width": 4}, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_unlearn_many_stacked_is_three_single_runs(name, arch, shape, kw, k):
    cls = METHODS[name]
    params = dataclasses.replace(cls.Params(), k=k, epochs=2, batch_size=8, lr=0.05)
    models = [build_model(arch, shape, K, seed=s, **kw) for s in range(3)]
    datas = _data(shape)
    stacked = cls().unlearn_many(models, datas, params, SEEDS, stacked=True)
    singles = [cls().unlearn(m, d, params, seed=s) for m, d, s in zip(models, datas, SEEDS)]
    trained = {n for n, _ in parameter_layers(models[0])[-k:]}
    for (a, ra), (b, rb), model in zip(stacked, singles, models):
        assert ra.steps == rb.steps > 0 and ra.notes == rb.notes
        for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=key)
        assert _frozen_unchanged(model, a, trained) == 2 * k  # weight and bias of each
        assert _frozen_unchanged(model, b, trained) == 2 * k


@pytest.fixture(scope="module")
def resnet():
    model = build_model("resnet18", (3, 16, 16), K, seed=0, width=8)
    with torch.no_grad():  # statistics that a training-mode pass would visibly change
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(0.5)
                m.running_var.fill_(2.0)
    return model


@pytest.mark.parametrize("name", NAMES)
def test_frozen_batch_norm_keeps_its_statistics(resnet, name):
    datas = _data((3, 16, 16), sizes=(24, 30))
    params = dataclasses.replace(METHODS[name].Params(), k=2, epochs=1, batch_size=8,
                                 lr=0.05)  # head and the last block's bn2
    out, record = METHODS[name]().unlearn(resnet, datas[0], params, seed=0)
    assert record.notes["layers"] == "body.10.bn2,head"
    before, after = resnet.state_dict(), out.state_dict()
    for key in before:
        if key.startswith(("head.", "body.10.bn2.")):
            continue
        assert torch.equal(before[key], after[key]), key  # weights and statistics alike
    assert not torch.equal(before["body.10.bn2.running_mean"],
                           after["body.10.bn2.running_mean"])  # the trained BN trains
    # the vmap engine would run the frozen batch norm in training mode: one model at a time
    loop = METHODS[name]().unlearn_many([resnet, resnet], datas, params, [0, 1])
    for key, value in loop[0][0].state_dict().items():
        assert torch.equal(value, after[key]), key
    with pytest.raises(ParameterError, match="cannot run stacked.*eval mode"):
        METHODS[name]().unlearn_many([resnet, resnet], datas, params, [0, 1], stacked=True)

