"""Shadow models per minute: the stacked ensemble against the plain loop, in ONE run.

    python benchmarks/shadows.py               # digits CNN and MLP, N = 8, 16, 32
    python benchmarks/shadows.py --quick       # a tiny size, seconds (smoke test)
    python benchmarks/shadows.py --threads 2   # torch's default on this 2-core machine

Both paths train the same models on the same batches (classunlearn.shadows), so the
ratio is pure speed; ``--vmap`` adds the naive torch.func.vmap ensemble for comparison.
Columns: models per minute of wall-clock time for each path, their ratio, the ratio of
CPU (process) time, steadier when other jobs share the cores, and the peak memory each
path added. Peak memory: VmHWM (peak resident set) from /proc/self/status, reset before
each run by writing 5 to /proc/self/clear_refs, minus the resident set at the start of
that run; where /proc is unavailable, the increase of resource.getrusage maxrss (which
only sees new highs). No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import re
import resource
import sys
import time
from pathlib import Path

import torch

from classunlearn.data import load_dataset
from classunlearn.models import build_model
from classunlearn.shadows import _subsets, _train_stacked, balanced_halves, train_ensemble
from classunlearn.train import Recipe


class PeakMemory:
    """Peak resident memory added by a block, in MiB (see the module docstring)."""

    status = Path("/proc/self/status")

    def __init__(self) -> None:
        self.method = "VmHWM reset via /proc/self/clear_refs"
        try:
            self._reset()
            self._read("VmHWM")
        except OSError:
            self.method = "ru_maxrss increase (new highs only)"

    def _read(self, key: str) -> int:
        m = re.search(rf"{key}:\s+(\d+) kB", self.status.read_text())
        if m is None:
            raise OSError(key)
        return int(m.group(1))

    def _reset(self) -> None:
        Path("/proc/self/clear_refs").write_text("5")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        with contextlib.suppress(OSError):  # hand freed heap back: a true baseline
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        if self.method.startswith("VmHWM"):
            self._reset()
            self.base = self._read("VmRSS")
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method.startswith("VmHWM"):
            peak = self._read("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.mib = max(peak - self.base, 0) / 1024


def run(path: str, model: str, data, masks: torch.Tensor, recipe: Recipe, n: int,
        mem: PeakMemory) -> tuple[float, float, float]:
    """(wall s, cpu s, peak MiB) of training n shadow models along `path`."""
    with mem:
        t0, c0 = time.perf_counter(), time.process_time()
        if path == "vmap":  # the naive ensemble: torch.func.vmap over functional_call
            models = [build_model(model, data.input_shape, data.num_classes, seed=s)
                      for s in range(n)]
            _train_stacked(models, data.input_shape, data.x_train, data.y_train,
                           _subsets(masks), recipe, list(range(n)), torch.device("cpu"), "vmap",
                           "vmap")
        else:
            train_ensemble(model, data.input_shape, data.num_classes, data.x_train,
                           data.y_train, masks, recipe, seeds=list(range(n)),
                           stacked=path == "stacked")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, mem.mib


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny size (seconds)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default 1: one worker per core, as the "
                         "bench executors run)")
    ap.add_argument("--epochs", type=int, default=10,
                    help="epochs per shadow model (models/min scale as 1/epochs; the "
                         "ratio does not depend on it)")
    ap.add_argument("--ns", default="8,16,32", help="ensemble sizes, comma-separated")
    ap.add_argument("--models", default="cnn,mlp", help="registry models, comma-separated")
    ap.add_argument("--vmap", action="store_true",
                    help="add a column for the naive ensemble (torch.func.vmap)")
    args = ap.parse_args(argv)
    os.environ.setdefault("CLASSUNLEARN_PROGRESS", "0")
    torch.set_num_threads(args.threads)

    data = load_dataset("digits")
    ns = [int(v) for v in args.ns.split(",")]
    recipe = Recipe(epochs=args.epochs, batch_size=64, lr=0.05)
    if args.quick:
        ns, recipe = [2, 4], Recipe(epochs=1, batch_size=64, lr=0.05)
        keep = slice(0, 256)
        data = type(data)(data.name, data.x_train[keep], data.y_train[keep], data.x_test,
                          data.y_test, data.class_names)
    models = args.models.split(",")
    mem = PeakMemory()

    # Warm-up (the first optimizer of a process costs 1-2 s of lazy imports).
    warm_masks = balanced_halves(64, 2, seed=0)
    tiny = type(data)(data.name, data.x_train[:64], data.y_train[:64], data.x_test,
                      data.y_test, data.class_names)
    for path in ("loop", "stacked"):
        run(path, models[0], tiny, warm_masks, Recipe(epochs=1, batch_size=32), 2, mem)

    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, torch.set_num_threads({torch.get_num_threads()}), "
          f"{os.cpu_count()} CPUs, load average {load0:.2f} at start")
    print(f"digits: {len(data.x_train)} training examples, each model trains on a balanced "
          f"half; recipe: {recipe.epochs} epochs, batch {recipe.batch_size}, SGD lr "
          f"{recipe.lr} momentum {recipe.momentum}, {recipe.schedule}")
    print(f"peak memory: {mem.method}, MiB added by each run\n")
    head = (f"{'model':<5} {'N':>3} {'loop models/min':>16} {'stacked models/min':>19} "
            f"{'ratio':>6} {'cpu ratio':>9} {'loop MiB':>9} {'stacked MiB':>12}")
    if args.vmap:
        head += f" {'vmap models/min':>16} {'vmap ratio':>10}"
    print(head)
    print("-" * len(head))
    for model in models:
        for n in ns:
            masks = balanced_halves(len(data.x_train), n, seed=0)
            lw, lc, lm = run("loop", model, data, masks, recipe, n, mem)
            sw, sc, sm = run("stacked", model, data, masks, recipe, n, mem)
            row = (f"{model:<5} {n:>3} {n / lw * 60:>16.1f} {n / sw * 60:>19.1f} "
                   f"{lw / sw:>5.2f}x {lc / sc:>8.2f}x {lm:>9.1f} {sm:>12.1f}")
            if args.vmap:
                vw, _, _ = run("vmap", model, data, masks, recipe, n, mem)
                row += f" {n / vw * 60:>16.1f} {lw / vw:>9.2f}x"
            print(row, flush=True)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load1:.2f} at the end (above {os.cpu_count()}: other jobs shared "
          "the cores; the cpu ratio is the steadier figure then)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
