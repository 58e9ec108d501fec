"""8-bit images stay uint8 in memory and are normalised per batch, to exactly the values the
old float32 path held; bench workers memory-map one shared copy; the sidecar records the
normalisation (issue 11, item 4)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from classunlearn.bench.units import StudyContext
from classunlearn.data import (
    DATASETS,
    Dataset,
    ForgetSplit,
    Images,
    RawArrays,
    cat_inputs,
    load_dataset,
    open_shared,
    share_dataset,
    to_input,
)
from classunlearn.methods import METHODS, UnlearnData, default_params
from classunlearn.methods.bs import channel_range
from classunlearn.models import build_model
from classunlearn.shadows import balanced_halves, train_ensemble
from classunlearn.train import Recipe, predict_logits, train_model


def _raw(n_train: int = 60, n_test: int = 20, side: int = 8, k: int = 3) -> RawArrays:
    rng = np.random.default_rng(0)
    u_train = rng.integers(0, 256, (n_train, 3, side, side), dtype=np.uint8)
    u_test = rng.integers(0, 256, (n_test, 3, side, side), dtype=np.uint8)
    # as the image loaders make them: float32 in [0, 1]
    return RawArrays((u_train.astype(np.float32) / 255.0).astype(np.float32),
                     np.arange(n_train) % k, (u_test.astype(np.float32) / 255.0).astype(
                         np.float32), np.arange(n_test) % k, [str(i) for i in range(k)], "t")


def _old_float(raw: RawArrays) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 path of before: standardise the whole [0, 1] array with train stats."""
    x_train, x_test = torch.as_tensor(raw.x_train), torch.as_tensor(raw.x_test)
    mean = x_train.mean(dim=[0, 2, 3], keepdim=True)
    std = x_train.std(dim=[0, 2, 3], keepdim=True).clamp_min(1e-6)
    return (x_train - mean) / std, (x_test - mean) / std


@pytest.fixture(scope="module")
def pair() -> tuple[Dataset, Dataset]:
    """The same data as uint8 Images and as the old standardised float32 tensors."""
    raw = _raw()
    ds = Dataset.from_raw("t", raw, keep_8bit=True)
    x_train, x_test = _old_float(raw)
    return ds, dataclasses.replace(ds, x_train=x_train, x_test=x_test)


def test_images_are_stored_as_uint8(pair) -> None:
    ds, _ = pair
    assert isinstance(ds.x_train, Images) and isinstance(ds.x_test, Images)
    assert ds.x_train.u8.dtype == torch.uint8
    assert ds.x_train.u8.numel() * ds.x_train.u8.element_size() == 60 * 3 * 8 * 8  # 1 B each
    assert ds.input_shape == (3, 8, 8) and len(ds.x_train) == 60
    stats = ds.norm_stats
    assert stats is not None and len(stats["mean"]) == 3 and len(stats["std"]) == 3


def test_per_batch_normalisation_equals_the_old_float_path_exactly(pair) -> None:
    ds, old = pair
    assert torch.equal(to_input(ds.x_train), old.x_train)
    assert torch.equal(to_input(ds.x_test), old.x_test)
    idx = torch.tensor([5, 0, 59, 5])
    assert torch.equal(to_input(ds.x_train[idx]), old.x_train[idx])
    assert torch.equal(to_input(ds.x_train[3:9]), old.x_train[3:9])
    assert torch.equal(to_input(ds.x_train[7]), old.x_train[7])
    both = cat_inputs([ds.x_train[:4], ds.x_test[:2]])
    assert isinstance(both, Images)
    assert torch.equal(to_input(both), torch.cat([old.x_train[:4], old.x_test[:2]]))
    assert torch.equal(channel_range(ds.x_train), channel_range(old.x_train))


def test_non_8bit_and_vector_data_stay_float() -> None:
    raw = _raw()
    raw.x_train = raw.x_train.copy()
    raw.x_train[0, 0, 0, 0] = 0.1234  # not k/255
    assert isinstance(Dataset.from_raw("t", raw, keep_8bit=True).x_train, torch.Tensor)
    for name in ("digits", "mnist-5k"):  # embedded data stays float
        d = load_dataset(name)
        assert isinstance(d.x_train, torch.Tensor) and d.norm_stats is None


def _weights(model) -> list[torch.Tensor]:
    return [v.detach().clone() for v in model.state_dict().values()]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))


