"""report.html from a hand-built run directory: headline, run facts, every guarantee with all its
judgements, evidence on the wall clock, failed tests, links, and the plots as inline SVG."""

from __future__ import annotations

import re

import markupsafe

from harness.guarantees import CATALOGUE
from reports.html import render_html
from reports.model import load_report


def test_the_page_has_headline_run_facts_and_masked_command(built_run):
    page = render_html(load_report(built_run), plots=False)
    assert re.search(r'<header class="banner not-certified" id="headline">\s*<h1>NOT CERTIFIED</h1>', page)
    assert "1 false (ISOLATION-NO-SESSION-LEAK)" in page
    for fact in ("<td>external</td>", "<td>postgres</td>", "<td>quick</td>", "<td>7</td>", "<td>15.18</td>",
                 "psycopg ", "not reported by the target"):
        assert fact in page, fact
    assert "sekrit-pw-1" not in page and "password=***" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # works offline


def test_every_guarantee_has_a_row_with_all_its_judgements(built_run, built_ids):
    page = render_html(load_report(built_run), plots=False)
    rows = re.findall(r'data-guarantee="([A-Z-]+)" data-valid="(\w+)"', page)
    assert rows == [("ISOLATION-NO-SESSION-LEAK", "false"), ("POOL-BACKEND-CAP", "unknown"),
                    ("FAILOVER-WRITE-GAP", "true")]
    iso = page[page.index('id="g-ISOLATION-NO-SESSION-LEAK"'):page.index('id="g-POOL-BACKEND-CAP"')]
    assert built_ids["iso"] in iso and built_ids["model"] in iso  # both tests that judged it
    assert "1 saw another client&#39;s &lt;state&gt;" in iso and "none leaked" in iso
    sentence = CATALOGUE["ISOLATION-NO-SESSION-LEAK"].render()
    assert f'<div class="sentence">{markupsafe.escape(sentence)}</div>' in iso
    # The evidence is a table on the wall clock: the fourth ok write completed at 0.304 s.
    assert "2026-12-02 00:00:00.304" in iso and "<td>write</td>" in iso


def test_failed_tests_and_links_to_the_files(built_run, built_ids):
    page = render_html(load_report(built_run), plots=False)
    failed = re.findall(r'class="failed-test" data-test="([^"]+)"', page)
    assert failed == [built_ids["iso"], built_ids["model"]]
    assert "Falsifying example: -- client 1" in page
    for name in ("results.json", "target.json", "proxy.log",
                 "metrics/suites_chaos_test_failover.py__test_failover_under_load.jsonl",
                 "history/suites_chaos_test_failover.py__test_failover_under_load.jsonl"):
        assert f'<a href="{name}">' in page, name
    assert "Plots were left out" in page


def test_a_history_without_a_clock_anchor_shows_seconds_since_its_start(built_run):
    path = built_run / "history" / "suites_chaos_test_failover.py__test_failover_under_load.jsonl"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[1:]))  # an old history
    page = render_html(load_report(built_run), plots=False)
    assert "+0.304 s" in page and "it has no clock anchor" in page


def test_plots_are_inline_svg_one_per_kind(built_run, built_ids):
    page = render_html(load_report(built_run))
    kinds = re.findall(r'<figure class="plot" data-plot="([a-z-]+)" data-test="([^"]+)">\s*<svg', page)
    assert ("latency", built_ids["failover"]) in kinds
    assert ("throughput", built_ids["failover"]) in kinds
    assert ("failover", built_ids["failover"]) in kinds
    assert ("backends", built_ids["failover"]) in kinds
    assert ("proxy-connections", built_ids["failover"]) in kinds  # from the metrics the test kept
    assert ("pinned", built_ids["failover"]) in kinds
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page  # inlined, not embedded documents
    latency = page[page.index('data-plot="latency"'):page.index('data-plot="throughput"')]
    for endpoint in ("writer", "reader", "direct:instance-1"):
        assert endpoint in latency
    assert "failover" in latency  # the shaded fault window is in the legend


def test_matplotlib_is_not_imported_with_the_harness():
    import subprocess
    import sys

    code = ("import sys, harness.cli, reports, reports.html, reports.model, reports.table; "
            "print('matplotlib' in sys.modules, 'jinja2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_the_failover_timeline_names_each_moment(built_run, built_ids):
    from reports.plots import failover_moments

    history = load_report(built_run).history(built_ids["failover"])
    (window,) = history.fault_windows()
    moments = {label: round((t - window.start) / 1e6) for label, t in failover_moments(history, window)}
    assert moments == {
        "trigger (failover)": 0,
        "first read ok via reader (no errors)": 97,  # the next step's read
        "first read ok via direct:instance-1 (no errors)": 99,
        "first write ok via writer (after errors)": 694,  # step 27: after five failures and a timeout
        "promotion seen (instance-2)": 500,
        "failover ended": 1000,
        "idle probe ok (5)": 1454,
    }


def test_metrics_without_a_history_are_plotted_on_their_own_clock(built_run, built_ids):
    import json

    from reports.plots import plots_of_run

    results = json.loads((built_run / "results.json").read_text())
    for test in results["tests"]:
        if test["id"] == built_ids["failover"]:
            test["history"] = None  # only the metrics are left
    (built_run / "results.json").write_text(json.dumps(results))
    plots = {p.kind: p for p in plots_of_run(load_report(built_run)) if p.test == built_ids["failover"]}
    assert set(plots) == {"proxy-connections", "pinned"}
    assert "seconds since 2026-12-02 00:00:00.000 UTC" in plots["pinned"].svg
