"""Your training, not ours (issue #27): the recipe's AdamW, label smoothing, warm-up and
Nesterov (the stacked engine takes the loop's steps), a plug-in trainer and an init
checkpoint through units, shadows, retrain, train/forget/verify/audit and bench; and every
existing cache key unchanged when none of them is used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from classunlearn.bench.units import (
    SEED_REFERENCE,
    StudyContext,
    method_key,
    original_key,
    reference_key,
    replay_key,
    shadow_keys,
    unit_shadows,
    unit_train,
)
from classunlearn.cli import main
from classunlearn.errors import ParameterError
from classunlearn.methods import UnlearnData, make_params
from classunlearn.methods.retrain import Retrain
from classunlearn.models import build_model
from classunlearn.presets import PRESETS
from classunlearn.shadows import balanced_halves, train_ensemble
from classunlearn.train import DEFAULT_RECIPES, Recipe, lr_factor, train_model
from classunlearn.trainers import Training, make_training, parse_init_map
from classunlearn.tune import grid_for, tune_key

# --- nothing changes for studies that use none of it ---------------------------------------

# Computed before issue #27 (the commit before it), for digits / mlp / forget 3.
KEYS_BEFORE = {
    "original": "48c8b8a215862848459f",
    "reference": "39d27e1a3956aac77ebe",
    "shadows": ["c0b2d0ec0da8e20af7ab", "4842fe91c6788278b317"],
    "method:retrain": "2e8f6f8e5d7238d0981c",
    "replay:retrain": "458b7a1666da7049ad80",
    "method:ft": "b5c3a82830ca752ff6e7",
    "replay:ft": "6db0f57adfb5f568f621",
    "method:rwft": "bdde79ea1572a7324ce3",
    "replay:rwft": "a15837760c7e1acb688e",
    "tune:ft": "1fbe534f54b82f8ead00",
}
_SGD = {"momentum": 0.9, "weight_decay": 0.0005, "optimizer": "sgd"}
RECIPES_BEFORE = {
    "digits": {"epochs": 10, "batch_size": 64, "lr": 0.05, **_SGD, "schedule": "cosine",
               "augment": "none"},
    "mnist-5k": {"epochs": 7, "batch_size": 64, "lr": 0.05, **_SGD, "schedule": "cosine",
                 "augment": "none"},
    "mnist1d": {"epochs": 40, "batch_size": 64, "lr": 0.05, **_SGD, "schedule": "cosine",
                "augment": "none"},
    "mnist": {"epochs": 10, "batch_size": 128, "lr": 0.05, **_SGD, "schedule": "cosine",
              "augment": "none"},
    "fashion-mnist": {"epochs": 15, "batch_size": 128, "lr": 0.05, **_SGD,
                      "schedule": "cosine", "augment": "none"},
    "cifar10": {"epochs": 200, "batch_size": 128, "lr": 0.1, **_SGD, "schedule": "step",
                "augment": "crop-flip"},
    "cifar100": {"epochs": 200, "batch_size": 128, "lr": 0.1, **_SGD, "schedule": "step",
                 "augment": "crop-flip"},
    "tinyimagenet": {"epochs": 100, "batch_size": 256, "lr": 0.1, **_SGD, "schedule": "step",
                     "augment": "crop-flip"},
}
PRESETS_BEFORE = {
    "paper": {"epochs": 200, "batch_size": 128, "lr": 0.1, **_SGD, "schedule": "step",
              "augment": "crop-flip"},
    "cpu": {"epochs": 40, "batch_size": 128, "lr": 0.1, **_SGD, "schedule": "cosine",
            "augment": "crop-flip"},
}


def _keys(ctx: StudyContext) -> dict:
    recipe = Recipe.from_dict(ctx.recipe)
    out = {"original": original_key(ctx, 0), "reference": reference_key(ctx, SEED_REFERENCE),
           "shadows": list(shadow_keys(ctx, 8, 0))}
    for spec in ("retrain", "ft", "rwft"):
        _, p = make_params(spec, "digits", None, recipe=recipe)
        out["method:" + spec] = method_key(ctx, spec, p.to_dict(), 0, out["original"], [])
        out["replay:" + spec] = replay_key(ctx, spec, p.to_dict(), 0, out["shadows"][0], [])
    out["tune:ft"] = tune_key(ctx, "ft", grid_for("ft"), 0, out["original"], {})
    return out


def _ctx(recipe: Recipe | None = None, **kw) -> StudyContext:
    recipe = recipe or DEFAULT_RECIPES["digits"]
    return StudyContext("digits", None, "mlp", {}, recipe.to_dict(), (3,), "fp", **kw)


def test_existing_keys_recipes_and_params_are_unchanged():
    assert _keys(_ctx()) == KEYS_BEFORE
    assert {k: r.to_dict() for k, r in DEFAULT_RECIPES.items()} == RECIPES_BEFORE
    assert {k: p.recipe.to_dict() for k, p in PRESETS.items()} == PRESETS_BEFORE
    _, p = make_params("retrain", "digits", None, recipe=DEFAULT_RECIPES["digits"])
    assert p.to_dict() == RECIPES_BEFORE["digits"]
    # an explicit default is the same recipe, and the same key (0 and 0.0 alike)
    same = Recipe(epochs=10, lr=0.05, label_smoothing=0, warmup_epochs=0, nesterov=False)
    assert same == DEFAULT_RECIPES["digits"] and same.to_dict() == RECIPES_BEFORE["digits"]


def test_new_fields_enter_the_keys_only_when_set(tmp_path):
    base = _keys(_ctx())
    smoothed = _keys(_ctx(Recipe(epochs=10, lr=0.05, label_smoothing=0.1)))
    assert all(smoothed[k] != base[k] for k in base)
    trainer = _trainer_file(tmp_path)
    t = make_training(DEFAULT_RECIPES["digits"], f"{trainer}:train")
    with_trainer = _keys(_ctx(**StudyContext.of_training(t)))
    assert all(with_trainer[k] != base[k] for k in base)
    # the key names the function and the file's content, not where the file is
    moved = tmp_path / "elsewhere" / "t.py"
    moved.parent.mkdir()
    moved.write_bytes(trainer.read_bytes())
    t2 = make_training(DEFAULT_RECIPES["digits"], f"{moved}:train")
    assert _keys(_ctx(**StudyContext.of_training(t2))) == with_trainer
    # an init checkpoint: its hash and map, never its path
    ck = _backbone(tmp_path)
    t3 = make_training(DEFAULT_RECIPES["digits"], init=ck)
    k3 = _keys(_ctx(**StudyContext.of_training(t3)))
    assert all(k3[k] != base[k] for k in base)
    t4 = make_training(DEFAULT_RECIPES["digits"], init=ck, init_map=["body.=body."])
    assert _keys(_ctx(**StudyContext.of_training(t4)))["original"] != k3["original"]


# --- the recipe's new fields ---------------------------------------------------------------


def test_recipe_fields_validate_and_serialise():
    r = Recipe(optimizer="adamw", label_smoothing=0.1, warmup_epochs=1, nesterov=False)
    d = r.to_dict()
    assert d["label_smoothing"] == 0.1 and d["warmup_epochs"] == 1.0 and "nesterov" not in d
    assert Recipe.from_dict(d) == r
    for bad, match in ((dict(label_smoothing=1.0), "label_smoothing"),
                       (dict(warmup_epochs=-1), "warmup_epochs"),
                       (dict(epochs=2, warmup_epochs=3), "warmup_epochs"),
                       (dict(nesterov=True, optimizer="adam"), "nesterov"),
                       (dict(nesterov=True, momentum=0.0), "nesterov"),
                       (dict(optimizer="lion"), "adamw")):
        with pytest.raises(ParameterError, match=match):
            Recipe(**bad)


def test_warmup_then_the_schedule():
    # W = 4: (t + 1) / 4, then cosine over the remaining 6 steps
    assert [lr_factor("cosine", t, 10, 4) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor("cosine", 4, 10, 4) == 1.0
    assert lr_factor("cosine", 7, 10, 4) == pytest.approx(lr_factor("cosine", 3, 6))
    assert lr_factor("step", 9, 10, 0) == lr_factor("step", 9, 10)


def _data(shape, n=37, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def _max_rel_diff(a: list[nn.Module], b: list[nn.Module]) -> float:
    """Largest ||a - b|| / ||b|| over every tensor of every model (as tests/test_shadows.py)."""
    worst = 0.0
    for m1, m2 in zip(a, b, strict=True):
        for p1, p2 in zip(m1.state_dict().values(), m2.state_dict().values()):
            worst = max(worst, float((p1 - p2).norm() / p2.norm().clamp_min(1e-12)))
    return worst


NEW_RECIPES = {  # batch 5 on subsets of 16, 12 and 9: 3, 3 and 2 steps per epoch
    "adamw-smooth-warmup": Recipe(epochs=3, batch_size=5, lr=1e-3, optimizer="adamw",
                                  weight_decay=0.05, label_smoothing=0.1, warmup_epochs=1),
    "sgd-nesterov-smooth-warmup": Recipe(epochs=3, batch_size=5, lr=0.05, nesterov=True,
                                         label_smoothing=0.2, warmup_epochs=1.5),
    "adam-warmup-step": Recipe(epochs=3, batch_size=5, lr=1e-3, optimizer="adam",
                               warmup_epochs=0.5, schedule="step"),
}


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request):
    before = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(before)


@pytest.mark.parametrize("recipe", NEW_RECIPES)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_stacked_engine_takes_the_loops_steps(name, recipe, dtype):
    """Stacked shadows equal train_model model by model, with AdamW, label smoothing,
    warm-up and Nesterov (different subset sizes: different warm-ups): exactly in float64
    (1e-10), to float rounding in float32 (Adam divides by sqrt(v), so a gradient at
    rounding level in one engine and 0 in the other moves a weight by up to lr: 1e-4 to
    5e-4 for the cnn at lr 1e-3, as tests/test_shadows.py measures for Adam)."""
    shape, seeds = (1, 8, 8), [10, 11, 12]
    x, y = _data(shape)
    x = x.to(dtype)
    masks = torch.zeros(3, len(x), dtype=torch.bool)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    for i, (lo, hi) in enumerate(((0, 16), (16, 28), (28, 37))):
        masks[i, perm[lo:hi]] = True
    r = NEW_RECIPES[recipe]
    stacked = train_ensemble(name, shape, 5, x, y, masks, r, seeds, stacked=True)
    loop = train_ensemble(name, shape, 5, x, y, masks, r, seeds, stacked=False)
    alone = [train_model(build_model(name, shape, 5, seed=s), x[m], y[m], r, seed=s)
             for m, s in zip(masks, seeds)]
    init = [build_model(name, shape, 5, seed=s) for s in seeds]
    assert _max_rel_diff(alone, init) > 1e-3  # training moved the weights
    assert _max_rel_diff(loop, alone) < 1e-12
    exact = dtype == torch.float64 or name == "mlp"
    assert _max_rel_diff(stacked, alone) < (1e-10 if dtype == torch.float64 else
                                            1e-5 if exact else 2e-3)


def test_stacked_finetuning_with_adamw_matches_the_loop(digits):
    """A fine-tuning method with optimizer=adamw: the stacked replay equals the loop."""
    from classunlearn.methods import parse_spec

    cls, _ = parse_spec("ft")
    _, params = make_params("ft", "digits", {"optimizer": "adamw", "lr": "0.001",
                                             "epochs": "2"})
    models = [train_model(build_model("mlp", digits.input_shape, 10, seed=s),
                          digits.x_train[:200], digits.y_train[:200],
                          Recipe(epochs=1, batch_size=64), seed=s) for s in (0, 1)]
    datas = []
    for lo in (0, 100):
        x, y = digits.x_train[lo:lo + 150], digits.y_train[lo:lo + 150]
        f = y == 3
        datas.append(UnlearnData(x[f], y[f], x[~f], y[~f], (3,), 10))
    a = [m for m, _ in cls().unlearn_many(models, datas, params, [5, 6], stacked=True)]
    b = [m for m, _ in cls().unlearn_many(models, datas, params, [5, 6], stacked=False)]
    assert _max_rel_diff(a, b) < 1e-5


# --- a plug-in trainer ---------------------------------------------------------------------

TRAINER = '''
import math
import torch
from torch import nn

EPOCHS, BATCH = 2, 64


def train(model, x, y, seed, device):
    """AdamW, label smoothing 0.1, one epoch of linear warm-up, then cosine."""
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    per_epoch = math.ceil(len(x) / BATCH)
    total, warm = EPOCHS * per_epoch, per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: (t + 1) / warm if t < warm
                                              else 0.5 * (1 + math.cos(math.pi * (t - warm)
                                                                       / (total - warm))))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=gen).split(BATCH):
            loss = loss_fn(model(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model


def not_a_model(model, x, y, seed, device):
    return 3


def draws(model, x, y, seed, device):
    """Uses the global RNG only: deterministic because it is seeded before the call."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model
