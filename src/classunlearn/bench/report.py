"""report.md and a self-contained report.html (plots embedded as PNG data URIs): per study a
short summary, the results table, a verdict per method and attack, and plots over all seeds."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from classunlearn.audit.verdicts import accuracy_verdict, mia_nn_verdict  # noqa: E402
from classunlearn.bench.summary import (  # noqa: E402
    DROP_NOTE,
    GAP_KEYS,
    HEADER,
    cell,
    has_drops,
    oracle_methods,
    ordered_methods,
    table_rows,
    write_text_atomic,
)
from classunlearn.render import Html, badge, figure_png, join, page, table, tag  # noqa: E402
from classunlearn.table import markdown_table  # noqa: E402

LOG_FLOOR = 1e-4  # zeros clipped to this on the log-log ROC panel
NA_COLOUR = "lightgrey"  # gap cells with no value: never a colour of the scale


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
    labels, rows, sds = [], [], []
    if d.get("ref_forget_probs") is not None and len(d["ref_forget_probs"]):
        labels.append("retrained refs (mean)")
        rows.append(np.asarray(d["ref_forget_probs"], dtype=float))
        sds.append(None)
    for m, v in (d.get("methods") or {}).items():
        seeds = seed_forget_probs(v.get("forget_probs"))
        if not seeds or len({s.shape for s in seeds}) != 1:
            continue
        rows.append(np.mean(seeds, 0))
        sds.append(np.std(seeds, 0) if len(seeds) > 1 else None)
        labels.append(f"{m} (mean over {len(seeds)} seeds)" if len(seeds) > 1
                      else f"{m} (1 seed)")
    rows_ok = [r for r in rows if r.shape == rows[0].shape] if rows else []
    if not rows_ok or len(rows_ok) != len(rows):
        return None
    grid = np.stack(rows)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(rows)), labels)
    nn = list((d.get("nn_class") or {}).values())
    forget = d.get("forget_classes") or []
    if len(names) == grid.shape[1]:
        ax.set_xticks(range(len(names)), [n + (" (nn)" if i in nn else "") +
                                          (" (forget)" if i in forget else "")
                                          for i, n in enumerate(names)], rotation=45, ha="right")
    ax.set_title(f"{study}: mean probability of forget-class test samples per class "
                 "(methods: mean ± sd over seeds)")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if np.isfinite(v) and v >= 0.05:
                sd = f"\n±{sds[i][j]:.2f}" if sds[i] is not None and sds[i][j] >= 0.005 else ""
                ax.text(j, i, f"{v:.2f}{sd}", ha="center", va="center", fontsize=7,
                        linespacing=0.9, color="white" if v < 0.6 else "black")
    return fig


def method_colours(n: int) -> list:
    """`n` colours no two methods share: matplotlib's ten (C0..C9) up to ten methods; up to
    twenty, tab20's dark shades and then its light ones (drawn dashed as well); beyond,
    evenly spaced hues."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        tab = plt.get_cmap("tab20").colors
        return [tab[2 * i] for i in range(10)] + [tab[2 * i + 1] for i in range(n - 10)]
    return [plt.get_cmap("turbo")(x) for x in np.linspace(0.04, 0.96, n)]


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
    colours = method_colours(len(curves))
    for i, (m, seeds) in enumerate(curves.items()):
        # a colour of its own per method, the eleventh on dashed too: every method stays
        # tellable apart
        style = {"color": colours[i], "ls": "-" if i < 10 else "--", "lw": 0.9,
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
    log.set(xscale="log", yscale="log", xlim=(LOG_FLOOR, 1), ylim=(LOG_FLOOR, 1.3),
            xlabel=f"false-positive rate (log; 0 shown at {LOG_FLOOR:g})",
            ylabel="true-positive rate (log)", title="low false-positive region (log-log)")
    lin.legend(fontsize=7, ncol=2)
    return fig


def roc_grid_figure(study: str, d: dict, per_row: int = 4):
    """One log-log panel per method (the low false-positive region, where an attack that
    finds out a few samples shows): every seed's U-LiRA ROC of the method, over retrain's
    curves in grey, what the attack reads for retrained models. None without any curve."""
    curves = {m: seed_roc_curves(v.get("ulira_roc"))
              for m, v in (d.get("methods") or {}).items() if "ulira_roc" in v}
    curves = {m: c for m, c in curves.items() if c}
    if not curves:
        return None
    null = curves.get("retrain", [])
    n_rows = math.ceil(len(curves) / per_row)
    n_cols = min(per_row, len(curves))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.9 * n_cols, 2.9 * n_rows),
                             squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    colours = method_colours(len(curves))
    for i, (ax, (m, seeds)) in enumerate(zip(axes.flat, curves.items())):
        for fpr, tpr in null if m != "retrain" else []:
            ax.plot(np.clip(fpr, LOG_FLOOR, 1), np.clip(tpr, LOG_FLOOR, 1), color="0.6",
                    lw=0.8, ls="--")
        for s, (fpr, tpr) in enumerate(seeds):
            ax.plot(np.clip(fpr, LOG_FLOOR, 1), np.clip(tpr, LOG_FLOOR, 1),
                    color=colours[i], lw=1.0, gid=f"roc-grid:{m}:{s}")
        ax.plot([LOG_FLOOR, 1], [LOG_FLOOR, 1], "k:", lw=0.6)
        ax.set(xscale="log", yscale="log", xlim=(LOG_FLOOR, 1), ylim=(LOG_FLOOR, 1.3))
        ax.set_title(f"{m} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.minorticks_off()  # a log axis's minor ticks were most of the report's time
    fig.supxlabel("false-positive rate (log)", fontsize=9)
    fig.supylabel("true-positive rate (log)", fontsize=9)
    fig.tight_layout()
    return fig


def _mark(stat: dict) -> str:
    n, n_seeds = stat.get("n"), stat.get("n_seeds")
    return f" [{n}/{n_seeds}]" if isinstance(n, int) and isinstance(n_seeds, int) and \
        n < n_seeds else ""


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _mia_nn_figure(study: str, summary: dict):
    """MIA-NN score per method against the references' band; None without any score."""
    methods = [m for m in ordered_methods(summary)
               if _finite(summary[m].get("mia_nn", {}).get("mean"))]
    if not methods:
        return None
    ref = {k: [summary[m].get(k, {}).get("mean") for m in methods]
           for k in ("mia_nn_ref_mean", "mia_nn_ref_std")}
    ref = {k: [float(x) for x in v if _finite(x)] for k, v in ref.items()}
    # one row per method (names on the y axis, never overlapping however many there are)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(methods) + 1.6))
    vals = [summary[m]["mia_nn"]["mean"] for m in methods]
    errs = [summary[m]["mia_nn"].get("std") for m in methods]
    labels = [m + _mark(summary[m]["mia_nn"]) for m in methods]
    rows = np.arange(len(methods))
    ax.barh(rows, vals, xerr=[e if _finite(e) else 0 for e in errs], color="C0", height=0.7)
    ax.set_yticks(rows, labels, fontsize=8)
    ax.invert_yaxis()  # the first method on top, as in the tables
    if ref["mia_nn_ref_mean"]:
        ref_mean = float(np.mean(ref["mia_nn_ref_mean"]))
        ref_std = float(np.mean(ref["mia_nn_ref_std"])) if ref["mia_nn_ref_std"] else 0.0
        ax.axvspan(ref_mean - 2 * ref_std, ref_mean + 2 * ref_std, color="C2", alpha=0.2,
                   label="retrained references: mean ± 2 sd")
        ax.axvline(ref_mean, color="C2")
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    ax.set(xlabel="MIA-NN score (%)")
    ax.set_title(f"MIA-NN score vs the references ({study})", pad=22)
    fig.tight_layout()
    return fig


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


def cost_points(summary: dict) -> list[tuple[str, float, float, float]]:
    """(method, time over retrain's, |U-LiRA - retrain's|, MIA-NN z) for every method with a
    measured time and a U-LiRA score; z is NaN where MIA-NN has none."""
    if not _finite(summary.get("retrain", {}).get("ulira", {}).get("mean")):
        return []
    u0 = summary["retrain"]["ulira"]["mean"]
    points = []
    for m in ordered_methods(summary):
        ratio = summary[m].get("runtime_ratio", {}).get("mean")
        u = summary[m].get("ulira", {}).get("mean")
        if m == "retrain" or not (_finite(ratio) and _finite(u)) or ratio <= 0:
            continue
        z = summary[m].get("mia_nn_z", {}).get("mean")
        points.append((m, float(ratio), abs(u - u0), float(z) if _finite(z) else math.nan))
    return points


def cost_figure(summary: dict):
    """Each method at its budget: gap to retrain on U-LiRA and MIA-NN z against its run
    time as a share of retrain's (docs/performance.md section 8 sweeps the budgets)."""
    points = cost_points(summary)
    if not points:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, col, label in ((axes[0], 2, "|U-LiRA - retrain's| (points)"),
                           (axes[1], 3, "MIA-NN z (distance from the references)")):
        for p in points:
            if _finite(p[col]):
                ax.plot(p[1], p[col], "o", color="C0")
        ax.set_xscale("log")
        ax.set(xlabel="run time / retrain's (mean over seeds)", ylabel=label)
        ax.grid(alpha=0.3)
        if col == 3:
            ax.axhline(2, color="grey", ls=":")
    fig.tight_layout()  # the layout first: labels are placed where they will be drawn
    for ax, col in ((axes[0], 2), (axes[1], 3)):
        shown = [p for p in points if _finite(p[col])]
        label_points(ax, [p[1] for p in shown], [p[col] for p in shown],
                     [p[0] for p in shown])
    return fig


def label_points(ax, xs: list[float], ys: list[float], names: list[str],
                 fontsize: float = 7) -> None:
    """Name each point without two names overlapping: a label goes to the point's upper
    right and, where that space is taken, further up (a thin line then joins it to its
    point). Measured with the figure's renderer, so call it once the layout is final."""
    from matplotlib.text import Text

    if not names:
        return
    renderer = ax.figure.canvas.get_renderer()
    pix = ax.transData.transform(np.column_stack([xs, ys]))
    step = 0.6 * fontsize
    placed = []

    def extent(ann):  # the text's box where it will be drawn (not its leader line)
        ann.update_positions(renderer)
        return Text.get_window_extent(ann, renderer)

    right = ax.get_window_extent(renderer).x1
    for i in np.lexsort((pix[:, 0], pix[:, 1])):
        dy, dx, ha = 2.0, 3, "left"
        ann = ax.annotate(names[i], (xs[i], ys[i]), xytext=(dx, dy), fontsize=fontsize,
                          textcoords="offset points", va="bottom")
        box = extent(ann)
        if box.x1 > right:  # would leave the panel: to the point's left instead
            dx, ha = -3, "right"
            ann.set_horizontalalignment(ha)
            ann.xyann = (dx, dy)
            box = extent(ann)
        while any(box.overlaps(b) for b in placed):
            dy += step
            ann.xyann = (dx, dy)
            box = extent(ann)
        if dy > 2.0:  # moved: drawn again with a line to its point
            ann.remove()
            ax.annotate(names[i], (xs[i], ys[i]), xytext=(dx, dy), fontsize=fontsize,
                        textcoords="offset points", va="bottom", ha=ha,
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5",
                                    "shrinkA": 0, "shrinkB": 2})
        placed.append(box)


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


