"""Run time of every unlearning method as a fraction of retraining, measured in one run.

    python benchmarks/methods_ratio.py [--dataset digits] [--repeats 3] [--forget-class 3]

The methods are timed interleaved (round-robin, median of the repeats) so that machine
noise hits all of them alike; the table is a ratio to `retrain` on the same data, model and
device. Nothing is asserted: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from classunlearn.bench.runner import ALL_METHODS
from classunlearn.data import DATASETS, ForgetSplit, load_dataset
from classunlearn.methods import UnlearnData, make_params
from classunlearn.models import build_model
from classunlearn.table import markdown_table
from classunlearn.train import default_recipe, train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--forget-class", default="3")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(ALL_METHODS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    split = ForgetSplit.make(ds, [args.forget_class])
    data = UnlearnData.from_split(split)
    model_name = DATASETS[args.dataset].default_model
    original = train_model(build_model(model_name, ds.input_shape, ds.num_classes, seed=0),
                           ds.x_train, ds.y_train, default_recipe(args.dataset), seed=0)
    refs = []
    xr, yr = split.part("train_retain")
    for s in (1, 2):
        refs.append(train_model(build_model(model_name, ds.input_shape, ds.num_classes, seed=s),
                                xr, yr, default_recipe(args.dataset), seed=s))
    methods = [m for m in args.methods.split(",") if m]
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.repeats):
        for spec in methods:
            cls, params = make_params(spec, args.dataset, recipe=default_recipe(args.dataset))
            start = time.perf_counter()
            cls().unlearn(original, data, params, seed=0, references=refs)
            times[spec].append(time.perf_counter() - start)
    med = {m: statistics.median(t) for m, t in times.items()}
    base = med.get("retrain")
    rows = [[m, med[m], (med[m] / base) if base else float("nan")]
            for m in sorted(methods, key=med.get)]
    print(f"{args.dataset} / {model_name}, forget class {args.forget_class}, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved runs")
    print(markdown_table(["method", "time s", "fraction of retrain"], rows, digits=3))


if __name__ == "__main__":
    main()
