"""The binary protocol of prepared statements: column types, value encodings, the null bitmap,
PREPARE_OK, COM_STMT_EXECUTE's parameter block and binary result rows.

Values travel in a type-dependent layout: integers and floats as fixed little-endian fields, dates and
times as a length byte then that many bytes, everything else (strings, DECIMAL, blobs, JSON) as a
length-encoded string.  A row or parameter block lists only the non-NULL values; a bitmap says which
are NULL (offset by 2 bits in rows, a quirk the protocol keeps for history).

Rows keep each value's raw bytes, because the proxy forwards rows and rarely reads them;
:func:`decode_binary_value` / :func:`encode_binary_value` convert the common types when it must.
"""

from __future__ import annotations

import datetime
import enum
import struct
from dataclasses import dataclass

from reference_proxy.protocol.mysql.errors import LocalProtocolError, ProtocolViolation
from reference_proxy.protocol.mysql.wire import PayloadReader, encode_text, fixed_int, lenenc_bytes, text

__all__ = [
    "UNSIGNED_PARAMETER_FLAG",
    "BinaryRow",
    "ColumnType",
    "ExecuteParameters",
    "StmtPrepareOk",
    "decode_binary_value",
    "encode_binary_value",
    "null_bitmap",
]

UNSIGNED_PARAMETER_FLAG = 0x80
"""Second byte of a parameter's type in COM_STMT_EXECUTE: the integer is unsigned."""


class ColumnType(enum.IntEnum):
    """Column and parameter types (``enum_field_types``)."""

    DECIMAL = 0x00
    TINY = 0x01
    SHORT = 0x02
    LONG = 0x03
    FLOAT = 0x04
    DOUBLE = 0x05
    NULL = 0x06
    TIMESTAMP = 0x07
    LONGLONG = 0x08
    INT24 = 0x09
    DATE = 0x0A
    TIME = 0x0B
    DATETIME = 0x0C
    YEAR = 0x0D
    NEWDATE = 0x0E
    VARCHAR = 0x0F
    BIT = 0x10
    TIMESTAMP2 = 0x11
    DATETIME2 = 0x12
    TIME2 = 0x13
    JSON = 0xF5
    NEWDECIMAL = 0xF6
    ENUM = 0xF7
    SET = 0xF8
    TINY_BLOB = 0xF9
    MEDIUM_BLOB = 0xFA
    LONG_BLOB = 0xFB
    BLOB = 0xFC
    VAR_STRING = 0xFD
    STRING = 0xFE
    GEOMETRY = 0xFF


_FIXED_SIZE = {
    ColumnType.TINY: 1, ColumnType.SHORT: 2, ColumnType.YEAR: 2, ColumnType.LONG: 4, ColumnType.INT24: 4,
    ColumnType.FLOAT: 4, ColumnType.LONGLONG: 8, ColumnType.DOUBLE: 8, ColumnType.NULL: 0,
}
_INT_SIZE = {t: n for t, n in _FIXED_SIZE.items()
             if t not in (ColumnType.FLOAT, ColumnType.DOUBLE, ColumnType.NULL)}
_TEMPORAL = frozenset((ColumnType.DATE, ColumnType.DATETIME, ColumnType.TIMESTAMP, ColumnType.TIME,
                       ColumnType.NEWDATE))
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")


