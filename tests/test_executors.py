"""Every executor computes the same table (README): the process pool against in-process."""

from __future__ import annotations

import json
import math

from classunlearn.bench.runner import BenchConfig, run_bench

TIMING = ("runtime_s", "runtime_ratio")  # wall times differ from run to run


def _summary(out) -> dict:
    summary = json.loads((out / "results.json").read_text())["summary"]
    return {(method, metric, stat): value
            for method, metrics in summary.items()
            for metric, stats in metrics.items() if metric not in TIMING and "wall" not in metric
            for stat, value in stats.items()}


def test_process_executor_gives_the_local_table(tmp_path):
    def config(executor: str, **kw) -> BenchConfig:
        return BenchConfig(dataset="digits", forget_classes=[["3"]],
                           methods=["retrain", "original", "rwft"], seeds=1, shadows=8,
                           references=2, epochs=2, executor=executor,
                           out=str(tmp_path / executor), **kw)

    local = run_bench(config("local"), log=lambda _: None)
    pool = run_bench(config("process", workers=2), log=lambda _: None)
    assert local.computed == pool.computed > 0 and not local.failed and not pool.failed

    a, b = _summary(tmp_path / "local"), _summary(tmp_path / "process")
    assert a.keys() == b.keys() and len(a) > 50
    differ = {k: (a[k], b[k]) for k in a
              if not (a[k] == b[k] or (isinstance(a[k], float) and isinstance(b[k], float) and
                                       (math.isclose(a[k], b[k], rel_tol=0, abs_tol=1e-9) or
                                        math.isnan(a[k]) and math.isnan(b[k]))))}
    assert not differ, differ
