"""The study's summary and its table: mean and spread over seeds, method order, table rows.

Shared by the runner (which writes results) and the report (which reads them); neither
imports the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classunlearn.checkpoint import _atomic_write
from classunlearn.errors import UserError

GAP_KEYS = ["acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "svc_mia",
            "mia_nn", "ulira"]
TABLE_KEYS = ["acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "svc_mia",
              "mia_nn", "mia_nn_z", "ulira", "ulira_auc", "ulira_in_sample", "tv", "avg_gap",
              "runtime_s", "runtime_ratio"]


def _finite(v) -> float | None:
    """The value as a float, or None when it is missing or not finite (SQLite gives NaN back
    as NULL, i.e. None)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _mean_std(values: list, n_seeds: int | None = None) -> dict:
    """{"mean", "std", "n", "n_seeds"}: mean and (population) std over the finite values; "n"
    counts the values used, "n_seeds" the seeds that ran (default: len(values)), so a dropped
    value (NaN, missing) shows as n < n_seeds instead of disappearing."""
    vals = [f for f in map(_finite, values) if f is not None]
    n_seeds = len(values) if n_seeds is None else n_seeds
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "n": 0, "n_seeds": n_seeds}
    return {"mean": float(np.mean(vals)),
            "std": float(np.std(vals)) if len(vals) > 1 else float("nan"),
            "n": len(vals), "n_seeds": n_seeds}


def _gap_complete(metrics: dict, retrain: dict | None, measured: set[str]) -> bool:
    """Whether a seed's avg_gap covers every gap metric the study measures: each is finite for
    the method and for retrain at that seed (avg_gap itself skips the ones either side lacks)."""
    if retrain is None:
        return False
    return all(_finite(metrics.get(k)) is not None and _finite(retrain.get(k)) is not None
               for k in GAP_KEYS if k in measured)


def summarise(store) -> dict:
    """{"summary": method -> metric -> {mean, std, n, n_seeds} pooled over studies and seeds,
    "studies": study -> the same per study}.

    "n" is how many values went into the mean (finite ones), "n_seeds" how many seeds have any
    row for that method (in that study; pooled: summed over studies). n < n_seeds means some
    value was dropped; the table marks it. A seed's avg_gap counts only when it covers every gap
    metric the study measures (finite for the method and for retrain at that seed)."""
    by_seed: dict[tuple, dict[str, object]] = {}
    measured: dict[str, set[str]] = {}
    for study, method, seed, metric, value in store.metrics():
        by_seed.setdefault((study, method, seed), {})[metric] = value
        if _finite(value) is not None:
            measured.setdefault(study, set()).add(metric)
    per: dict = {}
    pooled: dict = {}
    seeds: dict = {}
    for (study, method, seed), metrics in by_seed.items():
        seeds.setdefault(study, {}).setdefault(method, set()).add(seed)
        retrain = by_seed.get((study, "retrain", seed))
        for metric, value in metrics.items():
            if (metric == "avg_gap" and method != "retrain"
                    and not _gap_complete(metrics, retrain, measured.get(study, set()))):
                value = None  # a gap over fewer metrics than the others: dropped, not averaged
            per.setdefault(study, {}).setdefault(method, {}).setdefault(metric, []).append(value)
            pooled.setdefault(method, {}).setdefault(metric, []).append(value)
    studies = {s: {m: {k: _mean_std(v, len(seeds[s][m])) for k, v in ms.items()}
                   for m, ms in d.items()} for s, d in per.items()}
    pooled_seeds = {m: sum(len(ss.get(m, ())) for ss in seeds.values()) for m in pooled}
    summary = {m: {k: _mean_std(v, pooled_seeds[m]) for k, v in ms.items()}
               for m, ms in pooled.items()}
    return {"summary": summary, "studies": studies}


def ordered_methods(summary: dict) -> list[str]:
    """Retrain first, then the rest by Avg. Gap (lower is better)."""
    def gap(m: str) -> float:
        v = summary[m].get("avg_gap", {}).get("mean", float("nan"))
        return v if np.isfinite(v) else float("inf")

    rest = sorted((m for m in summary if m != "retrain"), key=gap)
    return (["retrain"] if "retrain" in summary else []) + rest


HEADER = ["method", "Acc_r", "Acc_f", "TA_r", "TA_f", "SVC-MIA", "MIA-NN", "MIA-NN z",
          "U-LiRA", "U-LiRA AUC", "U-LiRA in-sample", "TV", "Avg.Gap", "time s", "x retrain"]


DROP_NOTE = ("[n/N]: only n of the N seeds that ran the method have a finite value (the "
             "others gave NaN or no value and are dropped); mean ± std are over those n. "
             "—: no seed has a value. A seed's Avg.Gap counts only if every gap metric the "
             "study measures is finite for the method and for retrain at that seed.")


def cell(stat: dict | None, digits: int = 1) -> str:
    """One table cell: "mean±std", "mean±std [n/N]" when values were dropped, "—" when none
    is left (or the metric is absent)."""
    if not isinstance(stat, dict):
        return "—"
    mean, std = _finite(stat.get("mean")), _finite(stat.get("std"))
    n, n_seeds = stat.get("n"), stat.get("n_seeds")
    if mean is None or n == 0:
        return "—"
    text = f"{mean:.{digits}f}" + (f"±{std:.{digits}f}" if std is not None else "")
    if isinstance(n, int) and isinstance(n_seeds, int) and n < n_seeds:
        text += f" [{n}/{n_seeds}]"
    return text


def table_rows(summary: dict, oracles: set[str] | None = None,
               failed: list[str] | None = None, digits: int = 1) -> list[list[str]]:
    """One row of text cells per method (see `cell`); methods that failed in every seed get a
    FAILED row with no numbers, those that failed in some seeds are labelled so."""
    rows = []
    failed = failed or []
    for m in ordered_methods(summary):
        name = m + (" (ORACLE)" if oracles and m in oracles else "")
        name += " (FAILED in some seeds)" if m in failed else ""
        rows.append([name, *(cell(summary[m].get(k), digits) for k in TABLE_KEYS)])
    for m in failed:
        if m not in summary:
            rows.append([f"{m} (FAILED)", *(["-"] * len(TABLE_KEYS))])
    return rows


def has_drops(summary: dict) -> bool:
    """Whether any table cell of the summary is marked [n/N] or "—" for a dropped value."""
    return any(isinstance(st, dict) and isinstance(st.get("n"), int)
               and isinstance(st.get("n_seeds"), int) and st["n"] < st["n_seeds"]
               for ms in summary.values() for k, st in ms.items() if k in TABLE_KEYS)


def oracle_methods(names) -> set[str]:
    from classunlearn.methods import parse_spec

    out = set()
    for n in names:
        try:
            if parse_spec(n)[0].oracle:
                out.add(n)
        except UserError:
            pass
    return out


def write_text_atomic(path: Path, text: str) -> None:
    """Replace a result file whole or not at all; a full disk is bad input, not a crash."""
    try:
        _atomic_write(path, text.encode())
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}; free disk space and rerun "
                        "(finished work is kept)") from None


