"""NETFAULT-SILENT-DETECTED: a silently dead path is noticed in bounded time.

A *silent* fault drops traffic without a reset: the TCP relay's blackhole, or bandwidth 0.  Unlike
a reset, nothing tells a client or the proxy that the peer is gone; the only defences are timeouts
and health checks.  The guarantee bounds how long that takes.

A silent fault is a fault window whose name is one of ``fault_names`` (default ``blackhole``).  It
is *detected* at the first of: a client request that ends in ``fail`` or ``info`` with a
connection-level error (lost or refused connection, server gone, client timeout, borrow timeout:
:func:`harness.clients.outcomes.is_connection_level`) after the fault started, or an ``event``
with ``f`` in ``detection_events`` (the harness saw the proxy mark the instance down).  A definite
server error (23505, 40001) is not detection: the server answered, so the path works.  If the
fault's params name an ``endpoint``, only requests to that endpoint count.
The figure is the worst detection delay in seconds.  A fault never detected counts as the time it
lasted (or the rest of the run), which breaks the guarantee only if that exceeds the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.checkers.base import CheckContext, Verdict, judge, seconds, unknown
from harness.clients.outcomes import is_connection_level
from harness.history import FaultWindow, History, Op, OpType

SILENT_FAULTS = ("blackhole",)
DETECTION_EVENTS = ("detected", "instance_down")


class SilentFaultDetectedChecker:
    """NETFAULT-SILENT-DETECTED: worst delay from a silent fault's start to the first detection."""

    guarantee_id = "NETFAULT-SILENT-DETECTED"

    def __init__(self, fault_names: Iterable[str] = SILENT_FAULTS,
                 detection_events: Iterable[str] = DETECTION_EVENTS) -> None:
        self.fault_names = tuple(fault_names)
        self.detection_events = tuple(detection_events)

    def _detection(self, history: History, w: FaultWindow, until: int) -> Op | None:
        endpoint = w.params.get("endpoint")
        for o in history.between(w.start, until):
            if o.type is OpType.EVENT and o.f in self.detection_events:
                return o
            if (o.type in (OpType.FAIL, OpType.INFO) and is_connection_level(o.error)
                    and (endpoint is None or o.endpoint == endpoint)):
                return o
        return None

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        windows = history.fault_windows(self.fault_names)
        if not windows:
            return unknown(g, f"no {'/'.join(self.fault_names)} fault in the history")
        run_end = history.end_time or 0
        delays: list[tuple[float, Op]] = []
        unmeasured = 0
        for w in windows:
            until = w.end if w.end is not None else run_end
            found = self._detection(history, w, until)
            if found is not None:
                delays.append((seconds(found.time - w.start), found))
            elif seconds(until - w.start) > g.threshold:
                delays.append((seconds(until - w.start), w.start_op))
            else:
                unmeasured += 1
        if not delays:
            return unknown(g, f"{unmeasured} silent faults healed before anything was detected and "
                              "before the bound; nothing to judge")
        worst, evidence = max(delays, key=lambda d: d[0])
        reason = f"{len(delays)} silent faults measured; worst detection after {worst:.3f} s"
        if unmeasured:
            reason += f"; {unmeasured} healed undetected within the bound"
        return judge(g, worst, reason, [evidence])
