"""Your own model, your own data, every metric: cu.audit with U-LiRA on a user's batch-norm CNN
(the one of docs/own_model.md), cu.bench on it, the `tensors` dataset that carries in-memory
data to the bench units, and the CLI path giving the same numbers (one engine)."""

from __future__ import annotations

import functools
import importlib
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import classunlearn as cu
from classunlearn.bench.audit import CONTRACT_KEYS
from classunlearn.errors import ParameterError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_cnn.py"
EPOCHS = 2
SHADOWS = 8  # the fewest U-LiRA allows


@pytest.fixture(scope="module")
def user(tmp_path_factory, digits):
    """The docs' model file copied outside the package and imported as a user would: the
    factory `build`, an original, two references without class 3, and an RWFT run."""
    folder = tmp_path_factory.mktemp("user")
    shutil.copy(EXAMPLE, folder / "cu_user_cnn.py")
    sys.path.insert(0, str(folder))
    try:
        build = importlib.import_module("cu_user_cnn").build
    finally:
        sys.path.remove(str(folder))
    d = digits
    recipe = cu.Recipe(epochs=EPOCHS)
    original = cu.train_model(build(d.input_shape, 10), d.x_train, d.y_train, recipe, seed=0)
    keep = d.y_train != 3
    refs = [cu.train_model(build(d.input_shape, 10), d.x_train[keep], d.y_train[keep], recipe,
                           seed=s) for s in (1, 2)]
    unlearned, record = cu.unlearn(original, (d.x_train, d.y_train), [3], method="rwft",
                                   params={"epochs": 1})
    return {"build": build, "file": folder / "cu_user_cnn.py", "recipe": recipe,
            "original": original, "refs": refs, "unlearned": unlearned, "record": record,
            "train": (d.x_train, d.y_train), "test": (d.x_test, d.y_test),
            "cache": tmp_path_factory.mktemp("cache")}


def _full_audit(u: dict, train=None, test=None, **kwargs) -> dict:
    args = {"model_fn": u["build"], "recipe": u["recipe"], "record": u["record"],
            "shadows": SHADOWS, "cache": u["cache"], "log": lambda m: None, **kwargs}
    return cu.audit(u["unlearned"], u["train"] if train is None else train,
                    u["test"] if test is None else test, [3], u["refs"], **args)


def test_audit_measures_every_contract_key_with_ulira(user):
    r = _full_audit(user)
    missing = [k for k in CONTRACT_KEYS if r.get(k) is None]
    assert not missing, (missing, r["unavailable"])
    assert not r["unavailable"]
    assert 50.0 <= r["ulira"] <= 100.0 and 0.0 <= r["ulira_auc"] <= 100.0
    assert r["runtime_s"] == user["record"].wall_time_s
    assert r["method"] == "rwft" and r["ulira_details"]["shadows"] == SHADOWS
    # Avg.Gap as the CLI defines it: mean |model - references' mean| over the listed keys
    keys = r["avg_gap_keys"]
    assert keys and set(keys) | set(r["avg_gap_left_out"]) >= {"acc_forget", "mia_nn"}
    ref_mean = {k: np.mean([ref[k] for ref in r["references"]]) for k in keys}
    assert math.isclose(r["avg_gap"], np.mean([abs(r[k] - ref_mean[k]) for k in keys]))
    assert len(r["references"]) == 2 and all("mia_nn" in ref for ref in r["references"])

    # the same units again: nothing recomputed, the same number; a "FILE.py:FUNCTION" string
    # names the same factory (same keys)
    again = _full_audit(user, model_fn=f"{user['file']}:build")
    assert again["ulira_details"]["units_computed"] == 0
    assert again["ulira"] == r["ulira"] and again["ulira_auc"] == r["ulira_auc"]


def test_torch_datasets_are_data_too(user):
    train = torch.utils.data.TensorDataset(*user["train"])
    test = torch.utils.data.TensorDataset(*user["test"])
    r = _full_audit(user, train=train, test=test)
    ref = _full_audit(user)
    assert r["ulira"] == ref["ulira"] and r["acc_forget"] == ref["acc_forget"]


def test_ulira_unavailable_says_why_never_a_stand_in(user):
    r = cu.audit(user["unlearned"], user["train"], user["test"], [3], user["refs"])
    assert set(CONTRACT_KEYS) <= set(r)
    assert r["ulira"] is None and r["ulira_auc"] is None and r["runtime_s"] is None
    why = r["unavailable"]["ulira"]
    assert "model_fn" in why and "recipe" in why and "record" in why
    assert r["unavailable"]["ulira_auc"] == why and "record" in r["unavailable"]["runtime_s"]
    assert r["acc_forget"] is not None and r["mia_nn_z"] is not None  # the rest is measured
    assert r["avg_gap"] is not None and "ulira" in r["avg_gap_left_out"]

    no_record = cu.audit(user["unlearned"], user["train"], user["test"], [3], user["refs"],
                         model_fn=user["build"], recipe=user["recipe"], shadows=SHADOWS)
    assert no_record["ulira"] is None
    assert no_record["unavailable"]["ulira"].startswith("record not given")

    some = cu.audit(user["unlearned"], user["train"], user["test"], [3], user["refs"],
                    metrics="accuracy,tv")
    assert some["svc_mia"] is None and "not requested" in some["unavailable"]["svc_mia"]
    assert some["tv"] is not None


