"""Ablation of TRW's class-similarity source (docs/readings.md section 2), written to the
docs.

For every embedded dataset and every forget class f this script

1. trains the original model (seed 0) on the full train split and R retrained references
   (seeds 100, 101, ...) on D_r, each with the dataset's default model and recipe; trained
   weights are cached as safetensors under --cache, so a rerun only redoes the cheap parts;
2. builds the references' forget distribution r_f: the mean over references and over the
   forget test samples T_f of their softmax, renormalised over the remaining classes;
3. compares each similarity source s = class_similarity(original, D_f/D_r, source)[f]
   (and a uniform baseline) with r_f: TV(s, r_f) and whether argmax s == argmax r_f;
4. runs TRW once per source (default hyperparameters, seed 0) and RWFT, and measures the
   TV distance of the unlearned model to the references' mean output on T_f and T_r,
   TA_r and Acc_f (accuracy on D_f).

On the sweep datasets (default: digits) it also sweeps beta (TRW's tilt) and tau (the
cosine sources' temperature). The Markdown report goes between two marker comments of
--out (text outside the markers, such as the hand-written conclusion, is kept) and is
printed.

    .venv/bin/python scripts/similarity_ablation.py \\
        --datasets digits mnist-5k mnist1d --out docs/trw_similarity.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:  # run from a checkout without an editable install
    sys.path.insert(0, str(SRC))

from classunlearn.audit.basic import (  # noqa: E402
    accuracy,
    tv_between_distributions,
    tv_to_references,
)
from classunlearn.data import DATASETS, ForgetSplit, load_dataset  # noqa: E402
from classunlearn.methods import make_params  # noqa: E402
from classunlearn.methods.base import UnlearnData  # noqa: E402
from classunlearn.methods.trw import SIMILARITY_SOURCES, TRWParams, class_similarity  # noqa: E402
from classunlearn.models import build_model  # noqa: E402
from classunlearn.train import default_recipe, predict_logits, train_model  # noqa: E402

UNIFORM = "uniform"
REFERENCE_SEED0 = 100
UNLEARN_SEED = 0
_TRAINED = [0]  # models trained (not loaded from the cache) in this process


# ------------------------------------------------------------------ models and the cache

@dataclass(frozen=True)
class Config:
    cache: Path
    references: int
    device: str
    sweep: bool
    betas: tuple[float, ...]
    taus: tuple[float, ...]
    sweep_sources: tuple[str, ...]


def _recipe_tag(dataset: str) -> str:
    blob = json.dumps(default_recipe(dataset).to_dict(), sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def cached_model(cfg: Config, dataset: str, forget: tuple[int, ...], seed: int
                 ) -> torch.nn.Module:
    """The dataset's default model trained with its default recipe on the full train split
    (forget = ()) or on D_r (forget = the forgotten classes); cached as safetensors."""
    from safetensors.torch import load_file, save_file

    ds = load_dataset(dataset)
    model_name = DATASETS[dataset].default_model
    classes = "all" if not forget else "retain-minus-" + "-".join(map(str, forget))
    path = (cfg.cache / dataset / model_name / classes
            / f"seed{seed}-recipe{_recipe_tag(dataset)}.safetensors")
    # Seed the initial weights too (train_model only seeds the data order and what follows):
    # otherwise they would depend on whatever ran before in this process.
    torch.manual_seed(seed)
    model = build_model(model_name, ds.input_shape, ds.num_classes)
    if path.exists():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    if forget:
        x, y = ForgetSplit.make(ds, list(forget)).part("train_retain")
    else:
        x, y = ds.x_train, ds.y_train
    train_model(model, x, y, default_recipe(dataset), seed=seed, device=cfg.device,
                desc=f"{dataset} {classes} seed {seed}")
    _TRAINED[0] += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp))
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return model.eval()


# ------------------------------------------------------------------ one (dataset, class)

@dataclass
class ClassResult:
    dataset: str
    forget: int
    original_seed: int
    ref_top: int  # argmax of r_f
    ref_mass_top: float  # r_f at its argmax
    ref_loo_tv: float  # each reference vs the mean of the others, on T_f (noise floor)
    ref_ta_r: float
    ref_tops: list[int]  # each reference's own top neighbour class on T_f
    sim: dict[str, dict] = field(default_factory=dict)  # source -> tv, top, match, max_s
    runs: dict[str, dict] = field(default_factory=dict)  # method -> tv_tf, tv_tr, ta_r, acc_f
    sweep: dict[str, float] = field(default_factory=dict)  # "src|beta|tau" -> tv_tf
    seconds: float = 0.0
    trained: int = 0  # models this task had to train (0 when all came from the cache)


def _evaluate(model, split: ForgetSplit, refs_tf, refs_tr) -> dict:
    x_tf, _ = split.part("test_forget")
    x_tr, y_tr = split.part("test_retain")
    x_df, y_df = split.part("train_forget")
    logits_tr = predict_logits(model, x_tr, device="cpu")
    return {
        "tv_tf": tv_to_references(predict_logits(model, x_tf, device="cpu"), refs_tf),
        "tv_tr": tv_to_references(logits_tr, refs_tr),
        "ta_r": accuracy(logits_tr, y_tr),
        "acc_f": accuracy(predict_logits(model, x_df, device="cpu"), y_df),
    }


def _unlearn(cfg: Config, spec: str, dataset: str, original, data: UnlearnData,
             values: dict[str, str]):
    cls, params = make_params(spec, dataset, values, recipe=default_recipe(dataset))
    model, _ = cls().unlearn(original, data, params, seed=UNLEARN_SEED, device=cfg.device)
    return model


def run_class(cfg: Config, dataset: str, f: int, original_seed: int = 0) -> ClassResult:
    torch.set_num_threads(1)
    start, trained0 = time.perf_counter(), _TRAINED[0]
    ds = load_dataset(dataset)
    original = cached_model(cfg, dataset, (), original_seed)
    split = ForgetSplit.make(ds, [f])
    data = UnlearnData.from_split(split)
    refs = [cached_model(cfg, dataset, (f,), REFERENCE_SEED0 + i) for i in range(cfg.references)]
    x_tf, _ = split.part("test_forget")
    x_tr, y_tr = split.part("test_retain")
    refs_tf = [predict_logits(r, x_tf, device="cpu") for r in refs]
    refs_tr = [predict_logits(r, x_tr, device="cpu") for r in refs]

    # r_f: mean reference softmax over T_f, forget mass removed and renormalised.
    per_ref = torch.stack([torch.softmax(lg.double(), 1).mean(0) for lg in refs_tf])
    per_ref[:, f] = 0.0
    ref_tops = [int(p.argmax()) for p in per_ref]
    r = per_ref.mean(0)
    r = r / r.sum()
    ref_top = int(r.argmax())
    loo = [tv_to_references(refs_tf[i], refs_tf[:i] + refs_tf[i + 1:])
           for i in range(len(refs))] if len(refs) > 1 else [float("nan")]
    res = ClassResult(dataset, f, original_seed, ref_top, float(r[ref_top]), float(np.mean(loo)),
                      float(np.mean([accuracy(lg, y_tr) for lg in refs_tr])), ref_tops)

    k = ds.num_classes
    for source in (*SIMILARITY_SOURCES, UNIFORM):
        if source == UNIFORM:
            s = torch.full((k,), 1.0 / (k - 1), dtype=torch.float64)
            s[f] = 0.0
        else:
            s = class_similarity(original, data, source)[f].double()
        top = int(s.argmax())
        res.sim[source] = {"tv": tv_between_distributions(s, r), "top": top,
                           "match": source != UNIFORM and top == ref_top,
                           "max_s": float(s.max())}

    res.runs["original"] = _evaluate(original, split, refs_tf, refs_tr)
    done: dict[tuple[str, float, float], float] = {}
    default = TRWParams()
    for source in SIMILARITY_SOURCES:
        model = _unlearn(cfg, "trw", dataset, original, data, {"similarity": source})
        res.runs[f"trw[{source}]"] = _evaluate(model, split, refs_tf, refs_tr)
        done[(source, default.beta, default.tau)] = res.runs[f"trw[{source}]"]["tv_tf"]
    res.runs["rwft"] = _evaluate(_unlearn(cfg, "rwft", dataset, original, data, {}),
                                 split, refs_tf, refs_tr)

    if cfg.sweep:  # beta at the default tau, then tau at the default beta
        grid = [(s, b, default.tau) for s in cfg.sweep_sources for b in cfg.betas]
        grid += [(s, default.beta, t) for s in cfg.sweep_sources if s != "confusion"
                 for t in cfg.taus]
        for source, beta, tau in grid:
            key = (source, beta, tau)
            if key not in done:
                if beta == 0:  # no tilt: every source gives RWFT's target
                    done[key] = res.runs["rwft"]["tv_tf"]
                else:
                    model = _unlearn(cfg, "trw", dataset, original, data,
                                     {"similarity": source, "beta": repr(beta),
                                      "tau": repr(tau)})
                    done[key] = tv_to_references(predict_logits(model, x_tf, device="cpu"),
                                                 refs_tf)
            res.sweep[f"{source}|{beta:g}|{tau:g}"] = done[key]
    res.seconds = time.perf_counter() - start
    res.trained = _TRAINED[0] - trained0
    return res


def _progress(res: ClassResult) -> str:
    sims = " ".join(f"{s[:4]}={v['tv']:.2f}{'*' if v['match'] else ''}"
                    for s, v in res.sim.items())
    runs = " ".join(f"{m.replace('trw[', '').rstrip(']')[:4]}={v['tv_tf']:.2f}"
                    for m, v in res.runs.items() if m != "original")
    return (f"[{res.dataset} class {res.forget} original seed {res.original_seed}] "
            f"ref top {res.ref_top} | TV(s,r_f): {sims} "
            f"| TV T_f: {runs} | {res.seconds:.0f}s")


def _init_worker() -> None:
    torch.set_num_threads(1)


# ------------------------------------------------------------------ the report

def _fmt(values: list[float], std: bool = True, digits: int = 3) -> str:
    a = np.asarray(values, dtype=float)
    if std and len(a) > 1:
        return f"{a.mean():.{digits}f} ± {a.std(ddof=0):.{digits}f}"
    return f"{a.mean():.{digits}f}"


def _worst(results: list[ClassResult], get) -> str:
    vals = [get(r) for r in results]
    i = int(np.argmax(vals))
    return f"{results[i].forget} ({vals[i]:.2f})"


def _methods() -> list[str]:
    return [f"trw[{s}]" for s in SIMILARITY_SOURCES] + ["rwft", "original"]


def summary_table(by_ds: dict[str, list[ClassResult]]) -> list[str]:
    out = ["| dataset | classes | source | TV(s, r_f) | top-1 match | TRW: TV to refs on T_f "
           "| TRW closer than RWFT | TRW: TV on T_r | TRW: TA_r (%) | TRW: Acc_f (%) |",
           "|---" * 10 + "|"]
    groups = dict(by_ds)
    datasets = sorted({r.dataset for rs in by_ds.values() for r in rs})
    for name in datasets:  # a dataset run with several original seeds: pool them too
        rows = [r for rs in by_ds.values() for r in rs if r.dataset == name]
        if len({r.original_seed for r in rows}) > 1:
            groups[f"{name}, seeds pooled"] = rows
    if len(datasets) > 1:  # every (dataset, class) pooled, each class weighing the same
        groups["all (pooled)"] = [r for results in by_ds.values() for r in results]
    for name, results in groups.items():
        n = len(results)
        for source in (*SIMILARITY_SOURCES, UNIFORM, "rwft"):
            if source == "rwft":
                tv_s, match, key = "—", "—", "rwft"
                label = "rwft (β = 0)"
            else:
                tv_s = _fmt([r.sim[source]["tv"] for r in results], std=False)
                match = ("—" if source == UNIFORM
                         else f"{sum(r.sim[source]['match'] for r in results)}/{n}")
                key, label = f"trw[{source}]", source
            if key not in results[0].runs:
                cells = ["—"] * 5
            else:
                wins = ("—" if key == "rwft" else
                        f"{sum(r.runs[key]['tv_tf'] < r.runs['rwft']['tv_tf'] for r in results)}"
                        f"/{n}")
                cells = [_fmt([r.runs[key][m] for r in results], std=False, digits=d)
                         for m, d in (("tv_tf", 3), ("tv_tr", 3), ("ta_r", 1), ("acc_f", 1))]
                cells.insert(1, wins)
            out.append(f"| {name} | {n} | {label} | {tv_s} | {match} | " + " | ".join(cells)
                       + " |")
    return out


def dataset_section(label: str, results: list[ClassResult]) -> list[str]:
    n = len(results)
    name = results[0].dataset
    ds = load_dataset(name)
    recipe = default_recipe(name)
    lines = [f"### {label}", "",
             f"Model `{DATASETS[name].default_model}`, recipe {recipe.to_dict()}; "
             f"{len(ds.y_train)} train / {len(ds.y_test)} test samples; forget classes "
             f"{[r.forget for r in results]}; references: TA_r "
             f"{_fmt([r.ref_ta_r for r in results], std=False, digits=1)} %, "
             f"leave-one-out TV between references on T_f "
             f"{_fmt([r.ref_loo_tv for r in results], std=False)} (the noise floor), "
             f"mass of r_f on its top neighbour {_fmt([r.ref_mass_top for r in results])}.",
             "", "Similarity against the references' forget distribution (lower TV is "
             "better; worst = the class with the largest TV):", "",
             "| source | TV(s, r_f) mean ± std | top-1 match | worst class | mean max_c s_c |",
             "|---|---|---|---|---|"]
    for source in (*SIMILARITY_SOURCES, UNIFORM):
        tvs = [r.sim[source]["tv"] for r in results]
        match = ("—" if source == UNIFORM
                 else f"{sum(r.sim[source]['match'] for r in results)}/{n}")
        lines.append(f"| {source} | {_fmt(tvs)} | {match} | "
                     f"{_worst(results, lambda r, s=source: r.sim[s]['tv'])} | "
                     f"{_fmt([r.sim[source]['max_s'] for r in results], std=False, digits=2)} |")
    lines += ["", "Unlearned model against the references (default TRW hyperparameters, "
              "seed 0; `original` = no unlearning):", "",
              "| method | TV to refs on T_f | worst class (T_f) | TV on T_r | TA_r (%) "
              "| Acc_f (%) |", "|---|---|---|---|---|---|"]
    for m in _methods():
        v = {k: [r.runs[m][k] for r in results] for k in ("tv_tf", "tv_tr", "ta_r", "acc_f")}
        lines.append(f"| {m} | {_fmt(v['tv_tf'])} | "
                     f"{_worst(results, lambda r, m=m: r.runs[m]['tv_tf'])} | "
                     f"{_fmt(v['tv_tr'], std=False)} | {_fmt(v['ta_r'], std=False, digits=1)} | "
                     f"{_fmt(v['acc_f'], std=False, digits=1)} |")
    head = " | ".join(f"{s}: TV(s,r) / top" for s in SIMILARITY_SOURCES)
    runs = " | ".join(f"{m}" for m in _methods()[:-1])
    lines += ["", "Per class (TV(s, r_f) with s's top class, ✓ = same top neighbour as the "
              "references; then TV to the references on T_f after unlearning):", "",
              f"| f | refs' top (mass; each ref's top) | {head} | uniform | {runs} |",
              "|---" * (3 + len(SIMILARITY_SOURCES) + len(_methods()) - 1) + "|"]
    for r in results:
        cells = [f"{r.sim[s]['tv']:.2f} / {r.sim[s]['top']}{' ✓' if r.sim[s]['match'] else ''}"
                 for s in SIMILARITY_SOURCES]
        cells.append(f"{r.sim[UNIFORM]['tv']:.2f}")
        cells += [f"{r.runs[m]['tv_tf']:.2f}" for m in _methods()[:-1]]
        tops = "/".join(map(str, r.ref_tops))
        lines.append(f"| {r.forget} | {r.ref_top} ({r.ref_mass_top:.2f}; {tops}) | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def sweep_section(name: str, results: list[ClassResult], cfg: Config) -> list[str]:
    default = TRWParams()
    n = len(results)
    lines = [f"### Sensitivity on {name} (TV to the references on T_f, mean over {n} classes)",
             "", f"beta at tau = {default.tau:g} (beta = 0 is RWFT whatever the source; the "
             f"paper's beta is {default.beta:g}):", "",
             "| source | " + " | ".join(f"β = {b:g}" for b in cfg.betas) + " |",
             "|---" * (1 + len(cfg.betas)) + "|"]

    def mean(source: str, beta: float, tau: float) -> float:
        return float(np.mean([r.sweep[f"{source}|{beta:g}|{tau:g}"] for r in results]))

    for s in cfg.sweep_sources:
        mark = " (default)" if s == default.similarity else ""
        lines.append(f"| {s}{mark} | "
                     + " | ".join(f"{mean(s, b, default.tau):.3f}" for b in cfg.betas) + " |")
    cos = [s for s in cfg.sweep_sources if s != "confusion"]
    if cos and cfg.taus:
        lines += ["", f"tau at beta = {default.beta:g} (tau only affects the cosine sources):",
                  "", "| source | " + " | ".join(f"τ = {t:g}" for t in cfg.taus) + " |",
                  "|---" * (1 + len(cfg.taus)) + "|"]
        for s in cos:
            lines.append(f"| {s} | "
                         + " | ".join(f"{mean(s, default.beta, t):.3f}" for t in cfg.taus)
                         + " |")
    return lines + [""]


def correlation_line(by_ds: dict[str, list[ClassResult]]) -> str:
    from scipy.stats import spearmanr

    xs, ys = [], []
    for results in by_ds.values():
        for r in results:
            for s in SIMILARITY_SOURCES:
                xs.append(r.sim[s]["tv"])
                ys.append(r.runs[f"trw[{s}]"]["tv_tf"])
    rho = spearmanr(xs, ys).statistic if len(xs) > 2 else float("nan")
    return (f"Across all {len(xs)} (row, source) cells, the Spearman correlation "
            f"between TV(s, r_f) and TRW's TV to the references on T_f is {rho:.2f}.")


def paired_line(by_ds: dict[str, list[ClassResult]]) -> str:
    """Per (dataset, class) comparison of each source with the paper's reading."""
    pooled = [r for results in by_ds.values() for r in results]
    parts = []
    for s in SIMILARITY_SOURCES:
        if s == "weights":
            continue
        d_sim = [r.sim[s]["tv"] - r.sim["weights"]["tv"] for r in pooled]
        d_run = [r.runs[f"trw[{s}]"]["tv_tf"] - r.runs["trw[weights]"]["tv_tf"] for r in pooled]
        parts.append(f"`{s}`: s closer to r_f in {sum(d < 0 for d in d_sim)}/{len(pooled)} "
                     f"(mean paired ΔTV {np.mean(d_sim):+.3f}), TRW closer to the references "
                     f"in {sum(d < 0 for d in d_run)}/{len(pooled)} (mean ΔTV "
                     f"{np.mean(d_run):+.3f})")
    return ("Paired against `weights` over all rows (one per dataset, original model and "
            "forget class; negative Δ = better than weights): " + "; ".join(parts) + ".")


