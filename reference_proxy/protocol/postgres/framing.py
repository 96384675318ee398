"""Cheap framing for the hot path: split a byte stream into whole typed messages without decoding.

A proxy forwards most traffic untouched.  :class:`MessageSplitter` reads only each message's type
byte and length, checks both, and returns the complete messages as one contiguous ``bytes`` run plus
(type, start, end) spans.  The session writes the run in one call and decodes just the few spans
it cares about (Query, Parse, Close, ReadyForQuery...).  A partial trailing message stays buffered.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from reference_proxy.protocol.postgres.errors import ProtocolViolation

__all__ = [
    "BACKEND_TYPES",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FRONTEND_TYPES",
    "MAX_STARTUP_PACKET_SIZE",
    "Frames",
    "MessageSplitter",
    "peek_parse",
    "peek_query",
]

FRONTEND_TYPES = frozenset(b"QPBDECSHXdcfpF")
"""Type bytes a client may send after startup."""

BACKEND_TYPES = frozenset(b"RSKZTDCIENA123ntsGHWdcvV")
"""Type bytes a server may send."""

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""Messages longer than this are refused: it bounds the memory one peer can make us buffer."""

MAX_STARTUP_PACKET_SIZE = 10000
"""PostgreSQL's own limit on the untyped startup packet."""

_LEN = struct.Struct("!i")
_I16 = struct.Struct("!h")


class Frames(NamedTuple):
    """Whole messages split from the stream: ``data`` holds them back to back; each span is
    ``(type byte as int, start, end)`` with ``data[start:end]`` the full message (header included)."""

    data: bytes
    spans: list[tuple[int, int, int]]

    def body(self, index: int) -> bytes:
        """The body (after type byte and length) of the ``index``-th message."""
        _, start, end = self.spans[index]
        return self.data[start + 5:end]


class MessageSplitter:
    """Incrementally split one direction's typed messages; see the module docstring."""

    __slots__ = ("_allowed", "_buf", "_max", "_what")

    def __init__(self, allowed_types: frozenset[int], max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 what: str = "peer") -> None:
        self._allowed = allowed_types
        self._max = max_message_size
        self._buf = bytearray()
        self._what = what

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> Frames:
        """Add ``data``; return every message now complete. Raises ProtocolViolation.

        When nothing is held back from before (the usual case: a read ends on a message
        boundary), ``data`` is split where it lies and returned as is, without copying.
        """
        held = self._buf
        allowed, limit, unpack = self._allowed, self._max, _LEN.unpack_from
        if held:
            held += data
            if len(held) >= 5 and held[0] in allowed and 4 <= (length := unpack(held, 1)[0]) <= limit \
                    and len(held) < 1 + length:
                return Frames(b"", [])  # still inside one long message: no copy until it is whole
            buf = bytes(held)
            held.clear()
        else:
            buf = data
        spans: list[tuple[int, int, int]] = []
        pos, size = 0, len(buf)
        while size - pos >= 5:
            t = buf[pos]
            if t not in allowed:
                raise ProtocolViolation(f"{self._what} sent unknown message type {bytes([t])!r}")
            length = unpack(buf, pos + 1)[0]
            if length < 4:
                raise ProtocolViolation(f"{self._what} sent message {bytes([t])!r} with invalid length {length}")
            if length > limit:
                raise ProtocolViolation(f"{self._what} sent message {bytes([t])!r} of {length} bytes, "
                                        f"over the limit of {limit}")
            end = pos + 1 + length
            if end > size:
                break
            spans.append((t, pos, end))
            pos = end
        if pos == size:
            return Frames(buf, spans)
        held += memoryview(buf)[pos:]
        if not spans:
            return Frames(b"", spans)
        return Frames(buf[:pos], spans)


def peek_query(data: bytes, start: int, end: int) -> str | None:
    """The SQL of the Query message at ``data[start:end]``, read in place; None if the message is
    not plainly well formed (the caller then decodes it fully, which says what is wrong)."""
    last = end - 1
    if last < start + 5 or data[last] != 0 or data.find(b"\0", start + 5, last) != -1:
        return None
    try:
        return data[start + 5:last].decode("utf-8")
    except UnicodeDecodeError:
        return None


def peek_parse(data: bytes, start: int, end: int) -> tuple[str, str] | None:
    """(statement name, SQL) of the Parse message at ``data[start:end]``, read in place without
    building the parameter type list; None if not plainly well formed (see :func:`peek_query`)."""
    name_end = data.find(b"\0", start + 5, end)
    if name_end == -1:
        return None
    sql_end = data.find(b"\0", name_end + 1, end)
    if sql_end == -1 or end - sql_end < 3:
        return None
    count = _I16.unpack_from(data, sql_end + 1)[0]
    if count < 0 or end - (sql_end + 3) != 4 * count:
        return None
    try:
        return data[start + 5:name_end].decode("utf-8"), data[name_end + 1:sql_end].decode("utf-8")
    except UnicodeDecodeError:
        return None
