"""What the topology monitor tells the rest of the proxy: timestamped events and observations.

An :class:`Observation` is what one poll of one instance found (or failed to find).  A
:class:`TopologyEvent` is a change the monitor decided on from a round of observations: a role
change, an instance becoming unreachable or reachable again, a writer lost or accepted, a split
brain starting or ending.  Events carry both clocks: the monotonic time orders them and measures
durations (failover gaps), the wall time lines them up with logs and with the harness history.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from reference_proxy.contracts import ProxyError, Role


class TopologyError(ProxyError):
    """Root of the topology monitor's own errors."""


class ProbeFailed(TopologyError):
    """One poll of one instance failed: connect refused or timed out, query error, lost connection."""


class EventKind(str, enum.Enum):
    """Kinds of topology events, with the strings used in the JSON status."""

    ROLE_CHANGED = "role_changed"              # an instance's accepted role changed
    UNREACHABLE = "unreachable"                # a poll failed after the previous one succeeded
    REACHABLE = "reachable"                    # a poll succeeded after failing (or for the first time)
    IDENTITY_MISMATCH = "identity_mismatch"    # the server reached says it is another instance
    WRITER_LOST = "writer_lost"                # no instance is accepted as writer any more
    WRITER_ACCEPTED = "writer_accepted"        # exactly one instance claims the writer role again
    SPLIT_BRAIN_STARTED = "split_brain_started"  # two or more instances claim the writer role
    SPLIT_BRAIN_ENDED = "split_brain_ended"
    DOUBT_REPORTED = "doubt_reported"          # a backend error reported from outside the monitor
    FAST_POLLING = "fast_polling"              # polling at the fast interval until stable
    STEADY_POLLING = "steady_polling"          # topology stable again: back to the steady interval


@dataclasses.dataclass(frozen=True)
class TopologyEvent:
    """One change the monitor decided on, at one moment (``monotonic`` and ``wall`` seconds)."""

    kind: EventKind
    monotonic: float
    wall: float
    instance_id: str | None = None
    old_role: Role | None = None
    new_role: Role | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "monotonic": self.monotonic, "wall": self.wall,
                "instance": self.instance_id,
                "old_role": self.old_role.value if self.old_role else None,
                "new_role": self.new_role.value if self.new_role else None,
                "detail": self.detail}


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What an engine probe read from one instance over its reserved monitoring connection.

    ``wal_position`` is a byte position in the replication stream: on a writer how far it has
    written, on a reader how far it has replayed; the difference is the reader's lag in bytes.
    ``replay_age`` is, on a reader, the seconds since the last replayed transaction committed on
    the writer (meaningful as lag only while the reader is behind).
    """

    reported_id: str | None
    in_recovery: bool
    wal_position: int | None = None
    replay_age: float | None = None


@dataclasses.dataclass(frozen=True)
class Observation:
    """One poll of one instance: either a :class:`ProbeResult` or the error that stopped it."""

    instance_id: str
    result: ProbeResult | None = None
    error: str | None = None

    @classmethod
    def ok(cls, instance_id: str, result: ProbeResult) -> Observation:
        return cls(instance_id, result=result)

    @classmethod
    def failed(cls, instance_id: str, error: str) -> Observation:
        return cls(instance_id, error=error or "failed")

    @property
    def reachable(self) -> bool:
        return self.result is not None
