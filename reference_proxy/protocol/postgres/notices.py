"""ErrorResponse and NoticeResponse: a list of (field code, text) pairs.

Field codes are single ASCII letters: ``S`` severity (localised), ``V`` severity (never localised),
``C`` SQLSTATE, ``M`` message, ``D`` detail, ``H`` hint, and a few positional ones.  Unknown codes
are kept, since the protocol says clients must ignore fields they do not recognise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.postgres.errors import LocalProtocolError
from reference_proxy.protocol.postgres.wire import BodyReader, cstring, frame

__all__ = ["ErrorResponse", "NoticeResponse"]


class _Fields:
    TYPE: ClassVar[bytes]
    fields: tuple[tuple[str, str], ...]

    @classmethod
    def decode(cls, body: bytes):
        r = BodyReader(body, cls.__name__)
        fields: list[tuple[str, str]] = []
        while True:
            code = r.byte()
            if code == b"\0":
                break
            fields.append((code.decode("latin-1"), r.cstring()))
        r.end()
        return cls(tuple(fields))

    def encode(self) -> bytes:
        body = b""
        for code, text in self.fields:
            if len(code) != 1 or code == "\0":
                raise LocalProtocolError(f"{type(self).__name__}: bad field code {code!r}")
            body += code.encode("latin-1") + cstring(text)
        return frame(self.TYPE, body + b"\0")

    def field(self, code: str, default: str = "") -> str:
        for c, text in self.fields:
            if c == code:
                return text
        return default

    @property
    def sqlstate(self) -> str:
        return self.field("C")

    @property
    def message(self) -> str:
        return self.field("M")

    @property
    def severity(self) -> str:
        return self.field("V") or self.field("S")

    @classmethod
    def build(cls, severity: str, sqlstate: str, message: str, **extra: str):
        """A message with the usual fields; ``extra`` maps field codes (``D``, ``H``...) to text."""
        fields = [("S", severity), ("V", severity), ("C", sqlstate), ("M", message)]
        fields.extend(extra.items())
        return cls(tuple(fields))


@dataclass(frozen=True)
class ErrorResponse(_Fields):
    """Backend: a statement (or the connection, if FATAL) failed."""

    TYPE: ClassVar[bytes] = b"E"
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class NoticeResponse(_Fields):
    """Backend: a warning or notice; processing continues."""

    TYPE: ClassVar[bytes] = b"N"
    fields: tuple[tuple[str, str], ...]
