"""The untyped packets a client sends first: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.

They carry no type byte: an int32 length, then an int32 code that is either a protocol version
(major << 16 | minor) or one of three magic request codes.  Also here: NegotiateProtocolVersion,
the backend's answer to a newer minor version or unknown ``_pq_.`` options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.postgres.errors import ProtocolViolation
from reference_proxy.protocol.postgres.wire import BodyReader, cstring, frame, int32

__all__ = [
    "CANCEL_REQUEST_CODE",
    "GSSENC_REQUEST_CODE",
    "PROTOCOL_3_0",
    "SSL_REQUEST_CODE",
    "CancelRequest",
    "GSSENCRequest",
    "NegotiateProtocolVersion",
    "SSLRequest",
    "StartupMessage",
    "decode_startup_packet",
]

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
PROTOCOL_3_0 = 3 << 16


def _untyped(body: bytes) -> bytes:
    return int32(len(body) + 4) + body


@dataclass(frozen=True)
class SSLRequest:
    """The client asks to switch to TLS; the server answers one byte, ``S`` or ``N``."""

    def encode(self) -> bytes:
        return _untyped(int32(SSL_REQUEST_CODE))


@dataclass(frozen=True)
class GSSENCRequest:
    """The client asks for GSSAPI encryption; we always answer ``N``."""

    def encode(self) -> bytes:
        return _untyped(int32(GSSENC_REQUEST_CODE))


@dataclass(frozen=True)
class CancelRequest:
    """Sent on a fresh connection: cancel whatever the session with this key is running."""

    process_id: int
    secret_key: int

    def encode(self) -> bytes:
        return _untyped(int32(CANCEL_REQUEST_CODE) + int32(self.process_id) + int32(self.secret_key))


@dataclass(frozen=True)
class StartupMessage:
    """The client's startup parameters (``user``, ``database``, runtime settings).

    ``parameters`` keeps the client's order; for a protocol major version other than 3 the
    body format is unknown to us, so ``parameters`` is empty and the session rejects it.
    """

    protocol_version: int
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def major(self) -> int:
        return self.protocol_version >> 16

    @property
    def minor(self) -> int:
        return self.protocol_version & 0xFFFF

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.parameters:
            if key == name:
                return value
        return default

    def as_dict(self) -> dict[str, str]:
        return dict(self.parameters)

    def encode(self) -> bytes:
        body = int32(self.protocol_version)
        for key, value in self.parameters:
            body += cstring(key) + cstring(value)
        return _untyped(body + b"\0")


@dataclass(frozen=True)
class NegotiateProtocolVersion:
    """Backend: 'I speak only up to this minor version, and ignored these ``_pq_.`` options'."""

    TYPE: ClassVar[bytes] = b"v"
    newest_minor: int
    unrecognized: tuple[str, ...] = ()

    def encode(self) -> bytes:
        body = int32(self.newest_minor) + int32(len(self.unrecognized))
        body += b"".join(cstring(o) for o in self.unrecognized)
        return frame(self.TYPE, body)

    @classmethod
    def decode(cls, body: bytes) -> NegotiateProtocolVersion:
        r = BodyReader(body, "NegotiateProtocolVersion")
        minor = r.int32()
        n = r.int32()
        if n < 0 or n > r.remaining():
            raise ProtocolViolation(f"NegotiateProtocolVersion: bad option count {n}")
        opts = tuple(r.cstring() for _ in range(n))
        r.end()
        return cls(minor, opts)


def decode_startup_packet(body: bytes) -> SSLRequest | GSSENCRequest | CancelRequest | StartupMessage:
    """Decode the body (everything after the int32 length) of a client's first packet."""
    r = BodyReader(body, "startup packet")
    code = r.int32()
    if code == SSL_REQUEST_CODE:
        r.end()
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        r.end()
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        pid, secret = r.int32(), r.int32()
        r.end()
        return CancelRequest(pid, secret)
    if (code >> 16) != 3:
        # Not a 3.x layout: do not guess at the rest; the session rejects the version.
        return StartupMessage(code & 0xFFFFFFFF, ())
    params: list[tuple[str, str]] = []
    while True:
        key = r.cstring()
        if key == "":
            break
        params.append((key, r.cstring()))
    r.end()
    return StartupMessage(code, tuple(params))
