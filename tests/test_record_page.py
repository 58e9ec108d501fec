"""The record page (record.html) of a deletion request: what was forgotten first, then the
verdicts, then the evidence; everything escaped; a record with missing parts still renders."""

from __future__ import annotations

import base64
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from pages import check_balanced, example_record

from classunlearn.record_page import (
    forget_figure,
    mia_nn_figure,
    render_record_page,
    ulira_figure,
    write_record_page,
)


def test_the_example_record_renders_in_reading_order(tmp_path):
    record = example_record()
    write_record_page(record, tmp_path / "record.html")
    page = (tmp_path / "record.html").read_text(encoding="utf-8")
    check_balanced(page)
    assert "<title>classunlearn record: class 1 “automobile”</title>" in page
    order = [page.index(s) for s in ("<h1>Deletion record: class 1 “automobile” forgotten",
                                     "<h2>Verdicts", "<h2>Evidence", "<h2>Method",
                                     "<h2>Files", "<h2>Environment", "<h2>Command")]
    assert order == sorted(order)
    assert "U-LiRA could not decide (inconclusive)" in page  # the headline of the verdicts
    for badge in ('class="badge good" title="pass iff Acc_f', ">within the references&#x27; "
                  "spread<", 'class="badge unsure"'):
        assert badge in page
    assert "null_high" in page and "57.9" in page  # each verdict's numbers
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 3  # forget distribution, U-LiRA ROC, MIA-NN
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    for sha in [record["files"]["unlearned"]["sha256"],
                *record["files"]["data"].values(),
                *(r["sha256"] for r in record["files"]["references"])]:
        assert sha in page
    assert "reference 5" in page and "class 9 “truck”" in page
    assert "--note &#x27;customer request #4711: remove all automobile images&#x27;" in page
    assert "<td>test_acc_retain</td>" in page and '<td class="num">92.8</td>' in page


def test_a_sparse_record_renders_what_it_has():
    page = render_record_page({"schema": "classunlearn.record/1"})
    check_balanced(page)
    assert "No verdicts in this record." in page and "<img" not in page
    for heading in ("<h2>Verdicts", "<h2>Evidence", "<h2>Files", "<h2>Command"):
        assert heading not in page
    record = example_record()
    del record["evidence"]["ulira_roc"], record["files"]["references"], record["method"]
    record["evidence"]["forget_distribution"]["unlearned"] = [0.5]  # wrong length: no plot
    record["verdicts"][1] = {"attack": "mia_nn"}  # no verdict, rule or numbers
    record["request"]["previous"] = None
    page = render_record_page(record)
    check_balanced(page)
    assert len(re.findall(r"<img ", page)) == 1  # MIA-NN only
    assert "previous record" not in page and "<h2>Method" not in page
    assert render_record_page({}).count("<h1>") == 1  # not even a schema: still a page


def test_everything_is_escaped():
    record = example_record()
    record["request"]["note"] = "<script>alert(1)</script> & more"
    record["verdicts"][0]["rule"] = 'a "rule" <b>'
    record["command"].append("<rm -rf>")
    page = render_record_page(record)
    assert "<script>" not in page and "<b>" not in page and "<rm" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert 'title="a &quot;rule&quot; &lt;b&gt;"' in page


def test_verdict_headline_names_what_found_it_out():
    record = example_record()
    record["verdicts"][1].update(verdict="leaks", passed=False)
    page = render_record_page(record)
    assert "Found out by MIA-NN: the model does not look retrained." in page
    for v in record["verdicts"]:
        v.update(passed=True)
    assert "Every check passed" in render_record_page(record)


def test_figures_show_the_evidence():
    ev = example_record()["evidence"]
    fig = forget_figure(ev, [1])
    (ax,) = fig.axes
    bars = np.array([p.get_height() for p in ax.patches]).reshape(3, 10)  # per series
    assert np.allclose(bars / 100, [ev["forget_distribution"][k]
                                    for k in ("original", "unlearned", "retrained")])
    assert "automobile\n(forgotten)" in [t.get_text() for t in ax.get_xticklabels()]
    plt.close(fig)
    fig = ulira_figure(ev)
    lin, log = fig.axes
    assert [ln.get_label() for ln in lin.get_lines()][:2] == ["unlearned",
                                                             "null: retrain replayed"]
    assert log.get_xscale() == "log" and min(log.get_lines()[0].get_xdata()) > 0
    plt.close(fig)
    fig = mia_nn_figure(ev)
    (ax,) = fig.axes
    assert [ln.get_xdata()[0] for ln in ax.get_lines()][-1] == pytest.approx(51.9)
    plt.close(fig)
    assert forget_figure({}, []) is None and ulira_figure({}) is None
    assert mia_nn_figure({"mia_nn": {"value": None}}) is None
