"""`classunlearn forget`: honour a deletion request and leave a record that can be checked.

One request: unlearn the classes from a checkpoint with the recommended method, train what
the audit needs and the cache lacks (M references retrained without the classes, U-LiRA's
shadow models and the replays on them: the bench's units, keys and store, through
``bench.audit``, so a bench ``--out`` folder or an earlier request serves as the cache), run
the full audit, and write into DIR

- ``unlearned.safetensors`` (+ sidecar with the method record, as ``unlearn`` writes it),
- ``references/reference_<j>.safetensors`` (the yardstick, so ``verify`` can re-hash and
  reload it),
- ``ulira.safetensors``: the per-example U-LiRA scores the U-LiRA numbers and verdict are
  computed from (the shadows themselves stay in the cache),
- ``record.json`` (schema :data:`RECORD_SCHEMA`, docs/forget.md; sealed by the SHA-256 of
  its canonical JSON, paths relative to DIR) and ``record.html``.

DIR must be new or empty (a finished request is never overwritten); everything is written
into a hidden stage folder beside it and renamed to DIR only when the record is complete.

A request can follow an earlier one (``previous``): the model that already forgot A now
forgets B; the audited forget set is A and B, the references are retrained without both, and
the record chains to the previous record's SHA-256.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import numbers
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from classunlearn._version import __version__
from classunlearn.checkpoint import (
    CheckpointMeta,
    _umask,
    check_writable,
    file_sha256,
    load_checkpoint,
    load_meta,
    save_checkpoint,
    sidecar_path,
)
from classunlearn.data import ForgetSplit, load_dataset, parse_forget_classes
from classunlearn.errors import ParameterError, UserError
from classunlearn.evaluate import SplitLogits
from classunlearn.readings import attack_features

RECORD_SCHEMA = "classunlearn.record/2"
"""A sealed record (``seal``: the SHA-256 of its canonical JSON, and of each field) whose
paths are relative to the record's folder. ``classunlearn.record/1`` records (unsealed, the
original and the previous record named by absolute path) are still read and verified, with
a note that edits of what cannot be recomputed go unseen."""
LEGACY_SCHEMAS = ("classunlearn.record/1",)

SEED_MAX = 2**32 - 1
"""Seeds are 0..2**32-1 (numpy and torch both take them, with room for the seeds derived
from them)."""

DEFAULT_FORGET_METHOD = "rwft"
"""The method `forget` uses unless told otherwise. Evidence: docs/audit.md, "What the evidence
says" / "Which methods stand out": the median MIA-NN z over forget classes is 1.7 / 1.6 / 1.9
for RWFT on digits / mnist-5k / mnist1d, against 5.8 / 5.1 / 2.3 for TRW at its default
beta = 10 (its tilt overshoots toward the neighbour class); on U-LiRA the two are alike (README
table: RWFT 63.2, TRW 64.3 on digits), and RWFT has the lowest Avg.Gap of every method there."""

DEFAULT_REFERENCES = 5
"""Retrained references: 5 is the fewest for which MIA-NN can say "leaks"
(``audit.verdicts.MIA_NN_MIN_REFERENCES``)."""

DEFAULT_SHADOWS = 16
"""U-LiRA shadow models per side."""

CACHE_NAME = ".classunlearn-cache"
"""Default cache: this folder beside DIR (``DIR/../.classunlearn-cache``), shared by every
request whose DIR sits in the same folder."""

# numeric metrics of the record, from `measure` (each with the references' values)
RECORD_METRICS = ("acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "tv",
                  "svc_mia", "mia_nn", "mia_nn_gap", "mia_nn_z", "ulira", "ulira_auc",
                  "ulira_in_sample", "ulira_auc_in_sample", "ulira_flagged", "avg_gap",
                  "runtime_s")


@dataclass
class ForgetRequest:
    """What `classunlearn forget` was asked to do."""

    checkpoint: Path
    forget_classes: list[str]
    out: Path
    data_dir: str | None = None
    method: str = DEFAULT_FORGET_METHOD
    references: int = DEFAULT_REFERENCES
    shadows: int = DEFAULT_SHADOWS
    note: str = ""
    previous: Path | None = None
    cache: Path | None = None
    seed: int = 0
    command: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)  # --set KEY=VALUE of the method
    readings: str = "default"  # the reading set (classunlearn.readings)
    mia_feature: str | None = None  # --mia-feature: wins over the reading set's
    tune: bool = False  # --tune: choose lr/epochs on the original first (classunlearn.tune)
    # --trainer / --init: where the sidecar's plug-in trainer / init checkpoint are now, if
    # they moved (their SHA-256 must be the recorded one); None: the sidecar's paths
    trainer: str | None = None
    init: str | None = None


@dataclass
class ForgetResult:
    record: dict
    units_computed: int
    units_reused: int


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_record(path: Path) -> dict:
    """A record.json, refused (ParameterError: bad input) unless it is one."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ParameterError(f"cannot read record {path} ({e}); pass the record.json written "
                             "by `classunlearn forget`") from None
    if not isinstance(record, dict) or record.get("schema") not in (RECORD_SCHEMA,
                                                                     *LEGACY_SCHEMAS):
        raise ParameterError(f"{path} is not a {RECORD_SCHEMA} record (nor an older "
                             f"{', '.join(LEGACY_SCHEMAS)} one; schema "
                             f"{record.get('schema') if isinstance(record, dict) else None!r})")
    return record


