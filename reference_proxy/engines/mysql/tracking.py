"""What one MySQL client session's commands and replies mean for its backend, without I/O.

Two small machines the session drives:

* :class:`ReplyRelay` follows one command's reply in the raw server stream.  It splits whole
  physical packets (forwarded as they are, so replies reach clients byte for byte), hands each
  logical payload to a :class:`ResponseTracker` and says when the reply is complete.  A LOCAL INFILE
  request is held back: the proxy never lets a server read files through it.
* :class:`SessionTracker` keeps the session's last server status, its pin and whether the held
  backend's session no longer matches its pool key (the schema changed).  It answers the release
  rule: a backend goes back to the pool after a complete reply whose status has no open
  transaction, unless the session is pinned.

Autocommit: a session that turned autocommit off keeps its backend until it turns it on again.
Autocommit is tracked state in RDS Proxy (it partitions the pool instead of pinning); until the
pool partitions on it, holding the backend is the way that never hands one client's setting to
another.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reference_proxy.contracts import ReleaseState
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

__all__ = ["BINARY_PREPARE_REASON", "Pin", "ReplyRelay", "SessionTracker", "schema_of_use"]

BINARY_PREPARE_REASON = "A prepared statement was created with the binary protocol (COM_STMT_PREPARE)."

_USE = re.compile(r"^\s*use\s+(?:`((?:[^`]|``)+)`|([A-Za-z0-9_$]+))\s*;?\s*$", re.IGNORECASE | re.DOTALL)


def schema_of_use(sql: str) -> str | None:
    """The schema a plain ``USE name`` statement selects; None for any other text."""
    match = _USE.match(sql)
    if match is None:
        return None
    quoted, bare = match.groups()
    return quoted.replace("``", "`") if quoted is not None else bare


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
    """The pin, status and schema bookkeeping of one client session; see the module docstring.

    ``classify(sql)`` is the engine's pin classifier (a decision with ``.reason`` or None).
    """

    def __init__(self, classify: Callable[[str], Any]) -> None:
        self._classify = classify
        self.pin: Pin | None = None
        self.status_flags = int(ServerStatus.AUTOCOMMIT)
        self.schema_changed = False

    @property
    def pinned(self) -> bool:
        return self.pin is not None

    @property
    def in_transaction(self) -> bool:
        return bool(self.status_flags & ServerStatus.IN_TRANS)

    def pin_for(self, command: int, payload: bytes) -> Pin | None:
        """The pin this command adds (None when it adds none or the session is pinned already)."""
        if self.pin is not None:
            return None
        if command == Command.STMT_PREPARE:
            return Pin(BINARY_PREPARE_REASON, text(payload[1:]))
        if command == Command.QUERY:
            sql = text(payload[1:])
            decision = self._classify(sql)
            if decision is not None:
                return Pin(decision.reason, sql)
        return None

    def pinned_by(self, pin: Pin) -> None:
        self.pin = pin

    def reply_done(self, status_flags: int | None) -> None:
        """A reply is complete; its final status (None: it carried none, as an ERR) holds now."""
        if status_flags is not None:
            self.status_flags = status_flags

    @property
    def at_release_point(self) -> bool:
        """The backend may go back to the pool: nothing open, nothing pinned."""
        flags = self.status_flags
        return (self.pin is None and not flags & (ServerStatus.IN_TRANS | ServerStatus.MORE_RESULTS_EXISTS)
                and bool(flags & ServerStatus.AUTOCOMMIT))

    def release_state(self) -> ReleaseState:
        """How a backend released at a release point goes back: reset first if its schema changed."""
        return ReleaseState.DIRTY if self.schema_changed else ReleaseState.CLEAN

    def release_state_if_client_leaves(self, mid_reply: bool) -> ReleaseState:
        """A client left while its session held a backend: an open transaction or an unfinished
        reply costs the connection; a pinned or changed session is reset before reuse."""
        if mid_reply or self.in_transaction:
            return ReleaseState.BROKEN
        if self.pin is not None or self.schema_changed or not self.status_flags & ServerStatus.AUTOCOMMIT:
            return ReleaseState.DIRTY
        return ReleaseState.CLEAN

    def backend_released(self) -> None:
        self.schema_changed = False

    def reset(self) -> None:
        """The session was reset (COM_RESET_CONNECTION, COM_CHANGE_USER): back to a fresh one's state."""
        self.pin = None
        self.status_flags = int(ServerStatus.AUTOCOMMIT)
        self.schema_changed = False
