"""Availability across failover: the write gap, reader errors, and idle-connection survival.

A failover is a fault window (``fault`` start/end events) whose name is one of ``fault_names``
(default ``failover``).  Its *promotion instant* is the first ``event`` naming a new writer inside
the window (``f="new_writer"`` or a ``roles`` observation with a different writer), or else the
window's end - the fault ends when the new writer has been promoted.

* FAILOVER-WRITE-GAP: seconds from the promotion instant to the first ok ``write`` through the writer
  endpoint completing after it (queued writes that complete after it count: the proxy is allowed
  to hold them).  A failover whose end event says ``promotion_observed: false`` gets an upper
  bound instead (:func:`unobserved_gap_bound`), which proves the guarantee when within the
  threshold and is unknown otherwise.  If no write succeeded, the gap is at least the rest of the run; that breaks the
  guarantee only when the run went on longer than the threshold, and is UNKNOWN otherwise.
* FAILOVER-READ-ERRORS: reader-endpoint requests that overlap a failover window and did not end ok,
  counted per client; the figure is the worst client's count.  A *client* is the logical worker
  named by the invocation's ``extra["worker"]`` when present, else the history process.  Workers
  that reconnect after a broken connection take a new process id each time, so counting per
  process would cap every client at one error; the worker id keeps them together.
* FAILOVER-IDLE-SURVIVAL: idle clients connect before the failover, send nothing during it, and
  afterwards send one ``f="idle_probe"`` request on the same connection; the figure is the fraction
  of those probes that ended ok.
* AVAILABILITY-SERVED: outside fault windows an endpoint serves its clients.  Suites mark the
  connects and requests a healthy proxy must answer (:mod:`harness.checkers.served`); the figure is
  the lowest share served, in percent, of all of them together, of each endpoint's, and of each
  client's (one client refused every time is hidden in a large overall share, so each is judged).
  A request that waited out the proxy's borrow timeout met a limit the proxy states (every backend
  busy) and is not judged here, as for every other guarantee that counts unserved requests; the
  reason says how many.  Failures during a fault are the FAILOVER-* guarantees' business: suites do
  not mark them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from harness.checkers.base import CheckContext, Verdict, completed_pairs, judge, seconds, unknown
from harness.checkers.borrow import looks_like_borrow_timeout
from harness.checkers.routing import READER_ENDPOINT, WRITER_ENDPOINT, WriterTimeline
from harness.checkers.served import expected_served
from harness.history import FaultWindow, History, Op, OpType

FAILOVER_FAULTS = ("failover",)


def promotion_observed(window: FaultWindow) -> bool:
    """False when the failover's end event says the promotion was not seen (a user's failover command
    on a target without direct access: only the writer endpoint showed the new writer, once the
    proxy followed); its promotion happened at some instant after the window's start."""
    return window.end_op is None or window.end_op.params.get("promotion_observed", True) is not False


def unobserved_gap_bound(window: FaultWindow, writes: list[tuple[Op, Op]]) -> tuple[float, Op] | None:
    """An upper bound of the write gap of a failover whose promotion was not observed, and the write it
    ends at; None when no write shows the new writer took writes.

    The promotion came no earlier than the window's start nor than the last write the previous
    writer took (invoked in the window, served by another instance than the new writer), and no
    later than the first write the new writer took: the gap is at most the time between."""
    new_writer = window.end_op.params.get("new_writer") if window.end_op is not None else None
    after = [(i, c) for i, c in writes if c.time >= window.start and c.node == new_writer]
    if new_writer is None or not after:
        return None
    first_new = min((c for _, c in after), key=lambda c: c.time)
    earlier = [i.time for i, c in writes if window.start <= i.time < first_new.time and c.node not in (None, new_writer)]
    not_before = max([window.start, *earlier])
    return seconds(first_new.time - not_before), first_new


def promotion_instant(history: History, window: FaultWindow,
                      initial_writer: str | None = None) -> int | None:
    """When the new writer took over during ``window``, or ``None`` if the history cannot say (always
    for a promotion that was not observed: :func:`unobserved_gap_bound` bounds its gap instead)."""
    if not promotion_observed(window):
        return None
    timeline = WriterTimeline.from_history(history, initial_writer)
    before = timeline.writer_at(window.start - 1) if timeline else None
    for o in history.events(("new_writer", "roles")):
        if o.time < window.start or (window.end is not None and o.time > window.end):
            continue
        named = o.value if o.f == "new_writer" else (o.value or {}).get("writer")
        if named is not None and named != before:
            return o.time
    return window.end


