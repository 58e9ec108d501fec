"""The bench's unlearn stage on U-LiRA shadows: stacked method runs against the loop, in ONE run.

    python benchmarks/unlearn_stacked.py            # digits and mnist-5k MLPs, N = 16
    python benchmarks/unlearn_stacked.py --runs digits:cnn   # other dataset:model pairs
    python benchmarks/unlearn_stacked.py --quick    # a tiny size, seconds (smoke test)

Each of N shadow originals (trained for one epoch on a balanced half, as the bench's
``unit_shadows`` draws them) is unlearned by each method on the forget and retain samples
of its own half with its own seed, as ``bench.units.unit_replay`` does: once one model at a
time (``Method.unlearn_many(stacked=False)``, the loop) and once as stacked ensembles
(``stacked=True``). Both give the same models to float rounding (tests/test_stacked_methods.py),
so the ratio is pure speed. Methods run their per-dataset defaults with ``--epochs`` epochs
(the ratio barely depends on it). Loop and stacked alternate within each repeat; the table
shows the median over repeats of the wall-clock and CPU-time ratios, summed over the methods.

Then the peak memory (VmHWM, as benchmarks/shadows.py reads it) of training N shadows and of
one stacked method run, unchunked and ``chunk=4``, against the loop. The last line is
``speedup=X``: the mnist-5k MLP's wall-clock ratio (digits under --quick). No timing is
asserted anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from functools import partial

import torch

from classunlearn.data import ForgetSplit, load_dataset
from classunlearn.methods import METHODS, UnlearnData, default_params
from classunlearn.shadows import balanced_halves, train_ensemble
from classunlearn.train import Recipe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shadows import PeakMemory  # noqa: E402  (benchmarks/shadows.py)


def shadow_setup(dataset: str, model: str, n: int, quick: bool):
    """N shadow originals (one epoch each on its half) and each one's UnlearnData."""
    ds = load_dataset(dataset)
    if quick:
        keep = slice(0, 240)
        ds = type(ds)(ds.name, ds.x_train[keep], ds.y_train[keep], ds.x_test, ds.y_test,
                      ds.class_names)
    split = ForgetSplit(ds, (3,))
    masks = balanced_halves(len(ds.y_train), n, seed=0)
    models = train_ensemble(model, ds.input_shape, ds.num_classes, ds.x_train, ds.y_train,
                            masks, Recipe(epochs=1, batch_size=64, lr=0.05), list(range(n)))
    forget = torch.isin(ds.y_train, torch.tensor(split.forget_classes))
    datas = []
    for row in masks:
        f, r = row & forget, row & ~forget
        datas.append(UnlearnData(ds.x_train[f], ds.y_train[f], ds.x_train[r], ds.y_train[r],
                                 split.forget_classes, ds.num_classes))
    return ds, masks, models, datas


def method_params(name: str, dataset: str, epochs: int):
    params = default_params(METHODS[name], dataset)
    return dataclasses.replace(params, epochs=epochs)


def timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def speed(dataset: str, model: str, n: int, methods: list[str], epochs: int, repeats: int,
          quick: bool) -> float:
    """Print one row per method and the total; return the median wall-clock ratio."""
    _, _, models, datas = shadow_setup(dataset, model, n, quick)
    seeds = [2000 * 1000 + i for i in range(n)]
    walls: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    cpus: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    for _ in range(repeats):
        for name in methods:
            method, params = METHODS[name](), method_params(name, dataset, epochs)
            pair_w, pair_c = [], []
            for stacked in (False, True):
                w, c = timed(partial(method.unlearn_many, models, datas, params, seeds,
                                     stacked=stacked))
                pair_w.append(w)
                pair_c.append(c)
            walls[name].append(tuple(pair_w))
            cpus[name].append(tuple(pair_c))
    for name in methods:
        loop = statistics.median(w[0] for w in walls[name])
        stk = statistics.median(w[1] for w in walls[name])
        cpu = statistics.median(c[0] / c[1] for c in cpus[name])
        print(f"| {dataset} | {model} | {n} | {name} | {loop:.2f} | {stk:.2f} | "
              f"{statistics.median(w[0] / w[1] for w in walls[name]):.2f}x | {cpu:.2f}x |")
    totals = [(sum(walls[m][r][0] for m in methods), sum(walls[m][r][1] for m in methods))
              for r in range(repeats)]
    ctotals = [(sum(cpus[m][r][0] for m in methods), sum(cpus[m][r][1] for m in methods))
               for r in range(repeats)]
    ratio = statistics.median(lo / st for lo, st in totals)
    print(f"| {dataset} | {model} | {n} | **all** | {statistics.median(t[0] for t in totals):.2f}"
          f" | {statistics.median(t[1] for t in totals):.2f} | **{ratio:.2f}x** | "
          f"{statistics.median(lo / st for lo, st in ctotals):.2f}x |", flush=True)
    return ratio


