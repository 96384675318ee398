"""What an engine's pin classifier answers: why a session is pinned, and a short machine-readable trigger.

Engine-neutral: each engine (``engines/<name>/pinning.py``) decides *when* a statement pins; the
session, its log lines and the metrics only read the decision.  The SQL scanning both engines'
pin lexers do alike (:func:`end_of_quoted`) lives here too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PinDecision:
    """A statement pins its session.

    ``reason`` is a sentence in the style of RDS Proxy's pinning log line (it follows "Reason: ");
    ``trigger`` is a short stable id for metrics, tests and the harness; each engine's classifier
    lists its own (PostgreSQL's: ``set``, ``prepare``, ``temp_table``, ``statement_too_large``...).
    """

    reason: str
    trigger: str


def end_of_quoted(sql: str, start: int, quote: str, *, backslash: bool) -> int:
    """Index just past the closing quote of the literal or quoted name opening at ``start``.

    A doubled quote stands for itself; with ``backslash`` a backslash escapes the next character
    (PostgreSQL's E'' strings, MySQL's strings unless NO_BACKSLASH_ESCAPES).  An unclosed literal
    runs to the end of the text."""
    i, n = start + 1, len(sql)
    while i < n:
        ch = sql[i]
        if backslash and ch == "\\":
            i += 2
        elif ch == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n