def _markers(block: str) -> tuple[str, str]:
    return (f"<!-- BEGIN GENERATED [{block}] by scripts/similarity_ablation.py: "
            "do not edit by hand -->", f"<!-- END GENERATED [{block}] -->")


def render(by_ds: dict[str, list[ClassResult]], cfg: Config, command: str, seconds: float,
           timing: dict[str, float], trained: int, block: str, title: str) -> str:
    default = TRWParams()
    seeds = sorted({r.original_seed for rs in by_ds.values() for r in rs})
    pooled = [r for rs in by_ds.values() for r in rs]
    n_models = (len({(r.dataset, r.original_seed) for r in pooled})
                + cfg.references * len({(r.dataset, r.forget) for r in pooled}))
    lines = [_markers(block)[0], "", f"## {title}", "",
             "Command (from the repository root):", "", "```", command, "```", "",
             f"Wall time: {seconds / 60:.1f} min on {torch.get_num_threads()} CPU thread(s) "
             "per process ("
             + ", ".join(f"{k}: {v / 60:.1f} min" for k, v in timing.items())
             + f"); {trained} of the {n_models} models were trained in this run, "
             f"{n_models - trained} loaded from the cache. "
             f"torch {torch.__version__}, {cfg.references} references per class "
             f"(seeds {REFERENCE_SEED0}..{REFERENCE_SEED0 + cfg.references - 1}), original "
             f"seed(s) {', '.join(map(str, seeds))}, unlearning seed {UNLEARN_SEED}. "
             "TRW defaults: beta = "
             f"{default.beta:g}, tau = {default.tau:g}, pca_k = {default.pca_k} (auto), "
             f"{default.epochs} epochs, lr {default.lr:g}.", "",
             "r_f = mean over references and over T_f of the references' softmax, forget "
             "class removed and renormalised. TV(s, r_f) = ½ Σ_c |s_c − r_f,c|. "
             "'TV to refs' = tv_to_references: mean over samples of the TV between the "
             "unlearned model's softmax and the mean softmax of the references. Acc_f is "
             "accuracy on D_f (train forget samples).", "",
             "### Summary per dataset (means over forget classes)", ""]
    lines += summary_table(by_ds)
    lines += ["", paired_line(by_ds), "", correlation_line(by_ds), ""]
    for name, results in by_ds.items():
        lines += dataset_section(name, results)
    if cfg.sweep:
        for name, results in by_ds.items():
            if results and results[0].sweep:
                lines += sweep_section(name, results, cfg)
    lines += [_markers(block)[1]]
    return "\n".join(lines) + "\n"


