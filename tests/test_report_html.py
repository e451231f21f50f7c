"""The report's HTML in a real browser: headless Chromium (Debian's ``chromium`` package) loads it with no
console message, and the checker used by ``benchmarks/render_report.sh`` catches a broken page.

Skipped when Chromium is not installed (CI does not install it); run ``benchmarks/render_report.sh`` to get
screenshots to look at.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from test_report import COCO, write_run

from plbench.report import write_report
from plbench.report.records import parse_labels

ROOT = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("render_report", ROOT / "benchmarks" / "render_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_report = _checker()
CHROMIUM = render_report.find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")


def test_static_checks_catch_external_resources():
    """Runs without a browser: the self-containment part of the checker."""
    bad = ("<html><head><link rel='stylesheet' href='https://cdn.example/x.css'></head><body>"
           "<img src='map.png'><img src='data:image/png;base64,AAAA'></body></html>")
    problems = render_report.static_problems(bad)
    assert any("https://cdn.example" in p for p in problems)
    assert any("map.png" in p for p in problems)
    assert any("not a PNG" in p for p in problems)


@pytest.mark.slow
@needs_chromium
def test_report_renders_without_console_errors(tmp_path):
    for (labels, loss, mode), by_seed in COCO.items():
        scheme, param = parse_labels(labels)
        for seed, v in by_seed.items():
            write_run(tmp_path / "runs", f"{labels}-{loss}-{mode}-s{seed}", labels=labels, loss=loss, mode=mode,
                      seed=seed, val_map=v, epochs_metrics=3,
                      simulation=None if scheme is None else {"scheme": scheme, "param": param, "seed": seed})
    html = write_report([tmp_path / "runs"], tmp_path / "rep", title="render check")["html"]
    problems = render_report.check(html, tmp_path / "shots", CHROMIUM, height=6000)
    assert problems == []
    assert (tmp_path / "shots" / "screenshot.png").stat().st_size > 10_000  # a page was drawn, not a blank
    assert list((tmp_path / "shots").glob("page-*.png"))


@pytest.mark.slow
@needs_chromium
def test_checker_reports_console_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><head><title>bad</title></head><body><p>x</p>"
                    "<script>console.error('boom'); notDefined();</script></body></html>")
    problems = render_report.check(page, tmp_path / "shots", CHROMIUM, height=1000)
    assert any("console" in p and "boom" in p for p in problems)
    assert any("notDefined" in p for p in problems)