# ------------------------------------------------------------------ the seal

SEAL = "seal"


def canonical_json(obj: object) -> bytes:
    """The canonical form the seal hashes: JSON with sorted keys, compact separators, ASCII
    (non-ASCII and undecodable file-name bytes as escapes), no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _sealed_fields(body: dict) -> dict[str, object]:
    """Field name -> value: every top-level field and every key of an object-valued one
    (``request.note``, ``files.original``, ``metrics.acc_retain``, ...)."""
    out: dict[str, object] = {}
    for k, v in body.items():
        out[k] = v
        if isinstance(v, dict):
            out.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
    return out


def seal(record: dict) -> dict:
    """The record's seal: the SHA-256 of its canonical JSON without the seal itself, and one
    per field (so `verify` can name what was edited). Computed on the record as JSON reads it
    back, so the check after a round trip sees the same bytes."""
    body = json.loads(json.dumps({k: v for k, v in record.items() if k != SEAL},
                                 allow_nan=False))
    return {"algorithm": "sha256",
            "canonical": "JSON: keys sorted, separators ',' ':', ASCII; the seal excluded",
            "sha256": sha256_bytes(canonical_json(body)),
            "fields": {k: sha256_bytes(canonical_json(v))
                       for k, v in _sealed_fields(body).items()}}


def seal_failure(record: dict) -> str | None:
    """None when the record's seal matches its content, else what was edited (the fields
    whose digest changed, the most specific ones). A record of the current schema without
    a seal fails; a legacy record without one returns None (verify notes it)."""
    stored = record.get(SEAL)
    if stored is None and record.get("schema") in LEGACY_SCHEMAS:
        return None
    if not isinstance(stored, dict) or not isinstance(stored.get("sha256"), str):
        return "the record has no valid seal (removed or edited)"
    now = seal(record)
    if now["sha256"] == stored["sha256"]:
        return None
    before = stored.get("fields") if isinstance(stored.get("fields"), dict) else {}
    fields = now["fields"]
    changed = [k for k in fields if k in before and before[k] != fields[k]]
    added = [k for k in fields if k not in before]
    removed = [k for k in before if k not in fields]
    parts = [f"{k} changed" for k in changed
             if not any(o.startswith(k + ".") for o in changed)]
    parts += [f"{k} added" for k in added if not any(k.startswith(o + ".") for o in added)]
    parts += [f"{k} removed" for k in removed
              if not any(k.startswith(o + ".") for o in removed)]
    what = ", ".join(parts) if parts else "the seal's own digest was changed"
    return f"the record was edited after forget sealed it ({what}; the seal does not match)"


def record_path(base: Path, path: str) -> Path:
    """A path named in a record: relative ones are relative to the record's folder."""
    p = Path(path)
    return p if p.is_absolute() else base / p


def relative(path: Path, base: Path) -> str:
    """`path` relative to the folder `base` (``../orig.safetensors`` when outside it), so a
    record moved together with what it names still finds it; `verify --search` finds files
    that moved on their own (the hashes decide, not the paths)."""
    return os.path.relpath(Path(path).resolve(), Path(base).resolve())


def _file(path: Path, base: Path, sidecar: bool = False) -> dict:
    """{"path", "sha256"} (and the checkpoint sidecar's "sidecar_sha256"), the path relative
    to the record's folder `base`."""
    out = {"path": relative(path, base), "sha256": file_sha256(path)}
    if sidecar:
        out["sidecar_sha256"] = file_sha256(sidecar_path(Path(path)))
    return out