def test_bad_factories_are_refused_before_any_work(user):
    def closure(input_shape, num_classes):
        return user["build"](input_shape, num_classes)

    cases = {
        "a lambda": lambda s, k: user["build"](s, k),
        "defined inside another function": closure,
        "not a plain function": functools.partial(user["build"]),
        "is a model, not the function": user["original"],
        "neither a registry model": "not-a-model",
    }
    for fragment, fn in cases.items():
        with pytest.raises(ParameterError, match=fragment) as e:
            _full_audit(user, model_fn=fn)
        assert "module level in a .py file" in str(e.value)
    with pytest.raises(ParameterError, match="parameters differ from the audited model"):
        _full_audit(user, model_fn="mlp")
    with pytest.raises(ParameterError, match="shadows"):
        _full_audit(user, shadows=4)


def test_tensors_dataset_keeps_the_data_exactly(tmp_path):
    from classunlearn.data import dataset_fingerprint, load_dataset
    from classunlearn.data.tensors import as_arrays, save_tensors

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(30, 1, 4, 4, generator=g) * 10 + 3, torch.arange(30) % 4  # not standard
    arrays = as_arrays(x.numpy(), y.numpy(), x[:8].numpy(), y[:8].numpy(), num_classes=6)
    a, b = save_tensors(tmp_path / "a", arrays), save_tensors(tmp_path / "b", arrays)
    assert a.name == b.name and a.read_bytes() == b.read_bytes()  # deterministic bytes
    assert dataset_fingerprint("tensors", a) == dataset_fingerprint("tensors", b)
    ds = load_dataset("tensors", a)
    assert torch.equal(ds.x_train, x) and torch.equal(ds.y_train, y)
    assert ds.num_classes == 6 and ds.input_shape == (1, 4, 4)  # empty top classes kept


def test_bench_on_a_user_model_file(user, tmp_path):
    out = tmp_path / "bench"
    train = torch.utils.data.TensorDataset(*user["train"])
    res = cu.bench(user["build"], train, user["test"], [3], recipe=user["recipe"],
                   methods="retrain,original,rwft", seeds=1, shadows=SHADOWS, references=2,
                   out=out, log=lambda m: None)
    assert res.out == out and not res.failed
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    assert set(summary) == {"retrain", "original", "rwft"}
    for key in ("acc_forget", "mia_nn", "ulira", "tv", "avg_gap"):
        assert math.isfinite(summary["rwft"][key]["mean"]), key
    assert summary["original"]["acc_forget"]["mean"] > 50
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert results["run"]["recipe"]["epochs"] == EPOCHS
    assert results["run"]["config"]["model"] == f"{user['file'].resolve()}:build"
    with pytest.raises(ParameterError, match="unknown or fixed"):
        cu.bench(user["build"], train, user["test"], [3], recipe=user["recipe"], out=out,
                 dataset="digits")


def test_cli_path_gives_the_api_numbers(user, tmp_path, capsys):
    """train / unlearn / audit from the command line with --model FILE.py:build, all metrics
    with U-LiRA; cu.audit on the same checkpoints gives the same numbers (one engine)."""
    from classunlearn.checkpoint import load_checkpoint
    from classunlearn.cli import main
    from classunlearn.methods import RunRecord

    ref = f"{user['file']}:build"
    ck = {n: tmp_path / f"{n}.safetensors" for n in ("orig", "ref1", "ref2", "unl")}
    ep = ["--epochs", str(EPOCHS)]
    assert main(["train", "--dataset", "digits", "--model", ref, *ep, "--out",
                 str(ck["orig"])]) == 0
    for s in (1, 2):
        assert main(["train", "--dataset", "digits", "--model", ref, *ep, "--exclude-class",
                     "3", "--seed", str(s), "--out", str(ck[f"ref{s}"])]) == 0
    assert main(["unlearn", "--checkpoint", str(ck["orig"]), "--forget-class", "3",
                 "--method", "rwft", "--set", "epochs=1", "--out", str(ck["unl"])]) == 0
    assert main(["audit", "--checkpoint", str(ck["unl"]), "--forget-class", "3",
                 "--reference", str(ck["ref1"]), "--reference", str(ck["ref2"]),
                 "--shadows", str(SHADOWS), "--cache", str(tmp_path / "cache"),
                 "--json", str(tmp_path / "a.json")]) == 0
    capsys.readouterr()
    cli = json.loads((tmp_path / "a.json").read_text())
    assert all(cli["metrics"][k] is not None for k in CONTRACT_KEYS), cli["unavailable"]

    model, meta = load_checkpoint(ck["unl"])
    refs = [load_checkpoint(ck[f"ref{s}"])[0] for s in (1, 2)]
    m = meta.method
    record = RunRecord(m["name"], m["params"], m["forget_classes"], m["seed"],
                       m["wall_time_s"], 0, m["oracle"])
    api = cu.audit(model, user["train"], user["test"], [3], refs, model_fn=ref,
                   recipe=cu.Recipe.from_dict(meta.recipe), record=record, shadows=SHADOWS,
                   cache=tmp_path / "api-cache", log=lambda msg: None)
    for k in CONTRACT_KEYS:
        assert api[k] == pytest.approx(cli["metrics"][k], abs=1e-9), k
    assert api["avg_gap_keys"] == cli["avg_gap_keys"]
