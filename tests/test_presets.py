"""bench --preset, --subset and --test-subset: settings, stratified subsets, cache keys, and a
tiny study on an extract of real CIFAR-10 (synthetic images in the same layout when the
shared folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from classunlearn.bench.runner import BenchConfig, run_bench
from classunlearn.bench.units import StudyContext, original_key, reference_key
from classunlearn.cli import main
from classunlearn.data import Dataset, load_dataset, subset_dataset
from classunlearn.data.core import stratified_indices
from classunlearn.errors import DataError, ParameterError
from classunlearn.presets import BENCH_DEFAULTS, PRESETS, bench_settings, get_preset

# ------------------------------------------------------------------ presets


def test_paper_preset_is_paper_md_section_7() -> None:
    p = get_preset("paper")
    r = p.recipe
    assert (p.model, p.model_kwargs["width"], p.seeds) == ("resnet18", 64, 3)
    assert (r.lr, r.momentum, r.weight_decay, r.epochs, r.schedule, r.batch_size, r.augment) \
        == (0.1, 0.9, 5e-4, 200, "step", 128, "crop-flip")
    assert p.subset is None and p.test_subset is None


def test_cpu_preset_meets_the_issue_floor() -> None:
    p = get_preset("cpu")
    assert p.references >= 5 and p.shadows >= 16 and p.seeds >= 2


def test_unknown_preset_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError, match="unknown preset 'laptop'"):
        get_preset("laptop")


def test_settings_defaults_then_preset_then_flags() -> None:
    assert bench_settings(None, {})["seeds"] == BENCH_DEFAULTS["seeds"]
    cpu = PRESETS["cpu"]
    s = bench_settings("cpu", {"seeds": None, "shadows": None})
    assert (s["seeds"], s["shadows"], s["model"], s["subset"]) == \
        (cpu.seeds, cpu.shadows, cpu.model, cpu.subset)
    assert s["recipe"] == cpu.recipe.to_dict()
    s = bench_settings("cpu", {"seeds": 1, "subset": 100, "test_subset": 50})
    assert (s["seeds"], s["subset"], s["test_subset"]) == (1, 100, 50)
    # another model drops the preset's model arguments unless new ones are given
    assert bench_settings("cpu", {"model": "mlp"})["model_kwargs"] == {}
    assert bench_settings("cpu", {"model": "mlp", "model_kwargs": {"hidden": 8}}
                          )["model_kwargs"] == {"hidden": 8}


# ------------------------------------------------------------------ subsets


def test_stratified_indices_keep_class_shares_exactly_n_and_seeded() -> None:
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_indices(y, 10, 3, seed=0)
    assert len(idx) == 10 and torch.equal(idx, idx.sort().values)
    assert torch.bincount(y[idx], minlength=3).tolist() == [5, 3, 2]
    assert torch.equal(idx, stratified_indices(y, 10, 3, seed=0))
    assert not torch.equal(idx, stratified_indices(y, 10, 3, seed=1))
    # rounding: 7 of (50, 30, 20) is (3.5, 2.1, 1.4) -> largest remainders first
    assert torch.bincount(y[stratified_indices(y, 7, 3, 0)], minlength=3).tolist() == [4, 2, 1]
    assert len(set(stratified_indices(y, 100, 3, 0).tolist())) == 100


@pytest.mark.parametrize("n", [0, 2, 101])
def test_stratified_indices_refuse_impossible_sizes(n: int) -> None:
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    with pytest.raises(DataError, match="subset"):
        stratified_indices(y, n, 3, seed=0)


def test_subset_dataset_keeps_normalisation_and_test_split() -> None:
    ds = load_dataset("digits")
    sub = subset_dataset(ds, 200, None, seed=0)
    assert isinstance(sub, Dataset) and len(sub.y_train) == 200
    assert torch.equal(sub.x_test, ds.x_test)  # the test split stays whole
    idx = stratified_indices(ds.y_train, 200, ds.num_classes, 0)
    assert torch.equal(sub.x_train, ds.x_train[idx])  # same inputs as in the whole set
    assert len(subset_dataset(ds, None, 90, seed=0).y_test) == 90
    assert subset_dataset(ds) is ds


def test_subsets_enter_the_cache_keys_and_whole_data_keys_are_unchanged() -> None:
    base = StudyContext("digits", None, "mlp", {}, {"epochs": 1}, (3,), "fp")
    assert "subset" not in base.spec()  # keys of whole-data studies are as before
    keys = {original_key(StudyContext("digits", None, "mlp", {}, {"epochs": 1}, (3,), "fp",
                                      subset=s, test_subset=t, subset_seed=k), 0)
            for s, t, k in [(None, None, 0), (100, None, 0), (200, None, 0), (100, 50, 0),
                            (100, None, 1)]}
    assert len(keys) == 5
    assert reference_key(base, 1000) != reference_key(
        StudyContext("digits", None, "mlp", {}, {"epochs": 1}, (3,), "fp", subset=100), 1000)


# ------------------------------------------------------------------ a tiny CIFAR-10 study


def test_tiny_cifar_study_with_preset_and_subset(cifar_dir: Path, tmp_path: Path) -> None:
    def cfg(subset: int) -> BenchConfig:
        s = bench_settings("cpu", {"seeds": 1, "shadows": 0, "references": 2,
                                   "subset": subset, "test_subset": 50})
        return BenchConfig(dataset="imagefolder", data_dir=str(cifar_dir), model=s["model"],
                           model_kwargs=s["model_kwargs"], recipe=s["recipe"],
                           forget_classes=[["automobile"]],
                           methods=["retrain", "original", "rwft"], seeds=s["seeds"],
                           shadows=s["shadows"], references=s["references"],
                           subset=s["subset"], test_subset=s["test_subset"], epochs=1,
                           executor="local", preset="cpu", out=str(tmp_path / "out"))

    first = run_bench(cfg(40), log=lambda _: None)
    assert not first.failed and first.computed == 6  # original, 2 refs, 3 methods
    assert run_bench(cfg(40), log=lambda _: None).computed == 0  # same subset: all reused
    assert run_bench(cfg(50), log=lambda _: None).computed == 6  # another subset: new keys
    study = next(iter(first.summary["studies"]))
    assert "forget=1" in study  # automobile is class 1


def test_cli_rejects_bad_subset_and_preset(cifar_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["bench", "--dataset", "imagefolder", "--data-dir", str(cifar_dir), "--out",
            str(tmp_path / "o"), "--methods", "original", "--shadows", "0", "--seeds", "1"]
    assert main(base + ["--subset", "5"]) == 2  # fewer than the 10 classes
    assert "cannot hold all 10 classes" in capsys.readouterr().err
    assert main(base + ["--subset", "0"]) == 2
    assert "--subset must be a positive number" in capsys.readouterr().err
    assert main(base + ["--test-subset", "30"]) == 2  # 3 per class: too few for MIA-NN
    assert "MIA-NN's 5 folds need at least 5 per class: give at least 50" in \
        capsys.readouterr().err
    assert main(base + ["--preset", "laptop"]) == 2
    assert "invalid choice: 'laptop'" in capsys.readouterr().err


@pytest.mark.slow
def test_cifar10_report_prints_every_table_of_the_study_page(cifar_dir: Path,
                                                             tmp_path: Path) -> None:
    """scripts/cifar10_report.py on a tiny two-class study: accuracy, geometry, the full
    table, verdicts, per-seed claims and the pooled mean-gap claims (2 classes x 2 seeds)."""
    import subprocess
    import sys

    s = bench_settings("cpu", {"seeds": 2, "shadows": 8, "references": 2,
                               "subset": 40, "test_subset": 50})
    cfg = BenchConfig(dataset="imagefolder", data_dir=str(cifar_dir), model=s["model"],
                      model_kwargs=s["model_kwargs"], recipe=s["recipe"],
                      forget_classes=[["automobile"], ["cat"]],
                      methods=["retrain", "original", "ft", "rwft", "trw"],
                      seeds=2, shadows=8, references=2, subset=40, test_subset=50, epochs=1,
                      executor="local", preset="cpu", out=str(tmp_path / "out"))
    assert not run_bench(cfg, log=lambda _: None).failed
    script = Path(__file__).resolve().parents[1] / "scripts" / "cifar10_report.py"
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "out"), "--figure",
                          str(tmp_path / "geo.png")], capture_output=True, text=True,
                         timeout=300, env={"CLASSUNLEARN_PROGRESS": "0", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "| original (2 seeds) |" in out and "retrained without cat" in out
    assert "| automobile |" in out and (tmp_path / "geo.png").stat().st_size > 0
    assert "#### Verdicts: imagefolder/cnn/forget=1" in out
    assert "#### The paper's claims: imagefolder/cnn/forget=3" in out
    pooled = out.split("every study and seed pooled")[1]
    rows = [line for line in pooled.splitlines() if line.startswith(("| ulira", "| mia_nn"))]
    assert len(rows) == 2 and all(" | 4 | " in r for r in rows)  # 2 studies x 2 seeds
    assert all(r.split(" | ")[2].startswith("ft (") for r in rows)  # the one baseline
