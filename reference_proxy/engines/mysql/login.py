"""One MySQL client's login, sans-I/O: from the proxy's greeting to OK or ERR.

The caller owns the socket and the credential source.  It sends :meth:`ClientLogin.greeting`, feeds
every byte the client sends to :meth:`ClientLogin.receive_data`, and carries out the events that come
back, in order: :class:`SendToClient` (write these bytes), :class:`StartTls` (upgrade the socket to TLS
as the server, then call :meth:`ClientLogin.tls_started`), :class:`LookUpCredentials` (ask the source
for the user, then call :meth:`ClientLogin.credentials_found`), :class:`RecheckCredentials` (the
password did not match: let the source read it again, then call :meth:`ClientLogin.recheck`), and
finally :class:`Authenticated` (the OK is in the bytes just before it) or :class:`Refused` (an ERR is;
close after writing it).  Call :meth:`ClientLogin.abandon` if the login ends any other way.

Credentials are asked for as an event rather than read from a synchronous table because the answer
may need I/O: a secret whose cache time ran out is read again before it is trusted, as on the
PostgreSQL side, and a wrong password makes the source read the secret again (bounded per user)
before the answer is judged once more.  A cached copy kept fresh by the periodic refresh would serve
a secret older than its TTL whenever a refresh failed or lagged, and could not offer the re-read.

The exchange, with the sequence ids it checks (each packet takes the next id, in either direction)::

    proxy  0 HandshakeV10 (plugin mysql_native_password, a fresh 20-byte nonce)
    client 1 SSLRequest                  -> StartTls; then, encrypted:
    client 2 HandshakeResponse41         (or at 1, without TLS)  -> LookUpCredentials
    proxy  n AuthSwitchRequest / AuthMoreData, client n+1 answers   (as the user's plugin needs)
    proxy  n OK, or ERR and close

The greeting is shaped like Aurora MySQL 3's (a MySQL 8.0 server) with two choices made for MariaDB
backends, the stand-ins here:

* The version is ``8.0.32-MariaDB-compatible``.  MySQL drivers parse the leading 8.0.32 as the
  server's version; mysql-connector-python reads "MariaDB" in it as a reason to pick charset 45 and
  ``utf8mb4_general_ci``, where against a bare ``8.0.32`` it sets ``utf8mb4_0900_ai_ci``, which MariaDB
  rejects (1273).  The caller may pass another version.
* Capability bit 0 (LONG_PASSWORD, which MariaDB calls CLIENT_MYSQL) is set, so no client negotiates
  MariaDB's extended capabilities (metadata caching, progress reports) with the proxy.

The capabilities offered are MariaDB 10.11's minus COMPRESS (the proxy relays packets as they are),
LOCAL_FILES (the proxy refuses LOAD DATA LOCAL), SESSION_TRACK and DEPRECATE_EOF (the proxy keeps
backend session tracking to itself and gives every client classic EOFs; drivers do not ask for
DEPRECATE_EOF anyway), and SSL unless a TLS context is configured.  A client that sets COMPRESS
regardless (mysql-connector-python with ``compress=True`` does) is refused, since it would switch
framing.  ``require_tls`` refuses a plaintext HandshakeResponse with RDS Proxy's ERROR 3159: an ERR in
reply to the response reaches every client, where one sent instead of the greeting confuses some.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reference_proxy.contracts import ClientCredential, ProxyError
from reference_proxy.engines.mysql.auth import (
    AuthFailed,
    ClientAuthenticator,
    Sha2FastPathCache,
    WrongPassword,
)
from reference_proxy.protocol.mysql import (
    ER_HANDSHAKE_ERROR,
    NATIVE_PASSWORD,
    NEED_DATA,
    Capability,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    PacketReader,
    ProtocolViolation,
    ServerStatus,
    SSLRequest,
    decode_client_handshake,
    encode_packet,
    next_sequence_id,
)

if TYPE_CHECKING:
    from reference_proxy.credentials.iam_auth import IamAuthenticator

__all__ = [
    "LOGIN_MAX_PAYLOAD",
    "NONCE_SIZE",
    "OFFERED_CAPABILITIES",
    "REQUIRE_TLS_CODE",
    "REQUIRE_TLS_MESSAGE",
    "SERVER_VERSION",
    "Authenticated",
    "ClientLogin",
    "LoginEvent",
    "LookUpCredentials",
    "RecheckCredentials",
    "Refused",
    "SendToClient",
    "StartTls",
    "make_nonce",
]

SERVER_VERSION = "8.0.32-MariaDB-compatible"
"""Aurora MySQL 3's MySQL version, marked so that drivers pick collations MariaDB knows (see above)."""

