"""report.md and a self-contained report.html (plots embedded as PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from classunlearn.bench.summary import (  # noqa: E402
    DROP_NOTE,
    GAP_KEYS,
    HEADER,
    has_drops,
    oracle_methods,
    ordered_methods,
    table_rows,
    write_text_atomic,
)
from classunlearn.table import markdown_table  # noqa: E402

LOG_FLOOR = 1e-4  # zeros clipped to this on the log-log ROC panel
NA_COLOUR = "lightgrey"  # gap cells with no value: never a colour of the scale


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _seed_sorted(d: dict) -> list:
    """A dict keyed by seed (JSON: "0", "1", ...) as its values in seed order."""
    def key(k):
        try:
            return (0, int(k), "")
        except (TypeError, ValueError):
            return (1, 0, str(k))
    return [d[k] for k in sorted(d, key=key)]


def seed_forget_probs(value) -> list[np.ndarray]:
    """Per-seed forget-class probabilities: {"0": [p_0..], ...} (one list per seed) or the old
    format, a single list (one seed, or whatever the old runner kept)."""
    if isinstance(value, dict):
        rows = _seed_sorted(value)
    elif isinstance(value, list | tuple) and value and isinstance(value[0], list | tuple):
        rows = list(value)
    elif isinstance(value, list | tuple) and value:
        rows = [value]
    else:
        rows = []
    return [np.asarray(r, dtype=float) for r in rows if r is not None and len(r)]


def seed_roc_curves(value) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-seed (fpr, tpr) curves: {"0": [fpr, tpr], ...} or the old format, one [fpr, tpr]."""
    if isinstance(value, dict):
        pairs = _seed_sorted(value)
    elif isinstance(value, list | tuple) and len(value) == 2 and all(
            isinstance(v, list | tuple | np.ndarray) and (len(v) == 0 or np.isscalar(v[0]))
            for v in value):
        pairs = [value]
    else:
        pairs = list(value or [])
    out = []
    for p in pairs:
        if p is None or len(p) != 2:
            continue
        fpr, tpr = np.asarray(p[0], dtype=float), np.asarray(p[1], dtype=float)
        if fpr.size and fpr.shape == tpr.shape:
            out.append((fpr, tpr))
    return out


def _forget_figure(study: str, d: dict):
    """The heat map of where forget-class test samples go: the references' mean, then each
    method's mean over its seeds; None without anything to show."""
    names = d.get("class_names") or []
    labels, rows = [], []
    if d.get("ref_forget_probs") is not None and len(d["ref_forget_probs"]):
        labels.append("retrained refs (mean)")
        rows.append(np.asarray(d["ref_forget_probs"], dtype=float))
    for m, v in (d.get("methods") or {}).items():
        seeds = seed_forget_probs(v.get("forget_probs"))
        if not seeds or len({s.shape for s in seeds}) != 1:
            continue
        rows.append(np.mean(seeds, 0))
        labels.append(f"{m} (mean over {len(seeds)} seeds)" if len(seeds) > 1
                      else f"{m} (1 seed)")
    rows_ok = [r for r in rows if r.shape == rows[0].shape] if rows else []
    if not rows_ok or len(rows_ok) != len(rows):
        return None
    grid = np.stack(rows)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(rows)), labels)
    nn = list((d.get("nn_class") or {}).values())
    forget = d.get("forget_classes") or []
    if len(names) == grid.shape[1]:
        ax.set_xticks(range(len(names)), [n + (" (nn)" if i in nn else "") +
                                          (" (forget)" if i in forget else "")
                                          for i, n in enumerate(names)], rotation=45, ha="right")
    ax.set_title(f"{study}: mean probability of forget-class test samples per class "
                 "(methods: mean over seeds)")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if np.isfinite(v) and v >= 0.05:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    return fig


def _forget_plot(study: str, d: dict) -> str | None:
    fig = _forget_figure(study, d)
    return _png(fig) if fig is not None else None


def roc_figure(study: str, d: dict):
    """Two panels: every seed's U-LiRA ROC curve on linear axes and on log-log axes (the low
    false-positive region); one colour and one legend entry per method, thin line per seed.
    Each curve's line has gid "roc:<method>:<seed index>". None without any curve."""
    curves = {m: seed_roc_curves(v.get("ulira_roc"))
              for m, v in (d.get("methods") or {}).items() if "ulira_roc" in v}
    curves = {m: c for m, c in curves.items() if c}
    if not curves:
        return None
    fig, (lin, log) = plt.subplots(1, 2, figsize=(11, 5))
    for i, (m, seeds) in enumerate(curves.items()):
        # ten colours, then the same colours dashed: every method stays tellable apart
        style = {"color": f"C{i % 10}", "ls": "-" if i < 10 else "--", "lw": 0.9,
                 "alpha": 0.8}
        n = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
        for s, (fpr, tpr) in enumerate(seeds):
            label = m + n if s == 0 else "_nolegend_"
            lin.plot(fpr, tpr, label=label, gid=f"roc:{m}:{s}", **style)
            log.plot(np.clip(fpr, LOG_FLOOR, 1), np.clip(tpr, LOG_FLOOR, 1), label=label,
                     gid=f"roc:{m}:{s}", **style)
    lin.plot([0, 1], [0, 1], "k:", lw=0.8)
    lin.set(xlabel="false-positive rate", ylabel="true-positive rate",
            title=f"U-LiRA ROC ({study}); chance = diagonal")
    log.plot([LOG_FLOOR, 1], [LOG_FLOOR, 1], "k:", lw=0.8)
    log.set(xscale="log", yscale="log", xlim=(LOG_FLOOR, 1), ylim=(LOG_FLOOR, 1),
            xlabel=f"false-positive rate (log; 0 shown at {LOG_FLOOR:g})",
            ylabel="true-positive rate (log)", title="low false-positive region (log-log)")
    lin.legend(fontsize=7, ncol=2)
    return fig


