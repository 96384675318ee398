"""Routing guarantees: writer endpoint to the writer, reader endpoint to readers, balance over readers.

Who was writer when is rebuilt from the history (a *writer timeline*):

* ``context.initial_writer`` - the writer when the run began;
* ``event`` ops ``f="roles"`` with ``value={"writer": id, "readers": [ids]}`` - a role observation;
* ``event`` ops ``f="new_writer"`` with ``value`` = the promoted instance id;
* ``fault`` end events whose params carry ``new_writer`` (a failover fault says whom it promoted).

Balance over readers needs to know the readers: ``context.reader_weights``, ``roles`` events, or
else the instances that served the reader endpoint and reported themselves readers (a reader the
proxy never used is then invisible, and the verdict says how many readers it saw).

A request is judged only if it completed ok and names the instance that served it (``node``).  It
ran at some instant between its invocation and completion, so it is a violation only if no writer
in force during that interval matches (writer endpoint), or the serving node was writer for the
whole interval (reader endpoint): a request that straddles a promotion gets the benefit of the doubt.

A reader promoted to writer keeps serving reads that were routed to it before the proxy could know
of the promotion.  The proxy is shown to know once the writer endpoint has served a request on the
new writer, and must know by the time FAILOVER-WRITE-GAP allows writes to resume; so a reader-endpoint
request the new writer served is excused when it was invoked after the promotion but before the
earlier of those two instants (:func:`promotion_graces`), and counts as a violation after it.  The
reason says how many were excused.  That way the failover tests judge reader routing through and
after the fault, the promoted reader included, without blaming a proxy for what it cannot see.

When the timeline cannot say (a proxy known only by its endpoints: nobody outside it can see the
instances), a request is judged by the role its serving instance reported in the same request
(``extra["role"]``, ``writer`` or ``reader``, from the dialect's writable test): the instance's own
word at the moment it served, which needs no access behind the proxy.

A writer-endpoint request the server refused as read-only (PostgreSQL SQLSTATE 25006, MySQL errno
1290 or 1792) was served by an instance that was not the writer, so it counts against
ROUTE-WRITER-ENDPOINT like a read a reader served, failed or not: a proxy that sends writes to a
reader is not passed on the strength of the reads it routed right.  Only refusals during a fault
window, or after a promotion before the proxy could know of it (:func:`promotion_graces`), are
excused: a writer demoted under the proxy refuses writes until the proxy follows.

Requests and connects the workload needed served (:mod:`harness.checkers.served`) that failed count
against each guarantee of the endpoint they went to, so a proxy that served a few requests right and
refused the rest does not pass.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable

from harness.checkers.base import CheckContext, Verdict, completed_pairs, judge, unknown
from harness.checkers.served import answer_for_unserved, unserved
from harness.history import History, Op, OpType, Phase

WRITER_ENDPOINT = "writer"
READER_ENDPOINT = "reader"
READ_ONLY_REFUSALS = frozenset({"25006", "1290", "1792"})
"""Error codes of a server refusing a write because it is read-only (PostgreSQL's read_only_sql_transaction;
MySQL's --read-only option and read-only transaction errors)."""


class WriterTimeline:
    """The writer instance as a step function of time."""

    def __init__(self, changes: Iterable[tuple[int, str]]) -> None:
        ordered = sorted(changes, key=lambda c: c[0])
        self._times = [t for t, _ in ordered]
        self._writers = [w for _, w in ordered]

    @classmethod
    def from_history(cls, history: History, initial_writer: str | None = None) -> WriterTimeline:
        changes: list[tuple[int, str]] = []
        if initial_writer is not None:
            changes.append((-(2 ** 63), initial_writer))
        for o in history:
            w = _writer_named_by(o)
            if w is not None:
                changes.append((o.time, w))
        changes.extend(_promotions_seen_by_requests(history))
        return cls(changes)

    def __bool__(self) -> bool:
        return bool(self._times)

    def writer_at(self, t: int) -> str | None:
        i = bisect.bisect_right(self._times, t) - 1
        return self._writers[i] if i >= 0 else None

    def writers_during(self, lo: int, hi: int) -> set[str] | None:
        """Every instance that was writer at some instant of [lo, hi]; ``None`` if unknown at ``lo``."""
        first = self.writer_at(lo)
        if first is None:
            return None
        result = {first}
        i = bisect.bisect_right(self._times, lo)
        while i < len(self._times) and self._times[i] <= hi:
            result.add(self._writers[i])
            i += 1
        return result

    def promotions(self) -> list[tuple[int, str]]:
        """(instant, new writer) for each change of writer after the first one known."""
        return [(t, w) for k, (t, w) in enumerate(zip(self._times, self._writers, strict=True))
                if k > 0 and w != self._writers[k - 1]]

    def readers_seen(self, history: History) -> set[str]:
        """Readers named by role observations in ``history``."""
        found: set[str] = set()
        for o in history.events("roles"):
            if isinstance(o.value, dict):
                found.update(str(r) for r in o.value.get("readers", []) or [])
        return found


def _writer_named_by(o: Op) -> str | None:
    if o.type is OpType.EVENT and o.f == "roles" and isinstance(o.value, dict) and o.value.get("writer"):
        return str(o.value["writer"])
    if o.type is OpType.EVENT and o.f == "new_writer" and isinstance(o.value, str):
        return o.value
    if o.type is OpType.FAULT and o.phase is Phase.END and o.params.get("new_writer"):
        return str(o.params["new_writer"])
    return None


def _promotions_seen_by_requests(history: History) -> list[tuple[int, str]]:
    """(instant, new writer) for each failover whose new writer served a writer-endpoint request,
    inside the fault's window, while reporting itself writable: it was promoted, and the proxy had
    followed, by that request's completion at the latest.  A watcher that polls the instances
    records the promotion only at its next poll (later still on a busy machine), and a proxy that
    follows at once can route a request there first; without this, that request would seem served
    by a non-writer."""
    found = []
    for w in history.fault_windows():
        new_writer = w.end_op.params.get("new_writer") if w.end_op is not None else None
        if not new_writer:
            continue
        served = [o.time for o in history.between(w.start, w.end)
                  if o.type is OpType.OK and o.endpoint == WRITER_ENDPOINT and o.node == new_writer
                  and reported_role(o) == "writer"]
        if served:
            found.append((min(served), str(new_writer)))
    return found


FOLLOW_BOUND_GUARANTEE = "FAILOVER-WRITE-GAP"
"""The guarantee whose threshold says how soon after a promotion the proxy must route to the new writer."""


def promotion_graces(history: History, timeline: WriterTimeline, context: CheckContext) -> list[tuple[str, int, int]]:
    """(new writer, from, until) for each promotion: the time in which the proxy could not yet know
    of it, from the promotion to the first completion of a writer-endpoint request the new writer
    served, and never beyond the promotion plus FAILOVER-WRITE-GAP's bound."""
    bound_ns = round(context.guarantee(FOLLOW_BOUND_GUARANTEE).threshold * 1e9)
    served = _served(history, WRITER_ENDPOINT)
    graces = []
    for t, writer in timeline.promotions():
        known = min((c.time for _, c in served if c.node == writer and c.time >= t), default=t + bound_ns)
        graces.append((writer, t, min(known, t + bound_ns)))
    return graces


def unobserved_promotion_graces(history: History, context: CheckContext) -> list[tuple[str, int, int]]:
    """(new writer, from, until) for each failover whose promotion instant nobody saw (a user's command
    on a target without direct access: only the fault's end names the new writer).  The promotion
    may have come at any instant of the fault's window, so the grace runs from the window's start to
    its end plus FAILOVER-WRITE-GAP's bound."""
    bound_ns = round(context.guarantee(FOLLOW_BOUND_GUARANTEE).threshold * 1e9)
    graces = []
    for w in history.fault_windows():
        end = w.end_op.params if w.end_op is not None else {}
        if end.get("new_writer") and end.get("promotion_observed") is False and w.end is not None:
            graces.append((str(end["new_writer"]), w.start, w.end + bound_ns))
    return graces


def refused_as_read_only(history: History, context: CheckContext) -> list[Op]:
    """Writer-endpoint requests a server refused as read-only, invoked outside every fault window and
    every promotion's grace: each reached an instance that was not the writer."""
    faults = history.fault_windows()
    graces = promotion_graces(history, WriterTimeline.from_history(history, context.initial_writer), context)
    found = []
    for inv, comp in completed_pairs(history, endpoint=WRITER_ENDPOINT):
        if comp is None or comp.type is OpType.OK or comp.error is None or comp.error.code not in READ_ONLY_REFUSALS:
            continue
        if any(w.overlaps(inv.time, comp.time) for w in faults) or any(lo <= inv.time < hi for _, lo, hi in graces):
            continue
        found.append(comp)
    return found


def reported_role(completion: Op) -> str | None:
    """``writer`` / ``reader`` as the serving instance reported it, if the request asked."""
    role = completion.extra.get("role") if isinstance(completion.extra, dict) else None
    return role if role in ("writer", "reader") else None


def _judged_requests(history: History, endpoint: str, context: CheckContext,
                     misrouted: Callable[[Op, Op, set[str] | None], bool]) -> tuple[int, list[Op], str]:
    """(requests judged, misrouted completions, what they were judged by) for ``endpoint``.

    ``misrouted(inv, comp, writers)`` decides one request; ``writers`` is the timeline's answer, or
    None when only the reported role can decide."""
    timeline = WriterTimeline.from_history(history, context.initial_writer)
    judged, bad, by_timeline, by_role = 0, [], 0, 0
    for inv, comp in _served(history, endpoint):
        writers = timeline.writers_during(inv.time, comp.time) if timeline else None
        if writers is None and reported_role(comp) is None:
            continue
        judged += 1
        if writers is None:
            by_role += 1
        else:
            by_timeline += 1
        if misrouted(inv, comp, writers):
            bad.append(comp)
    basis = []
    if by_timeline:
        basis.append(f"{by_timeline} by who was writer")
    if by_role:
        basis.append(f"{by_role} by the role the serving instance reported")
    return judged, bad, "; ".join(basis)


def _served(history: History, endpoint: str) -> list[tuple[Op, Op]]:
    return [(i, c) for i, c in completed_pairs(history, endpoint=endpoint)
            if c is not None and c.type is OpType.OK and c.node is not None]


class WriterEndpointChecker:
    """ROUTE-WRITER-ENDPOINT: requests via the writer endpoint served by a non-writer."""

    guarantee_id = "ROUTE-WRITER-ENDPOINT"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)

        def misrouted(inv: Op, comp: Op, writers: set[str] | None) -> bool:
            return comp.node not in writers if writers is not None else reported_role(comp) == "reader"

        judged, bad, basis = _judged_requests(history, WRITER_ENDPOINT, context, misrouted)
        refused = refused_as_read_only(history, context)
        if judged == 0 and not refused:
            verdict = unknown(g, "no ok writer-endpoint request with a known serving instance and a known "
                                 "writer or reported role")
        else:
            said = f"{judged} writer-endpoint requests judged ({basis}), {len(bad)} served by a non-writer"
            if refused:
                said += f", {len(refused)} refused as read-only outside any fault (a non-writer got them)"
            verdict = judge(g, float(len(bad) + len(refused)), said, bad + refused)
        return answer_for_unserved(g, verdict, unserved(history, endpoint=WRITER_ENDPOINT),
                                   "writer-endpoint requests")


