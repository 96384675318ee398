"""Pinning guarantees: documented triggers pin a session, documented non-triggers do not.

Conventions: a process (one client connection) runs an ok op ``f="pin_trigger"`` (``value`` names
the trigger, e.g. ``"SET"`` or ``"CREATE TEMP TABLE"``) or ``f="non_pin_trigger"`` and then further
requests, each recording the backend connection that served it in ``extra["backend"]`` (and the
instance in ``node``).  The suite arranges concurrent load so that an unpinned session really would
move between backend connections.

* PIN-TRIGGERS counts trigger sessions whose later requests were served by more than one backend.
* PIN-NON-TRIGGERS counts non-trigger sessions whose later requests all stayed on one backend.
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
    """PIN-TRIGGERS: sessions that moved to another backend after a pinning statement."""

    guarantee_id = "PIN-TRIGGERS"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        sessions = _after_marker(history, "pin_trigger", min_after=2)
        if not sessions:
            return unknown(g, "no session ran a pin_trigger followed by two or more requests naming "
                              "their backend")
        moved: list[Op] = []
        names: list[str] = []
        for trigger, later in sessions.values():
            first = _backend(trigger) if trigger.extra.get("backend") is not None else _backend(later[0])
            strays = [o for o in later if _backend(o) != first]
            if strays:
                moved.append(strays[0])
                names.append(str(trigger.value))
        reason = f"{len(sessions)} pinned sessions checked, {len(moved)} moved"
        if names:
            reason += f" (after: {', '.join(sorted(set(names)))})"
        return judge(g, float(len(moved)), reason, moved)


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
