"""``report.json``: the summary a script wants (verdict per guarantee, totals, pass/fail), without the
per-test detail of ``results.json``."""

from __future__ import annotations

from typing import Any

from reports.model import Report


def report_dict(report: Report, *, strict: bool = False) -> dict[str, Any]:
    ok, problems = report.passed(strict=strict)
    return {
        "run_dir": report.run_dir,
        "run": report.run,
        "passed": ok,
        "strict": strict,
        "problems": problems,
        "certification": report.certification.to_dict(),
        "counts": report.counts(),
        "guarantees": [{"id": r.id, "valid": r.valid, "figure": r.figure, "threshold": r.threshold,
                        "unit": r.unit, "reason": r.reason, "decided_by": r.decided_by,
                        "evidence_count": len(r.evidence)} for r in report.rows],
        "checks": [{"id": t["id"], "outcome": t.get("outcome"), "message": t.get("message")}
                   for t in report.tests_without_guarantees()],
    }
