"""`classunlearn bench`: plan the study, run its units (cached, resumable, parallel), compute
every metric from stored logits, and write results.db, results.json/csv and the report."""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from classunlearn._version import __version__
from classunlearn.audit.basic import accuracy, avg_gap
from classunlearn.audit.mia_nn import DEFAULT_FOLDS
from classunlearn.audit.mia_nn import FEATURES as MIA_FEATURES
from classunlearn.audit.svc_mia import FEATURES as SVC_FEATURES
from classunlearn.audit.ulira import check_shadow_count
from classunlearn.bench.executors import make_executor
from classunlearn.bench.store import Store
from classunlearn.bench.summary import GAP_KEYS, summarise, write_text_atomic
from classunlearn.bench.units import (
    RESULTS_FORMAT,
    SEED_ORACLE_REFERENCE,
    SEED_REFERENCE,
    SEED_RETRAIN,
    SEED_SHADOW_ORIGINALS,
    SEED_SHADOW_RETRAINS,
    StudyContext,
    method_key,
    original_key,
    reference_key,
    replay_key,
    shadow_keys,
    unit_method,
    unit_replay,
    unit_shadows,
    unit_train,
)
from classunlearn.data import (
    DATASETS,
    ForgetSplit,
    check_data_dir,
    dataset_fingerprint,
    describe_classes,
    load_dataset,
    parse_forget_classes,
    share_dataset,
    subset_dataset,
)
from classunlearn.errors import UserError
from classunlearn.evaluate import (
    SplitLogits,
    attack_metrics,
    basic_metrics,
    nn_classes,
    reference_mia_scores,
    ulira_metrics,
)
from classunlearn.methods import make_params
from classunlearn.models import build_model, canonical_model_name, model_source_sha256
from classunlearn.readings import attack_features, get_readings
from classunlearn.train import Recipe, default_recipe, override, show_progress
from classunlearn.tune import (
    apply_tuning,
    bench_tune_units,
    grid_keys,
    is_paper_method,
    study_retain_warnings,
)

