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
              "mia_nn", "mia_nn_z", "ulira", "ulira_auc", "tv", "avg_gap", "runtime_s",
              "runtime_ratio"]


def _mean_std(values: list[float]) -> dict:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals)) if len(vals) > 1
            else float("nan")}


def summarise(store) -> dict:
    """{"summary": method -> metric -> {mean, std} pooled over studies and seeds,
    "studies": study -> the same per study}."""
    per: dict = {}
    pooled: dict = {}
    for study, method, _seed, metric, value in store.metrics():
        per.setdefault(study, {}).setdefault(method, {}).setdefault(metric, []).append(value)
        pooled.setdefault(method, {}).setdefault(metric, []).append(value)
    agg = lambda d: {m: {k: _mean_std(v) for k, v in ms.items()} for m, ms in d.items()}  # noqa: E731
    return {"summary": agg(pooled), "studies": {s: agg(d) for s, d in per.items()}}


def ordered_methods(summary: dict) -> list[str]:
    """Retrain first, then the rest by Avg. Gap (lower is better)."""
    def gap(m: str) -> float:
        v = summary[m].get("avg_gap", {}).get("mean", float("nan"))
        return v if np.isfinite(v) else float("inf")

    rest = sorted((m for m in summary if m != "retrain"), key=gap)
    return (["retrain"] if "retrain" in summary else []) + rest


HEADER = ["method", "Acc_r", "Acc_f", "TA_r", "TA_f", "SVC-MIA", "MIA-NN", "MIA-NN z",
          "U-LiRA", "U-LiRA AUC", "TV", "Avg.Gap", "time s", "x retrain"]


def table_rows(summary: dict, oracles: set[str] | None = None,
               failed: list[str] | None = None) -> list[list]:
    """One row per method; methods that failed (diverged) get a FAILED row with no numbers."""
    rows = []
    for m in ordered_methods(summary):
        name = m + (" (ORACLE)" if oracles and m in oracles else "")
        rows.append([name, *(summary[m].get(k, {"mean": float("nan")}) for k in TABLE_KEYS)])
    for m in failed or []:
        if m not in summary:
            rows.append([f"{m} (FAILED)", *(["-"] * len(TABLE_KEYS))])
    return rows


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


