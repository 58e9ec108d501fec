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

from classunlearn.table import markdown_table  # noqa: E402

GAP_METRICS = ["acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "svc_mia",
               "mia_nn", "ulira"]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _forget_plot(study: str, d: dict) -> str:
    names = d["class_names"]
    methods = [m for m in d["methods"] if "forget_probs" in d["methods"][m]]
    fig, ax = plt.subplots(figsize=(9, 0.45 * (len(methods) + 1) + 1.5))
    rows = [np.array(d["ref_forget_probs"])] + [np.array(d["methods"][m]["forget_probs"])
                                                 for m in methods]
    ax.imshow(np.stack(rows), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(rows)), ["retrained refs (mean)"] + methods)
    nn = list(d["nn_class"].values())
    ax.set_xticks(range(len(names)), [n + (" (nn)" if i in nn else "") +
                                      (" (forget)" if i in d["forget_classes"] else "")
                                      for i, n in enumerate(names)], rotation=45, ha="right")
    ax.set_title(f"{study}: mean probability of forget-class test samples per class")
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if v >= 0.05:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    return _png(fig)


def _roc_plot(study: str, d: dict) -> str | None:
    curves = {m: v["ulira_roc"] for m, v in d["methods"].items() if "ulira_roc" in v}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, (m, (fpr, tpr)) in enumerate(curves.items()):
        # ten colours, then the same colours dashed: every method stays tellable apart
        ax.plot(fpr, tpr, label=m, lw=1.2, ls="-" if i < 10 else "--")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate",
           title=f"U-LiRA ROC ({study}); chance = diagonal")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def _mia_nn_plot(study: str, summary: dict) -> str | None:
    methods = [m for m in summary if "mia_nn" in summary[m]]
    if not methods:
        return None
    ref_mean = np.nanmean([summary[m]["mia_nn_ref_mean"]["mean"] for m in methods])
    ref_std = np.nanmean([summary[m]["mia_nn_ref_std"]["mean"] for m in methods])
    fig, ax = plt.subplots(figsize=(8, 4))
    vals = [summary[m]["mia_nn"]["mean"] for m in methods]
    errs = [summary[m]["mia_nn"]["std"] for m in methods]
    ax.bar(methods, vals, yerr=[0 if not math.isfinite(e) else e for e in errs], color="C0")
    ax.axhspan(ref_mean - 2 * ref_std, ref_mean + 2 * ref_std, color="C2", alpha=0.2,
               label="retrained references: mean ± 2 sd")
    ax.axhline(ref_mean, color="C2")
    ax.set(ylabel="MIA-NN score (%)", title=f"MIA-NN score vs the references ({study})")
    ax.tick_params(axis="x", rotation=60)
    ax.legend(fontsize=8)
    return _png(fig)


def _gap_plot(summary: dict) -> str | None:
    if "retrain" not in summary:
        return None
    methods = [m for m in summary if m != "retrain"]
    gaps = np.array([[abs(summary[m].get(k, {}).get("mean", np.nan)
                          - summary["retrain"].get(k, {}).get("mean", np.nan))
                      for k in GAP_METRICS] for m in methods])
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(methods) + 1.5))
    ax.imshow(np.nan_to_num(gaps, nan=0.0), aspect="auto", cmap="magma_r", vmin=0, vmax=100)
    ax.set_xticks(range(len(GAP_METRICS)), GAP_METRICS, rotation=30, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    for i in range(len(methods)):
        for j in range(len(GAP_METRICS)):
            if np.isfinite(gaps[i, j]):
                ax.text(j, i, f"{gaps[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if gaps[i, j] > 50 else "black")
    ax.set_title("|metric - retrain| per method (points)")
    return _png(fig)


def render_tables(results: dict, oracles: set[str]) -> str:
    from classunlearn.bench.summary import HEADER, table_rows

    failed = results.get("failed") or {}
    parts = []
    for study, summary in results["studies"].items():
        # failed keys are "<study> <method>": every seed of that method diverged or some did
        gone = sorted({k[len(study) + 1:] for k in failed if k.startswith(study + " ")})
        parts.append(f"### {study}\n\n"
                     + markdown_table(HEADER, table_rows(summary, oracles, gone)))
    if len(results["studies"]) > 1:
        parts.append("### pooled over studies\n\n" +
                     markdown_table(HEADER, table_rows(results["summary"], oracles)))
    return "\n\n".join(parts)


def write_report(out: Path, results: dict, failed: dict, details: dict | None = None) -> None:
    """Write report.md and report.html from results (summary + studies) and plot details."""
    from classunlearn.bench.summary import oracle_methods, write_text_atomic

    oracles = oracle_methods(results["summary"])
    tables = render_tables({**results, "failed": failed}, oracles)
    legend = ("Mean ± std over seeds. Accuracies and attack scores in %. MIA-NN z = |score - "
              "references' mean| / references' sd. U-LiRA: balanced accuracy at the best "
              "threshold (50 = chance). TV: total variation to the references' mean output on "
              "T_f. Avg.Gap: mean |metric - retrain| over Acc_r, Acc_f, TA_r, TA_f, SVC-MIA, "
              "MIA-NN, U-LiRA. Methods ranked by Avg.Gap; ORACLE methods read retrained "
              "models.")
    fail = "".join(f"\n- FAILED {k}: {v}" for k, v in failed.items())
    write_text_atomic(out / "report.md", f"# classunlearn bench report\n\n{legend}\n\n"
                      f"{tables}\n" + (f"\n## Failed runs\n{fail}\n" if fail else ""))
    images: list[tuple[str, str]] = []
    for study, d in (details or {}).items():
        images.append((f"Where forget-class samples go: {study}", _forget_plot(study, d)))
        for title, img in ((f"U-LiRA ROC: {study}", _roc_plot(study, d)),
                           (f"MIA-NN: {study}", _mia_nn_plot(study, results["studies"][study])),
                           (f"Gap to retrain: {study}", _gap_plot(results["studies"][study]))):
            if img:
                images.append((title, img))
    body = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' "
                   f"src='data:image/png;base64,{b}'/>" for t, b in images)
    write_text_atomic(
        out / "report.html",
        "<!doctype html><html><head><meta charset='utf-8'><title>classunlearn report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{font-size:12px}"
        "img{max-width:100%}</style></head><body><h1>classunlearn bench report</h1>"
        f"<p>{html.escape(legend)}</p><pre>{html.escape(tables)}</pre>"
        f"{'<h2>Failed runs</h2><pre>' + html.escape(fail) + '</pre>' if fail else ''}"
        f"{body}</body></html>")