def git_commit() -> str | None:
    """HEAD of the checkout the package runs from, or None (an installed package)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# ------------------------------------------------------------------ checks before work

def _previous(req: ForgetRequest) -> tuple[dict | None, list[int]]:
    """The previous record (or None) and the classes it had forgotten. Refuses a checkpoint
    that is not that record's unlearned model."""
    if req.previous is None:
        return None, []
    prev = read_record(req.previous)
    try:
        unlearned = prev["files"]["unlearned"]
        done = [int(c["index"]) for c in prev["request"]["forget_classes"]]
        done += [int(c["index"]) for c in prev["request"]["forgotten_before"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ParameterError(f"--previous {req.previous} is malformed ({type(e).__name__}: "
                             f"{e}); pass the record.json written by `forget`") from None
    if file_sha256(req.checkpoint) != unlearned["sha256"]:
        raise ParameterError(f"--checkpoint {req.checkpoint} is not the unlearned model of "
                             f"--previous {req.previous} (its SHA-256 differs); pass "
                             f"{record_path(req.previous.parent, unlearned['path'])}")
    return prev, sorted(done)


def preflight(req: ForgetRequest, write: bool = True) -> None:
    """Every check that needs no model: the method, the counts, the seed and the output
    folder (which must not hold a request already: nothing finished is overwritten)."""
    from classunlearn.audit.mia_nn import FEATURES
    from classunlearn.audit.ulira import check_shadow_count
    from classunlearn.methods import parse_spec
    from classunlearn.readings import get_readings

    cls, _ = parse_spec(req.method)
    get_readings(req.readings)
    if req.mia_feature is not None and req.mia_feature not in FEATURES:
        raise ParameterError(f"--mia-feature must be one of {', '.join(FEATURES)}, got "
                             f"'{req.mia_feature}'")
    if cls.oracle:
        raise ParameterError(f"--method {req.method} is an oracle (it reads retrained models); "
                             "a deletion request needs a method that works from the model "
                             f"alone, e.g. {DEFAULT_FORGET_METHOD}")
    if cls.follows_recipe:
        raise ParameterError("--method retrain retrains from scratch; run `classunlearn train "
                             "--exclude-class ...` for that, or pick an unlearning method")
    if req.shadows:
        check_shadow_count(req.shadows)
    if req.references < 2:
        raise ParameterError(f"--references must be at least 2 (MIA-NN's z needs their "
                             f"spread; {DEFAULT_REFERENCES} for a 'leaks' verdict), got "
                             f"{req.references}")
    check_seed(req.seed)
    out = Path(req.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {req.out} is a file; pass a folder for the request's files")
    if (out / "record.json").exists():
        raise UserError(f"--out {out} already holds a finished request ({out / 'record.json'}); "
                        f"nothing is overwritten: write this one to a new folder, e.g. --out "
                        f"{_free_sibling(out)}, to keep both")
    try:
        held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    except OSError as e:
        raise UserError(f"cannot read --out {out} ({e.strerror}); choose a writable --out"
                        ) from None
    if held:
        raise UserError(f"--out {out} is not empty (it holds {held[0]}"
                        f"{f' and {len(held) - 1} more' if len(held) > 1 else ''}); pass a "
                        "new or empty folder, so nothing there is overwritten")
    ckpt = Path(req.checkpoint).resolve()
    if ckpt.parent == out.resolve():
        raise ParameterError(f"--out {req.out} holds the input checkpoint; write the request "
                             "to a new folder so the input is kept")
    if write:  # a dry run creates nothing; DIR itself appears only when the request is done
        check_writable(out.resolve().parent / "record.json")


def check_seed(seed: int, flag: str = "--seed") -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not (
            0 <= seed <= SEED_MAX):
        raise ParameterError(f"{flag} must be an integer in 0..{SEED_MAX}, got {seed}")


def _free_sibling(out: Path) -> Path:
    n = 2
    while Path(f"{out}-{n}").exists():
        n += 1
    return Path(f"{out}-{n}")


def check_test_samples(ds, forget_classes: tuple[int, ...]) -> None:
    """The audit measures test accuracy on every forget class and MIA-NN with
    ``DEFAULT_FOLDS`` folds per class: refuse data that cannot give it, before any work."""
    from classunlearn.audit.mia_nn import DEFAULT_FOLDS
    from classunlearn.data import describe_classes

    counts = ds.class_counts("test")
    empty = [c for c in forget_classes if counts[c] == 0]
    if empty:
        raise UserError(f"forget class {describe_classes(empty[:1], ds.class_names)} has no "
                        f"test samples in {ds.name}; the audit measures test accuracy and "
                        "MIA-NN on them: add test samples or pick another class")
    few = [c for c, n in enumerate(counts) if n < DEFAULT_FOLDS]
    if few:
        raise UserError(f"class {describe_classes(few[:1], ds.class_names)} has "
                        f"{counts[few[0]]} test samples in {ds.name}; MIA-NN's "
                        f"{DEFAULT_FOLDS} folds need at least {DEFAULT_FOLDS} of each class: "
                        "add test samples")


def check_forgettable(model: torch.nn.Module, meta: CheckpointMeta, ckpt: Path,
                      split: ForgetSplit, logits: SplitLogits, asked: tuple[int, ...]) -> None:
    """Refuse a request that cannot mean anything: a model with no trainable parameters, a
    class the model was trained without (its sidecar says so) or already unlearned, and a
    class it does not recognise (accuracy on its training samples below chance: a plug-in
    model whose sidecar cannot tell)."""
    from classunlearn.data import describe_classes

    names = split.dataset.class_names

    def cls(cs) -> str:
        return f"class{'es' if len(cs) > 1 else ''} {describe_classes(cs, names)}"

    if not any(p.requires_grad for p in model.parameters()):
        raise ParameterError(f"{ckpt} holds a model ('{meta.model}') with no trainable "
                             "parameters, so no method can change it; give it parameters "
                             "and retrain it")
    excluded = sorted(set(meta.excluded_classes) & set(asked))
    if excluded:
        raise ParameterError(f"{ckpt} was trained without {cls(excluded)} (its sidecar's "
                             "excluded_classes): there is nothing to forget; pass the model "
                             "that was trained on it")
    done = [c for c in (meta.method or {}).get("forget_classes") or [] if c in asked]
    if done:
        raise ParameterError(f"{ckpt} already had {cls(done)} unlearned (by "
                             f"{meta.method.get('name')}); pass the original, or chain with "
                             "--previous RECORD to forget more classes")
    chance = 100.0 / split.dataset.num_classes
    for c in asked:
        acc = class_accuracy(logits, split, c)[0]
        if acc < chance:
            raise ParameterError(
                f"{ckpt} does not recognise {cls([c])}: it predicts it for {acc:.1f}% of its "
                f"training samples, below chance ({chance:.1f}%), so it never learned the "
                "class and there is nothing to forget; pass the model that was trained on it")


# ------------------------------------------------------------------ the request

def _checked(req: ForgetRequest, write: bool = True) -> tuple:
    """Every check of a request that needs no model weights, in the order `forget` makes
    them: (sidecar meta, previous record, classes forgotten before, the training to repeat,
    the dataset, the asked classes, the audited classes)."""
    from classunlearn.data import check_data_dir, describe_classes
    from classunlearn.trainers import sidecar_training

    preflight(req, write=write)
    ckpt = Path(req.checkpoint)
    meta = load_meta(ckpt)
    check_data_dir(meta.dataset, req.data_dir)
    if not meta.recipe:
        raise ParameterError(f"{ckpt} records no training recipe, so its references and "
                             "shadow models cannot be trained the same way; train the model "
                             "with `classunlearn train`")
    prev, before = _previous(req)
    # the trainer's file and the init checkpoint re-hashed: a changed one is refused here
    training = sidecar_training(meta, ckpt, req.trainer, req.init)
    ds = load_dataset(meta.dataset, req.data_dir)
    asked = parse_forget_classes(req.forget_classes, ds)
    again = sorted(set(asked) & set(before))
    if again:
        raise ParameterError(f"class(es) {describe_classes(again, ds.class_names)} were "
                             "forgotten by the previous request; ask for other classes")
    audited = tuple(sorted({*asked, *before}))
    check_test_samples(ds, audited)
    return meta, prev, before, training, ds, asked, audited


def describe(req: ForgetRequest) -> str:
    """`forget --dry-run`: the resolved request, checked as `run_forget` checks it, with
    nothing trained (classunlearn.bench.plan)."""
    from classunlearn.bench.plan import describe_request
    from classunlearn.data import describe_classes
    from classunlearn.methods import make_params
    from classunlearn.train import Recipe

    meta, _, _, training, ds, asked, audited = _checked(req, write=False)
    make_params(req.method, meta.dataset, req.params or None,
                recipe=Recipe.from_dict(meta.recipe), readings=req.readings)
    return (f"forget classes: {describe_classes(asked, ds.class_names)}"
            + (" (--tune: lr and epochs are chosen first)" if req.tune else "") + "\n"
            + describe_request(req, ds, meta, audited, training))


def run_forget(req: ForgetRequest, log: Callable[[str], None] = print,
               show: Callable[[str], None] | None = None) -> ForgetResult:
    """Unlearn, train what the audit misses (cached), audit, write the record. Returns the
    record and how many units were computed / reused. `show` (default `log`) gets the
    resolved classes, once every check has passed.

    Every check that can be made before work is made first. The request is written into a
    hidden folder beside DIR (``.DIR.*.partial``) and renamed to DIR only when the record is
    complete: an interrupted or failed request leaves no DIR that looks finished."""
    from classunlearn.data import describe_classes

    meta, prev, before, training, ds, asked, audited = _checked(req)
    out = Path(req.out)
    ckpt = Path(req.checkpoint)
    model, meta = load_checkpoint(ckpt, ds)
    split = ForgetSplit(ds, audited)
    original_logits = SplitLogits.of(model, split)
    check_forgettable(model, meta, ckpt, split, original_logits, asked)
    # the resolved classes, as `index (name)`, once every check passed and before any work
    (show or log)(f"forget classes: {describe_classes(asked, ds.class_names)}" + (
        f" (forgotten before: {describe_classes(before, ds.class_names)})" if before else ""))
    cache = Path(req.cache) if req.cache else out.resolve().parent / CACHE_NAME
    counts = {"computed": 0, "reused": 0}
    values, tuned = (_tune(req, ckpt, meta, asked, cache, counts, log) if req.tune
                     else (dict(req.params), None))
    stage = Path(tempfile.mkdtemp(dir=out.resolve().parent, prefix=f".{out.name}.",
                                  suffix=".partial"))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; DIR follows the umask
    try:
        record = _write_request(req, stage, ckpt, meta, prev, before, ds, model, asked, split,
                                original_logits, cache, counts, values, tuned, log, training)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        if out.is_dir():
            out.rmdir()  # empty (preflight): the finished request takes its place
        os.rename(stage, out)
    except OSError as e:
        raise UserError(f"the request is complete in {stage} but cannot be moved to {out} "
                        f"({e.strerror}); move that folder to where you want it (it is "
                        "finished: `classunlearn verify` it there)") from None
    return ForgetResult(record, counts["computed"], counts["reused"])


def _tune(req: ForgetRequest, ckpt: Path, meta: CheckpointMeta, asked: tuple[int, ...],
          cache: Path, counts: dict, log: Callable[[str], None]
          ) -> tuple[dict[str, str], dict | None]:
    """`forget --tune`: the method's lr/epochs chosen on the original by `classunlearn tune`
    (the same units and cache); explicit --set values and the reading set's win."""
    from classunlearn.methods import parse_spec
    from classunlearn.readings import get_readings
    from classunlearn.tune import chosen_line, format_table, grid_for, tune_checkpoint

    keys = grid_for(req.method)  # a method that is never tuned: refused, saying why
    if meta.method:
        raise ParameterError(f"--tune chooses lr and epochs on the original model, but "
                             f"{ckpt} is already unlearned ({meta.method.get('name')}); pass "
                             "the values tune chose for the first request with --set, or "
                             "drop --tune")
    fixed = get_readings(req.readings).method_values(parse_spec(req.method)[0].name)
    explicit = {**{k: str(v) for k, v in fixed.items()}, **req.params}
    if set(keys) <= set(explicit):
        log(f"--tune: {', '.join(keys)} are all set explicitly; nothing to tune")
        return dict(req.params), None
    out = tune_checkpoint(str(ckpt), list(asked), [req.method], req.data_dir, str(cache),
                          req.seed, log, trainer=req.trainer, init=req.init)
    counts["computed"] += out.computed
    counts["reused"] += out.reused
    result = out.results[0]
    log(format_table(result))
    if result.choice is None:
        log(f"--tune: every setting of {req.method} failed; it keeps its defaults")
        return dict(req.params), {"choice": None, "applied": {}, "reached": False,
                                  "note": result.note}
    applied = {k: v for k, v in result.choice.items() if k not in explicit}
    for k in result.choice.keys() - applied.keys():
        log(f"--tune: --set {k}={explicit[k]} wins over the tuned {k}={result.choice[k]}")
    log(f"tuned {chosen_line(result)}")
    return ({**req.params, **{k: str(v) for k, v in applied.items()}},
            {"choice": result.choice, "applied": applied, "reached": result.reached,
             "note": result.note})


def _write_request(req: ForgetRequest, out: Path, ckpt: Path, meta: CheckpointMeta,
                   prev: dict | None, before: list[int], ds, model: torch.nn.Module,
                   asked: tuple[int, ...], split: ForgetSplit, original_logits: SplitLogits,
                   cache: Path, counts: dict, values: dict[str, str], tuned: dict | None,
                   log: Callable[[str], None], training=None) -> dict:
    """The work of a request, written into `out` (the stage folder): references, the
    unlearned model, the audit, the sealed record. Paths outside `out` are recorded relative
    to the final DIR (a sibling of the stage, so the same relative path)."""
    from classunlearn.bench.audit import (
        METRIC_GROUPS,
        RecordedMethod,
        UliraOutcome,
        announce_training,
        measure,
        replay_ulira,
    )
    from classunlearn.bench.executors import LocalExecutor
    from classunlearn.bench.runner import run_units
    from classunlearn.bench.store import Store
    from classunlearn.bench.units import (
        SEED_REFERENCE,
        checkpoint_context,
        model_from_arrays,
        reference_key,
        unit_train,
    )
    from classunlearn.methods import UnlearnData, make_params
    from classunlearn.train import Recipe

    final = Path(req.out)
    cls, params = make_params(req.method, meta.dataset, values or None,
                              recipe=Recipe.from_dict(meta.recipe), readings=req.readings)
    mia_feature, svc_feature = attack_features(req.readings, req.mia_feature)
    store = Store(cache)
    ctx = checkpoint_context(meta, req.data_dir, split.forget_classes, training)
    announce_training(ctx, log)

    # 1. the references (the bench's reference units: same keys, same seeds)
    executor = LocalExecutor()
    keys = [reference_key(ctx, SEED_REFERENCE + j) for j in range(req.references)]
    done = run_units(store, executor, [(k, f"reference {j}", unit_train,
                                        (ctx, SEED_REFERENCE + j, True))
                                       for j, k in enumerate(keys)], counts, log, "train")
    ref_paths = []
    for j, k in enumerate(keys):
        ref_meta = CheckpointMeta(dataset=meta.dataset, class_names=ds.class_names,
                                  input_shape=list(ds.input_shape), model=meta.model,
                                  model_kwargs=dict(meta.model_kwargs),
                                  excluded_classes=list(split.forget_classes),
                                  recipe=dict(meta.recipe), seed=SEED_REFERENCE + j,
                                  model_source_sha256=meta.model_source_sha256,
                                  input_norm=meta.input_norm)
        if training is not None:  # trained as the original was, and recorded so
            ref_meta.trainer, ref_meta.trainer_sha256 = training.trainer, training.trainer_sha256
            ref_meta.init, ref_meta.init_sha256 = training.init, training.init_sha256
            ref_meta.init_map = dict(training.init_map) if training.init_map else None
        path = out / "references" / f"reference_{j}.safetensors"
        save_checkpoint(model_from_arrays(ctx, split, done[k][0]), ref_meta, path)
        ref_paths.append(path)
    retrain_s = float(np.mean([done[k][1].get("wall_s", np.nan) for k in keys]))

    # 2. the unlearning itself
    log(f"unlearning classes {describe_classes_of(split)} with {cls.name}")
    unlearned, run = cls().unlearn(model, UnlearnData.from_split(split), params, seed=req.seed)
    unlearned_meta = CheckpointMeta.from_dict(meta.to_dict())
    unlearned_meta.method = {"name": cls.name, "params": run.params,
                             "forget_classes": list(split.forget_classes), "seed": req.seed,
                             "oracle": False, "wall_time_s": run.wall_time_s}
    unlearned_meta.parent_sha256 = meta.sha256
    unlearned_path = save_checkpoint(unlearned, unlearned_meta, out / "unlearned.safetensors")

    # 3. the audit: the same `measure` and U-LiRA replay as `classunlearn audit`
    unlearned, _ = load_checkpoint(unlearned_path, ds)
    logits = SplitLogits.of(unlearned, split)
    refs = [SplitLogits.of(load_checkpoint(p, ds)[0], split) for p in ref_paths]
    method = RecordedMethod(cls.name, dict(run.params), req.seed, "forget")
    ulira_out: list[UliraOutcome] = []

    def ulira() -> UliraOutcome:
        ulira_out.append(replay_ulira(ctx, split, method, cls, params, req.shadows, cache,
                                      [logits, *refs], [], [], log, null=True))
        return ulira_out[0]

    groups = list(METRIC_GROUPS) if req.shadows else [g for g in METRIC_GROUPS if g != "ulira"]
    core = measure(split, logits, refs, groups, mia_feature=mia_feature,
                   svc_feature=svc_feature, seed=0, ulira=ulira, runtime_s=run.wall_time_s)
    if ulira_out:
        counts["computed"] += ulira_out[0].details.get("units_computed", 0)
        counts["reused"] += ulira_out[0].details.get("units_reused", 0)
    arrays = ulira_out[0].arrays if ulira_out else None
    if arrays is not None:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v.astype(np.uint8) if v.dtype == bool else v)
                   for k, v in arrays.items()}, str(out / "ulira.safetensors"))

    verdicts = audit_verdicts(core, split, logits, refs, before)
    record = {
        "schema": RECORD_SCHEMA,
        "request": {
            "forget_classes": _classes(asked, ds.class_names), "note": req.note,
            "time": datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
            "previous": None if prev is None else {
                "record": relative(Path(req.previous), final),
                "sha256": file_sha256(req.previous)},
            "forgotten_before": _classes(before, ds.class_names),
            "audited_forget_classes": _classes(split.forget_classes, ds.class_names)},
        "dataset": {"name": meta.dataset,
                    "data_dir": str(Path(req.data_dir).resolve()) if req.data_dir else None,
                    "fingerprint": ctx.data_fingerprint},
        "files": {
            "data": _data_files(meta.dataset, req.data_dir),
            "original": _file(ckpt, final, sidecar=True),
            "unlearned": _file(unlearned_path, out, sidecar=True),
            "references": [_file(p, out, sidecar=True) for p in ref_paths],
            "ulira_scores": _file(out / "ulira.safetensors", out) if arrays is not None
            else None,
            **_training_files(training, final)},
        # run_s: this process, the method alone; retrain_s: one reference's training as the
        # unit that trained it measured it (maybe another run or machine): not comparable,
        # so no ratio (issue #26; the bench compares both measured alike)
        "method": {"name": cls.name, "spec": req.method, "params": run.params,
                   "set": dict(req.params), "tuned": tuned,
                   "seed": req.seed, "run_s": run.wall_time_s, "retrain_s": retrain_s},
        "metrics": record_metrics(core, split, logits, refs),
        "verdicts": verdicts,
        "evidence": evidence(split, original_logits, logits, refs, core, arrays),
        "audit": {"references": req.references, "shadows": req.shadows,
                  "readings": req.readings, "mia_nn_feature": mia_feature,
                  "svc_mia_feature": svc_feature,
                  "cache": str(cache), "units_computed": counts["computed"],
                  "units_reused": counts["reused"], "unavailable": core["unavailable"],
                  "ulira": {k: v for k, v in core["ulira_details"].items()
                            if k not in ("roc", "reference_flagged")}},
        "environment": environment(),
        "command": ["classunlearn", *req.command],
        "record_sha256_of_previous": None if prev is None else file_sha256(req.previous),
    }
    record = strict(record)
    record[SEAL] = seal(record)
    write_record(record, out)
    return record