UTF8MB4_GENERAL_CI = 45
"""The greeting's character set: MariaDB's utf8mb4 default, which its backends also speak."""

NONCE_SIZE = 20

REQUIRE_TLS_CODE = 3159
REQUIRE_TLS_MESSAGE = "This RDS Proxy requires TLS connections."
"""RDS Proxy's words for a plaintext client when RequireTLS is on (ERROR 3159, SQLSTATE HY000)."""

ER_WRONG_DB_NAME = 1102
MAX_DATABASE_NAME = 64
"""MySQL and MariaDB refuse longer schema names (1102, SQLSTATE 42000)."""

LOGIN_MAX_PAYLOAD = 96 * 1024
"""A login packet over this is refused (1153) from its header, before its body is read: the largest
legitimate one, a HandshakeResponse41 with connection attributes (MySQL's client library sends at
most 64 KiB of them), stays below it, and an unauthenticated peer must not make the proxy buffer
the 64 MB a logged-in client may send."""

OFFERED_CAPABILITIES = (
    Capability.LONG_PASSWORD | Capability.FOUND_ROWS | Capability.LONG_FLAG | Capability.CONNECT_WITH_DB
    | Capability.NO_SCHEMA | Capability.ODBC | Capability.IGNORE_SPACE | Capability.PROTOCOL_41
    | Capability.INTERACTIVE | Capability.IGNORE_SIGPIPE | Capability.TRANSACTIONS | Capability.RESERVED
    | Capability.SECURE_CONNECTION | Capability.MULTI_STATEMENTS | Capability.MULTI_RESULTS
    | Capability.PS_MULTI_RESULTS | Capability.PLUGIN_AUTH | Capability.CONNECT_ATTRS
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA | Capability.CAN_HANDLE_EXPIRED_PASSWORDS
    | Capability.REMEMBER_OPTIONS)
"""What the greeting offers (plus SSL when TLS is configured); see the module docstring."""

# Plain ints: ``int & Capability.X`` runs enum's reflected ``&`` in Python, on every login.
_COMPRESSION = int(Capability.COMPRESS | Capability.ZSTD_COMPRESSION)
_NEVER_OFFERED = _COMPRESSION | int(Capability.LOCAL_FILES)
_SSL = int(Capability.SSL)
_PLUGIN_AUTH = int(Capability.PLUGIN_AUTH)
_WAITING_FOR_CALLER = frozenset(("tls", "lookup", "recheck"))
"""States in which the login waits for the caller (TLS, a credential lookup) before reading on."""


def make_nonce(random_bytes: Callable[[int], bytes]) -> bytes:
    """A 20-byte scramble from ``random_bytes``, kept to 7-bit bytes other than NUL and ``$``.

    Clients read the nonce both by length and up to a NUL, and ``$`` delimits fields in the hash
    strings some servers build from it; MySQL servers avoid both, so the proxy does too.
    """
    nonce = bytearray(b & 0x7F for b in random_bytes(NONCE_SIZE))
    for i, b in enumerate(nonce):
        if b in (0, ord("$")):
            nonce[i] = b + 1
    return bytes(nonce)


@dataclass(frozen=True)
class SendToClient:
    """Write these bytes (whole packets) to the client."""

    data: bytes


@dataclass(frozen=True)
class StartTls:
    """Upgrade the client's connection to TLS now, as the server, then call ``tls_started()``.

    ``early_data`` holds bytes that arrived after the SSLRequest: the start of the client's TLS
    handshake (a client does not wait for an answer before sending it), to be fed to TLS first.
    """

    early_data: bytes = b""


@dataclass(frozen=True)
class Authenticated:
    """The client is logged in; the OK has been handed over in the SendToClient before this event.

    ``capabilities`` are the negotiated ones (the client's, within what the proxy offered): every
    later packet to or from this client is read and written by them.
    """

    user: str
    database: str | None
    capabilities: int
    character_set: int
    max_packet_size: int
    attributes: tuple[tuple[str, str], ...]
    tls: bool
    auth_plugin: str
    status_flags: int
    ok_size: int = 0
    """Bytes at the end of the SendToClient before this event that are the OK packet (header
    included): a caller that must check something first (does the database exist?) holds them back
    and sends an ERR at :attr:`ok_sequence` instead, as a server refusing the database does."""
    ok_sequence: int = 2


