"""Reports rendered from a run directory: JUnit XML, report.json, the verdict table and HTML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from harness.checkers import Validity, Verdict
from harness.history import History
from harness.plugin.run import HarnessRun
from harness.runstore import RunStore
from reports.html import render_html
from reports.json_report import report_dict
from reports.junit import render_junit
from reports.model import ReportError, load_report
from reports.render import write_reports
from reports.table import render_table

LEAK = {"index": 7, "time": 5, "type": "ok", "process": "c2", "f": "read_state",
        "value": {"kind": "setting", "name": "harness.leak_tag", "value": "client-c1"}}


@pytest.fixture
def run_dir(tmp_path):
    store = RunStore.create(tmp_path / "run", target="external", engine="postgres")
    run = HarnessRun(store, target="external", engine="postgres", profile="quick")
    run.selected = ["ISOLATION-NO-SESSION-LEAK", "POOL-BACKEND-CAP", "ROUTE-WRITER-ENDPOINT"]
    run.not_in_profile = ["FAILOVER-WRITE-GAP"]
    iso = run.record_for("suites/conformance/test_isolation.py::test_leaks", ["ISOLATION-NO-SESSION-LEAK"])
    iso.verdicts = [Verdict("ISOLATION-NO-SESSION-LEAK", Validity.FALSE, 1.0, 0.0, "observations",
                            "1 saw another client's <state>", [LEAK]).to_dict()]
    iso.outcome = "failed"
    pool = run.record_for("suites/conformance/test_pooling.py::test_cap", ["POOL-BACKEND-CAP"])
    pool.verdicts = [v.to_dict() for v in run.unknown_verdicts(["POOL-BACKEND-CAP"], "the pool cap is not known")]
    route = run.record_for("suites/conformance/test_routing.py::test_writer", ["ROUTE-WRITER-ENDPOINT"])
    route.verdicts = [v.to_dict() for v in run.judge(["ROUTE-WRITER-ENDPOINT"], History(), _context())]
    run.record_for("suites/conformance/test_tls.py::test_tls", []).outcome = "skipped"
    run.status = "complete"
    run.save()
    return store.path


def _context():
    from harness.checkers import CheckContext

    return CheckContext(initial_writer="instance-1")


def test_junit_has_one_case_per_guarantee_with_evidence_on_failure(run_dir):
    root = ET.fromstring(render_junit(load_report(run_dir)))
    suite = root.find("testsuite[@name='guarantees']")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"ISOLATION-NO-SESSION-LEAK", "POOL-BACKEND-CAP", "ROUTE-WRITER-ENDPOINT"}
    failure = cases["ISOLATION-NO-SESSION-LEAK"].find("failure")
    assert failure.get("message") == "1 saw another client's <state>"
    assert json.loads(failure.text.splitlines()[0]) == LEAK
    skipped = cases["POOL-BACKEND-CAP"].find("skipped")
    assert skipped.get("message").startswith("unknown: the pool cap")
    assert cases["POOL-BACKEND-CAP"].find("properties/property[@name='valid']").get("value") == "unknown"
    assert suite.get("failures") == "1" and suite.get("skipped") == "2"  # routing on an empty history is unknown
    checks = root.find("testsuite[@name='checks']")
    assert checks.find("testcase/skipped") is not None


def test_report_json_counts_and_fails_on_false(run_dir):
    d = report_dict(load_report(run_dir))
    assert d["passed"] is False
    assert d["counts"] == {"true": 0, "false": 1, "unknown": 2}
    assert any("ISOLATION-NO-SESSION-LEAK is false" in p for p in d["problems"])


def test_table_shows_figure_against_threshold_and_what_the_profile_left_out(run_dir):
    text = render_table(load_report(run_dir))
    line = next(ln for ln in text.splitlines() if ln.startswith("ISOLATION-NO-SESSION-LEAK"))
    assert "FALSE" in line and "1 <= 0 observations" in line
    assert "not in profile 'quick': FAILOVER-WRITE-GAP" in text
    assert "0 true, 1 false, 2 unknown" in text


def test_html_escapes_reasons(run_dir):
    html = render_html(load_report(run_dir))
    assert "&lt;state&gt;" in html and "<state>" not in html


def test_write_reports_writes_every_file(run_dir):
    write_reports(run_dir)
    for name in ("junit.xml", "report.json", "report.html"):
        assert (run_dir / name).stat().st_size > 0


def test_a_directory_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="no run directory"):
        load_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="results"):
        load_report(tmp_path / "empty")
