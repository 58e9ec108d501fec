"""The bench report from hand-made results: any subset of methods gives a report, dropped
values are marked (never shown as complete numbers), NaN gaps are not painted as zero, the ROC
and forget plots use every seed, and mixed package versions are called out."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pytest
from pages import check_balanced

from classunlearn.bench.report import (
    NA_COLOUR,
    cost_figure,
    cost_points,
    derived_verdicts,
    gap_figure,
    gap_image,
    render_tables,
    roc_figure,
    seed_forget_probs,
    seed_roc_curves,
    version_warnings,
    write_report,
)
from classunlearn.bench.store import Store
from classunlearn.bench.summary import GAP_KEYS, cell, summarise, table_rows

STUDY = "digits/mlp/forget=3"
N_CLASSES = 4


def metrics_for(method: str, seed: int) -> dict[str, float]:
    """Plausible per-seed metrics; retrain is the yardstick."""
    off = {"retrain": 0.0, "original": 40.0, "trw": 5.0, "ft": 10.0,
           "trw-2r-oracle": 2.0}.get(method, 20.0)
    m = {"acc_retain": 95.0 - off / 10 + seed, "acc_forget": off + seed,
         "test_acc_retain": 93.0 + seed, "test_acc_forget": off / 2 + seed,
         "svc_mia": 50.0 + off / 4, "mia_nn": 30.0 + off, "mia_nn_z": off / 10,
         "mia_nn_ref_mean": 30.0, "mia_nn_ref_std": 2.0, "ulira": 50.0 + off / 3,
         "ulira_auc": 0.5 + off / 200, "tv": off / 100, "runtime_s": 1.0 + seed}
    return m


def fill_store(tmp_path, methods, seeds, drop=None):
    """A real Store with rows for every (method, seed); `drop` maps (method, seed) to metrics
    written as NaN (come back as None) or, with a leading "-", not written at all."""
    store = Store(tmp_path)
    drop = drop or {}
    per = {(m, s): metrics_for(m, s) for m in methods for s in range(seeds)}
    for (m, s), met in per.items():
        for k in drop.get((m, s), []):
            if k.startswith("-"):
                met.pop(k[1:])
            else:
                met[k] = float("nan")
    for (m, s), met in per.items():
        if ("retrain", s) in per:
            ref = per[("retrain", s)]
            diffs = [abs(met[k] - ref[k]) for k in GAP_KEYS if k in met and k in ref
                     and math.isfinite(met[k]) and math.isfinite(ref[k])]
            met["avg_gap"] = float(np.mean(diffs)) if diffs else float("nan")
            met["runtime_ratio"] = met["runtime_s"] / ref["runtime_s"]
        store.put_metrics(STUDY, m, s, met)
    return store


def make_details(methods, seeds, old=False, versions=None) -> dict:
    rng = np.random.default_rng(0)
    d = {"nn_class": {"3": 1}, "forget_classes": [3],
         "class_names": [str(i) for i in range(N_CLASSES)], "methods": {},
         "ref_forget_probs": [0.1, 0.6, 0.2, 0.1]}
    for m in methods:
        probs = {str(s): (rng.dirichlet(np.ones(N_CLASSES))).tolist() for s in range(seeds)}
        roc = {}
        for s in range(seeds):
            fpr = np.r_[0.0, np.sort(rng.uniform(size=8)), 1.0]
            roc[str(s)] = [fpr.tolist(), np.clip(fpr + 0.05 * s, 0, 1).tolist()]
        if old:  # the old runner kept the last seed only, as a plain list / one pair
            d["methods"][m] = {"forget_probs": probs[str(seeds - 1)],
                               "ulira_roc": roc[str(seeds - 1)]}
        else:
            d["methods"][m] = {"forget_probs": probs, "ulira_roc": roc}
    if versions is not None:
        d["versions"] = versions
    # what `classunlearn report` reads back: details went through JSON
    return {STUDY: json.loads(json.dumps(d))}


def check_report(out) -> tuple[str, str]:
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    check_balanced(page)
    for b64 in re.findall(r"src=[\"']data:image/png;base64,([^\"']+)[\"']", page):
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    return md, page


@pytest.mark.parametrize("methods,seeds", [
    (["retrain"], 3),                      # the yardstick alone
    (["retrain"], 1),
    (["trw", "ft"], 2),                    # no retrain: no gap, no Avg.Gap
    (["trw"], 1),                          # a single non-retrain method, one seed
    (["retrain", "trw"], 1),
    (["retrain", "original", "trw", "ft"], 3),
])
def test_any_method_subset_gives_a_report(tmp_path, methods, seeds):
    store = fill_store(tmp_path, methods, seeds)
    results = summarise(store)
    write_report(tmp_path, results, failed={}, details=make_details(methods, seeds))
    md, page = check_report(tmp_path)
    for m in methods:
        assert re.search(rf"^\| {re.escape(m)}\b", md, re.M), m
    assert "Where forget-class samples go" in page and "U-LiRA ROC" in page
    assert ("Gap to retrain" in page) == ("retrain" in methods and len(methods) > 1)


def test_dropped_values_are_marked_and_counted(tmp_path):
    drop = {("trw", 2): ["acc_forget"],        # NaN: comes back from SQLite as None
            ("trw", 1): ["-ulira"],            # never written
            ("ft", 0): ["tv"], ("ft", 1): ["tv"], ("ft", 2): ["tv"]}
    store = fill_store(tmp_path, ["retrain", "trw", "ft"], 3, drop)
    results = summarise(store)
    trw = results["studies"][STUDY]["trw"]
    assert trw["acc_forget"]["n"] == 2 and trw["acc_forget"]["n_seeds"] == 3
    assert trw["acc_forget"]["mean"] == pytest.approx(np.mean([5.0, 6.0]))
    assert trw["ulira"]["n"] == 2 and trw["test_acc_retain"]["n"] == 3
    # seed 1's avg_gap skipped U-LiRA: a gap over fewer metrics is dropped, not averaged
    assert trw["avg_gap"]["n"] == 1 and trw["avg_gap"]["n_seeds"] == 3
    assert results["studies"][STUDY]["ft"]["avg_gap"]["n"] == 3  # tv is no gap metric
    assert results["studies"][STUDY]["ft"]["tv"]["n"] == 0
    assert results["summary"]["trw"]["acc_forget"]["n_seeds"] == 3
    # the documented results.json contract: method -> metric -> {"mean", "std"}
    assert {"mean", "std"} <= set(results["summary"]["trw"]["acc_forget"])

    write_report(tmp_path, results, failed={},
                 details=make_details(["retrain", "trw", "ft"], 3))
    md, page = check_report(tmp_path)
    trw_row = next(line for line in md.splitlines() if line.startswith("| trw "))
    assert "[2/3]" in trw_row and "[1/3]" in trw_row
    ft_row = next(line for line in md.splitlines() if line.startswith("| ft "))
    assert "—" in ft_row  # TV: no seed has a value
    retrain_row = next(line for line in md.splitlines() if line.startswith("| retrain "))
    assert "[" not in retrain_row
    assert "[n/N]" in md and "[n/N]" in page  # the legend explains the mark


def test_cells_show_drops_and_never_a_complete_looking_number():
    assert cell({"mean": 52.1, "std": 0.3, "n": 3, "n_seeds": 3}) == "52.1±0.3"
    assert cell({"mean": 52.1, "std": 0.3, "n": 2, "n_seeds": 3}) == "52.1±0.3 [2/3]"
    assert cell({"mean": 52.1, "std": float("nan"), "n": 1, "n_seeds": 3}) == "52.1 [1/3]"
    assert cell({"mean": float("nan"), "std": float("nan"), "n": 0, "n_seeds": 3}) == "—"
    assert cell(None) == "—"
    rows = table_rows({"retrain": {"acc_retain": {"mean": 1.0, "std": 0.0, "n": 1,
                                                  "n_seeds": 1}}}, failed=["ga"])
    assert rows[0][0] == "retrain" and rows[0][1] == "1.0±0.0" and rows[0][2] == "—"
    assert rows[1][0] == "ga (FAILED)"


def test_gap_plot_does_not_paint_nan_as_zero(tmp_path):
    img = gap_image(np.array([[np.nan, 0.0, 5.0]]))
    assert img.mask.tolist() == [[True, False, False]]
    store = fill_store(tmp_path, ["retrain", "trw"], 2,
                       {("trw", 0): ["svc_mia"], ("trw", 1): ["svc_mia"]})
    fig = gap_figure(summarise(store)["studies"][STUDY])
    (ax,) = fig.axes
    (im,) = ax.get_images()
    j = ["acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "svc_mia",
         "mia_nn", "ulira"].index("svc_mia")
    arr = im.get_array()
    assert np.ma.is_masked(arr) and arr.mask[0, j] and not arr.mask[0, 0]
    # the masked cell is painted grey, which is no colour of the gap scale (0 included)
    bad = im.get_cmap().get_bad()
    assert np.allclose(bad, __import__("matplotlib").colors.to_rgba(NA_COLOUR))
    assert not np.allclose(bad, im.get_cmap()(0.0))
    assert "n/a" in [t.get_text() for t in ax.texts]
    __import__("matplotlib.pyplot").pyplot.close(fig)


def test_roc_draws_every_seed_and_a_log_log_panel():
    details = make_details(["retrain", "trw", "ft"], 3)[STUDY]
    fig = roc_figure(STUDY, details)
    lin, log = fig.axes
    for ax in (lin, log):
        gids = [ln.get_gid() for ln in ax.get_lines() if (ln.get_gid() or "").startswith("roc:")]
        assert sorted(gids) == sorted(f"roc:{m}:{s}" for m in ("retrain", "trw", "ft")
                                      for s in range(3))
        by_method = {}
        for ln in ax.get_lines():
            if (ln.get_gid() or "").startswith("roc:"):
                by_method.setdefault(ln.get_gid().split(":")[1], set()).add(ln.get_color())
        assert all(len(c) == 1 for c in by_method.values())  # one colour per method
        assert len({next(iter(c)) for c in by_method.values()}) == 3
    assert len(lin.get_legend().get_texts()) == 3  # one legend entry per method
    assert log.get_xscale() == "log" and log.get_yscale() == "log"
    assert min(np.min(ln.get_xdata()) for ln in log.get_lines()) > 0  # zeros clipped
    assert "U-LiRA ROC" in lin.get_title()
    __import__("matplotlib.pyplot").pyplot.close(fig)


def test_seed_formats_new_and_old():
    assert len(seed_roc_curves({"1": [[0, 1], [0, 1]], "0": [[0, 0.5, 1], [0, 1, 1]]})) == 2
    assert seed_roc_curves({"1": [[0, 1], [0, 1]], "0": [[0, 0.5, 1], [0, 1, 1]]})[0][0].size == 3
    (old,) = seed_roc_curves([[0.0, 0.5, 1.0], [0.0, 0.9, 1.0]])
    assert old[1].tolist() == [0.0, 0.9, 1.0]
    assert len(seed_forget_probs({"0": [0.5, 0.5], "1": [1.0, 0.0]})) == 2
    assert len(seed_forget_probs([0.5, 0.5])) == 1
    assert seed_roc_curves(None) == [] and seed_forget_probs(None) == []


def test_forget_plot_is_the_mean_over_seeds(tmp_path):
    from classunlearn.bench.report import _forget_figure

    details = make_details(["trw"], 3)[STUDY]
    fig = _forget_figure(STUDY, details)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["retrained refs (mean)", "trw (mean over 3 seeds)"]
    want = np.mean([details["methods"]["trw"]["forget_probs"][str(s)] for s in range(3)], 0)
    assert np.allclose(ax.get_images()[0].get_array()[1], want)
    __import__("matplotlib.pyplot").pyplot.close(fig)


def test_old_results_folder_still_reports(tmp_path):
    methods = ["retrain", "trw", "ft"]
    store = fill_store(tmp_path, methods, 2)
    store.put_meta("details", make_details(methods, 2, old=True))
    from classunlearn.cli import main

    assert main(["report", "--out", str(tmp_path)]) == 0
    _, page = check_report(tmp_path)
    for title in ("Where forget-class samples go", "U-LiRA ROC", "U-LiRA ROC per method",
                  "MIA-NN", "Gap to retrain", "Cost and privacy"):
        assert title in page, title
    assert len(re.findall(r"<img ", page)) == 6


def test_mixed_versions_are_called_out(tmp_path):
    methods = ["retrain", "trw"]
    results = summarise(fill_store(tmp_path, methods, 2))
    write_report(tmp_path, results, {},
                 make_details(methods, 2, versions=["0.1.0", "0.2.0", "0.1.0"]))
    md, page = check_report(tmp_path)
    want = (f"study {STUDY} mixes results computed by classunlearn versions 0.1.0 and 0.2.0; "
            "rerun with a clean --out to recompute")
    assert want in md and want in page
    assert md.index(want) < md.index("| retrain")  # prominent: before the tables
    write_report(tmp_path, results, {}, make_details(methods, 2, versions=["0.2.0"]))
    md, page = check_report(tmp_path)
    assert "mixes results" not in md and "mixes results" not in page
    assert version_warnings({STUDY: {"versions": ["a", "b", "c"]}}) == [
        f"WARNING: study {STUDY} mixes results computed by classunlearn versions a, b and c; "
        "rerun with a clean --out to recompute"]


def test_oracle_and_failed_labels_and_escaped_html(tmp_path):
    methods = ["retrain", "trw", "trw-2r-oracle", "ft"]
    results = summarise(fill_store(tmp_path, methods, 2))
    failed = {f"{STUDY} ga": "method ga: loss became nan at step 0 <&>",
              f"{STUDY} ft": "method ft: loss became inf at step 3",
              "other/mlp/forget=1 salun": "method salun: loss became nan"}
    write_report(tmp_path, results, failed, make_details(methods, 2))
    md, page = check_report(tmp_path)
    assert "| trw-2r-oracle (ORACLE)" in md
    assert "| ga (FAILED)" in md
    assert "| ft (FAILED in some seeds)" in md
    assert "| salun (FAILED)" in md  # a study where every method failed keeps its rows
    assert "## Failed runs" in md and "- FAILED digits/mlp/forget=3 ga:" in md
    assert "&lt;&amp;&gt;" in page and "<&>" not in page
    text = render_tables({**results, "failed": failed}, set())
    assert "### other/mlp/forget=1" in text


def verdict_row(page: str, method: str) -> str:
    """The cells of a method's row in the verdict table (the one with badges)."""
    row = re.search(rf'<tr><td>{method}</td>(<td><span class="badge.*?)</tr>', page, re.S)
    return row.group(1)


