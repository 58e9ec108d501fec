"""`classunlearn verify RECORD`: does a forget record still hold?

Re-hashes every file the record names (the data files, or the embedded dataset's
fingerprint; the original, unlearned and reference checkpoints; the stored U-LiRA scores; the
previous record of a chain), then recomputes every number from the checkpoints and the data,
never from the cache: it loads each checkpoint, computes its logits and runs the audit's
``measure`` and the verdict rules again, and compares metrics, verdicts and evidence with
the record (:data:`ABS_TOL` / :data:`REL_TOL`).

U-LiRA is recomputed from the per-example scores ``forget`` stored (``ulira.safetensors``:
the method's and retrain's replays on the shadow originals, which of D_f each shadow saw,
the shadow retrains' scores): the attack, its bootstrap intervals and its verdict are
recomputed and the file is hashed, but the 4N shadow models themselves are not retrained
(that is the expensive part; their units stay in the cache).

A chained record (``request.previous``) is verified after its previous record, which must
still have the SHA-256 this record names and whose unlearned model must be this record's
original.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from classunlearn.checkpoint import file_sha256
from classunlearn.errors import UserError
from classunlearn.forget import read_record, record_path

ABS_TOL = 1e-6
"""Absolute tolerance of a recomputed number (percentages, z, seconds)."""
REL_TOL = 1e-9
"""Relative tolerance of a recomputed number."""


def verify_record(path: Path, hashes_only: bool = False,
                  log: Callable[[str], None] = print) -> str | None:
    """None when every file and number of the record at `path` (and of the records it
    chains to) reproduces, else one line naming the first that does not. Bad input (no
    record, not a record) raises ParameterError."""
    path = Path(path)
    record = read_record(path)
    try:
        return _verify(path, record, hashes_only, log)
    except (KeyError, TypeError, IndexError) as e:  # a record edited out of shape
        return f"{path}: the record is malformed ({type(e).__name__}: {e})"


def _verify(path: Path, record: dict, hashes_only: bool, log: Callable[[str], None]
            ) -> str | None:
    base = path.resolve().parent
    prev = record["request"]["previous"]
    if prev is not None:
        p = Path(prev["record"])
        if not p.is_file():
            return f"previous record {p} is missing"
        if file_sha256(p) != prev["sha256"] or record.get(
                "record_sha256_of_previous") != prev["sha256"]:
            return f"previous record {p} changed (its SHA-256 is not the one this record names)"
        earlier = read_record(p)
        if earlier["files"]["unlearned"]["sha256"] != record["files"]["original"]["sha256"]:
            return (f"{path}: its original is not the unlearned model of the previous record "
                    f"{p}")
        failure = verify_record(p, hashes_only, log)
        if failure:
            return f"previous record {p}: {failure}"
    failure = check_files(record, base)
    if failure or hashes_only:
        return failure
    log(f"recomputing the numbers of {path}")
    recomputed = recompute(record, base)
    for key in ("metrics", "verdicts", "evidence"):
        failure = compare(record[key], recomputed[key], key)
        if failure:
            return f"{path}: {failure}"
    return None


def check_files(record: dict, base: Path) -> str | None:
    """The first file whose SHA-256 differs from the record's (or that is missing)."""
    from classunlearn.data import dataset_files_sha256, dataset_fingerprint

    files = record["files"]
    named = [(p, sha) for p, sha in files["data"].items()]
    for key in ("original", "unlearned", "ulira_scores"):
        if files.get(key):
            named.append((files[key]["path"], files[key]["sha256"]))
    named += [(r["path"], r["sha256"]) for r in files["references"]]
    for p, sha in named:
        full = record_path(base, p)
        if not full.is_file():
            return f"file {full} is missing"
        if file_sha256(full) != sha:
            return f"file {full} changed (SHA-256 {file_sha256(full)[:12]}..., recorded " \
                   f"{sha[:12]}...)"
    ds = record["dataset"]
    try:
        now = dataset_files_sha256(ds["name"], ds["data_dir"])
        fingerprint = dataset_fingerprint(ds["name"], ds["data_dir"])
    except UserError as e:
        return f"the data cannot be read: {e}"
    extra = sorted(set(now) - set(files["data"]))
    if extra:
        return f"data file {extra[0]} is read now but not named in the record"
    if fingerprint != ds["fingerprint"]:
        return f"the data of {ds['name']} changed (its fingerprint differs from the record's)"
    return None


