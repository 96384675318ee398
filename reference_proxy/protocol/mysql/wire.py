"""Field encodings of the MySQL protocol: fixed little-endian integers, length-encoded integers and
strings, NUL-terminated strings, and a bounds-checked reader over one packet payload.

Every read checks bounds and raises :class:`ProtocolViolation` instead of ``struct.error`` or
``IndexError``, so a decoder never leaks a low-level exception for a truncated packet.
"""

from __future__ import annotations

from reference_proxy.protocol.mysql.errors import ER_MALFORMED_PACKET, LocalProtocolError, ProtocolViolation

__all__ = [
    "NULL_LENENC",
    "PayloadReader",
    "encode_text",
    "fixed_int",
    "lenenc_bytes",
    "lenenc_int",
    "nul_string",
    "text",
]

NULL_LENENC = 0xFB
"""In a text row, this first byte stands for SQL NULL instead of a length."""


def text(data: bytes) -> str:
    """A protocol string as ``str``.  Clients may speak any character set, so bytes that are not UTF-8
    are kept as surrogate escapes: decoding never fails and :func:`encode_text` gives them back."""
    return data.decode("utf-8", "surrogateescape")


def encode_text(value: str | bytes) -> bytes:
    """The bytes of a protocol string; the inverse of :func:`text`."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


class PayloadReader:
    """Reads fields from one packet payload, in order; ``what`` names the message in errors."""

    __slots__ = ("_buf", "_code", "_pos", "_what")

    def __init__(self, payload: bytes, what: str, *, error_code: int = ER_MALFORMED_PACKET) -> None:
        self._buf = bytes(payload)
        self._pos = 0
        self._what = what
        self._code = error_code

    @property
    def position(self) -> int:
        return self._pos

    def _take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._buf):
            raise ProtocolViolation(f"{self._what}: packet truncated (wanted {n} more bytes at offset "
                                    f"{self._pos}, payload is {len(self._buf)} bytes)", self._code)
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def int(self, size: int) -> int:
        """A fixed-length unsigned little-endian integer of ``size`` bytes."""
        return int.from_bytes(self._take(size), "little")

    def u8(self) -> int:
        return self.int(1)

    def u16(self) -> int:
        return self.int(2)

    def u32(self) -> int:
        return self.int(4)

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def peek(self) -> int:
        """The next byte without consuming it."""
        if self._pos >= len(self._buf):
            raise ProtocolViolation(f"{self._what}: packet truncated at offset {self._pos}", self._code)
        return self._buf[self._pos]

    def lenenc_int(self) -> int:
        """A length-encoded integer; 0xFB (NULL) and 0xFF (ERR marker) are not integers here."""
        first = self.u8()
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.int(2)
        if first == 0xFD:
            return self.int(3)
        if first == 0xFE:
            return self.int(8)
        raise ProtocolViolation(f"{self._what}: invalid length-encoded integer prefix {first:#04x}",
                                self._code)

    def lenenc_bytes(self) -> bytes:
        return self._take(self.lenenc_int())

    def lenenc_text(self) -> str:
        return text(self.lenenc_bytes())

    def nul_bytes(self) -> bytes:
        end = self._buf.find(b"\0", self._pos)
        if end < 0:
            raise ProtocolViolation(f"{self._what}: string field is not NUL-terminated", self._code)
        out = self._buf[self._pos:end]
        self._pos = end + 1
        return out

    def nul_text(self) -> str:
        return text(self.nul_bytes())

    def rest(self) -> bytes:
        out = self._buf[self._pos:]
        self._pos = len(self._buf)
        return out

    def remaining(self) -> int:
        return len(self._buf) - self._pos

    def end(self) -> None:
        """Assert the payload was fully consumed: trailing bytes are a violation too."""
        if self._pos != len(self._buf):
            raise ProtocolViolation(f"{self._what}: {len(self._buf) - self._pos} unexpected trailing bytes",
                                    self._code)


def fixed_int(value: int, size: int) -> bytes:
    """An unsigned little-endian integer of ``size`` bytes."""
    try:
        return value.to_bytes(size, "little")
    except OverflowError:
        raise LocalProtocolError(f"{value} does not fit in a {size}-byte field") from None


def lenenc_int(value: int) -> bytes:
    """The shortest length-encoded form of ``value``."""
    if value < 0 or value >= 1 << 64:
        raise LocalProtocolError(f"{value} does not fit in a length-encoded integer")
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(3, "little")
    return b"\xfe" + value.to_bytes(8, "little")


def lenenc_bytes(value: str | bytes) -> bytes:
    data = encode_text(value)
    return lenenc_int(len(data)) + data


def nul_string(value: str | bytes) -> bytes:
    """A NUL-terminated string field; refuses embedded NULs, which would end it early."""
    data = encode_text(value)
    if b"\0" in data:
        raise LocalProtocolError(f"string field contains a NUL byte: {data[:40]!r}")
    return data + b"\0"