def _roc_plot(study: str, d: dict) -> str | None:
    fig = roc_figure(study, d)
    return _png(fig) if fig is not None else None


def _mark(stat: dict) -> str:
    n, n_seeds = stat.get("n"), stat.get("n_seeds")
    return f" [{n}/{n_seeds}]" if isinstance(n, int) and isinstance(n_seeds, int) and \
        n < n_seeds else ""


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _mia_nn_plot(study: str, summary: dict) -> str | None:
    methods = [m for m in ordered_methods(summary)
               if _finite(summary[m].get("mia_nn", {}).get("mean"))]
    if not methods:
        return None
    ref = {k: [summary[m].get(k, {}).get("mean") for m in methods]
           for k in ("mia_nn_ref_mean", "mia_nn_ref_std")}
    ref = {k: [float(x) for x in v if _finite(x)] for k, v in ref.items()}
    fig, ax = plt.subplots(figsize=(8, 4))
    vals = [summary[m]["mia_nn"]["mean"] for m in methods]
    errs = [summary[m]["mia_nn"].get("std") for m in methods]
    labels = [m + _mark(summary[m]["mia_nn"]) for m in methods]
    ax.bar(labels, vals, yerr=[e if _finite(e) else 0 for e in errs], color="C0")
    if ref["mia_nn_ref_mean"]:
        ref_mean = float(np.mean(ref["mia_nn_ref_mean"]))
        ref_std = float(np.mean(ref["mia_nn_ref_std"])) if ref["mia_nn_ref_std"] else 0.0
        ax.axhspan(ref_mean - 2 * ref_std, ref_mean + 2 * ref_std, color="C2", alpha=0.2,
                   label="retrained references: mean ± 2 sd")
        ax.axhline(ref_mean, color="C2")
        ax.legend(fontsize=8)
    ax.set(ylabel="MIA-NN score (%)", title=f"MIA-NN score vs the references ({study})")
    ax.tick_params(axis="x", rotation=60)
    return _png(fig)


