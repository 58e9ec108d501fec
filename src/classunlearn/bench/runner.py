"""`classunlearn bench`: plan the study, run its units (cached, resumable, parallel), compute
every metric from stored logits, and write results.db, results.json/csv and the report."""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from classunlearn._version import __version__
from classunlearn.audit.basic import avg_gap
from classunlearn.audit.ulira import ulira_leave_one_out
from classunlearn.bench.executors import make_executor
from classunlearn.bench.store import Store, unit_key
from classunlearn.bench.summary import GAP_KEYS, summarise, write_text_atomic
from classunlearn.bench.units import StudyContext, unit_method, unit_shadows, unit_train
from classunlearn.data import DATASETS, ForgetSplit, load_dataset, parse_forget_classes
from classunlearn.errors import UserError
from classunlearn.evaluate import (
    SplitLogits,
    attack_metrics,
    basic_metrics,
    nn_classes,
    reference_mia_scores,
)
from classunlearn.methods import make_params
from classunlearn.models import build_model
from classunlearn.train import default_recipe, override, show_progress

# What `--methods all` runs: every registered baseline plus TRW once per similarity source
# worth comparing (docs/trw_similarity.md) and the two TRW-2R readings.
ALL_METHODS = ["retrain", "original", "ft", "rl", "ga", "bs", "be", "l1-sparse", "salun",
               "scrub", "ssd", "unsir", "rwft", "trw", "trw[weights]", "trw[features]",
               "trw-2r-budget", "trw-2r-oracle"]