@dataclass(frozen=True)
class Refused:
    """The login failed; the ERR is in the SendToClient before this event. Close the connection.

    ``auth_failure`` marks refusals RDS counts in ClientConnectionsSetupFailedAuth (bad credentials,
    TLS required); protocol errors are not.  ``detail`` says more for the log (no secrets).
    """

    error_code: int
    sqlstate: str
    message: str
    auth_failure: bool = False
    detail: str = ""


@dataclass(frozen=True)
class LookUpCredentials:
    """Ask the credential source about ``user`` (reading its secret first when due), then call
    ``credentials_found()`` with its ClientCredential, or None when the proxy has none for ``user``."""

    user: str


@dataclass(frozen=True)
class RecheckCredentials:
    """The client's answer did not match ``tried``: let the source read ``user``'s secret again (it may
    have been rotated and the client already use the new password), then call ``recheck()`` with the
    ClientCredential it holds now (None, or ``tried`` again, refuses the login)."""

    user: str
    tried: ClientCredential


LoginEvent = SendToClient | StartTls | LookUpCredentials | RecheckCredentials | Authenticated | Refused


class _RequestRefused(ProxyError):
    """A well-formed request the proxy declines (not an authentication failure)."""

    def __init__(self, message: str, error_code: int, sqlstate: str) -> None:
        super().__init__(message)
        self.message, self.error_code, self.sqlstate = message, error_code, sqlstate