def test_html_page_has_real_tables_a_summary_and_derived_verdicts(tmp_path):
    methods = ["retrain", "original", "trw"]
    store = fill_store(tmp_path, methods, 3)
    store.put_meta("run", {"config": {"references": 5}})
    write_report(tmp_path, summarise(store), {}, make_details(methods, 3))
    _, page = check_report(tmp_path)
    assert "<pre" not in page and "| retrain" not in page  # no Markdown left in the page
    assert page.count("<table>") == 2 and page.count("<thead>") == 2  # results, verdicts
    assert '<td class="num">' in page and '<div class="scroll">' in page
    # the summary: the forgotten class, the references' top neighbour, leaks, the closest
    assert "Forgotten: <strong>class 3</strong> (5 references)." in page
    assert "send its test samples to <strong>class 1</strong> (mean probability 60 %)" in page
    assert "Found out by an attack: <strong>original (accuracy, MIA-NN)" in page
    assert "Closest to retraining (lowest Avg.Gap): <strong>trw</strong>" in page
    # verdicts from the rules: original's Acc_f 40 is outside retrain's seeds, z 4 with
    # 5 references leaks; no U-LiRA intervals: a grey dash that says why
    original = verdict_row(page, "original")
    assert 'class="badge bad"' in original and "fail 3/3" in original and "leaks 3/3" in original
    retrain = verdict_row(page, "retrain")
    assert "pass 3/3" in retrain and "within the references&#x27; spread 3/3" in retrain
    assert 'class="badge na" title="no U-LiRA verdict' in retrain


