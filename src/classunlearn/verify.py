"""`classunlearn verify RECORD`: does a forget record still hold?

First the record's seal (``forget.seal``: an edit of any field fails, naming the fields and,
where the files can tell, the claim or number it breaks). Then it re-hashes every file the
record names (the data files, or the embedded dataset's fingerprint; the original,
unlearned and reference checkpoints and their sidecars; the stored U-LiRA scores; the
plug-in trainer's file and the init checkpoint the references were trained with; the
previous record of a chain; found by SHA-256 under ``--search`` folders when they moved),
checks the record's claims against the checkpoints' sidecars (the forgotten classes, the
method, the original, what the references were trained without), then recomputes every
number from the checkpoints and the data,
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
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from classunlearn.checkpoint import file_sha256
from classunlearn.errors import ParameterError, UserError
from classunlearn.forget import SEAL, read_record, record_path, seal_failure

ABS_TOL = 1e-6
"""Absolute tolerance of a recomputed number (percentages, z, seconds)."""
REL_TOL = 1e-9
"""Relative tolerance of a recomputed number."""


class Mismatch(Exception):
    """A claim of the record that its files contradict (verify exits 1 naming it)."""


class Locator:
    """Where the files a record names are: at their recorded path (relative to the record's
    folder) when it holds the recorded SHA-256, else any file with that hash under the
    ``--search`` folders. The hashes decide, not the paths."""

    def __init__(self, search: Sequence[Path] = (), log: Callable[[str], None] = print) -> None:
        self.search = [Path(s) for s in search]
        self.log = log
        self._hashes: dict[Path, str] = {}
        self._found: dict[str, Path] = {}

    def sha(self, path: Path) -> str:
        if path not in self._hashes:
            self._hashes[path] = file_sha256(path)
        return self._hashes[path]

    def locate(self, base: Path, recorded: str, sha: str) -> Path | None:
        """The file named `recorded` with SHA-256 `sha`, or None."""
        full = record_file(base, recorded)
        if full.is_file() and self.sha(full) == sha:
            return full
        if sha in self._found:
            return self._found[sha]
        suffix = full.suffix
        for root in self.search:
            for cand in sorted(root.rglob(f"*{suffix}")):
                if cand.is_file() and self.sha(cand) == sha:
                    self._found[sha] = cand
                    self.log(f"found {recorded} (SHA-256 {sha[:12]}...) at {cand}")
                    return cand
        return None

    def path(self, base: Path, entry: dict) -> Path:
        """The located file of a record entry ({"path", "sha256"}), or its recorded path."""
        return self.locate(base, entry["path"], entry["sha256"]) or record_file(
            base, entry["path"])


def record_file(base: Path, recorded: str) -> Path:
    """A path named in a record, relative ones resolved against the record's folder."""
    return Path(os.path.normpath(record_path(base, recorded)))


def verify_record(path: Path, hashes_only: bool = False,
                  log: Callable[[str], None] = print,
                  search: Sequence[Path] = ()) -> str | None:
    """None when every file and number of the record at `path` (and of the records it
    chains to) reproduces and its seal matches, else one line naming the first that does
    not. Bad input (no record, not a record) raises ParameterError; a record damaged so
    that it no longer parses is a failure (it still names itself a record)."""
    path = Path(path)
    try:
        record = read_record(path)
    except ParameterError:
        try:
            raw = path.read_bytes() if path.is_file() else b""
        except OSError:
            raw = b""
        if b"classunlearn.record/" not in raw:
            raise
        return f"{path}: the record is damaged (it is no longer a valid record JSON)"
    try:
        return _verify(path, record, hashes_only, log, Locator(search, log))
    except Mismatch as e:
        return f"{path}: {e}"
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
        return f"{path}: the record is malformed ({type(e).__name__}: {e})"