def gap_matrix(summary: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(methods, |metric - retrain| per method x GAP_KEYS with NaN where either side has no
    value, partial: True where either side dropped some seeds). No rows without retrain or
    without any other method."""
    if "retrain" not in summary:
        return [], np.zeros((0, len(GAP_KEYS))), np.zeros((0, len(GAP_KEYS)), bool)
    methods = [m for m in ordered_methods(summary) if m != "retrain"]
    gaps = np.full((len(methods), len(GAP_KEYS)), np.nan)
    partial = np.zeros(gaps.shape, bool)
    for i, m in enumerate(methods):
        for j, k in enumerate(GAP_KEYS):
            a, b = summary[m].get(k, {}), summary["retrain"].get(k, {})
            if _finite(a.get("mean")) and _finite(b.get("mean")):
                gaps[i, j] = abs(a["mean"] - b["mean"])
            partial[i, j] = bool(_mark(a) or _mark(b))
    return methods, gaps, partial


def gap_image(gaps: np.ndarray) -> np.ma.MaskedArray:
    """What the gap heat map paints: NaN cells masked (painted NA_COLOUR), never as 0."""
    return np.ma.masked_invalid(np.asarray(gaps, dtype=float))


def gap_figure(summary: dict):
    methods, gaps, partial = gap_matrix(summary)
    if not methods:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(methods) + 1.5))
    cmap = plt.get_cmap("magma_r").with_extremes(bad=NA_COLOUR)
    ax.imshow(gap_image(gaps), aspect="auto", cmap=cmap, vmin=0, vmax=100)
    ax.set_xticks(range(len(GAP_KEYS)), GAP_KEYS, rotation=30, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    for i in range(len(methods)):
        for j in range(len(GAP_KEYS)):
            if np.isfinite(gaps[i, j]):
                ax.text(j, i, f"{gaps[i, j]:.0f}" + ("*" if partial[i, j] else ""),
                        ha="center", va="center", fontsize=7,
                        color="white" if gaps[i, j] > 50 else "black")
            else:
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="dimgray")
    note = "; * = some seeds dropped" if partial.any() else ""
    ax.set_title(f"|metric - retrain| per method (points); grey n/a = no value{note}")
    return fig


def _gap_plot(summary: dict) -> str | None:
    fig = gap_figure(summary)
    return _png(fig) if fig is not None else None


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def version_warnings(details: dict | None) -> list[str]:
    """One warning per study whose units were computed by more than one classunlearn version
    (details[study]["versions"])."""
    out = []
    for study, d in (details or {}).items():
        vs = d.get("versions") if isinstance(d, dict) else None
        if not isinstance(vs, list | tuple):
            continue
        vs = list(dict.fromkeys(str(v) for v in vs))
        if len(vs) > 1:
            out.append(f"WARNING: study {study} mixes results computed by classunlearn versions "
                       f"{_and(vs)}; rerun with a clean --out to recompute")
    return out


def study_warnings(details: dict | None) -> list[str]:
    """The warnings the runner stored per study (details[study]["warnings"]: methods that
    leave TA_r far below the original's, see classunlearn.tune.retain_warnings)."""
    studies = {s: d["warnings"] for s, d in (details or {}).items()
               if isinstance(d, dict) and isinstance(d.get("warnings"), list)}
    return [str(w) + (f" (study {s})" if len(studies) > 1 else "")
            for s, ws in studies.items() for w in ws]


def render_tables(results: dict, oracles: set[str]) -> str:
    failed = results.get("failed") or {}
    parts = []
    for study, summary in results["studies"].items():
        # failed keys are "<study> <method>": every seed of that method diverged or some did
        gone = sorted({k[len(study) + 1:] for k in failed if k.startswith(study + " ")})
        parts.append(f"### {study}\n\n"
                     + markdown_table(HEADER, table_rows(summary, oracles, gone)))
    # a study where every method failed has no metrics, so no summary: keep its FAILED rows
    known = tuple(s + " " for s in results["studies"])
    for study in sorted({k.rsplit(" ", 1)[0] for k in failed
                         if " " in k and not k.startswith(known)}):
        gone = sorted({k[len(study) + 1:] for k in failed if k.startswith(study + " ")})
        parts.append(f"### {study}\n\n" + markdown_table(HEADER, table_rows({}, oracles, gone)))
    if len(results["studies"]) > 1:
        parts.append("### pooled over studies\n\n" +
                     markdown_table(HEADER, table_rows(results["summary"], oracles)))
    if any(has_drops(s) for s in [results["summary"], *results["studies"].values()]):
        parts.append(DROP_NOTE)
    return "\n\n".join(parts)


def write_report(out: Path, results: dict, failed: dict, details: dict | None = None) -> None:
    """Write report.md and report.html from results (summary + studies) and plot details."""
    oracles = oracle_methods(results["summary"])
    tables = render_tables({**results, "failed": failed}, oracles)
    legend = ("Mean ± std over seeds. Accuracies and attack scores in %. MIA-NN z = |score - "
              "references' mean| / references' sd. U-LiRA: balanced accuracy at the best "
              "threshold over both directions (50 = chance; the retrain row shows what this "
              "attack reads for a retrained model, see docs/audit.md). TV: total variation to "
              "the references' mean output on T_f. Avg.Gap: mean |metric - retrain| over "
              "Acc_r, Acc_f, TA_r, TA_f, SVC-MIA, MIA-NN, U-LiRA. Methods ranked by Avg.Gap; "
              "ORACLE methods read retrained models."
              + ("" if DROP_NOTE in tables else " " + DROP_NOTE))
    warnings = version_warnings(details) + study_warnings(details)
    warn_md = "".join(f"**{w}**\n\n" for w in warnings)
    fail = "".join(f"\n- FAILED {k}: {v}" for k, v in failed.items())
    write_text_atomic(out / "report.md", f"# classunlearn bench report\n\n{warn_md}{legend}\n\n"
                      f"{tables}\n" + (f"\n## Failed runs\n{fail}\n" if fail else ""))
    images: list[tuple[str, str]] = []
    for study, d in (details or {}).items():
        if not isinstance(d, dict):
            continue
        summary = results["studies"].get(study, {})
        for title, img in ((f"Where forget-class samples go: {study}", _forget_plot(study, d)),
                           (f"U-LiRA ROC: {study}", _roc_plot(study, d)),
                           (f"MIA-NN: {study}", _mia_nn_plot(study, summary)),
                           (f"Gap to retrain: {study}", _gap_plot(summary))):
            if img:
                images.append((title, img))
    body = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' "
                   f"src='data:image/png;base64,{b}'/>" for t, b in images)
    warn_html = "".join(f"<p class='warn'><strong>{html.escape(w)}</strong></p>"
                        for w in warnings)
    write_text_atomic(
        out / "report.html",
        "<!doctype html><html><head><meta charset='utf-8'><title>classunlearn report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{font-size:12px}"
        "img{max-width:100%}.warn{background:#fff3cd;border:2px solid #d39e00;padding:8px}"
        "</style></head><body><h1>classunlearn bench report</h1>"
        f"{warn_html}<p>{html.escape(legend)}</p><pre>{html.escape(tables)}</pre>"
        f"{'<h2>Failed runs</h2><pre>' + html.escape(fail) + '</pre>' if fail else ''}"
        f"{body}</body></html>")
