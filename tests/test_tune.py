"""Tuning lr/epochs for a model without tuned defaults: the rule, the held-out part of D_r,
`classunlearn tune` (cached), `bench --tune`, and the retain-accuracy warning."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from classunlearn import tune
from classunlearn.cli import main
from classunlearn.errors import ParameterError

GRID = {"lr": (1e-3, 1e-2), "epochs": (2, 5)}
SMALL = {"lr": (0.01, 0.1), "epochs": (1, 2)}


def row(lr, epochs, acc_f, val, error=None):
    return {"setting": {"lr": lr, "epochs": epochs}, "acc_forget": acc_f, "val_acc": val,
            "steps": 0, "wall_s": 0.0, "error": error}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------ the rule


def test_rule_takes_the_best_validation_accuracy_among_eligible_settings():
    rows = [row(1e-3, 2, 0.0, 90.0), row(1e-3, 5, 0.5, 97.0), row(1e-2, 2, 1.0, 96.0),
            row(1e-2, 5, 1.5, 99.0)]  # best val acc, but Acc_f > 1%: not eligible
    best, reached = tune.choose(rows, GRID)
    assert reached and best["setting"] == {"lr": 1e-3, "epochs": 5}


def test_rule_breaks_ties_by_fewer_epochs_then_smaller_lr():
    rows = [row(1e-2, 5, 0.0, 97.0), row(1e-2, 2, 0.0, 97.0), row(1e-3, 5, 0.0, 97.0)]
    assert tune.choose(rows, GRID)[0]["setting"] == {"lr": 1e-2, "epochs": 2}
    rows = [row(1e-2, 2, 0.0, 97.0), row(1e-3, 2, 0.0, 97.0)]
    assert tune.choose(rows, GRID)[0]["setting"] == {"lr": 1e-3, "epochs": 2}


def test_rule_without_an_eligible_setting_takes_the_lowest_forget_accuracy_and_says_so():
    rows = [row(1e-3, 2, 50.0, 99.0), row(1e-2, 2, 5.0, 90.0), row(1e-2, 5, 5.0, 92.0),
            row(1e-3, 5, math.nan, math.nan, error="diverged")]
    best, reached = tune.choose(rows, GRID)
    assert not reached and best["setting"] == {"lr": 1e-2, "epochs": 5}
    result = tune.TuneResult("ft", {k: list(v) for k, v in GRID.items()}, rows,
                             best["setting"], reached, {"acc_forget": 100.0, "val_acc": 98.0})
    table = tune.format_table(result)
    assert "no setting reached Acc_f <= 1%" in table and "failed: diverged" in table
    assert "(Acc_f > 1%)" in tune.chosen_line(result)


def test_rule_never_chooses_a_failed_setting():
    rows = [row(1e-3, 2, 0.0, 99.0, error="diverged"), row(1e-2, 2, 0.0, 80.0)]
    assert tune.choose(rows, GRID)[0]["setting"] == {"lr": 1e-2, "epochs": 2}
    assert tune.choose([row(1e-3, 2, math.nan, math.nan, error="x")], GRID) == (None, False)


def test_grids_and_refusals():
    assert tune.grid_for("ft") == tune.FINETUNE_GRID
    assert tune.grid_for("trw[weights]") == tune.FINETUNE_GRID
    assert max(tune.grid_for("ga")["lr"]) < max(tune.FINETUNE_GRID["lr"])
    assert set(tune.grid_for("ssd")) == {"alpha", "lam"}
    for spec in ("retrain", "original", "trw-2r-oracle"):
        with pytest.raises(ParameterError, match="not tuned"):
            tune.grid_for(spec)
    with pytest.raises(ParameterError, match="unknown method"):
        tune.grid_for("nope")
    assert "retrain" not in tune.tunable_methods(["retrain", "original", "ft", "ssd"])


# ------------------------------------------------------------------ the validation part


def test_validation_split_is_stratified_seeded_and_disjoint():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 10 + [4])
    seen, val = tune.validation_split(y, 0.1, seed=3)
    assert set(seen.tolist()).isdisjoint(val.tolist())
    assert sorted(seen.tolist() + val.tolist()) == list(range(len(y)))
    assert torch.bincount(y[val], minlength=5).tolist() == [5, 3, 1, 0, 0]
    assert torch.equal(val, tune.validation_split(y, 0.1, seed=3)[1])
    assert not torch.equal(val, tune.validation_split(y, 0.1, seed=4)[1])
    with pytest.raises(ParameterError):
        tune.validation_split(y, 1.0)


def test_the_method_never_sees_the_validation_part_nor_the_test_split(digits_models,
                                                                       monkeypatch):
    from classunlearn.methods import Method, UnlearnData

    split, original, _ = digits_models
    data = UnlearnData.from_split(split)
    seen_by_method, scored = [], []
    real_unlearn, real_accuracy = Method.unlearn, tune.accuracy

    def spy_unlearn(self, model, d, *a, **kw):
        seen_by_method.append(d)
        return real_unlearn(self, model, d, *a, **kw)

    def spy_accuracy(model, x, y):
        scored.append(x)
        return real_accuracy(model, x, y)

    monkeypatch.setattr(Method, "unlearn", spy_unlearn)
    monkeypatch.setattr(tune, "accuracy", spy_accuracy)
    result = tune.tune_method(original, data, "ft", {"lr": (0.01,), "epochs": (1,)},
                              validation_fraction=0.2, seed=1)
    seen_pos, val_pos = tune.validation_split(data.y_retain, 0.2, seed=1)
    (d,) = seen_by_method
    assert torch.equal(d.x_retain, data.x_retain[seen_pos])
    assert torch.equal(d.x_forget, data.x_forget)
    assert result.validation["n_validation"] == len(val_pos) > 0
    # validation rows: D_r rows of the train split that the method did not get
    x_val = split.dataset.x_train[split.train_retain[val_pos]]
    assert any(x.shape == x_val.shape and torch.equal(x, x_val) for x in scored)
    for x in scored:  # every scored set comes from the train split, never the test split
        assert x.shape[0] != len(split.dataset.x_test) or not torch.equal(
            x, split.dataset.x_test)
        assert x.shape[0] in (len(data.y_forget), len(val_pos))


# ------------------------------------------------------------------ classunlearn tune


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--out",
                 str(d / "o.safetensors")]) == 0
    return d


def test_cli_tune_prints_tables_and_chosen_lines_then_reuses_its_cache(capsys, ckpt,
                                                                      monkeypatch):
    monkeypatch.setattr(tune, "FINETUNE_GRID", SMALL)
    argv = ["tune", "--checkpoint", ckpt / "o.safetensors", "--forget-class", "3",
            "--methods", "ft,rl", "--out", ckpt / "cache"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "### ft" in out and "### rl" in out and "| lr" in out and "Acc_f (D_f)" in out
    assert out.count("<-") == 2
    lines = [ln for ln in out.splitlines() if ln.startswith(("ft: --set", "rl: --set"))]
    assert len(lines) == 2 and all("--set lr=" in ln and "--set epochs=" in ln for ln in lines)
    assert "2 units computed, 0 reused" in out
    code, again, err = run(capsys, *argv)
    assert code == 0, err
    assert "0 units computed, 2 reused" in again
    assert again.split("\n\n0 units")[0] == out.split("\n\n2 units")[0]  # same tables


@pytest.mark.parametrize("methods,fragment", [("retrain", "not tuned"),
                                              ("nope", "unknown method"),
                                              ("ft,ft", "twice")])
def test_cli_tune_refuses_bad_methods(capsys, ckpt, methods, fragment):
    code, out, err = run(capsys, "tune", "--checkpoint", ckpt / "o.safetensors",
                         "--forget-class", "3", "--methods", methods, "--out", ckpt / "c2")
    assert code == 2 and fragment in err and err.count("\n") == 1


# ------------------------------------------------------------------ bench --tune


def _units(out, kind):
    arts = (out / "artifacts").glob("*.json")
    return [i for i in (json.loads(p.read_text()) for p in arts) if i.get("kind") == kind]


def test_bench_tune_uses_the_tuned_values_and_reruns_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "FINETUNE_GRID", SMALL)
    out = tmp_path / "b"
    argv = ["bench", "--dataset", "digits", "--methods", "retrain,original,ft", "--seeds", 1,
            "--shadows", 0, "--references", 2, "--epochs", 3, "--executor", "local",
            "--tune", "--out", out]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    assert "### ft" in err and "tuned ft: --set lr=" in err  # the tuning table on stderr
    (tuned,) = _units(out, "tune")
    choice = tuned["choice"]
    assert set(choice) == {"lr", "epochs"} and tuned["method"] == "ft"
    (ft,) = [i for i in _units(out, "method") if i["method"] == "ft"]
    assert ft["params"]["lr"] == choice["lr"] and ft["params"]["epochs"] == choice["epochs"]
    from classunlearn.bench.store import Store

    details = Store(out).get_meta("details")
    (study,) = details
    assert details[study]["tuned"]["ft"]["choice"] == choice
    assert "retrain" not in details[study]["tuned"]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    assert "0 units computed" in stdout

    # an explicit --set wins over the tuned value, and says so
    copy = tmp_path / "c"
    shutil.copytree(out, copy)
    argv2 = [*argv[:-1], copy, "--set", "ft:epochs=1"]
    code, stdout, err = run(capsys, *argv2)
    assert code == 0, err
    assert f"--set epochs=1 wins over the tuned epochs={choice['epochs']}" in err
    assert "1 units computed" in stdout  # only ft itself; the tuning is reused
    (ft,) = [i for i in _units(copy, "method") if i["method"] == "ft"
             and i["params"]["epochs"] == 1]
    assert ft["params"]["lr"] == choice["lr"]


# ------------------------------------------------------------------ the retain warning


def test_retain_warning_fires_on_a_wrecked_method_only():
    summary = {"original": 98.0, "retrain": 97.5, "ft": 97.0, "ga": 40.0, "bs": 88.5,
               "unsir": math.nan}
    warnings = tune.retain_warnings(summary, 98.0)
    assert warnings == ["WARNING: ga leaves TA_r at 40.0% against the original's 98.0%; its "
                        "defaults may not suit this model: run with --tune or set lr/epochs"]
    assert tune.retain_warnings({"ft": 97.0, "bs": 88.5, "retrain": 50.0}, 98.0) == []
    assert "even with tuned" in tune.retain_warnings({"ga": 40.0}, 98.0, tuned={"ga"})[0]


def test_study_retain_warnings_use_the_original_row_or_the_original_models():
    rows = [("s", "original", 0, "test_acc_retain", 98.0), ("s", "ga", 0, "test_acc_retain",
                                                          30.0),
            ("s", "ga", 1, "test_acc_retain", 50.0), ("s", "ft", 0, "test_acc_retain", 97.0),
            ("s", "ga", 0, "acc_forget", 0.0)]
    (w,) = tune.study_retain_warnings(rows, lambda: pytest.fail("not needed"))
    assert w.startswith("WARNING: ga leaves TA_r at 40.0% against the original's 98.0%")
    no_original = [r for r in rows if r[1] != "original"]
    assert tune.study_retain_warnings(no_original, lambda: 45.0) == []
    assert len(tune.study_retain_warnings(no_original, lambda: 99.0)) == 1


def test_the_warning_reaches_report_md(tmp_path):
    from classunlearn.bench.report import write_report

    w = "WARNING: ga leaves TA_r at 40.0% against the original's 98.0%; ..."
    write_report(tmp_path, {"summary": {}, "studies": {}}, {},
                 details={"digits/mlp/forget=3": {"warnings": [w]}})
    assert w in (tmp_path / "report.md").read_text()
    assert "ga leaves TA_r" in (tmp_path / "report.html").read_text()
