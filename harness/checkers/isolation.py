"""Session isolation: no client may observe session state another client created.

A transaction-mode pooler that hands a backend connection to the next client without resetting it
leaks whatever the previous client left behind.  The workload makes such leaks observable by giving
every piece of state a value unique to the client that creates it; the ``set_state`` /
``read_state`` ops that record it are described in :mod:`harness.checkers.state_ops`.

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

from collections import defaultdict

from harness.checkers.base import CheckContext, Verdict, judge, unknown
from harness.checkers.state_ops import (
    READ_FS,
    SET_FS,
    STATE_KINDS,
    Sessions,
    StateKey,
    is_state_op,
    normalised,
    state_key,
    unmade_observation,
)
from harness.history import History, Op, OpType

__all__ = ["STATE_KINDS", "SessionLeakChecker"]


class SessionLeakChecker:
    """ISOLATION-NO-SESSION-LEAK: reads of state another process created."""

    guarantee_id = "ISOLATION-NO-SESSION-LEAK"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        setters: dict[StateKey, set[object]] = defaultdict(set)
        own_sets: dict[tuple[object, StateKey], list[int]] = defaultdict(list)  # completion times
        sessions = Sessions(history)
        reads: list[tuple[Op, Op, StateKey | None]] = []  # (completion as recorded, invocation, key)
        malformed = 0
        for inv, raw in history.pairs():
            if raw is None or raw.type is not OpType.OK or inv.f not in SET_FS | READ_FS:
                continue
            o = normalised(raw)
            if not is_state_op(o):
                malformed += 1
                continue
            key = state_key(o)
            if o.f == "set_state":
                if key is not None:
                    setters[key].add(o.process)
                    own_sets[(o.process, key)].append(o.time)
            else:
                reads.append((raw, inv, key))
        if not reads:
            failed = [raw for inv, raw in history.pairs()
                      if inv.f in READ_FS and (raw is None or raw.type is not OpType.OK)]
            if failed:  # e.g. a pooler that refuses the transaction the read runs in
                first = failed[0].error.text if failed[0] is not None and failed[0].error is not None \
                    else "no completion"
                return unknown(g, f"every state read failed ({len(failed)}); first: {str(first)[:160]}")
            return unknown(g, "no read_state ops with a known kind")
        processes = {o.process for o, _, _ in reads} | {p for ps in setters.values() for p in ps}
        if len(processes) < 2 or not setters:
            return unknown(g, "leaks need state set by one client and read by another; "
                              "the history has fewer than two clients or no set_state ops")

        def set_by_reader_before(inv: Op, key: StateKey) -> bool:
            """The reader itself had set ``key`` on this same connection before it asked."""
            return any(done < inv.time and sessions.same_session(inv.process, done, inv.time)
                       for done in own_sets.get((inv.process, key), ()))

        leaks = [(raw, key) for raw, inv, key in reads
                 if key is not None and setters.get(key) and setters[key] - {raw.process}
                 and not set_by_reader_before(inv, key)]
        reason = f"{len(reads)} state reads by {len(processes)} clients, {len(leaks)} saw another client's state"
        if leaks:
            kinds = sorted({key[0] for _, key in leaks})
            reason += f" (kinds: {', '.join(kinds)})"
        if malformed:
            reason += f"; {malformed} state ops with an unknown kind were ignored"
        reason += not_judged(history, [raw for raw, _, _ in reads])
        return judge(g, float(len(leaks)), reason, [raw for raw, _ in leaks])


def not_judged(history: History, reads: list[Op]) -> str:
    """What this history could not look at: unlisted kinds (events) and observations not made."""
    notes: dict[str, str] = {}
    for event in history.events("state_kinds_unlisted"):
        if isinstance(event.value, dict):
            notes.update({str(k): str(v) for k, v in event.value.items()})
    unmade: dict[str, list[str]] = defaultdict(list)
    for raw in reads:
        why = unmade_observation(raw)
        if why is not None:
            unmade[str(raw.value.get("kind"))].append(why)
    parts = [f"{kind}: {why}" for kind, why in sorted(notes.items())]
    parts += [f"{kind}: {len(whys)} observations not made ({whys[0]})" for kind, whys in sorted(unmade.items())]
    return "; on this engine " + "; ".join(parts) if parts else ""
