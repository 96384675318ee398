"""report.html from a hand-built run directory: headline, run facts, every guarantee with all its
judgements, evidence on the wall clock, failed tests, links, and the plots as inline SVG."""

from __future__ import annotations

import re

import markupsafe
import pytest

from harness.checkers import Validity, Verdict
from harness.guarantees import CATALOGUE
from harness.history import ManualClock, OpError, Recorder
from harness.plugin.run import HarnessRun
from harness.runstore import RunStore
from reports.html import render_html
from reports.model import load_report

WALL_AT_ZERO = 1_796_169_600_000_000_000  # 2026-12-02 00:00:00 UTC, the wall clock when the history began
ISO = "suites/conformance/test_isolation.py::test_leaks"
MODEL = "suites/models/test_sessions_model.py::test_private_sessions"
FAILOVER = "suites/chaos/test_failover.py::test_failover_under_load"
POOL = "suites/conformance/test_pooling.py::test_cap"


def record_failover(path) -> list[dict]:
    """A small failover under load: writes and reads on both endpoints, a failover window, errors of
    two kinds, a promotion, idle probes, backend counts against a cap.  Returns one leaking op."""
    clock = ManualClock()
    with Recorder(path, clock=clock, wall_clock=lambda: WALL_AT_ZERO) as rec:
        rec.event("roles", {"writer": "instance-1", "readers": ["instance-2"]})
        rec.event("pool_cap", {"instance-1": 20})
        for step in range(60):  # a step every 0.1 s; the failover runs from step 20 to step 30
            clock.at(step / 10)
            w = rec.invoke(1, "write", step, endpoint="writer")
            clock.advance(0.004 + (0.05 if 20 <= step <= 30 else 0))
            if 20 <= step <= 25:
                rec.fail(w, OpError("57P01", "terminating connection", definite=True))
            elif step == 26:
                rec.info(w, OpError("timeout", "no answer", definite=False))
            else:
                rec.ok(w, node="instance-1" if step < 20 else "instance-2")
            r = rec.invoke(2, "read", None, endpoint="reader")
            clock.advance(0.003)
            rec.ok(r, 1, node="instance-2")
            d = rec.invoke(3, "read", None, endpoint="direct:instance-1")
            clock.advance(0.002)
            rec.ok(d, 1, node="instance-1")
            c = rec.invoke(4, "backend_count", endpoint="direct:instance-1")
            clock.advance(0.001)
            rec.ok(c, 5 + step % 10, node="instance-1")
            if step == 20:
                rec.fault("failover", "start", {"old_writer": "instance-1"})
            if step == 25:
                rec.event("new_writer", "instance-2")
            if step == 30:
                rec.fault("failover", "end", {"new_writer": "instance-2"})
            if step == 35:
                p = rec.invoke(5, "idle_probe", endpoint="writer")
                clock.advance(0.004)
                rec.ok(p, node="instance-2")
        leak = rec.history().ops(f="write", type="ok")[3]
    return [leak.to_dict()]


@pytest.fixture
def run_dir(tmp_path):
    store = RunStore.create(tmp_path / "run", target="external", engine="postgres")
    run = HarnessRun(store, target="external", engine="postgres", profile="quick", seed=7)
    run.command = "aurora-harness certify --target external --writer-dsn 'host=db password=sekrit-pw-1'"
    run.secrets = ["sekrit-pw-1"]
    run.server_version = "15.18"
    run.selected = ["ISOLATION-NO-SESSION-LEAK", "POOL-BACKEND-CAP", "FAILOVER-WRITE-GAP"]
    run.not_in_profile = ["NETFAULT-SILENT-DETECTED"]
    history = store.history_path(FAILOVER)
    evidence = record_failover(history)
    iso = run.record_for(ISO, ["ISOLATION-NO-SESSION-LEAK"])
    iso.history = store.relative(history)  # the evidence ops are in this history
    iso.verdicts = [Verdict("ISOLATION-NO-SESSION-LEAK", Validity.FALSE, 1.0, 0.0, "observations",
                            "1 saw another client's <state>", evidence).to_dict()]
    iso.outcome = "failed"
    iso.message = "ISOLATION-NO-SESSION-LEAK is FALSE: 1 saw another client's state"
    model = run.record_for(MODEL, ["ISOLATION-NO-SESSION-LEAK"])
    model.verdicts = [Verdict("ISOLATION-NO-SESSION-LEAK", Validity.TRUE, 0.0, 0.0, "observations",
                              "93 state reads by the model, none leaked").to_dict()]
    model.outcome = "failed"
    model.message = "Falsifying example: -- client 1\nSET x = 1; replay with --seed 7"
    fo = run.record_for(FAILOVER, ["FAILOVER-WRITE-GAP"])
    fo.history = store.relative(history)
    fo.verdicts = [Verdict("FAILOVER-WRITE-GAP", Validity.TRUE, 0.9, 3.0, "s", "1 failover; worst gap 0.9 s").to_dict()]
    pool = run.record_for(POOL, ["POOL-BACKEND-CAP"])
    pool.verdicts = [v.to_dict() for v in run.unknown_verdicts(["POOL-BACKEND-CAP"], "the pool cap is not known")]
    run.status = "complete"
    run.save()
    (store.path / "proxy.log").write_text("proxy started\n")
    store.write_target({"target": "external", "engine": "postgres", "password": "sekrit-pw-1"})
    return store.path


