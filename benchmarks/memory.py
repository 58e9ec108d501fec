"""Peak resident memory per bench worker for a CIFAR-10-sized study (issue 11, item 4).

Writes a synthetic CIFAR-10 in the python-batch format (random uint8 images, 50,000 train +
10,000 test, 3 x 32 x 32) to a temporary folder, runs one small study on it (`--workers`
process workers, a small model, 1 epoch, methods retrain and original, no shadows, one
reference) and reports, for the driver and each worker process, the peak resident set
(VmHWM) and the peak of its private (anonymous) part, RssAnon: memory-mapped file pages
count in VmHWM but are one copy in the OS page cache, shared by every worker.

``--compare OLD_SRC`` runs the same study twice in fresh interpreters, first with the
package at OLD_SRC (e.g. the ``src`` of a worktree checked out at the commit before
uint8 storage) then with this checkout's, and prints both with their ratios:

    git worktree add /tmp/before <old commit>
    python benchmarks/memory.py --compare /tmp/before/src

Without ``--compare`` it measures whatever ``classunlearn`` imports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write_cifar10(root: Path, n_train: int, n_test: int) -> Path:
    """A cifar-10-batches-py folder of random images, as the real one is laid out."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per = n_train // 5
    for name, n in [(f"data_batch_{i}", per) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": (np.arange(n) % 10).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return root


def _status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile of a process, in kB (empty once it has gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    """The executor's worker processes (children of `pid`, without multiprocessing's
    resource tracker)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    out = []
    for k in kids:
        try:
            cmd = Path(f"/proc/{k}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmd:
            out.append(k)
    return out


class Monitor:
    """Polls this process's child processes (the executor's workers) for their peaks."""

    def __init__(self, every: float = 0.05) -> None:
        self.peaks: dict[int, dict[str, int]] = {}
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for pid in _children(me):
                s = _status(pid)
                if not s:
                    continue
                peak = self.peaks.setdefault(pid, {"VmHWM": 0, "RssAnon": 0})
                peak["VmHWM"] = max(peak["VmHWM"], s.get("VmHWM", 0))
                peak["RssAnon"] = max(peak["RssAnon"], s.get("RssAnon", 0))
            time.sleep(self.every)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(args: argparse.Namespace) -> dict:
    """Run the study here (the package this interpreter imports) and return the peaks."""
    import classunlearn
    from classunlearn.bench.runner import BenchConfig, run_bench

    with tempfile.TemporaryDirectory(prefix="cu-memory-") as tmp:
        data = write_cifar10(Path(tmp) / "data", args.n_train, args.n_test)
        cfg = BenchConfig(dataset="cifar10", data_dir=str(data), model=args.model,
                          model_kwargs=json.loads(args.model_kwargs),
                          forget_classes=[["3"]], methods=["retrain", "original"], seeds=1,
                          shadows=0, references=1, executor="process", workers=args.workers,
                          epochs=1, out=str(Path(tmp) / "out"))
        start = time.perf_counter()
        with Monitor() as mon:
            run_bench(cfg, log=lambda _: None)
        wall = time.perf_counter() - start
        cache = sorted(p.name for p in (Path(tmp) / "out").glob("data/*/*"))
    workers = [{"pid": pid, "peak_rss_mb": p["VmHWM"] / 1024, "peak_anon_mb": p["RssAnon"] / 1024}
               for pid, p in sorted(mon.peaks.items()) if p["VmHWM"]]
    driver = _status(os.getpid())
    return {"package": str(Path(classunlearn.__file__).parent), "wall_s": wall,
            "driver_peak_rss_mb": driver.get("VmHWM", 0) / 1024, "workers": workers,
            "shared_files": cache}


def _table(label: str, r: dict) -> list[str]:
    shared = ", ".join(r["shared_files"]) or "none"
    rows = [f"{label}: {r['package']}  (wall {r['wall_s']:.0f} s; driver peak RSS "
            f"{r['driver_peak_rss_mb']:.0f} MB; shared files: {shared})",
            "| worker | peak RSS (MB) | peak private RssAnon (MB) |", "|---|---|---|"]
    rows += [f"| {i} | {w['peak_rss_mb']:.0f} | {w['peak_anon_mb']:.0f} |"
             for i, w in enumerate(r["workers"])]
    return rows


def _max(r: dict, key: str) -> float:
    return max((w[key] for w in r["workers"]), default=float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--model-kwargs", default='{"hidden": 32, "depth": 1}')
    ap.add_argument("--compare", metavar="OLD_SRC", help="the src folder of the old package")
    ap.add_argument("--json", action="store_true", help="print one JSON result (internal)")
    args = ap.parse_args()
    if not args.compare:
        result = measure(args)
        if args.json:
            print("RESULT " + json.dumps(result))
        else:
            print("\n".join(_table("this package", result)))
        return
    argv = [a for a in sys.argv[1:]]
    i = argv.index("--compare")
    del argv[i:i + 2]
    results = []
    for src in (args.compare, str(HERE.parent / "src")):
        env = {**os.environ, "PYTHONPATH": src, "CLASSUNLEARN_PROGRESS": "0"}
        out = subprocess.run([sys.executable, __file__, *argv, "--json"], env=env, check=True,
                             capture_output=True, text=True).stdout
        results.append(json.loads(out.split("RESULT ", 1)[1]))
    before, after = results
    print(f"CIFAR-10-sized study: {args.n_train} + {args.n_test} images 3x32x32, "
          f"{args.workers} process workers, model {args.model} {args.model_kwargs}, 1 epoch, "
          "methods retrain,original, shadows 0, references 1\n")
    print("\n".join(_table("before", before)) + "\n")
    print("\n".join(_table("after", after)) + "\n")
    for key, what in (("peak_rss_mb", "peak RSS"), ("peak_anon_mb", "peak private memory")):
        b, a = _max(before, key), _max(after, key)
        print(f"largest worker {what}: before {b:.0f} MB, after {a:.0f} MB "
              f"(after / before = {a / b:.2f})")
    b, a = before["driver_peak_rss_mb"], after["driver_peak_rss_mb"]
    print(f"driver peak RSS: before {b:.0f} MB, after {a:.0f} MB (after / before = {a / b:.2f})")


if __name__ == "__main__":
    main()
