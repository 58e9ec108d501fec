"""One script for a CUDA machine: check the GPU gives the CPU's results, and time what
matters. Prints one table; finishes in well under 8 minutes on a modern GPU.

    python benchmarks/gpu_check.py           # on a CUDA machine
    python benchmarks/gpu_check.py --tiny    # tiny sizes, runs on CPU too (CI smoke test)

Checks and timings:
1. correctness: the same small digits study (retrain, original, trw, ft; 1 seed, 4 shadows)
   on CPU and on the device; the tables must agree within noise;
2. ResNet-18 training throughput on CIFAR-shaped synthetic data: fp32 vs bf16 autocast with
   channels_last, data resident on the device (images/s);
3. stacked shadow ensemble vs the loop (models/minute);
4. TRW vs retrain on the same synthetic CIFAR-shaped task (TRW's fraction of retrain time).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from classunlearn.bench.runner import BenchConfig, run_bench
from classunlearn.methods import UnlearnData, make_params
from classunlearn.models import build_model
from classunlearn.table import markdown_table
from classunlearn.train import Recipe, train_model


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def correctness(tiny: bool, dev: torch.device) -> list[list]:
    tables = {}
    for name in ("cpu", dev.type):
        os.environ["CLASSUNLEARN_DEVICE"] = name
        out = tempfile.mkdtemp(prefix=f"cu-gpu-{name}-")
        cfg = BenchConfig(dataset="digits", methods=["retrain", "original", "trw", "ft"],
                          seeds=1, shadows=8, references=2, executor="local", out=out,
                          epochs=2 if tiny else None)
        tables[name] = run_bench(cfg, log=lambda _: None).summary["summary"]
    os.environ.pop("CLASSUNLEARN_DEVICE", None)
    rows = []
    for method in tables["cpu"]:
        for key in ("acc_retain", "test_acc_retain", "acc_forget", "mia_nn", "ulira"):
            a = tables["cpu"][method].get(key, {}).get("mean", float("nan"))
            b = tables[dev.type][method].get(key, {}).get("mean", float("nan"))
            rows.append([f"{method} {key}", a, b, abs(a - b)])
    return rows


def resnet_throughput(tiny: bool, dev: torch.device) -> list[list]:
    n, width, steps = (64, 8, 3) if tiny else (4096, 64, 30)
    x = torch.randn(n, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (n,), device=dev)
    rows = []
    for label, bf16, cl in (("fp32", False, False), ("bf16 + channels_last", True, True)):
        model = build_model("resnet18", (3, 32, 32), 10, seed=0, width=width).to(dev)
        xx = x.to(memory_format=torch.channels_last) if cl else x
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        batch = min(256, n)
        for step in range(steps + 2):
            if step == 2:  # warm-up done
                _sync(dev)
                start = time.perf_counter()
            idx = torch.randint(0, n, (batch,), device=dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(xx[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(dev)
        rows.append([f"resnet18 w{width} train {label}", steps * batch /
                     (time.perf_counter() - start), "images/s"])
    return rows


def shadows_speed(tiny: bool, dev: torch.device) -> list[list]:
    from classunlearn.data import load_dataset
    from classunlearn.shadows import balanced_halves, train_ensemble

    ds = load_dataset("digits")
    n_models = 4 if tiny else 32
    recipe = Recipe(epochs=1 if tiny else 10, batch_size=64, lr=0.05)
    masks = balanced_halves(len(ds.y_train), n_models, 0)
    rows = []
    for stacked in (False, True):
        _sync(dev)
        start = time.perf_counter()
        train_ensemble("cnn", ds.input_shape, 10, ds.x_train, ds.y_train, masks, recipe,
                       list(range(n_models)), device=dev, stacked=stacked)
        _sync(dev)
        rows.append([f"digits cnn shadows {'stacked' if stacked else 'loop'} N={n_models}",
                     60 * n_models / (time.perf_counter() - start), "models/min"])
    return rows


def trw_vs_retrain(tiny: bool, dev: torch.device) -> list[list]:
    n, width = (200, 4) if tiny else (10000, 32)
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = torch.randn(n, 3, 32, 32, generator=gen) * 0.5 + y[:, None, None, None] / 10
    recipe = Recipe(epochs=1 if tiny else 20, batch_size=128, lr=0.1, schedule="step")
    model = train_model(build_model("resnet18", (3, 32, 32), 10, seed=0, width=width), x, y,
                        recipe, device=dev)
    forget = y == 3
    data = UnlearnData(x[forget], y[forget], x[~forget], y[~forget], (3,), 10)
    epochs = {"retrain": recipe.epochs, "trw": 1 if tiny else 2}
    times = {}
    for spec, n in epochs.items():
        # retrain repeats the original's recipe; TRW gets its own epoch budget
        values = None if spec == "retrain" else {"epochs": str(n)}
        cls, params = make_params(spec, None, values, recipe=recipe)
        _, rec = cls().unlearn(model, data, params, seed=1, device=dev)
        times[spec] = rec.wall_time_s
    return [[f"TRW ({epochs['trw']} ep) vs retrain ({epochs['retrain']} ep)",
             times["trw"] / times["retrain"], "fraction of retrain"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes; runs on CPU too")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device here; use --tiny for a CPU smoke run")
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    start = time.perf_counter()
    check = correctness(args.tiny, dev)
    timings = resnet_throughput(args.tiny, dev) + shadows_speed(args.tiny, dev) + \
        trw_vs_retrain(args.tiny, dev)
    print(f"gpu_check on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    print(markdown_table(["check (CPU vs device)", "cpu", dev.type, "abs diff"], check))
    print()
    print(markdown_table(["timing", "value", "unit"], timings))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "check": check, "timings": timings}, f, indent=1)


if __name__ == "__main__":
    main()