class ReaderOnlyChecker:
    """ROUTE-READER-ONLY: requests via the reader endpoint served by the writer."""

    guarantee_id = "ROUTE-READER-ONLY"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        graces = (promotion_graces(history, WriterTimeline.from_history(history, context.initial_writer), context)
                  + unobserved_promotion_graces(history, context))
        excused: list[Op] = []

        def misrouted(inv: Op, comp: Op, writers: set[str] | None) -> bool:
            if writers is None and reported_role(comp) != "writer":
                return False
            if writers is not None and writers != {comp.node}:
                return False
            if any(comp.node == w and lo <= inv.time < hi for w, lo, hi in graces):
                excused.append(comp)
                return False
            return True

        judged, bad, basis = _judged_requests(history, READER_ENDPOINT, context, misrouted)
        if judged == 0:
            verdict = unknown(g, "no ok reader-endpoint request with a known serving instance and a known "
                                 "writer or reported role")
        else:
            said = f"{judged} reader-endpoint requests judged ({basis}), {len(bad)} served by the writer"
            if graces:
                said += (f"; {len(graces)} promotions, {len(excused)} reads served by a just-promoted reader "
                         f"before the proxy could know (before the writer endpoint first reached it, at most "
                         f"{context.guarantee(FOLLOW_BOUND_GUARANTEE).threshold:g} s) excused")
            verdict = judge(g, float(len(bad)), said, bad)
        return answer_for_unserved(g, verdict, unserved(history, endpoint=READER_ENDPOINT),
                                   "reader-endpoint requests")