def _verify(path: Path, record: dict, hashes_only: bool, log: Callable[[str], None],
            locator: Locator) -> str | None:
    base = path.resolve().parent
    edited = seal_failure(record)
    if edited:  # the claim or number it breaks, where the files can tell
        try:
            claim = check_files(record, base, locator) or check_claims(record, base, locator)
            if not claim and not hashes_only:
                log(f"recomputing the numbers of {path}")
                now = recompute(record, base, locator)
                claim = next(filter(None, (compare(record[k], now[k], k) for k in (
                    "metrics", "verdicts", "evidence"))), None)
        except (Mismatch, KeyError, TypeError, IndexError, ValueError, AttributeError,
                RuntimeError, UserError) as e:
            claim = str(e)
        return f"{path}: {edited}" + (f"; {claim}" if claim else "")
    if SEAL not in record:
        log(f"note: {path} is an unsealed {record.get('schema')} record: its files, claims "
            "and numbers are checked, but an edit of its note, time or command cannot be "
            "seen (records written now are sealed)")
    prev = record["request"]["previous"]
    if prev is not None:
        p = locator.locate(base, prev["record"], prev["sha256"])
        shown = record_file(base, prev["record"])
        if p is None:
            if not shown.is_file():
                return (f"previous record {shown} is missing; if it moved, pass its folder "
                        "with --search")
            return f"previous record {shown} changed (its SHA-256 is not the one this record names)"
        if record.get("record_sha256_of_previous") != prev["sha256"]:
            return f"previous record {p} changed (its SHA-256 is not the one this record names)"
        earlier = read_record(p)
        if earlier["files"]["unlearned"]["sha256"] != record["files"]["original"]["sha256"]:
            return (f"{path}: its original is not the unlearned model of the previous record "
                    f"{p}")
        failure = verify_record(p, hashes_only, log, locator.search)
        if failure:
            return f"previous record {p}: {failure}"
    failure = check_files(record, base, locator)
    if failure:
        return failure
    failure = check_claims(record, base, locator)
    if failure:
        return f"{path}: {failure}"
    if hashes_only:
        return None
    log(f"recomputing the numbers of {path}")
    try:
        recomputed = recompute(record, base, locator)
    except Mismatch:
        raise
    except (UserError, RuntimeError, ValueError) as e:
        return (f"{path}: its numbers cannot be recomputed from its files ({e}); the record "
                "does not match them")
    for key in ("metrics", "verdicts", "evidence"):
        failure = compare(record[key], recomputed[key], key)
        if failure:
            return f"{path}: {failure}"
    return None


def check_files(record: dict, base: Path, locator: Locator | None = None) -> str | None:
    """The first file whose SHA-256 differs from the record's (or that is missing), the
    checkpoints' sidecars included where the record holds their hashes."""
    from classunlearn.checkpoint import sidecar_path
    from classunlearn.data import dataset_files_sha256, dataset_fingerprint

    locator = locator or Locator()
    files = record["files"]
    named = [({"path": p, "sha256": sha}) for p, sha in files["data"].items()]
    for key in ("original", "unlearned", "ulira_scores", "trainer", "init"):
        if files.get(key):
            named.append(files[key])
    named += list(files["references"])
    for entry in named:
        p, sha = entry["path"], entry["sha256"]
        found = locator.locate(base, p, sha)
        full = record_file(base, p)
        if found is None:
            hint = "; if it moved, pass its folder with --search" if locator.search == [] \
                else ""
            if not full.is_file():
                return f"file {full} is missing{hint}"
            return f"file {full} changed (SHA-256 {locator.sha(full)[:12]}..., recorded " \
                   f"{sha[:12]}...){hint}"
        side = entry.get("sidecar_sha256")
        if side is not None:
            sp = sidecar_path(found)
            if not sp.is_file():
                return f"sidecar {sp} is missing (keep the .json beside {found.name})"
            if file_sha256(sp) != side:
                return f"sidecar {sp} changed (SHA-256 {file_sha256(sp)[:12]}..., recorded " \
                       f"{side[:12]}...)"
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


