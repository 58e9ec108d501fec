"""Your own model and data from Python (docs/own_model.md): train, unlearn, audit with every
metric (U-LiRA included) and the whole study, on the batch-norm CNN of examples/my_cnn.py.

    python examples/own_model.py [OUT]        # OUT defaults to runs/own-py
"""

import json
import sys
from pathlib import Path

from my_cnn import build  # a module-level factory in a .py file: shadows are built from it

import classunlearn as cu
from classunlearn.bench.report import render_tables
from classunlearn.bench.summary import oracle_methods
from classunlearn.table import markdown_table


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/own-py")
    data = cu.load_dataset("digits")  # or your own tensors / torch Dataset
    train, test = (data.x_train, data.y_train), (data.x_test, data.y_test)
    x, y = train
    recipe = cu.Recipe(epochs=10)  # how every model here is trained

    original = cu.train_model(build(data.input_shape, 10), x, y, recipe, seed=0)
    keep = y != 3  # three models retrained without class 3: the yardstick
    references = [cu.train_model(build(data.input_shape, 10), x[keep], y[keep], recipe, seed=s)
                  for s in (1, 2, 3)]
    unlearned, record = cu.unlearn(original, train, forget_classes=[3], method="rwft")

    report = cu.audit(unlearned, train, test, [3], references, model_fn=build, recipe=recipe,
                      record=record, shadows=8, cache=out / "cache")
    keys = ["acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "svc_mia",
            "mia_nn", "mia_nn_gap", "mia_nn_z", "ulira", "ulira_auc", "tv", "avg_gap",
            "runtime_s"]
    print(markdown_table(["metric", f"{record.method} (audited)"],
                         [[k, report[k]] for k in keys], digits=2))
    print(f"Avg.Gap over: {', '.join(report['avg_gap_keys'])}; "
          f"left out: {', '.join(report['avg_gap_left_out'])}")

    bare = cu.audit(unlearned, train, test, [3], references)  # no model_fn, recipe, record
    print(f"without model_fn/recipe/record: ulira = {bare['ulira']}; "
          f"why: {bare['unavailable']['ulira']}")

    result = cu.bench(build, train, test, [3], recipe=recipe,
                      methods=["retrain", "original", "ft", "rwft", "trw"], seeds=2, shadows=8,
                      references=3, out=out / "bench", executor="process")
    results = json.loads((result.out / "results.json").read_text())
    print(render_tables(results, oracle_methods(results["summary"])))
    print(f"{result.computed} units computed, {result.reused} reused; report: "
          f"{result.out / 'report.html'}")


if __name__ == "__main__":  # needed by executor="process": its workers re-import this file
    main()
