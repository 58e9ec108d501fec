"""Stacked method runs (methods.stacked) and bounded-memory chunks (shadows.chunk_size):
model i of a stacked run is, to float rounding, ``method.unlearn`` on its own data and
seed, whatever the chunk; and chunked shadow training equals unchunked."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from classunlearn.errors import ParameterError, TrainingDiverged
from classunlearn.methods import METHODS, FinetuneMethod, UnlearnData
from classunlearn.methods.ft import FT
from classunlearn.models import build_model
from classunlearn.shadows import (
    MEMORY_ENV,
    balanced_halves,
    chunk_size,
    model_memory,
    train_ensemble,
)
from classunlearn.train import Recipe

FINETUNE = sorted(name for name, cls in METHODS.items() if issubclass(cls, FinetuneMethod))
K = 4
SEEDS = [5, 6, 7]


def _data(shape: tuple[int, ...], sizes=(40, 53, 47)) -> list[UnlearnData]:
    """One data set per model, of different sizes (so models take different numbers of
    steps), forget class 1."""
    out = []
    for seed, n in enumerate(sizes):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(n, *shape, generator=g), torch.randint(0, K, (n,), generator=g)
        f = y == 1
        out.append(UnlearnData(x[f], y[f], x[~f], y[~f], (1,), K))
    return out


def _models(name: str, shape: tuple[int, ...], n: int = 3, **kwargs) -> list[nn.Module]:
    return [build_model(name, shape, K, seed=s, **kwargs) for s in range(n)]


@torch.no_grad()
def _max_rel_diff(a: list[nn.Module], b: list[nn.Module]) -> float:
    worst = 0.0
    for ma, mb in zip(a, b, strict=True):
        for (na, pa), (nb, pb) in zip(ma.state_dict().items(), mb.state_dict().items(),
                                      strict=True):
            assert na == nb and pa.shape == pb.shape
            if not pa.is_floating_point():
                assert torch.equal(pa, pb), na
                continue
            worst = max(worst, float((pa - pb).norm() / pb.norm().clamp_min(1e-12)))
    return worst


def _both(method, models, datas, params, **kwargs):
    refs = _models("mlp", tuple(datas[0].x_forget.shape[1:]), 2, hidden=16) \
        if method.oracle else None
    loop = method.unlearn_many(models, datas, params, SEEDS, references=refs, stacked=False)
    stacked = method.unlearn_many(models, datas, params, SEEDS, references=refs,
                                  stacked=True, **kwargs)
    return loop, stacked


@pytest.mark.parametrize("name", FINETUNE)
def test_every_finetune_method_stacked_is_its_loop(name):
    cls = METHODS[name]
    extra = {"msteps": 1} if name == "scrub" else {}
    params = dataclasses.replace(cls.Params(), epochs=2, batch_size=8, lr=0.05, **extra)
    models = _models("mlp", (10,), hidden=16)
    loop, stacked = _both(cls(), models, _data((10,)), params)
    assert _max_rel_diff([m for m, _ in stacked], [m for m, _ in loop]) < 1e-5
    for (_, a), (_, b) in zip(loop, stacked):
        assert a.steps == b.steps > 0 and a.seed == b.seed and a.notes == b.notes
    # the methods moved the weights, and left the caller's models alone
    assert _max_rel_diff([m for m, _ in loop], models) > 1e-3
    fresh = _models("mlp", (10,), hidden=16)
    assert _max_rel_diff(models, fresh) == 0


@pytest.mark.parametrize("name,changes", [("ft", {"optimizer": "adam", "lr": 0.01}),
                                          ("salun", {"schedule": "step"}),
                                          ("l1-sparse", {"retain_fraction": 0.5}),
                                          ("be", {}),
                                          # two passes per epoch, lr decayed per epoch
                                          ("scrub", {"epochs": 4, "msteps": 2,
                                                     "forget_batch_size": 4})])
def test_stacked_cnn_is_the_loop(name, changes):
    cls = METHODS[name]
    params = dataclasses.replace(cls.Params(), **{"epochs": 2, "batch_size": 8, "lr": 0.05,
                                                  **changes})
    loop, stacked = _both(cls(), _models("cnn", (1, 8, 8), width=4), _data((1, 8, 8)), params)
    assert _max_rel_diff([m for m, _ in stacked], [m for m, _ in loop]) < 1e-5


def test_batch_norm_runs_stacked_as_the_loop_in_float64():
    models = [m.double() for m in _models("resnet18", (3, 8, 8), width=4)]
    datas = [dataclasses.replace(d, x_forget=d.x_forget.double(), x_retain=d.x_retain.double())
             for d in _data((3, 8, 8), sizes=(20, 27, 23))]
    params = FT.Params(epochs=1, batch_size=8, lr=0.05)
    loop, stacked = _both(FT(), models, datas, params)
    assert _max_rel_diff([m for m, _ in stacked], [m for m, _ in loop]) < 1e-10


@pytest.mark.parametrize("chunk", [1, 2])
def test_chunked_method_runs_equal_unchunked(chunk):
    params = METHODS["rl"].Params(epochs=2, batch_size=8, lr=0.05)
    models, datas = _models("mlp", (10,), hidden=16), _data((10,))
    whole = METHODS["rl"]().unlearn_many(models, datas, params, SEEDS, stacked=True)
    parts = METHODS["rl"]().unlearn_many(models, datas, params, SEEDS, stacked=True,
                                         chunk=chunk)
    assert _max_rel_diff([m for m, _ in parts], [m for m, _ in whole]) < 1e-6


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_chunked_shadow_training_equals_unchunked(name):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 8, 8, generator=g), torch.randint(0, K, (40,), generator=g)
    masks = balanced_halves(40, 4, seed=1)
    recipe = Recipe(epochs=2, batch_size=8, lr=0.05)
    kw = {"hidden": 16} if name == "mlp" else {"width": 4}
    whole = train_ensemble(name, (1, 8, 8), K, x, y, masks, recipe, [0, 1, 2, 3], kw,
                           stacked=True)
    parts = train_ensemble(name, (1, 8, 8), K, x, y, masks, recipe, [0, 1, 2, 3], kw,
                           stacked=True, chunk=3)
    assert _max_rel_diff(parts, whole) < 1e-6


def test_chunk_size_follows_the_budget(monkeypatch):
    model = build_model("mlp", (64,), K, hidden=32)
    per_model = model_memory(model, (64,), 16)
    assert per_model > 4 * 4 * sum(p.numel() for p in model.parameters())
    cpu = torch.device("cpu")
    assert chunk_size(model, (64,), 16, 10, 3, cpu) == 3
    assert chunk_size(model, (64,), 16, 2, 3, cpu) == 2
    monkeypatch.setenv(MEMORY_ENV, str(2.5 * per_model / 2**20))
    assert chunk_size(model, (64,), 16, 10, None, cpu) == 2
    monkeypatch.setenv(MEMORY_ENV, "0")
    assert chunk_size(model, (64,), 16, 10, None, cpu) == 1  # never below one model
    with pytest.raises(ParameterError, match="chunk"):
        chunk_size(model, (64,), 16, 10, 0, cpu)


class _Hooked(FT):
    """A plug-in method with an after_step hook: not stackable."""

    name = "ft-hooked"

    def after_step(self, model, params, ctx) -> None:
        ctx.notes["hooked"] = ctx.notes.get("hooked", 0) + 1


def test_a_method_with_its_own_hooks_stays_on_the_loop():
    params = FT.Params(epochs=1, batch_size=8)
    models, datas = _models("mlp", (10,), hidden=16), _data((10,))
    out = _Hooked().unlearn_many(models, datas, params, SEEDS)
    assert all(rec.notes["hooked"] == rec.steps for _, rec in out)
    with pytest.raises(ParameterError, match="after_step"):
        _Hooked().unlearn_many(models, datas, params, SEEDS, stacked=True)


class _PerModelPhases(FT):
    """Two phases whose learning rate follows the model's data size: not stackable."""

    def phases(self, model, data, params, ctx):
        return [(data, params), (data, dataclasses.replace(params, lr=1e-3 * len(data.y_retain)))]


