"""Packet framing: a 3-byte little-endian payload length, a 1-byte sequence id, then the payload.

A payload of 16 MiB - 1 bytes (0xFFFFFF) or more travels as a run of 0xFFFFFF-byte packets, each with
the next sequence id, ended by a shorter packet (empty when the payload is an exact multiple).  The
sequence id starts at 0 with each command and goes up by one per packet in either direction, so a
reply to a command sent at 0 starts at 1; a packet out of order is an error the server answers with
1156 and a close.

Three tools, from cheapest to fullest:

* :class:`PacketSplitter` cuts a stream into whole physical packets without decoding or copying
  payloads, for the hot path that forwards bytes and peeks at a few;
* :class:`PacketReader` joins continuation packets into logical payloads and checks sequence ids;
* :func:`encode_packet` frames one logical payload, splitting it when it is long.
"""

from __future__ import annotations

from typing import NamedTuple

from reference_proxy.protocol.mysql.errors import (
    ER_NET_PACKET_TOO_LARGE,
    ER_NET_PACKETS_OUT_OF_ORDER,
    LocalProtocolError,
    ProtocolViolation,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "HEADER_SIZE",
    "MAX_PACKET_PAYLOAD",
    "NEED_DATA",
    "Frames",
    "Packet",
    "PacketReader",
    "PacketSplitter",
    "encode_packet",
    "next_sequence_id",
]

HEADER_SIZE = 4
MAX_PACKET_PAYLOAD = 0xFFFFFF
"""The largest payload one physical packet carries; a packet this full is continued by the next."""

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
"""Logical payloads longer than this are refused: it bounds the memory one peer can make us buffer
(MySQL's own max_allowed_packet tops out at 1 GiB; MariaDB's default is 16 MiB)."""