def check_claims(record: dict, base: Path, locator: Locator) -> str | None:
    """What the record claims against what its checkpoints' sidecars say: the forgotten
    classes (names and indices), the method, its seed and parameters, the original it
    started from, and what the references were trained without."""
    from classunlearn.checkpoint import load_meta

    req, files, method = record["request"], record["files"], record["method"]

    def idx(key: str) -> list[int]:
        return [int(c["index"]) for c in req[key]]

    forget, before, audited = idx("forget_classes"), idx("forgotten_before"), idx(
        "audited_forget_classes")
    if not forget:
        return "request.forget_classes is empty: the record names no forgotten class"
    if sorted({*forget, *before}) != sorted(audited):
        return (f"request.audited_forget_classes {audited} is not request.forget_classes "
                f"{forget} plus request.forgotten_before {before}")
    if not files["references"]:
        return ("files.references is empty: the record names no retrained reference, and "
                "every verdict is measured against them")
    n_refs = record.get("audit", {}).get("references")
    if n_refs is not None and n_refs != len(files["references"]):
        return (f"files.references names {len(files['references'])} models but "
                f"audit.references says {n_refs}")
    try:
        side = load_meta(locator.path(base, files["unlearned"]))
        refs = [load_meta(locator.path(base, r)) for r in files["references"]]
        orig = load_meta(locator.path(base, files["original"]))
    except UserError as e:
        return f"a checkpoint's sidecar cannot be read ({e})"
    names = side.class_names
    for key in ("forget_classes", "forgotten_before", "audited_forget_classes"):
        for c in req[key]:
            i = int(c["index"])
            if not 0 <= i < len(names) or names[i] != c["name"]:
                real = f"'{names[i]}'" if 0 <= i < len(names) else "no class"
                return (f"request.{key} names class {i} '{c['name']}', but in the unlearned "
                        f"model's sidecar class {i} is {real}")
    m = side.method or {}
    if sorted(m.get("forget_classes") or []) != sorted(audited):
        return (f"request.audited_forget_classes says {audited} were forgotten, but the "
                f"unlearned model's sidecar says {sorted(m.get('forget_classes') or [])}")
    if side.dataset != record["dataset"]["name"]:
        return (f"dataset.name is '{record['dataset']['name']}', but the unlearned model was "
                f"trained on '{side.dataset}'")
    for key, mine in (("name", method["name"]), ("seed", method["seed"]),
                      ("params", method["params"])):
        if m.get(key) != mine:
            return (f"method.{key} is {mine!r}, but the unlearned model's sidecar says "
                    f"{m.get(key)!r}")
    if side.parent_sha256 and side.parent_sha256 != files["original"]["sha256"]:
        return ("files.original is not the model the unlearned one was made from (its "
                "sidecar's parent_sha256 differs)")
    for j, r in enumerate(refs):
        if sorted(r.excluded_classes) != sorted(audited):
            return (f"reference {j} was trained without {sorted(r.excluded_classes)}, not the "
                    f"record's forget classes {audited}")
    for key, what in (("trainer", "trainer"), ("init", "init checkpoint")):
        recorded = (files.get(key) or {}).get("sha256")
        if recorded != (getattr(orig, f"{key}_sha256", None) or None):
            return (f"files.{key} names {what} SHA-256 "
                    f"{(recorded or 'none')[:12]}, but the original's sidecar records "
                    f"{(getattr(orig, f'{key}_sha256', None) or 'none')[:12]}")
    from classunlearn.trainers import same_training

    for j, r in enumerate(refs):
        differs = same_training(orig, r)
        if differs:
            return f"reference {j} was trained otherwise than the original ({differs})"
    learned_without = sorted(set(orig.excluded_classes) & set(forget))
    if learned_without:
        return (f"the original was trained without {learned_without} (its sidecar), so it "
                "had nothing to forget")
    return None


def recompute(record: dict, base: Path, locator: Locator | None = None) -> dict:
    """metrics, verdicts and evidence from the checkpoints, the data and the stored U-LiRA
    scores, by the same functions ``forget`` used."""
    from safetensors.numpy import load_file

    from classunlearn.bench.audit import METRIC_GROUPS, measure
    from classunlearn.checkpoint import load_checkpoint
    from classunlearn.data import ForgetSplit, load_dataset
    from classunlearn.evaluate import SplitLogits
    from classunlearn.forget import audit_verdicts, evidence, record_metrics, strict

    locator = locator or Locator()
    files = record["files"]
    ds = load_dataset(record["dataset"]["name"], record["dataset"]["data_dir"])
    audited = tuple(c["index"] for c in record["request"]["audited_forget_classes"])
    split = ForgetSplit(ds, audited)

    def logits(entry: dict) -> SplitLogits:
        return SplitLogits.of(load_checkpoint(locator.path(base, entry), ds)[0], split)

    original, unlearned = logits(files["original"]), logits(files["unlearned"])
    refs = [logits(r) for r in files["references"]]
    arrays = None
    if files.get("ulira_scores"):
        arrays = load_file(str(locator.path(base, files["ulira_scores"])))
        arrays["mask"] = arrays["mask"].astype(bool)
        if arrays["mask"].shape[1:] != (len(split.train_forget),):
            raise Mismatch(f"{files['ulira_scores']['path']} holds U-LiRA scores of "
                           f"{arrays['mask'].shape[1:]} forget samples, but the record's "
                           f"forget classes {list(audited)} have {len(split.train_forget)}")
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