def client_of(invocation: Op) -> object:
    """The logical client of a request: its ``extra["worker"]`` if recorded, else its process."""
    worker = invocation.extra.get("worker") if isinstance(invocation.extra, dict) else None
    return worker if worker is not None else invocation.process


class FailoverWriteGapChecker:
    """FAILOVER-WRITE-GAP: worst time from promotion to the first successful write, in seconds."""

    guarantee_id = "FAILOVER-WRITE-GAP"

    def __init__(self, fault_names: Iterable[str] = FAILOVER_FAULTS, write_fs: Iterable[str] = ("write",)):
        self.fault_names = tuple(fault_names)
        self.write_fs = tuple(write_fs)

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        windows = history.fault_windows(self.fault_names)
        if not windows:
            return unknown(g, f"no {'/'.join(self.fault_names)} fault in the history")
        attempts = completed_pairs(history, f=self.write_fs, endpoint=WRITER_ENDPOINT)
        if not attempts:
            return unknown(g, "no writes through the writer endpoint")
        writes = [c for _, c in attempts if c is not None and c.type is OpType.OK]
        end = history.end_time or 0
        gaps: list[tuple[float, Op | None]] = []
        unmeasured = 0
        bounds: list[float] = []
        upper_bounds = 0
        ok_pairs = [(i, c) for i, c in attempts if c is not None and c.type is OpType.OK]
        for w in windows:
            if not promotion_observed(w):
                # An upper bound: within the threshold it shows the guarantee held; beyond it, it
                # shows nothing (the promotion may have come late in it).
                bounded = unobserved_gap_bound(w, ok_pairs)
                if bounded is not None and g.holds(bounded[0]):
                    gaps.append(bounded)
                    upper_bounds += 1
                else:
                    unmeasured += 1
                    bounds.append(bounded[0] if bounded is not None else float("inf"))
                continue
            t0 = promotion_instant(history, w, context.initial_writer)
            if t0 is None:
                unmeasured += 1
                continue
            # Earliest *completion*: pairs come in invocation order, and a write invoked before the
            # failover may have hung far longer than one invoked after it.
            first = min((c for c in writes if c.time >= t0), key=lambda c: c.time, default=None)
            if first is not None:
                gaps.append((seconds(first.time - t0), first))
            elif seconds(end - t0) > g.threshold:
                gaps.append((seconds(end - t0), w.start_op))
            else:
                unmeasured += 1
        worst_bound = max(bounds, default=0.0)
        unseen = ("; the promotion instant was not observed (no direct access to the instances) and "
                  + (f"the gap could only be bounded by {worst_bound:.3f} s" if worst_bound != float("inf")
                     else "no write showed the new writer taking writes") if bounds else "")
        if not gaps:
            return unknown(g, f"{unmeasured} failovers, none measurable (no promotion instant, or the "
                              f"run ended before a write could succeed){unseen}")
        worst, evidence = max(gaps, key=lambda x: x[0])
        reason = f"{len(gaps)} failovers measured; worst gap {worst:.3f} s"
        if upper_bounds:
            reason += (f" ({upper_bounds} bounded from above: the promotion was not observed, so from the last write "
                       "the previous writer took to the first the new one took)")
        if unmeasured:
            reason += f"; {unmeasured} not measurable{unseen}"
        return judge(g, worst, reason, [evidence] if evidence is not None and worst > g.threshold else [])


