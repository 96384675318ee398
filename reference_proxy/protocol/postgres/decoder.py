"""Per-direction decoders: feed bytes with ``receive_data``, pull typed messages with ``next_event``.

A frontend decoder (what a server reads from a client) starts by expecting the untyped startup
packet and keeps expecting one after SSLRequest / GSSENCRequest, as the protocol does; after a
StartupMessage it reads typed messages.  A backend decoder (what a client reads from a server)
reads typed messages from the start; the single-byte answer to SSLRequest is read by the caller
before any bytes reach it.

``next_event`` returns :data:`NEED_DATA` when no whole message is buffered.  Anything malformed
raises :class:`ProtocolViolation` and leaves the decoder unusable (the connection must close).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any

from reference_proxy.protocol.postgres import auth, copy, extended, notices, simple_query, startup, status
from reference_proxy.protocol.postgres.errors import ProtocolViolation
from reference_proxy.protocol.postgres.framing import (
    BACKEND_TYPES,
    DEFAULT_MAX_MESSAGE_SIZE,
    FRONTEND_TYPES,
    MAX_STARTUP_PACKET_SIZE,
)

__all__ = ["NEED_DATA", "Decoder", "Direction", "decode_backend", "decode_frontend"]


class _NeedData:
    """Sentinel type: no complete message is buffered yet."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


class Direction(enum.Enum):
    """Who sends the bytes being decoded."""

    FRONTEND = "frontend"  # client -> server
    BACKEND = "backend"    # server -> client


_FRONTEND: dict[bytes, Callable[[bytes], Any]] = {
    b"Q": simple_query.Query.decode,
    b"X": simple_query.Terminate.decode,
    b"F": simple_query.FunctionCall.decode,
    b"P": extended.Parse.decode,
    b"B": extended.Bind.decode,
    b"D": extended.Describe.decode,
    b"E": extended.Execute.decode,
    b"C": extended.Close.decode,
    b"S": extended.Sync.decode,
    b"H": extended.Flush.decode,
    b"d": copy.CopyData.decode,
    b"c": copy.CopyDone.decode,
    b"f": copy.CopyFail.decode,
    b"p": auth.PasswordMessage.decode,
}

_BACKEND: dict[bytes, Callable[[bytes], Any]] = {
    b"R": auth.decode_authentication,
    b"S": status.ParameterStatus.decode,
    b"K": status.BackendKeyData.decode,
    b"Z": status.ReadyForQuery.decode,
    b"A": status.NotificationResponse.decode,
    b"T": simple_query.RowDescription.decode,
    b"D": simple_query.DataRow.decode,
    b"C": simple_query.CommandComplete.decode,
    b"I": simple_query.EmptyQueryResponse.decode,
    b"V": simple_query.FunctionCallResponse.decode,
    b"E": notices.ErrorResponse.decode,
    b"N": notices.NoticeResponse.decode,
    b"1": extended.ParseComplete.decode,
    b"2": extended.BindComplete.decode,
    b"3": extended.CloseComplete.decode,
    b"n": extended.NoData.decode,
    b"t": extended.ParameterDescription.decode,
    b"s": extended.PortalSuspended.decode,
    b"G": copy.CopyInResponse.decode,
    b"H": copy.CopyOutResponse.decode,
    b"W": copy.CopyBothResponse.decode,
    b"d": copy.CopyData.decode,
    b"c": copy.CopyDone.decode,
    b"v": startup.NegotiateProtocolVersion.decode,
}

assert {t[0] for t in _FRONTEND} == FRONTEND_TYPES and {t[0] for t in _BACKEND} == BACKEND_TYPES

_LEN = struct.Struct("!i")


def decode_frontend(type_byte: bytes, body: bytes) -> Any:
    """Decode one client message body (after startup); ProtocolViolation if unknown or malformed."""
    fn = _FRONTEND.get(type_byte)
    if fn is None:
        raise ProtocolViolation(f"client sent unknown message type {type_byte!r}")
    return fn(body)


def decode_backend(type_byte: bytes, body: bytes) -> Any:
    """Decode one server message body; ProtocolViolation if unknown or malformed."""
    fn = _BACKEND.get(type_byte)
    if fn is None:
        raise ProtocolViolation(f"server sent unknown message type {type_byte!r}")
    return fn(body)


class Decoder:
    """Turns one direction's byte stream into messages; see the module docstring."""

    def __init__(self, direction: Direction, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.direction = direction
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._in_startup = direction is Direction.FRONTEND
        self._broken: ProtocolViolation | None = None
        self._table = _FRONTEND if direction is Direction.FRONTEND else _BACKEND
        self._who = "client" if direction is Direction.FRONTEND else "server"

    @property
    def in_startup(self) -> bool:
        """True while the next client packet is an untyped startup packet."""
        return self._in_startup

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not yet decoded, to hand the stream to a MessageSplitter."""
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def next_raw(self) -> tuple[bytes, bytes] | _NeedData:
        """The next whole typed message as (type byte, body) without decoding the body."""
        if self._broken is not None:
            raise self._broken
        if self._in_startup:
            raise ProtocolViolation("next_raw() is for typed messages; the startup packet comes first")
        buf = self._buf
        if len(buf) < 5:
            return NEED_DATA
        t = bytes(buf[:1])
        length = _LEN.unpack_from(buf, 1)[0]
        try:
            if t not in self._table:
                raise ProtocolViolation(f"{self._who} sent unknown message type {t!r}")
            if length < 4:
                raise ProtocolViolation(f"{self._who} sent message {t!r} with invalid length {length}")
            if length > self.max_message_size:
                raise ProtocolViolation(f"{self._who} sent message {t!r} of {length} bytes, over the "
                                        f"limit of {self.max_message_size}")
        except ProtocolViolation as e:
            self._broken = e
            raise
        if len(buf) < 1 + length:
            return NEED_DATA
        body = bytes(buf[5:1 + length])
        del buf[:1 + length]
        return t, body

    def next_event(self) -> Any:
        """The next decoded message, or NEED_DATA. Raises ProtocolViolation on malformed input."""
        if self._broken is not None:
            raise self._broken
        try:
            if self._in_startup:
                return self._next_startup()
            raw = self.next_raw()
            if raw is NEED_DATA:
                return NEED_DATA
            t, body = raw
            return self._table[t](body)
        except ProtocolViolation as e:
            self._broken = e
            raise

    def _next_startup(self) -> Any:
        buf = self._buf
        if len(buf) < 4:
            return NEED_DATA
        length = _LEN.unpack_from(buf, 0)[0]
        limit = min(self.max_message_size, MAX_STARTUP_PACKET_SIZE)
        if length < 8 or length > limit:
            raise ProtocolViolation(f"invalid startup packet length {length}")
        if len(buf) < length:
            return NEED_DATA
        body = bytes(buf[4:length])
        del buf[:length]
        msg = startup.decode_startup_packet(body)
        if isinstance(msg, (startup.StartupMessage, startup.CancelRequest)):
            self._in_startup = False
        return msg