class ClientLogin:
    """The login state machine of one client connection; see the module docstring.

    ``client_host`` is how error texts name the client ('user'@'host').  ``tls_available`` says a TLS
    context is configured (SSL is offered); ``status_flags`` go in the final OK, and should be what
    the session starts with.  ``offered_capabilities`` never gain COMPRESS or LOCAL_FILES.  ``nonce``
    stays readable after the login: a later COM_CHANGE_USER answers the same nonce, and a
    ClientAuthenticator built with it checks that answer.  ``iam`` checks the logins of IAM users,
    whose tokens must name ``token_endpoint`` (the (host, port) the client was given).
    """

    def __init__(self, *, client_host: str, connection_id: int, sha2_cache: Sha2FastPathCache,
                 tls_available: bool = False, require_tls: bool = False,
                 random_bytes: Callable[[int], bytes] = os.urandom, server_version: str = SERVER_VERSION,
                 character_set: int = UTF8MB4_GENERAL_CI, status_flags: int = ServerStatus.AUTOCOMMIT,
                 offered_capabilities: int = OFFERED_CAPABILITIES, iam: IamAuthenticator | None = None,
                 token_endpoint: tuple[str, int] | None = None) -> None:
        self._iam = iam
        self._token_endpoint = token_endpoint
        self._client_host = client_host
        self._sha2_cache = sha2_cache
        self._require_tls = require_tls
        self._status_flags = status_flags
        offered = int(offered_capabilities) & ~_NEVER_OFFERED
        self.offered_capabilities = offered | _SSL if tls_available else offered & ~_SSL
        self.nonce = make_nonce(random_bytes)
        self._greeting = HandshakeV10(server_version, connection_id, self.nonce, self.offered_capabilities,
                                      character_set, status_flags, NATIVE_PASSWORD)
        self._reader = PacketReader(LOGIN_MAX_PAYLOAD, what="client", expected_sequence=None)
        self._state = "new"
        self._response: HandshakeResponse41 | None = None
        self._capabilities = 0
        self._auth: ClientAuthenticator | None = None
        self._reply_sequence = 0  # where the next server packet goes while the caller looks something up
        self._wrong: WrongPassword | None = None
        self.tls = False

    @property
    def finished(self) -> bool:
        """True once the login ended either way (Authenticated or Refused was returned)."""
        return self._state in ("done", "closed")

    def greeting(self) -> SendToClient:
        """The proxy's first packet (sequence id 0)."""
        if self._state != "new":
            raise RuntimeError("the greeting was already sent")
        self._state = "handshake"
        self._reader.expected_sequence = 1
        return SendToClient(encode_packet(self._greeting.encode(), 0)[0])

    def tls_started(self) -> None:
        """The caller finished the TLS handshake; the HandshakeResponse41 follows, encrypted."""
        if self._state != "tls":
            raise RuntimeError("tls_started() without a StartTls event")
        self.tls = True
        self._state = "response"

    def take_buffered(self) -> bytes:
        """Bytes received after the login's last packet (a client's first command, if it hurried)."""
        return self._reader.take_buffered()

    def receive_data(self, data: bytes) -> list[LoginEvent]:
        """Feed bytes from the client; returns the events to carry out, in order."""
        if self._state in ("new", "tls"):
            raise RuntimeError(f"client data in state {self._state!r}: send the greeting / finish TLS first")
        if self.finished:
            return []
        self._reader.receive_data(data)
        events: list[LoginEvent] = []
        while not self.finished and self._state not in _WAITING_FOR_CALLER:
            expected = self._reader.expected_sequence
            try:
                packet = self._reader.next_packet()
            except ProtocolViolation as e:
                assert expected is not None
                return events + self._refuse(e.error_code, e.sqlstate, e.message, next_sequence_id(expected))
            if packet is NEED_DATA:
                break
            reply_sequence = next_sequence_id(packet.sequence_id)
            events += self._guarded(lambda p=packet, r=reply_sequence: self._on_packet(p.payload, r),
                                    reply_sequence)
        return events

    def credentials_found(self, credential: ClientCredential | None) -> list[LoginEvent]:
        """The answer to :class:`LookUpCredentials`: what the source holds for the user (None: nothing)."""
        if self._state != "lookup":
            raise RuntimeError(f"credentials_found() in state {self._state!r}: no lookup was asked for")
        response = self._response
        assert response is not None
        caps = response.capabilities
        client_plugin = response.auth_plugin_name if caps & _PLUGIN_AUTH else NATIVE_PASSWORD
        self._auth = ClientAuthenticator(
            response.username, credential, nonce=self.nonce, client_host=self._client_host, tls=self.tls,
            sha2_cache=self._sha2_cache, can_switch_plugin=bool(caps & _PLUGIN_AUTH), iam=self._iam,
            token_endpoint=self._token_endpoint)
        self._state = "auth"
        auth, sequence = self._auth, self._reply_sequence
        return self._guarded(lambda: self._after_auth_step(*auth.start(client_plugin, response.auth_response),
                                                           sequence), sequence) + self._continue()

    def recheck(self, credential: ClientCredential | None) -> list[LoginEvent]:
        """The answer to :class:`RecheckCredentials`: the user's credential as the source holds it now."""
        if self._state != "recheck":
            raise RuntimeError(f"recheck() in state {self._state!r}: no recheck was asked for")
        wrong, auth, sequence = self._wrong, self._auth, self._reply_sequence
        assert wrong is not None and auth is not None
        self._state, self._wrong = "auth", None
        if credential is None or credential == auth.credential:
            return self._refuse(wrong.error_code, wrong.sqlstate, wrong.message, sequence, auth_failure=True)
        return self._guarded(lambda: self._after_auth_step(*auth.recheck(credential), sequence),
                             sequence) + self._continue()

    def answer_lookups(self, events: list[LoginEvent],
                       credentials: Callable[[str], ClientCredential | None]) -> list[LoginEvent]:
        """``events`` with every credential lookup and recheck answered at once from ``credentials``, a
        fixed table (a user's entry never changes, so a recheck refuses): for a login served without a
        credential source, such as a test server of fixed users."""
        out: list[LoginEvent] = []
        for event in events:
            if isinstance(event, LookUpCredentials):
                out += self.answer_lookups(self.credentials_found(credentials(event.user)), credentials)
            elif isinstance(event, RecheckCredentials):
                out += self.answer_lookups(self.recheck(credentials(event.user)), credentials)
            else:
                out.append(event)
        return out

    def abandon(self) -> None:
        """The login ends without Authenticated or Refused (the client left, a timeout): an IAM login
        in progress gives its place back."""
        if self._auth is not None:
            self._auth.abandon()

    def _continue(self) -> list[LoginEvent]:
        """Packets that arrived while the caller was looking something up."""
        return self.receive_data(b"") if not self.finished and self._reader.buffered else []

    def _guarded(self, step: Callable[[], list[LoginEvent]], reply_sequence: int) -> list[LoginEvent]:
        """Run one step of the login; a refusal it raises becomes the ERR at ``reply_sequence``."""
        try:
            return step()
        except WrongPassword as e:
            if not e.recheckable:
                return self._refuse(e.error_code, e.sqlstate, e.message, reply_sequence, auth_failure=True)
            auth = self._auth
            assert auth is not None and auth.credential is not None
            self._state, self._wrong, self._reply_sequence = "recheck", e, reply_sequence
            return [RecheckCredentials(auth.user, auth.credential)]
        except (ProtocolViolation, _RequestRefused) as e:
            return self._refuse(e.error_code, e.sqlstate, e.message, reply_sequence)
        except AuthFailed as e:
            return self._refuse(e.error_code, e.sqlstate, e.message, reply_sequence, auth_failure=True,
                                detail=e.detail)

    # ------------------------------------------------------------------------------ steps

    def _on_packet(self, payload: bytes, sequence_id: int) -> list[LoginEvent]:
        if self._state == "handshake":
            message = decode_client_handshake(payload)
            if isinstance(message, SSLRequest):
                return self._on_ssl_request(message)
            return self._on_response(message, sequence_id)
        if self._state == "response":
            message = decode_client_handshake(payload)
            if isinstance(message, SSLRequest):
                raise ProtocolViolation("SSLRequest on a connection that already uses TLS",
                                        ER_HANDSHAKE_ERROR)
            return self._on_response(message, sequence_id)
        assert self._state == "auth" and self._auth is not None
        return self._after_auth_step(*self._auth.receive(payload), sequence_id)

    def _on_ssl_request(self, request: SSLRequest) -> list[LoginEvent]:
        if not self.offered_capabilities & _SSL:
            raise ProtocolViolation("SSLRequest, but this proxy does not offer TLS", ER_HANDSHAKE_ERROR)
        self._state = "tls"
        return [StartTls(self._reader.take_buffered())]

    def _on_response(self, response: HandshakeResponse41, sequence_id: int) -> list[LoginEvent]:
        caps = response.capabilities
        if caps & _COMPRESSION:
            raise ProtocolViolation("Bad handshake: this proxy does not support the compressed protocol; "
                                    "connect without compression", ER_HANDSHAKE_ERROR)
        if self._require_tls and not self.tls:
            raise AuthFailed(REQUIRE_TLS_MESSAGE, REQUIRE_TLS_CODE, "HY000")
        database = response.database or None
        if database is not None and len(database) > MAX_DATABASE_NAME:
            raise _RequestRefused(f"Incorrect database name '{database[:100]}'", ER_WRONG_DB_NAME, "42000")
        self._response = response
        self._capabilities = caps & self.offered_capabilities
        if not self.tls:
            self._capabilities &= ~_SSL
        self._state, self._reply_sequence = "lookup", sequence_id
        return [LookUpCredentials(response.username)]

    def _after_auth_step(self, packets: list, done: bool, sequence_id: int) -> list[LoginEvent]:
        out = bytearray()
        for packet in packets:
            data, sequence_id = encode_packet(packet.encode(), sequence_id)
            out += data
        if not done:
            self._reader.expected_sequence = sequence_id
            return [SendToClient(bytes(out))]
        ok = encode_packet(OkPacket(status_flags=self._status_flags).encode(self._capabilities), sequence_id)[0]
        out += ok
        self._state = "done"
        response, auth = self._response, self._auth
        assert response is not None and auth is not None and auth.plugin is not None
        self._reader.expected_sequence = 0
        return [SendToClient(bytes(out)),
                Authenticated(response.username, response.database or None, self._capabilities,
                              response.character_set, response.max_packet_size, response.attributes,
                              self.tls, auth.plugin, self._status_flags, len(ok), sequence_id)]

    def _refuse(self, code: int, sqlstate: str, message: str, sequence_id: int, *,
                auth_failure: bool = False, detail: str = "") -> list[LoginEvent]:
        self._state = "closed"
        err, _ = encode_packet(ErrPacket(code, message, sqlstate).encode(), sequence_id)
        return [SendToClient(err), Refused(code, sqlstate, message, auth_failure, detail)]
