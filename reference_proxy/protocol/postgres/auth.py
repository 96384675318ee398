"""Authentication: the backend's ``R`` requests and the frontend's ``p`` answers.

All ``R`` messages share one type byte and differ by an int32 code, so :func:`decode_authentication`
dispatches on it.  The frontend's ``p`` is equally ambiguous (password, SASLInitialResponse,
SASLResponse, GSSResponse): the decoder yields a :class:`PasswordMessage` holding the raw body, and
the party that knows which request it sent reads it with the right ``from_password_message``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.postgres.errors import ProtocolViolation
from reference_proxy.protocol.postgres.wire import BodyReader, cstring, frame, int32

__all__ = [
    "AuthenticationCleartextPassword",
    "AuthenticationMD5Password",
    "AuthenticationOk",
    "AuthenticationOther",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "PasswordMessage",
    "SASLInitialResponse",
    "SASLResponse",
    "decode_authentication",
]

_R = b"R"


@dataclass(frozen=True)
class AuthenticationOk:
    """Authentication succeeded; ParameterStatus, BackendKeyData and ReadyForQuery follow."""

    TYPE: ClassVar[bytes] = _R
    CODE: ClassVar[int] = 0

    def encode(self) -> bytes:
        return frame(_R, int32(self.CODE))


@dataclass(frozen=True)
class AuthenticationCleartextPassword:
    """Send the password in clear (used for IAM tokens, which only make sense under TLS)."""

    TYPE: ClassVar[bytes] = _R
    CODE: ClassVar[int] = 3

    def encode(self) -> bytes:
        return frame(_R, int32(self.CODE))


@dataclass(frozen=True)
class AuthenticationMD5Password:
    """Send ``md5`` + md5(md5(password + user) + salt), hex-encoded."""

    TYPE: ClassVar[bytes] = _R
    CODE: ClassVar[int] = 5
    salt: bytes

    def encode(self) -> bytes:
        return frame(_R, int32(self.CODE) + self.salt)


@dataclass(frozen=True)
class AuthenticationSASL:
    """Start SASL with one of these mechanisms (we offer only SCRAM-SHA-256)."""

    TYPE: ClassVar[bytes] = _R
    CODE: ClassVar[int] = 10
    mechanisms: tuple[str, ...]

    def encode(self) -> bytes:
        return frame(_R, int32(self.CODE) + b"".join(cstring(m) for m in self.mechanisms) + b"\0")


@dataclass(frozen=True)
class AuthenticationSASLContinue:
    """A SASL challenge (SCRAM server-first-message)."""

    TYPE: ClassVar[bytes] = _R
    CODE: ClassVar[int] = 11
    data: bytes

    def encode(self) -> bytes:
        return frame(_R, int32(self.CODE) + self.data)


@dataclass(frozen=True)
class AuthenticationSASLFinal:
    """SASL outcome data (SCRAM server-final-message); AuthenticationOk follows."""

    TYPE: ClassVar[bytes] = _R
    CODE: ClassVar[int] = 12
    data: bytes

    def encode(self) -> bytes:
        return frame(_R, int32(self.CODE) + self.data)


@dataclass(frozen=True)
class AuthenticationOther:
    """A method we recognise but do not implement (Kerberos 2, GSS 7/8, SSPI 9): carried opaquely."""

    TYPE: ClassVar[bytes] = _R
    code: int
    data: bytes = b""

    def encode(self) -> bytes:
        return frame(_R, int32(self.code) + self.data)


_OTHER_CODES = frozenset({2, 6, 7, 8, 9})


def decode_authentication(body: bytes):
    """Decode an ``R`` body into the matching Authentication* message."""
    r = BodyReader(body, "Authentication")
    code = r.int32()
    if code in (0, 3):
        r.end()
        return AuthenticationOk() if code == 0 else AuthenticationCleartextPassword()
    if code == 5:
        salt = r.raw(4)
        r.end()
        return AuthenticationMD5Password(salt)
    if code == 10:
        mechs: list[str] = []
        while True:
            m = r.cstring()
            if m == "":
                break
            mechs.append(m)
        r.end()
        return AuthenticationSASL(tuple(mechs))
    if code == 11:
        return AuthenticationSASLContinue(r.rest())
    if code == 12:
        return AuthenticationSASLFinal(r.rest())
    if code in _OTHER_CODES:
        return AuthenticationOther(code, r.rest())
    raise ProtocolViolation(f"Authentication: unknown request code {code}")


@dataclass(frozen=True)
class PasswordMessage:
    """Frontend ``p``: its meaning depends on the authentication request it answers."""

    TYPE: ClassVar[bytes] = b"p"
    data: bytes

    @classmethod
    def decode(cls, body: bytes) -> PasswordMessage:
        return cls(bytes(body))

    @classmethod
    def from_password(cls, password: str | bytes) -> PasswordMessage:
        return cls(cstring(password))

    def password(self) -> str:
        """The NUL-terminated password (cleartext or md5 answer)."""
        r = BodyReader(self.data, "PasswordMessage")
        value = r.cstring()
        r.end()
        return value

    def encode(self) -> bytes:
        return frame(self.TYPE, self.data)


@dataclass(frozen=True)
class SASLInitialResponse:
    """Frontend: the chosen mechanism and the client-first-message (``None`` = absent, length -1)."""

    TYPE: ClassVar[bytes] = b"p"
    mechanism: str
    data: bytes | None

    @classmethod
    def from_password_message(cls, msg: PasswordMessage) -> SASLInitialResponse:
        r = BodyReader(msg.data, "SASLInitialResponse")
        mech = r.cstring()
        n = r.int32()
        if n == -1:
            r.end()
            return cls(mech, None)
        data = r.raw(n)
        r.end()
        return cls(mech, data)

    def encode(self) -> bytes:
        body = cstring(self.mechanism)
        body += int32(-1) if self.data is None else int32(len(self.data)) + self.data
        return frame(self.TYPE, body)


@dataclass(frozen=True)
class SASLResponse:
    """Frontend: a later SASL message (SCRAM client-final-message)."""

    TYPE: ClassVar[bytes] = b"p"
    data: bytes

    @classmethod
    def from_password_message(cls, msg: PasswordMessage) -> SASLResponse:
        return cls(msg.data)

    def encode(self) -> bytes:
        return frame(self.TYPE, self.data)