class ReaderBalanceChecker:
    """ROUTE-READER-BALANCE: largest relative deviation of a reader's share of new connections.

    Balancing is per client connection (all requests of one connection stay on one reader where
    practical), so each reader-endpoint process counts once, on the reader that served its first ok
    request.  Expected shares come from ``context.reader_weights`` or, failing that, equal weights
    over the readers named by ``roles`` events.
    """

    guarantee_id = "ROUTE-READER-BALANCE"

    def __init__(self, min_connections_per_reader: int = 5) -> None:
        self.min_connections_per_reader = min_connections_per_reader

    def check(self, history: History, context: CheckContext) -> Verdict:
        return answer_for_unserved(context.guarantee(self.guarantee_id), self._balance(history, context),
                                   unserved(history, endpoint=READER_ENDPOINT), "reader-endpoint requests")

    def _balance(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        weights = dict(context.reader_weights or {})
        if not weights:
            readers = WriterTimeline.from_history(history).readers_seen(history)
            if not readers:  # no view behind the proxy: the readers are those that said they were
                readers = {str(c.node) for _, c in _served(history, READER_ENDPOINT) if reported_role(c) == "reader"}
            weights = {r: 1.0 for r in readers}
        if len(weights) < 2 or any(w <= 0 for w in weights.values()):
            return unknown(g, f"balance needs two or more readers with positive weights (context.reader_weights, "
                              f"roles events or readers that served); found {len(weights)}")
        first_node: dict[object, Op] = {}
        for inv, comp in _served(history, READER_ENDPOINT):
            first_node.setdefault(inv.process, comp)
        counts = Counter(c.node for c in first_node.values())
        stray = [c for c in first_node.values() if c.node not in weights]
        total = sum(counts[r] for r in weights)
        if total < self.min_connections_per_reader * len(weights):
            return unknown(g, f"only {total} reader-endpoint connections for {len(weights)} readers; "
                              f"need {self.min_connections_per_reader} per reader to judge balance")
        weight_sum = sum(weights.values())
        deviations = {}
        for r, w in weights.items():
            expected = w / weight_sum
            deviations[r] = abs(counts[r] / total - expected) / expected
        worst = max(deviations, key=deviations.__getitem__)
        shares = ", ".join(f"{r}: {counts[r]}" for r in sorted(weights))
        reason = f"connections per reader {shares}; worst is {worst} off by {deviations[worst]:.0%}"
        if stray:
            reason += f"; {len(stray)} connections on instances that are not weighted readers (ignored)"
        return judge(g, deviations[worst], reason, stray)