def _training_files(training, base: Path) -> dict:
    """``files.trainer`` and ``files.init`` of a record (only when the original used them):
    path (relative to the record's folder) and SHA-256, which `verify` re-hashes; the
    trainer's entry also names its reference (``ref``)."""
    out: dict = {}
    if training is None:
        return out
    if training.trainer:
        from classunlearn.trainers import trainer_source

        src = trainer_source(training.trainer)
        out["trainer"] = {"path": relative(src.path, base), "sha256": training.trainer_sha256,
                          "ref": training.trainer}
    if training.init:
        out["init"] = {"path": relative(Path(training.init), base),
                       "sha256": training.init_sha256,
                       "map": dict(training.init_map) if training.init_map else None}
    return out


def describe_classes_of(split: ForgetSplit) -> str:
    from classunlearn.data import describe_classes

    return describe_classes(split.forget_classes, split.dataset.class_names)


def _classes(indices, names: list[str]) -> list[dict]:
    return [{"index": int(c), "name": names[int(c)]} for c in indices]


def _data_files(name: str, data_dir: str | None) -> dict[str, str]:
    from classunlearn.data import dataset_files_sha256

    return dataset_files_sha256(name, data_dir)


def environment() -> dict:
    from classunlearn.train import resolve_device

    return {"classunlearn": __version__, "git_commit": git_commit(),
            "python": platform.python_version(), "torch": torch.__version__,
            "device": str(resolve_device())}


