"""What the proxy lends an engine's client sessions, and what it expects of a session in return.

The server builds one :class:`SessionServices` and hands it to its engine's session factory (see
:mod:`reference_proxy.engines`); every client session of that server shares it.  Everything here
is engine-neutral: the pool, the routing and failover callbacks, the engine's own pin classifier
(passed in, so a session never picks one itself), metrics, the clock and TLS.  What only one
engine's sessions share (PostgreSQL's cancel keys, its cached ParameterStatus values, its SCRAM
verifiers) belongs to that engine's session factory instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from reference_proxy.contracts import (
    ClientCredential,
    Clock,
    InstanceAddress,
    PoolKey,
    ProxyError,
    ReleaseState,
)
from reference_proxy.credentials.source import CredentialSource
from reference_proxy.login_limits import LoginClock, LoginGate, LoginSlot

if TYPE_CHECKING:
    from reference_proxy.credentials.iam_auth import IamAuthenticator

__all__ = ["HANDSHAKE_TIMEOUT", "LOGIN_TIMEOUT", "ClientSession", "LatencyByInstance", "SessionFactory",
           "SessionServices", "turn_away"]

HANDSHAKE_TIMEOUT = 120.0
"""Default seconds of client silence allowed during the handshake (``[proxy] client_handshake_timeout``)."""
LOGIN_TIMEOUT = 60.0
"""Default seconds a whole login may take (``[proxy] client_login_timeout``)."""

log = logging.getLogger("reference_proxy.login")

pin_log = logging.getLogger("reference_proxy.pinning")
"""Every engine's pin lines, in RDS Proxy's words, under one logger name."""
SQL_LOGGER = "reference_proxy.sql"
sql_log = logging.getLogger(SQL_LOGGER)
"""SQL text clients send, logged only with debug logging on (``[logging] debug_logging``)."""


@dataclass
class SessionServices:
    """Everything a session needs from the rest of the proxy, shared by all sessions.

    ``choose_instance(endpoint)`` picks the instance for a new session (raises a ProxyError when
    there is none); ``session_ended(instance_id)`` tells the router it left.  ``acquire(endpoint,
    key, address)``, when given, replaces ``pool.borrow``: it follows failovers (waits for a
    writer, moves a session off a lost reader) and returns the instance actually used with the
    backend.  ``acquire_now(endpoint, key, address)``, when given, is its synchronous shortcut: a
    backend of the session's own instance if one is idle with nobody waiting, else None (then
    ``acquire`` or the pool decides).  ``backend_lost(instance_id, why)`` hears of every backend connection lost mid-use, and ``write_refused(instance_id, why)`` of every write an instance refused as read-only.
    ``wait_for_instance(endpoint)``, when given, replaces ``choose_instance`` for new sessions:
    during a failover it waits (up to the borrow timeout) instead of refusing the connection.
    ``credential_source`` answers who may log in and how (:mod:`reference_proxy.credentials`);
    ``credentials(user)`` is its answer held right now, for logins that cannot wait.  ``iam``, when
    IAM authentication is configured, checks IAM logins; ``token_endpoint(endpoint)`` is the
    (host, port) clients of an endpoint make their IAM tokens for.
    ``classify(sql)`` returns a pin decision with ``.reason`` or None; ``digest(sql)`` normalises
    SQL for logs.  ``log_sql`` is RDS Proxy's debug logging: sessions opened while it is on log the
    text of their statements (see :meth:`classifier`).
    """

    pool: Any
    choose_instance: Callable[[str], InstanceAddress]
    session_ended: Callable[[str], None]
    credential_source: CredentialSource
    classify: Callable[[str], Any]
    digest: Callable[[str], str]
    metrics: Any
    clock: Clock
    tls_context: ssl.SSLContext | None = None
    require_tls: bool = False
    #: Endpoints whose clients may skip TLS although ``require_tls`` is on: empty, except under
    #: failpoint ``tls_unenforced_on_reader`` (reference_proxy.failpoints).
    plaintext_endpoints: frozenset[str] = frozenset()
    token_bytes: Callable[[int], bytes] = os.urandom
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    login_timeout: float = LOGIN_TIMEOUT
    login_gate: LoginGate | None = None
    log_sql: bool = False
    acquire: Callable[[str, PoolKey, InstanceAddress], Awaitable[tuple[InstanceAddress, Any]]] | None = None
    acquire_now: Callable[[str, PoolKey, InstanceAddress], Any] | None = None
    backend_lost: Callable[[str, str], None] | None = None
    write_refused: Callable[[str, str], None] | None = None
    wait_for_instance: Callable[[str], Awaitable[InstanceAddress]] | None = None
    iam: IamAuthenticator | None = None
    token_endpoint: Callable[[str], tuple[str, int]] | None = None
    failpoint: str | None = None
    """The failpoint turned on (:mod:`reference_proxy.failpoints`; None: none). Unsafe, test only: code
    at a failpoint's site misbehaves when this names it."""

    def tls_required(self, endpoint: str) -> bool:
        """Whether a client of ``endpoint`` must use TLS (RequireTLS), asked once per login."""
        return self.require_tls and endpoint not in self.plaintext_endpoints

    def credentials(self, user: str) -> ClientCredential | None:
        """How a client of ``user`` must prove itself, as held now (no I/O); None: unknown user."""
        found = self.credential_source.cached(user)
        return None if found is None else found.client

    # -- what every engine's sessions do alike --------------------------------------------------
    async def reset_in_place(self, backend: Any) -> bool:
        """Reset ``backend`` for the session that holds it (failpoint ``reset_pinned_backends``); a reset
        that fails or raises drops it as broken (False)."""
        try:
            reset = await backend.reset()
        except Exception:  # noqa: BLE001 - a reset that blows up is a reset that failed
            reset = False
        if not reset:
            self.pool.release(backend, ReleaseState.BROKEN)
        return bool(reset)

    def admit(self, endpoint: str) -> LoginSlot | None:
        """A place in login for a new client of ``endpoint``; None: turn it away (counted, and said
        in the log once per run of refusals).  Without a gate every client is admitted."""
        gate = self.login_gate
        if gate is None:
            return LoginSlot(LoginGate(1))
        slot = gate.enter()
        if slot is None:
            self.metrics.inc("ClientConnectionsRefused", endpoint=endpoint, reason="unauthenticated_limit")
            if gate.refusing_since == gate.refused - 1:
                log.warning("[proxyEndpoint=%s] %d clients are setting up their connections "
                            "(proxy.max_unauthenticated_clients): refusing new clients until one finishes",
                            endpoint, gate.in_login)
        return slot

    def classifier(self, endpoint: str, client_id: int) -> Callable[..., Any]:
        """The pin classifier of one new session: :attr:`classify`, which sees the text of every
        statement until the session pins, and with :attr:`log_sql` on logs that text first, naming
        the session as RDS Proxy's log lines do.  The relay gains no work: with debug logging off
        this is :attr:`classify` itself."""
        classify = self.classify
        if not self.log_sql:
            return classify

        def classify_and_log(sql: str, *args: Any, **kwargs: Any) -> Any:
            sql_log.info("[proxyEndpoint=%s] [clientConnection=%s] SQL text: %s", endpoint, client_id, sql)
            return classify(sql, *args, **kwargs)

        return classify_and_log

    def login_clock(self) -> LoginClock:
        """The deadline of a login starting now: the silence and total limits of ``[proxy]``."""
        return LoginClock(silence=self.handshake_timeout, total=self.login_timeout)

    def borrow_now(self, endpoint: str, key: PoolKey, address: InstanceAddress) -> Any:
        """An idle backend of ``key`` without waiting (the relays' fast path), or None.

        None also when borrowing fails: the waiting path (``acquire`` or the pool) then tries
        again and tells the client properly why it cannot."""
        try:
            if self.acquire_now is not None:
                return self.acquire_now(endpoint, key, address)
            return self.pool.try_borrow_now(key)
        except ProxyError:
            return None

    def session_pinned(self, endpoint: str, client_id: int, backend: Any, reason: str, sql: str) -> None:
        """Hold ``backend`` for its session from now on, and say so once as RDS Proxy does."""
        if backend is not None:
            with contextlib.suppress(ProxyError):
                self.pool.mark_pinned(backend)
        pin_log.warning('[proxyEndpoint=%s] [clientConnection=%s] The client session was pinned to the database '
                        "connection [dbConnection=%s] for the remainder of the session. The proxy can't reuse "
                        'this connection until the session ends. Reason: %s Digest: "%s".', endpoint, client_id,
                        getattr(backend, "backend_id", "?"), reason, self.digest(sql))


