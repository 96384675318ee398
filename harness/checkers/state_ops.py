"""How session-state operations read in a history: the vocabulary two guarantees share.

Session state is judged from two sides.  ISOLATION-NO-SESSION-LEAK asks whether a client saw state
*another* client made (:mod:`harness.checkers.isolation`); SESSION-OWN-STATE asks whether a client
still sees the state it made *itself* (:mod:`harness.checkers.own_state`).  Both read the same ops,
so what those ops mean is said once, here:

* ``f="set_state"``  ok, ``value={"kind": K, "name": N, "value": V}`` - this process created it;
* ``f="read_state"`` ok, ``value={"kind": K, "name": N, "value": V}`` - this process observed it.

``kind`` is one of :data:`STATE_KINDS`.  For the kinds with a value (:data:`VALUED_KINDS`: a
``setting`` or MySQL user variable, a ``session_variable`` such as MySQL's ``time_zone``) the value
is the one set or read; for the other kinds, which either exist or not, the value is ``True`` when the object is there (for a
``set_state``: when it was made; an advisory lock that was not granted records ``False``).
``f="set_setting"`` / ``f="read_setting"`` with ``value={"name": N, "value": V}`` are shorthands
for the ``setting`` kind.  A ``read_state`` whose value is None and which carries ``unjudged`` is
an observation the server could not make.

A process is one connection: its session state dies when it makes a new ``connect`` under the same
id, so :class:`Sessions` tells which of a process's ops belong to one session.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from typing import Any

from harness.history import History, Op

STATE_KINDS = frozenset({"setting", "session_variable", "temp_table", "prepared_statement", "advisory_lock",
                         "listen"})
VALUED_KINDS = frozenset({"setting", "session_variable"})
"""Kinds whose state is a value rather than an object that exists or not."""
SET_FS = frozenset({"set_state", "set_setting"})
READ_FS = frozenset({"read_state", "read_setting"})
_CANONICAL = {"set_setting": "set_state", "read_setting": "read_state"}

StateKey = tuple[str, str, Any]
"""(kind, name, value): what a set made or a read saw; objects have the value ``True``."""


def normalised(o: Op) -> Op:
    """The op as a ``set_state`` / ``read_state`` op, expanding the setting shorthands."""
    if o.f in _CANONICAL and isinstance(o.value, dict):
        return dataclasses.replace(o, f=_CANONICAL[o.f], value={"kind": "setting", **o.value})
    return o


def is_state_op(o: Op) -> bool:
    """Whether the (normalised) op's value names a known kind of session state."""
    return isinstance(o.value, dict) and o.value.get("kind") in STATE_KINDS


def state_key(o: Op, *, made_only: bool = False) -> StateKey | None:
    """What a normalised state op set or saw, or None when it names no state.

    A ``set_state`` of an object counts as made whatever it recorded unless ``made_only`` (an
    advisory lock that was not granted then makes nothing): a leak check must treat a failed
    attempt on a shared name as the setter's, an own-state check must not expect what was not made.
    """
    v = o.value
    if not isinstance(v, dict) or v.get("kind") not in STATE_KINDS or "name" not in v:
        return None
    kind, name = v["kind"], str(v["name"])
    if kind in VALUED_KINDS:
        observed = v.get("value")
        return None if observed is None else (kind, name, hashable(observed))
    if v.get("value") is True or (o.f == "set_state" and not made_only):
        return (kind, name, True)
    return None


def hashable(x: Any) -> Any:
    return x if isinstance(x, (str, int, float, bool)) else repr(x)


def unmade_observation(o: Op) -> str | None:
    """Why a ``read_state`` could not observe anything (the server could not list now), or None."""
    v = o.value
    if isinstance(v, dict) and v.get("value") is None and v.get("unjudged"):
        return str(v["unjudged"])
    return None


class Sessions:
    """Which ops of a process belong to one session: a ``connect`` starts a new one."""

    def __init__(self, history: History) -> None:
        self._connects: dict[object, list[int]] = defaultdict(list)
        for inv, _ in history.pairs():
            if inv.f == "connect":
                self._connects[inv.process].append(inv.time)
        for times in self._connects.values():
            times.sort()

    def same_session(self, process: object, earlier: int, later: int) -> bool:
        """No connect of ``process`` was invoked between the times ``earlier`` and ``later``."""
        times = self._connects.get(process, ())
        i = bisect.bisect_right(times, earlier)
        return i >= len(times) or times[i] >= later
