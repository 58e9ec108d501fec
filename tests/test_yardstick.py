"""The yardstick is right (issue: one retrain, one shadow trainer, one audit path, no stale
cache): retrain follows the study's recipe, bench and audit share units and keys, oracles read
references of their own, results never go stale without a trace, MIA-NN details."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from classunlearn.bench import units
from classunlearn.bench.runner import BenchConfig, run_bench, study_recipe
from classunlearn.bench.store import Store
from classunlearn.cli import main

EPOCHS = 4


def tiny(out, methods=("retrain", "original", "rwft"), **kw) -> BenchConfig:
    base = dict(dataset="digits", forget_classes=[["3"]], methods=list(methods), seeds=1,
                shadows=8, references=2, executor="local", epochs=EPOCHS, out=str(out))
    return BenchConfig(**{**base, **kw})


def unit_infos(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (out / "artifacts").glob("*.json")]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("yardstick")
    result = run_bench(tiny(out, methods=("retrain", "original", "rwft", "trw-2r-oracle")),
                       log=lambda _: None)
    return out, result


# ------------------------------------------------------------------ 1. retrain's recipe

def test_retrain_row_follows_the_study_recipe(study):
    out, _ = study
    run = Store(out).get_meta("run")
    retrain = [i for i in unit_infos(out) if i.get("label") == "retrain seed 0"]
    assert len(retrain) == 1
    assert retrain[0]["params"] == run["recipe"]  # epochs 4, not the dataset's 30
    assert retrain[0]["params"]["epochs"] == EPOCHS


def test_quick_and_epochs_change_one_recipe_for_everything():
    quick = study_recipe(BenchConfig(dataset="digits", quick=True))
    assert quick.epochs == 5  # half of digits' 10, for originals, shadows AND retrain
    assert study_recipe(BenchConfig(dataset="digits", quick=True, epochs=6)).epochs == 6


def test_bench_refuses_set_on_retrain(tmp_path):
    from classunlearn.errors import UserError

    with pytest.raises(UserError, match="follows the original"):
        run_bench(tiny(tmp_path, method_params={"retrain": {"epochs": "15"}}))


def test_unlearn_retrain_repeats_the_checkpoints_recipe(tmp_path, capsys):
    orig = tmp_path / "orig.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--lr", "0.03",
                 "--seed", "0", "--out", str(orig)]) == 0
    out = tmp_path / "retrained.safetensors"
    assert main(["unlearn", "--checkpoint", str(orig), "--forget-class", "3", "--method",
                 "retrain", "--out", str(out)]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    recipe = json.loads(orig.with_suffix(".json").read_text())["recipe"]
    assert side["method"]["params"] == recipe and recipe["epochs"] == 3
    assert side["method"]["seed"] == 1  # fresh: not the original's seed 0
    capsys.readouterr()
    assert main(["unlearn", "--checkpoint", str(orig), "--forget-class", "3", "--method",
                 "retrain", "--set", "epochs=30", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "follows the original" in capsys.readouterr().err
    assert main(["unlearn", "--checkpoint", str(orig), "--forget-class", "3", "--method",
                 "retrain", "--seed", "0", "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "original's own seed" in capsys.readouterr().err


# ------------------------------------------------------------------ 3. one audit path

def test_audit_of_a_checkpoint_reuses_the_bench_units(study, tmp_path, capsys):
    """A bench --out folder is an audit cache: the audit of the same model (the seed-0
    original unlearned by rwft with seed 0) computes nothing and reads the same U-LiRA."""
    out, result = study
    orig = tmp_path / "orig.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", str(EPOCHS), "--seed", "0",
                 "--out", str(orig)]) == 0
    unl = tmp_path / "rwft.safetensors"
    assert main(["unlearn", "--checkpoint", str(orig), "--forget-class", "3", "--method",
                 "rwft", "--seed", "0", "--out", str(unl)]) == 0
    refs = []
    for j in range(2):
        refs += ["--reference", str(tmp_path / f"ref{j}.safetensors")]
        assert main(["train", "--dataset", "digits", "--epochs", str(EPOCHS), "--seed",
                     str(1000 + j), "--exclude-class", "3", "--out", refs[-1]]) == 0
    js = tmp_path / "audit.json"
    capsys.readouterr()
    assert main(["audit", "--checkpoint", str(unl), "--forget-class", "3", *refs,
                 "--shadows", "8", "--cache", str(out), "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    u = doc["ulira_details"]
    # shadow originals, shadow retrains, the method's replay and retrain's replay (the null)
    assert (u["units_computed"], u["units_reused"]) == (0, 4)
    bench_rwft = result.summary["summary"]["rwft"]
    assert doc["metrics"]["ulira"] == pytest.approx(bench_rwft["ulira"]["mean"], abs=1e-9)
    assert doc["metrics"]["ulira_auc"] == pytest.approx(bench_rwft["ulira_auc"]["mean"],
                                                        abs=1e-9)
    # the references' MIA-NN equals the bench's (same models: bench references are seeds
    # 1000 + j), so the audited model's gap is the bench's too
    assert doc["metrics"]["mia_nn"] == pytest.approx(bench_rwft["mia_nn"]["mean"], abs=1e-9)


def test_engine_imports_no_face():
    """The engine (everything but cli, api and the package root) never imports a face, and
    bench's runner and report do not import each other."""
    import ast

    root = Path(__import__("classunlearn").__file__).parent
    faces = {"classunlearn.cli", "classunlearn.api"}
    imports: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        mod = "classunlearn." + ".".join(path.relative_to(root).with_suffix("").parts)
        mod = mod.removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        imports[mod] = found
    for mod, found in imports.items():
        if mod in faces or mod in ("classunlearn", "classunlearn.__main__"):
            continue
        assert not found & faces, (mod, found & faces)
        assert "classunlearn" not in found or mod == "classunlearn", mod  # no root import
    assert "classunlearn.bench.runner" not in imports["classunlearn.bench.report"]
    assert "classunlearn.bench.report" in imports["classunlearn.bench.runner"]
    code = ("import sys, classunlearn.bench.runner, classunlearn.bench.audit; "
            "print(sorted(m for m in sys.modules if m in ('classunlearn.api', "
            "'classunlearn.cli')))")
    import subprocess

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "[]"


