"""Small, documented hyperparameter search for the baseline unlearning methods.

For each embedded dataset (default model and training recipe: digits mlp, mnist-5k mlp,
mnist1d cnn), this trains one original model per seed on the full train split, then runs
every method of GRIDS over its grid of 1-2 key hyperparameters (the other fields keep the
paper defaults of the method's ``Params``, not its current ``dataset_defaults``), for
every (seed, forget class) pair, and measures on the TRAIN split only:

* Acc_r: accuracy on D_r (retain-train), and its drop from the original model's;
* Acc_f: accuracy on D_f (forget-train).

The test split is never looked at. Selection, per dataset and method:

1. feasible settings: mean Acc_r drop <= --max-drop points (default 2);
2. among them, the smallest forget gap: Acc_f for methods whose paper goal is zero forget
   accuracy; |Acc_f - Acc_f(retrained model)| for the methods whose goal is to imitate the
   retrained model (TARGET_RETRAIN, the TRW-2R reading here);
3. settings within --tie points (default 1) of that gap count as tied. If the paper's
   default (the method's ``Params()`` values, always a grid point) is among them, it is
   kept: docs/readings.md section 6 asks for the paper's defaults, tuned only where they
   fail.
   Otherwise the tied settings within 0.5 points of the best Acc_r are kept and the
   cheapest one (fewest optimiser steps, then grid order) wins.

If no setting is feasible, the one with the smallest gap + drop is printed and flagged
"NO SETTING MEETS BOTH"; a feasible choice whose forget gap is still above
--forget-tol points (default 5) is flagged "FORGET GOAL NOT REACHED". docs/methods.md
reports such cases. The chosen values are printed as a dict to paste into each method's
``dataset_defaults``.

    python scripts/tune_methods.py --datasets digits --seeds 2 --forget-classes 1,3,7
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:  # run from a checkout without an editable install
    sys.path.insert(0, str(SRC))

from classunlearn.data import DATASETS, ForgetSplit, load_dataset  # noqa: E402
from classunlearn.errors import TrainingDiverged  # noqa: E402
from classunlearn.methods import METHODS, UnlearnData  # noqa: E402
from classunlearn.models import build_model  # noqa: E402
from classunlearn.train import accuracy, default_recipe, train_model  # noqa: E402

# The grids: 1-2 key hyperparameters per method, ordered cheap / paper-like first.
GRIDS: dict[str, dict[str, list]] = {
    "ft": {"lr": [0.01, 0.03, 0.1, 0.3], "epochs": [5, 10, 20, 40]},
    "rl": {"lr": [0.001, 0.003, 0.01, 0.03], "epochs": [2, 5, 10]},
    "ga": {"lr": [1e-5, 1e-4, 1e-3, 1e-2, 2e-2, 3e-2, 5e-2], "epochs": [1, 2, 3, 5, 8]},
    "bs": {"lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "epochs": [5, 10]},
    "be": {"lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "epochs": [5, 10]},
    "l1-sparse": {"lr": [0.01, 0.03, 0.1], "gamma": [5e-4, 2e-3, 5e-3]},
    "salun": {"lr": [0.001, 0.003, 0.01, 0.03], "epochs": [2, 5, 10]},
    "scrub": {"lr": [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2], "msteps": [1, 2, 5]},
    "ssd": {"alpha": [1.0, 3.0, 10.0, 15.0, 20.0, 30.0], "lam": [0.1, 1.0, 3.0]},
    "unsir": {"lr": [0.0005, 0.001, 0.002, 0.005, 0.02],
              "repair_lr": [0.0003, 0.001, 0.003, 0.01]},
    "trw-2r-budget": {"lr": [0.003, 0.01, 0.03], "epochs": [1, 2, 3]},
}
TARGET_RETRAIN = {"trw-2r-budget"}  # goal: imitate the retrained model, not Acc_f = 0


@dataclasses.dataclass
class Row:
    setting: dict
    acc_r: float
    acc_f: float
    drop_r: float
    gap_f: float
    seconds: float
    steps: float
    diverged: int


def _mean(values: list[float]) -> float:
    good = [v for v in values if not math.isnan(v)]
    return statistics.fmean(good) if good else float("nan")


def prepare(dataset: str, seeds: list[int], classes: list[int], need_retrain: bool):
    """Originals per seed and, per (seed, class), the split data and reference numbers."""
    d = load_dataset(dataset)
    model_name = DATASETS[dataset].default_model
    recipe = default_recipe(dataset)
    cases = []
    for seed in seeds:
        original = build_model(model_name, d.input_shape, d.num_classes, seed=seed)
        train_model(original, d.x_train, d.y_train, recipe, seed=seed, desc="original")
        for c in classes:
            split = ForgetSplit.make(d, [c])
            data = UnlearnData.from_split(split)
            xr, yr = split.part("train_retain")
            xf, yf = split.part("train_forget")
            case = {"seed": seed, "cls": c, "model": original, "data": data,
                    "retain": (xr, yr), "forget": (xf, yf),
                    "orig_acc_r": accuracy(original, xr, yr),
                    "orig_acc_f": accuracy(original, xf, yf), "retrain_acc_f": 0.0}
            if need_retrain:
                ret, _ = METHODS["retrain"]().unlearn(
                    original, data, METHODS["retrain"].Params(**recipe.to_dict()), seed=seed)
                case["retrain_acc_f"] = accuracy(ret, xf, yf)
            cases.append(case)
    return cases


def evaluate(name: str, setting: dict, cases: list[dict]) -> Row:
    cls = METHODS[name]
    params = dataclasses.replace(cls.Params(), **setting)
    acc_r, acc_f, drops, gaps, secs, steps, diverged = [], [], [], [], [], [], 0
    for case in cases:
        start = time.perf_counter()
        try:
            out, record = cls().unlearn(case["model"], case["data"], params, seed=case["seed"])
        except TrainingDiverged:
            diverged += 1
            continue
        secs.append(time.perf_counter() - start)
        steps.append(record.steps)
        a_r, a_f = accuracy(out, *case["retain"]), accuracy(out, *case["forget"])
        acc_r.append(a_r)
        acc_f.append(a_f)
        drops.append(case["orig_acc_r"] - a_r)
        gaps.append(abs(a_f - case["retrain_acc_f"]) if name in TARGET_RETRAIN else a_f)
    if diverged == len(cases):
        nan = float("nan")
        return Row(setting, nan, nan, nan, nan, nan, nan, diverged)
    return Row(setting, _mean(acc_r), _mean(acc_f), _mean(drops), _mean(gaps), _mean(secs),
               _mean(steps), diverged)


def choose(rows: list[Row], default: dict, max_drop: float, tie: float) -> tuple[Row, bool]:
    """The selection rule of the module docstring; returns (row, feasible)."""
    ok = [r for r in rows if not r.diverged and r.drop_r <= max_drop]
    if not ok:
        valid = [r for r in rows if not math.isnan(r.gap_f)]
        return min(valid, key=lambda r: r.gap_f + max(r.drop_r, 0.0)), False
    best_gap = min(r.gap_f for r in ok)
    tied = [r for r in ok if r.gap_f <= best_gap + tie]
    for r in tied:
        if r.setting == default:
            return r, True
    best_r = max(r.acc_r for r in tied)
    near = [r for r in tied if r.acc_r >= best_r - 0.5]
    return min(near, key=lambda r: r.steps), True  # min() keeps the first of equals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="digits", help="comma list (digits,mnist-5k,mnist1d)")
    ap.add_argument("--methods", default=",".join(GRIDS), help="comma list of methods to tune")
    ap.add_argument("--seeds", type=int, default=2, help="original models (seeds 0..n-1)")
    ap.add_argument("--forget-classes", default="1,3,7", help="one forget class per case")
    ap.add_argument("--max-drop", type=float, default=2.0, help="allowed Acc_r drop (points)")
    ap.add_argument("--tie", type=float, default=1.0, help="forget-gap tolerance (points)")
    ap.add_argument("--forget-tol", type=float, default=5.0,
                    help="flag a choice whose forget gap stays above this (points)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write all grid results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in GRIDS]
    if unknown:
        ap.error(f"no grid for {unknown}; tunable: {', '.join(GRIDS)}")
    classes = [int(c) for c in args.forget_classes.split(",")]
    seeds = list(range(args.seeds))
    chosen: dict[str, dict[str, dict]] = {}
    dump: dict = {}
    for dataset in [s.strip() for s in args.datasets.split(",") if s.strip()]:
        t0 = time.perf_counter()
        cases = prepare(dataset, seeds, classes, any(m in TARGET_RETRAIN for m in methods))
        orig_r = _mean([c["orig_acc_r"] for c in cases])
        orig_f = _mean([c["orig_acc_f"] for c in cases])
        print(f"\n## {dataset} ({DATASETS[dataset].default_model}); seeds {seeds}, forget "
              f"classes {classes}; original Acc_r {orig_r:.2f}, Acc_f {orig_f:.2f} "
              f"(train split only; {time.perf_counter() - t0:.0f}s to prepare)", flush=True)
        for name in methods:
            keys = list(GRIDS[name])
            rows = [evaluate(name, dict(zip(keys, values, strict=True)), cases)
                    for values in itertools.product(*(GRIDS[name][k] for k in keys))]
            default = {k: getattr(METHODS[name].Params(), k) for k in keys}
            best, feasible = choose(rows, default, args.max_drop, args.tie)
            goal = "|Acc_f - retrain|" if name in TARGET_RETRAIN else "Acc_f"
            print(f"\n### {name} (goal: {goal} -> 0, Acc_r drop <= {args.max_drop})")
            print(f"| {' | '.join(keys)} | Acc_r | drop | Acc_f | gap | s/run | steps | "
                  "diverged |")
            print("|" + "---|" * (len(keys) + 7))
            for r in rows:
                mark = " **<-**" if r is best else (" (paper)" if r.setting == default else "")
                print(f"| {' | '.join(str(r.setting[k]) for k in keys)} | {r.acc_r:.2f} | "
                      f"{r.drop_r:.2f} | {r.acc_f:.2f} | {r.gap_f:.2f} | {r.seconds:.2f} | "
                      f"{r.steps:.0f} | {r.diverged}{mark} |")
            verdict = "" if feasible else "  NO SETTING MEETS BOTH"
            if feasible and best.gap_f > args.forget_tol:
                verdict = "  FORGET GOAL NOT REACHED"
            print(f"chosen: {best.setting}{verdict}", flush=True)
            # epochs are stored as a share of the recipe they were tuned on (docs/methods.md)
            paste = dict(best.setting)
            shares = any("epoch_share" in d
                         for d in getattr(METHODS[name], "dataset_defaults", {}).values())
            if "epochs" in paste and shares:
                paste["epoch_share"] = f"{paste.pop('epochs')} / {default_recipe(dataset).epochs}"
            chosen.setdefault(name, {})[dataset] = paste
            dump.setdefault(dataset, {})[name] = {
                "rows": [dataclasses.asdict(r) for r in rows],
                "chosen": best.setting, "feasible": feasible}
    print("\n# dataset_defaults to paste")
    for name, per in chosen.items():
        print(f"{name}: {per}")
    if args.json:
        args.json.write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