def write_doc(path: Path, generated: str, block: str) -> str:
    """Replace the generated block of `path` (or create the file around it)."""
    begin, end = _markers(block)
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            tail = rest.split(end, 1)[1]
            text = head + generated.rstrip("\n") + tail
        else:
            text = text.rstrip("\n") + "\n\n" + generated
    else:
        text = ("# TRW similarity source: ablation\n\n"
                "Generated by `scripts/similarity_ablation.py`; add the conclusion outside "
                "the generated block.\n\n" + generated)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


# ------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist-5k", "mnist1d"])
    ap.add_argument("--classes", nargs="+", type=int, default=list(range(10)),
                    help="forget classes (each forgotten on its own)")
    ap.add_argument("--classes-for", nargs="*", default=[], metavar="DATASET=C,C,...",
                    help="per-dataset override of --classes, e.g. mnist1d=0,1,2,3,4")
    ap.add_argument("--references", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("runs/ablation-cache"))
    ap.add_argument("--out", type=Path, default=Path("docs/trw_similarity.md"))
    ap.add_argument("--workers", type=int, default=1, help="processes (at most 2 here)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sweep-datasets", nargs="*", default=["digits"],
                    help="datasets that also get the beta and tau sweeps")
    ap.add_argument("--sweep-sources", nargs="+", default=list(SIMILARITY_SOURCES),
                    choices=SIMILARITY_SOURCES)
    ap.add_argument("--betas", nargs="+", type=float, default=[0, 1, 3, 10, 30])
    ap.add_argument("--taus", nargs="+", type=float, default=[0.1, 0.3, 1.0])
    ap.add_argument("--original-seeds", nargs="+", type=int, default=[0],
                    help="seeds of the original model (the references are shared)")
    ap.add_argument("--block", default="main",
                    help="name of the generated block of --out that this run replaces")
    ap.add_argument("--title", default="Measured results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.references < 1:
        ap.error("--references must be >= 1")
    for name in args.datasets:
        if name not in DATASETS or not DATASETS[name].embedded:
            ap.error(f"'{name}' is not an embedded dataset")
    per_ds = {name: list(args.classes) for name in args.datasets}
    for item in args.classes_for:
        name, _, cs = item.partition("=")
        if name not in per_ds or not cs:
            ap.error(f"bad --classes-for '{item}'")
        per_ds[name] = [int(c) for c in cs.split(",")]

    command = shlex.join([".venv/bin/python", "scripts/similarity_ablation.py",
                          *(sys.argv[1:] if argv is None else argv)])
    start = time.perf_counter()
    timing: dict[str, float] = {}
    by_ds: dict[str, list[ClassResult]] = {}
    for name in args.datasets:
        cfg = Config(args.cache, args.references, args.device,
                     name in args.sweep_datasets, tuple(args.betas), tuple(args.taus),
                     tuple(args.sweep_sources))
        for seed in args.original_seeds:
            label = name if len(args.original_seeds) == 1 else f"{name}, original seed {seed}"
            t0 = time.perf_counter()
            cached_model(cfg, name, (), seed)  # once, before any worker needs it
            results: list[ClassResult] = []
            if args.workers > 1:
                with ProcessPoolExecutor(max_workers=args.workers,
                                         initializer=_init_worker) as pool:
                    futures = [pool.submit(run_class, cfg, name, f, seed) for f in per_ds[name]]
                    for fut in futures:
                        results.append(fut.result())
                        print(_progress(results[-1]), flush=True)
            else:
                for f in per_ds[name]:
                    results.append(run_class(cfg, name, f, seed))
                    print(_progress(results[-1]), flush=True)
            by_ds[label] = results
            timing[label] = time.perf_counter() - t0
            print(f"== {label}: {timing[label] / 60:.1f} min", flush=True)

    seconds = time.perf_counter() - start
    sweep_cfg = Config(args.cache, args.references, args.device, bool(args.sweep_datasets),
                       tuple(args.betas), tuple(args.taus), tuple(args.sweep_sources))
    trained = _TRAINED[0] + sum(r.trained for rs in by_ds.values() for r in rs)
    if args.workers <= 1:  # in-process tasks already counted in _TRAINED
        trained = _TRAINED[0]
    generated = render(by_ds, sweep_cfg, command, seconds, timing, trained, args.block,
                       args.title)
    write_doc(args.out, generated, args.block)
    print(generated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