# ------------------------------------------------------------------ 4. the oracle

def test_oracle_reads_references_disjoint_from_the_yardstick(study):
    out, _ = study
    infos = unit_infos(out)
    labels = {i["label"] for i in infos}
    assert {"oracle's reference 0", "oracle's reference 1"} <= labels
    assert {"reference 0", "reference 1"} <= labels
    ctx_keys = {i["label"]: i for i in infos}
    assert ctx_keys["trw-2r-oracle seed 0"]["oracle"] is True


def test_audit_refuses_the_oracles_own_references(tmp_path, capsys):
    orig = tmp_path / "orig.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--out", str(orig)]) == 0
    refs = []
    for j in range(3):
        refs.append(str(tmp_path / f"r{j}.safetensors"))
        assert main(["train", "--dataset", "digits", "--epochs", "2", "--seed", str(10 + j),
                     "--exclude-class", "3", "--out", refs[-1]]) == 0
    unl = tmp_path / "oracle.safetensors"
    assert main(["unlearn", "--checkpoint", str(orig), "--forget-class", "3", "--method",
                 "trw-2r-oracle", "--set", "epochs=1", "--reference", refs[0], "--reference",
                 refs[1], "--out", str(unl)]) == 0
    side = json.loads(unl.with_suffix(".json").read_text())
    assert [r["path"] for r in side["method"]["references"]] == [
        str(Path(r).resolve()) for r in refs[:2]]
    capsys.readouterr()
    code = main(["audit", "--checkpoint", str(unl), "--forget-class", "3", "--reference",
                 refs[1], "--reference", refs[2], "--metrics", "accuracy"])
    assert code == 2 and "read by the oracle" in capsys.readouterr().err


