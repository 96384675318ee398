"""Session isolation: no client may observe session state another client created.

A transaction-mode pooler that hands a backend connection to the next client without resetting it
leaks whatever the previous client left behind.  The workload makes such leaks observable by giving
every piece of state a value unique to the client that creates it:

* ``f="set_state"``  ok, ``value={"kind": K, "name": N, "value": V}`` - this process created it;
* ``f="read_state"`` ok, ``value={"kind": K, "name": N, "value": V}`` - this process observed it.

``kind`` is one of :data:`STATE_KINDS`.  For ``setting`` the value is the setting's value (e.g.
``application_name = 'client-7'``); for the other kinds, which either exist or not, the value is
``True`` when the process saw the object (a temp table, a prepared statement name, an advisory lock
held by its session, a LISTEN registration) and ``False`` or ``None`` when it did not.

``f="set_setting"`` / ``f="read_setting"`` with ``value={"name": N, "value": V}`` are shorthands
for the ``setting`` kind.

A leak is a read of a value (or the presence of an object) that some *other* process set and the
reading process had not set itself beforehand.  Only the reader's own ``set_state`` ops that
completed before the read was invoked excuse it, and only if the reader's process did not
``connect`` again in between (a process is one connection, and session state dies with it; a
process that reconnects under the same id starts from a clean session).  Reads of defaults or of
values nobody set are not leaks.

Observations the server could not make are ``read_state`` ops whose value is None and whose
``unjudged`` says why (a server that cannot list named locks just now); an ``event`` op
``f="state_kinds_unlisted"`` with ``value={kind: why}`` says a kind was looked for only by name, or
not at all, on this engine.  Both are named in the verdict's reason, so a narrower look never
passes silently.

Workloads should give every client its own names (temp table ``t_<client>``, lock key from the
client id) so that an observation names whose state it saw; with shared names a leak seen before
the reader creates its own object is still caught by the ordering rule above.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from harness.checkers.base import CheckContext, Verdict, judge, unknown
from harness.history import History, Op, OpType

STATE_KINDS = frozenset({"setting", "temp_table", "prepared_statement", "advisory_lock", "listen"})
_SET_FS = {"set_state": "set_state", "set_setting": "set_state"}
_READ_FS = {"read_state": "read_state", "read_setting": "read_state"}


def _normalised(o: Op) -> Op:
    """The op as a ``set_state`` / ``read_state`` op, expanding the setting shorthands."""
    if o.f in ("set_setting", "read_setting") and isinstance(o.value, dict):
        value = {"kind": "setting", **o.value}
        return dataclasses.replace(o, f={**_SET_FS, **_READ_FS}[o.f], value=value)
    return o


def _state_key(o: Op) -> tuple[str, str, Any] | None:
    v = o.value
    if not isinstance(v, dict) or v.get("kind") not in STATE_KINDS or "name" not in v:
        return None
    kind, name = v["kind"], str(v["name"])
    if kind == "setting":
        observed = v.get("value")
        if observed is None:
            return None
        return (kind, name, _hashable(observed))
    return (kind, name, True) if v.get("value") is True or o.f == "set_state" else None


def _hashable(x: Any) -> Any:
    return x if isinstance(x, (str, int, float, bool)) else repr(x)


class SessionLeakChecker:
    """ISOLATION-NO-SESSION-LEAK: reads of state another process created."""

    guarantee_id = "ISOLATION-NO-SESSION-LEAK"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        setters: dict[tuple[str, str, Any], set[object]] = defaultdict(set)
        own_sets: dict[tuple[object, tuple[str, str, Any]], list[int]] = defaultdict(list)  # completion times
        connects: dict[object, list[int]] = defaultdict(list)  # invocation times of each process's connects
        reads: list[tuple[Op, Op, tuple[str, str, Any] | None]] = []  # (completion as recorded, invocation, key)
        malformed = 0
        for inv, raw in history.pairs():
            if inv.f == "connect":
                connects[inv.process].append(inv.time)
                continue
            if raw is None or raw.type is not OpType.OK or inv.f not in (*_SET_FS, *_READ_FS):
                continue
            o = _normalised(raw)
            if not isinstance(o.value, dict) or o.value.get("kind") not in STATE_KINDS:
                malformed += 1
                continue
            key = _state_key(o)
            if o.f == "set_state":
                if key is not None:
                    setters[key].add(o.process)
                    own_sets[(o.process, key)].append(o.time)
            else:
                reads.append((raw, inv, key))
        if not reads:
            return unknown(g, "no read_state ops with a known kind")
        processes = {o.process for o, _, _ in reads} | {p for ps in setters.values() for p in ps}
        if len(processes) < 2 or not setters:
            return unknown(g, "leaks need state set by one client and read by another; "
                              "the history has fewer than two clients or no set_state ops")

        def set_by_reader_before(inv: Op, key: tuple[str, str, Any]) -> bool:
            """The reader itself had set ``key`` on this same connection before it asked."""
            for done in own_sets.get((inv.process, key), ()):
                if done < inv.time and not any(done < t < inv.time for t in connects.get(inv.process, ())):
                    return True
            return False

        leaks = [(raw, key) for raw, inv, key in reads
                 if key is not None and setters.get(key) and setters[key] - {raw.process}
                 and not set_by_reader_before(inv, key)]
        reason = f"{len(reads)} state reads by {len(processes)} clients, {len(leaks)} saw another client's state"
        if leaks:
            kinds = sorted({key[0] for _, key in leaks})
            reason += f" (kinds: {', '.join(kinds)})"
        if malformed:
            reason += f"; {malformed} state ops with an unknown kind were ignored"
        reason += _not_judged(history, reads)
        return judge(g, float(len(leaks)), reason, [raw for raw, _ in leaks])


def _not_judged(history: History, reads: list[tuple[Op, Op, tuple[str, str, Any] | None]]) -> str:
    """What this history could not look at: unlisted kinds (events) and observations not made."""
    notes: dict[str, str] = {}
    for event in history.events("state_kinds_unlisted"):
        if isinstance(event.value, dict):
            notes.update({str(k): str(v) for k, v in event.value.items()})
    unmade: dict[str, list[str]] = defaultdict(list)
    for raw, _, _ in reads:
        v = raw.value
        if isinstance(v, dict) and v.get("value") is None and v.get("unjudged"):
            unmade[str(v.get("kind"))].append(str(v["unjudged"]))
    parts = [f"{kind}: {why}" for kind, why in sorted(notes.items())]
    parts += [f"{kind}: {len(whys)} observations not made ({whys[0]})" for kind, whys in sorted(unmade.items())]
    return "; on this engine " + "; ".join(parts) if parts else ""
