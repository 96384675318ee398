"""Client authentication for MySQL sessions, sans-I/O: the client's auth bytes in, server packets out.

The proxy checks the client's password itself, against its static users (what RDS keeps in Secrets
Manager), with the user's ``ClientPasswordAuthType``: ``mysql_native_password`` or
``caching_sha2_password``.  Every client answers the plugin the greeting names, so the greeting names
native (cheap, and safe over plaintext) and a caching_sha2 user is switched to its plugin afterwards.

caching_sha2_password has two paths.  The fast path checks the client's SHA-256 scramble against
SHA256(SHA256(password)) held in a :class:`Sha2FastPathCache`; as in MySQL, that cache is filled only by
a successful full authentication, in which the client sends the password itself.  The proxy runs the
full path only over TLS: asked to do it without TLS, some clients (mysql-connector-python, libmariadb
with its default ``--ssl``) send the password in clear, before the server could stop them, so the
proxy never asks; it refuses with a 1045 that says TLS is needed (RDS likewise requires TLS for
caching_sha2_password).  The RSA public-key exchange is not offered for the same reason.

A user's secret is its plaintext password, or a MySQL-style stored hash (``*`` and 40 hex digits,
SHA1(SHA1(password)), as ``mysql.user`` shows it), so that a secret need not hold the password
itself.  Either proves a native scramble and a full caching_sha2 authentication; the fast path's
SHA-256 hash comes from the cache.

An AuthSwitchRequest carries the greeting's nonce again rather than a new one, as MySQL and MariaDB
servers do: drivers answer whichever nonce the switch names, and the proxy need track only one.

Failures carry MySQL's "Access denied" (1045, SQLSTATE 28000), with the client's host as the server
would name it; an unknown user and a wrong password read the same.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from reference_proxy.contracts import ClientCredential, ProxyError
from reference_proxy.protocol.mysql import (
    CACHING_SHA2_PASSWORD,
    FAST_AUTH_SUCCESS,
    NATIVE_PASSWORD,
    PERFORM_FULL_AUTHENTICATION,
    REQUEST_PUBLIC_KEY,
    AuthMoreData,
    AuthSwitchRequest,
    ProtocolViolation,
    caching_sha2_password_hash,
    caching_sha2_verify,
    encode_text,
    native_password_hash,
    native_password_verify,
)

__all__ = [
    "ACCESS_DENIED",
    "ACCESS_DENIED_SQLSTATE",
    "AuthFailed",
    "ClientAuthenticator",
    "ServerAuthPacket",
    "Sha2FastPathCache",
    "StoredPassword",
    "access_denied",
]

ACCESS_DENIED = 1045
ACCESS_DENIED_SQLSTATE = "28000"

ServerAuthPacket = AuthSwitchRequest | AuthMoreData
"""What the authenticator asks the login to send before the final OK."""

_STORED_NATIVE_HASH = re.compile(r"\*[0-9A-Fa-f]{40}")


class AuthFailed(ProxyError):
    """The client did not prove the password: answer with this ERR, then close."""

    def __init__(self, message: str, error_code: int = ACCESS_DENIED,
                 sqlstate: str = ACCESS_DENIED_SQLSTATE) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.sqlstate = sqlstate


def access_denied(user: str, host: str, used_password: bool, why: str = "") -> AuthFailed:
    """MySQL's 1045 text; ``why`` is appended when the client can do something about it."""
    message = f"Access denied for user '{user}'@'{host}' (using password: {'YES' if used_password else 'NO'})"
    return AuthFailed(f"{message}: {why}" if why else message)


@dataclass(frozen=True)
class StoredPassword:
    """What the proxy knows of one user's password: always SHA1(SHA1(pw)), the password when given."""

    native_hash: bytes
    plaintext: bytes | None = None

    @classmethod
    def from_secret(cls, secret: str) -> StoredPassword:
        if _STORED_NATIVE_HASH.fullmatch(secret):
            return cls(bytes.fromhex(secret[1:]))
        password = encode_text(secret)
        return cls(native_password_hash(password), password)

    @property
    def is_empty(self) -> bool:
        return self.plaintext == b""

    def matches(self, password: bytes) -> bool:
        """Whether ``password`` (sent in full, over TLS) is this user's password."""
        if self.plaintext is not None:
            return hmac.compare_digest(password, self.plaintext)
        return hmac.compare_digest(native_password_hash(password), self.native_hash)

    def matches_native_scramble(self, response: bytes, nonce: bytes) -> bool:
        if self.is_empty:
            return not response
        return bool(response) and native_password_verify(response, nonce, self.native_hash)


