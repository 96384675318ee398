"""A cheap first look at MySQL SQL text: can it pin, or change tracked state, at all?

:func:`.pinning.classify` and :func:`.tracked.statement_changes` tokenize the text, which costs
more than everything else the proxy does for a short point select.  Every pin decision needs one of
a few words or marks in the text (``set``, ``prepare``, ``lock``, ``@``, ``/*!``...), and every
tracked change one of ``set``, ``use``, ``drop``; a plain-ASCII text holding none of them can be
let through without tokenizing, tens of times faster than classifying it.  The screen only ever
says "maybe" or "certainly not": a "maybe" goes to the real reader.

What sends a text to the classifier whatever it says: non-ASCII characters (case folding beyond
ASCII) and length over the 16 KB that RDS does not inspect.  The word list must grow whenever the
classifier learns a new trigger; the tests run the classifier's whole corpus through the screen to
catch a word forgotten here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reference_proxy.engines.mysql.pinning import MAX_INSPECTED_BYTES

__all__ = ["could_change_tracked", "could_pin", "screened"]

_TRIGGER_MARKS = ("set", "prepare", "execute", "deallocate", "temporary", "lock", "export", "@",
                  "row_count", "found_rows", "/*!", "/*m!")
# "lock" covers get_lock, release_lock, release_all_locks, is_used_lock, is_free_lock, LOCK TABLES
# and WITH READ LOCK; "@" covers INTO @x and @x := ...; "set" covers every SET statement.
_TRACKED_WORDS = ("set", "use", "drop")


def could_pin(sql: str) -> bool:
    """False only when ``sql`` certainly does not pin; True means: ask the classifier."""
    return _mentions(sql, _TRIGGER_MARKS)


def could_change_tracked(sql: str) -> bool:
    """False only when ``sql`` certainly changes no tracked setting or schema."""
    return _mentions(sql, _TRACKED_WORDS)


def _mentions(sql: str, marks: tuple[str, ...]) -> bool:
    if len(sql) > MAX_INSPECTED_BYTES or not sql.isascii():
        return True
    lowered = sql.lower()
    for mark in marks:  # a plain loop: any() over a generator costs more than the tests
        if mark in lowered:
            return True
    return False


def screened(classify: Callable[..., Any]) -> Callable[..., Any]:
    """``classify`` behind the screen: the same answers, without tokenizing most statements."""

    def classify_screened(sql: str, **options: Any) -> Any:
        return classify(sql, **options) if could_pin(sql) else None

    classify_screened.__doc__ = classify.__doc__
    return classify_screened
