"""Wall time of a whole bench split by stage (train, shadows, unlearn, audit, report), so the
next bottleneck is visible. Runs the `make demo` study (or `--quick`) into a fresh folder.

    python benchmarks/bench_stages.py [--quick] [--executor process] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from classunlearn.bench.runner import BenchConfig, run_bench
from classunlearn.bench.store import Store
from classunlearn.table import markdown_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 4 methods, 4 shadows")
    ap.add_argument("--executor", default="process")
    ap.add_argument("--out")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="cu-stages-")
    cfg = BenchConfig(dataset="digits", executor=args.executor, out=out)
    if args.quick:
        cfg.seeds, cfg.shadows, cfg.references, cfg.epochs = 1, 4, 2, 4
        cfg.methods = ["retrain", "original", "trw", "ft"]
    start = time.perf_counter()
    result = run_bench(cfg, log=lambda _: None)
    total = time.perf_counter() - start
    per_kind: dict[str, float] = {}
    for kind, _label, wall in Store(out).unit_times():
        per_kind[kind] = per_kind.get(kind, 0.0) + wall
    rows = [[stage, secs, 100 * secs / total, per_kind.get(_KIND.get(stage, ""), float("nan"))]
            for stage, secs in result.stage_s.items()]
    rows.append(["total", total, 100.0, sum(per_kind.values())])
    print(f"bench on digits ({'quick' if args.quick else 'make demo settings'}), executor "
          f"{args.executor}, {result.computed} units computed; out: {out}")
    print(markdown_table(["stage", "wall s", "% of total", "sum of unit times s"], rows))


_KIND = {"train": "train", "shadows": "shadows", "unlearn": "method"}

if __name__ == "__main__":
    main()
