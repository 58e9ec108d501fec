"""Your own training, from Python (docs/own_training.md): the deletion request of
examples/own_training.sh with ``cu.forget``, then the study with ``cu.bench`` on the same
images held as tensors, every model trained by the user's function from the backbone.

    python examples/own_training.py [OUT]     # OUT: the folder examples/own_training.sh filled
"""

import json
import sys
from pathlib import Path

from my_training import train  # a module-level function in a .py file: workers import it

import classunlearn as cu
from classunlearn.bench.audit import verdict_line
from classunlearn.bench.report import render_tables
from classunlearn.bench.summary import oracle_methods
from classunlearn.data.core import to_input
from classunlearn.forget import exit_code


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/own-training")
    data_dir = out / "data" / "ten"

    # the request of `classunlearn forget`, from Python; the CLI's cache holds every unit
    result = cu.forget(out / "model.safetensors", ["ship"], out / "req1-py", data_dir=data_dir,
                       cache=out / "bench", note="request 1, from Python")
    for v in result.record["verdicts"]:
        print(verdict_line(v))
    print(f"exit status {exit_code(result.record)}; {result.units_computed} units computed, "
          f"{result.units_reused} reused; trainer SHA-256 "
          f"{result.record['files']['trainer']['sha256'][:12]}..., init SHA-256 "
          f"{result.record['files']['init']['sha256'][:12]}...")

    # the study on your tensors: the images as the model sees them (float, normalised)
    ds = cu.load_dataset("imagefolder", str(data_dir))
    _, meta = cu.load_checkpoint(out / "model.safetensors", ds)
    train_data = (to_input(ds.x_train), ds.y_train)
    test_data = (to_input(ds.x_test), ds.y_test)
    ship = ds.class_names.index("ship")
    study = cu.bench("cnn", train_data, test_data, [ship], recipe=cu.Recipe.from_dict(meta.recipe),
                     trainer=train, init=out / "backbone.safetensors",
                     model_kwargs={"width": 16}, methods=["retrain", "original", "rwft"],
                     seeds=1, shadows=16, references=5, out=out / "bench-py",
                     executor="process")
    results = json.loads((study.out / "results.json").read_text())
    print(render_tables(results, oracle_methods(results["summary"])))
    print(f"{study.computed} units computed, {study.reused} reused; "
          f"stages (s): {', '.join(f'{k} {v:.0f}' for k, v in study.stage_s.items())}")


if __name__ == "__main__":  # needed by executor="process": its workers re-import this file
    main()
