"""The simple query cycle: Query in; RowDescription, DataRow, CommandComplete, EmptyQueryResponse out.

Also Terminate (the client's polite goodbye) and the legacy FunctionCall / FunctionCallResponse
pair, which behaves like a one-message query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.postgres.errors import ProtocolViolation
from reference_proxy.protocol.postgres.wire import BodyReader, cstring, frame, int16, int32, uint32

__all__ = [
    "CommandComplete",
    "DataRow",
    "EmptyQueryResponse",
    "FieldDescription",
    "FunctionCall",
    "FunctionCallResponse",
    "Query",
    "RowDescription",
    "Terminate",
]


def _decode_text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(f"{what}: text is not valid UTF-8") from None


@dataclass(frozen=True)
class Query:
    """Frontend: run this SQL text (possibly several statements) with the simple protocol."""

    TYPE: ClassVar[bytes] = b"Q"
    sql: str

    @classmethod
    def decode(cls, body: bytes) -> Query:
        r = BodyReader(body, "Query")
        sql = r.cstring()
        r.end()
        return cls(sql)

    def encode(self) -> bytes:
        return frame(self.TYPE, cstring(self.sql))


@dataclass(frozen=True)
class Terminate:
    """Frontend: the client is closing the connection."""

    TYPE: ClassVar[bytes] = b"X"

    @classmethod
    def decode(cls, body: bytes) -> Terminate:
        BodyReader(body, "Terminate").end()
        return cls()

    def encode(self) -> bytes:
        return frame(self.TYPE)


@dataclass(frozen=True)
class FieldDescription:
    """One column of a RowDescription."""

    name: str
    table_oid: int
    column_number: int
    type_oid: int
    type_size: int
    type_modifier: int
    format_code: int


@dataclass(frozen=True)
class RowDescription:
    """Backend: the columns of the rows that follow."""

    TYPE: ClassVar[bytes] = b"T"
    fields: tuple[FieldDescription, ...]

    @classmethod
    def decode(cls, body: bytes) -> RowDescription:
        r = BodyReader(body, "RowDescription")
        n = r.count("field")
        fields = tuple(FieldDescription(r.cstring(), r.uint32(), r.int16(), r.uint32(), r.int16(),
                                        r.int32(), r.int16()) for _ in range(n))
        r.end()
        return cls(fields)

    def encode(self) -> bytes:
        body = int16(len(self.fields))
        for f in self.fields:
            body += (cstring(f.name) + uint32(f.table_oid) + int16(f.column_number) + uint32(f.type_oid)
                     + int16(f.type_size) + int32(f.type_modifier) + int16(f.format_code))
        return frame(self.TYPE, body)


@dataclass(frozen=True)
class DataRow:
    """Backend: one row; a column value of ``None`` is SQL NULL (length -1)."""

    TYPE: ClassVar[bytes] = b"D"
    values: tuple[bytes | None, ...]

    @classmethod
    def decode(cls, body: bytes) -> DataRow:
        r = BodyReader(body, "DataRow")
        n = r.count("column")
        values: list[bytes | None] = []
        for _ in range(n):
            length = r.int32()
            if length < -1:
                raise ProtocolViolation(f"DataRow: bad column length {length}")
            values.append(None if length == -1 else r.raw(length))
        r.end()
        return cls(tuple(values))

    def encode(self) -> bytes:
        body = int16(len(self.values))
        for v in self.values:
            body += int32(-1) if v is None else int32(len(v)) + v
        return frame(self.TYPE, body)


@dataclass(frozen=True)
class CommandComplete:
    """Backend: one statement finished; ``tag`` is e.g. ``SELECT 3`` or ``INSERT 0 1``."""

    TYPE: ClassVar[bytes] = b"C"
    tag: str

    @classmethod
    def decode(cls, body: bytes) -> CommandComplete:
        r = BodyReader(body, "CommandComplete")
        tag = r.cstring()
        r.end()
        return cls(tag)

    def encode(self) -> bytes:
        return frame(self.TYPE, cstring(self.tag))


@dataclass(frozen=True)
class EmptyQueryResponse:
    """Backend: the query string was empty."""

    TYPE: ClassVar[bytes] = b"I"

    @classmethod
    def decode(cls, body: bytes) -> EmptyQueryResponse:
        BodyReader(body, "EmptyQueryResponse").end()
        return cls()

    def encode(self) -> bytes:
        return frame(self.TYPE)


@dataclass(frozen=True)
class FunctionCall:
    """Frontend (legacy fast-path): call a function by oid; kept opaque beyond the oid."""

    TYPE: ClassVar[bytes] = b"F"
    function_oid: int
    rest: bytes

    @classmethod
    def decode(cls, body: bytes) -> FunctionCall:
        r = BodyReader(body, "FunctionCall")
        return cls(r.uint32(), r.rest())

    def encode(self) -> bytes:
        return frame(self.TYPE, uint32(self.function_oid) + self.rest)


@dataclass(frozen=True)
class FunctionCallResponse:
    """Backend: the fast-path call's result (``None`` is NULL)."""

    TYPE: ClassVar[bytes] = b"V"
    value: bytes | None

    @classmethod
    def decode(cls, body: bytes) -> FunctionCallResponse:
        r = BodyReader(body, "FunctionCallResponse")
        n = r.int32()
        if n < -1:
            raise ProtocolViolation(f"FunctionCallResponse: bad length {n}")
        value = None if n == -1 else r.raw(n)
        r.end()
        return cls(value)

    def encode(self) -> bytes:
        return frame(self.TYPE, int32(-1) if self.value is None else int32(len(self.value)) + self.value)