class _NeedData:
    """Sentinel type: no complete packet is buffered yet."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


def next_sequence_id(sequence_id: int) -> int:
    """The id after ``sequence_id``; it wraps at 256."""
    return (sequence_id + 1) & 0xFF


def encode_packet(payload: bytes, sequence_id: int) -> tuple[bytes, int]:
    """Frame ``payload`` starting at ``sequence_id``; returns (wire bytes, the next sequence id)."""
    if not 0 <= sequence_id <= 0xFF:
        raise LocalProtocolError(f"sequence id {sequence_id} is not a byte")
    size = len(payload)
    if size < MAX_PACKET_PAYLOAD:
        return size.to_bytes(3, "little") + bytes((sequence_id,)) + payload, next_sequence_id(sequence_id)
    out = bytearray()
    view = memoryview(payload)
    pos = 0
    while True:
        chunk = view[pos:pos + MAX_PACKET_PAYLOAD]
        out += len(chunk).to_bytes(3, "little")
        out.append(sequence_id)
        out += chunk
        sequence_id = next_sequence_id(sequence_id)
        pos += len(chunk)
        if len(chunk) < MAX_PACKET_PAYLOAD:
            return bytes(out), sequence_id


class Packet(NamedTuple):
    """One logical payload and the sequence id of its first physical packet."""

    sequence_id: int
    payload: bytes


class Frames(NamedTuple):
    """Whole physical packets split from the stream: ``data`` holds them back to back; each span is
    ``(sequence id, start, end)`` with ``data[start:end]`` the full packet (header included)."""

    data: bytes
    spans: list[tuple[int, int, int]]

    def payload(self, index: int) -> bytes:
        """The payload (after the 4-byte header) of the ``index``-th packet."""
        _, start, end = self.spans[index]
        return self.data[start + HEADER_SIZE:end]

    def is_continued(self, index: int) -> bool:
        """True when the ``index``-th packet is full, so the next one continues its payload."""
        _, start, end = self.spans[index]
        return end - start - HEADER_SIZE == MAX_PACKET_PAYLOAD


def _too_large(who: str, size: int, limit: int) -> ProtocolViolation:
    return ProtocolViolation(f"{who} sent a packet of {size} bytes or more, over the limit of {limit}",
                             ER_NET_PACKET_TOO_LARGE)


class PacketSplitter:
    """Incrementally split one direction's stream into whole physical packets; see the module docstring.

    Continuation packets are returned as they are (the caller forwards them); :attr:`in_continuation`
    says whether the last packet returned leaves a logical payload unfinished.
    """

    __slots__ = ("_buf", "_continued_size", "_max", "_what")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD, what: str = "peer") -> None:
        self._max = max_payload
        self._buf = bytearray()
        self._continued_size = 0
        self._what = what

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buf)

    @property
    def in_continuation(self) -> bool:
        return self._continued_size > 0

    def feed(self, data: bytes) -> Frames:
        """Add ``data``; return every packet now complete. Raises ProtocolViolation when too large.

        When nothing is held back from before (the usual case: a read ends on a packet boundary),
        ``data`` is split where it lies and returned as is, without copying.
        """
        held = self._buf
        if held:
            held += data
            if len(held) >= HEADER_SIZE and len(held) < HEADER_SIZE + int.from_bytes(held[:3], "little"):
                return Frames(b"", [])  # still inside one long packet: no copy until it is whole
            buf = bytes(held)
            held.clear()
        else:
            buf = data
        spans: list[tuple[int, int, int]] = []
        pos, size, limit, continued = 0, len(buf), self._max, self._continued_size
        while size - pos >= HEADER_SIZE:
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            if continued + length > limit:
                raise _too_large(self._what, continued + length, limit)
            end = pos + HEADER_SIZE + length
            if end > size:
                break
            spans.append((buf[pos + 3], pos, end))
            continued = continued + length if length == MAX_PACKET_PAYLOAD else 0
            pos = end
        self._continued_size = continued
        if pos == size:
            return Frames(buf, spans)
        held += memoryview(buf)[pos:]
        if not spans:
            return Frames(b"", spans)
        return Frames(buf[:pos], spans)


class PacketReader:
    """Turns one direction's stream into logical :class:`Packet` s, joining continuations.

    ``expected_sequence`` is the id the next physical packet must carry (None: accept any, then
    follow on from it).  Set it to 0 before reading a command and to 1 before reading its reply;
    a mismatch raises ProtocolViolation 1156, and the reader stays broken afterwards.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD, *, what: str = "peer",
                 expected_sequence: int | None = None) -> None:
        self.max_payload = max_payload
        self.expected_sequence = expected_sequence
        self._what = what
        self._buf = bytearray()
        self._broken: ProtocolViolation | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def whole_packet(self, data: bytes) -> Packet | None:
        """``data`` as one packet when nothing is buffered and it holds exactly one whole packet
        of the expected sequence (a command in one read, as most are), without buffering it;
        None otherwise: then :meth:`receive_data` and :meth:`next_packet` as usual."""
        size = len(data)
        if self._buf or self._broken is not None or size < HEADER_SIZE:
            return None
        length = data[0] | data[1] << 8 | data[2] << 16
        seq = data[3]
        if size != HEADER_SIZE + length or length >= MAX_PACKET_PAYLOAD or length > self.max_payload:
            return None
        expected = self.expected_sequence
        if expected is not None and seq != expected:
            return None  # next_packet() raises for it
        self.expected_sequence = next_sequence_id(seq)
        return Packet(seq, data[HEADER_SIZE:])

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not yet read, to hand the stream to a PacketSplitter."""
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def next_packet(self) -> Packet | _NeedData:
        """The next whole logical payload, or NEED_DATA. Raises ProtocolViolation."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._next()
        except ProtocolViolation as e:
            self._broken = e
            raise

    def _next(self) -> Packet | _NeedData:
        buf = self._buf
        pos, total, size = 0, 0, len(buf)
        first_seq = -1
        expected = self.expected_sequence
        while True:
            if size - pos < HEADER_SIZE:
                return NEED_DATA
            length = int.from_bytes(buf[pos:pos + 3], "little")
            seq = buf[pos + 3]
            if expected is not None and seq != expected:
                raise ProtocolViolation(f"{self._what} sent sequence id {seq}, expected {expected}",
                                        ER_NET_PACKETS_OUT_OF_ORDER)
            total += length
            if total > self.max_payload:
                raise _too_large(self._what, total, self.max_payload)
            if size - pos - HEADER_SIZE < length:
                return NEED_DATA
            if first_seq < 0:
                first_seq = seq
            expected = next_sequence_id(seq)
            pos += HEADER_SIZE + length
            if length < MAX_PACKET_PAYLOAD:
                break
        if pos == HEADER_SIZE + total:
            payload = bytes(buf[HEADER_SIZE:pos])
        else:
            chunks, p = [], 0
            while p < pos:
                length = int.from_bytes(buf[p:p + 3], "little")
                chunks.append(buf[p + HEADER_SIZE:p + HEADER_SIZE + length])
                p += HEADER_SIZE + length
            payload = b"".join(chunks)
        del buf[:pos]
        self.expected_sequence = expected
        return Packet(first_seq, payload)