# ------------------------------------------------------------------ numbers of a record

def class_accuracy(logits: SplitLogits, split: ForgetSplit, c: int) -> tuple[float, float]:
    """(train, test) accuracy (%) on class `c`, one of the forget classes."""
    y_f = split.part("train_forget")[1]
    y_t = split.part("test_forget")[1]
    train = logits.train_forget[y_f == c].argmax(1) == c
    test = logits.test_forget[y_t == c].argmax(1) == c
    return (100.0 * float(train.float().mean()),
            100.0 * float(test.float().mean()) if len(test) else float("nan"))


def record_metrics(core: dict, split: ForgetSplit, logits: SplitLogits,
                   refs: list[SplitLogits]) -> dict:
    """name -> {value, references_mean, references_std, references}: every numeric metric of
    `measure`, and the train / test accuracy on each audited forget class
    (``acc_forget_class_<c>``, ``test_acc_forget_class_<c>``)."""
    out = {}
    for key in RECORD_METRICS:
        value = core["metrics"].get(key)
        if value is None:
            continue
        ref = [r.get(key) for r in core["references"]]
        out[key] = _metric(value, ref if all(v is not None for v in ref) else [])
    for c in split.forget_classes:
        mine = class_accuracy(logits, split, c)
        theirs = [class_accuracy(r, split, c) for r in refs]
        out[f"acc_forget_class_{c}"] = _metric(mine[0], [t[0] for t in theirs])
        out[f"test_acc_forget_class_{c}"] = _metric(mine[1], [t[1] for t in theirs])
    return out


