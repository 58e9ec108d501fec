"""bench end to end on a tiny digits study: resumable, same table from every executor,
a report with every plot."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from classunlearn.bench.runner import BenchConfig, run_bench

METHODS = ["retrain", "original", "trw", "ga"]


def tiny(out, executor="local", **kw) -> BenchConfig:
    return BenchConfig(dataset="digits", forget_classes=[["3"]], methods=METHODS, seeds=1,
                       shadows=8, references=2, executor=executor, epochs=4, out=str(out), **kw)


def summary_of(out) -> str:
    return canon(json.loads((out / "results.json").read_text())["summary"])


TIMES = ("runtime_s", "runtime_ratio")


def canon(summary: dict) -> str:
    """Comparable text of a summary without wall times (which differ between runs); NaN
    stds of a single seed compare equal as text."""
    return json.dumps({m: {k: v for k, v in ms.items() if k not in TIMES}
                       for m, ms in summary.items()}, sort_keys=True)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = run_bench(tiny(out), log=lambda _: None)
    return out, result, canon(result.summary["summary"])


def test_first_run_computes_every_unit_and_all_metrics(first_run):
    out, result, table = first_run
    # 1 original + 2 references + 2 shadow sets, then 4 methods and their 4 replays on the
    # shadow originals
    assert (result.computed, result.reused) == (13, 0)
    s = result.summary["summary"]
    assert set(s) == set(METHODS)
    for key in ("acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "svc_mia",
                "mia_nn", "mia_nn_gap", "mia_nn_z", "ulira", "ulira_auc", "tv", "avg_gap",
                "runtime_s"):
        assert key in s["trw"], key
    assert s["original"]["acc_forget"]["mean"] > 95
    assert s["trw"]["acc_forget"]["mean"] < 10
    # the original is caught, the yardstick's own replay is not
    assert s["original"]["ulira"]["mean"] > 90 and s["original"]["avg_gap"]["mean"] > 20


def test_rerun_reuses_everything_and_gives_the_same_table(first_run):
    out, result, table = first_run
    again = run_bench(tiny(out), log=lambda _: None)
    assert (again.computed, again.reused) == (0, 13)
    assert canon(again.summary["summary"]) == table


def test_changed_parameter_recomputes_only_what_depends_on_it(first_run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(first_run[0], out)
    again = run_bench(tiny(out, method_params={"trw": {"beta": "3"}}), log=lambda _: None)
    assert (again.computed, again.reused) == (2, 11)  # only trw and its replay


def test_report_has_every_plot(first_run):
    out, _, _ = first_run
    html = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) >= 4
    for b64 in images:
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    md = (out / "report.md").read_text()
    assert "| retrain" in md and "Avg.Gap" in md
    (out / "report.html").unlink()
    from classunlearn.cli import main

    assert main(["report", "--out", str(out)]) == 0
    assert len(re.findall(r"data:image/png", (out / "report.html").read_text())) == len(images)


def _figures(html: str) -> dict[str, str]:
    return dict((alt, b64) for b64, alt in
                re.findall(r"src='data:image/png;base64,([^']+)' alt=\"([^\"]+)\"", html))


def test_process_executor_gives_the_same_table_and_figures(first_run, tmp_path):
    """Two worker processes (which also draw the report's figures) against the local run:
    the same table, and the same PNG bytes for every figure that plots no run time."""
    out, _, table = first_run
    result = run_bench(tiny(tmp_path / "p", executor="process", workers=2),
                       log=lambda _: None)
    assert canon(result.summary["summary"]) == table
    local = _figures((out / "report.html").read_text())
    workers = _figures((tmp_path / "p" / "report.html").read_text())
    assert list(local) == list(workers) and len(local) == 6
    timed = [alt for alt in local if alt.startswith("Cost and privacy")]
    assert len(timed) == 1
    assert {a: b for a, b in local.items() if a not in timed} == \
        {a: b for a, b in workers.items() if a not in timed}


def test_killed_bench_resumes_to_the_same_table(first_run, tmp_path):
    """SIGKILL a bench after a few units, rerun it: same final table, finished units kept."""
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "classunlearn", "bench", "--dataset", "digits",
            "--forget-class", "3", "--methods", ",".join(METHODS), "--seeds", "1",
            "--shadows", "8", "--references", "2", "--epochs", "4", "--executor", "local",
            "--out", str(out)]
    env = {**os.environ, "CLASSUNLEARN_PROGRESS": "0"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "artifacts").glob("*.json"))) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list((out / "artifacts").glob("*.json")))
    assert 0 < finished < 13
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    m = re.search(r"(\d+) units computed, (\d+) reused", res.stdout)
    assert m and int(m.group(1)) + int(m.group(2)) == 13 and int(m.group(2)) >= finished - 1
    assert summary_of(out) == first_run[2]


@pytest.mark.slow
def test_ray_executor_gives_the_same_table(first_run, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray

    ray_tmp = f"/tmp/cu-ray-{os.getpid()}"
    monkeypatch.setenv("CLASSUNLEARN_RAY_TMPDIR", ray_tmp)
    out = tmp_path / "ray"
    try:
        result = run_bench(tiny(out, executor="ray", workers=2), log=lambda _: None)
    finally:
        ray.shutdown()
        subprocess.run(["rm", "-rf", ray_tmp], check=False)
    assert result.computed == 13
    assert summary_of(out) == first_run[2]
