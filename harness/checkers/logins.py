"""Login attempts judged against what they tried: accepted and working, or refused with set words.

Guarantees about who may log in (IAM tokens, RequireTLS) share one shape: each attempt is a
``connect`` request whose invocation's extra names the case it tried; an attempt meant to be let in
must log in and the first request of its session must succeed; one meant to be refused must be
refused with one of the texts RDS Proxy uses, since applications match on them.  This module judges
one attempt; each guarantee's checker says which cases exist and what each expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from harness.history import History, Op, OpType

Pair = tuple[Op, Op | None]


def judge_attempt(history: History, pair: Pair, accept: bool,
                  refusal_texts: Sequence[str]) -> tuple[bool, str] | None:
    """None when the attempt went as expected; else (whether that is certain, what happened).

    ``accept``: it must log in and its session's first request succeed; otherwise it must be refused
    with an error containing one of ``refusal_texts``."""
    inv, comp = pair
    if comp is None or comp.type is OpType.INFO:
        return False, "its outcome is unknown (the login did not finish)"
    if accept:
        if comp.type is not OpType.OK:
            return True, f"was refused: {comp.error.text if comp.error else 'no error text'}"
        after = session_requests(history, inv.process, comp.time)
        if not after:
            return False, "logged in, but its session was not tried"
        first = after[0]
        if first[1] is None or first[1].type is not OpType.OK:
            error = first[1].error.text if first[1] is not None and first[1].error else "no answer"
            return True, f"logged in, but its session failed: {error}"
        return None
    if comp.type is OpType.OK:
        return True, "was accepted"
    text = comp.error.text if comp.error else ""
    if not any(w in text for w in refusal_texts):
        return True, f"was refused with {text!r}, not with {' or '.join(repr(w) for w in refusal_texts)}"
    return None


def evidence(pair: Pair, expected: str, said: str) -> Op:
    """The attempt as evidence: its completion (or invocation), saying what it tried and what was wrong."""
    inv, comp = pair
    op = comp or inv
    return dataclasses.replace(op, extra={**op.extra, **inv.extra, "expected": expected, "judged": said})


def session_requests(history: History, process: Any, after: int) -> list[Pair]:
    """The requests (not logins) of ``process`` invoked at or after ``after``, in order."""
    return [p for p in history.pairs() if p[0].process == process and p[0].f != "connect" and p[0].time >= after]