def test_the_page_has_headline_run_facts_and_masked_command(run_dir):
    page = render_html(load_report(run_dir), plots=False)
    assert re.search(r'<header class="banner not-certified" id="headline">\s*<h1>NOT CERTIFIED</h1>', page)
    assert "1 false (ISOLATION-NO-SESSION-LEAK)" in page
    for fact in ("<td>external</td>", "<td>postgres</td>", "<td>quick</td>", "<td>7</td>", "<td>15.18</td>",
                 "psycopg ", "not reported by the target"):
        assert fact in page, fact
    assert "sekrit-pw-1" not in page and "password=***" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # works offline


def test_every_guarantee_has_a_row_with_all_its_judgements(run_dir):
    page = render_html(load_report(run_dir), plots=False)
    rows = re.findall(r'data-guarantee="([A-Z-]+)" data-valid="(\w+)"', page)
    assert rows == [("ISOLATION-NO-SESSION-LEAK", "false"), ("POOL-BACKEND-CAP", "unknown"),
                    ("FAILOVER-WRITE-GAP", "true")]
    iso = page[page.index('id="g-ISOLATION-NO-SESSION-LEAK"'):page.index('id="g-POOL-BACKEND-CAP"')]
    assert ISO in iso and MODEL in iso  # both tests that judged it
    assert "1 saw another client&#39;s &lt;state&gt;" in iso and "none leaked" in iso
    sentence = CATALOGUE["ISOLATION-NO-SESSION-LEAK"].render()
    assert f'<div class="sentence">{markupsafe.escape(sentence)}</div>' in iso
    # The evidence is a table on the wall clock: the fourth ok write completed at 0.304 s.
    assert "2026-12-02 00:00:00.304" in iso and "<td>write</td>" in iso


def test_failed_tests_and_links_to_the_files(run_dir):
    page = render_html(load_report(run_dir), plots=False)
    failed = re.findall(r'class="failed-test" data-test="([^"]+)"', page)
    assert failed == [ISO, MODEL]
    assert "Falsifying example: -- client 1" in page
    for name in ("results.json", "target.json", "proxy.log",
                 "history/suites_chaos_test_failover.py__test_failover_under_load.jsonl"):
        assert f'<a href="{name}">' in page, name
    assert "Plots were left out" in page


def test_a_history_without_a_clock_anchor_shows_seconds_since_its_start(run_dir):
    path = run_dir / "history" / "suites_chaos_test_failover.py__test_failover_under_load.jsonl"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[1:]))  # an old history
    page = render_html(load_report(run_dir), plots=False)
    assert "+0.304 s" in page and "it has no clock anchor" in page


def test_plots_are_inline_svg_one_per_kind(run_dir):
    page = render_html(load_report(run_dir))
    kinds = re.findall(r'<figure class="plot" data-plot="([a-z-]+)" data-test="([^"]+)">\s*<svg', page)
    assert ("latency", FAILOVER) in kinds
    assert ("throughput", FAILOVER) in kinds
    assert ("failover", FAILOVER) in kinds
    assert ("backends", FAILOVER) in kinds
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
