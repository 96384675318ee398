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
        """Add ``data``; return every message now complete. Raises ProtocolViolation."""
        buf = self._buf
        buf += data
        spans: list[tuple[int, int, int]] = []
        pos, size = 0, len(buf)
        allowed, limit = self._allowed, self._max
        while size - pos >= 5:
            t = buf[pos]
            if t not in allowed:
                raise ProtocolViolation(f"{self._what} sent unknown message type {bytes([t])!r}")
            length = _LEN.unpack_from(buf, pos + 1)[0]
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
        if not spans:
            return Frames(b"", spans)
        out = bytes(buf[:pos])
        del buf[:pos]
        return Frames(out, spans)