def study_tables(results: dict, failed: dict, oracles: set[str]) -> list[tuple[str, list]]:
    """(title, rows of text cells) of every table: one per study, FAILED rows kept (also of a
    study where every method failed, which has no summary), then the pooled one."""
    def gone(study: str) -> list[str]:
        # failed keys are "<study> <method>": every seed of that method diverged or some did
        return sorted({k[len(study) + 1:] for k in failed if k.startswith(study + " ")})

    out = [(study, table_rows(summary, oracles, gone(study)))
           for study, summary in results["studies"].items()]
    known = tuple(s + " " for s in results["studies"])
    out += [(study, table_rows({}, oracles, gone(study)))
            for study in sorted({k.rsplit(" ", 1)[0] for k in failed
                                 if " " in k and not k.startswith(known)})]
    if len(results["studies"]) > 1:
        out.append(("pooled over studies", table_rows(results["summary"], oracles)))
    return out


def _drops(results: dict) -> bool:
    return any(has_drops(s) for s in [results["summary"], *results["studies"].values()])


def render_tables(results: dict, oracles: set[str]) -> str:
    """The Markdown tables of report.md (results may carry "failed")."""
    parts = [f"### {title}\n\n" + markdown_table(HEADER, rows)
             for title, rows in study_tables(results, results.get("failed") or {}, oracles)]
    if _drops(results):
        parts.append(DROP_NOTE)
    return "\n\n".join(parts)


