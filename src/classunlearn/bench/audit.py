"""`classunlearn audit`: measure one checkpoint against retrained references.

The audit of one checkpoint is the bench's machinery applied to one model: the same metric
functions (``classunlearn.evaluate``), and for U-LiRA the same units, keys and replay
(``bench.units``, run through ``bench.runner.run_units``), so bench and audit numbers for the
same model cannot drift apart, and a bench ``--out`` folder and an audit cache are the same
thing.

Every model's logits are computed once (``SplitLogits``) and reused by every metric. The
metric groups:

- ``accuracy``: Acc_r, Acc_f, TA_r, TA_f and per-class test accuracy;
- ``tv``: TV distance to the references' mean output on T_f (``tv``), D_f and T_r;
- ``svc_mia``: SVC-MIA (feature printed with the score);
- ``mia_nn``: MIA-NN score, gap and z against the references' spread;
- ``ulira``: U-LiRA with shadow models. The method that produced the audited checkpoint
  (read from its sidecar) is run on N shadow originals; shadow sets and the unlearned
  shadows' confidences are bench units kept in a hashed :class:`~classunlearn.bench.store.Store`
  (``--cache``), so a second audit on the same data reuses them.

Each reference is audited too, against the *other* references (leave-one-out): that row
shows what a retrained model scores, i.e. the yardstick's own spread.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classunlearn.bench.summary import GAP_KEYS
from classunlearn.checkpoint import CheckpointMeta, load_checkpoint, load_meta
from classunlearn.data import ForgetSplit, load_dataset
from classunlearn.errors import CheckpointError, ParameterError, UserError
from classunlearn.evaluate import (
    SplitLogits,
    attack_metrics,
    basic_metrics,
    nn_classes,
    reference_mia_scores,
)
from classunlearn.table import markdown_table

METRIC_GROUPS = ("accuracy", "tv", "svc_mia", "mia_nn", "ulira")
# Keys of the CLI contract (docs/readings.md section 10), always present in the JSON's
# "metrics" (null = not measured, with the reason in "unavailable").
CONTRACT_KEYS = ("acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "svc_mia",
                 "mia_nn", "mia_nn_gap", "mia_nn_z", "ulira", "ulira_auc", "ulira_in_sample",
                 "tv", "avg_gap", "runtime_s")
_GROUP_KEYS = {
    "accuracy": ("acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget",
                 "per_class_test_acc"),
    "tv": ("tv", "tv_train_forget", "tv_test_retain"),
    "svc_mia": ("svc_mia", "svc_mia_feature"),
    "mia_nn": ("mia_nn", "mia_nn_gap", "mia_nn_z", "mia_nn_auc", "mia_nn_ref_mean",
               "mia_nn_ref_std", "mia_nn_feature", "nn_class"),
}


def parse_metric_groups(text: str) -> list[str]:
    """'all' or a comma-separated list of METRIC_GROUPS; anything else is refused."""
    if text.strip() == "all":
        return list(METRIC_GROUPS)
    groups = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in groups if g not in METRIC_GROUPS]
    if bad or not groups:
        raise ParameterError(f"unknown metric group(s) {', '.join(bad) or repr(text)}; "
                             f"--metrics takes 'all' or a comma-separated list of "
                             f"{', '.join(METRIC_GROUPS)}")
    return [g for g in METRIC_GROUPS if g in groups]


def check_shadows(n: int, groups: list[str]) -> None:
    from classunlearn.audit.ulira import check_shadow_count

    if "ulira" in groups:
        check_shadow_count(n)


def preflight(args: argparse.Namespace) -> list[str]:
    """Every check on the command line that needs no model, before any work: metric groups,
    shadow count, attack features, and a --json that would overwrite a checkpoint."""
    from classunlearn.audit.mia_nn import FEATURES as MIA_FEATURES
    from classunlearn.audit.svc_mia import FEATURES as SVC_FEATURES

    groups = parse_metric_groups(args.metrics)
    check_shadows(args.shadows, groups)
    for flag, value, allowed in (("--mia-feature", args.mia_feature, MIA_FEATURES),
                                 ("--svc-feature", args.svc_feature, SVC_FEATURES)):
        if value is not None and value not in allowed:
            raise ParameterError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
    if args.json:
        check_json_target(args.json, [args.checkpoint, *args.reference])
    return groups


def check_json_target(json_path: str | Path, checkpoints: list[str | Path]) -> None:
    """Refuse a --json path that would overwrite a checkpoint or its sidecar (``x.json``
    beside ``x.safetensors``): the checkpoint would be lost."""
    target = Path(json_path).resolve()
    for ckpt in checkpoints:
        ckpt = Path(ckpt).resolve()
        if target in (ckpt, ckpt.with_suffix(".json")):
            raise ParameterError(f"--json {json_path} would overwrite checkpoint {ckpt.name} or "
                                 "its sidecar; choose another file name, e.g. "
                                 f"{ckpt.stem}.audit.json")


# ------------------------------------------------------------------ the audited method

@dataclass(frozen=True)
class RecordedMethod:
    """How the audited checkpoint was made, as U-LiRA must replay it on the shadows."""

    name: str
    params: dict
    seed: int
    source: str  # where this was read from, for the report


def recorded_method(meta: CheckpointMeta, forget: tuple[int, ...]
                    ) -> tuple[RecordedMethod | None, str | None]:
    """(method, None), or (None, why U-LiRA cannot replay what made this checkpoint).

    A sidecar with a ``method`` record (written by ``unlearn``) gives the method, its
    parameters and seed. Without one, a checkpoint written by ``train`` counts as the method
    ``original``, and one from ``train --exclude-class`` (the forget classes) as ``retrain``
    with the checkpoint's recipe. Anything else has no recorded method: no number stands in.
    """
    if meta.method:
        name = meta.method.get("name")
        if not name:
            return None, "its sidecar's method record has no method name"
        done = tuple(sorted(int(c) for c in meta.method.get("forget_classes", forget)))
        if done != tuple(forget):
            return None, (f"it was unlearned for classes {list(done)}, not the audited forget "
                          f"classes {list(forget)}")
        return RecordedMethod(name, dict(meta.method.get("params") or {}),
                              int(meta.method.get("seed", 0)), "sidecar method record"), None
    if meta.parent_sha256:
        return None, ("it was derived from another checkpoint (parent_sha256 is set) but its "
                      "sidecar records no method")
    if not meta.recipe:
        return None, ("its sidecar records neither an unlearning method nor a training recipe "
                      "(not written by `classunlearn train` or `unlearn`)")
    excluded = tuple(sorted(meta.excluded_classes))
    if not excluded:
        return RecordedMethod("original", {}, meta.seed, "written by `train` (no method)"), None
    if excluded == tuple(forget):
        return RecordedMethod("retrain", dict(meta.recipe), meta.seed,
                              "written by `train --exclude-class` (retrain, its recipe)"), None
    return None, (f"it was trained without classes {list(excluded)}, not the forget classes "
                  f"{list(forget)}, and records no method")


# ------------------------------------------------------------------ U-LiRA through the store

@dataclass
class UliraOutcome:
    metrics: dict
    details: dict
    unavailable: str | None = None
    arrays: dict | None = None  # with null=True: ulira_arrays(), what the numbers come from


def _oracle_references(meta: CheckpointMeta, ds, audit_shas: list[str]
                       ) -> tuple[list[dict], list[str]]:
    """The oracle's own retrained models, as recorded by `unlearn` (path and SHA-256): their
    weights as unit arrays, and their hashes (the replay's key). Refused when one of them is
    also an audit reference: an oracle must not read the yardstick it is judged against."""
    from classunlearn.bench.units import weights_to_arrays

    recorded = (meta.method or {}).get("references") or []
    if not recorded:
        raise ParameterError("the oracle's sidecar records no references it read")
    arrays, shas = [], []
    for r in recorded:
        if r.get("sha256") in audit_shas:
            raise CheckpointError(f"reference {r.get('path')} was read by the oracle method "
                                  "that made this checkpoint; audit it against other retrained "
                                  "models (an oracle must not be judged by what it copied)")
        model, ref_meta = load_checkpoint(r["path"], ds)
        if ref_meta.sha256 != r.get("sha256"):
            raise CheckpointError(f"the oracle's reference {r['path']} changed since the "
                                  "unlearning run (its SHA-256 differs from the sidecar's)")
        arrays.append(weights_to_arrays(model))
        shas.append(ref_meta.sha256)
    return arrays, shas


def rebuild_method(method: RecordedMethod, dataset: str, recipe: dict):
    """(method class, params) of a recorded method, as U-LiRA replays it: a method that
    follows the recipe (retrain) takes its recorded recipe (else `recipe`), any other its
    recorded parameters. A UserError says why it cannot be rebuilt."""
    from classunlearn.methods import make_params, parse_spec
    from classunlearn.train import Recipe

    cls = parse_spec(method.name)[0]
    if cls.follows_recipe:
        return make_params(method.name, dataset, None,
                           recipe=Recipe.from_dict(method.params or recipe))
    return make_params(method.name, dataset, {k: str(v) for k, v in method.params.items()})


def run_ulira(ckpt: Path, meta: CheckpointMeta, split: ForgetSplit, data_dir: str | None,
              n_shadows: int, cache: Path, model_logits: SplitLogits,
              ref_logits: list[SplitLogits], ref_shas: list[str],
              log: Callable[[str], None], training=None) -> UliraOutcome:
    """U-LiRA of the method that made `ckpt`: the bench's units for study seed 0 (the same
    shadow sets, the same replay, the same keys, so a bench --out folder works as the cache
    and the other way round), leave-one-out over the shadows, plus the share of D_f that the
    shadows call "unlearned" for the audited model and each reference. `training`
    (``trainers.sidecar_training``): the sidecar's plug-in trainer and init checkpoint, which
    the shadows train with (None: the sidecar's recipe alone)."""
    from classunlearn.bench.units import checkpoint_context

    if n_shadows == 0:
        return UliraOutcome({}, {}, "skipped (--shadows 0)")
    method, why = recorded_method(meta, split.forget_classes)
    if method is None:
        return UliraOutcome({}, {}, f"{ckpt.name}: {why}; U-LiRA must replay the method that "
                            "made the model on shadow models")
    try:
        cls, params = rebuild_method(method, meta.dataset, meta.recipe)
    except UserError as e:
        return UliraOutcome({}, {}, f"the recorded method cannot be rebuilt: {e}")
    ds = split.dataset
    oracle_arrays: list[dict] = []
    oracle_shas: list[str] = []
    if cls.oracle:
        try:
            oracle_arrays, oracle_shas = _oracle_references(meta, ds, ref_shas)
        except ParameterError as e:
            return UliraOutcome({}, {}, f"{e}; U-LiRA replays an oracle with its own references")
    ctx = checkpoint_context(meta, data_dir, split.forget_classes, training)
    announce_training(ctx, log)
    return replay_ulira(ctx, split, method, cls, params, n_shadows, cache,
                        [model_logits, *ref_logits], oracle_arrays, oracle_shas, log,
                        null=True)


def announce_training(ctx, log: Callable[[str], None]) -> None:
    """One log line when the shadows (and references) train otherwise than by the recipe
    alone: how, and that a plug-in trainer runs them one model at a time."""
    if ctx.trainer or ctx.init_sha256:
        log(f"shadows and references train as the original did: {ctx.training().describe()}"
            + ("; a plug-in trainer cannot be stacked, so they train one model at a time"
               if ctx.trainer else ""))


def replay_ulira(ctx, split: ForgetSplit, method: RecordedMethod, cls, params,
                 n_shadows: int, cache: Path, audited: list[SplitLogits],
                 oracle_arrays: list[dict], oracle_shas: list[str],
                 log: Callable[[str], None], null: bool = False) -> UliraOutcome:
    """U-LiRA of `method` (class `cls`, resolved `params`) in the study `ctx`: the bench's
    shadow units for study seed 0 and the method's replay on them, run through
    ``run_units`` with a :class:`Store` in `cache`. `audited` are the audited model's
    logits, then each reference's (their "flagged" shares). The CLI audit (``run_ulira``),
    ``forget`` and the Python API (``cu.audit``) all come here.

    With `null`, also the verdict's null: ``retrain`` replayed on the same shadows (the
    bench's ``retrain`` replay of seed 0, same key), and both bootstrap intervals
    (``details["ulira_interval"]`` and ``details["ulira_null"]``); ``arrays`` then holds the
    per-example scores the numbers come from (``forget`` stores them for ``verify``)."""
    from classunlearn.bench.executors import LocalExecutor
    from classunlearn.bench.runner import run_units
    from classunlearn.bench.store import Store
    from classunlearn.bench.units import (
        SEED_RETRAIN,
        SEED_SHADOW_ORIGINALS,
        SEED_SHADOW_RETRAINS,
        replay_key,
        shadow_keys,
        unit_replay,
        unit_shadows,
    )
    from classunlearn.evaluate import ulira_metrics

    store = Store(cache)
    k_orig, k_ret = shadow_keys(ctx, n_shadows, 0)
    counts = {"computed": 0, "reused": 0}
    log(f"U-LiRA: {n_shadows} shadow originals and {n_shadows} shadow retrains "
        f"(cache {cache})")

    executor = LocalExecutor()
    done = run_units(store, executor, [
        (k_orig, f"{n_shadows} shadow originals", unit_shadows,
         (ctx, SEED_SHADOW_ORIGINALS, n_shadows, False)),
        (k_ret, f"{n_shadows} shadow retrains", unit_shadows,
         (ctx, SEED_SHADOW_RETRAINS, n_shadows, True))], counts, log, "shadows")
    p = params.to_dict()
    k_method = replay_key(ctx, cls.name, p, method.seed, k_orig, oracle_shas)
    units = [(k_method, f"{method.name} on {n_shadows} shadows", unit_replay,
              (ctx, cls.name, p, method.seed, done[k_orig][0], oracle_arrays))]
    unit_keys = {"shadow_originals": k_orig, "shadow_retrains": k_ret, "method": k_method}
    if null:  # the bench's `retrain` replay of study seed 0: same params, seed and key
        r_cls, r_params = rebuild_method(RecordedMethod("retrain", {}, SEED_RETRAIN, ""),
                                         ctx.dataset, ctx.recipe)
        r_p = r_params.to_dict()
        unit_keys["null"] = replay_key(ctx, r_cls.name, r_p, SEED_RETRAIN, k_orig, [])
        if unit_keys["null"] != k_method:
            units.append((unit_keys["null"], f"retrain on {n_shadows} shadows (the null)",
                          unit_replay, (ctx, r_cls.name, r_p, SEED_RETRAIN, done[k_orig][0],
                                        [])))
    done.update(run_units(store, executor, units, counts, log, "unlearn"))
    arrays, info = done[k_method]
    details = {"method": method.name, "params": p, "seed": method.seed,
               "method_source": method.source, "shadows": n_shadows, "cache": str(cache),
               "units_computed": counts["computed"], "units_reused": counts["reused"],
               "unit_keys": unit_keys}
    failed = info.get("failed") or (null and done[unit_keys["null"]][1].get("failed"))
    if failed:
        return UliraOutcome({}, details, f"{method.name} diverged on a shadow model: {failed}")
    metrics, u, flagged = ulira_metrics(split, arrays["phi"], done[k_orig][0], done[k_ret][0],
                                        audited)
    metrics["ulira_flagged"] = flagged[0]
    details["reference_flagged"] = flagged[1:]
    details["variance"] = u.variance
    details["roc"] = [u.roc_fpr, u.roc_tpr]
    out = UliraOutcome(metrics, details)
    if null:
        out.arrays = ulira_arrays(split, arrays["phi"], done[unit_keys["null"]][0]["phi"],
                                  done[k_orig][0], done[k_ret][0])
        details.update(ulira_intervals(out.arrays))
    return out


ULIRA_ARRAYS = ("method_phi", "null_phi", "mask", "retrained_phi")
"""What the U-LiRA numbers of one audit are computed from (``forget`` stores them)."""


def ulira_arrays(split: ForgetSplit, method_phi: np.ndarray, null_phi: np.ndarray,
                 shadow_originals: dict, shadow_retrains: dict) -> dict[str, np.ndarray]:
    """The per-example scores behind U-LiRA and its verdict: the method's and retrain's
    replays on the shadow originals (N x |D_f|), which of D_f each shadow original saw
    (`mask`) and the shadow retrains' scores on D_f."""
    mask = np.asarray(shadow_originals["mask"])[:, split.train_forget.numpy()].astype(bool)
    return {"method_phi": np.asarray(method_phi), "null_phi": np.asarray(null_phi),
            "mask": mask, "retrained_phi": np.asarray(shadow_retrains["phi"])}


def ulira_intervals(arrays: dict[str, np.ndarray]) -> dict[str, dict]:
    """The verdict's two bootstrap intervals from :func:`ulira_arrays`: the method's and the
    null's (retrain replayed on the same shadows)."""
    from classunlearn.audit.verdicts import ulira_null, ulira_phi_interval

    mask = np.asarray(arrays["mask"]).astype(bool)
    interval = ulira_phi_interval(arrays["method_phi"], mask, arrays["retrained_phi"])
    null = ulira_null(arrays["null_phi"], mask, arrays["retrained_phi"])
    return {"ulira_interval": interval.to_dict(), "ulira_null": null.to_dict()}


def checkpoint_verdicts(core: dict) -> list[dict]:
    """The verdicts of one audited model from :func:`measure`'s output (``metrics``,
    ``references``, ``ulira_details``), as JSON records
    (:func:`classunlearn.audit.verdicts.verdict_record`)."""
    from classunlearn.audit.verdicts import method_verdicts, verdict_record

    refs = core["references"]
    u = core["ulira_details"]
    found = method_verdicts(
        core["metrics"], [r["acc_forget"] for r in refs if "acc_forget" in r],
        [r["test_acc_retain"] for r in refs if "test_acc_retain" in r],
        u.get("ulira_interval"), u.get("ulira_null"), n_references=len(refs))
    return [verdict_record(v) for v in found]


# ------------------------------------------------------------------ the audit

def _pick(d: dict, groups: list[str]) -> dict:
    keys = {k for g in groups for k in _GROUP_KEYS.get(g, ())}
    return {k: v for k, v in d.items() if k in keys}


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def reference_attack_rows(split: ForgetSplit, ref_logits: list[SplitLogits],
                          nn: dict[int, int], ref_mia: dict[int, list[float]],
                          mia_feature: str | None, svc_feature: str | None, seed: int
                          ) -> list[dict]:
    """SVC-MIA and MIA-NN of each reference audited against the OTHER references
    (leave-one-out), with the nearest-neighbour class chosen without it as well: the audited
    reference never helps choose its own yardstick. `nn` and `ref_mia` (all references)
    are reused where leaving one out does not change nn."""
    rows = []
    for i, r in enumerate(ref_logits):
        others = ref_logits[:i] + ref_logits[i + 1:]
        nn_i = nn_classes(split, others) if others else nn
        if nn_i == nn:
            loo = {f: v[:i] + v[i + 1:] for f, v in ref_mia.items()}
        else:
            loo = reference_mia_scores(split, others, nn_i, mia_feature, mia_seed=seed)
        rows.append(attack_metrics(r, split, others, nn_i, mia_feature, svc_feature, seed,
                                   loo, mia_seed=seed))
    return rows


def audit_checkpoint(args: argparse.Namespace, log: Callable[[str], None] = _log) -> dict:
    """Run the audit described by the parsed CLI arguments; print the table, return the JSON
    document."""
    groups = parse_metric_groups(args.metrics)
    n_shadows = int(getattr(args, "shadows", 16))
    check_shadows(n_shadows, groups)
    ckpt = Path(args.checkpoint)
    meta = load_meta(ckpt)
    ds = load_dataset(meta.dataset, args.data_dir)
    split = ForgetSplit.make(ds, args.forget_class)
    model, meta = load_checkpoint(ckpt, ds)
    training = None
    trainer, init = getattr(args, "trainer", None), getattr(args, "init", None)
    if ("ulira" in groups and n_shadows) or trainer or init:
        from classunlearn.trainers import sidecar_training

        # the trainer's file and init checkpoint re-hashed before any work
        training = sidecar_training(meta, ckpt, trainer, init)
    from classunlearn.trainers import same_training

    refs, ref_shas, ref_paths = [], [], [str(p) for p in args.reference]
    for path in args.reference:
        ref, ref_meta = load_checkpoint(path, ds)
        differs = same_training(meta, ref_meta)
        if differs:
            raise CheckpointError(
                f"reference {path} was trained otherwise than the audited model ({differs}); "
                "the yardstick must be trained as the model was: train the references with "
                "the same --trainer and --init (or let `classunlearn forget` train them)")
        if sorted(ref_meta.excluded_classes) != list(split.forget_classes):
            raise CheckpointError(
                f"reference {path} was trained without classes {ref_meta.excluded_classes}, "
                f"not the forget classes {list(split.forget_classes)}; train it with "
                "`classunlearn train --exclude-class ...`")
        if ref_meta.sha256 == meta.sha256:
            raise CheckpointError(f"reference {path} is the audited checkpoint itself; pass "
                                  "other retrained models as references")
        refs.append(ref)
        ref_shas.append(ref_meta.sha256)
    if len(set(ref_shas)) != len(ref_shas):
        raise CheckpointError("the same reference is given twice; pass distinct retrained "
                              "models (their spread is the yardstick)")
    read_by_oracle = {r.get("sha256"): r.get("path")
                      for r in (meta.method or {}).get("references") or []}
    for path, sha in zip(args.reference, ref_shas):
        if sha in read_by_oracle:
            raise CheckpointError(f"reference {path} was read by the oracle method that made "
                                  "this checkpoint; audit it against other retrained models "
                                  "(an oracle must not be judged by what it copied)")
    from classunlearn.readings import attack_features

    mia_feature, svc_feature = attack_features(getattr(args, "readings", None),
                                               getattr(args, "mia_feature", None),
                                               getattr(args, "svc_feature", None))
    seed = int(getattr(args, "seed", 0))

    logits = SplitLogits.of(model, split)  # once per model, reused by every metric
    ref_logits = [SplitLogits.of(r, split) for r in refs]
    ulira = None
    if "ulira" in groups:
        cache = Path(args.cache) if getattr(args, "cache", None) else (
            ckpt.resolve().parent / ".classunlearn-cache")

        def ulira() -> UliraOutcome:
            return run_ulira(ckpt, meta, split, args.data_dir, n_shadows, cache, logits,
                             ref_logits, ref_shas, log, training)
    runtime = (float(meta.method["wall_time_s"]) if meta.method
               and _finite(meta.method.get("wall_time_s")) else None)
    core = measure(split, logits, ref_logits, groups, mia_feature=mia_feature,
                   svc_feature=svc_feature, seed=seed, ulira=ulira, runtime_s=runtime,
                   runtime_missing="the sidecar records no unlearning run (only `unlearn` "
                   "records one)")
    method, _ = recorded_method(meta, split.forget_classes)
    result = {
        "checkpoint": str(ckpt), "dataset": meta.dataset,
        "forget_classes": list(split.forget_classes),
        "method": method.name if method else (meta.method or {}).get("name", "unknown"),
        "method_params": method.params if method else None,
        "metric_groups": groups, "metrics": core["metrics"],
        "avg_gap_keys": core["avg_gap_keys"], "avg_gap_left_out": core["avg_gap_left_out"],
        "references": [{"checkpoint": p, **m} for p, m in zip(ref_paths, core["references"])],
        "reference_mean": core["reference_mean"], "ulira_details": core["ulira_details"],
        "unavailable": core["unavailable"], "verdicts": checkpoint_verdicts(core),
    }
    print(render(result, split))
    return result


def measure(split: ForgetSplit, logits: SplitLogits, ref_logits: list[SplitLogits],
            groups: list[str], *, mia_feature: str | None = None,
            svc_feature: str | None = None, seed: int = 0,
            ulira: Callable[[], UliraOutcome] | None = None, runtime_s: float | None = None,
            runtime_missing: str = "no unlearning run was recorded") -> dict:
    """Every metric of the audit from logits computed once: the audited model's, and each
    reference's against the other references; Avg.Gap over the keys both sides measured.
    `ulira` runs U-LiRA (``run_ulira`` for a checkpoint, the API's replay for in-memory
    models). Returns ``metrics`` (every CONTRACT_KEYS key, None where not measured),
    ``references`` (one dict per reference), ``reference_mean``, ``avg_gap_keys``,
    ``avg_gap_left_out``, ``ulira_details`` and ``unavailable`` (key -> why). The CLI audit
    and ``cu.audit`` both come here."""
    others = [ref_logits[:i] + ref_logits[i + 1:] for i in range(len(ref_logits))]
    unavailable: dict[str, str] = {}
    metrics: dict = {}
    ref_metrics: list[dict] = [{} for _ in ref_logits]

    if "accuracy" in groups:
        metrics.update(_pick(basic_metrics(logits, split), ["accuracy"]))
        for i, r in enumerate(ref_logits):
            ref_metrics[i].update(_pick(basic_metrics(r, split), ["accuracy"]))
    if "tv" in groups:
        metrics.update(_pick(basic_metrics(logits, split, ref_logits), ["tv"]))
        for i, r in enumerate(ref_logits):
            if others[i]:
                ref_metrics[i].update(_pick(basic_metrics(r, split, others[i]), ["tv"]))
        if len(ref_logits) < 2:
            unavailable["tv (references)"] = "needs 2 references to compare them"
    attack = [g for g in ("svc_mia", "mia_nn") if g in groups]
    nn = nn_classes(split, ref_logits) if attack else {}
    if attack:
        # each reference is scored once; a reference row uses the other references' scores
        ref_mia = reference_mia_scores(split, ref_logits, nn, mia_feature, mia_seed=seed)
        metrics.update(_pick(attack_metrics(logits, split, ref_logits, nn, mia_feature,
                                            svc_feature, seed, ref_mia, mia_seed=seed), attack))
        rows = reference_attack_rows(split, ref_logits, nn, ref_mia, mia_feature, svc_feature,
                                     seed)
        for i, row in enumerate(rows):
            ref_metrics[i].update(_pick(row, attack))
        if "mia_nn" in groups and len(ref_logits) < 2:
            unavailable["mia_nn_z"] = ("needs at least 2 references (z divides the gap by "
                                       "the references' sd)")
    ulira_details: dict = {}
    if "ulira" in groups:
        out = ulira() if ulira is not None else UliraOutcome({}, {}, "not measured here")
        metrics.update(out.metrics)
        ulira_details = out.details
        for i, v in enumerate(out.details.get("reference_flagged", [])):
            ref_metrics[i]["ulira_flagged"] = v
        if out.unavailable:
            unavailable["ulira"] = out.unavailable
        elif out.metrics and out.metrics.get("ulira") is None:  # never the in-sample number
            unavailable["ulira"] = ("the cross-fitted U-LiRA needs 2 target models with "
                                    "decisions per side and fold; see ulira_in_sample")
    if runtime_s is not None and _finite(runtime_s):
        metrics["runtime_s"] = float(runtime_s)
    else:
        unavailable["runtime_s"] = runtime_missing

    ref_mean = {k: float(np.mean([r[k] for r in ref_metrics])) for k in GAP_KEYS
                if ref_metrics and all(_finite(r.get(k)) for r in ref_metrics)}
    gap_keys = [k for k in GAP_KEYS if _finite(metrics.get(k)) and k in ref_mean]
    if gap_keys:
        metrics["avg_gap"] = float(np.mean([abs(metrics[k] - ref_mean[k]) for k in gap_keys]))
        for i, r in enumerate(ref_metrics):  # each reference against the others' mean
            if len(ref_metrics) > 1:
                rest = [o for j, o in enumerate(ref_metrics) if j != i]
                r["avg_gap"] = float(np.mean([abs(r[k] - np.mean([o[k] for o in rest]))
                                              for k in gap_keys]))
    else:
        unavailable["avg_gap"] = "no metric was measured for both the model and the references"
    left_out = [k for k in GAP_KEYS if k not in gap_keys]
    for key in CONTRACT_KEYS:
        metrics.setdefault(key, None)
    return {"metrics": metrics, "references": ref_metrics, "reference_mean": ref_mean,
            "avg_gap_keys": gap_keys, "avg_gap_left_out": left_out,
            "ulira_details": ulira_details, "unavailable": unavailable}

# ------------------------------------------------------------------ output

_COLUMNS = [("Acc_r", "acc_retain"), ("Acc_f", "acc_forget"), ("TA_r", "test_acc_retain"),
            ("TA_f", "test_acc_forget"), ("SVC-MIA", "svc_mia"), ("MIA-NN", "mia_nn"),
            ("MIA-NN gap", "mia_nn_gap"), ("MIA-NN z", "mia_nn_z"), ("U-LiRA", "ulira"),
            ("U-LiRA AUC", "ulira_auc"), ("U-LiRA in-sample", "ulira_in_sample"),
            ("U-LiRA flagged", "ulira_flagged"),
            ("TV(T_f)", "tv"), ("Avg.Gap", "avg_gap")]


def render(result: dict, split: ForgetSplit) -> str:
    """The readable report: one row for the audited model, one per reference (each audited
    against the other references), then what each number means and what is missing."""
    m, refs = result["metrics"], result["references"]
    cols = [(h, k) for h, k in _COLUMNS
            if m.get(k) is not None or any(r.get(k) is not None for r in refs)]
    rows = [[f"audited ({result['method']})", *(m.get(k) for _, k in cols)]]
    for i, r in enumerate(refs):
        rows.append([f"reference {i} (vs others)", *(r.get(k) for _, k in cols)])
    if refs:
        # z of a reference against the others swings wildly with few references (their
        # sd is itself a noisy estimate), so its mean is not shown
        mean = {k: float(np.mean([r[k] for r in refs])) for _, k in cols
                if k != "mia_nn_z" and all(_finite(r.get(k)) for r in refs)}
        rows.append(["references' mean", *(mean.get(k) for _, k in cols)])
    lines = [f"audit of {result['checkpoint']} ({result['dataset']}, forget classes "
             f"{result['forget_classes']}, method {result['method']}) against "
             f"{len(refs)} reference(s)", "", markdown_table(["model", *(h for h, _ in cols)],
                                                           rows, digits=2), ""]
    names = split.dataset.class_names
    if m.get("per_class_test_acc"):
        lines.append("per-class test accuracy: " + ", ".join(
            f"{names[c]}:{a:.0f}" for c, a in enumerate(m["per_class_test_acc"])))
    if m.get("svc_mia_feature"):
        lines.append(f"SVC-MIA feature: {m['svc_mia_feature']} (share of D_f predicted "
                     "non-member, %)")
    if m.get("mia_nn_feature"):
        nn = ", ".join(f"{names[int(f)]}->{names[c]}" for f, c in m["nn_class"].items())
        lines.append(f"MIA-NN feature: {m['mia_nn_feature']}; nearest neighbour class {nn}; "
                     f"references {m['mia_nn_ref_mean']:.1f} ± {m['mia_nn_ref_std']:.1f}; "
                     "z = |score - refs' mean| / refs' sd (each reference row: against the "
                     "other references)")
    u = result["ulira_details"]
    if m.get("ulira") is not None or m.get("ulira_in_sample") is not None:
        lines.append(f"U-LiRA: method {u['method']} ({u['method_source']}) replayed on "
                     f"{u['shadows']} shadow originals vs {u['shadows']} shadow retrains; "
                     "'U-LiRA' and 'U-LiRA AUC' are cross-fitted (threshold and direction "
                     "chosen on one half of the target models, scored on the other; 50 = "
                     "ideal); 'U-LiRA in-sample' is the balanced accuracy at the best "
                     "threshold over both directions chosen on the same decisions, as in "
                     "Hayes et al. (above 50 even for retrained models; the verdict's "
                     "statistic); raw AUC in the JSON; 'flagged' = % of "
                     f"D_f the shadows call unlearned; units computed {u['units_computed']}, "
                     f"reused {u['units_reused']} (cache {u['cache']})")
    if m.get("avg_gap") is not None:
        lines.append(f"Avg.Gap averages |model - references' mean| over "
                     f"{', '.join(result['avg_gap_keys'])}"
                     + (f" (left out: {', '.join(result['avg_gap_left_out'])}: not measured "
                        "for both)" if result["avg_gap_left_out"] else ""))
    if m.get("runtime_s") is not None:
        lines.append(f"runtime: {m['runtime_s']:.2f} s (the method's run, from the sidecar)")
    if m.get("mia_nn_feature") and 2 <= len(refs) <= 3:
        lines.append(f"note: each reference row is judged against only {len(refs) - 1} other "
                     "reference(s), whose sd is itself a noisy estimate: read those z loosely "
                     "(docs/audit.md: how many references a stable verdict needs)")
    for key, why in result["unavailable"].items():
        label = "U-LiRA" if key == "ulira" else key
        lines.append(f"{label} unavailable: {why}")
    lines += [verdict_line(v) for v in result.get("verdicts", [])]
    return "\n".join(lines)


_ATTACK_NAMES = {"accuracy": "accuracy", "mia_nn": "MIA-NN", "ulira": "U-LiRA"}


def verdict_line(v: dict) -> str:
    """One line per verdict: the attack, its outcome and the numbers it turned on."""
    n = {k: float("nan") if x is None else x for k, x in v["numbers"].items()}
    if v["attack"] == "accuracy":
        what = f"Acc_f {n['acc_forget']:.1f}, TA_r {n['test_acc_retain']:.1f}"
        if "acc_forget_low" in n:
            what += (f"; allowed Acc_f [{n['acc_forget_low']:.1f}, {n['acc_forget_high']:.1f}]"
                     f", TA_r >= {n['test_acc_retain_low']:.1f}")
    elif v["attack"] == "mia_nn":
        what = f"z {n['z']:.2f} with {n['n_references']} references"
    else:  # the in-sample statistic, not the cross-fitted U-LiRA column
        what = (f"U-LiRA in-sample {n['point']:.1f} [{n['low']:.1f}, {n['high']:.1f}] vs the null "
                f"{n['null_point']:.1f} [{n['null_low']:.1f}, {n['null_high']:.1f}]")
    scope = f" ({v['scope']})" if v.get("scope") else ""
    mark = {True: "PASS", False: "FAIL", None: "----"}[v["passed"]]
    return (f"verdict {mark} {_ATTACK_NAMES[v['attack']]}{scope}: {v['verdict']} ({what})")


def json_ready(obj: object) -> object:
    """NaN and infinities become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, torch.Tensor):
        obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