# ------------------------------------------------------------------ 5. nothing goes stale

def test_units_record_version_format_and_device(study):
    out, _ = study
    for info in unit_infos(out):
        assert info["version"] and info["format"] == units.RESULTS_FORMAT
        assert info["device"] in ("cpu", "cuda", "cuda:0")


def test_a_new_results_format_recomputes_everything(study, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(study[0], out)
    monkeypatch.setattr(units, "RESULTS_FORMAT", units.RESULTS_FORMAT + 1)
    again = run_bench(tiny(out, methods=("retrain", "original"), shadows=0),
                      log=lambda _: None)
    assert again.reused == 0 and again.computed == 5  # 1 original, 2 refs, 2 methods


def test_file_data_replaced_in_place_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSUNLEARN_CACHE_DIR", str(tmp_path / "hash-cache"))
    from classunlearn.data import load_dataset

    d = load_dataset("digits")
    data = tmp_path / "data"
    data.mkdir()

    def write(flip: bool) -> None:
        x_train = d.x_train.numpy()
        np.savez(data / "data.npz", x_train=(1 - x_train) if flip else x_train,
                 y_train=d.y_train.numpy(), x_test=d.x_test.numpy(), y_test=d.y_test.numpy())

    write(False)
    cfg = tiny(tmp_path / "out", methods=("retrain", "original"), shadows=0, dataset="npz",
               data_dir=str(data), epochs=2)
    first = run_bench(cfg, log=lambda _: None)
    assert first.computed == 5
    write(True)  # same sizes, new content
    second = run_bench(cfg, log=lambda _: None)
    assert second.reused == 0 and second.computed == 5


def test_failed_units_are_retried(tmp_path):
    logs: list[str] = []
    cfg = tiny(tmp_path, methods=("retrain", "ga"), shadows=0,
               method_params={"ga": {"lr": "1e9", "epochs": "3"}})
    first = run_bench(cfg, log=logs.append)
    assert any("ga" in k for k in first.failed)
    logs.clear()
    again = run_bench(cfg, log=logs.append)
    assert again.computed == 1  # the failed ga unit, retried; everything else reused
    assert any("retrying ga seed 0" in m for m in logs)


def test_an_interrupted_rerun_keeps_the_old_metrics(study, tmp_path, monkeypatch):
    import shutil

    from classunlearn.bench import runner

    out = tmp_path / "copy"
    shutil.copytree(study[0], out)
    before = Store(out).metrics()
    assert before

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_study_metrics", killed)
    with pytest.raises(KeyboardInterrupt):
        run_bench(tiny(out, methods=("retrain", "original", "rwft", "trw-2r-oracle")),
                  log=lambda _: None)
    assert sorted(Store(out).metrics()) == sorted(before)


def test_audit_json_is_written_atomically(tmp_path, monkeypatch):
    from classunlearn.bench import summary

    written = []
    real = summary.write_text_atomic
    monkeypatch.setattr(summary, "write_text_atomic",
                        lambda path, text: (written.append(Path(path)), real(path, text)))
    orig = tmp_path / "o.safetensors"
    ref = tmp_path / "r.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(orig)]) == 0
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--seed", "3",
                 "--exclude-class", "3", "--out", str(ref)]) == 0
    js = tmp_path / "a.json"
    assert main(["audit", "--checkpoint", str(orig), "--forget-class", "3", "--reference",
                 str(ref), "--metrics", "accuracy", "--json", str(js)]) == 0
    assert written == [js] and json.loads(js.read_text())["metrics"]["acc_forget"] > 0


# ------------------------------------------------------------------ 6. MIA-NN details