LEGEND = ("Mean ± std over seeds. Accuracies and attack scores in %. MIA-NN z = |score - "
          "references' mean| / references' sd. U-LiRA and U-LiRA AUC: cross-fitted balanced "
          "accuracy and AUC (threshold and direction chosen on one half of the target "
          "models, scored on the other; 50 = chance in expectation). U-LiRA in-sample: "
          "balanced accuracy at the best threshold over both directions chosen on the same "
          "decisions, as in Hayes et al.'s tables (above 50 for a retrained model; the "
          "retrain row shows what it reads; the U-LiRA verdict's statistic; see "
          "docs/audit.md). TV: total variation to "
          "the references' mean output on T_f. Avg.Gap: mean |metric - retrain| over "
          "Acc_r, Acc_f, TA_r, TA_f, SVC-MIA, MIA-NN, U-LiRA. Methods ranked by Avg.Gap; "
          "ORACLE methods read retrained models.")

HEADER_TITLES = ["", "accuracy on the retained training data D_r",
                 "accuracy on the forgotten training data D_f",
                 "accuracy on the retained test data T_r",
                 "accuracy on the forgotten test data T_f",
                 "SVC membership attack score", "MIA-NN attack score",
                 "MIA-NN: |score - references' mean| / references' sd",
                 "U-LiRA balanced accuracy, cross-fitted (threshold and direction chosen on "
                 "the other half of the target models)",
                 "U-LiRA area under the ROC curve, cross-fitted (direction chosen on the other "
                 "half of the target models)",
                 "U-LiRA best-threshold balanced accuracy, in-sample (as in Hayes et al.; "
                 "optimistic)",
                 "total variation to the references' mean output on T_f",
                 "mean |metric - retrain| over the seven gap metrics",
                 "run time of the method (s)", "run time / retrain's run time"]


