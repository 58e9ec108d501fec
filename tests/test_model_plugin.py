"""Your own model and data: the output layer named (final_linear), predict_logits leaving the
model where it was, the class count read from the model (api), and plug-in models named
MODULE:FUNCTION (build_model, train/unlearn/audit, checkpoints that notice a changed file)."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from classunlearn.cli import main
from classunlearn.errors import CheckpointError, ParameterError
from classunlearn.models import (
    build_model,
    canonical_model_name,
    final_linear,
    is_stackable,
    model_source_sha256,
)

USER_MODEL = textwrap.dedent('''
    """A user's CNN with batch norm: conv-bn-relu-pool-linear."""
    from torch import nn


    def build(input_shape, num_classes, width=8):
        c = input_shape[0]
        return nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, num_classes),
        )


    not_a_function = 3


    def returns_list(input_shape, num_classes):
        return [1, 2]


    def wrong_width(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes + 1))
''')


def _write(folder: Path, name: str = "mymodel.py", text: str = USER_MODEL) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ A: the output layer


class WithAux(nn.Module):
    """An output layer `fc`, then an auxiliary Linear registered after it."""

    def __init__(self, k: int = 10, aux_out: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.fc = nn.Linear(16, k)
        self.aux = nn.Linear(16, aux_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def test_final_linear_finds_output_by_class_count_not_registration_order():
    m = WithAux()
    assert final_linear(m, num_classes=10) is m.fc
    with pytest.raises(ParameterError, match="head="):  # 3 linears, no class count
        final_linear(m)


def test_final_linear_ambiguity_and_naming():
    m = WithAux(aux_out=10)
    with pytest.raises(ParameterError, match=r"several nn.Linear.*fc, aux.*head="):
        final_linear(m, num_classes=10)
    assert final_linear(m, head="aux", num_classes=10) is m.aux
    assert final_linear(m, head="fc") is m.fc
    with pytest.raises(ParameterError, match="no such submodule"):
        final_linear(m, head="classifier.3")
    with pytest.raises(ParameterError, match="not an nn.Linear"):
        final_linear(m, head="body.2")
    with pytest.raises(ParameterError, match="16 outputs but there are 10"):
        final_linear(m, head="body.1", num_classes=10)
    with pytest.raises(ParameterError, match="no nn.Linear of the model has 7 outputs"):
        final_linear(m, num_classes=7)
    nested = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10))
    assert final_linear(nested, head="3") is nested[3]


def test_registry_models_keep_their_head():
    m = build_model("mlp", (1, 8, 8), 10, seed=0)
    assert final_linear(m) is m.head and final_linear(m, num_classes=10) is m.head


def test_trw_and_be_use_the_named_or_found_head():
    from classunlearn.methods import UnlearnData, make_params
    from classunlearn.methods.trw import class_similarity

    torch.manual_seed(0)
    x, y = torch.randn(60, 1, 8, 8), torch.arange(60) % 10
    data = UnlearnData(x[y == 3], y[y == 3], x[y != 3], y[y != 3], (3,), 10)
    m = WithAux()
    for source in ("weights", "features"):
        found = class_similarity(m, data, source)[3]
        named = class_similarity(m, data, source, head="fc")[3]
        assert torch.allclose(found, named)
    _, p = make_params("trw[weights]", None, {"head": "fc"})
    assert p.head == "fc" and p.to_dict()["head"] == "fc"
    assert "head" not in make_params("trw", None)[1].to_dict()  # unset: records unchanged
    cls, p = make_params("be", None, {"epochs": "1", "head": "fc"})
    aux = m.aux.weight.detach().clone()
    out, _ = cls().unlearn(m, data, p, seed=0)
    assert out.fc.out_features == 10 and torch.equal(out.aux.weight, aux)
    with pytest.raises(ParameterError, match="head="):
        cls().unlearn(WithAux(aux_out=10), data, make_params("be", None, {"epochs": "1"})[1])


# ------------------------------------------------------------------ B: predict_logits


def test_predict_logits_puts_the_model_back(monkeypatch):
    from classunlearn import train

    model = build_model("mlp", (1, 8, 8), 10, seed=0).train()
    calls: list[torch.device] = []
    real_to = model.to

    def recording_to(*args, **kwargs):
        calls.append(torch.device(args[0]))
        return real_to(*args, **kwargs)

    monkeypatch.setattr(model, "to", recording_to)
    # "cpu:0" is not equal to the parameters' "cpu": a move there and back, on any machine
    monkeypatch.setattr(train, "resolve_device", lambda device=None: torch.device("cpu", 0))
    out = train.predict_logits(model, torch.randn(5, 1, 8, 8))
    assert out.shape == (5, 10)
    assert calls == [torch.device("cpu", 0), torch.device("cpu")]
    assert model.training and next(model.parameters()).device == torch.device("cpu")


def test_predict_logits_restores_after_a_failure():
    from classunlearn.train import predict_logits

    model = build_model("mlp", (1, 8, 8), 10, seed=0).train()
    with pytest.raises(RuntimeError):
        predict_logits(model, torch.randn(5, 3))
    assert model.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_predict_logits_on_cuda_leaves_a_cpu_model_on_cpu():
    from classunlearn.train import predict_logits

    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = predict_logits(model, torch.randn(5, 1, 8, 8), device="cuda")
    assert out.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# ------------------------------------------------------------------ C: class count


def test_api_reads_the_class_count_from_the_model():
    from classunlearn.api import _dataset

    model = build_model("mlp", (1, 8, 8), 10, seed=0).train()
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 8  # classes 8 and 9: no samples
    assert _dataset(model, (x, y), None, None).num_classes == 10
    assert model.training
    assert _dataset(model, (x, y), (x, y), 10).num_classes == 10
    with pytest.raises(ParameterError, match="num_classes=8 but the model outputs 10"):
        _dataset(model, (x, y), None, 8)
    with pytest.raises(ParameterError, match="train label 12 is outside 0..9"):
        _dataset(model, (x, torch.where(y == 0, 12, y)), None, None)
    with pytest.raises(ParameterError, match="test label -1"):
        _dataset(model, (x, y), (x, y - 1), None)
    with pytest.raises(ParameterError, match="reference 0 outputs 7 logits"):
        _dataset(model, (x, y), None, None, [build_model("mlp", (1, 8, 8), 7)])
    with pytest.raises(ParameterError, match="fails on an input shaped"):
        _dataset(model, (torch.randn(4, 3), y[:4]), None, None)


def test_api_unlearn_and_audit_with_empty_top_classes():
    import classunlearn as cu

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    x, y = torch.randn(80, 1, 8, 8), torch.arange(80) % 8
    unlearned, record = cu.unlearn(model, (x, y), [3], method="rwft", params={"epochs": 1})
    assert record.steps > 0 and unlearned(x[:2]).shape == (2, 10)
    report = cu.audit(unlearned, (x, y), (x, y), [3], references=[model])
    assert len(report["per_class_test_acc"]) == 10
    with pytest.raises(ParameterError, match="outside 0..9"):
        cu.unlearn(model, (x, y + 3), [3], method="rwft")


# ------------------------------------------------------------------ D: plug-in models


def test_build_model_from_a_file_seeded_and_checked(tmp_path):
    path = _write(tmp_path)
    ref = f"{path}:build"
    state = torch.random.get_rng_state()
    a, b = build_model(ref, (1, 8, 8), 10, seed=1), build_model(ref, (1, 8, 8), 10, seed=1)
    c = build_model(ref, (1, 8, 8), 10, seed=2, width=4)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a[0].weight, build_model(ref, (1, 8, 8), 10, seed=2)[0].weight)
    assert c[0].out_channels == 4 and a.training
    assert model_source_sha256(ref) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model_source_sha256("mlp") is None
    assert final_linear(a, num_classes=10) is a[5]
    assert not is_stackable(ref) and is_stackable("mlp") and not is_stackable("resnet18")
    with pytest.raises(ParameterError, match="unknown model"):
        is_stackable("vit")


def test_build_model_from_a_dotted_module(tmp_path, monkeypatch):
    _write(tmp_path, "cu_test_user_model.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = build_model("cu_test_user_model:build", (1, 8, 8), 10, seed=0)
    assert m(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert canonical_model_name("cu_test_user_model:build") == "cu_test_user_model:build"
    assert model_source_sha256("cu_test_user_model:build") == hashlib.sha256(
        (tmp_path / "cu_test_user_model.py").read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix,fragment", [
    (":nope", "has no 'nope'"),
    (":not_a_function", "is a int, not a function"),
    (":returns_list", "returned a list, not a torch.nn.Module"),
    (":wrong_width", r"must return logits shaped \(batch, num_classes\) = \(2, 10\)"),
    (":build", "bad arguments"),  # with an unknown model argument
])
def test_bad_plugins_are_refused(tmp_path, suffix, fragment):
    ref = f"{_write(tmp_path)}{suffix}"
    kwargs = {"depth": 3} if suffix == ":build" else {}
    with pytest.raises(ParameterError, match=fragment):
        build_model(ref, (1, 8, 8), 10, **kwargs)


def test_bad_references_are_refused(tmp_path):
    cases = {
        "cu_no_such_module_xyz:build": "no such module",
        f"{tmp_path / 'missing.py'}:build": "not found",
        f"{_write(tmp_path)}:": "bad model reference",
        "not a module:build": "neither a dotted module name",
        f"{_write(tmp_path, 'broken.py', 'import cu_no_such_dependency_xyz')}:build":
            "cannot import model .*broken.py.*ModuleNotFoundError",
        f"{_write(tmp_path, 'notpy.txt', 'x = 1')}:build": "not a .py file",
    }
    for ref, fragment in cases.items():
        with pytest.raises(ParameterError, match=fragment):
            build_model(ref, (1, 8, 8), 10)


def test_cli_refuses_a_bad_plugin_in_one_line(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    for ref in (f"{tmp_path / 'missing.py'}:build", f"{_write(tmp_path)}:nope"):
        assert main(["train", "--dataset", "digits", "--model", ref, "--epochs", "1",
                     "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err
    assert not out.exists()


def test_train_unlearn_audit_a_plugin_model_and_refuse_a_changed_file(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path)
    ref = "mymodel.py:build"  # relative: recorded as an absolute path
    orig, retr, unl = (tmp_path / f"{n}.safetensors" for n in ("orig", "ret", "unl"))
    assert main(["train", "--dataset", "digits", "--model", ref, "--epochs", "2",
                 "--out", str(orig)]) == 0
    assert main(["train", "--dataset", "digits", "--model", ref, "--epochs", "2",
                 "--exclude-class", "3", "--seed", "1", "--out", str(retr)]) == 0
    meta = json.loads(orig.with_suffix(".json").read_text())
    assert meta["model"] == f"{path.resolve()}:build"
    assert meta["model_source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["unlearn", "--checkpoint", str(orig), "--forget-class", "3", "--method",
                 "rwft", "--set", "epochs=2", "--out", str(unl)]) == 0
    audit = ["audit", "--checkpoint", str(unl), "--forget-class", "3", "--reference",
             str(retr), "--metrics", "accuracy,tv,mia_nn", "--json", str(tmp_path / "a.json")]
    assert main(audit) == 0
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["metrics"]["acc_forget"] is not None and result["metrics"]["tv"] is not None
    capsys.readouterr()

    path.write_text(USER_MODEL + "\n# changed\n")
    assert main(audit) == 2
    err = capsys.readouterr().err
    assert str(path.resolve()) in err and "changed since" in err and err.count("\n") == 1
    assert main(["unlearn", "--checkpoint", str(orig), "--forget-class", "3", "--method",
                 "rwft", "--out", str(tmp_path / "u2.safetensors")]) == 2
    assert str(path.resolve()) in capsys.readouterr().err
    from classunlearn.checkpoint import load_checkpoint

    with pytest.raises(CheckpointError, match="retrain with `classunlearn train"):
        load_checkpoint(orig)
    path.write_text(USER_MODEL)  # restored: loads again
    model, _ = load_checkpoint(orig)
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_study_keys_follow_the_model_file():
    from classunlearn.bench.units import StudyContext, original_key

    base = StudyContext("digits", None, "mlp", {}, {}, (3,), "fp")
    assert "model_source_sha256" not in base.spec()  # registry models: keys unchanged
    a = StudyContext("digits", None, "/x/m.py:build", {}, {}, (3,), "fp", "a" * 64)
    b = StudyContext("digits", None, "/x/m.py:build", {}, {}, (3,), "fp", "b" * 64)
    assert original_key(a, 0) != original_key(b, 0)


def test_study_units_refuse_a_changed_model_file(tmp_path):
    from classunlearn.bench.units import StudyContext

    path = _write(tmp_path)
    ref = f"{path}:build"
    ctx = StudyContext("digits", None, ref, {}, {}, (3,), "fp", model_source_sha256(ref))
    ctx.load()
    path.write_text(USER_MODEL + "\n# changed\n")
    with pytest.raises(ParameterError, match="changed since it was recorded"):
        ctx.load()