def test_mia_nn_matches_sklearn_predict_at_ties():
    """With label features many test points share one feature vector, and the SVM's
    decision there can be exactly 0; the score must count them as sklearn's predict does."""
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from classunlearn.audit.mia_nn import _nn_features, mia_nn_score

    # forget (0) and nn (1) samples predicted as 0 or 1 at random, others as 2: only two
    # distinct feature vectors, so the SVM's decision at one of them is often exactly 0
    rng = np.random.default_rng(25)
    n = int(rng.integers(10, 40))
    y = np.repeat([0, 1, 2], n)
    logits = np.zeros((3 * n, 3))
    for part in (slice(0, n), slice(n, 2 * n)):
        to_forget = rng.random(n) < rng.uniform(0.0, 0.5)
        logits[part, 0], logits[part, 1] = to_forget * 5.0, (~to_forget) * 5.0
    logits[2 * n:, 2] = 5.0
    got = mia_nn_score(logits, y, 0, 1, feature="labels", seed=0)
    keep = (y == 0) | (y == 1)
    x = _nn_features(logits[keep], 1, "labels")
    t = (y[keep] == 0).astype(int)
    hits = seen = ties = 0
    for tr, te in RepeatedStratifiedKFold(n_splits=5, n_repeats=10, random_state=0).split(x, t):
        model = make_pipeline(StandardScaler(), SVC()).fit(x[tr], t[tr])
        ties += int(np.sum(model.decision_function(x[te]) == 0))
        pred = model.predict(x[te])
        hits += int(np.sum((pred == 1) & (t[te] == 1)))
        seen += int(np.sum(t[te] == 1))
    assert got.score == pytest.approx(100 * hits / seen)
    assert ties > 0  # the case does exercise ties


def test_audit_mia_nn_folds_follow_seed(tmp_path):
    from classunlearn.audit.mia_nn import mia_nn_score

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 30)
    logits = rng.normal(size=(90, 3))
    a = mia_nn_score(logits, y, 0, 1, feature="probs", seed=0).score
    b = mia_nn_score(logits, y, 0, 1, feature="probs", seed=1).score
    assert a != b
    import inspect

    from classunlearn.evaluate import attack_metrics  # the audit passes --seed through

    assert "mia_seed" in inspect.signature(attack_metrics).parameters


def test_reference_rows_choose_nn_without_the_audited_reference(digits):
    """Reference 0 sends forget samples to class 5, references 1 and 2 split them between 5
    and 8 (a little more to 8): with all three nn is 5, but reference 0's own row is judged
    with nn = 8, chosen without it."""
    from classunlearn.bench.audit import reference_attack_rows
    from classunlearn.data import ForgetSplit
    from classunlearn.evaluate import SplitLogits, nn_classes, reference_mia_scores

    split = ForgetSplit.make(digits, [3])
    rng = torch.Generator().manual_seed(0)

    def fake(push: dict[int, float]) -> SplitLogits:
        def part(idx, train):
            y = (digits.y_train if train else digits.y_test)[idx]
            z = 0.1 * torch.randn(len(idx), 10, generator=rng)
            z[torch.arange(len(idx)), y] += 8
            z[y == 3, 3] -= 20
            for c, v in push.items():
                z[y == 3, c] += v
            return z
        return SplitLogits(part(split.train_forget, True), part(split.train_retain, True),
                           part(split.test_forget, False), part(split.test_retain, False))

    # all three references: class 5 gets (1 + .45 + .45) / 3 of the mass, class 8 (.55 + .55)
    # / 3, so nn = 5; without reference 0, class 8 wins
    refs = [fake({5: 20.0}), fake({5: 12.0, 8: 12.2}), fake({5: 12.0, 8: 12.2})]
    nn = nn_classes(split, refs)
    assert nn == {3: 5}
    ref_mia = reference_mia_scores(split, refs, nn)
    rows = reference_attack_rows(split, refs, nn, ref_mia, None, None, 0)
    assert rows[0]["nn_class"] == {"3": 8}
    assert rows[1]["nn_class"] == {"3": 5}
