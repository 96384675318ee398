"""The terminal verdict table: one row per guarantee with every judgement merged, reasons wrapped to
the width (never cut), colour only on a terminal."""

from __future__ import annotations

import io
import re

from reports.model import load_report
from reports.table import for_terminal, merged_reason, render_table

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def words(text: str) -> list[str]:
    return ANSI.sub("", text).split()


def test_one_row_per_guarantee_with_all_its_judgements(built_run):
    report = load_report(built_run)
    text = render_table(report, width=400)
    rows = [ln for ln in text.splitlines() if ln.startswith("ISOLATION-NO-SESSION-LEAK")]
    assert len(rows) == 1
    assert ("[test_leaks: FALSE] 1 saw another client's <state>; "
            "[test_private_sessions: TRUE] 93 state reads by the model, none leaked") in rows[0]
    assert "FAILOVER-WRITE-GAP" in text and "1 failover; worst gap 0.9 s" in text


def test_reasons_wrap_to_the_width_and_nothing_is_cut(built_run):
    report = load_report(built_run)
    for width in (60, 90, 130):
        text = render_table(report, width=width)
        assert max(len(ln) for ln in text.splitlines()) <= width, width
        assert "..." not in text
        # Every word of every merged reason is in the table, in order.
        flat = " ".join(words(text))
        for row in report.rows:
            assert " ".join(merged_reason(report, row).split()) in flat, (width, row.id)


def test_colour_only_on_a_terminal(built_run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    report = load_report(built_run)
    assert not ANSI.search(for_terminal(report, io.StringIO()))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    coloured = for_terminal(report, Terminal())
    assert "\x1b[31m\x1b[1mFALSE" in coloured  # red, bold
    assert ANSI.sub("", coloured) == render_table(report, width=100)  # the terminal's width