def null_bitmap(nulls: list[bool], offset: int) -> bytes:
    """The bitmap marking ``nulls``, each shifted by ``offset`` bits (2 in rows, 0 in parameters)."""
    out = bytearray((len(nulls) + offset + 7) // 8)
    for i, is_null in enumerate(nulls):
        if is_null:
            bit = i + offset
            out[bit >> 3] |= 1 << (bit & 7)
    return bytes(out)


def _is_null(bitmap: bytes, index: int, offset: int) -> bool:
    bit = index + offset
    return bool(bitmap[bit >> 3] & (1 << (bit & 7)))


def _read_value(r: PayloadReader, column_type: int) -> bytes:
    size = _FIXED_SIZE.get(column_type)  # type: ignore[call-overload]
    if size is not None:
        return r.raw(size)
    if column_type in _TEMPORAL:
        return r.raw(r.u8())
    return r.lenenc_bytes()


def _write_value(column_type: int, raw: bytes) -> bytes:
    size = _FIXED_SIZE.get(column_type)  # type: ignore[call-overload]
    if size is not None:
        if len(raw) != size:
            raise LocalProtocolError(f"a {ColumnType(column_type).name} value takes {size} bytes, "
                                     f"not {len(raw)}")
        return raw
    if column_type in _TEMPORAL:
        if len(raw) > 0xFF:
            raise LocalProtocolError("temporal value over 255 bytes")
        return bytes((len(raw),)) + raw
    return lenenc_bytes(raw)


def encode_binary_value(column_type: int, value: object, unsigned: bool = False) -> bytes:
    """The raw binary-protocol bytes of a Python value (without the length prefix of the framing)."""
    try:
        if column_type in _INT_SIZE:
            size = _INT_SIZE[column_type]  # type: ignore[index]
            return int(value).to_bytes(size, "little", signed=not unsigned)  # type: ignore[call-overload]
        if column_type == ColumnType.FLOAT:
            return _FLOAT.pack(value)
        if column_type == ColumnType.DOUBLE:
            return _DOUBLE.pack(value)
    except (OverflowError, struct.error, TypeError, ValueError) as e:
        raise LocalProtocolError(f"cannot encode {value!r} as {ColumnType(column_type).name}: {e}") from None
    if column_type in _TEMPORAL:
        return _encode_temporal(value)
    if isinstance(value, (str, bytes)):
        return encode_text(value)
    raise LocalProtocolError(f"cannot encode {value!r} as type {column_type:#04x}")


def _encode_temporal(value: object) -> bytes:
    if isinstance(value, datetime.datetime):
        out = fixed_int(value.year, 2) + bytes((value.month, value.day, value.hour, value.minute,
                                                value.second))
        return out + fixed_int(value.microsecond, 4) if value.microsecond else out
    if isinstance(value, datetime.date):
        return fixed_int(value.year, 2) + bytes((value.month, value.day))
    if isinstance(value, datetime.timedelta):
        negative = value < datetime.timedelta(0)
        value = abs(value)
        hours, rest = divmod(value.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        out = bytes((int(negative),)) + fixed_int(value.days, 4) + bytes((hours, minutes, seconds))
        return out + fixed_int(value.microseconds, 4) if value.microseconds else out
    raise LocalProtocolError(f"cannot encode {value!r} as a date or time")


def decode_binary_value(column_type: int, raw: bytes, unsigned: bool = False) -> object:
    """The Python value of raw binary-protocol bytes: int, float, str (text types), bytes (blobs and
    unknown types), date/datetime/timedelta. Raises ProtocolViolation on a wrong length or date."""
    if column_type in _INT_SIZE:
        if len(raw) != _INT_SIZE[column_type]:  # type: ignore[index]
            raise ProtocolViolation(f"binary {ColumnType(column_type).name} value of {len(raw)} bytes")
        return int.from_bytes(raw, "little", signed=not unsigned)
    if column_type in (ColumnType.FLOAT, ColumnType.DOUBLE):
        codec = _FLOAT if column_type == ColumnType.FLOAT else _DOUBLE
        if len(raw) != codec.size:
            raise ProtocolViolation(f"binary {ColumnType(column_type).name} value of {len(raw)} bytes")
        return codec.unpack(raw)[0]
    if column_type in _TEMPORAL:
        return _decode_temporal(column_type, raw)
    if column_type in (ColumnType.VARCHAR, ColumnType.VAR_STRING, ColumnType.STRING, ColumnType.ENUM,
                       ColumnType.SET, ColumnType.JSON, ColumnType.DECIMAL, ColumnType.NEWDECIMAL):
        return text(raw)
    return bytes(raw)


def _decode_temporal(column_type: int, raw: bytes) -> object:
    r = PayloadReader(raw, "binary date/time value")
    try:
        if column_type == ColumnType.TIME:
            if not raw:
                return datetime.timedelta(0)
            if len(raw) not in (8, 12):
                raise ProtocolViolation(f"binary TIME value of {len(raw)} bytes")
            negative, days, hours, minutes, seconds = r.u8(), r.u32(), r.u8(), r.u8(), r.u8()
            micros = r.u32() if r.remaining() else 0
            delta = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds,
                                       microseconds=micros)
            return -delta if negative else delta
        if len(raw) not in (0, 4, 7, 11):
            raise ProtocolViolation(f"binary date value of {len(raw)} bytes")
        if not raw:
            return None  # the zero date, which Python cannot represent
        year, month, day = r.u16(), r.u8(), r.u8()
        if column_type in (ColumnType.DATE, ColumnType.NEWDATE):
            return datetime.date(year, month, day)
        hour = r.u8() if r.remaining() else 0
        minute = r.u8() if r.remaining() else 0
        second = r.u8() if r.remaining() else 0
        micros = r.u32() if r.remaining() else 0
        return datetime.datetime(year, month, day, hour, minute, second, micros)
    except (ValueError, OverflowError) as e:
        raise ProtocolViolation(f"binary date/time value out of range: {e}") from None


@dataclass(frozen=True)
class StmtPrepareOk:
    """Server, first reply to COM_STMT_PREPARE: the statement id and how many parameter and column
    definitions follow."""

    statement_id: int
    num_columns: int
    num_params: int
    warnings: int = 0

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> StmtPrepareOk:
        r = PayloadReader(payload, "COM_STMT_PREPARE OK")
        if r.u8() != 0:
            raise ProtocolViolation("COM_STMT_PREPARE OK: header is not 0x00")
        statement_id, columns, params = r.u32(), r.u16(), r.u16()
        warnings = 0
        if r.remaining():
            r.raw(1)
            warnings = r.u16()
        # MySQL 8 may add a metadata-follows byte under OPTIONAL_RESULTSET_METADATA, never offered here.
        r.end()
        return cls(statement_id, columns, params, warnings)

    def encode(self, capabilities: int = 0) -> bytes:
        return (b"\x00" + fixed_int(self.statement_id, 4) + fixed_int(self.num_columns, 2)
                + fixed_int(self.num_params, 2) + b"\x00" + fixed_int(self.warnings, 2))


@dataclass(frozen=True)
class BinaryRow:
    """Server: one row of a binary result set; each value is its raw bytes (None for NULL)."""

    values: tuple[bytes | None, ...]

    @classmethod
    def decode(cls, payload: bytes, column_types: tuple[int, ...]) -> BinaryRow:
        r = PayloadReader(payload, "binary row")
        if r.u8() != 0:
            raise ProtocolViolation("binary row: header is not 0x00")
        bitmap = r.raw((len(column_types) + 9) // 8)
        values = tuple(None if _is_null(bitmap, i, 2) else _read_value(r, t)
                       for i, t in enumerate(column_types))
        r.end()
        return cls(values)

    def encode(self, column_types: tuple[int, ...]) -> bytes:
        if len(column_types) != len(self.values):
            raise LocalProtocolError(f"{len(self.values)} values for {len(column_types)} columns")
        out = b"\x00" + null_bitmap([v is None for v in self.values], 2)
        return out + b"".join(_write_value(t, v) for t, v in zip(column_types, self.values) if v is not None)


@dataclass(frozen=True)
class ExecuteParameters:
    """The parameter block of COM_STMT_EXECUTE: each parameter's (type, unsigned) and raw value.

    ``types_sent`` is the new-params-bound flag: when false the types are the ones the client sent
    with the statement's previous execution, which the decoder must be told.
    """

    types: tuple[tuple[int, bool], ...]
    values: tuple[bytes | None, ...]
    types_sent: bool = True

    @classmethod
    def decode(cls, block: bytes, count: int,
               previous_types: tuple[tuple[int, bool], ...] | None = None) -> ExecuteParameters:
        if count == 0:
            PayloadReader(block, "COM_STMT_EXECUTE parameters").end()
            return cls((), ())
        r = PayloadReader(block, "COM_STMT_EXECUTE parameters")
        bitmap = r.raw((count + 7) // 8)
        sent = r.u8()
        if sent not in (0, 1):
            raise ProtocolViolation(f"COM_STMT_EXECUTE: new-params-bound flag is {sent}")
        if sent:
            types = tuple((r.u8(), bool(r.u8() & UNSIGNED_PARAMETER_FLAG)) for _ in range(count))
        elif previous_types is not None and len(previous_types) == count:
            types = previous_types
        else:
            raise ProtocolViolation("COM_STMT_EXECUTE: parameter types were never sent for this statement")
        values = tuple(None if _is_null(bitmap, i, 0) else _read_value(r, t)
                       for i, (t, _) in enumerate(types))
        r.end()
        return cls(types, values, bool(sent))

    def encode(self) -> bytes:
        if not self.values:
            return b""
        if len(self.types) != len(self.values):
            raise LocalProtocolError(f"{len(self.values)} parameter values for {len(self.types)} types")
        out = null_bitmap([v is None for v in self.values], 0) + bytes((int(self.types_sent),))
        if self.types_sent:
            out += b"".join(bytes((t, UNSIGNED_PARAMETER_FLAG if u else 0)) for t, u in self.types)
        return out + b"".join(_write_value(t, v) for (t, _), v in zip(self.types, self.values)
                              if v is not None)