def _metric(value: float, refs: list) -> dict:
    refs = [float(v) for v in refs]
    return {"value": float(value),
            "references_mean": float(np.mean(refs)) if refs else None,
            "references_std": float(np.std(refs, ddof=1)) if len(refs) > 1 else None,
            "references": refs}


def audit_verdicts(core: dict, split: ForgetSplit, logits: SplitLogits,
                   refs: list[SplitLogits], before: list[int]) -> list[dict]:
    """The audit's verdicts (``bench.audit.checkpoint_verdicts``) and, after a previous
    request, an accuracy verdict on the classes forgotten before: they must stay forgotten
    (their Acc_f within the references' range, the same rule)."""
    from classunlearn.audit.verdicts import accuracy_verdict, verdict_record
    from classunlearn.bench.audit import checkpoint_verdicts

    out = checkpoint_verdicts(core)
    if before:
        def acc(lg: SplitLogits) -> float:
            y = split.part("train_forget")[1]
            keep = torch.isin(y, torch.tensor(before))
            return 100.0 * float((lg.train_forget[keep].argmax(1) == y[keep]).float().mean())

        v = verdict_record(accuracy_verdict(
            acc(logits), core["metrics"]["test_acc_retain"], [acc(r) for r in refs],
            [r["test_acc_retain"] for r in core["references"]]))
        v["scope"] = f"classes forgotten before: {before}"
        out.append(v)
    return out


