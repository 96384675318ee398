"""Client authentication for MySQL sessions, sans-I/O: the client's auth bytes in, server packets out.

The proxy checks the client's proof itself, against the credentials its credential source holds for
the user (static users, or the user's Secrets Manager secret, as RDS does), with the user's
``ClientPasswordAuthType``: ``mysql_native_password`` or ``caching_sha2_password``; or, for a user with
``IAMAuth = REQUIRED``, an IAM token sent through ``mysql_clear_password`` over TLS
(:mod:`reference_proxy.credentials.iam_auth` judges it).  Every client answers the plugin the greeting
names, so the greeting names native (cheap, and safe over plaintext) and a caching_sha2 or IAM user is
switched to its plugin afterwards.

caching_sha2_password has two paths.  The fast path checks the client's SHA-256 scramble against
SHA256(SHA256(password)) held in a :class:`Sha2FastPathCache`; as in MySQL, that cache is filled only by
a successful full authentication, in which the client sends the password itself.  The proxy runs the
full path only over TLS: asked to do it without TLS, some clients (mysql-connector-python, libmariadb
with its default ``--ssl``) send the password in clear, before the server could stop them, so the
proxy never asks; it refuses with a 1045 that says TLS is needed (RDS likewise requires TLS for
caching_sha2_password).  The RSA public-key exchange is not offered for the same reason.

IAM follows the same rule: the proxy refuses an IAM user on a plaintext connection *before* asking
for its token, since PyMySQL and libmariadb would send a token (a bearer credential for 15 minutes)
in clear when asked.  A client that already answered the greeting with ``mysql_clear_password`` (a
CLI told to use that plugin by default) is not asked again; otherwise the proxy sends an
AuthSwitchRequest to it.  The token arrives NUL-terminated.

A user's secret is its plaintext password, or a MySQL-style stored hash (``*`` and 40 hex digits,
SHA1(SHA1(password)), as ``mysql.user`` shows it), so that a secret need not hold the password
itself.  Either proves a native scramble and a full caching_sha2 authentication; the fast path's
SHA-256 hash comes from the cache.

An AuthSwitchRequest carries the greeting's nonce again rather than a new one, as MySQL and MariaDB
servers do: drivers answer whichever nonce the switch names, and the proxy need track only one.

A wrong password raises :class:`WrongPassword`.  The caller then lets the source read the secret again
(the client may already use a rotated password) and calls :meth:`ClientAuthenticator.recheck` with
what it read: every MySQL answer can be checked again against another password with the same nonce
(a native or caching_sha2 scramble, a password sent in full), so, unlike SCRAM on PostgreSQL, a
client already on the new password gets in at its first attempt.

Failures carry MySQL's "Access denied" (1045, SQLSTATE 28000), the shape RDS Proxy documents for
every MySQL-family credential failure, with the client's host as the server would name it.  Where
RDS has words for the reason (no credentials for the user, an IAM token refused, IAM without TLS),
they follow the 1045 text after a colon; RDS documents no MySQL text of its own for these, so the
1045 keeps clients' "Access denied" handling working and the reason stays readable.  The one
documented exception is the IAM concurrency limit: ``ERROR 1040 (HY000): IAM authentication rate
limit exceeded``.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reference_proxy.contracts import ClientCredential, ProxyError
from reference_proxy.credentials.refusals import (
    MYSQL_IAM_RATE_LIMIT_TEXT,
    CredentialRefused,
    RefusalReason,
    refusal_text,
)
from reference_proxy.credentials.source import IAM_METHOD
from reference_proxy.protocol.mysql import (
    CACHING_SHA2_PASSWORD,
    CLEAR_PASSWORD,
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

if TYPE_CHECKING:
    from reference_proxy.credentials.iam_auth import IamAttempt, IamAuthenticator

__all__ = [
    "ACCESS_DENIED",
    "ACCESS_DENIED_SQLSTATE",
    "AuthFailed",
    "ClientAuthenticator",
    "ServerAuthPacket",
    "Sha2FastPathCache",
    "StoredPassword",
    "WrongPassword",
    "access_denied",
    "refused",
]

ACCESS_DENIED = 1045
ACCESS_DENIED_SQLSTATE = "28000"
TOO_MANY_CONNECTIONS = 1040

ServerAuthPacket = AuthSwitchRequest | AuthMoreData
"""What the authenticator asks the login to send before the final OK."""

_STORED_NATIVE_HASH = re.compile(r"\*[0-9A-Fa-f]{40}")


class AuthFailed(ProxyError):
    """The client did not prove itself: answer with this ERR, then close.  ``detail`` says more for
    the proxy's log (which IAM check failed) and never holds a password or a token."""

    def __init__(self, message: str, error_code: int = ACCESS_DENIED,
                 sqlstate: str = ACCESS_DENIED_SQLSTATE, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.sqlstate = sqlstate
        self.detail = detail


class WrongPassword(AuthFailed):
    """The client's proof did not match the held password; ``recheckable`` when the answer it sent can
    still be checked against another password (:meth:`ClientAuthenticator.recheck`)."""

    def __init__(self, message: str, *, recheckable: bool) -> None:
        super().__init__(message)
        self.recheckable = recheckable


def access_denied(user: str, host: str, used_password: bool, why: str = "") -> AuthFailed:
    """MySQL's 1045 text; ``why`` is appended when the client can do something about it."""
    message = f"Access denied for user '{user}'@'{host}' (using password: {'YES' if used_password else 'NO'})"
    return AuthFailed(f"{message}: {why}" if why else message)


def refused(reason: RefusalReason, user: str, host: str, used_password: bool = True,
            detail: str = "") -> AuthFailed:
    """A credential refusal as the MySQL family words it (see the module docstring): 1040 with RDS's
    text for the IAM concurrency limit, otherwise 1045 "Access denied" followed by RDS's words."""
    if reason is RefusalReason.IAM_TOO_MANY_COMPETING:
        return AuthFailed(MYSQL_IAM_RATE_LIMIT_TEXT, TOO_MANY_CONNECTIONS, "HY000", detail)
    failure = access_denied(user, host, used_password, refusal_text(reason, user))
    failure.detail = detail
    return failure


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
    """Drives one client's authentication, after its HandshakeResponse41 (or a COM_CHANGE_USER).

    ``start(plugin, response)`` takes the plugin the client answered with and its answer; each later
    ``receive(data)`` takes the client's next raw auth packet.  Both return the packets to send next
    (AuthSwitchRequest or AuthMoreData) and whether the client is now authenticated (the login then
    sends OK).  A failure raises :class:`AuthFailed` (:class:`WrongPassword` for a wrong password, see
    :meth:`recheck`); an answer in the wrong shape raises ProtocolViolation.  For an IAM user, ``iam``
    judges the token the client sends for ``token_endpoint`` (the (host, port) tokens must name); call
    :meth:`abandon` when the exchange ends early, so an IAM login in progress gives its place back.
    """

    def __init__(self, user: str, credential: ClientCredential | None, *, nonce: bytes, client_host: str,
                 tls: bool, sha2_cache: Sha2FastPathCache, can_switch_plugin: bool = True,
                 iam: IamAuthenticator | None = None, token_endpoint: tuple[str, int] | None = None) -> None:
        self.user = user
        self.nonce = nonce
        self.plugin: str | None = None
        self._credential = credential
        self._stored = StoredPassword.from_secret(credential.password) if credential is not None else None
        self._host = client_host
        self._tls = tls
        self._cache = sha2_cache
        self._can_switch = can_switch_plugin
        self._iam = iam
        self._token_endpoint = token_endpoint
        self._iam_attempt: IamAttempt | None = None
        self._step = "start"
        self._wrong_answer: tuple[str, bytes] | None = None  # (step, answer) of a recheckable mismatch

    @property
    def credential(self) -> ClientCredential | None:
        """The credential the client is being checked against."""
        return self._credential

    def _denied(self, used_password: bool, why: str = "") -> AuthFailed:
        self._step = "failed"
        return access_denied(self.user, self._host, used_password, why)

    def _refused(self, reason: RefusalReason, used_password: bool = True, detail: str = "") -> AuthFailed:
        self._step = "failed"
        return refused(reason, self.user, self._host, used_password, detail)

    def _wrong(self, step: str, answer: bytes) -> WrongPassword:
        """A mismatch with the held password; the answer is kept for :meth:`recheck` (once)."""
        recheckable = self._wrong_answer is None
        self._wrong_answer = (step, answer) if recheckable else ("", b"")
        self._step = "failed"
        message = access_denied(self.user, self._host, bool(answer) or step == "sha2-full").message
        return WrongPassword(message, recheckable=recheckable)

    def start(self, client_plugin: str | None, response: bytes) -> tuple[list[ServerAuthPacket], bool]:
        if self._step != "start":
            raise ProtocolViolation(f"authentication already started (step {self._step!r})")
        cred = self._credential
        if cred is None:
            raise self._refused(RefusalReason.NO_CREDENTIALS, bool(response))
        method = cred.method
        if method == IAM_METHOD:
            return self._start_iam(client_plugin, response)
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
        if self._step == "iam-token":
            return self._check_token(data)
        if self._step in _SUPPORTED_METHODS:
            return self._check(data)
        raise ProtocolViolation(f"unexpected authentication packet in step {self._step!r}")

    def recheck(self, credential: ClientCredential) -> tuple[list[ServerAuthPacket], bool]:
        """After a recheckable :class:`WrongPassword`: check the answer the client already sent against
        ``credential`` (the user's secret as read again), as if it had been held from the start.  A
        caching_sha2 scramble the fast-path cache cannot prove for the new password goes on to the
        full path (over TLS), as a first login after a password change does.  Raises WrongPassword,
        no longer recheckable, when the answer matches neither, or when the method changed."""
        wrong = self._wrong_answer
        if wrong is None or not wrong[0] or credential.method != self.plugin:
            raise WrongPassword(access_denied(self.user, self._host, True).message, recheckable=False)
        step, answer = wrong
        self._credential = credential
        self._stored = StoredPassword.from_secret(credential.password)
        if step == "sha2-full":
            return self._check_full_sha2(answer)
        return self._check(answer)

    def abandon(self) -> None:
        """The exchange ended before the token was judged: give the IAM login's place back."""
        if self._iam_attempt is not None:
            self._iam_attempt.abandon()

    # ------------------------------------------------------------------------------------ IAM

    def _start_iam(self, client_plugin: str | None, response: bytes) -> tuple[list[ServerAuthPacket], bool]:
        if self._iam is None or self._token_endpoint is None:
            raise self._refused(RefusalReason.IAM_TOKEN_REFUSED, bool(response), "IAM authentication is not set up")
        try:
            self._iam_attempt = self._iam.begin(self.user, tls=self._tls)
        except CredentialRefused as e:
            raise self._refused(e.reason, bool(response), e.detail) from None
        self.plugin = CLEAR_PASSWORD
        if client_plugin == CLEAR_PASSWORD:
            return self._check_token(response)
        if not self._can_switch:
            self._iam_attempt.abandon()
            raise self._denied(bool(response), "IAM authentication needs a client that supports authentication "
                                               "plugins (mysql_clear_password)")
        self._step = "iam-token"
        return [AuthSwitchRequest(CLEAR_PASSWORD)], False

    def _check_token(self, data: bytes) -> tuple[list[ServerAuthPacket], bool]:
        assert self._iam_attempt is not None and self._token_endpoint is not None
        host, port = self._token_endpoint
        token = (data[:-1] if data.endswith(b"\0") else data).decode("utf-8", "replace")
        try:
            self._iam_attempt.finish(token, host=host, port=port)
        except CredentialRefused as e:
            raise self._refused(e.reason, bool(data), e.detail) from None
        finally:
            self._iam_attempt.abandon()  # a failure of any kind must not keep the place either
        self._step = "done"
        return [], True

    # ------------------------------------------------------------------------------ passwords

    def _check(self, response: bytes) -> tuple[list[ServerAuthPacket], bool]:
        stored = self._stored
        assert stored is not None
        if self.plugin == NATIVE_PASSWORD:
            if not stored.matches_native_scramble(response, self.nonce):
                raise self._wrong(NATIVE_PASSWORD, response)
            self._step = "done"
            return [], True
        return self._check_fast_sha2(response)

    def _check_fast_sha2(self, response: bytes) -> tuple[list[ServerAuthPacket], bool]:
        stored = self._stored
        assert stored is not None
        if not response or stored.is_empty:
            if response or not stored.is_empty:
                raise self._wrong(CACHING_SHA2_PASSWORD, response)
            self._step = "done"
            return [], True
        cached = self._cache.lookup(self.user, stored)
        if cached is not None:
            if not caching_sha2_verify(response, self.nonce, cached):
                raise self._wrong(CACHING_SHA2_PASSWORD, response)
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
            raise self._wrong("sha2-full", data)
        self._cache.remember(self.user, stored, password)
        self._step = "done"
        return [], True