# What `--methods all` runs: every registered baseline plus TRW once per similarity source
# worth comparing (docs/trw_similarity.md) and the two TRW-2R readings.
ALL_METHODS = ["retrain", "original", "ft", "rl", "ga", "bs", "be", "l1-sparse", "salun",
               "scrub", "ssd", "unsir", "eu-k", "cf-k", "rwft", "trw", "trw[weights]",
               "trw[features]", "trw-2r-budget", "trw-2r-oracle"]
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
    # the study's training recipe (Recipe.to_dict()); None: the dataset's default recipe.
    # --quick and epochs apply on top of it (study_recipe)
    recipe: dict | None = None
    method_params: dict[str, dict[str, str]] = field(default_factory=dict)
    # --tune: choose lr/epochs per method first (classunlearn.tune). True or "all": every
    # tunable method; "baselines": all but the paper's own methods (TRW and its variants,
    # RWFT), which keep the budget their reading set gives them
    tune: bool | str = False
    # the reading set (classunlearn.readings: "default" or "paper"); the two flags below win
    # over its attack features
    readings: str = "default"
    mia_feature: str | None = None  # --mia-feature (MIA-NN's feature kind)
    svc_feature: str | None = None  # --svc-feature (SVC-MIA's feature)
    out: str = "runs/bench"
    # --subset / --test-subset: train (test) on a stratified subset of that many images,
    # drawn with subset_seed; part of every unit key. None: the whole split
    subset: int | None = None
    test_subset: int | None = None
    subset_seed: int = 0
    preset: str | None = None  # only recorded: the preset's values are already in the fields
    # how every model trained from scratch (originals, references, shadows, the retrain row)
    # is trained beyond the recipe (classunlearn.trainers, docs/own_training.md): a plug-in
    # trainer MODULE:FUNCTION, an init checkpoint (.safetensors) and its prefix map
    # ({checkpoint prefix: model prefix}, or a list of "CKPT=MODEL" strings)
    trainer: str | None = None
    init: str | None = None
    init_map: dict | list | None = None

    def training(self):
        """The study's :class:`classunlearn.trainers.Training` (trainer and init hashed)."""
        from classunlearn.trainers import make_training

        return make_training(study_recipe(self), self.trainer, self.init, self.init_map)

    def load_data(self):
        """The study's data: the dataset, then the subset (classunlearn.data.subset_dataset)."""
        ds = load_dataset(self.dataset, self.data_dir)
        return subset_dataset(ds, self.subset, self.test_subset, self.subset_seed)

    def validate(self) -> None:
        """Raise UserError, before any work starts, on any setting `run_bench` would fail on."""
        self.validate_options()
        self.validate_data()

    def validate_options(self) -> None:
        """The checks that need no data (fast: `run_bench` starts its workers after these)."""
        if self.dataset not in DATASETS:
            raise UserError(f"unknown dataset '{self.dataset}'; choose one of: "
                            f"{', '.join(DATASETS)}")
        check_data_dir(self.dataset, self.data_dir)
        if self.seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {self.seeds}")
        check_shadow_count(self.shadows)
        if self.references < 1:
            raise UserError(f"--references must be >= 1 (MIA-NN and TV need retrained "
                            f"references), got {self.references}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise UserError("--methods must list each method once, e.g. --methods trw,ft")
        get_readings(self.readings)
        for flag, value, allowed in (("--mia-feature", self.mia_feature, MIA_FEATURES),
                                     ("--svc-feature", self.svc_feature, SVC_FEATURES)):
            if value is not None and value not in allowed:
                raise UserError(f"{flag} must be one of {', '.join(allowed)}, got '{value}'")
        if self.tune not in (False, True, "all", "baselines"):
            raise UserError(f"--tune takes 'all' or 'baselines', got '{self.tune}'")
        for spec in self.methods:
            make_params(spec, self.dataset, self.method_params.get(spec),
                        recipe=study_recipe(self), readings=self.readings)
        unused = sorted(set(self.method_params) - set(self.methods))
        if unused:
            raise UserError(f"--set names method(s) {unused} that this bench does not run; "
                            "add them to --methods or drop the --set")
        for flag, n in (("--subset", self.subset), ("--test-subset", self.test_subset)):
            if n is not None and n < 1:
                raise UserError(f"{flag} must be a positive number of images, got {n}")
        study_recipe(self)  # checks --epochs and the recipe
        self.training()  # the trainer imports and the init checkpoint reads

    def attack_features(self) -> tuple[str, str]:
        """(MIA-NN feature, SVC-MIA feature): the flags where given, else the reading set's."""
        return attack_features(self.readings, self.mia_feature, self.svc_feature)

    def validate_data(self) -> None:
        """The data, the forget sets and the model, checked before any work starts, so bad
        input never leaves a half-written study behind."""
        ds = self.load_data()
        studies = [parse_forget_classes(f, ds) for f in self.forget_classes]
        for i, fc in enumerate(studies):
            if fc in studies[:i]:
                raise UserError(f"forget classes {list(fc)} are given twice; list each study once")
            ForgetSplit(ds, fc)  # every forget class has training samples
            few = [c for c, n in enumerate(ds.class_counts("test")) if n < DEFAULT_FOLDS]
            if few and self.test_subset is not None:
                raise UserError(f"--test-subset {self.test_subset} leaves "
                                f"{ds.class_counts('test')[few[0]]} test samples of class "
                                f"{few[0]}; MIA-NN's {DEFAULT_FOLDS} folds need at least "
                                f"{DEFAULT_FOLDS} per class: give at least "
                                f"{DEFAULT_FOLDS * ds.num_classes}")
            empty = [c for c in fc if ds.class_counts("test")[c] == 0]
            if empty:
                raise UserError(f"forget class {empty[0]} has no test samples in {ds.name}; "
                                "bench measures test accuracy on it, add test samples or pick "
                                "another class")
        model = build_model(self.model or DATASETS[self.dataset].default_model, ds.input_shape,
                            ds.num_classes, **self.model_kwargs)
        from classunlearn.trainers import check_shared

        check_shared(self.training(), model)  # the init checkpoint fits the model


@dataclass
class BenchResult:
    summary: dict
    computed: int
    reused: int
    failed: dict
    out: Path
    stage_s: dict = field(default_factory=dict)  # wall seconds per stage of this run


def study_recipe(cfg: BenchConfig) -> Recipe:
    """The one recipe of a study: originals, references, shadows and the `retrain` row."""
    recipe = default_recipe(cfg.dataset) if cfg.recipe is None else Recipe.from_dict(cfg.recipe)
    if cfg.quick:
        recipe = override(recipe, epochs=max(1, recipe.epochs // 2))
    return override(recipe, epochs=cfg.epochs)


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> BenchResult:
    cfg.validate_options()
    executor = make_executor(cfg.executor, cfg.address, cfg.workers,  # Ray: installed, reachable
                             cfg.gpus_per_task)
    executor.start()  # local workers boot while the data loads and is checked
    try:
        cfg.validate_data()
        store = Store(cfg.out)  # fails early if --out is not writable
    except BaseException:  # bad input: end the booting workers, nothing was written
        executor.close()
        raise
    try:  # every exit from here on ends the workers
        ds = load_dataset(cfg.dataset, cfg.data_dir)
        fingerprint = dataset_fingerprint(cfg.dataset, cfg.data_dir)
        # one copy on disk (8-bit images as uint8) that every local worker memory-maps
        shared = share_dataset(ds, Path(cfg.out) / "data" / fingerprint)
        model = canonical_model_name(cfg.model or DATASETS[cfg.dataset].default_model)
        source_sha = model_source_sha256(model) or ""  # plug-in models: keys follow their file
        recipe = study_recipe(cfg)
        training = cfg.training()
        if training.trainer or training.init:
            log(f"every model trained from scratch trains as the original: "
                f"{training.describe()}" + (
                    "; a plug-in trainer cannot be stacked, so shadow sets train one model at "
                    "a time (each set is one unit on the executor)" if training.trainer else ""))
        shadows = min(cfg.shadows, 8) if cfg.quick else cfg.shadows
        store.put_meta("run", {"version": __version__, "results_format": RESULTS_FORMAT,
                               "torch": torch.__version__, "python": platform.python_version(),
                               "config": cfg.__dict__, "recipe": recipe.to_dict(),
                               "data_fingerprint": fingerprint, "started": time.time()})
        counts = {"computed": 0, "reused": 0}
        results, failed, rows = {}, {}, []
        for forget in cfg.forget_classes:
            fc = parse_forget_classes(forget, ds)
            ctx = StudyContext(cfg.dataset, cfg.data_dir, model, cfg.model_kwargs,
                               recipe.to_dict(), fc, fingerprint, source_sha,
                               str(shared),
                               cfg.subset, cfg.test_subset, cfg.subset_seed,
                               **StudyContext.of_training(training))
            study = f"{cfg.dataset}/{model}/forget={'-'.join(map(str, fc))}"
            log(f"study {study}: forget classes {describe_classes(fc, ds.class_names)}; "
                f"{len(cfg.methods)} methods x {cfg.seeds} seeds, "
                f"{shadows} shadows, {cfg.references} references")
            res, fail, study_rows = _run_study(cfg, ctx, study, shadows, store, executor,
                                               counts, log)
            results[study] = res
            failed.update(fail)
            rows += study_rows
        # metrics are recomputed from stored logits on every run (cheap, never stale) and
        # replace the old ones in one transaction: a kill before this line leaves the old
        # results whole
        store.replace_metrics(rows)
        store.put_meta("details", results)
        store.put_meta("failed", failed)
        summary = summarise(store)
        write_exports(store, summary, failed)
        from classunlearn.bench.report import write_report

        started = time.perf_counter()
        # the figures are drawn on the workers, before they are ended
        write_report(Path(cfg.out), summary, failed, details=results, executor=executor)
        stages = {**counts.get("stage_s", {}), "report": time.perf_counter() - started}
        store.put_meta("stage_times", stages)
    finally:
        executor.close()
    return BenchResult(summary, counts["computed"], counts["reused"], failed, Path(cfg.out),
                       stages)


Unit = tuple[str, str, Callable, tuple]  # (key, label, function, arguments)


def run_units(store: Store, executor, units: list[Unit], counts: dict,
              log: Callable[[str], None], desc: str) -> dict[str, tuple]:
    """Run the units whose key is not in the store (or whose stored run FAILED: those are
    retried); return every unit's (arrays, info). The bench and the audit of one checkpoint
    both run their units through here."""
    out: dict[str, tuple] = {}
    todo = []
    for key, label, fn, args in units:
        found = store.load(key)
        if found is not None and not found[1].get("failed"):
            out[key] = found
            counts["reused"] += 1
        else:
            if found is not None:
                log(f"  retrying {label}: it FAILED before ({found[1]['failed']})")
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
               executor, counts: dict, log: Callable[[str], None]
               ) -> tuple[dict, dict, list]:
    originals = {s: original_key(ctx, s) for s in range(cfg.seeds)}
    refs = {j: reference_key(ctx, SEED_REFERENCE + j) for j in range(cfg.references)}
    specs = {spec: make_params(spec, ctx.dataset, cfg.method_params.get(spec),
                               recipe=Recipe.from_dict(ctx.recipe), readings=cfg.readings)
             for spec in cfg.methods}
    mia_feature, svc_feature = cfg.attack_features()
    # An oracle reads retrained models of its own, never the yardstick's references.
    n_oracle = max((p.n_references for c, p in specs.values() if c.oracle), default=0)
    oracle_refs = {j: reference_key(ctx, SEED_ORACLE_REFERENCE + j) for j in range(n_oracle)}
    stage_a = [(k, f"original seed {s}", unit_train, (ctx, s, False))
               for s, k in originals.items()]
    stage_a += [(k, f"reference {j}", unit_train, (ctx, SEED_REFERENCE + j, True))
                for j, k in refs.items()]
    stage_a += [(k, f"oracle's reference {j}", unit_train,
                 (ctx, SEED_ORACLE_REFERENCE + j, True)) for j, k in oracle_refs.items()]
    done = run_units(store, executor, stage_a, counts, log, "train")
    # The references' own audit (their nn class and MIA-NN scores) needs only the references:
    # a driver thread computes it while the workers train the shadows and unlearn (it was
    # a serial second between the stages, both workers idle).
    threads = ThreadPoolExecutor(1, thread_name_prefix="classunlearn-references")
    try:
        reference_audit = threads.submit(_reference_audit, ctx,
                                         [_logit_arrays(done[k][0]) for k in refs.values()],
                                         mia_feature)
        stage_shadows: list = []
        sh_orig, sh_ret = {}, {}
        if n_shadows:
            for s in range(cfg.seeds):
                sh_orig[s], sh_ret[s] = shadow_keys(ctx, n_shadows, s)
                stage_shadows.append((sh_orig[s], f"{n_shadows} shadow originals seed {s}",
                                      unit_shadows, (ctx, SEED_SHADOW_ORIGINALS + s, n_shadows,
                                                     False)))
                stage_shadows.append((sh_ret[s], f"{n_shadows} shadow retrains seed {s}",
                                      unit_shadows, (ctx, SEED_SHADOW_RETRAINS + s, n_shadows,
                                                     True)))
        done.update(run_units(store, executor, stage_shadows, counts, log, "shadows"))
        tuned = None
        if cfg.tune:
            specs, tuned = _tune_study(cfg, ctx, specs, originals, done, store, executor, counts,
                                       log)

        stage_b, method_keys, replay_keys = [], {}, {}
        for spec, (cls, params) in specs.items():
            p = params.to_dict()
            o_keys = list(oracle_refs.values())[:getattr(params, "n_references", 0)] \
                if cls.oracle else []
            o_arrays = [done[k][0] for k in o_keys]
            for s in range(cfg.seeds):
                seed = SEED_RETRAIN + s if cls.follows_recipe else s
                key = method_key(ctx, spec, p, seed, originals[s], o_keys)
                method_keys[(spec, s)] = key
                stage_b.append((key, f"{spec} seed {s}", unit_method,
                                (ctx, spec, p, seed, done[originals[s]][0], o_arrays)))
                if n_shadows:
                    rkey = replay_key(ctx, spec, p, seed, sh_orig[s], o_keys)
                    replay_keys[(spec, s)] = rkey
                    stage_b.append((rkey, f"{spec} on {n_shadows} shadows seed {s}", unit_replay,
                                    (ctx, spec, p, seed, done[sh_orig[s]][0], o_arrays)))
        done.update(run_units(store, executor, stage_b, counts, log, "unlearn"))
        started = time.perf_counter()
        out = _study_metrics(ctx, study, done, method_keys, replay_keys, sh_orig, sh_ret,
                             reference_audit.result(), executor, (mia_feature, svc_feature))
        _retain_check(ctx, out, done, originals, tuned, log)
        counts.setdefault("stage_s", {}).setdefault("audit", 0.0)
        counts["stage_s"]["audit"] += time.perf_counter() - started
        return out
    finally:
        threads.shutdown(wait=True, cancel_futures=True)


def _tune_study(cfg: BenchConfig, ctx: StudyContext, specs: dict, originals: dict,
                done: dict, store: Store, executor, counts: dict, log: Callable[[str], None]
                ) -> tuple[dict, dict]:
    """--tune: tune each tunable method on the seed-0 original (cached units), then give it
    the chosen values; explicit --set values win."""
    explicit = {spec: tune_explicit(cfg, spec) for spec in specs}
    chosen = {spec: v for spec, v in specs.items()
              if not (cfg.tune == "baselines" and is_paper_method(spec))
              and not set(grid_keys(spec)) <= set(explicit[spec])}
    units, keys = bench_tune_units(ctx, chosen, originals[0], done[originals[0]][0])
    done.update(run_units(store, executor, units, counts, log, "tune"))
    tuned_specs, tuned = apply_tuning(chosen, done, keys, explicit, log)
    return {**specs, **tuned_specs}, tuned


def tune_explicit(cfg: BenchConfig, spec: str) -> dict:
    """The values of `spec` that --tune must not change: its --set values and what the
    reading set fixes (the paper's budget is the paper's, not a tuned one)."""
    from classunlearn.methods import parse_spec

    fixed = get_readings(cfg.readings).method_values(parse_spec(spec)[0].name)
    return {**{k: str(v) for k, v in fixed.items()}, **cfg.method_params.get(spec, {})}


def _retain_check(ctx: StudyContext, out: tuple, done: dict, originals: dict,
                  tuned: dict | None, log: Callable[[str], None]) -> None:
    """Warn (log and report) about methods that leave TA_r far below the original's; record
    what --tune chose."""
    details, _, rows = out
    if tuned is not None:
        details["tuned"] = tuned

    def original_ta() -> float:
        split, _ = ctx.load()
        labels = split.part("test_retain")[1]
        return float(np.mean([accuracy(split_logits(done[k][0], split).test_retain, labels)
                              for k in originals.values()]))

    details["warnings"] = study_retain_warnings(rows, original_ta, set(tuned or {}))
    for w in details["warnings"]:
        log(w)


def split_logits(arrays: dict, split: ForgetSplit) -> SplitLogits:
    """A unit's stored logits on the whole train and test splits, cut into D_f, D_r, T_f,
    T_r."""
    tr = torch.from_numpy(np.array(arrays["logits_train"]))
    te = torch.from_numpy(np.array(arrays["logits_test"]))
    return SplitLogits(tr[split.train_forget], tr[split.train_retain], te[split.test_forget],
                       te[split.test_retain])


MIA_FOLD_SEED = 0
"""The bench scores MIA-NN with the same folds for every model and seed of a study."""


def _reference_audit(ctx: StudyContext, ref_arrays: list[dict], mia_feature: str) -> tuple:
    """(the references' arrays, their split logits, the nn class per forget class, their
    MIA-NN scores): what every (method, seed)'s audit compares against."""
    split, _ = ctx.load()
    ref_logits = [split_logits(a, split) for a in ref_arrays]
    nn = nn_classes(split, ref_logits)
    return (ref_arrays, ref_logits, nn,
            reference_mia_scores(split, ref_logits, nn, mia_feature, mia_seed=MIA_FOLD_SEED))


def _study_metrics(ctx: StudyContext, study: str, done: dict, method_keys: dict,
                   replay_keys: dict, sh_orig: dict, sh_ret: dict, reference: tuple,
                   executor, features: tuple[str, str]) -> tuple[dict, dict, list]:
    """Every (method, seed)'s metrics and verdicts. Each is one `audit_one` task on the
    study's executor (the attacks fit many small models: the audit was the stage that ran
    on one core); the results are assembled in a fixed order, so the table does not depend
    on which task finishes first. `reference`: from _reference_audit."""
    split, _ = ctx.load()
    ref_arrays, ref_logits, nn, ref_mia = reference
    failed: dict[str, str] = {}
    versions = {done[k][1].get("version", "unknown") for k in done}
    devices = {done[k][1].get("device", "unknown") for k in done}
    details: dict = {"nn_class": nn, "forget_classes": list(split.forget_classes),
                     "class_names": split.dataset.class_names, "methods": {},
                     "versions": sorted(versions), "devices": sorted(devices)}
    tasks, jobs = [], []
    for (spec, s), key in method_keys.items():
        arrays, info = done[key]
        replay = done.get(replay_keys.get((spec, s)), ({}, {}))
        if info.get("failed") or replay[1].get("failed"):
            failed[f"{study} {spec}"] = info.get("failed") or replay[1]["failed"]
            continue
        shadows = None
        if "phi" in replay[0]:
            shadows = (replay[0]["phi"], np.asarray(done[sh_orig[s]][0]["mask"]),
                       done[sh_ret[s]][0]["phi"], spec == "retrain")
        jobs.append((spec, s, info["runtime_s"]))
        tasks.append((audit_one, (ctx, _logit_arrays(arrays), ref_arrays, nn, ref_mia, s,
                                  shadows, features)))
    results: dict[int, dict] = {}
    for i, res in tqdm(executor.run(tasks), total=len(tasks), desc="audit",
                       disable=not show_progress()):
        results[i] = res
    per_method: dict[str, dict[int, dict]] = {}
    intervals: dict[tuple[str, int], Any] = {}
    for i, (spec, s, runtime) in enumerate(jobs):
        res = results[i]
        m = {**res["metrics"], "runtime_s": runtime, **res.get("ulira_metrics", {})}
        d = details["methods"].setdefault(spec, {"forget_probs": {}, "ulira_roc": {}})
        if "ulira_roc" in res:
            d["ulira_roc"][str(s)] = res["ulira_roc"]
            intervals[(spec, s)] = res["ulira_interval"]
        per_method.setdefault(spec, {})[s] = m
        d["forget_probs"][str(s)] = res["forget_probs"]
    details["verdicts"] = _verdicts(split, per_method, intervals, ref_logits)
    retrain = per_method.get("retrain", {})
    rows = []
    for spec, seeds in per_method.items():
        for s, m in seeds.items():
            if s in retrain:
                m["avg_gap"] = avg_gap(m, retrain[s], GAP_KEYS)
                m["runtime_ratio"] = m["runtime_s"] / retrain[s]["runtime_s"]
            rows += [(study, spec, s, k, float(v)) for k, v in m.items()
                     if isinstance(v, float | int) and not isinstance(v, bool)]
    details["ref_forget_probs"] = np.mean(
        [torch.softmax(r.test_forget, 1).mean(0).numpy() for r in ref_logits], 0).tolist()
    return details, failed, rows


def _logit_arrays(arrays: dict) -> dict:
    """Only what the audit reads of a unit's arrays (tasks ship them to the workers)."""
    return {k: np.asarray(arrays[k]) for k in ("logits_train", "logits_test")}


def audit_one(ctx: StudyContext, arrays: dict, ref_arrays: list[dict], nn: dict,
              ref_mia: dict, seed: int, shadows: tuple | None,
              features: tuple[str, str] = (None, None)) -> dict:
    """One (method, seed)'s audit: accuracies, TV, SVC-MIA and MIA-NN against the
    references, and, with `shadows` = (replay phi, shadow originals' mask, shadow retrains'
    phi, is_retrain), U-LiRA and its bootstrap interval: the null itself for the `retrain`
    method (the same phi, the same call), else the method's own."""
    from classunlearn.audit.verdicts import ulira_null, ulira_phi_interval

    split, _ = ctx.load()
    lg = split_logits(arrays, split)
    ref_logits = [split_logits(a, split) for a in ref_arrays]
    m = basic_metrics(lg, split, ref_logits)
    m.update(attack_metrics(lg, split, ref_logits, nn, features[0], features[1], seed=seed,
                            reference_mia=ref_mia, mia_seed=MIA_FOLD_SEED))
    out: dict = {"metrics": m,
                 "forget_probs": torch.softmax(lg.test_forget, 1).mean(0).tolist()}
    if shadows is not None:
        phi, mask, retrained, is_retrain = shadows
        out["ulira_metrics"], u, _ = ulira_metrics(split, phi, {"mask": mask},
                                                   {"phi": retrained})
        out["ulira_roc"] = [u.roc_fpr, u.roc_tpr]
        in_mask = mask[:, split.train_forget.numpy()].astype(bool)
        interval = ulira_null if is_retrain else ulira_phi_interval
        out["ulira_interval"] = interval(phi, in_mask, retrained)
    return out


def _verdicts(split: ForgetSplit, per_method: dict, intervals: dict,
              ref_logits: list[SplitLogits]) -> dict:
    """{method: {seed: [verdict records]}} (classunlearn.audit.verdicts): accuracy and MIA-NN
    against this study's references, U-LiRA against the null of the same seed (the `retrain`
    method's replay on the same shadows; no U-LiRA verdict without a retrain row)."""
    from classunlearn.audit.verdicts import method_verdicts, verdict_record

    refs = [basic_metrics(r, split) for r in ref_logits]
    out: dict = {}
    for spec, seeds in per_method.items():
        for s, m in seeds.items():
            null = intervals.get(("retrain", s))  # only when retrain's seed s was audited
            interval = intervals.get((spec, s)) if null is not None else None
            found = method_verdicts(m, [r["acc_forget"] for r in refs],
                                    [r["test_acc_retain"] for r in refs], interval, null)
            out.setdefault(spec, {})[str(s)] = [verdict_record(v) for v in found]
    return out


def write_exports(store: Store, summary: dict, failed: dict) -> None:
    out = store.out
    details = store.get_meta("details", {}) or {}
    results = {**summary, "failed": failed, "run": store.get_meta("run"),
               # study -> method -> seed -> [verdict records] (docs/audit.md, "Verdicts")
               "verdicts": {study: d.get("verdicts", {}) for study, d in details.items()}}
    write_text_atomic(out / "results.json", json.dumps(results, indent=2, default=str))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["study", "method", "seed", "metric", "value"])
    w.writerows(store.metrics())
    write_text_atomic(out / "results.csv", buf.getvalue())