def evidence(split: ForgetSplit, original: SplitLogits, unlearned: SplitLogits,
             refs: list[SplitLogits], core: dict, arrays: dict | None) -> dict:
    """What the record page plots: the mean predicted distribution on the forget test
    samples (original, unlearned, retrained), U-LiRA's ROC and its null's, MIA-NN's score
    against the references'."""
    def dist(lg: SplitLogits) -> list[float]:
        return torch.softmax(lg.test_forget, 1).mean(0).tolist()

    out: dict = {
        "class_names": list(split.dataset.class_names),
        "forget_distribution": {"original": dist(original), "unlearned": dist(unlearned),
                                "retrained": np.mean([dist(r) for r in refs], 0).tolist()},
        "mia_nn": {"value": core["metrics"].get("mia_nn"), "z": core["metrics"].get("mia_nn_z"),
                   "references": [r.get("mia_nn") for r in core["references"]]},
        "ulira_roc": None,
    }
    if arrays is not None:
        from classunlearn.audit.ulira import ulira_leave_one_out

        fpr, tpr = core["ulira_details"]["roc"]
        null = ulira_leave_one_out(arrays["null_phi"], np.asarray(arrays["mask"]).astype(bool),
                                   arrays["retrained_phi"])
        out["ulira_roc"] = {"fpr": list(fpr), "tpr": list(tpr), "null_fpr": list(null.roc_fpr),
                            "null_tpr": list(null.roc_tpr)}
    return out


