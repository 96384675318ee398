"""Write every report file of a run directory from its results: junit.xml, report.json, report.html."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reports.html import render_html
from reports.json_report import report_dict
from reports.junit import render_junit
from reports.model import Report, load_report


def write_reports(run_dir: str | os.PathLike[str], *, strict: bool = False, plots: bool = True) -> Report:
    """Render the reports into the run directory and return the loaded report (``plots=False``: a page
    without plots)."""
    report = load_report(run_dir)
    base = Path(run_dir)
    (base / "junit.xml").write_text(render_junit(report), encoding="utf-8")
    (base / "report.json").write_text(json.dumps(report_dict(report, strict=strict), indent=2) + "\n",
                                      encoding="utf-8")
    (base / "report.html").write_text(render_html(report, plots=plots), encoding="utf-8")
    return report