@pytest.mark.parametrize("augment", ["none", "crop-flip"])
def test_training_and_logits_match_the_float_path(pair, augment) -> None:
    ds, old = pair
    recipe = Recipe(epochs=2, batch_size=16, lr=0.05, augment=augment)
    out = [train_model(build_model("cnn", ds.input_shape, 3, seed=0, width=4), d.x_train,
                       d.y_train, recipe, seed=1) for d in (ds, old)]
    assert _same(*out)
    assert torch.equal(predict_logits(out[0], ds.x_test), predict_logits(out[0], old.x_test))


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_stacked_shadows_match_the_float_path(pair, model) -> None:
    ds, old = pair
    recipe = Recipe(epochs=1, batch_size=16, lr=0.05)
    masks = balanced_halves(len(ds.y_train), 2, seed=0)
    a, b = (train_ensemble(model, ds.input_shape, 3, d.x_train, d.y_train, masks, recipe,
                           [7, 8]) for d in (ds, old))
    for m, n in zip(a, b, strict=True):
        for x, y in zip(_weights(m), _weights(n), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gives_the_same_model_on_uint8_images(pair, name) -> None:
    ds, old = pair
    recipe = Recipe(epochs=2, batch_size=16, lr=0.05)
    original = train_model(build_model("cnn", ds.input_shape, 3, seed=0, width=4), old.x_train,
                           old.y_train, recipe, seed=0)
    cls = METHODS[name]
    params = default_params(cls, "t")
    short = {f: min(getattr(params, f), 2) for f in ("epochs", "msteps")
             if isinstance(getattr(params, f, None), int)}
    params = dataclasses.replace(params, **short)
    outs = []
    for d in (ds, old):
        split = ForgetSplit(d, (1,))
        xr, yr = split.part("train_retain")
        refs = [train_model(build_model("cnn", ds.input_shape, 3, seed=s, width=4), xr, yr,
                            recipe, seed=s) for s in (1, 2)] if cls.oracle else None
        model = build_model("cnn", ds.input_shape, 3, seed=0, width=4)
        model.load_state_dict(original.state_dict())
        out, _ = cls().unlearn(model, UnlearnData.from_split(split), params, seed=3,
                               references=refs)
        outs.append(out)
    assert _same(*outs)


def _npz_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "d.npz", x_train=rng.integers(0, 256, (120, 8, 8, 3), dtype=np.uint8),
             y_train=np.arange(120) % 4, x_test=rng.integers(0, 256, (40, 8, 8, 3),
                                                             dtype=np.uint8),
             y_test=np.arange(40) % 4)
    return folder


def test_shared_copy_is_memory_mapped_and_read_by_units(tmp_path, monkeypatch) -> None:
    data_dir = _npz_dir(tmp_path)
    ds = load_dataset("npz", data_dir)
    folder = share_dataset(ds, tmp_path / "out" / "data" / "fp")
    assert folder is not None and (folder / "x_train.npy").is_file()
    assert np.load(folder / "x_train.npy", mmap_mode="r").dtype == np.uint8
    shared = open_shared(folder)
    assert torch.equal(to_input(shared.x_train), to_input(ds.x_train))
    assert torch.equal(shared.y_test, ds.y_test) and shared.class_names == ds.class_names

    def refuse(_):
        raise AssertionError("the unit read the files instead of the shared copy")

    monkeypatch.setitem(DATASETS, "npz", dataclasses.replace(DATASETS["npz"], load=refuse))
    ctx = StudyContext("npz", str(data_dir), "cnn", {"width": 4}, Recipe().to_dict(), (1,),
                       "fp", "", str(folder))
    split, _ = ctx.load()
    assert torch.equal(to_input(split.dataset.x_train), to_input(ds.x_train))
    # the shared folder is a path: it never enters a unit's key
    assert ctx.spec() == dataclasses.replace(ctx, shared_data=None).spec()


def test_float_inputs_are_shared_too(tmp_path, monkeypatch) -> None:
    """Embedded datasets (float inputs) are shared as float32 copies: the units map them
    instead of loading (mnist-5k's CSV and sklearn's split cost a worker seconds)."""
    ds = load_dataset("digits")
    assert not isinstance(ds.x_train, Images)
    folder = share_dataset(ds, tmp_path / "data" / "fp")
    assert np.load(folder / "x_train.npy", mmap_mode="r").dtype == np.float32
    shared = open_shared(folder)
    for a, b in ((shared.x_train, ds.x_train), (shared.x_test, ds.x_test),
                 (shared.y_train, ds.y_train), (shared.y_test, ds.y_test)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert (shared.class_names, shared.source) == (ds.class_names, ds.source)

    def refuse(_):
        raise AssertionError("the unit loaded the dataset instead of the shared copy")

    monkeypatch.setitem(DATASETS, "digits", dataclasses.replace(DATASETS["digits"],
                                                                 load=refuse))
    ctx = StudyContext("digits", None, "mlp", {}, Recipe().to_dict(), (1,), "fp", "",
                       str(folder))
    split, _ = ctx.load()
    assert torch.equal(split.dataset.x_train, ds.x_train)


def test_bench_shares_the_data_under_out(tmp_path) -> None:
    from classunlearn.bench.runner import BenchConfig, run_bench

    data_dir = _npz_dir(tmp_path)
    cfg = BenchConfig(dataset="npz", data_dir=str(data_dir), model="mlp",
                      forget_classes=[["1"]], methods=["original"], seeds=1, shadows=0,
                      references=1, executor="local", epochs=1, out=str(tmp_path / "out"))
    run_bench(cfg, log=lambda _: None)
    found = list((tmp_path / "out" / "data").glob("*/x_train.npy"))
    assert len(found) == 1


def test_sidecar_records_mean_and_std(tmp_path) -> None:
    from classunlearn.cli import main

    data_dir = _npz_dir(tmp_path)
    out = tmp_path / "m.safetensors"
    assert main(["train", "--dataset", "npz", "--data-dir", str(data_dir), "--model", "mlp",
                 "--epochs", "1", "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    ds = load_dataset("npz", data_dir)
    assert meta["input_norm"] == ds.norm_stats
    assert len(meta["input_norm"]["mean"]) == 3
