"""Client authentication for PostgreSQL sessions, sans-I/O: messages in, messages out.

The proxy checks the client's proof itself, against the credentials its credential source holds for
the user (static users, or the user's Secrets Manager secret, as RDS does): SCRAM-SHA-256 (RDS's
default ``POSTGRES_SCRAM_SHA_256``) or MD5 (``POSTGRES_MD5``), per user, or, for a user with
``IAMAuth = REQUIRED``, an IAM token sent as a cleartext password over TLS
(:mod:`reference_proxy.credentials.iam_auth` judges it).  SCRAM uses the ``scramp`` library.
Refusals carry RDS Proxy's words (:mod:`reference_proxy.credentials.refusals`) and a SQLSTATE chosen
here, as RDS does not document its own.  Only SCRAM-SHA-256 is offered, never the -PLUS variant: the
proxy terminates TLS, so channel binding to its certificate would prove nothing about the database.

A wrong password raises :class:`WrongPassword`.  The session then lets the source read the secret
again (the client may already use a rotated password); an MD5 answer can be checked once more
against the newer password (:meth:`ClientAuthenticator.recheck`), a SCRAM exchange cannot be redone,
so that client is refused and its retry meets the new secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from scramp import ScramException, ScramMechanism

from reference_proxy.contracts import ClientCredential, ProxyError
from reference_proxy.credentials.refusals import CredentialRefused, RefusalReason, refusal_text
from reference_proxy.credentials.source import IAM_METHOD
from reference_proxy.protocol.postgres import (
    AuthenticationCleartextPassword,
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

if TYPE_CHECKING:
    from reference_proxy.credentials.iam_auth import IamAttempt, IamAuthenticator

__all__ = [
    "INVALID_PASSWORD",
    "MD5",
    "SCRAM",
    "AuthFailed",
    "ClientAuthenticator",
    "ScramSecretCache",
    "WrongPassword",
    "md5_answer",
]

SCRAM = "scram-sha-256"
MD5 = "md5"
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION = "28000"
TOO_MANY_CONNECTIONS = "53300"
_MECHANISM = "SCRAM-SHA-256"

SQLSTATE_BY_REASON = {
    RefusalReason.NO_CREDENTIALS: INVALID_PASSWORD,
    RefusalReason.WRONG_PASSWORD: INVALID_PASSWORD,
    RefusalReason.IAM_TOKEN_REFUSED: INVALID_PASSWORD,
    RefusalReason.UNSUPPORTED_METHOD: INVALID_AUTHORIZATION,
    RefusalReason.IAM_NEEDS_TLS: INVALID_AUTHORIZATION,
    RefusalReason.IAM_TOO_MANY_COMPETING: TOO_MANY_CONNECTIONS,
}
"""The SQLSTATE each refusal carries: 28P01 wherever a proof (or who may prove) failed, as PostgreSQL
reports a failed password; 28000 for a connection that may not log in this way; 53300 for the IAM
concurrency limit, PostgreSQL's code for running out of connection slots."""


