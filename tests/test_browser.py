"""The pages a person reads, opened in headless Chromium at a laptop's width: no console
error, every image loads, tables are HTML tables, the page never scrolls sideways, and a
full-page screenshot comes out. Chromium is driven over its DevTools pipe by
scripts/headless.py (standard library only); without an installed Chromium these tests skip
(.ci/run installs it)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from headless import Chromium, find_chromium  # noqa: E402
from pages import example_record  # noqa: E402

pytestmark = pytest.mark.skipif(find_chromium() is None, reason=(
    "no Chromium installed (apt-get install chromium; .ci/run does it): the browser tests "
    "need one"))

CHECKS = """({
  images: document.images.length,
  broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length,
  tables: document.querySelectorAll('table').length,
  headed: document.querySelectorAll('table > thead + tbody').length,
  markdown: Array.from(document.querySelectorAll('pre')).filter(
      p => /^\\s*\\|.*\\|\\s*$/m.test(p.textContent)).length,
  pageWidth: document.documentElement.scrollWidth,
  window: window.innerWidth,
})"""


@pytest.fixture(scope="module")
def browser():
    with Chromium() as b:
        yield b


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """report.html of a tiny real bench run (~30 s on one core)."""
    from classunlearn.bench.runner import BenchConfig, run_bench

    out = tmp_path_factory.mktemp("bench")
    run_bench(BenchConfig(dataset="digits", methods=["retrain", "original", "rwft"], seeds=2,
                          shadows=8, references=2, epochs=2, executor="local", out=str(out)),
              log=lambda _: None)
    return out / "report.html"


@pytest.fixture(scope="module")
def record_page(tmp_path_factory) -> Path:
    from classunlearn.record_page import write_record_page

    path = tmp_path_factory.mktemp("record") / "record.html"
    write_record_page(example_record(), path)
    return path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def check_page(browser: Chromium, page: Path, shot: Path, min_images: int) -> dict:
    browser.errors.clear()
    browser.open(page, width=1280)
    got = browser.evaluate(CHECKS)
    assert browser.errors == []
    assert got["images"] >= min_images and got["broken"] == 0, got
    assert got["tables"] > 0 and got["headed"] == got["tables"], got
    assert got["markdown"] == 0, got
    assert got["pageWidth"] <= got["window"] == 1280, got
    browser.screenshot(shot)
    width, height = png_size(shot)
    assert width == 1280 and height > 800  # the whole page, taller than one window
    return got


def test_report_in_the_browser(browser, report_page, tmp_path):
    check_page(browser, report_page, tmp_path / "report.png", min_images=6)
    # every figure of the study is drawn, the cost-privacy one included
    text = browser.evaluate("document.body.innerText")
    for title in ("U-LiRA ROC per method", "MIA-NN", "Gap to retrain", "Cost and privacy"):
        assert title in text, title
    # at a narrow window the wide results table scrolls inside its wrapper, not the page
    browser.open(report_page, width=700)
    assert browser.evaluate("document.documentElement.scrollWidth") <= 700
    assert browser.evaluate(
        "Array.from(document.querySelectorAll('.scroll')).some("
        "d => d.scrollWidth > d.clientWidth)")


def test_record_page_in_the_browser(browser, record_page, tmp_path):
    check_page(browser, record_page, tmp_path / "record.png", min_images=3)
    browser.open(record_page, width=700)
    assert browser.evaluate("document.documentElement.scrollWidth") <= 700


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """The driver sees console errors and a broken image: a passing page means something."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><title>bad</title><img src='data:image/png;base64,AAAA'>"
                   "<script>console.error('boom')</script>")
    browser.errors.clear()
    browser.open(bad)
    assert any("boom" in e for e in browser.errors)
    assert browser.evaluate(CHECKS)["broken"] == 1
