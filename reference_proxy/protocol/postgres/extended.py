"""The extended query protocol: Parse, Bind, Describe, Execute, Close, Sync, Flush and their replies.

An empty statement or portal name means the unnamed one, which lives only until the next Parse or
Bind of the same kind; a named statement lives until Close (or DEALLOCATE, or session end), which
is why the proxy watches the names that Parse creates and Close destroys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.postgres.errors import ProtocolViolation
from reference_proxy.protocol.postgres.wire import BodyReader, cstring, frame, int16, int32, uint32

__all__ = [
    "PORTAL",
    "STATEMENT",
    "Bind",
    "BindComplete",
    "Close",
    "CloseComplete",
    "Describe",
    "Execute",
    "Flush",
    "NoData",
    "ParameterDescription",
    "Parse",
    "ParseComplete",
    "PortalSuspended",
    "Sync",
]

STATEMENT = "S"
PORTAL = "P"


def _kind(r: BodyReader, what: str) -> str:
    kind = r.byte().decode("latin-1")
    if kind not in (STATEMENT, PORTAL):
        raise ProtocolViolation(f"{what}: target kind must be 'S' or 'P', got {kind!r}")
    return kind


@dataclass(frozen=True)
class Parse:
    """Frontend: prepare ``sql`` as statement ``name`` (``""`` = unnamed)."""

    TYPE: ClassVar[bytes] = b"P"
    name: str
    sql: str
    param_types: tuple[int, ...] = ()

    @classmethod
    def decode(cls, body: bytes) -> Parse:
        r = BodyReader(body, "Parse")
        name, sql = r.cstring(), r.cstring()
        n = r.count("parameter type")
        types = tuple(r.uint32() for _ in range(n))
        r.end()
        return cls(name, sql, types)

    def encode(self) -> bytes:
        body = cstring(self.name) + cstring(self.sql) + int16(len(self.param_types))
        body += b"".join(uint32(t) for t in self.param_types)
        return frame(self.TYPE, body)


@dataclass(frozen=True)
class Bind:
    """Frontend: bind parameters to a statement, creating portal ``portal``."""

    TYPE: ClassVar[bytes] = b"B"
    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    @classmethod
    def decode(cls, body: bytes) -> Bind:
        r = BodyReader(body, "Bind")
        portal, statement = r.cstring(), r.cstring()
        formats = tuple(r.int16() for _ in range(r.count("parameter format")))
        params: list[bytes | None] = []
        for _ in range(r.count("parameter")):
            n = r.int32()
            if n < -1:
                raise ProtocolViolation(f"Bind: bad parameter length {n}")
            params.append(None if n == -1 else r.raw(n))
        results = tuple(r.int16() for _ in range(r.count("result format")))
        r.end()
        return cls(portal, statement, formats, tuple(params), results)

    def encode(self) -> bytes:
        body = cstring(self.portal) + cstring(self.statement)
        body += int16(len(self.param_formats)) + b"".join(int16(f) for f in self.param_formats)
        body += int16(len(self.params))
        for p in self.params:
            body += int32(-1) if p is None else int32(len(p)) + p
        body += int16(len(self.result_formats)) + b"".join(int16(f) for f in self.result_formats)
        return frame(self.TYPE, body)


@dataclass(frozen=True)
class Describe:
    """Frontend: describe statement (``S``) or portal (``P``) ``name``."""

    TYPE: ClassVar[bytes] = b"D"
    kind: str
    name: str

    @classmethod
    def decode(cls, body: bytes) -> Describe:
        r = BodyReader(body, "Describe")
        kind = _kind(r, "Describe")
        name = r.cstring()
        r.end()
        return cls(kind, name)

    def encode(self) -> bytes:
        return frame(self.TYPE, self.kind.encode("latin-1") + cstring(self.name))


@dataclass(frozen=True)
class Execute:
    """Frontend: run portal ``portal``, returning at most ``max_rows`` rows (0 = all)."""

    TYPE: ClassVar[bytes] = b"E"
    portal: str
    max_rows: int = 0

    @classmethod
    def decode(cls, body: bytes) -> Execute:
        r = BodyReader(body, "Execute")
        portal, max_rows = r.cstring(), r.int32()
        r.end()
        return cls(portal, max_rows)

    def encode(self) -> bytes:
        return frame(self.TYPE, cstring(self.portal) + int32(self.max_rows))


@dataclass(frozen=True)
class Close:
    """Frontend: close statement (``S``) or portal (``P``) ``name``."""

    TYPE: ClassVar[bytes] = b"C"
    kind: str
    name: str

    @classmethod
    def decode(cls, body: bytes) -> Close:
        r = BodyReader(body, "Close")
        kind = _kind(r, "Close")
        name = r.cstring()
        r.end()
        return cls(kind, name)

    def encode(self) -> bytes:
        return frame(self.TYPE, self.kind.encode("latin-1") + cstring(self.name))


def _empty(name: str, type_byte: bytes, doc: str):
    """Build a frozen dataclass for a message with an empty body."""

    def decode(cls, body: bytes):
        BodyReader(body, name).end()
        return cls()

    def encode(self) -> bytes:
        return frame(type_byte)

    ns = {"__doc__": doc, "__annotations__": {"TYPE": ClassVar[bytes]}, "TYPE": type_byte,
          "decode": classmethod(decode), "encode": encode, "__module__": __name__}
    return dataclass(frozen=True)(type(name, (), ns))


Sync = _empty("Sync", b"S", "Frontend: end of an extended-query batch; the backend answers ReadyForQuery.")
Flush = _empty("Flush", b"H", "Frontend: send pending results now, without ending the batch.")
ParseComplete = _empty("ParseComplete", b"1", "Backend: Parse succeeded.")
BindComplete = _empty("BindComplete", b"2", "Backend: Bind succeeded.")
CloseComplete = _empty("CloseComplete", b"3", "Backend: Close succeeded.")
NoData = _empty("NoData", b"n", "Backend: the described statement or portal returns no rows.")
PortalSuspended = _empty("PortalSuspended", b"s", "Backend: Execute stopped at its row limit.")


@dataclass(frozen=True)
class ParameterDescription:
    """Backend: the parameter type oids of a described statement."""

    TYPE: ClassVar[bytes] = b"t"
    type_oids: tuple[int, ...]

    @classmethod
    def decode(cls, body: bytes) -> ParameterDescription:
        r = BodyReader(body, "ParameterDescription")
        n = r.uint16()  # PostgreSQL allows up to 65535 parameters here
        oids = tuple(r.uint32() for _ in range(n))
        r.end()
        return cls(oids)

    def encode(self) -> bytes:
        return frame(self.TYPE, int16(len(self.type_oids) if len(self.type_oids) < 32768
                                      else len(self.type_oids) - 65536)
                     + b"".join(uint32(t) for t in self.type_oids))
