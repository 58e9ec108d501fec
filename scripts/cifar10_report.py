"""The tables and figure of docs/cifar10.md, from a finished `bench` run (scripts/cifar10_study.sh).

    python scripts/cifar10_report.py runs/cifar10-cpu --figure docs/img/cifar10_geometry.png

Prints Markdown: the models' test accuracy; where the retrained references send each forget
class (arg-max shares of their predictions on the forget class's test images, and the
heatmap written to --figure); the study's full table and the verdicts per method, attack
and seed, both as bench recorded them; the paper's CIFAR-10 claims checked per seed; and
TRW's beta and similarity ablations (the `ablation/*.json` the study script saved). Reads
the run's store, never trains.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from classunlearn.bench.report import render_tables
from classunlearn.bench.runner import BenchConfig, split_logits
from classunlearn.bench.store import Store
from classunlearn.bench.summary import oracle_methods
from classunlearn.bench.units import SEED_REFERENCE, StudyContext, original_key, reference_key
from classunlearn.data import parse_forget_classes

BASELINES = ["ft", "rl", "ga", "bs", "be", "l1-sparse", "salun", "scrub", "ssd", "unsir"]
OURS = ["rwft", "trw"]


def contexts(store: Store) -> tuple[BenchConfig, list[StudyContext]]:
    run = store.get_meta("run")
    cfg = BenchConfig(**{k: v for k, v in run["config"].items()
                         if k in BenchConfig.__dataclass_fields__})
    ds = cfg.load_data()
    out = []
    for forget in cfg.forget_classes:
        fc = parse_forget_classes(forget, ds)
        out.append(StudyContext(cfg.dataset, cfg.data_dir, cfg.model or "", cfg.model_kwargs,
                                run["recipe"], fc, run["data_fingerprint"], "", None,
                                cfg.subset, cfg.test_subset, cfg.subset_seed))
    return cfg, out


def per_seed(store: Store, study: str) -> dict[str, dict[int, dict[str, float]]]:
    out: dict = {}
    for st, method, seed, metric, value in store.metrics(study):
        if st == study:
            out.setdefault(method, {}).setdefault(seed, {})[metric] = value
    return out


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.argmax(1) == labels))


def fmt(values) -> str:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return "-"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def z_text(z: float | None) -> str:
    """MIA-NN's z, or "-" where it is undefined (one reference, or all score the same)."""
    return "-" if z is None or not np.isfinite(z) else f"{z:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--figure", type=Path, help="write the geometry heatmap here (PNG)")
    args = ap.parse_args()
    store = Store(args.out)
    cfg, ctxs = contexts(store)
    results = json.loads((args.out / "results.json").read_text())
    print(f"Run: {cfg.dataset} {cfg.model} {cfg.model_kwargs}, subset {cfg.subset}, test "
          f"subset {cfg.test_subset}, {cfg.seeds} seeds, {cfg.references} references, "
          f"{cfg.shadows} shadows per side; recipe {store.get_meta('run')['recipe']}\n")

    # --- accuracy of the models and the geometry of retraining
    split0, _ = ctxs[0].load()
    ds = split0.dataset
    names = ds.class_names
    y_te = ds.y_test.numpy()
    orig = [store.load(original_key(ctxs[0], s))[0] for s in range(cfg.seeds)]
    print("| model | test accuracy (%) |\n|---|---:|")
    orig_acc = [accuracy(a["logits_test"], y_te) for a in orig]
    print(f"| original ({cfg.seeds} seeds) | {fmt(orig_acc)} |")
    rows, shares = [], []
    for ctx in ctxs:
        split, _ = ctx.load()
        refs = [split_logits(store.load(reference_key(ctx, SEED_REFERENCE + j))[0], split)
                for j in range(cfg.references)]
        y_r = y_te[split.test_retain.numpy()]
        accs = [accuracy(r.test_retain.numpy(), y_r) for r in refs]
        f = ctx.forget_classes[0]
        counts = np.zeros(len(names))
        for r in refs:
            counts += np.bincount(r.test_forget.argmax(1).numpy(), minlength=len(names))
        share = 100 * counts / counts.sum()
        shares.append(share)
        top = int(np.argsort(share)[::-1][0])
        rows.append((names[f], accs, names[top], share[top], np.argsort(share)[::-1][1]))
        print(f"| retrained without {names[f]} ({cfg.references} references; on the other "
              f"classes) | {fmt(accs)} |")
    print("\nWhere retrained models send each forget class (arg-max share of the references' "
          "predictions on its test images):\n")
    print("| forget class | top neighbour | share | second | share |\n|---|---|---:|---|---:|")
    for (fname, _, tname, tshare, second), share in zip(rows, shares):
        print(f"| {fname} | {tname} | {tshare:.1f}% | {names[second]} | {share[second]:.1f}% |")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.5 * len(shares)))
        m = np.array(shares)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=max(50, m.max()))
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), [f"without {r[0]}" for r in rows])
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > 30 else "black")
        ax.set_title("Retrained models: where the forgotten class goes (% of test images)",
                     fontsize=10)
        fig.tight_layout()
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=110)

    # --- the study's table, as bench prints it
    print("\n" + render_tables(results, oracle_methods(results["summary"])) + "\n")

    # --- verdicts and the paper's claims, per study and seed
    pooled: dict[str, dict[str, list[float]]] = {"ulira": {}, "mia_nn": {}}
    for ctx in ctxs:
        study = next(s for s in results["studies"]
                     if s.endswith("forget=" + "-".join(map(str, ctx.forget_classes))))
        ms = per_seed(store, study)
        recorded = results.get("verdicts", {}).get(study, {})  # bench's own verdicts
        print(f"\n#### Verdicts: {study}\n")
        print("| method | seed | accuracy | MIA-NN (z) | U-LiRA |\n|---|---:|---|---|---|")
        for method in ["original", *BASELINES, *OURS, "retrain"]:
            for s, m in sorted(ms.get(method, {}).items()):
                said = {v["attack"]: v["verdict"] for v in recorded.get(method, {}).get(str(s), [])}
                print(f"| {method} | {s} | {said.get('accuracy', '-')} | "
                      f"{said.get('mia_nn', '-')} ({z_text(m.get('mia_nn_z'))}) | "
                      f"{said.get('ulira', '-')} |")
        print(f"\n#### The paper's claims: {study}\n")
        print("| seed | attack | retrain | best baseline (its gap) | TRW gap | RWFT gap | "
              "TRW's cut of the gap |\n|---:|---|---:|---|---:|---:|---:|")
        for metric in ("ulira", "mia_nn"):
            for s in sorted(ms.get("retrain", {})):
                ret = ms["retrain"][s][metric]
                gaps = {b: abs(ms[b][s][metric] - ret) for b in BASELINES
                        if b in ms and s in ms[b] and np.isfinite(ms[b][s].get(metric, np.nan))}
                best = min(gaps, key=gaps.get)
                trw = abs(ms["trw"][s][metric] - ret)
                rwft = abs(ms["rwft"][s][metric] - ret)
                cut = 100 * (1 - trw / gaps[best]) if gaps[best] > 0 else float("nan")
                print(f"| {s} | {metric} | {ret:.1f} | {best} ({gaps[best]:.1f}) | {trw:.1f} | "
                      f"{rwft:.1f} | {cut:+.0f}% |")
                for method, gap in {**gaps, "trw": trw, "rwft": rwft}.items():
                    pooled[metric].setdefault(method, []).append(gap)
    # the paper compares mean gaps: the baseline with the smallest mean gap over every
    # (study, seed), not the best of ten noisy gaps at each seed
    print("\n#### The paper's claims on mean gaps (every study and seed pooled)\n")
    print("| attack | pairs | best baseline (mean gap ± sd) | TRW | RWFT | TRW's cut |\n"
          "|---|---:|---|---:|---:|---:|")
    for metric, gaps in pooled.items():
        means = {m: float(np.mean(v)) for m, v in gaps.items() if m in BASELINES}
        best = min(means, key=means.get)
        trw = float(np.mean(gaps["trw"]))
        cut = 100 * (1 - trw / means[best]) if means[best] > 0 else float("nan")
        print(f"| {metric} | {len(gaps['trw'])} | {best} ({fmt(gaps[best])}) | "
              f"{fmt(gaps['trw'])} | {fmt(gaps['rwft'])} | {cut:+.0f}% |")

    # --- ablations saved by scripts/cifar10_study.sh
    abl = args.out / "ablation"
    if abl.is_dir():
        print("\n#### TRW's beta and similarity source (mean ± sd over seeds, per study)\n")
        print("| study | variant | Acc_f | TA_r | MIA-NN | MIA-NN z | U-LiRA | Avg.Gap |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|")
        sources = {"beta 0 (rwft)": (None, "rwft"), "beta 10, confusion (trw)": (None, "trw"),
                   "similarity weights": (None, "trw[weights]"),
                   "similarity features": (None, "trw[features]")}
        sources.update({"beta 1": ("beta1.json", "trw"), "beta 3": ("beta3.json", "trw"),
                        "similarity logits": ("logits.json", "trw[logits]")})
        for study in results["studies"]:
            for label, (file, method) in sources.items():
                src = results if file is None else (
                    json.loads((abl / file).read_text()) if (abl / file).is_file() else None)
                if src is None or method not in src["studies"].get(study, {}):
                    continue
                r = src["studies"][study][method]
                cells = [f"{r[k]['mean']:.1f} ± {r[k]['std']:.1f}" if k in r else "-"
                         for k in ("acc_forget", "test_acc_retain", "mia_nn", "mia_nn_z",
                                   "ulira", "avg_gap")]
                print(f"| {study.split('/')[-1]} | {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
