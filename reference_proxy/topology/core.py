"""The topology monitor's decisions, without I/O: rounds of observations in, roles and events out.

Rules (RDS Proxy's documented behaviour, with the peers' approaches where it is silent):

* **Who is writer.**  An instance claims the writer role when it answers and is not in recovery
  (PostgreSQL ``pg_is_in_recovery()``, MySQL ``@@read_only``), and it is *accepted* as writer only
  when it is the only claimant in the round.  Two or more claimants are a split brain: none of them
  is accepted, so no write can reach an instance that may be about to be demoted, and the split
  brain is reported (an event when it starts and when it ends) until it resolves.  "No writer" is
  expressed to the router as every instance being READER or UNKNOWN, so ``choose_writer()``
  raises :class:`~reference_proxy.contracts.NoWriter` and borrowers wait for the next change.
* **Identity.**  An instance must say it is the instance we meant to reach
  (``aurora_db_instance_identifier()`` / ``@@aurora_server_id``); one that says otherwise is not
  used at all, whatever its role, because a wrong port in the configuration would otherwise send
  writes to the wrong server.
* **Readers.**  Instances that answer and are in recovery are readers.  An instance that does not
  answer is UNKNOWN at once: a failed reader must stop getting new sessions on the next round.
* **Polling speed.**  Rounds come every ``interval`` seconds while the topology is stable, and every
  ``fast_interval`` seconds from the moment anything is in doubt - a role change, an instance
  becoming unreachable, an identity mismatch, no accepted writer, a split brain, or a backend error
  reported from outside (:meth:`TopologyCore.report_doubt`) - until ``stable_rounds`` rounds in a
  row agree on the same roles with one accepted writer.  An instance that stays down does not keep
  the monitor in fast polling; only its going down does.
* **Lag.**  A reader's lag in bytes is the writer's WAL position minus the reader's replayed
  position in the same round; its lag in seconds is 0 when it has replayed everything, otherwise
  the age of the last transaction it replayed.

The core never reads a clock: every call takes the monotonic and wall times it should use.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from reference_proxy.contracts import Role
from reference_proxy.topology.availability import DEFAULT_WINDOW_SECONDS, AvailabilityWindow
from reference_proxy.topology.events import EventKind, Observation, TopologyError, TopologyEvent

DEFAULT_INTERVAL = 1.0
DEFAULT_FAST_INTERVAL = 0.1
DEFAULT_STABLE_ROUNDS = 3
DEFAULT_EVENT_LIMIT = 100

TARGET_ROLES = {Role.WRITER: "READ_WRITE", Role.READER: "READ_ONLY"}
"""RDS Proxy's ``TargetRole`` dimension values for the two roles a target can be available in."""


@dataclasses.dataclass
class InstanceView:
    """What the monitor currently believes about one instance."""

    id: str
    role: Role = Role.UNKNOWN
    reachable: bool | None = None          # None until the first poll
    claims_writer: bool | None = None      # not in recovery, at the last successful poll
    identity_ok: bool | None = None
    error: str | None = None               # why the last poll failed or was rejected
    last_seen: float | None = None         # monotonic time of the last successful poll
    wal_position: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"role": self.role.value, "reachable": self.reachable, "claims_writer": self.claims_writer,
                "identity_ok": self.identity_ok, "error": self.error,
                "seconds_since_seen": None if self.last_seen is None else max(0.0, now - self.last_seen),
                "lag_seconds": self.lag_seconds, "lag_bytes": self.lag_bytes}


@dataclasses.dataclass(frozen=True)
class RoundOutcome:
    """What one round decided: the roles now, the roles before, and the events it produced."""

    roles: dict[str, Role]
    previous_roles: dict[str, Role]
    writer: str | None
    previous_writer: str | None
    events: tuple[TopologyEvent, ...]
    newly_unreachable: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when any instance's accepted role differs from the previous round."""
        return self.roles != self.previous_roles

    @property
    def demoted(self) -> tuple[str, ...]:
        """Instances that were the accepted writer and no longer are (close their writer connections)."""
        return tuple(i for i, r in self.previous_roles.items() if r is Role.WRITER and self.roles[i] is not Role.WRITER)

    @property
    def readers_lost(self) -> tuple[str, ...]:
        """Instances that were readers and no longer are (move multiplexed sessions elsewhere)."""
        return tuple(i for i, r in self.previous_roles.items() if r is Role.READER and self.roles[i] is not Role.READER)


