"""The cost-privacy frontier of the fine-tuning methods: gap to retrain against cost.

    python benchmarks/frontier.py --dataset digits --out runs/frontier-digits
    python benchmarks/frontier.py --quick          # a tiny grid, for the test suite
    python benchmarks/frontier.py --dataset imagefolder --data-dir CIFAR --preset cpu \
        --forget-class automobile --methods rwft,trw --out runs/frontier-cifar10

Each fine-tuning method is run by the bench (same units, same keys, same audit) at a grid of
budgets, each budget a pair (epoch share, retain share): ``epochs = max(1, round(share x the
recipe's epochs))`` passes over D_f plus a seeded ``retain_fraction`` of D_r. Every other
hyperparameter stays at the method's per-dataset default. For each point it prints

- ``budget``: the samples the method sees as a share of what a retrain sees,
  ``epochs x (|D_f| + r |D_r|) / (recipe epochs x |D_r|)`` (exact, machine-independent);
- ``x retrain``: the measured time of the method's run over the retrain row's at the same
  seed, the median over seeds (the first unit a worker runs carries torch's warm-up, so the
  mean would not do; noisy anyway: these machines are shared);
- the U-LiRA gap (its accuracy minus retrain's, points), MIA-NN z (distance from the
  references in their spread) and TV (to the references; retrain's own TV is the floor),
  each the mean over seeds with the seeds' spread.

A method's choice on the frontier is the cheapest budget whose U-LiRA gap and MIA-NN z are
no worse than at the method's best budget, within the seeds' spread, with its forget
accuracy (Acc_f) no higher and its retained test accuracy at most a point lower (``pick``). Writes
``frontier.csv``, ``frontier.md`` and ``frontier.png`` (gap against budget, one line per
method) into --out; the bench units are cached there, so a rerun is quick.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import time
from pathlib import Path

from classunlearn.bench.runner import BenchConfig, run_bench, study_recipe
from classunlearn.bench.store import Store
from classunlearn.data import ForgetSplit
from classunlearn.errors import UserError
from classunlearn.methods import make_params
from classunlearn.presets import bench_settings
from classunlearn.table import markdown_table

METHODS = ["rwft", "trw", "ft", "rl", "salun", "l1-sparse"]
EPOCH_SHARES = [0.034, 0.1, 0.2, 0.34]
RETAIN_SHARES = [0.1, 0.3, 1.0]


def budget_share(epochs: int, retain: float, n_forget: int, n_retain: int,
                 recipe_epochs: int) -> float:
    """Samples seen by the method over samples seen by a retrain (which trains on D_r)."""
    return epochs * (n_forget + retain * n_retain) / (recipe_epochs * n_retain)


def grid_epochs(share: float, recipe_epochs: int) -> int:
    return max(1, round(share * recipe_epochs))


def stat(summary: dict, method: str, metric: str) -> tuple[float, float]:
    m = summary["summary"].get(method, {}).get(metric, {})
    return m.get("mean", math.nan), m.get("std", math.nan)


def pick(rows: list[dict]) -> dict:
    """The cheapest point whose U-LiRA gap and MIA-NN z stay where the method's best budget
    (the smallest U-LiRA gap among the budgets whose Acc_f is within a point of the lowest)
    puts them: worse by at most the two points' combined spread
    over seeds (floors 1.0 point and 0.25 when there is one seed). Never empty: the best
    budget qualifies itself."""
    def sd(x: float) -> float:
        return 0.0 if math.isnan(x) else x

    def within(r: dict, best: dict, key: str, floor: float) -> bool:
        tol = max(math.hypot(sd(r[key + "_sd"]), sd(best[key + "_sd"])), floor)
        return r[key] <= best[key] + tol

    def goals(r: dict, best: dict) -> bool:
        # the forget goal and the retained accuracy hold too (frontier.csv files written
        # before Acc_f was recorded have no acc_f column)
        if "acc_f" not in r or math.isnan(r["acc_f"]):
            return True
        return within(r, best, "acc_f", 1.0) and r["ta_r"] >= best["ta_r"] - 1.0

    # the best budget: the smallest U-LiRA gap among the budgets that forget as well as any
    reached = min((r.get("acc_f", math.nan) for r in rows), default=math.nan)
    eligible = [r for r in rows if math.isnan(reached) or math.isnan(r.get("acc_f", math.nan))
                or r["acc_f"] <= reached + 1.0]
    best = min(eligible, key=lambda r: r["ulira_gap"])
    ok = [r for r in rows if within(r, best, "ulira_gap", 1.0)
          and within(r, best, "mia_nn_z", 0.25) and goals(r, best)]
    return min(ok, key=lambda r: r["budget"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--preset", default=None, help="a bench preset (its model, recipe, "
                    "subsets, seeds, references and shadows; the flags below override them)")
    ap.add_argument("--forget-class", default="3")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epoch-shares", default=",".join(map(str, EPOCH_SHARES)))
    ap.add_argument("--retain-shares", default=",".join(map(str, RETAIN_SHARES)))
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--shadows", type=int, default=None)
    ap.add_argument("--references", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--quick", action="store_true",
                    help="1 method, 2 budgets, 1 seed, 8 shadows, bench --quick (seconds)")
    ap.add_argument("--out", default="runs/frontier")
    ap.add_argument("--replot", action="store_true",
                    help="rewrite frontier.md and frontier.png from the frontier.csv in --out "
                    "(the pick and the plot again); runs nothing")
    args = ap.parse_args()
    if args.replot:
        with open(Path(args.out) / "frontier.csv", newline="") as f:
            rows = [{k: v if k == "method" else (v == "True" if k == "default" else float(v))
                     for k, v in r.items()} for r in csv.DictReader(f)]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        header = (Path(args.out) / "frontier.md").read_text().splitlines()[0]
        print(write_table(rows, methods, Path(args.out), header))
        plot(rows, methods, Path(args.out) / "frontier.png", args.dataset)
        return
    methods = [m for m in args.methods.split(",") if m]
    shares = [float(s) for s in args.epoch_shares.split(",")]
    retains = [float(s) for s in args.retain_shares.split(",")]
    if args.quick:
        methods, shares, retains = methods[:1], shares[:1], [1.0]
        args.seeds, args.shadows, args.references = 1, 8, 2
    out = Path(args.out)
    st = bench_settings(args.preset, {"seeds": args.seeds, "shadows": args.shadows,
                                      "references": args.references})
    base = BenchConfig(dataset=args.dataset, data_dir=args.data_dir, model=st["model"],
                       model_kwargs=st["model_kwargs"], recipe=st["recipe"],
                       forget_classes=[[args.forget_class]], seeds=st["seeds"],
                       shadows=st["shadows"], references=st["references"],
                       subset=st["subset"], test_subset=st["test_subset"], preset=args.preset,
                       workers=args.workers, quick=args.quick, out=str(out / "store"))
    recipe = study_recipe(base)
    split = ForgetSplit.make(base.load_data(), [args.forget_class])
    n_f, n_r = len(split.part("train_forget")[1]), len(split.part("train_retain")[1])

    rows: list[dict] = []
    started = time.perf_counter()
    for spec in methods:
        # the default as the bench runs it: its recipe-relative budget resolved on this recipe
        _, default = make_params(spec, args.dataset, recipe=recipe)
        # the method's own default is always on the grid, so the frontier shows where it sits
        default_point = (default.epochs, default.retain_fraction)
        points = sorted({(grid_epochs(s, recipe.epochs), r) for s in shares for r in retains}
                        | {default_point})
        for epochs, retain in points:
            values = {"epochs": str(epochs), "retain_fraction": str(retain)}
            cfg = BenchConfig(**{**base.__dict__, "methods": ["retrain", spec],
                                 "method_params": {spec: values}})
            try:
                res = run_bench(cfg, log=lambda s: None)
            except UserError as e:  # a point the method refuses (SCRUB: msteps > epochs)
                print(f"{spec:10s} epochs {epochs:3d} retain {retain:4.2f} skipped: {e}")
                continue
            u, u_sd = stat(res.summary, spec, "ulira")
            u0, _ = stat(res.summary, "retrain", "ulira")
            ratios = [v for _, m, _, k, v in Store(cfg.out).metrics()
                      if m == spec and k == "runtime_ratio"]
            z, z_sd = stat(res.summary, spec, "mia_nn_z")
            tv, tv_sd = stat(res.summary, spec, "tv")
            tv0, _ = stat(res.summary, "retrain", "tv")
            acc, _ = stat(res.summary, spec, "test_acc_retain")
            acc_f, acc_f_sd = stat(res.summary, spec, "acc_forget")
            row = {"method": spec, "epochs": epochs, "retain_fraction": retain,
                   "default": (epochs, retain) == default_point,
                   "budget": budget_share(epochs, retain, n_f, n_r, recipe.epochs),
                   "x_retrain": statistics.median(ratios), "ulira_gap": u - u0,
                   "ulira_gap_sd": u_sd,
                   "mia_nn_z": z, "mia_nn_z_sd": z_sd, "tv": tv, "tv_sd": tv_sd,
                   "tv_retrain": tv0, "ta_r": acc, "acc_f": acc_f, "acc_f_sd": acc_f_sd}
            rows.append(row)
            print(f"{spec:10s} epochs {epochs:3d} retain {retain:4.2f} budget "
                  f"{row['budget']:.3f} x retrain {row['x_retrain']:.2f} U-LiRA gap "
                  f"{row['ulira_gap']:+.1f} MIA-NN z {z:.2f} TV {tv:.3f} TA_r {acc:.1f} "
                  f"Acc_f {acc_f:.1f} ({time.perf_counter() - started:.0f} s)", flush=True)

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "frontier.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    header = (f"{args.dataset}, forget {args.forget_class}, recipe {recipe.epochs} epochs, "
              f"|D_f| {n_f}, |D_r| {n_r}; {base.seeds} seeds, {base.shadows} shadows/side, "
              f"{base.references} references; retrain's U-LiRA "
              f"{stat(res.summary, 'retrain', 'ulira')[0]:.1f}, TV {rows[-1]['tv_retrain']:.3f}")
    text = write_table(rows, methods, out, header)
    print(text)
    plot(rows, methods, out / "frontier.png", args.dataset)
    print(f"wrote {out}/frontier.md, frontier.csv, frontier.png "
          f"({time.perf_counter() - started:.0f} s)")


def write_table(rows: list[dict], methods: list[str], out: Path, header: str) -> str:
    """frontier.md: `header`, then one row per point with the default and the pick marked."""
    picks = {spec: pick([r for r in rows if r["method"] == spec]) for spec in methods}
    head = ["method", "epochs", "retain", "budget", "x retrain", "U-LiRA gap", "MIA-NN z",
            "TV", "TA_r", "Acc_f", ""]
    table = [[r["method"], int(r["epochs"]), r["retain_fraction"], r["budget"], r["x_retrain"],
              f"{r['ulira_gap']:+.1f}±{r['ulira_gap_sd']:.1f}",
              f"{r['mia_nn_z']:.2f}±{r['mia_nn_z_sd']:.2f}", f"{r['tv']:.3f}", r["ta_r"],
              r.get("acc_f", math.nan),
              ("default " if r["default"] else "") + ("pick" if picks[r["method"]] is r else "")]
             for r in sorted(rows, key=lambda r: (methods.index(r["method"]), r["budget"]))]
    text = f"{header}\n\n{markdown_table(head, table, digits=2)}\n"
    (out / "frontier.md").write_text(text)
    return text


def plot(rows: list[dict], methods: list[str], path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    styles = ["o:", "s--", "^-", "d-."]
    for spec in methods:
        mine = [r for r in rows if r["method"] == spec]
        # one line per share of D_r, more epochs to the right; the default point starred
        for style, retain in zip(styles, sorted({r["retain_fraction"] for r in mine})):
            rs = sorted((r for r in mine if r["retain_fraction"] == retain),
                        key=lambda r: r["budget"])
            for ax, key in zip(axes, ("ulira_gap", "mia_nn_z", "tv")):
                ax.plot([r["budget"] for r in rs], [r[key] for r in rs], style, ms=4,
                        color=colours[spec], label=f"{spec}, {retain:g} of D_r")
        for r in mine:
            if r["default"]:
                for ax, key in zip(axes, ("ulira_gap", "mia_nn_z", "tv")):
                    ax.plot([r["budget"]], [r[key]], "*", ms=12, color=colours[spec])
    for ax, title in zip(axes, ("U-LiRA minus retrain's (points)", "MIA-NN z", "TV")):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels overlapped
        ax.set_xlabel("budget: share of a retrain's samples")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[2].axhline(rows[-1]["tv_retrain"], color="grey", ls=":", label="retrain")
    axes[0].legend(fontsize=7, title="star: the default", title_fontsize=7)
    fig.suptitle(f"cost-privacy frontier, {dataset}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
