"""The verdict table printed at the end of ``aurora-harness certify`` (and by ``report``).

One row per guarantee, whatever number of tests judged it: the row's reason merges every judgement
(each test's verdict and reason) so that a guarantee judged true by one test and false by another
shows both.  The table fits the terminal: the reason column takes the width that is left and wraps,
nothing is cut.  Colour marks the verdicts only when the output is a terminal, so logs and pipes get
plain text.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from typing import TextIO

from reports.model import GuaranteeRow, Report

_MARK = {"true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
_COLOUR = {"true": "green", "false": "red", "unknown": "yellow"}
DEFAULT_WIDTH = 110
"""Used when the width of the output is unknown (not a terminal and no COLUMNS)."""
MIN_REASON = 30
"""Narrower than this, the reason goes on its own lines under the row instead of beside it."""


def for_terminal(report: Report, stream: TextIO | None = None) -> str:
    """The table sized for ``stream`` (stdout by default): its width, colour only if it is a TTY."""
    stream = stream or sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns if tty else DEFAULT_WIDTH
    return render_table(report, width=width, colour=tty)


def merged_reason(report: Report, row: GuaranteeRow) -> str:
    """The row's reason: the one judgement's, or each test's verdict and reason one after the other."""
    judgements = report.judgements(row.id)
    if len(judgements) <= 1:
        return row.reason
    parts = [f"[{j.test.rsplit('::', 1)[-1]}: {_MARK.get(j.valid, j.valid)}] {j.reason}" for j in judgements]
    note = row.reason.find(" (not judged in ")
    return "; ".join(parts) + (row.reason[note:] if note >= 0 else "")


def render_table(report: Report, *, width: int = DEFAULT_WIDTH, colour: bool = False) -> str:
    rows = report.rows
    id_w = max([len("guarantee")] + [len(r.id) for r in rows])
    fig_w = max([len("figure vs threshold")] + [len(r.figure_vs_threshold) for r in rows])
    lead = id_w + 2 + 7 + 2 + fig_w + 2
    reason_w = width - lead
    beside = reason_w >= MIN_REASON
    header = f"{'guarantee':<{id_w}}  {'valid':<7}  {'figure vs threshold':<{fig_w}}  reason"
    if len(header) > width:
        header = "guarantee  valid  figure vs threshold  reason"
    lines = [header, "-" * min(width, max(len(header), lead + MIN_REASON))]
    for r in rows:
        mark = f"{_MARK.get(r.valid, r.valid):<7}"
        if colour:
            import click

            mark = click.style(mark, fg=_COLOUR.get(r.valid), bold=r.valid == "false")
        start = f"{r.id:<{id_w}}  {mark}  {r.figure_vs_threshold:<{fig_w}}  "
        reason = merged_reason(report, r)
        if beside:
            wrapped = textwrap.wrap(reason, reason_w, break_on_hyphens=False) or [""]
            lines.append(start + wrapped[0])
            lines += [" " * lead + more for more in wrapped[1:]]
            continue
        if lead <= width:
            lines.append(start.rstrip())
        else:  # a narrow terminal: the figure goes under the id too
            lines.append(f"{r.id}  {mark}".rstrip())
            lines += textwrap.wrap(r.figure_vs_threshold, max(width - 4, 20), initial_indent="    ",
                                   subsequent_indent="    ")
        lines += textwrap.wrap(reason, max(width - 4, 20), initial_indent="    ", subsequent_indent="    ",
                               break_on_hyphens=False)
    others = report.tests_without_guarantees()
    if others:
        lines.append("")
        lines.append("checks outside the catalogue:")
        for t in others:
            outcome = t.get("outcome", "?")
            lines.append(f"  {outcome.upper():<8} {t['id']}")
            if t.get("message") and outcome != "passed":
                first = t["message"].strip().splitlines()[0] if t["message"].strip() else ""
                lines += textwrap.wrap(first, max(width - 11, 20), initial_indent=" " * 11,
                                       subsequent_indent=" " * 11)
    c = report.counts()
    lines.append("")
    lines.append(f"{c['true']} true, {c['false']} false, {c['unknown']} unknown")
    not_run = report.results.get("not_in_profile") or []
    if not_run:
        lines += textwrap.wrap(f"not in profile {report.run.get('profile')!r}: {', '.join(not_run)}", width,
                               subsequent_indent="  ")
    return "\n".join(lines)