class TopologyCore:
    """The decision state machine behind :class:`~reference_proxy.topology.monitor.TopologyMonitor`.

    Feed it one round at a time with :meth:`observe`; read :attr:`roles`, :attr:`writer`,
    :attr:`fast` and :meth:`next_delay`; render it with :meth:`snapshot`.
    """

    def __init__(self, instance_ids: Iterable[str], *, interval: float = DEFAULT_INTERVAL,
                 fast_interval: float = DEFAULT_FAST_INTERVAL, stable_rounds: int = DEFAULT_STABLE_ROUNDS,
                 event_limit: int = DEFAULT_EVENT_LIMIT,
                 availability_window: float = DEFAULT_WINDOW_SECONDS) -> None:
        ids = list(instance_ids)
        if not ids:
            raise TopologyError("the monitor needs at least one instance")
        if len(set(ids)) != len(ids):
            raise TopologyError(f"instance ids must be unique, got {ids}")
        if not (isinstance(interval, (int, float)) and isinstance(fast_interval, (int, float))
                and 0 < fast_interval <= interval):
            raise TopologyError(f"need 0 < fast_interval <= interval, got fast_interval={fast_interval!r}, "
                                f"interval={interval!r}")
        if isinstance(stable_rounds, bool) or not isinstance(stable_rounds, int) or stable_rounds < 1:
            raise TopologyError(f"stable_rounds must be a whole number >= 1, got {stable_rounds!r}")
        if isinstance(event_limit, bool) or not isinstance(event_limit, int) or event_limit < 1:
            raise TopologyError(f"event_limit must be a whole number >= 1, got {event_limit!r}")
        self.interval = float(interval)
        self.fast_interval = float(fast_interval)
        self.stable_rounds = stable_rounds
        self.views: dict[str, InstanceView] = {i: InstanceView(i) for i in ids}
        self.writer: str | None = None
        self.split_brain: tuple[str, ...] = ()
        self.last_writer: str | None = None  # the last instance ever accepted as writer
        self.fast = True  # nothing is known yet: poll fast until the first stable rounds
        self.rounds = 0
        self.events: collections.deque[TopologyEvent] = collections.deque(maxlen=event_limit)
        self.availability = {role: AvailabilityWindow(availability_window) for role in TARGET_ROLES}
        self._stable_count = 0
        self._doubt: str | None = None

    # ------------------------------------------------------------------------------ reading

    @property
    def roles(self) -> dict[str, Role]:
        return {i: v.role for i, v in self.views.items()}

    @property
    def fenced(self) -> bool:
        """True while a split brain keeps every claimant from being accepted as writer."""
        return bool(self.split_brain)

    def next_delay(self) -> float:
        """Seconds until the next round should start."""
        return self.fast_interval if self.fast else self.interval

    def availability_percentage(self, role: Role, now: float) -> float:
        """AvailabilityPercentage of ``role`` (WRITER or READER) over the last window."""
        return self.availability[role].percentage(now)

    # ------------------------------------------------------------------------------ deciding

    def report_doubt(self, instance_id: str | None, reason: str, monotonic: float,
                     wall: float) -> list[TopologyEvent]:
        """A backend error or lost connection seen outside the monitor: poll fast until stable."""
        if instance_id is not None and instance_id not in self.views:
            raise TopologyError(f"unknown instance {instance_id!r}; known: {sorted(self.views)}")
        events = [TopologyEvent(EventKind.DOUBT_REPORTED, monotonic, wall, instance_id, detail=reason)]
        self._doubt = reason
        self._stable_count = 0
        if not self.fast:
            self.fast = True
            events.append(TopologyEvent(EventKind.FAST_POLLING, monotonic, wall, instance_id, detail=reason))
        self.events.extend(events)
        return events

    def observe(self, observations: Iterable[Observation] | Mapping[str, Observation],
                monotonic: float, wall: float) -> RoundOutcome:
        """Apply one round (one observation per instance) and return what it decided."""
        round_ = self._as_round(observations)
        previous_roles = self.roles
        previous_writer = self.writer
        events: list[TopologyEvent] = []
        doubts: list[str] = []
        if self._doubt:
            doubts.append(self._doubt)
            self._doubt = None
        newly_unreachable = []

        def event(kind: EventKind, instance_id: str | None = None, detail: str = "",
                  old: Role | None = None, new: Role | None = None) -> None:
            events.append(TopologyEvent(kind, monotonic, wall, instance_id, old, new, detail))

        # 1. Reachability and identity, instance by instance.
        for instance_id, obs in round_.items():
            view = self.views[instance_id]
            was_reachable, had_mismatch = view.reachable, view.identity_ok is False
            if obs.result is None:
                view.reachable, view.claims_writer, view.identity_ok = False, None, None
                view.error, view.wal_position = obs.error, None
                if was_reachable is not False:
                    event(EventKind.UNREACHABLE, instance_id, obs.error or "")
                    newly_unreachable.append(instance_id)
                    doubts.append(f"{instance_id} unreachable")
                continue
            result = obs.result
            view.reachable, view.last_seen = True, monotonic
            view.claims_writer, view.wal_position = not result.in_recovery, result.wal_position
            if was_reachable is False:
                event(EventKind.REACHABLE, instance_id)
            view.identity_ok = result.reported_id == instance_id
            if view.identity_ok:
                view.error = None
                continue
            view.error = (f"identity mismatch: expected {instance_id!r}, the server says it is "
                          f"{result.reported_id!r}")
            if not had_mismatch:
                event(EventKind.IDENTITY_MISMATCH, instance_id, view.error)
                doubts.append(view.error)

        # 2. Roles: exactly one usable claimant is the writer; usable non-claimants are readers.
        usable = [i for i, v in self.views.items() if v.reachable and v.identity_ok]
        claimants = tuple(i for i in usable if self.views[i].claims_writer)
        self.writer = claimants[0] if len(claimants) == 1 else None
        for instance_id, view in self.views.items():
            if instance_id == self.writer:
                view.role = Role.WRITER
            elif instance_id in usable and not view.claims_writer:
                view.role = Role.READER
            else:
                view.role = Role.UNKNOWN

        # 3. Split brain, writer lost / accepted, per-instance role changes.
        if len(claimants) >= 2 and not self.split_brain:
            event(EventKind.SPLIT_BRAIN_STARTED, detail=f"instances {', '.join(claimants)} all claim the "
                                                        "writer role; writes are fenced until one remains")
        elif len(claimants) < 2 and self.split_brain:
            event(EventKind.SPLIT_BRAIN_ENDED, detail=f"claimants now: {', '.join(claimants) or 'none'}")
        self.split_brain = claimants if len(claimants) >= 2 else ()
        if self.writer != previous_writer:
            if self.writer is None:
                assert previous_writer is not None
                event(EventKind.WRITER_LOST, previous_writer, self._why_not_writer(previous_writer))
            else:
                event(EventKind.WRITER_ACCEPTED, self.writer,
                      f"previous writer: {self.last_writer}" if self.last_writer else "first writer")
                self.last_writer = self.writer
        for instance_id, view in self.views.items():
            if view.role is not previous_roles[instance_id]:
                event(EventKind.ROLE_CHANGED, instance_id, old=previous_roles[instance_id], new=view.role)
        if self.roles != previous_roles:
            doubts.append("roles changed")
        if self.writer is None:
            doubts.append("split brain" if self.split_brain else "no writer")

        # 4. Lag of each reader against the writer's position in this round.
        writer_position = self.views[self.writer].wal_position if self.writer else None
        for instance_id, view in self.views.items():
            result = round_[instance_id].result
            if view.role is Role.READER and writer_position is not None and view.wal_position is not None:
                view.lag_bytes = max(0, writer_position - view.wal_position)
                view.lag_seconds = 0.0 if view.lag_bytes == 0 else (result.replay_age if result else None)
            else:
                view.lag_bytes = view.lag_seconds = None

        # 5. Polling speed.
        if doubts:
            self._stable_count = 0
            if not self.fast:
                self.fast = True
                event(EventKind.FAST_POLLING, detail="; ".join(doubts))
        else:
            self._stable_count += 1
            if self.fast and self._stable_count >= self.stable_rounds:
                self.fast = False
                event(EventKind.STEADY_POLLING, detail=f"{self._stable_count} stable rounds")

        # 6. Availability per target role.
        self.availability[Role.WRITER].record(monotonic, self.writer is not None)
        self.availability[Role.READER].record(monotonic, any(r is Role.READER for r in self.roles.values()))
        self.rounds += 1
        self.events.extend(events)
        return RoundOutcome(self.roles, previous_roles, self.writer, previous_writer, tuple(events),
                            tuple(newly_unreachable))

    # ------------------------------------------------------------------------------ rendering

    def snapshot(self, now: float, events: int = 20) -> dict[str, Any]:
        """The monitor's part of the JSON status document."""
        recent = list(self.events)[-events:] if events > 0 else []
        return {
            "writer": self.writer,
            "fenced": self.fenced,
            "split_brain": list(self.split_brain),
            "polling": "fast" if self.fast else "steady",
            "interval_seconds": self.next_delay(),
            "rounds": self.rounds,
            "instances": {i: v.as_dict(now) for i, v in self.views.items()},
            "availability_percentage": {TARGET_ROLES[r]: round(self.availability_percentage(r, now), 3)
                                        for r in TARGET_ROLES},
            "events": [e.as_dict() for e in recent],
        }

    # ------------------------------------------------------------------------------ helpers

    def _as_round(self, observations: Iterable[Observation] | Mapping[str, Observation]) -> dict[str, Observation]:
        items = list(observations.values()) if isinstance(observations, Mapping) else list(observations)
        round_: dict[str, Observation] = {}
        for obs in items:
            if not isinstance(obs, Observation):
                raise TopologyError(f"expected an Observation, got {obs!r}")
            if obs.instance_id not in self.views:
                raise TopologyError(f"observation of unknown instance {obs.instance_id!r}; "
                                    f"known: {sorted(self.views)}")
            if obs.instance_id in round_:
                raise TopologyError(f"two observations of {obs.instance_id!r} in one round")
            round_[obs.instance_id] = obs
        missing = sorted(set(self.views) - set(round_))
        if missing:
            raise TopologyError(f"a round must observe every instance; missing: {missing}")
        return round_

    def _why_not_writer(self, instance_id: str) -> str:
        view = self.views[instance_id]
        if not view.reachable:
            return f"unreachable: {view.error}"
        if not view.identity_ok:
            return view.error or "identity mismatch"
        if self.split_brain:
            return f"split brain: {', '.join(self.split_brain)} claim the writer role"
        return "now in recovery (read-only)"
