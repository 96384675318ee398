"""Text result sets, the reply to COM_QUERY: a column count, that many column definitions, then rows
of length-encoded strings (0xFB for NULL), then a terminator.

Without CLIENT_DEPRECATE_EOF an EOF follows the column definitions and another ends the rows; with
it, the first is gone and the rows end with an OK whose header is 0xFE.  Binary result sets (from
COM_STMT_EXECUTE) share the count and definitions and differ only in their rows (see ``binary``).

MariaDB's EXTENDED_METADATA and CACHE_METADATA extensions change these packets; they are offered only
to clients that clear capability bit 0, so a proxy that keeps it set never sees them (the column
count still tolerates CACHE_METADATA's trailing byte).
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_proxy.protocol.mysql.errors import LocalProtocolError, ProtocolViolation
from reference_proxy.protocol.mysql.wire import (
    NULL_LENENC,
    PayloadReader,
    fixed_int,
    lenenc_bytes,
    lenenc_int,
)

__all__ = ["ColumnCount", "ColumnDefinition41", "TextRow"]

_FIXED_FIELDS_LENGTH = 0x0C


@dataclass(frozen=True)
class ColumnCount:
    """Server: a result set of this many columns follows."""

    count: int

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ColumnCount:
        r = PayloadReader(payload, "column count")
        count = r.lenenc_int()
        if r.remaining() == 1:
            r.raw(1)  # MariaDB's metadata-follows byte under its CACHE_METADATA extension
        r.end()
        if count == 0:
            raise ProtocolViolation("column count: a result set needs at least one column")
        return cls(count)

    def encode(self, capabilities: int = 0) -> bytes:
        return lenenc_int(self.count)


@dataclass(frozen=True)
class ColumnDefinition41:
    """Server: one column's name, origin and type.  ``default_value`` appears only in replies to
    COM_FIELD_LIST."""

    name: str
    column_type: int
    schema: str = ""
    table: str = ""
    org_table: str = ""
    org_name: str = ""
    character_set: int = 63
    column_length: int = 0
    flags: int = 0
    decimals: int = 0
    catalog: str = "def"
    default_value: bytes | None = None

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ColumnDefinition41:
        r = PayloadReader(payload, "column definition")
        catalog, schema, table, org_table, name, org_name = (r.lenenc_text() for _ in range(6))
        fixed = r.lenenc_int()
        if fixed != _FIXED_FIELDS_LENGTH:
            raise ProtocolViolation(f"column definition: fixed fields are {fixed} bytes, not 12")
        charset, length, column_type, flags, decimals = r.u16(), r.u32(), r.u8(), r.u16(), r.u8()
        r.raw(2)
        default = r.lenenc_bytes() if r.remaining() else None
        r.end()
        return cls(name, column_type, schema, table, org_table, org_name, charset, length, flags, decimals,
                   catalog, default)

    def encode(self, capabilities: int = 0) -> bytes:
        out = b"".join(lenenc_bytes(s) for s in (self.catalog, self.schema, self.table, self.org_table,
                                                 self.name, self.org_name))
        out += (lenenc_int(_FIXED_FIELDS_LENGTH) + fixed_int(self.character_set, 2)
                + fixed_int(self.column_length, 4) + fixed_int(self.column_type, 1) + fixed_int(self.flags, 2)
                + fixed_int(self.decimals, 1) + b"\0\0")
        if self.default_value is not None:
            out += lenenc_bytes(self.default_value)
        return out


@dataclass(frozen=True)
class TextRow:
    """Server: one row of a text result set; each value is the column's text bytes, or None."""

    values: tuple[bytes | None, ...]

    @classmethod
    def decode(cls, payload: bytes, column_count: int | None = None) -> TextRow:
        r = PayloadReader(payload, "text row")
        values: list[bytes | None] = []
        while r.remaining():
            if r.peek() == NULL_LENENC:
                r.raw(1)
                values.append(None)
            else:
                values.append(r.lenenc_bytes())
        if column_count is not None and len(values) != column_count:
            raise ProtocolViolation(f"text row: {len(values)} values for {column_count} columns")
        return cls(tuple(values))

    def encode(self, column_count: int | None = None) -> bytes:
        if column_count is not None and column_count != len(self.values):
            raise LocalProtocolError(f"{len(self.values)} values for {column_count} columns")
        return b"".join(b"\xfb" if v is None else lenenc_bytes(v) for v in self.values)
