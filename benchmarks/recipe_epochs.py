"""Epochs to accuracy of the default recipes: how few epochs keep the test accuracy.

    python benchmarks/recipe_epochs.py                       # embedded datasets, 3 seeds
    python benchmarks/recipe_epochs.py --runs mnist-5k:cnn --epochs 5,10,20
    python benchmarks/recipe_epochs.py --quick               # tiny, for the test suite

Every study trains dozens of models with its recipe (originals, references, 2 x 16 shadows
per seed, the retrain row on each shadow), so a recipe that reaches its accuracy in fewer
epochs makes the whole study cheaper. For each run (dataset:model) and each epoch count it
trains `--seeds` models from scratch on the whole training split with the dataset's default
recipe, only `epochs` changed (the schedule is stretched over the new length, as a real
recipe's is), and prints the test accuracy (mean and sd over seeds) and the time per model.
``cheapest`` is the fewest epochs whose mean accuracy is within --tolerance points of the
default recipe's (or of --reference's epochs, the same recipe otherwise). Nothing is
asserted: the choice is for a person to make (docs/performance.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from classunlearn.data import load_dataset
from classunlearn.models import build_model
from classunlearn.table import markdown_table
from classunlearn.train import accuracy, default_recipe, train_model

RUNS = ["digits:mlp", "mnist-5k:mlp", "mnist1d:cnn"]


def epochs_grid(default: int) -> list[int]:
    """A quarter, a third, half, two thirds and all of the default's epochs."""
    return sorted({max(1, round(default * f)) for f in (0.25, 1 / 3, 0.5, 2 / 3, 1.0)})


def measure(dataset: str, model: str, epochs: int, seeds: int) -> tuple[list[float], float]:
    """Test accuracies (one per seed) and the median seconds per model."""
    ds = load_dataset(dataset)
    recipe = dataclasses.replace(default_recipe(dataset), epochs=epochs)
    accs, times = [], []
    for seed in range(seeds):
        net = build_model(model, ds.input_shape, ds.num_classes, seed=seed)
        start = time.perf_counter()
        train_model(net, ds.x_train, ds.y_train, recipe, seed=seed)
        times.append(time.perf_counter() - start)
        accs.append(accuracy(net, ds.x_test, ds.y_test))  # percent
    return accs, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=",".join(RUNS), help="dataset:model, comma-separated")
    ap.add_argument("--epochs", default=None,
                    help="epoch counts (default: 1/4, 1/3, 1/2, 2/3 and all of the recipe's)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=0.5, help="points of test accuracy")
    ap.add_argument("--reference", default="",
                    help="dataset=epochs to compare against (default: the dataset's recipe), "
                    "e.g. digits=30,mnist-5k=20,mnist1d=40 for the recipes before the change")
    ap.add_argument("--quick", action="store_true", help="digits, 2 epoch counts, 1 seed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = [r.split(":") for r in args.runs.split(",")]
    if args.quick:
        runs, args.seeds, args.epochs = [["digits", "mlp"]], 1, "2,4"
    head = ["dataset", "model", "epochs", "test acc %", "sd", "s per model", "vs reference", ""]
    table = []
    reference = {k: int(v) for k, v in (r.split("=") for r in args.reference.split(",") if r)}
    for dataset, model in runs:
        default = reference.get(dataset, default_recipe(dataset).epochs)
        grid = ([int(e) for e in args.epochs.split(",")] if args.epochs
                else epochs_grid(default))
        grid = sorted(set(grid) | ({default} if not args.quick else set()))
        results = {}
        for e in grid:
            accs, secs = measure(dataset, model, e, args.seeds)
            results[e] = (statistics.mean(accs), statistics.pstdev(accs), secs)
            print(f"{dataset}:{model} epochs {e:3d}: test acc {results[e][0]:.2f} "
                  f"± {results[e][1]:.2f}, {secs:.1f} s per model", flush=True)
        ref = results.get(default, results[max(grid)])[0]
        ok = [e for e in grid if results[e][0] >= ref - args.tolerance]
        cheapest = min(ok)
        for e in grid:
            acc, sd, secs = results[e]
            table.append([dataset, model, e, acc, sd, secs, f"{acc - ref:+.2f}",
                          ("reference " if e == default else "")
                          + ("cheapest" if e == cheapest else "")])
    print()
    print(markdown_table(head, table, digits=2))


if __name__ == "__main__":
    main()