# ------------------------------------------------------------------ verdicts

VERDICT_ATTACKS = {"accuracy": "accuracy", "mia_nn": "MIA-NN", "ulira": "U-LiRA"}
ULIRA_MISSING = ("no U-LiRA verdict: it compares bootstrap intervals of the method and of a "
                 "retrain replay on the same shadows, and this run's results keep neither "
                 "(see docs/audit.md, Verdicts; scripts/verdicts_demo.py computes them from "
                 "the artifacts)")


def _read_db(out: Path) -> tuple[dict, dict]:
    """(study -> method -> seed -> metric -> value, the run's config) from the results.db of
    a bench folder, read only; ({}, {}) without one."""
    db = Path(out) / "results.db"
    if not db.is_file():
        return {}, {}
    per: dict = {}
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            for study, method, seed, metric, value in con.execute(
                    "SELECT study, method, seed, metric, value FROM metrics"):
                per.setdefault(study, {}).setdefault(method, {}).setdefault(
                    int(seed), {})[metric] = value
            row = con.execute("SELECT value FROM meta WHERE key = 'run'").fetchone()
    except sqlite3.Error:
        return per, {}
    config = (json.loads(row[0]) or {}).get("config") if row else None
    return per, config if isinstance(config, dict) else {}


def derived_verdicts(per_seed: dict, n_references: int | None) -> dict:
    """{method: {seed: [verdict dict]}}, the shape the runner stores, from per-seed metrics:
    accuracy against the retrain method's other seeds (the results keep no per-reference
    accuracies), MIA-NN from z and the number of references, U-LiRA absent (no intervals)."""
    retrain = per_seed.get("retrain", {})
    out: dict = {}
    for method, seeds in per_seed.items():
        for seed, m in seeds.items():
            refs = [r for s, r in retrain.items() if not (method == "retrain" and s == seed)
                    and _finite(r.get("acc_forget")) and _finite(r.get("test_acc_retain"))]
            got = []
            if _finite(m.get("acc_forget")) and _finite(m.get("test_acc_retain")):
                v = accuracy_verdict(m["acc_forget"], m["test_acc_retain"],
                                     [r["acc_forget"] for r in refs],
                                     [r["test_acc_retain"] for r in refs])
                got.append({**v.to_dict(), "rule": v.rule + f"; references here: {len(refs)} "
                            "seed(s) of the retrain method"})
            if n_references is not None and "mia_nn_z" in m:
                z = m["mia_nn_z"] if _finite(m["mia_nn_z"]) else None
                got.append(mia_nn_verdict(z, n_references).to_dict())
            out.setdefault(method, {})[str(seed)] = [
                {"attack": v["attack"], "verdict": v["outcome"], "passed": v["passed"],
                 "rule": v["rule"], "numbers": v["numbers"]} for v in got]
    return out