def memory(dataset: str, n: int, method: str, epochs: int, quick: bool) -> None:
    """Peak MiB added by shadow training and by one method's run: loop, stacked, chunk=4."""
    ds, masks, models, datas = shadow_setup(dataset, "mlp", n, quick)
    recipe = Recipe(epochs=1, batch_size=64, lr=0.05)
    params = method_params(method, dataset, epochs)
    mem = PeakMemory()
    print(f"\npeak memory added ({mem.method}), {dataset} mlp, N = {n}:\n")
    print("| stage | loop MiB | stacked MiB | chunk=4 MiB | chunk=4 / stacked | "
          "chunk=4 / loop |")
    print("|---|---|---|---|---|---|")
    for stage in ("shadow training", f"unlearn ({method})"):
        peaks = []
        for stacked, chunk in ((False, None), (True, n), (True, 4)):
            with mem:
                if stage == "shadow training":
                    train_ensemble("mlp", ds.input_shape, ds.num_classes, ds.x_train,
                                   ds.y_train, masks, recipe, list(range(n)),
                                   stacked=stacked, chunk=chunk)
                else:
                    METHODS[method]().unlearn_many(models, datas, params, list(range(n)),
                                                   stacked=stacked, chunk=chunk)
            peaks.append(mem.mib)
        loop, whole, part = peaks
        print(f"| {stage} | {loop:.1f} | {whole:.1f} | {part:.1f} | "
              f"{part / max(whole, 1e-9):.2f} | {part / max(loop, 1e-9):.2f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny size (seconds)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default 1, as the bench executors run)")
    ap.add_argument("--n", type=int, default=16, help="shadow models per study")
    ap.add_argument("--methods", default="ft,rl,salun,trw", help="comma-separated")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of every method")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", default="digits:mlp,mnist-5k:mlp",
                    help="dataset:model pairs, comma-separated")
    args = ap.parse_args(argv)
    os.environ.setdefault("CLASSUNLEARN_PROGRESS", "0")
    torch.set_num_threads(args.threads)
    runs = [tuple(r.split(":")) for r in args.runs.split(",")]
    n, repeats = args.n, args.repeats
    if args.quick:
        runs, n, repeats, args.epochs = [("digits", "mlp")], 4, 1, 1
    methods = args.methods.split(",")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, torch.set_num_threads({torch.get_num_threads()}), "
          f"{os.cpu_count()} CPUs, load average {load0:.2f} at start")
    print(f"unlearn stage on N = {n} shadow originals, methods {', '.join(methods)} at "
          f"{args.epochs} epochs (per-dataset defaults otherwise), median of {repeats}\n")
    print("| dataset | model | N | method | loop s | stacked s | speed-up (wall) | "
          "speed-up (CPU time) |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = {run: speed(*run, n, methods, args.epochs, repeats, args.quick) for run in runs}
    memory(runs[0][0] if args.quick else "mnist-5k", n, methods[0], args.epochs, args.quick)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load1:.2f} at the end")
    key = ("digits", "mlp") if args.quick else ("mnist-5k", "mlp")
    print(f"speedup={ratios.get(key, next(iter(ratios.values()))):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
