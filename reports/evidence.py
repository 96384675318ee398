"""Evidence as people read it: one row per recorded op, its time on the wall clock.

A verdict's evidence is a list of ops as written in the history (monotonic nanosecond times).  The
history's clock anchor puts each on the wall clock, so a row can be looked up in the proxy's and the
database's logs; a history written before anchors existed shows seconds since its first record.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from harness.history import ClockAnchor, History

VALUE_CHARS = 160
"""A value longer than this is cut in the table (the whole op stays in results.json)."""


def wall_text(anchor: ClockAnchor, monotonic_ns: int) -> str:
    """``2026-12-02 00:59:45.123`` (UTC, milliseconds): the form logs are searched by."""
    wall = _dt.datetime.fromtimestamp(anchor.wall_ns_of(monotonic_ns) / 1e9, _dt.UTC)
    return wall.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def when_text(history: History | None, monotonic_ns: Any) -> str:
    """The wall-clock time of a history's instant, or ``+s`` since its first record without an anchor."""
    if not isinstance(monotonic_ns, int):
        return "-"
    if history is not None and history.anchor is not None:
        return wall_text(history.anchor, monotonic_ns)
    origin = history[0].time if history is not None and len(history) else None
    return f"+{(monotonic_ns - origin) / 1e9:.3f} s" if origin is not None else f"{monotonic_ns} ns"


def evidence_rows(evidence: list[dict[str, Any]], history: History | None) -> list[dict[str, str]]:
    """The table rows of a verdict's evidence (keys: when, process, type, f, endpoint, node, value, error)."""
    rows = []
    for op in evidence:
        if not isinstance(op, dict):
            rows.append({"when": "-", "value": _short(op)})
            continue
        error = op.get("error") or {}
        rows.append({
            "when": when_text(history, op.get("time")),
            "process": str(op.get("process", "")),
            "type": str(op.get("type", "")) + (f" {op['phase']}" if op.get("phase") else ""),
            "f": str(op.get("f", "")),
            "endpoint": str(op.get("endpoint") or ""),
            "node": str(op.get("node") or ""),
            "value": _short(op.get("value")) if op.get("value") is not None else "",
            "error": " ".join(x for x in (str(error.get("code") or ""), str(error.get("text") or "")) if x),
        })
    return rows


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 1] + "…"
