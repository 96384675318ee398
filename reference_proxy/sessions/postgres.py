"""One PostgreSQL client session: handshake as RDS Proxy does it, then transaction-level relay.

Life of a session
-----------------
1. **Handshake** (no backend involved): SSLRequest is answered ``S`` and TLS starts (or ``N``
   without a certificate); GSSENCRequest always ``N``; a CancelRequest is forwarded (see
   ``postgres_cancel``) and the connection closes.  The StartupMessage is checked as RDS checks it
   (``postgres_startup``), RequireTLS is enforced, and the password is verified against the
   proxy's own users (``postgres_auth``).
2. **Welcome**: the endpoint's router picks the instance for this session; AuthenticationOk,
   the ParameterStatus values a real backend of the same pool key reported (cached per key; the
   first session of a key borrows one connection to learn them), the proxy's own BackendKeyData
   and ReadyForQuery ``I``.
3. **Relay**: on the first message of a transaction a backend is borrowed (key = instance, user,
   database and the client's runtime startup parameters), whole messages are forwarded in bulk and
   the backend's bytes are passed back as they come.  A :class:`TransactionTracker` sees every run
   and decides when the backend goes back to the pool (ReadyForQuery ``I`` with nothing pending)
   and when the session pins (RDS's list, applied to Query and Parse text).  A pinned session keeps
   its backend until it disconnects, then releases it DIRTY (the pool resets it).  A client that
   vanishes mid-transaction releases BROKEN.

All waiting happens in :meth:`PostgresClientSession._relay`, one ``asyncio.wait`` over the
client's read, the held backend's read, congested writes and the drain signal; decisions live in
the sans-I/O tracker, codec and auth modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reference_proxy.contracts import (
    BackendConnectFailed,
    BorrowTimeout,
    Clock,
    InstanceAddress,
    PoolKey,
    ProxyError,
    ReleaseState,
)
from reference_proxy.protocol.postgres import (
    BACKEND_TYPES,
    DEFAULT_MAX_MESSAGE_SIZE,
    FRONTEND_TYPES,
    NEED_DATA,
    BackendKeyData,
    CancelRequest,
    Decoder,
    Direction,
    ErrorResponse,
    GSSENCRequest,
    MessageSplitter,
    NegotiateProtocolVersion,
    ParameterStatus,
    PasswordMessage,
    ProtocolViolation,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
)
from reference_proxy.sessions.postgres_auth import (
    AuthFailed,
    ClientAuthenticator,
    ClientCredential,
    ScramSecretCache,
)
from reference_proxy.sessions.postgres_cancel import CancelRegistry
from reference_proxy.sessions.postgres_startup import StartupRejected, check_startup
from reference_proxy.sessions.postgres_tracking import Pin, TransactionTracker
from reference_proxy.sessions.postgres_unserved import answer_unserved, skip_to_after_sync

__all__ = ["REQUIRE_TLS_MESSAGE", "PostgresClientSession", "SessionServices"]

log = logging.getLogger("reference_proxy.sessions.postgres")

READ_SIZE = 65536
HANDSHAKE_TIMEOUT = 30.0
REQUIRE_TLS_MESSAGE = "This RDS Proxy requires TLS connections."
PROTOCOL_VIOLATION = "08P01"
CONNECTION_FAILURE = "08006"
UNABLE_TO_CONNECT = "08001"
ADMIN_SHUTDOWN = "57P01"


@dataclass
class SessionServices:
    """Everything a session needs from the rest of the proxy, shared by all sessions.

    ``choose_instance(endpoint)`` picks the instance for a new session (raises a ProxyError when
    there is none); ``session_ended(instance_id)`` tells the router it left.  ``classify(sql)``
    returns a pin decision with ``.reason`` or None; ``digest(sql)`` normalises SQL for logs.
    """

    pool: Any
    choose_instance: Callable[[str], InstanceAddress]
    session_ended: Callable[[str], None]
    credentials: Callable[[str], ClientCredential | None]
    classify: Callable[[str], Any]
    digest: Callable[[str], str]
    metrics: Any
    clock: Clock
    tls_context: ssl.SSLContext | None = None
    require_tls: bool = False
    cancel_registry: CancelRegistry = field(default_factory=CancelRegistry)
    parameter_cache: dict[PoolKey, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    scram_cache: ScramSecretCache = field(default_factory=ScramSecretCache)
    token_bytes: Callable[[int], bytes] = os.urandom
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    handshake_timeout: float = HANDSHAKE_TIMEOUT


WRITE_HIGH_WATER = 256 * 1024
"""Bytes queued towards one peer above which the relay stops reading from the other peer."""


def _congested(writer: asyncio.StreamWriter) -> bool:
    return writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER


class _SessionOver(Exception):
    """Internal: the session has said its last word and must close."""


class PostgresClientSession:
    """Serves one client connection; see the module docstring. ``run()`` never raises."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: str,
                 services: SessionServices, client_id: int) -> None:
        self.reader = reader
        self.writer = writer
        self.endpoint = endpoint
        self.s = services
        self.client_id = client_id
        self.tls = False
        self.address: InstanceAddress | None = None
        self.key: PoolKey | None = None
        self.backend: Any = None
        self.tracker = TransactionTracker(services.classify)
        self._cancel_key: tuple[int, int] | None = None
        self._client_splitter = MessageSplitter(FRONTEND_TYPES, services.max_message_size, "client")
        self._backend_splitter = MessageSplitter(BACKEND_TYPES, services.max_message_size, "server")
        self._inflight: deque[tuple[float, float]] = deque()  # (arrived, sent) per pending sync point
        self._discarding_until_sync = False
        self._unserved_error = ErrorResponse.build("ERROR", UNABLE_TO_CONNECT, BorrowTimeout.TEXT)
        self._drain_requested = asyncio.Event()
        self._set_up = False
        self._closing = False

    # ------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        m, ep = self.s.metrics, self.endpoint
        m.inc("ClientConnectionsReceived", endpoint=ep)
        m.gauge_add("ClientConnections", 1, endpoint=ep)
        try:
            leftover = await self._handshake()
            if leftover is not None:
                await self._relay(leftover)
        except _SessionOver:
            pass
        except ProtocolViolation as e:
            log.info("[proxyEndpoint=%s] [clientConnection=%s] protocol violation: %s", ep, self.client_id, e)
            await self._say_fatal(PROTOCOL_VIOLATION, f"Protocol violation: {e}")
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away; _finish decides what its backend is worth
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must cost one session, not the proxy
            log.exception("[proxyEndpoint=%s] [clientConnection=%s] session failed", ep, self.client_id)
            await self._say_fatal("XX000", "Unknown error.")
        finally:
            await self._finish()

    def request_drain(self) -> None:
        """Shutdown: finish the current transaction (if any), then close the client."""
        self._drain_requested.set()

    async def cancel_current(self) -> None:
        """Forward a cancel to the backend this session holds right now, if any."""
        backend = self.backend
        if backend is not None:
            await backend.cancel()

    async def _finish(self) -> None:
        m, ep = self.s.metrics, self.endpoint
        if self.backend is not None:
            state = self.tracker.release_state_if_client_leaves()
            self._release(state)
        self.s.cancel_registry.unregister(self._cancel_key)
        if self.address is not None:
            with contextlib.suppress(Exception):
                self.s.session_ended(self.address.id)
        if self._set_up:
            m.gauge_add("ClientConnectionsTLS" if self.tls else "ClientConnectionsNoTLS", -1, endpoint=ep)
        m.gauge_add("ClientConnections", -1, endpoint=ep)
        m.inc("ClientConnectionsClosed", endpoint=ep)
        with contextlib.suppress(Exception):
            self.writer.close()
            async with asyncio.timeout(2):
                await self.writer.wait_closed()

    # ------------------------------------------------------------------------------ handshake

    async def _read_startup_message(self, decoder: Decoder) -> Any:
        while True:
            msg = decoder.next_event()
            if msg is not NEED_DATA:
                return msg
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise _SessionOver()
            decoder.receive_data(data)

    async def _handshake(self) -> bytes | None:
        """Returns client bytes already received after the handshake, or None if the session ended."""
        decoder = Decoder(Direction.FRONTEND, max_message_size=self.s.max_message_size)
        try:
            async with asyncio.timeout(self.s.handshake_timeout):
                startup = await self._negotiate_transport(decoder)
                if startup is None:
                    return None
                accepted = await self._check_and_authenticate(startup, decoder)
        except TimeoutError:
            raise _SessionOver() from None
        await self._welcome(accepted)
        return decoder.take_buffered()

    async def _negotiate_transport(self, decoder: Decoder) -> StartupMessage | None:
        while True:
            msg = await self._read_startup_message(decoder)
            if isinstance(msg, SSLRequest):
                if self.tls:
                    raise ProtocolViolation("SSLRequest received on a connection that already uses TLS")
                if self.s.tls_context is None:
                    self.writer.write(b"N")
                    continue
                if decoder.buffered:
                    raise ProtocolViolation("client sent data after SSLRequest before the TLS handshake")
                self.writer.write(b"S")
                await self.writer.drain()
                await self.writer.start_tls(self.s.tls_context)
                self.tls = True
            elif isinstance(msg, GSSENCRequest):
                self.writer.write(b"N")
            elif isinstance(msg, CancelRequest):
                session = self.s.cancel_registry.find(msg.process_id, msg.secret_key)
                if session is not None:
                    await session.cancel_current()
                return None
            else:
                return msg

    async def _check_and_authenticate(self, msg: StartupMessage, decoder: Decoder):
        m, ep = self.s.metrics, self.endpoint
        try:
            startup = check_startup(msg)
        except StartupRejected as e:
            await self._say_fatal(e.sqlstate, e.message)
            raise _SessionOver() from None
        if self.s.require_tls and not self.tls:
            m.inc("ClientConnectionsSetupFailedAuth", endpoint=ep)
            await self._say_fatal("28000", REQUIRE_TLS_MESSAGE)
            raise _SessionOver()
        if startup.needs_negotiation:
            self.writer.write(NegotiateProtocolVersion(0, startup.unrecognized_options).encode())
        auth = ClientAuthenticator(startup.user, self.s.credentials(startup.user),
                                   scram_cache=self.s.scram_cache, token_bytes=self.s.token_bytes)
        try:
            self._send(*auth.start())
            while True:
                await self.writer.drain()
                answer = await self._read_startup_message(decoder)
                if not isinstance(answer, PasswordMessage):
                    raise ProtocolViolation(f"expected a password message, got {type(answer).__name__}")
                out, done = auth.receive(answer)
                self._send(*out)
                if done:
                    return startup
        except AuthFailed as e:
            m.inc("ClientConnectionsSetupFailedAuth", endpoint=ep)
            await self._say_fatal(e.sqlstate, e.message)
            raise _SessionOver() from None

    async def _welcome(self, startup) -> None:
        try:
            self.address = self.s.choose_instance(self.endpoint)
        except ProxyError as e:
            await self._say_fatal(UNABLE_TO_CONNECT, str(e))
            raise _SessionOver() from None
        self.key = PoolKey(self.address.id, startup.user, startup.database, startup.runtime)
        parameters = self.s.parameter_cache.get(self.key)
        if parameters is None:
            if not await self._borrow(fatal=True):
                raise _SessionOver()
            parameters = tuple(self.backend.parameters.items())
            self.s.parameter_cache[self.key] = parameters
            self._release(ReleaseState.CLEAN)
        self._cancel_key = self.s.cancel_registry.register(self)
        self._send(*(ParameterStatus(n, v) for n, v in parameters),
                   BackendKeyData.from_ints(*self._cancel_key), ReadyForQuery("I"))
        await self.writer.drain()
        self._set_up = True
        self.s.metrics.inc("ClientConnectionsSetupSucceeded", endpoint=self.endpoint)
        self.s.metrics.gauge_add("ClientConnectionsTLS" if self.tls else "ClientConnectionsNoTLS", 1,
                                 endpoint=self.endpoint)

    # ---------------------------------------------------------------------------------- relay

    async def _relay(self, leftover: bytes) -> None:
        """Wait on everything at once: client bytes, backend bytes, congested writes, drain.

        Writes never block this loop: when one side's write buffer is over WRITE_HIGH_WATER, the
        loop stops reading from the *other* side until it drains, and keeps reading this side.
        (Awaiting a backend write while the backend itself waits for us to read its output would
        deadlock, e.g. a pipelined client sending while results stream back.)
        """
        if leftover:
            await self._on_client_data(leftover)
        client_read: asyncio.Future | None = None
        backend_read: asyncio.Future | None = None
        client_flush: asyncio.Future | None = None
        backend_flush: asyncio.Future | None = None
        drain_wait = asyncio.ensure_future(self._drain_requested.wait())
        try:
            while not self._closing:
                backend = self.backend
                backend_congested = backend is not None and _congested(backend.writer)
                client_congested = _congested(self.writer)
                waits: set[asyncio.Future] = set()
                if client_read is None and not backend_congested:
                    client_read = asyncio.ensure_future(self.reader.read(READ_SIZE))
                if client_read is not None:
                    waits.add(client_read)
                if backend_congested and backend_flush is None:
                    backend_flush = asyncio.ensure_future(backend.writer.drain())
                if backend is not None and backend_read is None and not client_congested:
                    backend_read = asyncio.ensure_future(backend.reader.read(READ_SIZE))
                if client_congested and client_flush is None:
                    client_flush = asyncio.ensure_future(self.writer.drain())
                waits.update(f for f in (backend_read, backend_flush, client_flush) if f is not None)
                # Idle: nothing held, or a pinned backend with no transaction and nothing pending.
                idle = backend is None or self.tracker.at_release_point
                if drain_wait.done():
                    if idle:
                        await self._say_fatal(ADMIN_SHUTDOWN, "terminating connection: the proxy is shutting down")
                        return
                else:
                    waits.add(drain_wait)
                timeout = self.s.pool.settings.idle_client_timeout if idle else None
                done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    log.info("[proxyEndpoint=%s] [clientConnection=%s] closing idle client connection",
                             self.endpoint, self.client_id)
                    return
                if client_flush is not None and client_flush in done:
                    flushed, client_flush = client_flush, None
                    flushed.result()  # a client that went away ends the session here
                if backend_flush is not None and backend_flush in done:
                    flushed, backend_flush = backend_flush, None
                    if flushed.exception() is not None and self.backend is not None:
                        await self._backend_lost("the database connection closed while sending a request")
                if backend_read is not None and backend_read in done:
                    task, backend_read = backend_read, None
                    await self._on_backend_data(task)
                if client_read is not None and client_read in done:
                    task, client_read = client_read, None
                    data = task.result()
                    if not data:
                        return
                    await self._on_client_data(data)
        finally:
            for task in (client_read, backend_read, client_flush, backend_flush, drain_wait):
                if task is not None and not task.done():
                    task.cancel()

    async def _on_client_data(self, data: bytes) -> None:
        arrived = self.s.clock.monotonic()
        frames = self._client_splitter.feed(data)
        if not frames.spans:
            return
        if self._discarding_until_sync:
            skipped = skip_to_after_sync(frames)
            self.writer.write(skipped.reply)
            self._discarding_until_sync = skipped.still_discarding
            self._closing = skipped.terminate
            if skipped.rest is None:
                return
            frames = skipped.rest
        if self.backend is None:
            if frames.spans[0][0] == 0x58:  # Terminate with nothing held
                self._closing = True
                return
            if not await self._borrow(fatal=False):
                answer = answer_unserved(frames, self._unserved_error)
                self.writer.write(answer.reply)
                self._discarding_until_sync = answer.still_discarding
                self._closing = answer.terminate
                await self.writer.drain()
                return
        run = self.tracker.client_run(frames)
        if run.new_pin is not None:
            self._pinned(run.new_pin)
        if run.queries:
            self.s.metrics.inc("QueryRequests", run.queries, endpoint=self.endpoint)
            self.s.metrics.inc("QueryRequestsTLS" if self.tls else "QueryRequestsNoTLS", run.queries,
                               endpoint=self.endpoint)
        payload = frames.data if run.terminate_at is None else frames.data[:run.terminate_at]
        if payload:
            backend = self.backend
            if backend.writer.is_closing():
                await self._backend_lost("the database connection closed while sending a request")
            backend.writer.write(payload)  # flow control: see _relay
            sent = self.s.clock.monotonic()
            self._inflight.extend([(arrived, sent)] * run.sync_points)
        if run.terminate_at is not None:
            self._closing = True

    async def _on_backend_data(self, task: asyncio.Task) -> None:
        try:
            data = task.result()
        except (ConnectionError, OSError):
            data = b""
        if not data:
            await self._backend_lost("the database closed the connection")
        self.writer.write(data)  # forwarded as it comes; only parsed for boundaries
        try:
            frames = self._backend_splitter.feed(data)
        except ProtocolViolation as e:
            await self._backend_lost(f"the database broke the protocol: {e}")
        backend = self.backend
        was_idle = self.tracker.status == "I"
        ready = self.tracker.backend_run(frames)
        if ready:
            now = self.s.clock.monotonic()
            for _ in range(min(ready, len(self._inflight))):
                arrived, sent = self._inflight.popleft()
                self.s.metrics.observe("QueryResponseLatency", now - arrived, endpoint=self.endpoint)
                self.s.metrics.observe("QueryDatabaseResponseLatency", now - sent, instance=backend.key.instance_id)
            if was_idle != (self.tracker.status == "I"):
                self.s.pool.mark_in_transaction(backend, self.tracker.status != "I")
        release, new_pin = self.tracker.may_release()
        if new_pin is not None:
            self._pinned(new_pin)
        if release and self._backend_splitter.buffered == 0:
            self._release(ReleaseState.CLEAN)
        if self._drain_requested.is_set() and (self.backend is None or self.tracker.at_release_point):
            await self._say_fatal(ADMIN_SHUTDOWN, "terminating connection: the proxy is shutting down")
            raise _SessionOver()

    # ------------------------------------------------------------------------ borrow / release

    async def _borrow(self, *, fatal: bool) -> bool:
        """Borrow a backend for this session's key; on failure tell the client (FATAL at startup)."""
        try:
            self.backend = await self.s.pool.borrow(self.key, self.address)
        except BorrowTimeout as e:
            message, code = BorrowTimeout.TEXT, UNABLE_TO_CONNECT
            log.info("[proxyEndpoint=%s] [clientConnection=%s] %s %s", self.endpoint, self.client_id,
                     message, getattr(e, "detail", ""))
        except BackendConnectFailed as e:
            message, code = str(e), UNABLE_TO_CONNECT
        except ProxyError as e:  # pool closed: the proxy is shutting down
            await self._say_fatal(ADMIN_SHUTDOWN, f"terminating connection: {e}")
            raise _SessionOver() from None
        else:
            self._backend_splitter = MessageSplitter(BACKEND_TYPES, self.s.max_message_size, "server")
            return True
        if fatal:
            await self._say_fatal(code, message)
        else:
            self._unserved_error = ErrorResponse.build("ERROR", code, message)
        return False

    def _release(self, state: ReleaseState) -> None:
        backend, self.backend = self.backend, None
        if state is ReleaseState.BROKEN:
            with contextlib.suppress(Exception):
                backend.mark_broken()
        self.tracker.backend_released()
        self._inflight.clear()
        self.s.pool.release(backend, state)

    async def _backend_lost(self, why: str) -> None:
        backend = self.backend
        log.warning("[proxyEndpoint=%s] [clientConnection=%s] [dbConnection=%s] %s", self.endpoint,
                    self.client_id, getattr(backend, "backend_id", "?"), why)
        if backend is not None:
            self._release(ReleaseState.BROKEN)
        await self._say_fatal(CONNECTION_FAILURE, "The database connection was lost.")
        raise _SessionOver()

    def _pinned(self, pin: Pin) -> None:
        backend = self.backend
        if backend is not None:
            with contextlib.suppress(ProxyError):
                self.s.pool.mark_pinned(backend)
        log.warning('[proxyEndpoint=%s] [clientConnection=%s] The client session was pinned to the database '
                    "connection [dbConnection=%s] for the remainder of the session. The proxy can't reuse this "
                    'connection until the session ends. Reason: %s Digest: "%s".', self.endpoint,
                    self.client_id, getattr(backend, "backend_id", "?"), pin.reason, self.s.digest(pin.sql))

    # -------------------------------------------------------------------------------- helpers

    def _send(self, *messages: Any) -> None:
        self.writer.write(b"".join(msg.encode() for msg in messages))

    async def _say_fatal(self, sqlstate: str, message: str) -> None:
        """Send a FATAL ErrorResponse, best effort: the connection closes right after."""
        self._closing = True
        with contextlib.suppress(Exception):
            self.writer.write(ErrorResponse.build("FATAL", sqlstate, message).encode())
            async with asyncio.timeout(2):
                await self.writer.drain()