def test_derived_verdicts_follow_the_rules():
    per_seed = {"retrain": {0: {"acc_forget": 0.0, "test_acc_retain": 95.0, "mia_nn_z": 0.5},
                            1: {"acc_forget": 1.0, "test_acc_retain": 96.0, "mia_nn_z": 1.0}},
                "ft": {0: {"acc_forget": 30.0, "test_acc_retain": 95.0, "mia_nn_z": 2.5}}}
    got = derived_verdicts(per_seed, n_references=3)
    (acc, mia), = [got["ft"]["0"]]
    assert (acc["attack"], acc["verdict"], acc["passed"]) == ("accuracy", "fail", False)
    assert "2 seed(s) of the retrain method" in acc["rule"]
    assert (mia["verdict"], mia["passed"]) == ("inconclusive", None)
    # retrain is judged against its other seeds only
    assert got["retrain"]["0"][0]["numbers"]["n_references"] == 1
    assert derived_verdicts(per_seed, None)["ft"]["0"][1:] == []  # M unknown: no MIA-NN


def test_stored_verdicts_win(tmp_path):
    methods = ["retrain", "trw"]
    results = summarise(fill_store(tmp_path, methods, 1))
    details = make_details(methods, 1)
    details[STUDY]["verdicts"] = {"trw": {"0": [
        {"attack": "ulira", "verdict": "distinguishable", "passed": False,
         "rule": "lower end above the null's <upper> end", "numbers": {"point": 71.0}}]}}
    write_report(tmp_path, results, {}, details)
    _, page = check_report(tmp_path)
    trw = verdict_row(page, "trw")
    assert 'class="badge bad"' in trw and ">distinguishable<" in trw
    assert "&lt;upper&gt;" in trw and "point 71" in trw
    assert "no accuracy verdict" in trw  # the stored verdicts are used as they are


