"""Transaction boundaries and pinning for one PostgreSQL client session, without I/O.

The session relays whole messages in bulk and shows each run to a :class:`TransactionTracker`,
which reads only what it needs:

* Client side: ``Query`` and ``Parse`` text goes to the pinning classifier (RDS Proxy's PostgreSQL
  list: SET, PREPARE, temp tables, cursors, LISTEN, session advisory locks, nextval...); ``Parse``
  and ``Close`` names track named prepared statements; ``Query``, ``Sync`` and ``FunctionCall`` are
  sync points, each answered by exactly one ReadyForQuery.
* Backend side: ReadyForQuery's status byte, and a FATAL ErrorResponse saying the server is
  ending the connection because it shuts down (SQLSTATE class 57P0x, as a writer stopped for a
  failover sends): the session replaces it with the proxy's own error (see ``backend_farewell``).

The backend may go back to the pool only at a *release point*: every sync point answered, nothing
sent after the last one, and status ``I``.  That is RDS's rule of detecting transaction end from
the wire protocol, not from COMMIT/ROLLBACK text.

Named prepared statements (psycopg's ``_pg3_N``, pgx's cache) live on one backend.  When one is
still open at a release point the session pins, as RDS Proxy is reported to do; unnamed statements
never pin by themselves, and a named statement closed (protocol Close) within its transaction
leaves no trace.  Re-preparing transparently on the next backend (PgBouncer's way) was not chosen:
pinning is what RDS does, and the harness compares against RDS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from reference_proxy.contracts import ReleaseState
from reference_proxy.protocol.postgres import (
    Close,
    ErrorResponse,
    Frames,
    Parse,
    ProtocolViolation,
    Query,
    ReadyForQuery,
)
from reference_proxy.protocol.postgres.framing import peek_parse, peek_query

__all__ = ["NAMED_STATEMENT_REASON", "ClientRun", "Pin", "PinDecisionLike", "TransactionTracker"]

NAMED_STATEMENT_REASON = ("A named prepared statement outlived its transaction. The proxy can't move "
                          "prepared statements between database connections.")

_SYNC_POINTS = frozenset(b"QSF")
_COPY_STREAM = frozenset(b"dcf")
_READY_STATUS = {0x49: "I", 0x54: "T", 0x45: "E"}  # ReadyForQuery's status byte, read in place
SHUTDOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
"""admin_shutdown, crash_shutdown, cannot_connect_now: the server is going away, not the request failing."""


class PinDecisionLike(Protocol):
    reason: str


@dataclass(frozen=True)
class Pin:
    """Why a session pinned, and the statement that did it (for the RDS-style log line)."""

    reason: str
    sql: str


@dataclass
class ClientRun:
    """What one run of client messages means for the session."""

    sync_points: int = 0
    queries: int = 0
    new_pin: Pin | None = None
    terminate_at: int | None = None  # offset in ``Frames.data`` of a Terminate; bytes before it go through


@dataclass
class TransactionTracker:
    """See the module docstring. ``classify(sql)`` returns a decision with ``.reason`` or None."""

    classify: Callable[[str], Any]
    pending_sync_points: int = 0
    unsynced: bool = False
    status: str = "I"
    pin: Pin | None = None
    named_statements: dict[str, str] = field(default_factory=dict)
    backend_farewell: tuple[int, ErrorResponse] | None = None
    """Set by :meth:`backend_run` on a shutdown FATAL: (its offset in ``Frames.data``, the error).
    Nothing from there on is meant for the client; the backend is lost."""
    named_statements_pin: bool = True
    """False only under failpoint ``named_statements_unpinned`` (reference_proxy.failpoints): a named
    statement open at a release point no longer pins, and the backend that holds it is lent away."""

    @property
    def pinned(self) -> bool:
        return self.pin is not None

    def _pin(self, reason: str, sql: str, run: ClientRun) -> None:
        if self.pin is None:
            self.pin = Pin(reason, sql)
            run.new_pin = self.pin

    def _classify(self, sql: str, run: ClientRun) -> None:
        if self.pin is None:
            decision = self.classify(sql)
            if decision is not None:
                self._pin(decision.reason, sql, run)

    def client_run(self, frames: Frames) -> ClientRun:
        """Account for messages about to be forwarded to the backend."""
        run = ClientRun()
        data = frames.data
        for t, start, end in frames.spans:
            if t in _SYNC_POINTS:
                run.sync_points += 1
                self.unsynced = False
                if t == 0x51:  # Q
                    run.queries += 1
                    sql = peek_query(data, start, end)
                    self._classify(Query.decode(data[start + 5:end]).sql if sql is None else sql, run)
            elif t in _COPY_STREAM:
                continue
            elif t == 0x58:  # X
                run.terminate_at = start
                break
            else:
                self.unsynced = True
                if t == 0x50:  # P
                    peeked = peek_parse(data, start, end)
                    if peeked is None:
                        parse = Parse.decode(data[start + 5:end])
                        peeked = parse.name, parse.sql
                    name, sql = peeked
                    self._classify(sql, run)
                    if name:
                        self.named_statements[name] = sql
                elif t == 0x43:  # C
                    close = Close.decode(data[start + 5:end])
                    if close.kind == "S":
                        self.named_statements.pop(close.name, None)
                elif t == 0x45:  # E
                    run.queries += 1
                elif t == 0x70:  # p
                    raise ProtocolViolation("client sent a password message after authentication")
        self.pending_sync_points += run.sync_points
        return run

    def backend_run(self, frames: Frames) -> int:
        """Account for messages from the backend; returns how many ReadyForQuery it held."""
        ready = 0
        data = frames.data
        for t, start, end in frames.spans:
            if t == 0x5A:  # Z
                ready += 1
                status = _READY_STATUS.get(data[start + 5]) if end - start == 6 else None
                if status is None:  # malformed: let the decoder say how
                    status = ReadyForQuery.decode(data[start + 5:end]).status
                self.status = status
            elif t == 0x45:  # E: only a FATAL one matters here, and errors are rare on a busy path
                error = ErrorResponse.decode(data[start + 5:end])
                if error.sqlstate in SHUTDOWN_SQLSTATES and error.severity in ("FATAL", "PANIC"):
                    self.backend_farewell = (start, error)
                    break
        self.pending_sync_points = max(0, self.pending_sync_points - ready)
        return ready

    @property
    def at_release_point(self) -> bool:
        """Every sync point answered, nothing sent since, and no transaction open."""
        return self.pending_sync_points == 0 and not self.unsynced and self.status == "I"

    @property
    def between_statements_of_a_transaction(self) -> bool:
        """Every sync point answered and nothing sent since, inside an open transaction of an
        unpinned session: where only the ``split_transactions`` failpoint gives the backend up."""
        return (self.pending_sync_points == 0 and not self.unsynced and self.status == "T"
                and self.pin is None and not self.named_statements)

    def may_release(self) -> tuple[bool, Pin | None]:
        """At a release point: (release now?, a pin that starts now).

        A named statement still open here pins the session instead of releasing.
        """
        if not self.at_release_point or self.pin is not None:
            return False, None
        if self.named_statements and self.named_statements_pin:
            sql = next(iter(self.named_statements.values()))
            self.pin = Pin(NAMED_STATEMENT_REASON, sql)
            return False, self.pin
        return True, None

    def release_state_if_client_leaves(self) -> ReleaseState:
        """What the backend is worth when the client vanishes now.

        Mid-transaction or mid-request: BROKEN (never returned with unknown state).  Idle but pinned:
        DIRTY (reset first).  Idle and clean: CLEAN.
        """
        if not self.at_release_point:
            return ReleaseState.BROKEN
        if self.pin is not None or self.named_statements:
            return ReleaseState.DIRTY
        return ReleaseState.CLEAN

    def backend_released(self) -> None:
        """Forget per-backend state after a release (only done when nothing is pending)."""
        self.unsynced = False
        self.pending_sync_points = 0
        self.status = "I"
        self.backend_farewell = None
