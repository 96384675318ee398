"""The verdict table printed at the end of ``aurora-harness certify``: plain text, fixed columns."""

from __future__ import annotations

from reports.model import Report

_MARK = {"true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}


def render_table(report: Report, *, width: int = 110) -> str:
    rows = report.rows
    id_w = max([len("guarantee")] + [len(r.id) for r in rows])
    fig_w = max([len("figure vs threshold")] + [len(r.figure_vs_threshold) for r in rows])
    header = f"{'guarantee':<{id_w}}  {'valid':<7}  {'figure vs threshold':<{fig_w}}  reason"
    lines = [header, "-" * min(width, len(header) + 20)]
    reason_w = max(20, width - id_w - fig_w - 13)
    for r in rows:
        reason = r.reason if len(r.reason) <= reason_w else r.reason[:reason_w - 3] + "..."
        lines.append(f"{r.id:<{id_w}}  {_MARK.get(r.valid, r.valid):<7}  {r.figure_vs_threshold:<{fig_w}}  {reason}")
    others = report.tests_without_guarantees()
    if others:
        lines.append("")
        lines.append("checks outside the catalogue:")
        for t in others:
            lines.append(f"  {t.get('outcome', '?').upper():<8} {t['id']}"
                         + (f"  ({t['message'][:80]})" if t.get("message") and t.get("outcome") != "passed" else ""))
    c = report.counts()
    lines.append("")
    lines.append(f"{c['true']} true, {c['false']} false, {c['unknown']} unknown")
    not_run = report.results.get("not_in_profile") or []
    if not_run:
        lines.append(f"not in profile {report.run.get('profile')!r}: {', '.join(not_run)}")
    return "\n".join(lines)
