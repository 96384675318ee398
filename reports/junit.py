"""JUnit XML: one test case per guarantee, so CI dashboards show promises, not test functions.

* true    -> a passing test case;
* false   -> ``<failure>`` whose message is the reason and whose text is the evidence (one JSON op
  per line), so the leaking or lost operations are right there in the CI page;
* unknown -> ``<skipped>`` with the reason.  Skipped is the one JUnit state that means "neither
  proven nor broken"; a property ``valid=unknown`` is also set so tools that ignore skips can still
  tell unknown apart from a deliberate skip.

Tests that assert something outside the catalogue (e.g. TLS enforcement) get their own suite.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from reports.model import Report


def render_junit(report: Report) -> str:
    root = ET.Element("testsuites", name="aurora-harness certify")
    rows = report.rows
    counts = report.counts()
    suite = ET.SubElement(root, "testsuite", name="guarantees", tests=str(len(rows)),
                          failures=str(counts.get("false", 0)), errors="0",
                          skipped=str(counts.get("unknown", 0)))
    props = ET.SubElement(suite, "properties")
    for key in ("target", "engine", "profile"):
        ET.SubElement(props, "property", name=key, value=str(report.run.get(key, "")))
    for row in rows:
        case = ET.SubElement(suite, "testcase", classname=f"guarantees.{row.id.split('-')[0].lower()}",
                             name=row.id)
        cprops = ET.SubElement(case, "properties")
        ET.SubElement(cprops, "property", name="valid", value=row.valid)
        ET.SubElement(cprops, "property", name="figure_vs_threshold", value=row.figure_vs_threshold)
        if row.decided_by:
            ET.SubElement(cprops, "property", name="decided_by", value=row.decided_by)
        if row.valid == "false":
            failure = ET.SubElement(case, "failure", message=row.reason, type="GuaranteeBroken")
            failure.text = "\n".join(json.dumps(e, sort_keys=True) for e in row.evidence) or row.reason
        elif row.valid == "unknown":
            ET.SubElement(case, "skipped", message=f"unknown: {row.reason}")
    others = report.tests_without_guarantees()
    if others:
        failed = [t for t in others if t.get("outcome") in ("failed", "error")]
        skipped = [t for t in others if t.get("outcome") == "skipped"]
        tsuite = ET.SubElement(root, "testsuite", name="checks", tests=str(len(others)),
                               failures=str(len(failed)), errors="0", skipped=str(len(skipped)))
        for t in others:
            case = ET.SubElement(tsuite, "testcase", classname="checks", name=t["id"],
                                 time=f"{t.get('duration_s') or 0:.3f}")
            if t in failed:
                ET.SubElement(case, "failure", message=(t.get("message") or "failed")[:500]).text = \
                    t.get("message") or ""
            elif t in skipped:
                ET.SubElement(case, "skipped", message=t.get("message") or "skipped")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