def test_cost_points_are_hand_computed_and_skip_missing_values():
    summary = {
        "retrain": {"ulira": {"mean": 50.0}, "runtime_ratio": {"mean": 1.0}},
        "trw": {"ulira": {"mean": 58.0}, "runtime_ratio": {"mean": 0.1},
                "mia_nn_z": {"mean": 1.5}, "avg_gap": {"mean": 1.0}},
        "ga": {"ulira": {"mean": 41.0}, "runtime_ratio": {"mean": 0.02},
               "avg_gap": {"mean": 2.0}},  # no MIA-NN: z is NaN, the point stays
        "ssd": {"ulira": {"mean": float("nan")}, "runtime_ratio": {"mean": 0.05}},
        "original": {"ulira": {"mean": 99.0}, "runtime_ratio": {"mean": 0.0}},
    }
    points = {m: rest for m, *rest in cost_points(summary)}
    assert set(points) == {"trw", "ga"}  # no retrain, no NaN U-LiRA, no zero time
    assert points["trw"][:2] == [0.1, 8.0] and points["trw"][2] == 1.5
    assert points["ga"][:2] == [0.02, 9.0] and math.isnan(points["ga"][2])
    assert cost_points({"trw": summary["trw"]}) == []  # no retrain: no gaps
    assert cost_figure(summary) is not None and cost_figure({}) is None