def recompute(record: dict, base: Path) -> dict:
    """metrics, verdicts and evidence from the checkpoints, the data and the stored U-LiRA
    scores, by the same functions ``forget`` used."""
    from safetensors.numpy import load_file

    from classunlearn.bench.audit import METRIC_GROUPS, measure
    from classunlearn.checkpoint import load_checkpoint
    from classunlearn.data import ForgetSplit, load_dataset
    from classunlearn.evaluate import SplitLogits
    from classunlearn.forget import audit_verdicts, evidence, record_metrics, strict

    files = record["files"]
    ds = load_dataset(record["dataset"]["name"], record["dataset"]["data_dir"])
    audited = tuple(c["index"] for c in record["request"]["audited_forget_classes"])
    split = ForgetSplit(ds, audited)

    def logits(entry: dict) -> SplitLogits:
        return SplitLogits.of(load_checkpoint(record_path(base, entry["path"]), ds)[0], split)

    original, unlearned = logits(files["original"]), logits(files["unlearned"])
    refs = [logits(r) for r in files["references"]]
    arrays = None
    if files.get("ulira_scores"):
        arrays = load_file(str(record_path(base, files["ulira_scores"]["path"])))
        arrays["mask"] = arrays["mask"].astype(bool)
    groups = list(METRIC_GROUPS) if arrays is not None else [
        g for g in METRIC_GROUPS if g != "ulira"]
    audit = record.get("audit", {})
    # records before reading sets: the default features, which they were measured with
    core = measure(split, unlearned, refs, groups, seed=0,
                   mia_feature=audit.get("mia_nn_feature"),
                   svc_feature=audit.get("svc_mia_feature"),
                   ulira=lambda: stored_ulira(split, arrays, [unlearned, *refs]),
                   runtime_s=record["method"]["run_s"])
    before = [c["index"] for c in record["request"]["forgotten_before"]]
    return strict({"metrics": record_metrics(core, split, unlearned, refs),
                   "verdicts": audit_verdicts(core, split, unlearned, refs, before),
                   "evidence": evidence(split, original, unlearned, refs, core, arrays)})


def stored_ulira(split, arrays: dict, audited: list):
    """U-LiRA's numbers and intervals from the stored scores (``bench.audit.ulira_arrays``),
    as ``replay_ulira(..., null=True)`` computed them from the units."""
    from classunlearn.bench.audit import UliraOutcome, ulira_intervals
    from classunlearn.evaluate import ulira_metrics

    mask = np.zeros((len(arrays["mask"]), len(split.dataset.y_train)), dtype=bool)
    mask[:, split.train_forget.numpy()] = arrays["mask"]
    metrics, u, flagged = ulira_metrics(split, arrays["method_phi"], {"mask": mask},
                                        {"phi": arrays["retrained_phi"]}, audited)
    metrics["ulira_flagged"] = flagged[0]
    details = {"reference_flagged": flagged[1:], "roc": [u.roc_fpr, u.roc_tpr],
               **ulira_intervals(arrays)}
    return UliraOutcome(metrics, details)


def compare(recorded: object, now: object, where: str) -> str | None:
    """The first place where `now` differs from `recorded` (numbers within tolerance)."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        for k in sorted(set(recorded) | set(now), key=str):
            if k not in recorded or k not in now:
                return f"{where}.{k}: {'not recomputed' if k in recorded else 'not recorded'}"
            failure = compare(recorded[k], now[k], f"{where}.{k}")
            if failure:
                return failure
        return None
    if isinstance(recorded, list) and isinstance(now, list):
        if len(recorded) != len(now):
            return f"{where}: {len(recorded)} items recorded, {len(now)} recomputed"
        for i, (a, b) in enumerate(zip(recorded, now)):
            failure = compare(a, b, f"{where}[{i}]")
            if failure:
                return failure
        return None
    numbers = (int, float)
    if (isinstance(recorded, numbers) and isinstance(now, numbers)
            and not isinstance(recorded, bool) and not isinstance(now, bool)):
        if math.isclose(recorded, now, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            return None
    elif recorded == now:
        return None
    return f"{where}: recorded {recorded!r}, recomputed {now!r}"
