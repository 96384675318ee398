"""Byte-level helpers shared by the message modules: a bounds-checked reader and frame builders.

Every read checks bounds and raises :class:`ProtocolViolation` instead of ``struct.error`` or
``IndexError``, so a decoder never leaks a low-level exception for a truncated message.
"""

from __future__ import annotations

import struct

from reference_proxy.protocol.postgres.errors import LocalProtocolError, ProtocolViolation

__all__ = ["BodyReader", "cstring", "frame", "int16", "int32", "uint32"]

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")


class BodyReader:
    """Reads fields from one message body, in order; ``what`` names the message in errors."""

    __slots__ = ("_buf", "_pos", "_what")

    def __init__(self, body: bytes, what: str) -> None:
        self._buf = bytes(body)
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._buf):
            raise ProtocolViolation(f"{self._what}: message truncated (wanted {n} more bytes at offset "
                                    f"{self._pos}, body is {len(self._buf)} bytes)")
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def byte(self) -> bytes:
        return self._take(1)

    def int16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def uint16(self) -> int:
        return self.int16() & 0xFFFF

    def int32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def uint32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def cstring_bytes(self) -> bytes:
        end = self._buf.find(b"\0", self._pos)
        if end < 0:
            raise ProtocolViolation(f"{self._what}: string field is not NUL-terminated")
        out = self._buf[self._pos:end]
        self._pos = end + 1
        return out

    def cstring(self) -> str:
        data = self.cstring_bytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(f"{self._what}: string field is not valid UTF-8") from None

    def count(self, what: str) -> int:
        """An int16 element count, which may not be negative."""
        n = self.int16()
        if n < 0:
            raise ProtocolViolation(f"{self._what}: negative {what} count {n}")
        return n

    def rest(self) -> bytes:
        out = self._buf[self._pos:]
        self._pos = len(self._buf)
        return out

    def remaining(self) -> int:
        return len(self._buf) - self._pos

    def end(self) -> None:
        """Assert the body was fully consumed: trailing bytes are a violation too."""
        if self._pos != len(self._buf):
            raise ProtocolViolation(f"{self._what}: {len(self._buf) - self._pos} unexpected trailing bytes")


def cstring(value: str | bytes) -> bytes:
    """A NUL-terminated string field; refuses embedded NULs, which would corrupt the frame."""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if b"\0" in data:
        raise LocalProtocolError(f"string field contains a NUL byte: {data[:40]!r}")
    return data + b"\0"


def int16(value: int) -> bytes:
    try:
        return _I16.pack(value)
    except struct.error:
        raise LocalProtocolError(f"{value} does not fit in an int16 field") from None


def int32(value: int) -> bytes:
    try:
        return _I32.pack(value)
    except struct.error:
        raise LocalProtocolError(f"{value} does not fit in an int32 field") from None


def uint32(value: int) -> bytes:
    try:
        return _U32.pack(value)
    except struct.error:
        raise LocalProtocolError(f"{value} does not fit in a uint32 field") from None


def frame(type_byte: bytes, body: bytes = b"") -> bytes:
    """A typed message: type byte, int32 length (counting itself), body."""
    return type_byte + _I32.pack(len(body) + 4) + body