async def turn_away(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refusal: bytes) -> None:
    """Send a client turned away before login its ``refusal``, then close the sending side and give it
    a moment to read the answer and hang up: closing with its first bytes unread would reset the
    connection, and the reset can overtake the answer."""
    with contextlib.suppress(Exception):
        writer.write(refusal)
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(1):
            await reader.read(65536)


class LatencyByInstance:
    """A session's QueryDatabaseResponseLatency histogram, bound to the instance it last served.

    Binding a labelled metric costs a dictionary look-up with label checks; a session keeps
    serving one instance, so it binds again only when the instance changes."""

    __slots__ = ("_bound", "_instance_id", "_metrics")

    def __init__(self, metrics: Any) -> None:
        self._metrics = metrics
        self._instance_id: str | None = None
        self._bound: Any = None

    def __call__(self, instance_id: str) -> Any:
        if instance_id != self._instance_id:
            self._bound = self._metrics.histogram("QueryDatabaseResponseLatency", instance=instance_id)
            self._instance_id = instance_id
        return self._bound


class ClientSession(Protocol):
    """One accepted client connection, as the server sees it."""

    async def run(self) -> None:
        """Serve the client until it leaves or the session ends; never raise."""
        ...

    def request_drain(self) -> None:
        """Shutdown: finish the current transaction (if any), then close the client."""
        ...

    @property
    def pinned(self) -> bool:
        """Whether the session holds its backend connection for good (for ``/status``)."""
        ...

    key: PoolKey | None
    """The pool key it borrows with (its user and database), from its login on; None before."""


SessionFactory = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str, int], ClientSession]
"""Opens the session for one accepted client: (reader, writer, endpoint name, client id)."""