@dataclass
class BenchConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    model: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    forget_classes: list[list[str]] = field(default_factory=lambda: [["3"]])
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    seeds: int = 3
    shadows: int = 16
    references: int = 3
    executor: str = "process"
    address: str | None = None
    workers: int | None = None
    gpus_per_task: float = 0.0  # Ray only: GPUs each task asks the cluster for
    quick: bool = False
    epochs: int | None = None
    method_params: dict[str, dict[str, str]] = field(default_factory=dict)
    out: str = "runs/bench"

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise UserError(f"unknown dataset '{self.dataset}'; choose one of: "
                            f"{', '.join(DATASETS)}")
        if self.seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {self.seeds}")
        if self.shadows == 1 or self.shadows < 0 or self.shadows % 2:
            raise UserError(f"--shadows must be 0 (no U-LiRA) or an even number >= 2, got "
                            f"{self.shadows}")
        if self.references < 1:
            raise UserError(f"--references must be >= 1 (MIA-NN and TV need retrained "
                            f"references), got {self.references}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise UserError("--methods must list each method once, e.g. --methods trw,ft")
        for spec in self.methods:
            make_params(spec, self.dataset, self.method_params.get(spec))
        unused = sorted(set(self.method_params) - set(self.methods))
        if unused:
            raise UserError(f"--set names method(s) {unused} that this bench does not run; "
                            "add them to --methods or drop the --set")
        # The data, the forget sets and the model are checked here, before any work starts,
        # so bad input never leaves a half-written study behind.
        ds = load_dataset(self.dataset, self.data_dir)
        studies = [parse_forget_classes(f, ds) for f in self.forget_classes]
        for i, fc in enumerate(studies):
            if fc in studies[:i]:
                raise UserError(f"forget classes {list(fc)} are given twice; list each study once")
            ForgetSplit(ds, fc)  # every forget class has training samples
            empty = [c for c in fc if ds.class_counts("test")[c] == 0]
            if empty:
                raise UserError(f"forget class {empty[0]} has no test samples in {ds.name}; "
                                "bench measures test accuracy on it, add test samples or pick "
                                "another class")
        build_model(self.model or DATASETS[self.dataset].default_model, ds.input_shape,
                    ds.num_classes, **self.model_kwargs)
        override(default_recipe(self.dataset), epochs=self.epochs)  # checks --epochs


@dataclass
class BenchResult:
    summary: dict
    computed: int
    reused: int
    failed: dict
    out: Path
    stage_s: dict = field(default_factory=dict)  # wall seconds per stage of this run


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> BenchResult:
    cfg.validate()
    executor = make_executor(cfg.executor, cfg.address, cfg.workers,  # Ray: installed, reachable
                             cfg.gpus_per_task)
    try:
        store = Store(cfg.out)  # fails early if --out is not writable
    except UserError:
        executor.close()
        raise
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    model = cfg.model or DATASETS[cfg.dataset].default_model
    recipe = default_recipe(cfg.dataset)
    if cfg.quick:
        recipe = override(recipe, epochs=max(1, recipe.epochs // 2))
    recipe = override(recipe, epochs=cfg.epochs)
    shadows = min(cfg.shadows, 8) if cfg.quick else cfg.shadows
    store.put_meta("run", {"version": __version__, "torch": torch.__version__,
                           "python": platform.python_version(), "device": "cpu",
                           "config": cfg.__dict__, "started": time.time()})
    store.clear_metrics()  # recomputed below from stored logits: cheap, and never stale
    counts = {"computed": 0, "reused": 0}
    results, failed = {}, {}
    try:
        for forget in cfg.forget_classes:
            fc = parse_forget_classes(forget, ds)
            ctx = StudyContext(cfg.dataset, cfg.data_dir, model, cfg.model_kwargs,
                               recipe.to_dict(), fc)
            study = f"{cfg.dataset}/{model}/forget={'-'.join(map(str, fc))}"
            log(f"study {study}: {len(cfg.methods)} methods x {cfg.seeds} seeds, "
                f"{shadows} shadows, {cfg.references} references")
            res, fail = _run_study(cfg, ctx, study, shadows, store, executor, counts, log)
            results[study] = res
            failed.update(fail)
    finally:
        executor.close()
    store.put_meta("details", results)
    store.put_meta("failed", failed)
    summary = summarise(store)
    write_exports(store, summary, failed)
    from classunlearn.bench.report import write_report

    started = time.perf_counter()
    write_report(Path(cfg.out), summary, failed, details=results)
    stages = {**counts.get("stage_s", {}), "report": time.perf_counter() - started}
    store.put_meta("stage_times", stages)
    return BenchResult(summary, counts["computed"], counts["reused"], failed, Path(cfg.out),
                       stages)


def _run_units(store: Store, executor, units: list[tuple[str, str, Callable, tuple]],
               counts: dict, log: Callable[[str], None], desc: str) -> dict[str, tuple]:
    """Run the units whose key is not in the store; return every unit's (arrays, info)."""
    out: dict[str, tuple] = {}
    todo = []
    for key, label, fn, args in units:
        found = store.load(key)
        if found is not None:
            out[key] = found
            counts["reused"] += 1
        else:
            todo.append((key, label, fn, args))
    if not todo:
        return out
    started = time.perf_counter()
    bar = tqdm(total=len(todo), desc=desc, unit="unit", disable=not show_progress())
    tasks = [(fn, args) for _, _, fn, args in todo]
    for i, (arrays, info) in executor.run(tasks):
        key, label = todo[i][0], todo[i][1]
        info = {**info, "label": label, "kind": todo[i][2].__name__.removeprefix("unit_")}
        store.save(key, arrays, info)
        out[key] = (arrays, info)
        counts["computed"] += 1
        bar.update()
        msg = f"  done {label} ({info.get('wall_s', info.get('runtime_s', 0.0)):.1f} s)"
        log(msg + (f" FAILED: {info['failed']}" if info.get("failed") else ""))
    bar.close()
    counts.setdefault("stage_s", {}).setdefault(desc, 0.0)
    counts["stage_s"][desc] += time.perf_counter() - started
    return out


def _run_study(cfg: BenchConfig, ctx: StudyContext, study: str, n_shadows: int, store: Store,
               executor, counts: dict, log: Callable[[str], None]) -> tuple[dict, dict]:
    base = {"v": 1, **ctx.spec()}
    no_forget = {**base, "forget_classes": None}  # originals do not depend on the forget set
    originals = {s: unit_key({**no_forget, "unit": "original", "seed": s})
                 for s in range(cfg.seeds)}
    refs = {j: unit_key({**base, "unit": "reference", "seed": 1000 + j})
            for j in range(cfg.references)}
    stage_a = [(k, f"original seed {s}", unit_train, (ctx, s, False))
               for s, k in originals.items()]
    stage_a += [(k, f"reference {j}", unit_train, (ctx, 1000 + j, True)) for j, k in refs.items()]
    done = _run_units(store, executor, stage_a, counts, log, "train")
    stage_shadows: list = []
    sh_orig, sh_ret = {}, {}
    if n_shadows:
        for s in range(cfg.seeds):
            sh_orig[s] = unit_key({**no_forget, "unit": "shadows", "n": n_shadows, "seed": s,
                                   "exclude": False})
            sh_ret[s] = unit_key({**base, "unit": "shadows", "n": n_shadows, "seed": s,
                                  "exclude": True})
            stage_shadows.append((sh_orig[s], f"{n_shadows} shadow originals seed {s}",
                                  unit_shadows, (ctx, 2000 + s, n_shadows, False)))
            stage_shadows.append((sh_ret[s], f"{n_shadows} shadow retrains seed {s}",
                                  unit_shadows, (ctx, 3000 + s, n_shadows, True)))
    done.update(_run_units(store, executor, stage_shadows, counts, log, "shadows"))
    ref_arrays = [done[k][0] for k in refs.values()]

    stage_b, method_keys = [], {}
    for spec in cfg.methods:
        _, params = make_params(spec, ctx.dataset, cfg.method_params.get(spec))
        for s in range(cfg.seeds):
            key = unit_key({**base, "unit": "method", "method": spec, "params": params.to_dict(),
                            "seed": s, "original": originals[s], "shadows": sh_orig.get(s),
                            "refs": list(refs.values())})
            method_keys[(spec, s)] = key
            stage_b.append((key, f"{spec} seed {s}", unit_method,
                            (ctx, spec, params.to_dict(), s, done[originals[s]][0],
                             done[sh_orig[s]][0] if n_shadows else None, ref_arrays)))
    done.update(_run_units(store, executor, stage_b, counts, log, "unlearn"))
    started = time.perf_counter()
    out = _study_metrics(cfg, ctx, study, store, done, method_keys, refs, sh_orig, sh_ret)
    counts.setdefault("stage_s", {}).setdefault("audit", 0.0)
    counts["stage_s"]["audit"] += time.perf_counter() - started
    return out


def _split_logits(arrays: dict, split: ForgetSplit) -> SplitLogits:
    tr = torch.from_numpy(np.array(arrays["logits_train"]))
    te = torch.from_numpy(np.array(arrays["logits_test"]))
    return SplitLogits(tr[split.train_forget], tr[split.train_retain], te[split.test_forget],
                       te[split.test_retain])


def _study_metrics(cfg: BenchConfig, ctx: StudyContext, study: str, store: Store, done: dict,
                   method_keys: dict, refs: dict, sh_orig: dict, sh_ret: dict
                   ) -> tuple[dict, dict]:
    split, _ = ctx.load()
    ref_logits = [_split_logits(done[k][0], split) for k in refs.values()]
    nn = nn_classes(split, ref_logits)
    ref_mia = reference_mia_scores(split, ref_logits, nn)
    per_method: dict[str, dict[int, dict]] = {}
    failed: dict[str, str] = {}
    details: dict = {"nn_class": nn, "forget_classes": list(split.forget_classes),
                     "class_names": split.dataset.class_names, "methods": {}}
    for (spec, s), key in tqdm(method_keys.items(), desc="audit", disable=not show_progress()):
        arrays, info = done[key]
        if info.get("failed"):
            failed[f"{study} {spec}"] = info["failed"]
            continue
        lg = _split_logits(arrays, split)
        m = basic_metrics(lg, split, ref_logits)
        m.update(attack_metrics(lg, split, ref_logits, nn, seed=s, reference_mia=ref_mia))
        m["runtime_s"] = info["runtime_s"]
        if "phi" in arrays and s in sh_ret:
            # shadow originals were trained on halves of the whole train split (pool = all),
            # so their mask columns at D_f's indices say which forget samples each one saw
            in_mask = done[sh_orig[s]][0]["mask"][:, split.train_forget.numpy()].astype(bool)
            u = ulira_leave_one_out(arrays["phi"], in_mask, done[sh_ret[s]][0]["phi"])
            m.update(ulira=u.accuracy_best, ulira_at_zero=u.accuracy_at_zero, ulira_auc=u.auc,
                     ulira_tpr_at_1fpr=u.tpr_at_1pct_fpr)
            details["methods"].setdefault(spec, {})["ulira_roc"] = [u.roc_fpr, u.roc_tpr]
        per_method.setdefault(spec, {})[s] = m
        forget_probs = torch.softmax(lg.test_forget, 1).mean(0).tolist()
        details["methods"].setdefault(spec, {})["forget_probs"] = forget_probs
    retrain = per_method.get("retrain", {})
    for spec, seeds in per_method.items():
        for s, m in seeds.items():
            if s in retrain:
                m["avg_gap"] = avg_gap(m, retrain[s], GAP_KEYS)
                m["runtime_ratio"] = m["runtime_s"] / retrain[s]["runtime_s"]
            store.put_metrics(study, spec, s, {k: v for k, v in m.items()
                                              if isinstance(v, float | int)})
    details["ref_forget_probs"] = np.mean(
        [torch.softmax(r.test_forget, 1).mean(0).numpy() for r in ref_logits], 0).tolist()
    return details, failed


def write_exports(store: Store, summary: dict, failed: dict) -> None:
    out = store.out
    results = {**summary, "failed": failed, "run": store.get_meta("run")}
    write_text_atomic(out / "results.json", json.dumps(results, indent=2, default=str))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["study", "method", "seed", "metric", "value"])
    w.writerows(store.metrics())
    write_text_atomic(out / "results.csv", buf.getvalue())
