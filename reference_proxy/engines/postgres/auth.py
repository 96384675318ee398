"""Client authentication for PostgreSQL sessions, sans-I/O: messages in, messages out.

The proxy checks the client's password itself, against its static users (what RDS keeps in
Secrets Manager), with SCRAM-SHA-256 (RDS's default ``POSTGRES_SCRAM_SHA_256``) or MD5
(``POSTGRES_MD5``), per user.  SCRAM uses the ``scramp`` library.  Failures carry RDS Proxy's
messages and SQLSTATE 28P01.  Only SCRAM-SHA-256 is offered, never the -PLUS variant: the proxy
terminates TLS, so channel binding to its certificate would prove nothing about the database.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from scramp import ScramException, ScramMechanism

from reference_proxy.contracts import ClientCredential, ProxyError
from reference_proxy.protocol.postgres import (
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    PasswordMessage,
    ProtocolViolation,
    SASLInitialResponse,
    SASLResponse,
)

__all__ = [
    "INVALID_PASSWORD",
    "MD5",
    "SCRAM",
    "AuthFailed",
    "ClientAuthenticator",
    "ScramSecretCache",
    "md5_answer",
]

SCRAM = "scram-sha-256"
MD5 = "md5"
INVALID_PASSWORD = "28P01"
_MECHANISM = "SCRAM-SHA-256"


class AuthFailed(ProxyError):
    """The client did not prove the password; ``message`` is what the client is told."""

    def __init__(self, message: str, sqlstate: str = INVALID_PASSWORD) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


def md5_answer(user: str, password: str, salt: bytes) -> str:
    """What a client sends for AuthenticationMD5Password: ``md5`` + md5(md5(password+user) + salt)."""
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


class ScramSecretCache:
    """SCRAM verifiers per (user, password): deriving one costs 4096 PBKDF2 rounds, so do it once."""

    def __init__(self, iterations: int = 4096) -> None:
        self._mechanism = ScramMechanism(_MECHANISM)
        self._iterations = iterations
        self._cache: dict[tuple[str, str], tuple] = {}

    def auth_info(self, user: str, password: str) -> tuple:
        key = (user, password)
        info = self._cache.get(key)
        if info is None:
            info = self._mechanism.make_auth_info(password, iteration_count=self._iterations)
            self._cache[key] = info
        return info

    def server_for(self, user: str, password: str):
        info = self.auth_info(user, password)
        return self._mechanism.make_server(lambda _name: info)


def _client_first_bare(client_first: str) -> str:
    """The part after the GS2 header (``n,,`` / ``y,,``)."""
    first = client_first.index(",")
    return client_first[client_first.index(",", first + 1) + 1:]


def _with_placeholder_user(client_first: str) -> str:
    """libpq sends an empty SCRAM user name (``n=``) because PostgreSQL takes the user from the
    StartupMessage; scramp refuses empty attributes, so it is shown a placeholder instead."""
    bare = _client_first_bare(client_first)
    header = client_first[:len(client_first) - len(bare)]
    if bare.startswith("n=,"):
        bare = "n=*," + bare[3:]
    return header + bare


def _wrong_password(user: str) -> AuthFailed:
    return AuthFailed(f"The password that was provided for the role {user} is wrong.")


class ClientAuthenticator:
    """Drives one client's authentication exchange.

    ``start()`` returns the first request to send; each ``receive(PasswordMessage)`` returns the
    next messages to send and whether authentication finished (the last list ends with
    AuthenticationOk).  Raises :class:`AuthFailed` on a wrong password or unknown user, and
    :class:`ProtocolViolation` on a malformed answer.
    """

    def __init__(self, user: str, credential: ClientCredential | None, *, scram_cache: ScramSecretCache,
                 token_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.user = user
        self._credential = credential
        self._scram_cache = scram_cache
        self._token_bytes = token_bytes
        self._step = "start"
        self._salt = b""
        self._server = None

    def start(self) -> list:
        cred = self._credential
        if cred is None:
            raise AuthFailed(f"This RDS proxy has no credentials for the role {self.user}. Check the "
                             f"credentials for this role and try again.")
        if cred.method == MD5:
            self._salt = self._token_bytes(4)
            self._step = "md5"
            return [AuthenticationMD5Password(self._salt)]
        if cred.method == SCRAM:
            self._step = "sasl-initial"
            return [AuthenticationSASL((_MECHANISM,))]
        raise AuthFailed("RDS supports only IAM, MD5, or SCRAM authentication.")

    def receive(self, msg: PasswordMessage) -> tuple[list, bool]:
        cred = self._credential
        assert cred is not None
        if self._step == "md5":
            expected = md5_answer(cred.user, cred.password, self._salt)
            if not hmac.compare_digest(msg.password().encode(), expected.encode()):
                raise _wrong_password(self.user)
            self._step = "done"
            return [AuthenticationOk()], True
        if self._step == "sasl-initial":
            initial = SASLInitialResponse.from_password_message(msg)
            if initial.mechanism != _MECHANISM:
                raise AuthFailed("RDS supports only IAM, MD5, or SCRAM authentication.")
            if initial.data is None:
                raise ProtocolViolation("SASLInitialResponse without a client-first-message")
            self._server = self._scram_cache.server_for(cred.user, cred.password)
            try:
                first_message = initial.data.decode("utf-8")
                self._server.set_client_first(_with_placeholder_user(first_message))
                # The proof covers the message exactly as the client sent it.
                self._server.client_first_bare = _client_first_bare(first_message)
                first = self._server.get_server_first()
            except (ScramException, UnicodeDecodeError, ValueError) as e:
                raise ProtocolViolation(f"malformed SCRAM client-first-message: {e}") from None
            self._step = "sasl-final"
            return [AuthenticationSASLContinue(first.encode())], False
        if self._step == "sasl-final":
            final = SASLResponse.from_password_message(msg)
            try:
                self._server.set_client_final(final.data.decode("utf-8"))
                server_final = self._server.get_server_final()
            except ScramException:
                raise _wrong_password(self.user) from None
            except UnicodeDecodeError:
                raise ProtocolViolation("SCRAM client-final-message is not UTF-8") from None
            self._step = "done"
            return [AuthenticationSASLFinal(server_final.encode()), AuthenticationOk()], True
        raise ProtocolViolation(f"unexpected password message in authentication step {self._step!r}")