class FailoverReadErrorsChecker:
    """FAILOVER-READ-ERRORS: the most failed reader-endpoint requests of one client during failovers."""

    guarantee_id = "FAILOVER-READ-ERRORS"

    def __init__(self, fault_names: Iterable[str] = FAILOVER_FAULTS):
        self.fault_names = tuple(fault_names)

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        windows = history.fault_windows(self.fault_names)
        if not windows:
            return unknown(g, f"no {'/'.join(self.fault_names)} fault in the history")
        end = history.end_time or 0
        inside = [(i, c) for i, c in completed_pairs(history, endpoint=READER_ENDPOINT)
                  if any(w.overlaps(i.time, c.time if c is not None else end) for w in windows)]
        if not inside:
            return unknown(g, "no reader-endpoint requests overlapped a failover")
        errors = [(i, c) for i, c in inside if c is None or c.type is not OpType.OK]
        per_client = Counter(client_of(i) for i, _ in errors)
        worst = max(per_client.values(), default=0)
        reason = (f"{len(inside)} reader requests by {len({client_of(i) for i, _ in inside})} clients during "
                  f"failovers; {len(errors)} errors, worst client {worst}")
        return judge(g, float(worst), reason, [c if c is not None else i for i, c in errors])


class IdleSurvivalChecker:
    """FAILOVER-IDLE-SURVIVAL: fraction of idle connections whose first request after failover worked."""

    guarantee_id = "FAILOVER-IDLE-SURVIVAL"

    def __init__(self, fault_names: Iterable[str] = FAILOVER_FAULTS, probe_f: str = "idle_probe"):
        self.fault_names = tuple(fault_names)
        self.probe_f = probe_f

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        windows = [w for w in history.fault_windows(self.fault_names) if w.end is not None]
        if not windows:
            return unknown(g, f"no completed {'/'.join(self.fault_names)} fault in the history")
        pairs = history.pairs()
        probes: list[tuple[Op, Op | None]] = []
        for w in windows:
            busy = {i.process for i, c in pairs
                    if w.overlaps(i.time, c.time if c is not None else i.time)}
            seen: set[object] = set()
            for i, c in pairs:
                if (i.f == self.probe_f and i.time > w.end and i.process not in busy
                        and i.process not in seen):
                    seen.add(i.process)
                    probes.append((i, c))
        if not probes:
            return unknown(g, f"no {self.probe_f} request from a client that stayed idle through a failover")
        dropped = [c if c is not None else i for i, c in probes if c is None or c.type is not OpType.OK]
        fraction = (len(probes) - len(dropped)) / len(probes)
        reason = f"{len(probes)} idle clients probed after failover, {len(dropped)} had lost their connection"
        return judge(g, fraction, reason, dropped)


class ServedShareChecker:
    """AVAILABILITY-SERVED: the lowest share of must-serve requests served, overall, per endpoint and per client."""

    guarantee_id = "AVAILABILITY-SERVED"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        pairs = expected_served(history)
        limited = [(i, c) for i, c in pairs if c is not None and c.type is not OpType.OK
                   and looks_like_borrow_timeout(c.error)]
        skipped = {id(i) for i, _ in limited}
        judged = [(i, c) for i, c in pairs if id(i) not in skipped]
        waited = (f"; {len(limited)} more waited out the proxy's borrow timeout (every backend of its pool "
                  f"was busy) and were not judged") if limited else ""
        if not judged:
            return unknown(g, "no connect or request was marked as one a healthy proxy must serve" + waited)
        failed = [(i, c) for i, c in judged if c is None or c.type is not OpType.OK]
        groups: dict[str, list[bool]] = {"overall": []}
        for i, c in judged:
            ok = c is not None and c.type is OpType.OK
            groups["overall"].append(ok)
            groups.setdefault(f"endpoint {i.endpoint}", []).append(ok)
            groups.setdefault(f"client {client_of(i)!r} ({i.endpoint})", []).append(ok)
        shares = {name: 100.0 * sum(oks) / len(oks) for name, oks in groups.items()}
        worst = min(shares, key=lambda name: (shares[name], name != "overall"))
        endpoints = ", ".join(f"{name.removeprefix('endpoint ')} {shares[name]:.2f} %"
                              for name in sorted(shares) if name.startswith("endpoint "))
        clients_short = sum(1 for name, share in shares.items() if name.startswith("client ") and share < 100.0)
        reason = (f"{len(judged)} connects and requests a healthy proxy must serve, {len(failed)} not served; "
                  f"served per endpoint: {endpoints}; {clients_short} of "
                  f"{sum(1 for name in shares if name.startswith('client '))} clients not fully served; "
                  f"lowest share {shares[worst]:.2f} % ({worst}){waited}")
        return judge(g, shares[worst], reason, [c if c is not None else i for i, c in failed])