def _numbers_text(numbers: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in (numbers or {}).items())


def verdict_cell(seeds: dict, attack: str) -> Html:
    """The badges of one method and attack over its seeds: one per outcome, with how many
    seeds gave it; the tooltip has the rule and each seed's numbers. "—" when no seed has
    a verdict for this attack."""
    found = [(s, v) for s, vs in seeds.items() for v in vs or [] if v.get("attack") == attack]
    if not found:
        why = ULIRA_MISSING if attack == "ulira" else f"no {VERDICT_ATTACKS[attack]} verdict: " \
            "the metrics it needs were not measured"
        return badge("—", "na", why)
    counts: dict = {}
    for s, v in found:
        outcome = v.get("verdict", v.get("outcome"))  # the schema's name, or Verdict's
        counts.setdefault((outcome, v.get("passed")), []).append((s, v))
    parts = []
    # U-LiRA's verdict turns on the in-sample statistic, not on the cross-fitted column
    what = "U-LiRA in-sample " if attack == "ulira" else ""
    for (outcome, passed), vs in counts.items():
        tip = "rule: " + str(vs[0][1].get("rule", "")) + "\n" + "\n".join(
            f"seed {s}: {what}{_numbers_text(v.get('numbers'))}" for s, v in vs)
        n = f" {len(vs)}/{len(found)}" if len(found) > 1 else ""
        parts.append(badge(f"{outcome}{n}", passed, tip))
    return join(parts)


def study_verdicts(d: dict, per_seed: dict, n_references: int | None = None) -> dict:
    """The verdicts the runner stored (details[study]["verdicts"]) or, for results without
    them, those derived from the per-seed metrics."""
    stored = d.get("verdicts") if isinstance(d, dict) else None
    return stored if isinstance(stored, dict) else derived_verdicts(per_seed, n_references)


def leaking(verdicts: dict) -> dict[str, list[str]]:
    """method -> the attacks that found it out (passed False) in some seed."""
    out: dict = {}
    for method, seeds in verdicts.items():
        for vs in seeds.values():
            for v in vs or []:
                name = VERDICT_ATTACKS.get(v.get("attack"), str(v.get("attack")))
                if v.get("passed") is False and name not in out.get(method, []):
                    out.setdefault(method, []).append(name)
    return out


# ------------------------------------------------------------------ the HTML page

def _class(d: dict, i: int) -> str:
    names = d.get("class_names") or []
    named = 0 <= i < len(names) and str(names[i]) != str(i)
    return f"class {i} “{names[i]}”" if named else f"class {i}"