def strict(obj: object) -> object:
    """JSON-ready (NaN and infinities -> null, numpy -> Python)."""
    from classunlearn.bench.audit import json_ready

    return json_ready(obj)


# ------------------------------------------------------------------ writing it

def write_record(record: dict, out: Path) -> None:
    """record.json (strict JSON) and record.html."""
    from classunlearn.bench.summary import write_text_atomic

    write_text_atomic(out / "record.json", json.dumps(record, indent=2, allow_nan=False))
    from classunlearn.record_page import write_record_page

    write_record_page(record, out / "record.html")


def verdict_lines(record: dict) -> list[str]:
    from classunlearn.bench.audit import verdict_line

    return [verdict_line(v) for v in record["verdicts"]]


def exit_code(record: dict) -> int:
    """0 unless a verdict failed (an attack tells the model from retrained ones): 3."""
    return 3 if any(v["passed"] is False for v in record["verdicts"]) else 0


# `cu.forget(...)` is the Python API's forget (classunlearn.api.forget). Importing this
# module sets the package attribute `classunlearn.forget` to the module, so the module is
# made callable, as classunlearn.audit and classunlearn.bench are (classunlearn/__init__.py).
def _make_callable() -> None:
    import sys

    from classunlearn._lazy import callable_module

    callable_module(sys.modules[__name__], "forget")


_make_callable()
