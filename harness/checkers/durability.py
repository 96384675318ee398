"""Durability: acknowledged writes survive, definitely failed writes stay invisible, none is applied twice.

Workload convention: each ``f="write"`` op inserts one unique id (``value`` is the id, or a dict
with an ``"id"`` key).  After faults are healed, one client runs ``f="final_read"`` which returns
every id present (``value`` a list, one element per row: an id stored twice is there twice).  The
last ok final read is the truth.

Outcomes, as in Jepsen:

* ``ok`` write           - must be present (else it was *lost*);
* ``fail`` write with a definite error (or no error recorded) - must be absent;
* ``info`` write, an uncompleted invocation, or a ``fail`` whose error says it is *not* definite -
  may be either; these are counted in the reason but never break anything.
"""

from __future__ import annotations

import collections
from typing import Any

from harness.checkers.base import CheckContext, Verdict, completed_pairs, judge, unknown
from harness.history import FaultWindow, History, Op, OpType


def write_id(value: Any) -> Any:
    """The unique id a write op carries."""
    if isinstance(value, dict):
        return value.get("id")
    return value


class _Outcomes:
    def __init__(self, history: History, write_fs: tuple[str, ...], read_f: str) -> None:
        reads = history.ops(f=read_f, type=OpType.OK)
        self.final: set[Any] | None = None
        self.copies: collections.Counter[Any] = collections.Counter()
        if reads and isinstance(reads[-1].value, list):
            self.copies.update(_hashable(v) for v in reads[-1].value)
            self.final = set(self.copies)
        self.acked: list[Op] = []
        self.failed: list[Op] = []
        self.indeterminate = 0
        self.pairs = completed_pairs(history, f=write_fs)
        for inv, comp in self.pairs:
            if comp is None or comp.type is OpType.INFO:
                self.indeterminate += 1
            elif comp.type is OpType.OK:
                self.acked.append(comp)
            elif comp.error is None or comp.error.definite:
                self.failed.append(comp)
            else:
                self.indeterminate += 1

    def present(self, o: Op) -> bool:
        assert self.final is not None
        return _hashable(write_id(o.value)) in self.final


def _hashable(x: Any) -> Any:
    return x if isinstance(x, (str, int, float, bool, type(None))) else repr(x)


class _DurabilityChecker:
    guarantee_id = ""

    def __init__(self, write_fs: tuple[str, ...] = ("write",), read_f: str = "final_read") -> None:
        self.write_fs = tuple(write_fs)
        self.read_f = read_f

    def _outcomes(self, history: History) -> _Outcomes | str:
        out = _Outcomes(history, self.write_fs, self.read_f)
        if out.final is None:
            return f"no ok {self.read_f} op returning a list of ids"
        return out


class NoLostAckChecker(_DurabilityChecker):
    """DURABILITY-NO-LOST-ACK: acknowledged writes missing from the final read."""

    guarantee_id = "DURABILITY-NO-LOST-ACK"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        out = self._outcomes(history)
        if isinstance(out, str):
            return unknown(g, out)
        if not out.acked:
            return unknown(g, "no write was acknowledged, so none could be lost")
        lost = [o for o in out.acked if not out.present(o)]
        reason = (f"{len(out.acked)} acknowledged writes, {len(lost)} missing from the final read; "
                  f"{out.indeterminate} indeterminate writes not judged")
        return judge(g, float(len(lost)), reason, lost)


class NoFailedVisibleChecker(_DurabilityChecker):
    """DURABILITY-NO-FAILED-VISIBLE: definitely failed writes present in the final read."""

    guarantee_id = "DURABILITY-NO-FAILED-VISIBLE"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        out = self._outcomes(history)
        if isinstance(out, str):
            return unknown(g, out)
        if not out.failed:
            return unknown(g, "no write failed definitely, so none could wrongly appear")
        visible = [o for o in out.failed if out.present(o)]
        reason = (f"{len(out.failed)} definitely failed writes, {len(visible)} present in the final read; "
                  f"{out.indeterminate} indeterminate writes not judged")
        return judge(g, float(len(visible)), reason, visible)


class NoDuplicateChecker(_DurabilityChecker):
    """DURABILITY-NO-DUPLICATE: ids present in the final read more often than they were written.

    Every write, whatever its outcome, may be applied at most as many times as it was invoked (the
    workload invokes each id once).  A proxy that sends a statement again after losing its backend
    applies twice a write whose first copy had committed.  Such a re-send can only happen to a write
    in flight while a fault was active, so a history with no duplicate and no such write says
    nothing (unknown): the guarantee was not put at risk.
    """

    guarantee_id = "DURABILITY-NO-DUPLICATE"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        out = self._outcomes(history)
        if isinstance(out, str):
            return unknown(g, out)
        if not out.pairs:
            return unknown(g, "no write was made, so none could be applied twice")
        invoked: collections.Counter[Any] = collections.Counter(_hashable(write_id(i.value)) for i, _ in out.pairs)
        duplicated: list[Op] = []
        seen: set[Any] = set()
        for inv, comp in out.pairs:
            key = _hashable(write_id(inv.value))
            if key not in seen and out.copies[key] > invoked[key]:
                seen.add(key)
                duplicated.append(comp if comp is not None else inv)
        end = history.end_time or 0
        windows = history.fault_windows()
        at_risk = sum(1 for inv, comp in out.pairs if any(_in_flight(inv, comp, w, end) for w in windows))
        if not duplicated and not at_risk:
            return unknown(g, f"{len(out.pairs)} writes, none in flight while a fault was active, so none "
                              "was at risk of being sent twice")
        extra = sum(out.copies[_hashable(write_id(o.value))] - invoked[_hashable(write_id(o.value))]
                    for o in duplicated)
        reason = (f"{len(out.pairs)} writes ({at_risk} in flight during a fault, {out.indeterminate} "
                  f"indeterminate), {len(duplicated)} applied more than once ({extra} extra copies)")
        return judge(g, float(len(duplicated)), reason, duplicated)


def _in_flight(inv: Op, comp: Op | None, window: FaultWindow, history_end: int) -> bool:
    """Whether the write invoked at ``inv`` (completed at ``comp``, or never) overlapped ``window``."""
    done = comp.time if comp is not None else history_end
    return inv.time <= (window.end if window.end is not None else history_end) and done >= window.start