def test_phases_that_differ_between_models_stay_on_the_loop():
    params = FT.Params(epochs=1, batch_size=8)
    models, datas = _models("mlp", (10,), hidden=16), _data((10,))
    loop = _PerModelPhases().unlearn_many(models, datas, params, SEEDS, stacked=False)
    auto = _PerModelPhases().unlearn_many(models, datas, params, SEEDS)
    assert _max_rel_diff([m for m, _ in auto], [m for m, _ in loop]) == 0.0
    assert loop[0][1].steps == 2 * math.ceil(len(datas[0].y_retain) / 8)  # both phases ran
    with pytest.raises(ParameterError, match="phases differ"):
        _PerModelPhases().unlearn_many(models, datas, params, SEEDS, stacked=True)


def test_divergence_names_the_shadow_model():
    params = METHODS["ga"].Params(epochs=50, batch_size=8, lr=1e4)
    with pytest.raises(TrainingDiverged, match=r"method ga \(shadow model \d\)"):
        METHODS["ga"]().unlearn_many(_models("mlp", (10,), hidden=16), _data((10,)), params,
                                     SEEDS, stacked=True)


def test_one_data_set_and_seed_per_model():
    models, datas = _models("mlp", (10,), hidden=16), _data((10,))
    for stacked in (False, True):
        with pytest.raises(ParameterError, match="one of each per model"):
            FT().unlearn_many(models, datas[:2], FT.Params(epochs=1), SEEDS, stacked=stacked)
