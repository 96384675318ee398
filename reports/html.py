"""A plain HTML table of the verdicts (plots come later); self-contained, no scripts."""

from __future__ import annotations

import html
import json

from reports.model import Report

_COLOUR = {"true": "#d8f5d0", "false": "#f8d0d0", "unknown": "#f3ecc8"}


def render_html(report: Report) -> str:
    run = report.run
    esc = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>aurora-harness certify: {esc(str(run.get('target')))} {esc(str(run.get('engine')))}</title>",
           ("<style>body{font-family:sans-serif}td,th{border:1px solid #bbb;padding:4px;vertical-align:top}"
            "table{border-collapse:collapse}pre{margin:0;font-size:80%;white-space:pre-wrap}</style></head><body>"),
           (f"<h1>Certification of {esc(str(run.get('target')))} ({esc(str(run.get('engine')))}), "
            f"profile {esc(str(run.get('profile')))}</h1>"),
           f"<p>Started {esc(str(run.get('started_at')))}, {esc(str(run.get('duration_s')))} s.</p>",
           ("<table><tr><th>guarantee</th><th>valid</th><th>figure vs threshold</th><th>reason</th>"
            "<th>evidence</th></tr>")]
    for r in report.rows:
        evidence = "\n".join(json.dumps(e, sort_keys=True) for e in r.evidence[:5])
        out.append(f"<tr style='background:{_COLOUR.get(r.valid, '#fff')}'><td title='{esc(r.sentence or '')}'>"
                   f"{esc(r.id)}</td><td>{esc(r.valid)}</td><td>{esc(r.figure_vs_threshold)}</td>"
                   f"<td>{esc(r.reason)}</td><td><pre>{esc(evidence)}</pre></td></tr>")
    out.append("</table>")
    others = report.tests_without_guarantees()
    if others:
        out.append("<h2>Checks outside the catalogue</h2><ul>")
        out += [f"<li>{esc(t.get('outcome', '?'))}: {esc(t['id'])}</li>" for t in others]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