'''


def _trainer_file(root: Path) -> Path:
    path = root / "user_trainer.py"
    if not path.exists():
        path.write_text(TRAINER)
    return path


def test_plugin_trainer_in_the_ensemble_and_the_contract(tmp_path, digits):
    ref = f"{_trainer_file(tmp_path)}:train"
    recipe = DEFAULT_RECIPES["digits"]
    t = make_training(recipe, ref)
    assert not t.stackable and t.trainer == str(tmp_path.resolve() / "user_trainer.py") + ":train"
    x, y = digits.x_train[:300], digits.y_train[:300]
    masks = balanced_halves(len(x), 2, seed=0)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    models = train_ensemble("mlp", digits.input_shape, 10, x, y, masks, recipe, [7, 8],
                            training=t)
    assert torch.equal(torch.get_rng_state(), before)
    alone = [t.train(build_model("mlp", digits.input_shape, 10, seed=s), x[m], y[m], s)
             for m, s in zip(masks, [7, 8])]
    assert _max_rel_diff(models, alone) == 0.0  # one procedure, deterministic per seed
    with pytest.raises(ParameterError, match="cannot be stacked"):
        train_ensemble("mlp", digits.input_shape, 10, x, y, masks, recipe, [7, 8],
                       training=t, stacked=True)
    bad = make_training(recipe, f"{tmp_path / 'user_trainer.py'}:not_a_model")
    with pytest.raises(ParameterError, match="returned a int"):
        bad.train(build_model("mlp", digits.input_shape, 10, seed=0), x, y, 0)
    rng = make_training(recipe, f"{tmp_path / 'user_trainer.py'}:draws")
    a, b = (rng.train(build_model("mlp", digits.input_shape, 10, seed=0), x, y, 5)
            for _ in range(2))
    assert _max_rel_diff([a], [b]) == 0.0
    with pytest.raises(ParameterError, match="no 'nope'"):
        make_training(recipe, f"{tmp_path / 'user_trainer.py'}:nope")
    with pytest.raises(ParameterError, match="trainer file .* not found"):
        make_training(recipe, f"{tmp_path / 'missing.py'}:train")


# --- an init checkpoint --------------------------------------------------------------------


def _backbone(root: Path, classes: int = 5) -> Path:
    """An MLP 'backbone' over 5 classes (its head does not fit a 10-class model)."""
    path = root / "backbone.safetensors"
    if not path.exists():
        m = build_model("mlp", (1, 8, 8), classes, seed=99)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(1.0)  # far from any seeded draw
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


def test_init_references_and_shadows_start_from_the_checkpoint(tmp_path):
    """Before training (0 epochs), every shared tensor is the checkpoint's; the head (a new
    shape) is the seed's draw."""
    from safetensors.torch import load_file

    ck = _backbone(tmp_path)
    saved = load_file(str(ck))
    t = make_training(Recipe(epochs=0), init=ck)
    ctx = _ctx(Recipe(epochs=0), **StudyContext.of_training(t))
    arrays, _ = unit_train(ctx, SEED_REFERENCE, True)
    fresh = build_model("mlp", (1, 8, 8), 10, seed=SEED_REFERENCE).state_dict()
    for k, v in fresh.items():
        got = torch.from_numpy(arrays["w." + k])
        want = saved[k] if k.startswith("body.") else v
        assert torch.equal(got, want), k
    arrays, _ = unit_shadows(ctx, 2000, 2, False)
    for i in range(2):
        for k in fresh:
            got = torch.from_numpy(arrays[f"m{i}.{k}"])
            want = saved[k] if k.startswith("body.") else build_model(
                "mlp", (1, 8, 8), 10, seed=2000 * 1000 + i).state_dict()[k]
            assert torch.equal(got, want), (i, k)
    # the retrain method (the `retrain` row and replays) starts there too
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 10, (20,))
    _, params = make_params("retrain", None, None, recipe=Recipe(epochs=0))
    out, _ = Retrain().unlearn(build_model("mlp", (1, 8, 8), 10, seed=0),
                               UnlearnData(x[:0], y[:0], x, y, (3,), 10), params, seed=7,
                               training=ctx.training())
    assert all(torch.equal(out.state_dict()[k], saved[k]) for k in saved if k.startswith("body"))


def test_init_prefix_map_and_refusals(tmp_path):
    m = build_model("mlp", (1, 8, 8), 10, seed=1)
    renamed = {k.replace("body.", "backbone.").replace("head.", "fc."): v.clone() + 2
               for k, v in m.state_dict().items()}
    path = tmp_path / "renamed.safetensors"
    save_file(renamed, str(path))
    with pytest.raises(ParameterError, match="shares no tensor"):
        Training(Recipe(), init=str(path)).start(build_model("mlp", (1, 8, 8), 10, seed=0))
    t = make_training(Recipe(), init=path, init_map=["backbone.=body."])
    target = build_model("mlp", (1, 8, 8), 10, seed=0)
    report = t.start(target)
    assert report.loaded == [k for k in target.state_dict() if k.startswith("body.")]
    assert set(report.drawn) == {"head.weight", "head.bias"}  # not mapped: not read
    assert torch.equal(target.state_dict()["body.1.weight"], renamed["backbone.1.weight"])
    assert parse_init_map({"a.": "b."}) == {"a.": "b."}
    with pytest.raises(ParameterError, match="CHECKPOINT_PREFIX"):
        parse_init_map(["nomap"])
    pickle = tmp_path / "x.safetensors"
    torch.save({"a": torch.ones(2)}, pickle)
    with pytest.raises(Exception, match="never unpickles"):
        make_training(Recipe(), init=pickle)


# --- the commands --------------------------------------------------------------------------


def test_cli_trainer_drives_train_forget_verify_and_refuses_a_changed_file(tmp_path, capsys):
    trainer = _trainer_file(tmp_path)
    d = tmp_path / "runs"
    orig = d / "orig.safetensors"
    assert main(["train", "--dataset", "digits", "--trainer", f"{trainer}:train",
                 "--out", str(orig)]) == 0
    side = json.loads(orig.with_suffix(".json").read_text())
    from classunlearn.checkpoint import file_sha256

    assert side["trainer"].endswith("user_trainer.py:train")
    assert side["trainer_sha256"] == file_sha256(trainer)
    rc = main(["forget", "--checkpoint", str(orig), "--forget-class", "3", "--references",
               "2", "--shadows", "8", "--out", str(d / "req")])
    assert rc in (0, 3)
    record = json.loads((d / "req" / "record.json").read_text())
    assert record["files"]["trainer"]["sha256"] == file_sha256(trainer)
    ref_side = json.loads((d / "req/references/reference_0.json").read_text())
    assert ref_side["trainer_sha256"] == file_sha256(trainer)
    assert main(["verify", str(d / "req" / "record.json")]) == 0
    # cu.forget is the command: the same request from Python reuses every unit
    import classunlearn as cu

    again = cu.forget(orig, [3], d / "req-py", references=2, shadows=8, log=lambda m: None)
    assert again.units_computed == 0 and again.units_reused > 0
    assert again.record["files"]["trainer"]["sha256"] == file_sha256(trainer)
    assert again.record["command"][:4] == ["classunlearn", "forget", "--checkpoint", str(orig)]
    assert main(["verify", str(d / "req-py" / "record.json")]) == 0
    # a reference trained by the recipe is not the yardstick of this model
    plain = d / "plain.safetensors"
    assert main(["train", "--dataset", "digits", "--exclude-class", "3", "--seed", "5",
                 "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["audit", "--checkpoint", str(d / "req/unlearned.safetensors"),
                 "--forget-class", "3", "--reference", str(plain), "--reference",
                 str(d / "req/references/reference_0.safetensors"), "--shadows", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained otherwise than the audited model" in err and len(err.splitlines()) == 1
    # the trainer's file changes: forget and verify refuse, in one line
    trainer.write_text(TRAINER + "\n# edited\n")
    assert main(["forget", "--checkpoint", str(orig), "--forget-class", "5", "--references",
                 "2", "--shadows", "8", "--out", str(d / "req2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "trainer file" in err and "changed" in err and len(err.splitlines()) == 1
    assert not (d / "req2").exists()
    assert main(["verify", str(d / "req" / "record.json")]) == 1
    out = capsys.readouterr().out.strip()
    assert "user_trainer.py changed" in out and len(out.splitlines()) == 1
    # --trainer names where the same file is now (a moved file); another content is refused
    trainer.write_text(TRAINER)
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "t.py").write_text(TRAINER)
    assert main(["forget", "--checkpoint", str(orig), "--forget-class", "3", "--references",
                 "2", "--shadows", "8", "--trainer", f"{moved / 't.py'}:train", "--dry-run",
                 "--out", str(d / "req3")]) == 0
    (moved / "t.py").write_text(TRAINER + "\n")
    assert main(["forget", "--checkpoint", str(orig), "--forget-class", "3", "--trainer",
                 f"{moved / 't.py'}:train", "--dry-run", "--out", str(d / "req3")]) == 2


def test_bench_study_with_init_and_trainer(tmp_path):
    """A study fine-tuned from a checkpoint by a plug-in trainer: originals, references,
    shadows and the retrain row all go through them; the rerun reuses every unit."""
    import classunlearn as cu
    from classunlearn.data import load_dataset

    ds = load_dataset("digits")
    trainer = _trainer_file(tmp_path)
    backbone = build_model("mlp", ds.input_shape, 10, seed=42)
    ck = tmp_path / "digits-backbone.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(ck))
    kw = dict(recipe=Recipe(epochs=2), methods=["retrain", "original", "ft"], seeds=1,
              shadows=8, references=2, out=tmp_path / "bench", executor="local",
              trainer=f"{trainer}:train", init=ck, init_map={"body.": "body."})
    result = cu.bench("mlp", (ds.x_train, ds.y_train), (ds.x_test, ds.y_test), [3], **kw)
    assert result.computed > 0 and not result.failed
    s = result.summary
    study = next(iter(s))
    assert s[study]["original"]["acc_forget"]["mean"] > 80
    assert s[study]["retrain"]["acc_forget"]["mean"] < 5
    again = cu.bench("mlp", (ds.x_train, ds.y_train), (ds.x_test, ds.y_test), [3], **kw)
    assert again.computed == 0


def test_api_audit_trains_shadows_with_the_trainer(tmp_path, digits):
    """cu.audit(trainer=, init=): U-LiRA's shadows train the user's way (other units than
    without them); trainer= without recipe= is refused."""
    import classunlearn as cu

    trainer = f"{_trainer_file(tmp_path)}:train"
    recipe = Recipe(epochs=2)
    t = make_training(recipe, trainer)
    x, y = digits.x_train, digits.y_train
    keep = y != 3
    original = t.train(build_model("mlp", digits.input_shape, 10, seed=0), x, y, 0)
    refs = [t.train(build_model("mlp", digits.input_shape, 10, seed=s), x[keep], y[keep], s)
            for s in (1, 2)]
    unlearned, record = cu.unlearn(original, (x, y), [3], method="rwft", recipe=recipe)
    kw = dict(model_fn="mlp", recipe=recipe, record=record, shadows=8,
              metrics=["accuracy", "ulira"], cache=tmp_path / "cache", log=lambda m: None)
    mine = cu.audit(unlearned, (x, y), (digits.x_test, digits.y_test), [3], refs,
                    trainer=trainer, **kw)
    assert mine["ulira"] is not None
    plain = cu.audit(unlearned, (x, y), (digits.x_test, digits.y_test), [3], refs, **kw)
    assert mine["ulira_details"]["unit_keys"]["shadow_originals"] != \
        plain["ulira_details"]["unit_keys"]["shadow_originals"]
    with pytest.raises(ParameterError, match="recipe="):
        cu.audit(unlearned, (x, y), (digits.x_test, digits.y_test), [3], refs,
                 trainer=trainer, model_fn="mlp", shadows=8)