def summary_items(d: dict, summary: dict, verdicts: dict, oracles: set[str],
                  config: dict | None = None) -> list[Html]:
    """The few sentences a reader needs first: what was forgotten (and how much evidence
    there is), where retrained models send it, which methods leak, which comes closest to
    retraining."""
    forget = [int(c) for c in d.get("forget_classes") or []]
    config = config or {}
    items = []
    if forget:
        run = [f"{config[k]} {name}" for k, name in (("seeds", "seeds"),
               ("references", "references"), ("shadows", "shadows per side"))
               if isinstance(config.get(k), int)]
        items.append(join(["Forgotten: ", tag("strong", ", ".join(_class(d, c) for c in forget)),
                           f" ({', '.join(run)})." if run else "."]))
    ref = np.asarray(d.get("ref_forget_probs") or [], dtype=float)
    top = [int(i) for i in np.argsort(-ref) if int(i) not in forget][:3] if ref.size else []
    if top:
        rest = [f"{_class(d, i)} ({100 * ref[i]:.0f} %)" for i in top[1:]]
        kept = sum(ref[c] for c in forget if c < ref.size)
        items.append(join([
            "Retrained models send its test samples to ", tag("strong", _class(d, top[0])),
            f" (mean probability {100 * ref[top[0]]:.0f} %)",
            f", then {_and(rest)}" if rest else "",
            f"; {100 * kept:.0f} % stays on the forgotten class."]))
    leaks = leaking(verdicts)
    items.append(join(["Found out by an attack: ", tag("strong", "; ".join(
        f"{m} ({', '.join(a)})" for m, a in leaks.items())) if leaks else "no method", "."]))
    closest = [m for m in ordered_methods(summary) if m != "retrain"
               and _finite(summary[m].get("avg_gap", {}).get("mean"))]
    if closest:
        m = closest[0]
        items.append(join(["Closest to retraining (lowest Avg.Gap): ", tag("strong", m),
                           " (ORACLE: reads retrained models)" if m in oracles else "",
                           f", Avg.Gap {cell(summary[m]['avg_gap'])} points."]))
    return items


FIGURES: dict[str, tuple[str, str]] = {  # kind: (title, caption), in the report's order
    "forget": ("Where forget-class samples go",
               "Mean predicted probability of the forgotten class's test samples per class: "
               "the retrained references, then each method (mean ± sd over its seeds)."),
    "roc": ("U-LiRA ROC",
            "U-LiRA ROC of every method, one thin line per seed; right: the low "
            "false-positive region on log-log axes."),
    "roc_grid": ("U-LiRA ROC per method",
                 "Each method's U-LiRA ROC, one line per seed, on log-log axes; dashed grey: "
                 "the retrain method's curves (what the attack reads for retrained models)."),
    "mia_nn": ("MIA-NN",
               "MIA-NN score per method (mean ± std over seeds) against the retrained "
               "references' mean ± 2 sd."),
    "gap": ("Gap to retrain", "|metric - retrain| per method and metric, in points."),
    "cost": ("Cost and privacy",
             "Each method at its budget: its U-LiRA gap to retrain and its MIA-NN z against "
             "its run time as a share of retrain's (lower left is better; dotted: z = 2). "
             "Times include each worker's torch warm-up; the budget sweeps of "
             "docs/performance.md section 8 time the medians."),
}


# drawing time on the mnist-5k study (18 methods): ROC grid 1.8 s, forget 1.0, ROC 0.7, ...
FIGURES_BY_COST = ("roc_grid", "forget", "roc", "cost", "gap", "mia_nn")


def figure_block(kind: str, study: str, d: dict, summary: dict) -> Html | None:
    """One of a study's figures (a FIGURES kind) as its heading and embedded PNG; None when
    there is nothing to plot. A plain function of JSON-able arguments, so that the bench
    draws the figures on its workers, in parallel (drawing is most of the report's time)."""
    build = {"forget": lambda: _forget_figure(study, d), "roc": lambda: roc_figure(study, d),
             "roc_grid": lambda: roc_grid_figure(study, d),
             "mia_nn": lambda: _mia_nn_figure(study, summary),
             "gap": lambda: gap_figure(summary), "cost": lambda: cost_figure(summary)}
    fig = build[kind]()
    if fig is None:
        return None
    title, caption = FIGURES[kind]
    return join([tag("h3", f"{title}: {study}"), figure_png(fig, f"{title}: {study}", caption)])