class AuthFailed(ProxyError):
    """The client did not prove itself; ``message`` is what the client is told, ``reason`` why
    (None for a refusal that is not about credentials), ``detail`` more for the log (no secrets)."""

    def __init__(self, message: str, sqlstate: str = INVALID_PASSWORD, *, reason: RefusalReason | None = None,
                 detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.reason = reason
        self.detail = detail

    @classmethod
    def refused(cls, reason: RefusalReason, user: str, detail: str = "") -> AuthFailed:
        """RDS Proxy's refusal for ``reason``, with this engine's SQLSTATE."""
        return cls(refusal_text(reason, user), SQLSTATE_BY_REASON[reason], reason=reason, detail=detail)

    @classmethod
    def from_refusal(cls, refusal: CredentialRefused) -> AuthFailed:
        return cls.refused(refusal.reason, refusal.user, refusal.detail)


class WrongPassword(AuthFailed):
    """The client's password did not match the held one; ``recheckable`` when the answer it sent can
    be checked again against another password (MD5), so a rotated secret read since can still let it in."""

    def __init__(self, user: str, *, recheckable: bool) -> None:
        super().__init__(refusal_text(RefusalReason.WRONG_PASSWORD, user), INVALID_PASSWORD,
                         reason=RefusalReason.WRONG_PASSWORD)
        self.recheckable = recheckable


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


class ClientAuthenticator:
    """Drives one client's authentication exchange.

    ``start()`` returns the first request to send; each ``receive(PasswordMessage)`` returns the
    next messages to send and whether authentication finished (the last list ends with
    AuthenticationOk).  Raises :class:`AuthFailed` (:class:`WrongPassword` for a wrong password) and
    :class:`ProtocolViolation` on a malformed answer.  For an IAM user, ``iam`` judges the token the
    client sends for ``token_endpoint`` (the (host, port) tokens must name) on a connection that does
    or does not use ``tls``; call :meth:`abandon` when the exchange ends early, so an IAM login in
    progress gives its place back.
    """

    def __init__(self, user: str, credential: ClientCredential | None, *, scram_cache: ScramSecretCache,
                 token_bytes: Callable[[int], bytes] = os.urandom, iam: IamAuthenticator | None = None,
                 tls: bool = False, token_endpoint: tuple[str, int] | None = None) -> None:
        self.user = user
        self._credential = credential
        self._scram_cache = scram_cache
        self._token_bytes = token_bytes
        self._iam = iam
        self._tls = tls
        self._token_endpoint = token_endpoint
        self._iam_attempt: IamAttempt | None = None
        self._step = "start"
        self._salt = b""
        self._md5_answer = ""
        self._server = None

    @property
    def credential(self) -> ClientCredential | None:
        """The credential the client is being checked against."""
        return self._credential

    def start(self) -> list:
        cred = self._credential
        if cred is None:
            raise AuthFailed.refused(RefusalReason.NO_CREDENTIALS, self.user)
        if cred.method == MD5:
            self._salt = self._token_bytes(4)
            self._step = "md5"
            return [AuthenticationMD5Password(self._salt)]
        if cred.method == SCRAM:
            self._step = "sasl-initial"
            return [AuthenticationSASL((_MECHANISM,))]
        if cred.method == IAM_METHOD:
            return self._start_iam()
        raise AuthFailed.refused(RefusalReason.UNSUPPORTED_METHOD, self.user, f"method {cred.method!r}")

    def _start_iam(self) -> list:
        if self._iam is None or self._token_endpoint is None:
            raise AuthFailed.refused(RefusalReason.IAM_TOKEN_REFUSED, self.user, "IAM authentication is not set up")
        try:
            self._iam_attempt = self._iam.begin(self.user, tls=self._tls)
        except CredentialRefused as e:
            raise AuthFailed.from_refusal(e) from None
        self._step = "iam-token"
        return [AuthenticationCleartextPassword()]

    def receive(self, msg: PasswordMessage) -> tuple[list, bool]:
        cred = self._credential
        assert cred is not None
        if self._step == "md5":
            self._md5_answer = msg.password()
            return self._check_md5(cred, recheckable=True)
        if self._step == "iam-token":
            return self._check_token(msg)
        if self._step == "sasl-initial":
            return self._scram_first(cred, msg)
        if self._step == "sasl-final":
            final = SASLResponse.from_password_message(msg)
            try:
                self._server.set_client_final(final.data.decode("utf-8"))
                server_final = self._server.get_server_final()
            except ScramException:
                raise WrongPassword(self.user, recheckable=False) from None
            except UnicodeDecodeError:
                raise ProtocolViolation("SCRAM client-final-message is not UTF-8") from None
            self._step = "done"
            return [AuthenticationSASLFinal(server_final.encode()), AuthenticationOk()], True
        raise ProtocolViolation(f"unexpected password message in authentication step {self._step!r}")

    def recheck(self, credential: ClientCredential) -> tuple[list, bool]:
        """After :class:`WrongPassword` with ``recheckable``: check the answer the client already sent
        against ``credential`` (the user's secret as read again).  Raises WrongPassword (no longer
        recheckable) when it does not match either."""
        if self._step != "md5" or credential.method != MD5:
            raise WrongPassword(self.user, recheckable=False)
        self._credential = credential
        return self._check_md5(credential, recheckable=False)

    def abandon(self) -> None:
        """The exchange ended before the token was judged: give the IAM login's place back."""
        if self._iam_attempt is not None:
            self._iam_attempt.abandon()

    def _check_md5(self, cred: ClientCredential, *, recheckable: bool) -> tuple[list, bool]:
        expected = md5_answer(cred.user, cred.password, self._salt)
        if not hmac.compare_digest(self._md5_answer.encode(), expected.encode()):
            raise WrongPassword(self.user, recheckable=recheckable)
        self._step = "done"
        return [AuthenticationOk()], True

    def _check_token(self, msg: PasswordMessage) -> tuple[list, bool]:
        assert self._iam_attempt is not None and self._token_endpoint is not None
        host, port = self._token_endpoint
        try:
            self._iam_attempt.finish(msg.password(), host=host, port=port)
        except CredentialRefused as e:
            raise AuthFailed.from_refusal(e) from None
        finally:
            self._iam_attempt.abandon()  # a malformed message must not keep the place either
        self._step = "done"
        return [AuthenticationOk()], True

    def _scram_first(self, cred: ClientCredential, msg: PasswordMessage) -> tuple[list, bool]:
        initial = SASLInitialResponse.from_password_message(msg)
        if initial.mechanism != _MECHANISM:
            raise AuthFailed.refused(RefusalReason.UNSUPPORTED_METHOD, self.user,
                                     f"SASL mechanism {initial.mechanism!r}")
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
