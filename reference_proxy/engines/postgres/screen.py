"""A cheap first look at SQL text: can it pin at all?  Most statements plainly cannot.

:func:`.pinning.classify` tokenizes every statement, which costs more than everything else the
proxy does for a short query.  Every pin decision it can make needs one of a few words in the text (``set``, ``prepare``, ``execute``, ``temp``, ``nextval``...), so a
text holding none of them, as plain ASCII, can be let through without tokenizing.  The screen
only ever says "maybe" or "certainly not": a "maybe" goes to the real classifier.

What sends a text to the classifier whatever it says: non-ASCII characters (case folding beyond
ASCII), ``U&`` identifiers (their names can be spelled with escapes) and length over the 16 KB
that RDS does not inspect.  The word list must grow whenever the classifier learns a new trigger;
the tests run the classifier's whole corpus through the screen to catch a word forgotten here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reference_proxy.engines.postgres.pinning import MAX_INSPECTED_BYTES

__all__ = ["could_pin", "screened"]

_TRIGGER_WORDS = ("set", "prepare", "execute", "deallocate", "discard", "declare", "listen", "load", "temp",
                  "nextval", "advisory_lock", "u&")
# "set" also covers reset, set_config and setval; "temp" covers temporary and pg_temp.  Plain
# substring tests on the lowered text: an order of magnitude faster than one regular expression.


def could_pin(sql: str) -> bool:
    """False only when ``sql`` certainly does not pin; True means: ask the classifier."""
    if len(sql) > MAX_INSPECTED_BYTES or not sql.isascii():
        return True
    lowered = sql.lower()
    for word in _TRIGGER_WORDS:  # a plain loop: any() over a generator costs more than the tests
        if word in lowered:
            return True
    return False


def screened(classify: Callable[..., Any]) -> Callable[..., Any]:
    """``classify`` behind the screen: the same answers, without tokenizing most statements (keyword
    options, such as a test-only failpoint, are passed on)."""

    def classify_screened(sql: str, **options: Any) -> Any:
        return classify(sql, **options) if could_pin(sql) else None

    classify_screened.__doc__ = classify.__doc__
    return classify_screened
