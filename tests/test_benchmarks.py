"""The performance scripts run (at tiny size) and print their tables; nothing is timed here."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    res = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                         text=True, timeout=600, env={"CLASSUNLEARN_PROGRESS": "0",
                                                      "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.slow
def test_gpu_check_tiny_runs_on_cpu():
    out = run("gpu_check.py", "--tiny")
    assert "check (CPU vs device)" in out and "images/s" in out and "models/min" in out
    assert "fraction of retrain" in out


@pytest.mark.slow
def test_gpu_check_cifar10_tiny_runs_on_cpu(cifar_dir):
    out = run("gpu_check.py", "--tiny", "--cifar10", str(cifar_dir), "--budget-s", "60")
    assert "CIFAR-10 resnet18 w8" in out and "images/s" in out and "models/min" in out
    assert "paper-preset study, automobile" in out and "cpu (tiny)" in out
    assert "projected full `paper` study" in out


def test_methods_ratio_prints_ratios():
    out = run("methods_ratio.py", "--methods", "retrain,trw,ft", "--repeats", "1")
    assert "fraction of retrain" in out and "| trw" in out


def test_unlearn_stacked_prints_speedup_and_memory():
    out = run("unlearn_stacked.py", "--quick")
    assert "| digits | mlp | 4 | **all** |" in out and "| shadow training |" in out
    assert out.strip().splitlines()[-1].startswith("speedup=")


def test_frontier_prints_table_and_picks(tmp_path):
    out = run("frontier.py", "--quick", "--workers", "1", "--out", str(tmp_path))
    assert "| rwft" in out and "budget" in out and "default" in out and "pick" in out
    assert (tmp_path / "frontier.png").stat().st_size > 0
    assert (tmp_path / "frontier.csv").read_text().count("\n") == 3  # header + 2 budgets


def test_recipe_epochs_marks_the_cheapest_recipe():
    out = run("recipe_epochs.py", "--quick")
    rows = [r for r in out.splitlines() if r.startswith("| digits")]
    assert len(rows) == 2 and sum("cheapest" in r for r in rows) == 1
    assert "test acc %" in out


def test_audit_scale_prints_per_model_costs(cifar_dir):
    out = run("audit_scale.py", "--data-dir", str(cifar_dir), "--quick")
    assert "MIA-NN 10 reps s" in out and "capped score (5 seeds)" in out
    assert "| 50 " in out and "per study (41 models)" in out


def test_frontier_pick_is_the_cheapest_point_level_with_the_best_budget():
    import importlib.util

    spec = importlib.util.spec_from_file_location("frontier", BENCH / "frontier.py")
    frontier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frontier)

    def row(budget, gap, gap_sd, z, z_sd):
        return {"budget": budget, "ulira_gap": gap, "ulira_gap_sd": gap_sd,
                "mia_nn_z": z, "mia_nn_z_sd": z_sd}

    best = row(0.37, 9.2, 1.1, 1.6, 1.0)
    level = row(0.04, 11.0, 2.4, 1.3, 0.8)  # 1.8 worse, combined spread 2.6: level
    worse = row(0.02, 39.5, 4.0, 1.3, 0.6)  # cheaper but 30 points worse
    leaky = row(0.03, 9.5, 1.0, 5.0, 0.2)  # U-LiRA level, MIA-NN z 3.4 worse (spread 1.0)
    assert frontier.pick([best, level, worse, leaky]) is level
    assert frontier.pick([best, worse, leaky]) is best  # nothing cheaper holds: the best
    one_seed = [row(0.37, 9.0, math.nan, 1.0, math.nan), row(0.1, 9.9, math.nan, 1.2, math.nan),
                row(0.05, 10.5, math.nan, 1.0, math.nan)]
    assert frontier.pick(one_seed) is one_seed[1]  # floors: 1.0 point, 0.25 z
    assert frontier.budget_share(10, 1.0, 128, 1129, 30) == pytest.approx(
        10 * (128 + 1129) / (30 * 1129))


def test_fused_sgd_prints_its_ratio():
    out = run("fused_sgd.py", "--quick", "--repeats", "1")
    assert "bitwise the same: True" in out and out.strip().splitlines()[-1].startswith("speedup=")
