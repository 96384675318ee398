"""Authentication after the greeting: auth switch, auth-more-data, and the password scrambles.

During authentication the server's packets are told apart by their first byte: ``00`` OK (logged in),
``ff`` ERR, ``fe`` AuthSwitchRequest (answer this plugin's challenge instead), ``01`` AuthMoreData (a
plugin-specific step).  The client's answers are raw plugin bytes, framed as packets at the next
sequence id.

caching_sha2_password's AuthMoreData carries one byte of news: 3, the fast path succeeded (an OK
follows); 4, perform full authentication (the client must send the password in clear over TLS, or
ask with 2 for the server's RSA key).

The scrambles are pure functions so that the proxy can both answer a backend's challenge and check a
client's answer against stored hashes, without ever keeping a client's password.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import ClassVar

from reference_proxy.protocol.mysql.errors import ProtocolViolation
from reference_proxy.protocol.mysql.responses import ERR_HEADER, OK_HEADER, ErrPacket, OkPacket
from reference_proxy.protocol.mysql.wire import PayloadReader, encode_text, nul_string

__all__ = [
    "CACHING_SHA2_PASSWORD",
    "CLEAR_PASSWORD",
    "FAST_AUTH_SUCCESS",
    "NATIVE_PASSWORD",
    "PERFORM_FULL_AUTHENTICATION",
    "REQUEST_PUBLIC_KEY",
    "AuthMoreData",
    "AuthSwitchRequest",
    "AuthSwitchResponse",
    "caching_sha2_password_hash",
    "caching_sha2_scramble",
    "caching_sha2_verify",
    "decode_auth_reply",
    "native_password_hash",
    "native_password_scramble",
    "native_password_verify",
]

NATIVE_PASSWORD = "mysql_native_password"
CACHING_SHA2_PASSWORD = "caching_sha2_password"
CLEAR_PASSWORD = "mysql_clear_password"

REQUEST_PUBLIC_KEY = b"\x02"
"""Client, in caching_sha2 full authentication without TLS: send me your RSA public key."""
FAST_AUTH_SUCCESS = b"\x03"
"""caching_sha2 AuthMoreData: the scramble matched the server's cache; an OK follows."""
PERFORM_FULL_AUTHENTICATION = b"\x04"
"""caching_sha2 AuthMoreData: the cache missed; the client must prove the password in full."""

NONCE_SIZE = 20


def _nonce(nonce: bytes) -> bytes:
    """The 20 scramble bytes, without the NUL some packets add after them."""
    return nonce[:NONCE_SIZE]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def native_password_hash(password: str | bytes) -> bytes:
    """What a server stores for mysql_native_password: SHA1(SHA1(password))."""
    return hashlib.sha1(hashlib.sha1(encode_text(password)).digest()).digest()


def native_password_scramble(password: str | bytes, nonce: bytes) -> bytes:
    """The client's answer: SHA1(password) XOR SHA1(nonce ‖ SHA1(SHA1(password))); empty for no password."""
    pw = encode_text(password)
    if not pw:
        return b""
    stage1 = hashlib.sha1(pw).digest()
    return _xor(stage1, hashlib.sha1(_nonce(nonce) + hashlib.sha1(stage1).digest()).digest())


def native_password_verify(response: bytes, nonce: bytes, stored_hash: bytes) -> bool:
    """Check a client's mysql_native_password answer against SHA1(SHA1(password))."""
    if len(response) != 20 or len(stored_hash) != 20:
        return not response and not stored_hash
    stage1 = _xor(response, hashlib.sha1(_nonce(nonce) + stored_hash).digest())
    return hmac.compare_digest(hashlib.sha1(stage1).digest(), stored_hash)


def caching_sha2_password_hash(password: str | bytes) -> bytes:
    """What the fast path can check against: SHA256(SHA256(password))."""
    return hashlib.sha256(hashlib.sha256(encode_text(password)).digest()).digest()


def caching_sha2_scramble(password: str | bytes, nonce: bytes) -> bytes:
    """The client's answer: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) ‖ nonce); empty for no password."""
    pw = encode_text(password)
    if not pw:
        return b""
    stage1 = hashlib.sha256(pw).digest()
    stage2 = hashlib.sha256(stage1).digest()
    return _xor(stage1, hashlib.sha256(stage2 + _nonce(nonce)).digest())


def caching_sha2_verify(response: bytes, nonce: bytes, stored_hash: bytes) -> bool:
    """Check a client's caching_sha2_password fast-path answer against SHA256(SHA256(password))."""
    if len(response) != 32 or len(stored_hash) != 32:
        return not response and not stored_hash
    stage1 = _xor(response, hashlib.sha256(stored_hash + _nonce(nonce)).digest())
    return hmac.compare_digest(hashlib.sha256(stage1).digest(), stored_hash)


@dataclass(frozen=True)
class AuthSwitchRequest:
    """Server: authenticate with ``plugin_name`` instead, against ``plugin_data``."""

    HEADER: ClassVar[int] = 0xFE
    plugin_name: str
    plugin_data: bytes = b""

    @property
    def nonce(self) -> bytes:
        return _nonce(self.plugin_data)

    @classmethod
    def decode(cls, payload: bytes) -> AuthSwitchRequest:
        r = PayloadReader(payload, "AuthSwitchRequest")
        if r.u8() != cls.HEADER:
            raise ProtocolViolation("AuthSwitchRequest: header is not 0xfe")
        name = r.nul_text()
        return cls(name, r.rest())

    def encode(self) -> bytes:
        return b"\xfe" + nul_string(self.plugin_name) + self.plugin_data


@dataclass(frozen=True)
class AuthSwitchResponse:
    """Client: the switched-to plugin's answer, raw (the framing says where it ends)."""

    data: bytes

    @classmethod
    def decode(cls, payload: bytes) -> AuthSwitchResponse:
        return cls(bytes(payload))

    def encode(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class AuthMoreData:
    """Server: a plugin-specific step (a fast-auth verdict, a PEM public key...)."""

    HEADER: ClassVar[int] = 0x01
    data: bytes

    @property
    def is_fast_auth_success(self) -> bool:
        return self.data == FAST_AUTH_SUCCESS

    @property
    def is_perform_full_authentication(self) -> bool:
        return self.data == PERFORM_FULL_AUTHENTICATION

    @classmethod
    def decode(cls, payload: bytes) -> AuthMoreData:
        r = PayloadReader(payload, "AuthMoreData")
        if r.u8() != cls.HEADER:
            raise ProtocolViolation("AuthMoreData: header is not 0x01")
        return cls(r.rest())

    def encode(self) -> bytes:
        return b"\x01" + self.data


def decode_auth_reply(payload: bytes, capabilities: int = 0
                      ) -> OkPacket | ErrPacket | AuthSwitchRequest | AuthMoreData:
    """A server packet during authentication (after the HandshakeResponse or a COM_CHANGE_USER)."""
    if not payload:
        raise ProtocolViolation("empty packet during authentication")
    header = payload[0]
    if header == OK_HEADER:
        return OkPacket.decode(payload, capabilities)
    if header == ERR_HEADER:
        return ErrPacket.decode(payload, capabilities)
    if header == AuthSwitchRequest.HEADER:
        return AuthSwitchRequest.decode(payload)
    if header == AuthMoreData.HEADER:
        return AuthMoreData.decode(payload)
    raise ProtocolViolation(f"unexpected packet starting {header:#04x} during authentication")
