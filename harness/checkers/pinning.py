"""Pinning guarantees: documented triggers pin a session, documented non-triggers do not.

Conventions: a process (one client connection) runs an ok op ``f="pin_trigger"`` (``value`` names
the trigger, e.g. ``"SET"`` or ``"CREATE TEMP TABLE"``) or ``f="non_pin_trigger"`` and then further
requests, each recording the backend connection that served it in ``extra["backend"]`` (and the
instance in ``node``).  The suite arranges concurrent load so that an unpinned session really would
move between backend connections.

* PIN-TRIGGERS counts trigger sessions whose later requests were served by more than one backend.
* PIN-NON-TRIGGERS counts non-trigger sessions whose later requests all stayed on one backend.

Routing is told apart from pinning.  Pinning is a promise about backend connections *of one
instance*: a session stays on the connection it pinned.  When a session's requests were served by
different instances (pgpool-II with load balancing sends the pinning statement to the primary and
the session's later reads to a standby), no backend connection could have held it: that is a
routing fault, which ROUTE-WRITER-ENDPOINT / ROUTE-READER-ONLY judge from where each request went
and SESSION-OWN-STATE from what the session then failed to see.  Counting it as a pinning failure
would blame the wrong mechanism, and counting it as a success would claim what was never shown, so
such sessions are left out of the pinning count and named in the reason.  PIN-TRIGGERS is then:

* false when some session moved between backend connections of one instance (a pinning fault,
  whatever else happened);
* unknown when no session moved within an instance but some were served by different instances,
  with the reason naming the routing fault;
* true when every trigger session stayed on one backend connection.
"""

from __future__ import annotations

from harness.checkers.base import CheckContext, Verdict, judge, unknown
from harness.history import History, Op, OpType


def _after_marker(history: History, marker: str, min_after: int) -> dict[object, tuple[Op, list[Op]]]:
    """For each process that ran ``marker`` ok: the marker op and its later ok ops naming a backend."""
    result: dict[object, tuple[Op, list[Op]]] = {}
    for o in history.ops(type=OpType.OK):
        if o.f == marker and o.process not in result:
            result[o.process] = (o, [])
        elif o.process in result and o.extra.get("backend") is not None and o.f != marker:
            result[o.process][1].append(o)
    return {p: v for p, v in result.items() if len(v[1]) >= min_after}


def _backend(o: Op) -> tuple[str | None, str]:
    return (o.node, str(o.extra["backend"]))


class PinTriggersChecker:
    """PIN-TRIGGERS: sessions that moved to another backend after a pinning statement; see the module
    docstring for sessions that moved to another instance (routing, not pinning)."""

    guarantee_id = "PIN-TRIGGERS"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        sessions = _after_marker(history, "pin_trigger", min_after=2)
        if not sessions:
            return unknown(g, "no session ran a pin_trigger followed by two or more requests naming "
                              "their backend")
        moved: list[Op] = []
        names: list[str] = []
        misrouted: list[Op] = []  # per session: its trigger, and its first request served elsewhere
        for trigger, later in sessions.values():
            if len(_instances(trigger, later)) > 1:
                first_node = _first_node(trigger, later)
                misrouted += [trigger, next(o for o in later if o.node is not None and o.node != first_node)]
                continue
            first = _backend(trigger) if trigger.extra.get("backend") is not None else _backend(later[0])
            strays = [o for o in later if _backend(o) != first]
            if strays:
                moved.append(strays[0])
                names.append(str(trigger.value))
        judged = len(sessions) - len(misrouted) // 2
        reason = f"{judged} pinned sessions checked, {len(moved)} moved"
        if names:
            reason += f" (after: {', '.join(sorted(set(names)))})"
        if misrouted:
            reason += (f"; {len(misrouted) // 2} sessions not judged: the session's statements were served by "
                       f"different instances: a routing fault, see ROUTE-* / SESSION-OWN-STATE")
            if not moved:
                return unknown(g, reason, evidence=misrouted)
        return judge(g, float(len(moved)), reason, moved)


def _instances(trigger: Op, later: list[Op]) -> set[str]:
    """The instances that served a session's requests, where they said (a missing ``node`` is no evidence)."""
    return {o.node for o in (trigger, *later) if o.node is not None}


def _first_node(trigger: Op, later: list[Op]) -> str | None:
    return next((o.node for o in (trigger, *later) if o.node is not None), None)


class PinNonTriggersChecker:
    """PIN-NON-TRIGGERS: sessions that stayed on one backend after a statement that must not pin."""

    guarantee_id = "PIN-NON-TRIGGERS"

    def __init__(self, min_requests_after: int = 3) -> None:
        self.min_requests_after = min_requests_after

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        sessions = _after_marker(history, "non_pin_trigger", min_after=self.min_requests_after)
        if not sessions:
            return unknown(g, f"no session ran a non_pin_trigger followed by {self.min_requests_after} "
                              "or more requests naming their backend")
        stuck: list[Op] = []
        names: list[str] = []
        for marker, later in sessions.values():
            if len({_backend(o) for o in later}) == 1:
                stuck.append(marker)
                names.append(str(marker.value))
        reason = f"{len(sessions)} sessions checked, {len(stuck)} stayed on one backend"
        if names:
            reason += f" (after: {', '.join(sorted(set(names)))})"
        return judge(g, float(len(stuck)), reason, stuck)
