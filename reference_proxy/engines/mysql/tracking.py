"""What one MySQL client session's commands and replies mean for its backend, without I/O.

Two small machines the session drives:

* :class:`ReplyRelay` follows one command's reply in the raw server stream.  It splits whole
  physical packets (forwarded as they are, so replies reach clients byte for byte), hands each
  logical payload to a :class:`ResponseTracker` and says when the reply is complete.  A LOCAL INFILE
  request is held back: the proxy never lets a server read files through it.
* :class:`SessionTracker` keeps the session's last server status, its pin and its tracked
  settings.  It answers the release rule: a backend goes back to the pool after a complete reply
  whose status has no open transaction and no further result, unless the session is pinned.  A
  backend whose session changed tracked state (schema, tracked variables) goes back DIRTY, so the
  pool resets it to its own key before anyone else gets it.

Autocommit is tracked state (it partitions the pool, as RDS Proxy does).  If the server's autocommit
flag ever disagrees with the tracked settings (the client changed it in a way the statement text
did not show), the session keeps its backend rather than hand one client's setting to another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reference_proxy.contracts import ReleaseState
from reference_proxy.engines.mysql.lexer import lexing_options
from reference_proxy.engines.mysql.screen import could_change_tracked
from reference_proxy.engines.mysql.tracked import TrackedChange, apply_change, pool_variant, statement_changes
from reference_proxy.protocol.mysql import (
    HEADER_SIZE,
    MAX_PACKET_PAYLOAD,
    Command,
    PacketRole,
    PacketSplitter,
    ProtocolViolation,
    ResponseTracker,
    ServerStatus,
    text,
)

__all__ = ["BINARY_PREPARE_REASON", "SET_OPTION_REASON", "UNRESOLVED_SETTING_REASON", "Pin", "ReplyRelay", "SessionTracker"]

BINARY_PREPARE_REASON = "A prepared statement was created with the binary protocol (COM_STMT_PREPARE)."
SET_OPTION_REASON = ("The client switched multi-statement support (COM_SET_OPTION), which the proxy "
                     "doesn't track.")
UNRESOLVED_SETTING_REASON = ("SQL set a tracked session setting to a value the proxy can't read from the "
                             "statement text.")
_DEFAULT_LEXING = lexing_options()


@dataclass(frozen=True)
class Pin:
    """Why a session pinned, and the statement that did it (for the RDS-style log line)."""

    reason: str
    sql: str


class ReplyRelay:
    """Follows one command's reply; :meth:`feed` returns the server bytes to pass to the client.

    Packets are forwarded whole (a read that ends inside a packet keeps its tail for the next one),
    so if the server vanishes mid-reply the client can still be told so in a packet of its own, at
    :attr:`next_sequence`.  Raises ProtocolViolation when the server breaks the protocol.
    """

    def __init__(self, command: int, capabilities: int, max_payload: int) -> None:
        self.tracker = ResponseTracker(command, capabilities, validate_rows=False)
        self._splitter = PacketSplitter(max_payload, what="server")
        self._continued = bytearray()
        self.next_sequence = 1
        self.local_infile = False
        self.infile_sequence = 0

    @property
    def done(self) -> bool:
        return self.tracker.done

    @property
    def buffered(self) -> int:
        return self._splitter.buffered

    def feed(self, data: bytes) -> bytes:
        """Take server bytes; return the whole packets to forward.  After a LOCAL INFILE request
        (:attr:`local_infile`, at :attr:`infile_sequence`) nothing more is for the client."""
        frames = self._splitter.feed(data)
        tracker = self.tracker
        out = frames.data
        if self.local_infile:
            for _, start, end in frames.spans:
                tracker.feed(out[start + HEADER_SIZE:end])
            return b""
        for sequence_id, start, end in frames.spans:
            self.next_sequence = (sequence_id + 1) & 0xFF
            if end - start - HEADER_SIZE == MAX_PACKET_PAYLOAD:
                self._continued += out[start + HEADER_SIZE:end]
                continue
            payload = out[start + HEADER_SIZE:end]
            if self._continued:
                payload = bytes(self._continued) + payload
                self._continued.clear()
            if tracker.done:
                raise ProtocolViolation("the database sent bytes after a complete reply")
            if tracker.feed(payload) is PacketRole.LOCAL_INFILE:
                self.local_infile = True
                self.infile_sequence = sequence_id
                return out[:start]  # what came before the request; the server now waits for the file
        return out


class SessionTracker:
    """The pin, status and tracked settings of one client session; see the module docstring.

    ``classify(sql, **lexing)`` is the engine's pin classifier (a decision with ``.reason`` or
    None); the lexing keywords follow the session's last server status and are passed only when
    they differ from the defaults.  ``settings`` are the session's tracked variables (canonical
    name to normalised value), as :mod:`.tracked` reads them from the client's statements.
    """

    def __init__(self, classify: Callable[..., Any]) -> None:
        self._classify = classify
        self.pin: Pin | None = None
        self.status_flags = int(ServerStatus.AUTOCOMMIT)
        self.settings: dict[str, str] = {}
        self.state_changed = False

    @property
    def pinned(self) -> bool:
        return self.pin is not None

    @property
    def in_transaction(self) -> bool:
        return bool(self.status_flags & ServerStatus.IN_TRANS)

    @property
    def variant(self) -> tuple[tuple[str, str], ...]:
        """The pool key's variant for the session's tracked settings."""
        return pool_variant(self.settings)

    def inspect(self, command: int, payload: bytes, schema: str) -> tuple[Pin | None, TrackedChange | None]:
        """What a command does to the session before it runs: the pin it adds (None when none, or
        when the session is pinned already) and the tracked change it makes if it succeeds.

        ``schema`` is the session's current one (``DROP DATABASE`` of it leaves none).  A tracked
        variable set to a value the text does not reveal pins, as an untracked one would.
        """
        if command == Command.INIT_DB:
            return None, TrackedChange(schema=text(payload[1:]))
        if command == Command.STMT_PREPARE:
            return (Pin(BINARY_PREPARE_REASON, text(payload[1:])) if self.pin is None else None), None
        if command == Command.SET_OPTION:
            return (Pin(SET_OPTION_REASON, "COM_SET_OPTION") if self.pin is None else None), None
        if command != Command.QUERY:
            return None, None
        sql = text(payload[1:])
        options = lexing_options(status_flags=self.status_flags)
        if options == _DEFAULT_LEXING:
            options = {}
        pin = None
        if self.pin is None:
            decision = self._classify(sql, **options)
            if decision is not None:
                pin = Pin(decision.reason, sql)
        change = None
        if could_change_tracked(sql):
            change = statement_changes(sql, current_schema=schema, **options) or None
            if change is not None and change.unresolved and pin is None and self.pin is None:
                pin = Pin(UNRESOLVED_SETTING_REASON, sql)
        return pin, change

    def pinned_by(self, pin: Pin) -> None:
        self.pin = pin

    def reply_done(self, status_flags: int | None) -> None:
        """A reply is complete; its final status (None: it carried none, as an ERR) holds now."""
        if status_flags is not None:
            self.status_flags = status_flags

    def apply(self, change: TrackedChange) -> None:
        """A command that makes ``change`` succeeded: its tracked settings hold now."""
        self.settings = apply_change(self.settings, change)

    @property
    def at_release_point(self) -> bool:
        """The backend may go back to the pool: nothing open, nothing pinned, and the server's
        autocommit flag what the tracked settings say (otherwise the session changed autocommit
        in a way the proxy did not follow, and keeps its backend)."""
        flags = self.status_flags
        if self.pin is not None or flags & (ServerStatus.IN_TRANS | ServerStatus.MORE_RESULTS_EXISTS):
            return False
        return bool(flags & ServerStatus.AUTOCOMMIT) == (self.settings.get("autocommit") != "OFF")

    def release_state(self) -> ReleaseState:
        """How a backend released at a release point goes back: reset first if the session changed
        tracked state, so that the backend matches its own pool key again."""
        return ReleaseState.DIRTY if self.state_changed else ReleaseState.CLEAN

    def release_state_if_client_leaves(self, mid_reply: bool) -> ReleaseState:
        """A client left while its session held a backend: an open transaction or an unfinished
        reply costs the connection; a pinned or changed session is reset before reuse."""
        if mid_reply or self.in_transaction:
            return ReleaseState.BROKEN
        if self.pin is not None or self.state_changed or not self.at_release_point:
            return ReleaseState.DIRTY
        return ReleaseState.CLEAN

    def backend_released(self) -> None:
        self.state_changed = False

    def reset(self) -> None:
        """The session was reset (COM_RESET_CONNECTION, COM_CHANGE_USER): back to a fresh one's state."""
        self.pin = None
        self.status_flags = int(ServerStatus.AUTOCOMMIT)
        self.settings = {}
        self.state_changed = False
