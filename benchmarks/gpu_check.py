"""One script for a CUDA machine: check the GPU gives the CPU's results, and time what
matters. Prints one table; finishes in well under 8 minutes on a modern GPU.

    python benchmarks/gpu_check.py           # on a CUDA machine
    python benchmarks/gpu_check.py --tiny    # tiny sizes, runs on CPU too (CI smoke test)
    python benchmarks/gpu_check.py --cifar10 DIR [--budget-s 480]   # real CIFAR-10 images

With --cifar10 (DIR: CIFAR-10 in the imagefolder layout, e.g. the JPEGs of
../shared/data/cifar10-jpeg extracted), within --budget-s seconds (parts that would not fit
are skipped and say so):
1. ResNet-18 training throughput on the real images, resident on the device as uint8:
   fp32, and bf16 autocast with channels_last (images/s);
2. the same tiny `paper`-preset study of one forget class (automobile) on CPU and on the
   device, tables side by side, then the same study scaled to the budget on the device;
3. ResNet-18 shadows per minute, stacked against one by one;
4. the projected wall time of the full `paper` study (3 seeds, 16 shadows per side, 5
   references, every method) from the measured throughput.

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


# ---------------------------------------------------------------- CIFAR-10 mode


def cifar_throughput(data_dir: str, tiny: bool, dev: torch.device) -> tuple[list[list], float]:
    """ResNet-18 (width 64; 8 when tiny) on the real training images, uint8 on the device and
    normalised per batch as the trainer does. Returns rows and the fp32 images/s."""
    from classunlearn.data import load_dataset, to_input

    ds = load_dataset("imagefolder", data_dir)
    n = min(len(ds.y_train), 256 if tiny else 50_000)
    x, y = ds.x_train[:n].to(dev), ds.y_train[:n].to(dev)
    width, steps, batch = (8, 3, 64) if tiny else (64, 40, 128)
    rows, fp32 = [], 0.0
    for label, bf16, cl in (("fp32", False, False), ("bf16 + channels_last", True, True)):
        model = build_model("resnet18", (3, 32, 32), 10, seed=0, width=width).to(dev)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for step in range(steps + 2):
            if step == 2:
                _sync(dev)
                start = time.perf_counter()
            idx = torch.randint(0, n, (batch,), device=dev)
            xb = to_input(x[idx])
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(dev)
        rate = steps * batch / (time.perf_counter() - start)
        fp32 = fp32 or rate
        rows.append([f"CIFAR-10 resnet18 w{width} batch {batch} train {label}", rate,
                     "images/s"])
    return rows, fp32


STUDY_METHODS = ["retrain", "original", "ft", "ga", "rwft", "trw"]


def cifar_study(data_dir: str, device: str, subset: int, test_subset: int, epochs: int,
                shadows: int, width: int | None = None) -> dict:
    """A `paper`-preset study of automobile, one seed, on `device`: the summary table.
    `width` narrows the ResNet-18 (the tiny CPU-and-device comparison)."""
    from classunlearn.presets import bench_settings

    os.environ["CLASSUNLEARN_DEVICE"] = device
    s = bench_settings("paper", {"seeds": 1, "shadows": shadows, "references": 2,
                                 "subset": subset, "test_subset": test_subset,
                                 "model_kwargs": {"width": width} if width else None})
    cfg = BenchConfig(dataset="imagefolder", data_dir=data_dir, model=s["model"],
                      model_kwargs=s["model_kwargs"], recipe=s["recipe"],
                      forget_classes=[["automobile"]], methods=STUDY_METHODS, seeds=1,
                      shadows=shadows, references=2, subset=subset, test_subset=test_subset,
                      epochs=epochs, executor="local", preset="paper",
                      out=tempfile.mkdtemp(prefix=f"cu-cifar-{device}-"))
    try:
        return run_bench(cfg, log=lambda _: None).summary["summary"]
    finally:
        os.environ.pop("CLASSUNLEARN_DEVICE", None)


def study_rows(tables: dict[str, dict]) -> list[list]:
    names = list(tables)
    rows = []
    for method in STUDY_METHODS:
        for key in ("test_acc_retain", "acc_forget", "mia_nn", "ulira"):
            rows.append([f"{method} {key}"] + [
                tables[n].get(method, {}).get(key, {}).get("mean", float("nan"))
                for n in names])
    return rows


def cifar_shadows(data_dir: str, tiny: bool, dev: torch.device) -> list[list]:
    from classunlearn.data import load_dataset
    from classunlearn.shadows import balanced_halves, train_ensemble

    ds = load_dataset("imagefolder", data_dir)
    n_images, n_models, width = (64, 2, 8) if tiny else (5000, 8, 64)
    x, y = ds.x_train[:n_images], ds.y_train[:n_images]
    recipe = Recipe(epochs=1, batch_size=128, lr=0.1, schedule="step", augment="crop-flip")
    masks = balanced_halves(n_images, n_models, 0)
    rows = []
    for stacked in (False, True):
        _sync(dev)
        start = time.perf_counter()
        train_ensemble("resnet18", (3, 32, 32), 10, x, y, masks, recipe, list(range(n_models)),
                       model_kwargs={"width": width}, device=dev, stacked=stacked)
        _sync(dev)
        rows.append([f"CIFAR-10 resnet18 w{width} shadows {'stacked' if stacked else 'loop'} "
                     f"N={n_models}, 1 epoch of {n_images // 2}",
                     60 * n_models / (time.perf_counter() - start), "models/min"])
    return rows


def paper_study_image_epochs(n_train: int = 50_000, forget_share: float = 0.1) -> float:
    """Training images processed by the full `paper` study of one forget class: originals,
    references, shadows (on halves), the retrain row and its replay on the shadows, and every
    method of `bench --methods all` at its default budget, on the original and on each shadow
    original (half the data). Forward passes for logits are not counted."""
    from classunlearn.bench.runner import ALL_METHODS
    from classunlearn.methods import make_params
    from classunlearn.presets import get_preset

    p = get_preset("paper")
    e, seeds, n, refs = p.recipe.epochs, p.seeds, p.shadows, p.references
    retain = n_train * (1 - forget_share)
    total = seeds * n_train * e + refs * retain * e  # originals, references
    total += seeds * n * (n_train / 2 + retain / 2) * e  # shadow originals and retrains
    for spec in ALL_METHODS:
        if spec in ("original",):
            continue
        cls, params = make_params(spec, None, None, recipe=p.recipe)
        seen = retain + n_train * forget_share  # a pass over D_f and D_r: an upper bound
        epochs = getattr(params, "epochs", e)
        total += seeds * (seen * epochs + n * seen / 2 * epochs)
    return total


def cifar_main(args: argparse.Namespace, dev: torch.device, name: str) -> None:
    start = time.perf_counter()
    budget = args.budget_s

    def left() -> float:
        return budget - (time.perf_counter() - start)

    print(f"gpu_check --cifar10 on {name}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}, budget {budget:.0f} s")
    rows, fp32 = cifar_throughput(args.cifar10, args.tiny, dev)
    print(markdown_table(["timing", "value", "unit"], rows))
    # the same small study on both: ResNet-18 narrowed to width 16 (8 with --tiny), 1 epoch
    tiny_size = dict(subset=40 if args.tiny else 200, test_subset=50 if args.tiny else 100,
                     epochs=1, shadows=8, width=8 if args.tiny else 16)
    tables = {"cpu (tiny)": cifar_study(args.cifar10, "cpu", **tiny_size)}
    if dev.type != "cpu":
        tables[f"{dev.type} (tiny)"] = cifar_study(args.cifar10, dev.type, **tiny_size)
        # scale to what is left: about 40 image-epochs per training image across the study's
        # units at this size, measured as ~ (units x subset x epochs) / fp32 rate
        subset, epochs = 5000, 20
        cost = 60 * subset * epochs / fp32  # ~60 trainings' worth of work (1 seed, 8 shadows)
        while cost > 0.5 * left() and epochs > 2:
            epochs //= 2
            cost /= 2
        if cost <= 0.5 * left():
            tables[f"{dev.type} subset {subset}, {epochs} ep"] = cifar_study(
                args.cifar10, dev.type, subset, 1000, epochs, 8)
        else:
            print(f"scaled study skipped: ~{cost:.0f} s would not fit in {left():.0f} s left")
    print()
    print(markdown_table(["paper-preset study, automobile", *tables], study_rows(tables)))
    if left() > 60 or args.tiny:
        print()
        print(markdown_table(["timing", "value", "unit"], cifar_shadows(args.cifar10,
                                                                        args.tiny, dev)))
    else:
        print("shadow timing skipped: under 60 s of the budget left")
    total = paper_study_image_epochs()
    print(f"\nprojected full `paper` study of one forget class: {total / 1e9:.2f} G training "
          f"images at {fp32:.0f} images/s (fp32) = {total / fp32 / 3600:.1f} h on this device "
          "(training only, one device)")
    print(f"total {time.perf_counter() - start:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes; runs on CPU too")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--cifar10", metavar="DIR", help="CIFAR-10 imagefolder: the CIFAR-10 mode")
    ap.add_argument("--budget-s", type=float, default=480,
                    help="CIFAR-10 mode: seconds to stay within (default 480)")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device here; use --tiny for a CPU smoke run")
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    if args.cifar10:
        return cifar_main(args, dev, name)
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
