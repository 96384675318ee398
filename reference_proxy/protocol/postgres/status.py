"""Session status messages from the backend: ParameterStatus, BackendKeyData, ReadyForQuery,
NotificationResponse.

ReadyForQuery's status byte is how the proxy sees transaction boundaries: ``I`` idle (the backend
may go back to the pool), ``T`` in a transaction block, ``E`` in a failed transaction block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.postgres.errors import ProtocolViolation
from reference_proxy.protocol.postgres.wire import BodyReader, cstring, frame, int32

__all__ = [
    "TX_FAILED",
    "TX_IDLE",
    "TX_IN_BLOCK",
    "BackendKeyData",
    "NotificationResponse",
    "ParameterStatus",
    "ReadyForQuery",
]

TX_IDLE = "I"
TX_IN_BLOCK = "T"
TX_FAILED = "E"


@dataclass(frozen=True)
class ParameterStatus:
    """Backend: the current value of a reported run-time parameter (server_version, TimeZone...)."""

    TYPE: ClassVar[bytes] = b"S"
    name: str
    value: str

    @classmethod
    def decode(cls, body: bytes) -> ParameterStatus:
        r = BodyReader(body, "ParameterStatus")
        name, value = r.cstring(), r.cstring()
        r.end()
        return cls(name, value)

    def encode(self) -> bytes:
        return frame(self.TYPE, cstring(self.name) + cstring(self.value))


@dataclass(frozen=True)
class BackendKeyData:
    """Backend: the (pid, secret) a CancelRequest must quote.

    Protocol 3.0 uses a 4-byte secret; 3.2 allows up to 256 bytes, kept here as raw bytes.
    """

    TYPE: ClassVar[bytes] = b"K"
    process_id: int
    secret_key: bytes

    @classmethod
    def decode(cls, body: bytes) -> BackendKeyData:
        r = BodyReader(body, "BackendKeyData")
        pid = r.int32()
        secret = r.rest()
        if not 4 <= len(secret) <= 256:
            raise ProtocolViolation(f"BackendKeyData: secret key of {len(secret)} bytes")
        return cls(pid, secret)

    @classmethod
    def from_ints(cls, process_id: int, secret: int) -> BackendKeyData:
        return cls(process_id, int32(secret))

    @property
    def secret_int(self) -> int:
        """The protocol-3.0 secret as the signed int32 a CancelRequest carries."""
        return int.from_bytes(self.secret_key[:4], "big", signed=True)

    def encode(self) -> bytes:
        return frame(self.TYPE, int32(self.process_id) + self.secret_key)


@dataclass(frozen=True)
class ReadyForQuery:
    """Backend: ready for the next command; ``status`` is I, T or E (see module docstring)."""

    TYPE: ClassVar[bytes] = b"Z"
    status: str

    @classmethod
    def decode(cls, body: bytes) -> ReadyForQuery:
        r = BodyReader(body, "ReadyForQuery")
        status = r.byte().decode("latin-1")
        r.end()
        if status not in (TX_IDLE, TX_IN_BLOCK, TX_FAILED):
            raise ProtocolViolation(f"ReadyForQuery: unknown transaction status {status!r}")
        return cls(status)

    def encode(self) -> bytes:
        return frame(self.TYPE, self.status.encode("latin-1"))


@dataclass(frozen=True)
class NotificationResponse:
    """Backend: a NOTIFY arrived on a channel this session LISTENs to."""

    TYPE: ClassVar[bytes] = b"A"
    process_id: int
    channel: str
    payload: str

    @classmethod
    def decode(cls, body: bytes) -> NotificationResponse:
        r = BodyReader(body, "NotificationResponse")
        pid, channel, payload = r.int32(), r.cstring(), r.cstring()
        r.end()
        return cls(pid, channel, payload)

    def encode(self) -> bytes:
        return frame(self.TYPE, int32(self.process_id) + cstring(self.channel) + cstring(self.payload))
