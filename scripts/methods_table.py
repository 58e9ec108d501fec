"""Every registered unlearning method on one dataset and forget class: a Markdown table.

Per seed s this trains the original model (the dataset's default model and recipe, seed
s) on the full train split, runs ``retrain`` (seed s) and then every registered method
with its per-dataset defaults (``make_params``), and measures Acc_r, Acc_f (train
retain / forget accuracy), TA_r, TA_f (test retain / forget accuracy) and the method's
wall time. Oracle methods (marked ORACLE) get 2 extra retrained references per seed
(seeds 1000 + s and 2000 + s), never the retrained model of the ``retrain`` row. The
table gives mean ± std over the seeds.

    python scripts/methods_table.py --dataset digits --seeds 3 --forget-class 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:  # run from a checkout without an editable install
    sys.path.insert(0, str(SRC))

from classunlearn.data import DATASETS, ForgetSplit, load_dataset  # noqa: E402
from classunlearn.methods import METHODS, UnlearnData, make_params  # noqa: E402
from classunlearn.models import build_model  # noqa: E402
from classunlearn.table import fmt, markdown_table  # noqa: E402
from classunlearn.train import accuracy, default_recipe, train_model  # noqa: E402

PARTS = ("train_retain", "train_forget", "test_retain", "test_forget")
COLUMNS = ("Acc_r", "Acc_f", "TA_r", "TA_f", "time (s)")


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else float("nan")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", help="default: the dataset's default model")
    ap.add_argument("--seeds", type=int, default=3, help="original models (seeds 0..n-1)")
    ap.add_argument("--forget-class", default="3", help="class index(es), comma-separated")
    ap.add_argument("--methods", help="comma list (default: every registered method)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    d = load_dataset(args.dataset)
    model_name = args.model or DATASETS[args.dataset].default_model
    recipe = default_recipe(args.dataset)
    split = ForgetSplit.make(d, [c.strip() for c in args.forget_class.split(",")])
    data = UnlearnData.from_split(split)
    chosen = args.methods.split(",") if args.methods else sorted(METHODS)
    others = [m for m in chosen if m not in ("retrain", "original")]
    order = ["retrain", "original", *others]
    results: dict[str, list[list[float]]] = {m: [] for m in order}
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        original = build_model(model_name, d.input_shape, d.num_classes, seed=seed)
        train_model(original, d.x_train, d.y_train, recipe, seed=seed, desc="original")
        references = None
        for name in order:
            cls = METHODS[name]
            if cls.oracle and references is None:
                ret = METHODS["retrain"]
                ret_params = make_params("retrain", recipe=recipe)[1]
                references = [ret().unlearn(original, data, ret_params, seed=1000 * k + seed)[0]
                              for k in (1, 2)]
            # retrain follows the original's recipe and starts from fresh weights (seed 4000+s)
            run_seed = 4000 + seed if cls.follows_recipe else seed
            out, record = cls().unlearn(original, data,
                                        make_params(name, args.dataset, recipe=recipe)[1],
                                        seed=run_seed,
                                        references=references if cls.oracle else None)
            accs = [accuracy(out, *split.part(p)) for p in PARTS]
            results[name].append([*accs, record.wall_time_s])
        print(f"seed {seed} done in {time.perf_counter() - t0:.0f}s", file=sys.stderr,
              flush=True)

    rows = []
    for name in order:
        label = f"{name} (ORACLE)" if METHODS[name].oracle else name
        *accs, times = (_stats(list(c)) for c in zip(*results[name], strict=True))
        rows.append([label, *accs, fmt(times, 3)])  # run times with 3 decimals
    classes = ",".join(str(c) for c in split.forget_classes)
    print(f"{args.dataset}, model {model_name}, forget class {classes}, seeds 0..{args.seeds - 1}"
          f" (mean ± std); accuracies in %, time = the method's wall time in seconds")
    print()
    print(markdown_table(["method", *COLUMNS], rows, digits=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
