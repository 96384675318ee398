"""The generic server replies: OK, ERR, EOF, and the LOCAL INFILE request.

Their first payload byte tells them apart: ``00`` OK, ``ff`` ERR, ``fe`` EOF (or, under
CLIENT_DEPRECATE_EOF, an OK that ends a result set), ``fb`` LOCAL INFILE.  OK and EOF carry the server
status flags (is a transaction open? do more results follow?); ERR carries none, so after an error the
last status seen still holds (an error inside ``BEGIN`` leaves the transaction open).

A ``fe`` packet is an EOF only when it is shorter than 9 bytes; under DEPRECATE_EOF any ``fe`` packet
shorter than a full 0xFFFFFF-byte packet ends a result set, because a row beginning with ``fe`` (an
8-byte length) is at least that long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.mysql.errors import LocalProtocolError, ProtocolViolation
from reference_proxy.protocol.mysql.flags import Capability, ServerStatus
from reference_proxy.protocol.mysql.framing import MAX_PACKET_PAYLOAD
from reference_proxy.protocol.mysql.wire import (
    PayloadReader,
    encode_text,
    fixed_int,
    lenenc_bytes,
    lenenc_int,
    text,
)

__all__ = [
    "EOF_HEADER",
    "ERR_HEADER",
    "LOCAL_INFILE_HEADER",
    "OK_HEADER",
    "EofPacket",
    "ErrPacket",
    "LocalInfileRequest",
    "OkPacket",
    "decode_response",
    "is_eof_packet",
    "is_result_set_terminator",
]

OK_HEADER = 0x00
EOF_HEADER = 0xFE
ERR_HEADER = 0xFF
LOCAL_INFILE_HEADER = 0xFB

PROGRESS_REPORT_CODE = 0xFFFF
"""MariaDB sends progress reports as ERR packets with this code; they end nothing."""


def is_eof_packet(payload: bytes) -> bool:
    """A classic EOF: ``fe`` and under 9 bytes."""
    return len(payload) < 9 and payload[:1] == b"\xfe"


def is_result_set_terminator(payload: bytes, capabilities: int) -> bool:
    """Whether a packet in the rows phase ends the result set (EOF, or its OK stand-in)."""
    if payload[:1] != b"\xfe":
        return False
    if capabilities & Capability.DEPRECATE_EOF:
        return len(payload) < MAX_PACKET_PAYLOAD
    return len(payload) < 9


@dataclass(frozen=True)
class OkPacket:
    """Server: the command succeeded.  ``header`` is 0xFE when it stands in for an EOF."""

    affected_rows: int = 0
    last_insert_id: int = 0
    status_flags: int = ServerStatus.AUTOCOMMIT
    warnings: int = 0
    info: str = ""
    session_state_changes: bytes = b""
    header: int = OK_HEADER

    HEADERS: ClassVar[frozenset[int]] = frozenset((OK_HEADER, EOF_HEADER))

    @property
    def status(self) -> ServerStatus:
        return ServerStatus(self.status_flags)

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> OkPacket:
        r = PayloadReader(payload, "OK packet")
        header = r.u8()
        if header not in cls.HEADERS:
            raise ProtocolViolation(f"OK packet: header {header:#04x} is neither 0x00 nor 0xfe")
        affected, insert_id, status, warnings = r.lenenc_int(), r.lenenc_int(), r.u16(), r.u16()
        info, state = "", b""
        if capabilities & Capability.SESSION_TRACK:
            if r.remaining():
                info = r.lenenc_text()
            if status & ServerStatus.SESSION_STATE_CHANGED and r.remaining():
                state = r.lenenc_bytes()
            r.end()
        elif r.remaining():
            rest = r.rest()
            # MariaDB length-prefixes the info even without SESSION_TRACK; older servers do not.
            inner = PayloadReader(rest, "OK packet info")
            try:
                candidate = inner.lenenc_bytes()
                info = text(candidate) if inner.remaining() == 0 else text(rest)
            except ProtocolViolation:
                info = text(rest)
        return cls(affected, insert_id, status, warnings, info, state, header)

    def encode(self, capabilities: int = 0) -> bytes:
        out = (bytes((self.header,)) + lenenc_int(self.affected_rows) + lenenc_int(self.last_insert_id)
               + fixed_int(self.status_flags, 2) + fixed_int(self.warnings, 2))
        if capabilities & Capability.SESSION_TRACK:
            if self.info or self.status_flags & ServerStatus.SESSION_STATE_CHANGED:
                out += lenenc_bytes(self.info)
            if self.status_flags & ServerStatus.SESSION_STATE_CHANGED:
                out += lenenc_bytes(self.session_state_changes)
        else:
            if self.session_state_changes:
                raise LocalProtocolError("session state changes need CLIENT_SESSION_TRACK")
            if self.info:
                out += lenenc_bytes(self.info)
        return out


@dataclass(frozen=True)
class ErrPacket:
    """Server: the command failed (or, code 0xFFFF, a MariaDB progress report)."""

    error_code: int
    message: str
    sqlstate: str = "HY000"

    @property
    def is_progress_report(self) -> bool:
        return self.error_code == PROGRESS_REPORT_CODE

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ErrPacket:
        r = PayloadReader(payload, "ERR packet")
        if r.u8() != ERR_HEADER:
            raise ProtocolViolation("ERR packet: header is not 0xff")
        code = r.u16()
        sqlstate = ""
        if r.remaining() and r.peek() == ord("#"):
            r.raw(1)
            sqlstate = text(r.raw(5))
        return cls(code, text(r.rest()), sqlstate)

    def encode(self, capabilities: int = 0) -> bytes:
        state = encode_text(self.sqlstate)
        if len(state) not in (0, 5):
            raise LocalProtocolError(f"SQLSTATE {self.sqlstate!r} is not 5 characters")
        marker = b"#" + state if state else b""
        return b"\xff" + fixed_int(self.error_code, 2) + marker + encode_text(self.message)


@dataclass(frozen=True)
class EofPacket:
    """Server: end of column definitions or rows, in the classic (pre DEPRECATE_EOF) protocol."""

    warnings: int = 0
    status_flags: int = ServerStatus.AUTOCOMMIT

    @property
    def status(self) -> ServerStatus:
        return ServerStatus(self.status_flags)

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> EofPacket:
        if not is_eof_packet(payload):
            raise ProtocolViolation(f"EOF packet: not a 0xfe packet under 9 bytes ({len(payload)} bytes)")
        r = PayloadReader(payload, "EOF packet")
        r.u8()
        if not r.remaining():
            return cls(0, 0)  # the pre-4.1 form: a lone fe
        warnings, status = r.u16(), r.u16()
        r.end()
        return cls(warnings, status)

    def encode(self, capabilities: int = 0) -> bytes:
        return b"\xfe" + fixed_int(self.warnings, 2) + fixed_int(self.status_flags, 2)


@dataclass(frozen=True)
class LocalInfileRequest:
    """Server, in reply to a query: send me the contents of this client-side file.

    The proxy never lets this through: it clears CLIENT_LOCAL_FILES toward the backend and refuses
    the request with an ERR if one arrives anyway.
    """

    filename: str

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> LocalInfileRequest:
        r = PayloadReader(payload, "LOCAL INFILE request")
        if r.u8() != LOCAL_INFILE_HEADER:
            raise ProtocolViolation("LOCAL INFILE request: header is not 0xfb")
        return cls(text(r.rest()))

    def encode(self, capabilities: int = 0) -> bytes:
        return b"\xfb" + encode_text(self.filename)


def decode_response(payload: bytes, capabilities: int = 0
                    ) -> OkPacket | ErrPacket | EofPacket | LocalInfileRequest:
    """A reply whose kind is told by its first byte. Raises ProtocolViolation for anything else."""
    if not payload:
        raise ProtocolViolation("empty reply packet")
    header = payload[0]
    if header == OK_HEADER:
        return OkPacket.decode(payload, capabilities)
    if header == ERR_HEADER:
        return ErrPacket.decode(payload, capabilities)
    if header == EOF_HEADER:
        if capabilities & Capability.DEPRECATE_EOF:
            return OkPacket.decode(payload, capabilities)
        if is_eof_packet(payload):
            return EofPacket.decode(payload, capabilities)
        raise ProtocolViolation(f"reply starting 0xfe is {len(payload)} bytes, too long for an EOF")
    if header == LOCAL_INFILE_HEADER:
        return LocalInfileRequest.decode(payload, capabilities)
    raise ProtocolViolation(f"unexpected reply packet starting {header:#04x}")
