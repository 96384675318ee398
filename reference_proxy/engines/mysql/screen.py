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

Texts the screen lets through still cost a tokenization each time; the ones that do are mostly the
same few statements sent by every connection of a driver (``SET NAMES utf8mb4``, ``SET autocommit=0``),
so :class:`Remembered` keeps the answers for short texts: connect-per-query clients then pay for
each statement's reading once per proxy instead of once per connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reference_proxy.engines.mysql.pinning import MAX_INSPECTED_BYTES

__all__ = ["REMEMBERED_ENTRIES", "REMEMBERED_TEXT_LIMIT", "Remembered", "could_change_tracked", "could_pin",
           "screened"]

_TRIGGER_MARKS = ("set", "prepare", "execute", "deallocate", "temporary", "lock", "export", "@",
                  "row_count", "found_rows", "/*!", "/*m!")
# "lock" covers get_lock, release_lock, release_all_locks, is_used_lock, is_free_lock, LOCK TABLES
# and WITH READ LOCK; "@" covers INTO @x and @x := ...; "set" covers every SET statement.
_TRACKED_WORDS = ("set", "use", "drop")
REMEMBERED_TEXT_LIMIT = 256
"""Characters of SQL text above which an answer is worked out afresh (long texts rarely repeat)."""
REMEMBERED_ENTRIES = 4096
"""Answers kept at most; when full, all are forgotten at once (cheaper than tracking their use)."""


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


class Remembered:
    """A pure function of SQL text (and keyword options) whose answers for short texts are kept.

    The answers must be immutable (frozen dataclasses, None): every caller gets the same object.
    An exception is never remembered."""

    __slots__ = ("_answers", "_function")

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function
        self._answers: dict[tuple[Any, ...], Any] = {}

    def __call__(self, sql: str, **options: Any) -> Any:
        if len(sql) > REMEMBERED_TEXT_LIMIT:
            return self._function(sql, **options)
        key = (sql, *options.items())
        answers = self._answers
        try:
            return answers[key]
        except KeyError:
            pass
        answer = self._function(sql, **options)
        if len(answers) >= REMEMBERED_ENTRIES:
            answers.clear()
        answers[key] = answer
        return answer


def screened(classify: Callable[..., Any]) -> Callable[..., Any]:
    """``classify`` behind the screen: the same answers, without tokenizing most statements, and
    remembered for short texts that pass the screen."""
    remembered = Remembered(classify)

    def classify_screened(sql: str, **options: Any) -> Any:
        return remembered(sql, **options) if could_pin(sql) else None

    classify_screened.__doc__ = classify.__doc__
    return classify_screened
