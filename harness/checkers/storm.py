"""STORM-SERVED: in a connection storm, connections are queued and served, not refused.

Workload convention: storm clients record each connection attempt (connect, one query, disconnect)
as one ``f="connect"`` request.  When the history has ``storm`` fault windows, only attempts that
started inside one count; otherwise every attempt does.  An attempt is *served* when it ended ok no
later than ConnectionBorrowTimeout after it started (``context.borrow_timeout_s``, RDS's 120 s
default if not given).  The figure is the fraction served.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.checkers.base import CheckContext, Verdict, completed_pairs, judge, seconds, unknown
from harness.checkers.borrow import DEFAULT_BORROW_TIMEOUT_S
from harness.history import History, OpType

STORM_FAULTS = ("storm",)


class StormServedChecker:
    """STORM-SERVED: fraction of storm connection attempts served within the borrow timeout."""

    guarantee_id = "STORM-SERVED"

    def __init__(self, connect_fs: Iterable[str] = ("connect",), fault_names: Iterable[str] = STORM_FAULTS):
        self.connect_fs = tuple(connect_fs)
        self.fault_names = tuple(fault_names)

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        timeout_s = context.borrow_timeout_s if context.borrow_timeout_s is not None else DEFAULT_BORROW_TIMEOUT_S
        attempts = completed_pairs(history, f=self.connect_fs)
        windows = history.fault_windows(self.fault_names)
        if windows:
            attempts = [(i, c) for i, c in attempts if any(w.contains(i.time) for w in windows)]
        if not attempts:
            return unknown(g, "no connection attempts" + (" inside a storm window" if windows else ""))
        unserved = [c if c is not None else i for i, c in attempts
                    if c is None or c.type is not OpType.OK or seconds(c.time - i.time) > timeout_s]
        fraction = (len(attempts) - len(unserved)) / len(attempts)
        refused = [c for _, c in attempts if c is not None and c.type is not OpType.OK]
        slow = len(unserved) - len(refused)
        reason = f"{len(attempts)} connection attempts, {len(unserved)} not served"
        if unserved:
            # Refused at once (e.g. "too many clients") and served too late are different faults.
            parts = ([f"{len(refused)} refused or failed"] if refused else []) + \
                    ([f"{slow} not answered within {timeout_s:g} s"] if slow else [])
            reason += f" ({', '.join(parts)})"
            if refused:
                first = refused[0].error.text if refused[0].error is not None else refused[0].value
                reason += f"; first refusal: {str(first)[:160]}"
        return judge(g, fraction, reason, unserved)