class Sha2FastPathCache:
    """SHA256(SHA256(password)) per user, learnt from full caching_sha2 authentications.

    Entries are keyed by the user and its stored native hash, so a changed secret (a rotated
    password) misses and the next login goes through the full path again, as after MySQL's
    ``ALTER USER``.  Shared by every session of one proxy.
    """

    def __init__(self) -> None:
        self._hashes: dict[tuple[str, bytes], bytes] = {}

    def lookup(self, user: str, stored: StoredPassword) -> bytes | None:
        return self._hashes.get((user, stored.native_hash))

    def remember(self, user: str, stored: StoredPassword, password: bytes) -> None:
        self._hashes[(user, stored.native_hash)] = caching_sha2_password_hash(password)

    def forget(self, user: str) -> None:
        for key in [k for k in self._hashes if k[0] == user]:
            del self._hashes[key]

    def __len__(self) -> int:
        return len(self._hashes)


_SUPPORTED_METHODS = frozenset((NATIVE_PASSWORD, CACHING_SHA2_PASSWORD))


class ClientAuthenticator:
    """Drives one client's authentication, after its HandshakeResponse41.

    ``start(plugin, response)`` takes the plugin the client answered with and its answer; each later
    ``receive(data)`` takes the client's next raw auth packet.  Both return the packets to send next
    (AuthSwitchRequest or AuthMoreData) and whether the client is now authenticated (the login then
    sends OK).  A failure raises :class:`AuthFailed`; an answer in the wrong shape raises
    ProtocolViolation.
    """

    def __init__(self, user: str, credential: ClientCredential | None, *, nonce: bytes, client_host: str,
                 tls: bool, sha2_cache: Sha2FastPathCache, can_switch_plugin: bool = True) -> None:
        self.user = user
        self.nonce = nonce
        self.plugin: str | None = None
        self._credential = credential
        self._stored = StoredPassword.from_secret(credential.password) if credential is not None else None
        self._host = client_host
        self._tls = tls
        self._cache = sha2_cache
        self._can_switch = can_switch_plugin
        self._step = "start"

    def _denied(self, used_password: bool, why: str = "") -> AuthFailed:
        self._step = "failed"
        return access_denied(self.user, self._host, used_password, why)

    def start(self, client_plugin: str | None, response: bytes) -> tuple[list[ServerAuthPacket], bool]:
        if self._step != "start":
            raise ProtocolViolation(f"authentication already started (step {self._step!r})")
        cred = self._credential
        if cred is None:
            raise self._denied(bool(response))
        method = cred.method
        if method not in _SUPPORTED_METHODS:
            raise self._denied(bool(response), f"the proxy does not offer the {cred.method} method")
        self.plugin = method
        if (client_plugin or NATIVE_PASSWORD) == method:
            return self._check(response)
        if not self._can_switch:
            raise self._denied(bool(response), f"{method} needs a client that supports authentication "
                                                f"plugins")
        self._step = method
        return [AuthSwitchRequest(method, self.nonce + b"\0")], False

    def receive(self, data: bytes) -> tuple[list[ServerAuthPacket], bool]:
        if self._step == "sha2-full":
            return self._check_full_sha2(data)
        if self._step in _SUPPORTED_METHODS:
            return self._check(data)
        raise ProtocolViolation(f"unexpected authentication packet in step {self._step!r}")

    def _check(self, response: bytes) -> tuple[list[ServerAuthPacket], bool]:
        stored = self._stored
        assert stored is not None
        if self.plugin == NATIVE_PASSWORD:
            if not stored.matches_native_scramble(response, self.nonce):
                raise self._denied(bool(response))
            self._step = "done"
            return [], True
        return self._check_fast_sha2(response)

    def _check_fast_sha2(self, response: bytes) -> tuple[list[ServerAuthPacket], bool]:
        stored = self._stored
        assert stored is not None
        if not response or stored.is_empty:
            if response or not stored.is_empty:
                raise self._denied(bool(response))
            self._step = "done"
            return [], True
        cached = self._cache.lookup(self.user, stored)
        if cached is not None:
            if not caching_sha2_verify(response, self.nonce, cached):
                raise self._denied(True)
            self._step = "done"
            return [AuthMoreData(FAST_AUTH_SUCCESS)], True
        if not self._tls:
            raise self._denied(True, "caching_sha2_password needs a TLS connection to verify this password; "
                                     "reconnect with TLS (later plaintext logins then use the fast path)")
        self._step = "sha2-full"
        return [AuthMoreData(PERFORM_FULL_AUTHENTICATION)], False

    def _check_full_sha2(self, data: bytes) -> tuple[list[ServerAuthPacket], bool]:
        stored = self._stored
        assert stored is not None
        if data == REQUEST_PUBLIC_KEY:
            raise self._denied(True, "the proxy does not offer its RSA public key; use TLS")
        password = data[:-1] if data.endswith(b"\0") else data
        if not stored.matches(password):
            raise self._denied(True)
        self._cache.remember(self.user, stored, password)
        self._step = "done"
        return [], True
