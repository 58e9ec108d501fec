"""The baseline unlearning methods: registry, hyperparameters, and that each method runs
and moves in its paper's direction on a small digits setup (one MLP trained per module)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from classunlearn.data import ForgetSplit
from classunlearn.errors import ParameterError
from classunlearn.methods import (
    METHODS,
    FinetuneParams,
    MethodParams,
    UnlearnData,
    default_params,
    make_params,
    params_from_strings,
)
from classunlearn.methods.bs import channel_range, fgsm_neighbours
from classunlearn.methods.l1_sparse import l1_weight
from classunlearn.methods.retrain import RetrainParams
from classunlearn.methods.rl import random_labels
from classunlearn.methods.salun import saliency_mask
from classunlearn.methods.scrub import distill_kl
from classunlearn.methods.trw import TRWParams
from classunlearn.methods.trw2r import reference_similarity
from classunlearn.models import build_model, final_linear
from classunlearn.train import Recipe, accuracy, predict_logits, train_model

BASELINES = ["retrain", "original", "ft", "rl", "ga", "bs", "be", "l1-sparse", "salun", "scrub",
             "ssd", "unsir", "trw-2r-budget", "trw-2r-oracle"]
# Methods whose paper goal is a forget accuracy near 0 (ga and ft are tested separately).
FORGETTING = ["rl", "bs", "be", "l1-sparse", "salun", "scrub", "ssd", "unsir", "trw-2r-budget",
              "trw-2r-oracle"]
RECIPE = Recipe(epochs=15, batch_size=64, lr=0.05)


def _eval(model, split):
    xr, yr = split.part("train_retain")
    xf, yf = split.part("train_forget")
    loss_f = float(F.cross_entropy(predict_logits(model, xf), yf))
    return accuracy(model, xr, yr), accuracy(model, xf, yf), loss_f


@pytest.fixture(scope="module")
def setup(digits):
    """An original MLP on digits, the split for forget class 3, and 2 retrained references."""
    split = ForgetSplit.make(digits, [3])
    original = train_model(build_model("mlp", digits.input_shape, 10, seed=0), digits.x_train,
                           digits.y_train, RECIPE, seed=0)
    xr, yr = split.part("train_retain")
    refs = [train_model(build_model("mlp", digits.input_shape, 10, seed=s), xr, yr, RECIPE,
                        seed=s) for s in (1, 2)]
    return split, UnlearnData.from_split(split), original, refs


def _run(name, model, data, refs=None, seed=0, **changes):
    cls = METHODS[name]
    params = dataclasses.replace(default_params(cls, "digits"), **changes)
    return cls().unlearn(model, data, params, seed=seed,
                         references=refs if cls.oracle else None)


# ------------------------------------------------------------------ registry and params

def test_every_baseline_is_registered_and_documented():
    for name in BASELINES:
        cls = METHODS[name]
        assert cls.name == name
        assert cls.summary and "\n" not in cls.summary
        assert cls.source and cls.__doc__
        assert dataclasses.is_dataclass(cls.Params)
        assert cls.Params.__dataclass_params__.frozen
        assert issubclass(cls.Params, MethodParams)
        for dataset in getattr(cls, "dataset_defaults", {}):
            default_params(cls, dataset)  # every stored default is a valid field


def test_finetuning_methods_use_finetune_params():
    for name in ["ft", "rl", "ga", "bs", "be", "l1-sparse", "salun", "scrub", "unsir",
                 "trw-2r-budget", "trw-2r-oracle"]:
        assert issubclass(METHODS[name].Params, FinetuneParams), name


def test_retrain_takes_the_originals_recipe_and_nothing_else():
    # the yardstick is trained exactly as the original was: make_params gives retrain the
    # recipe it is handed (the study's, or the checkpoint's), refuses --set, and refuses to
    # guess a recipe of its own
    recipe = Recipe(epochs=7, batch_size=32, lr=0.02, schedule="step")
    cls, params = make_params("retrain", "digits", recipe=recipe)
    assert cls is METHODS["retrain"] and params.recipe() == recipe
    with pytest.raises(ParameterError, match="follows the original"):
        make_params("retrain", "digits", {"epochs": "15"}, recipe=recipe)
    with pytest.raises(ParameterError, match="needs the recipe"):
        make_params("retrain", "digits")
    assert not getattr(METHODS["retrain"], "dataset_defaults", {})
    # every field of the recipe, so a new recipe field can never be dropped by retrain
    assert [f.name for f in dataclasses.fields(RetrainParams)] == [
        f.name for f in dataclasses.fields(Recipe)]


def test_epoch_share_becomes_epochs_of_the_models_recipe(setup):
    # a budget relative to training: epoch_share x the recipe's epochs, resolved once by
    # make_params, so the run record and the bench key hold plain epochs
    _, params = make_params("rwft", "digits", {"epoch_share": "0.1"},
                            recipe=Recipe(epochs=40))
    assert params.epochs == 4 and params.epoch_share is None
    assert "epoch_share" not in params.to_dict()
    _, params = make_params("ft", "digits", {"epoch_share": "0.01"}, recipe=Recipe(epochs=30))
    assert params.epochs == 1  # at least one epoch
    # no recipe given: the dataset's default recipe (digits: 10 epochs)
    assert make_params("rl", "digits", {"epoch_share": "0.2"})[1].epochs == 2
    with pytest.raises(ParameterError, match="not both"):
        make_params("rl", "digits", {"epoch_share": "0.2", "epochs": "3"})
    with pytest.raises(ParameterError, match="epoch_share must be in"):
        make_params("rl", "digits", {"epoch_share": "0"})
    # unresolved (built by hand), a run refuses it instead of silently using `epochs`
    split, data, original, _ = setup
    with pytest.raises(ParameterError, match="resolve it with"):
        METHODS["ft"]().unlearn(original, data, METHODS["ft"].Params(epoch_share=0.1))


def test_default_budgets_follow_the_recipe():
    # TRW's family: half the recipe's epochs over D_f and a tenth of D_r, on any recipe
    for spec in ("trw", "rwft", "trw[weights]", "trw-2r-oracle"):
        for epochs, expect in ((10, 5), (40, 20), (7, 4)):
            _, p = make_params(spec, "mnist-5k", recipe=Recipe(epochs=epochs))
            assert (p.epochs, p.retain_fraction, p.epoch_share) == (expect, 0.1, None), spec
    # RWFT on digits keeps the whole recipe over all of D_r (its frontier and verdict)
    _, p = make_params("rwft", "digits")
    assert (p.epochs, p.retain_fraction) == (10, 1.0)
    # the reduced-budget reading keeps its own absolute budget
    _, p = make_params("trw-2r-budget", "digits", recipe=Recipe(epochs=40))
    assert (p.epochs, p.retain_fraction) == (2, 0.25)
    # baselines: their share of the recipe (chosen on the frontier) gives back the chosen
    # epochs on that recipe, and scales on another
    assert make_params("ft", "digits")[1].epochs == 10
    assert make_params("rl", "digits", recipe=Recipe(epochs=30))[1].epochs == 15
    assert make_params("ft", "mnist-5k")[1].epochs == 10
    assert make_params("rl", "mnist-5k")[1].epochs == 1
    assert make_params("scrub", "mnist-5k")[1].epochs == 2
    assert make_params("scrub", "digits", recipe=Recipe(epochs=20))[1].epochs == 10
    # explicit epochs win over a default share; default_params is runnable as it is
    assert make_params("trw", "digits", {"epochs": "7"})[1].epochs == 7
    p = default_params(METHODS["trw"], "digits")
    assert p.epoch_share is None and p.epochs == 5
    # no dataset and no recipe: the generic recipe (30 epochs)
    assert make_params("rwft")[1].epochs == 15


def test_retrain_is_the_training_procedure_from_a_fresh_seed(setup):
    # Retrain (re-initialise under the seed, then train_model) gives bit for bit the model
    # that build_model + train_model give under that seed on D_r: one procedure
    split, data, original, _ = setup
    recipe = Recipe(epochs=3, batch_size=64, lr=0.05)
    cls, params = make_params("retrain", recipe=recipe)
    out, _ = cls().unlearn(original, data, params, seed=7)
    xr, yr = split.part("train_retain")
    direct = train_model(build_model("mlp", split.dataset.input_shape, 10, seed=7), xr, yr,
                         recipe, seed=7)
    for (k, a), b in zip(out.state_dict().items(), direct.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_params_from_strings_refuses_unknown_key_and_lists_valid_ones():
    with pytest.raises(ParameterError) as e:
        params_from_strings(METHODS["salun"], {"bogus": "1"})
    assert "bogus" in str(e.value) and "threshold" in str(e.value) and "lr" in str(e.value)


@pytest.mark.parametrize("name,key,value", [("rl", "lr", "fast"), ("ga", "epochs", "2.5"),
                                            ("ssd", "alpha", "nan"), ("bs", "bound", "x"),
                                            ("scrub", "msteps", "many")])
def test_params_from_strings_refuses_ill_typed_values(name, key, value):
    with pytest.raises(ParameterError):
        params_from_strings(METHODS[name], {key: value})


@pytest.mark.parametrize("name,values", [("ssd", {"alpha": "-1"}), ("salun", {"threshold": "0"}),
                                         ("scrub", {"msteps": "20"}),
                                         ("bs", {"bound_units": "pixels"}),
                                         ("l1-sparse", {"no_l1_epochs": "11"})])
def test_params_refuse_bad_values(name, values):
    with pytest.raises(ParameterError):
        params_from_strings(METHODS[name], values)


def test_params_from_strings_parses_values():
    p = params_from_strings(METHODS["bs"], {"lr": "0.01", "exclude_forget": "no"})
    assert p.lr == 0.01 and p.exclude_forget is False


def test_trw_2r_budget_is_a_reduced_trw():
    p = METHODS["trw-2r-budget"].Params()
    assert isinstance(p, TRWParams)
    assert p.epochs < TRWParams().epochs and p.retain_fraction < 1.0
    assert not METHODS["trw-2r-budget"].oracle


def test_only_the_oracle_reading_is_an_oracle():
    oracle = METHODS["trw-2r-oracle"]
    assert oracle.oracle and oracle.summary.startswith("ORACLE:")
    assert [n for n in BASELINES if METHODS[n].oracle] == ["trw-2r-oracle"]


def test_oracle_is_refused_without_references(setup):
    _, data, original, _ = setup
    with pytest.raises(ParameterError, match="reference"):
        METHODS["trw-2r-oracle"]().unlearn(original, data)


def test_oracle_needs_enough_references(setup):
    _, data, original, refs = setup
    with pytest.raises(ParameterError, match="2 retrained reference"):
        METHODS["trw-2r-oracle"]().unlearn(original, data, references=refs[:1])


def test_oracle_similarity_comes_from_the_references(setup):
    _, data, original, refs = setup
    _, record = _run("trw-2r-oracle", original, data, refs)
    sim = reference_similarity(refs, data)[3]
    got = torch.tensor(record.notes["similarity"]["3"])
    torch.testing.assert_close(got, sim, atol=1e-4, rtol=0)
    assert float(got[3]) == 0.0 and abs(float(got.sum()) - 1) < 1e-3


# ------------------------------------------------------------------ direction on digits

def test_original_is_unchanged(setup):
    _, data, original, _ = setup
    out, _ = _run("original", original, data)
    assert not METHODS["original"].needs_training
    for (k, a), b in zip(original.state_dict().items(), out.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_retrain_never_sees_the_forget_class(setup, monkeypatch):
    split, data, original, _ = setup
    import classunlearn.methods.retrain as retrain_mod

    seen = []
    real = retrain_mod.train_model

    def spy(model, x, y, *args, **kwargs):
        seen.append(y.clone())
        return real(model, x, y, *args, **kwargs)

    monkeypatch.setattr(retrain_mod, "train_model", spy)
    out, _ = _run("retrain", original, data, epochs=8)
    assert len(seen) == 1 and not bool((seen[0] == 3).any())
    assert len(seen[0]) == len(data.y_retain)
    acc_r, acc_f, _ = _eval(out, split)
    assert acc_f == 0.0 and acc_r > 95
    # The original's weights play no part: a different original gives the same model.
    other = copy.deepcopy(original)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    out2, _ = _run("retrain", other, data, epochs=8)
    for a, b in zip(out.state_dict().values(), out2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", FORGETTING)
def test_forgetting_methods_forget(setup, name):
    split, data, original, refs = setup
    acc_r0, acc_f0, _ = _eval(original, split)
    out, record = _run(name, original, data, refs)
    acc_r, acc_f, _ = _eval(out, split)
    assert record.method == name and record.oracle == METHODS[name].oracle
    assert acc_f <= acc_f0 - 50, (name, acc_f0, acc_f)
    assert acc_r >= acc_r0 - 10, (name, acc_r0, acc_r)


def test_ga_raises_the_forget_loss(setup):
    split, data, original, _ = setup
    _, acc_f0, loss0 = _eval(original, split)
    out, _ = _run("ga", original, data)
    _, acc_f, loss = _eval(out, split)
    assert loss > loss0 and acc_f <= acc_f0
    out, _ = _run("ga", original, data, epochs=5)  # past the cliff: the class is gone
    assert _eval(out, split)[1] < acc_f0 - 50


def test_ft_does_not_raise_forget_accuracy(setup):
    split, data, original, _ = setup
    _, acc_f0, loss0 = _eval(original, split)
    for lr in (0.01, default_params(METHODS["ft"], "digits").lr):
        out, _ = _run("ft", original, data, lr=lr, epochs=5)
        _, acc_f, loss = _eval(out, split)
        assert loss > loss0 or acc_f <= acc_f0 - 1


def test_rl_labels_are_fixed_random_retained_classes(setup):
    _, data, _, _ = setup
    two = dataclasses.replace(data, forget_classes=(3, 5))
    labels = random_labels(two, torch.Generator().manual_seed(0))
    assert len(labels) == len(data.y_forget)
    assert not bool(torch.isin(labels, torch.tensor([3, 5])).any())
    assert len(labels.unique()) == 8
    assert torch.equal(labels, random_labels(two, torch.Generator().manual_seed(0)))


def test_bs_neighbours_are_wrong_labels(setup):
    _, data, original, _ = setup
    step = 0.1 * channel_range(torch.cat([data.x_forget, data.x_retain]))
    labels = fgsm_neighbours(original, data.x_forget, data.y_forget, step, (3,))
    assert not bool((labels == 3).any())
    plain = fgsm_neighbours(original, data.x_forget, data.y_forget, step, ())
    assert bool((plain != 3).any())  # FGSM finds some neighbours on its own


def test_be_keeps_the_architecture(setup):
    _, data, original, _ = setup
    out, _ = _run("be", original, data)
    assert final_linear(out).out_features == 10
    shapes = {k: v.shape for k, v in original.state_dict().items()}
    assert {k: v.shape for k, v in out.state_dict().items()} == shapes


def test_l1_weight_decays_linearly():
    assert l1_weight(5e-4, 0, 10, 0) == 5e-4
    assert l1_weight(5e-4, 5, 10, 0) == pytest.approx(2.5e-4)
    assert l1_weight(5e-4, 8, 10, 2) == 0.0


def test_ssd_only_shrinks_weights(setup):
    _, data, original, _ = setup
    out, record = _run("ssd", original, data)
    assert record.steps == 0 and 0 < record.notes["dampened_share"] < 0.5
    for a, b in zip(original.parameters(), out.parameters(), strict=True):
        assert bool((b.abs() <= a.abs()).all()) and bool((a * b >= 0).all())


def test_scrub_kl_is_zero_for_identical_logits():
    z = torch.randn(5, 4)
    assert float(distill_kl(z, z, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_kl(z, -z, 4.0)) > 0


def test_salun_masked_out_weights_do_not_move_at_all(setup):
    split, data, original, _ = setup
    params = default_params(METHODS["salun"], "digits")
    assert params.weight_decay > 0 and params.momentum > 0  # both would leak without care
    mask = saliency_mask(copy.deepcopy(original), data.x_forget, data.y_forget,
                         params.threshold, params.mask_batch_size)
    total = sum(m.numel() for m in mask.values())
    assert abs(sum(int(m.sum()) for m in mask.values()) - total * params.threshold) <= 1
    out, record = METHODS["salun"]().unlearn(original, data, params, seed=0)
    assert record.notes["mask_share"] == pytest.approx(params.threshold, abs=1e-3)
    moved = 0
    before, after = dict(original.named_parameters()), dict(out.named_parameters())
    for name, m in mask.items():
        assert torch.equal(before[name][~m], after[name][~m]), name  # bit for bit
        moved += int((before[name][m] != after[name][m]).sum())
    assert moved > 0.5 * sum(int(m.sum()) for m in mask.values())
    assert _eval(out, split)[1] < 50
    assert all(not p._backward_hooks for p in out.parameters())  # no hook left behind


def test_same_seed_same_result(setup):
    _, data, original, _ = setup
    for name in ("rl", "unsir"):
        a, _ = _run(name, original, data, seed=4)
        b, _ = _run(name, original, data, seed=4)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), name


@pytest.mark.parametrize("name", [n for n in BASELINES if n != "original"])
def test_two_forget_classes_at_once(digits, setup, name):
    _, _, original, _ = setup
    split = ForgetSplit.make(digits, [3, 8])
    data = UnlearnData.from_split(split)
    refs = None
    if METHODS[name].oracle:  # references retrained without both classes (short recipe)
        xr, yr = split.part("train_retain")
        refs = [train_model(build_model("mlp", digits.input_shape, 10, seed=s), xr, yr,
                            Recipe(epochs=5), seed=s) for s in (1, 2)]
    _, acc_f0, loss0 = _eval(original, split)
    if name == "retrain":
        out, record = METHODS[name]().unlearn(original, data, RetrainParams(**RECIPE.to_dict()),
                                              seed=5)
    else:
        out, record = _run(name, original, data, refs)
    assert record.forget_classes == [3, 8]
    acc_r, acc_f, loss = _eval(out, split)
    if name in ("ga", "ft"):
        assert loss > loss0
    else:
        assert acc_f <= acc_f0 - 50, (name, acc_f)
        assert acc_r > 85, (name, acc_r)


# ------------------------------------------------------------------ other architectures

@pytest.fixture(scope="module")
def tiny_images(digits):
    """48 digits upsampled to 16x16 (a handful of samples for cnn / resnet18 smoke runs)."""
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(digits.y_train), generator=gen)[:48]
    x = F.interpolate(digits.x_train[idx], size=(16, 16), mode="bilinear", align_corners=False)
    y = digits.y_train[idx]
    forget = (int(y[0]),)
    keep = ~torch.isin(y, torch.tensor(forget))
    return UnlearnData(x[~keep], y[~keep], x[keep], y[keep], forget, 10)


# resnet18 at width 4 corrupts the heap in oneDNN (torch 2.13 CPU, AMD EPYC): width 8
@pytest.mark.parametrize("arch,kwargs", [("cnn", {"width": 4}), ("resnet18", {"width": 8})])
@pytest.mark.parametrize("name", [n for n in BASELINES if n != "original"])
def test_smoke_other_architectures(tiny_images, arch, kwargs, name):
    data = tiny_images
    x = torch.cat([data.x_forget, data.x_retain])
    y = torch.cat([data.y_forget, data.y_retain])
    model = train_model(build_model(arch, (1, 16, 16), 10, seed=0, **kwargs), x, y,
                        Recipe(epochs=1, batch_size=16), seed=0)
    cls = METHODS[name]
    params = default_params(cls)
    small = {"epochs": 1} if "epochs" in {f.name for f in dataclasses.fields(params)} else {}
    if name in ("scrub",):
        small["msteps"] = 1
    if name == "unsir":
        small["noise_steps"] = 2
        small["noise_size"] = 8
    params = dataclasses.replace(params, **small)
    refs = [model, copy.deepcopy(model)] if cls.oracle else None
    out, _ = cls().unlearn(model, data, params, seed=0, references=refs)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in out.state_dict().items()} == shapes
    assert torch.isfinite(predict_logits(out, data.x_forget)).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", BASELINES)
def test_methods_run_on_cuda(setup, name):
    split, data, original, refs = setup
    cls = METHODS[name]
    params = default_params(cls, "digits")
    if name == "retrain":
        params = dataclasses.replace(params, epochs=3)
    out, _ = cls().unlearn(original, data, params, seed=0, device="cuda",
                           references=refs if cls.oracle else None)
    assert next(out.parameters()).device.type == "cpu"
    if name in FORGETTING:
        assert _eval(out, split)[1] < 50
