"""COPY sub-protocol: the backend announces CopyIn/CopyOut/CopyBoth, then CopyData flows until
CopyDone (or the client's CopyFail)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.postgres.errors import ProtocolViolation
from reference_proxy.protocol.postgres.wire import BodyReader, cstring, frame, int16

__all__ = ["CopyBothResponse", "CopyData", "CopyDone", "CopyFail", "CopyInResponse", "CopyOutResponse"]


class _CopyResponse:
    """Shared layout: overall format (0 text, 1 binary) and one format code per column."""

    TYPE: ClassVar[bytes]
    overall_format: int
    column_formats: tuple[int, ...]

    @classmethod
    def decode(cls, body: bytes):
        r = BodyReader(body, cls.__name__)
        fmt = r.raw(1)[0]
        if fmt not in (0, 1):
            raise ProtocolViolation(f"{cls.__name__}: overall format must be 0 or 1, got {fmt}")
        cols = tuple(r.int16() for _ in range(r.count("column")))
        r.end()
        return cls(fmt, cols)

    def encode(self) -> bytes:
        body = bytes([self.overall_format]) + int16(len(self.column_formats))
        return frame(self.TYPE, body + b"".join(int16(c) for c in self.column_formats))


@dataclass(frozen=True)
class CopyInResponse(_CopyResponse):
    """Backend: COPY FROM STDIN started; the client now sends CopyData."""

    TYPE: ClassVar[bytes] = b"G"
    overall_format: int
    column_formats: tuple[int, ...]


@dataclass(frozen=True)
class CopyOutResponse(_CopyResponse):
    """Backend: COPY TO STDOUT started; CopyData follows from the backend."""

    TYPE: ClassVar[bytes] = b"H"
    overall_format: int
    column_formats: tuple[int, ...]


@dataclass(frozen=True)
class CopyBothResponse(_CopyResponse):
    """Backend: both directions stream CopyData (replication; refused by the proxy at startup)."""

    TYPE: ClassVar[bytes] = b"W"
    overall_format: int
    column_formats: tuple[int, ...]


@dataclass(frozen=True)
class CopyData:
    """Either direction: a chunk of COPY data."""

    TYPE: ClassVar[bytes] = b"d"
    data: bytes

    @classmethod
    def decode(cls, body: bytes) -> CopyData:
        return cls(bytes(body))

    def encode(self) -> bytes:
        return frame(self.TYPE, self.data)


@dataclass(frozen=True)
class CopyDone:
    """Either direction: no more CopyData."""

    TYPE: ClassVar[bytes] = b"c"

    @classmethod
    def decode(cls, body: bytes) -> CopyDone:
        BodyReader(body, "CopyDone").end()
        return cls()

    def encode(self) -> bytes:
        return frame(self.TYPE)


@dataclass(frozen=True)
class CopyFail:
    """Frontend: abort COPY FROM STDIN with this message."""

    TYPE: ClassVar[bytes] = b"f"
    message: str

    @classmethod
    def decode(cls, body: bytes) -> CopyFail:
        r = BodyReader(body, "CopyFail")
        msg = r.cstring()
        r.end()
        return cls(msg)

    def encode(self) -> bytes:
        return frame(self.TYPE, cstring(self.message))