def study_figures(results: dict, details: dict | None, executor=None) -> dict[str, list[Html]]:
    """{study: its figure blocks in order} for every study with plot details, drawn as
    tasks on `executor` (classunlearn.bench.executors; None: in this process)."""
    from classunlearn.bench.executors import LocalExecutor

    jobs = [(study, kind) for study, d in (details or {}).items() if isinstance(d, dict) and d
            for kind in FIGURES]
    # the slowest figures first, so that the last one to finish is a short one
    jobs.sort(key=lambda job: list(FIGURES_BY_COST).index(job[1]))
    tasks = [(figure_block, (kind, study, details[study], results["studies"].get(study, {})))
             for study, kind in jobs]
    drawn = {jobs[i]: block for i, block in (executor or LocalExecutor()).run(tasks)}
    return {study: [drawn[(study, kind)] for kind in FIGURES
                    if drawn.get((study, kind)) is not None]
            for study in dict.fromkeys(study for study, _ in jobs)}


def render_html(out: Path, results: dict, failed: dict, details: dict | None,
                warnings: list[str], figures: dict[str, list[Html]] | None = None) -> str:
    """report.html: a summary per study, its results and verdict tables, then its plots
    (`figures`: from study_figures; None: drawn here)."""
    details = details or {}
    if figures is None:
        figures = study_figures(results, details)
    oracles = oracle_methods(results["summary"])
    per_seed, config = _read_db(out)
    n_refs = config.get("references") if isinstance(config.get("references"), int) else None
    tables = dict(study_tables(results, failed, oracles))
    legend, legend_shown = LEGEND + (" " + DROP_NOTE if _drops(results) else ""), False
    body: list[object] = [tag("h1", "classunlearn bench report"),
                          *(tag("p", tag("strong", w), class_="warn") for w in warnings)]
    for study, rows in tables.items():
        summary = results["studies"].get(study, {})
        d = details.get(study) if isinstance(details.get(study), dict) else {}
        verdicts = study_verdicts(d, per_seed.get(study, {}), n_refs)
        body.append(tag("h2", study if study != "pooled over studies" else
                        "Pooled over studies", id=study))
        if summary and d:
            body.append(tag("ul", *(tag("li", i) for i in
                                    summary_items(d, summary, verdicts, oracles, config)),
                            class_="summary"))
        body.append(table(HEADER, rows, titles=HEADER_TITLES))
        if not legend_shown:
            body.append(tag("p", legend, class_="note"))
            legend_shown = True
        if verdicts:
            body += [tag("h3", "Verdicts"), table(
                ["method", *VERDICT_ATTACKS.values()],
                [[m, *(verdict_cell(verdicts.get(m, {}), a) for a in VERDICT_ATTACKS)]
                 for m in ordered_methods(summary) if m in verdicts]),
                tag("p", "Green: looks retrained; red: found out; amber: inconclusive; "
                    "grey —: no verdict. Hover a badge for its rule and numbers (docs/audit.md, "
                    "Verdicts). With n/N, n of the N seeds gave that verdict. U-LiRA's verdict "
                    "compares the bootstrap interval of the in-sample statistic (U-LiRA "
                    "in-sample) with that of its null, retrain replayed on the same shadows.",
                    class_="note")]
        body += figures.get(study, [])
    if failed:
        body += [tag("h2", "Failed runs"),
                 tag("ul", *(tag("li", tag("code", k), ": ", v) for k, v in failed.items()))]
    return page("classunlearn bench report", *body)


def write_report(out: Path, results: dict, failed: dict, details: dict | None = None,
                 executor=None) -> None:
    """Write report.md and report.html from results (summary + studies) and plot details;
    verdicts come from details or, failing that, from the per-seed metrics in results.db.
    `executor`: draws the figures (the bench passes its workers); None: this process."""
    oracles = oracle_methods(results["summary"])
    tables = render_tables({**results, "failed": failed}, oracles)
    legend = LEGEND + ("" if DROP_NOTE in tables else " " + DROP_NOTE)
    warnings = version_warnings(details) + study_warnings(details)
    warn_md = "".join(f"**{w}**\n\n" for w in warnings)
    fail = "".join(f"\n- FAILED {k}: {v}" for k, v in failed.items())
    write_text_atomic(out / "report.md", f"# classunlearn bench report\n\n{warn_md}{legend}\n\n"
                      f"{tables}\n" + (f"\n## Failed runs\n{fail}\n" if fail else ""))
    figures = study_figures(results, details, executor)
    write_text_atomic(out / "report.html", render_html(out, results, failed, details, warnings,
                                                       figures))
