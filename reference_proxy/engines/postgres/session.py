"""One PostgreSQL client session: handshake as RDS Proxy does it, then transaction-level relay.

Life of a session
-----------------
1. **Handshake** (no backend involved): SSLRequest is answered ``S`` and TLS starts (or ``N``
   without a certificate); GSSENCRequest always ``N``; a CancelRequest is forwarded (see
   :mod:`.cancel`) and the connection closes.  The StartupMessage is checked as RDS checks it
   (:mod:`.startup`), RequireTLS is enforced, and the client's proof (a password, or an IAM
   token over TLS) is checked against what the proxy's credential source holds for the user
   (:mod:`.auth`), read again first when its secret is due.
2. **Welcome**: the endpoint's router picks the instance for this session; AuthenticationOk,
   the ParameterStatus values a real backend of the same pool key reported (cached per key; the
   first session of a key borrows one connection to learn them), the proxy's own BackendKeyData
   and ReadyForQuery ``I``.
3. **Relay**: on the first message of a transaction a backend is borrowed (key = instance, user,
   database and the client's runtime startup parameters), whole messages are forwarded in bulk
   both ways.  A :class:`TransactionTracker` sees every run
   and decides when the backend goes back to the pool (ReadyForQuery ``I`` with nothing pending)
   and when the session pins (RDS's list, applied to Query and Parse text).  A pinned session keeps
   its backend until it disconnects, then releases it DIRTY (the pool resets it).  A client that
   vanishes mid-transaction releases BROKEN.  A backend that dies under its client (its server
   shuts down for a failover or crashes, or the proxy cuts it) costs the client its connection:
   it gets the proxy's own FATAL 08006 naming the lost database connection, with what the server
   said (``57P01 terminating connection due to administrator command``...) as the DETAIL.

During the relay, bytes arrive through transport callbacks (:mod:`.relay`): while a
backend is held they are split, tracked and written on the spot; anything that must wait (a
borrow, an error to report, shutdown) goes to the session's coroutine in order.  Decisions live
in the sans-I/O tracker, codec and auth modules.

:class:`PostgresSessions` is the engine's session factory: the server calls it once per accepted
client, and it keeps what the PostgreSQL sessions of one proxy share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from dataclasses import replace
from typing import Any

from reference_proxy.contracts import (
    BackendConnectFailed,
    BorrowTimeout,
    InstanceAddress,
    PoolKey,
    ProxyError,
    ReleaseState,
)
from reference_proxy.engines.postgres.auth import (
    AuthFailed,
    ClientAuthenticator,
    ScramSecretCache,
    WrongPassword,
)
from reference_proxy.engines.postgres.cancel import CancelRegistry
from reference_proxy.engines.postgres.lexer import TokenKind, split_statements, tokenize
from reference_proxy.engines.postgres.relay import Relay
from reference_proxy.engines.postgres.startup import StartupRejected, check_startup
from reference_proxy.engines.postgres.tracking import Pin, TransactionTracker
from reference_proxy.engines.postgres.unserved import answer_unserved, skip_to_after_sync
from reference_proxy.protocol.postgres import (
    BACKEND_TYPES,
    DEFAULT_MAX_MESSAGE_SIZE,
    FRONTEND_TYPES,
    NEED_DATA,
    BackendKeyData,
    CancelRequest,
    CommandComplete,
    Decoder,
    Direction,
    ErrorResponse,
    Frames,
    GSSENCRequest,
    MessageSplitter,
    NegotiateProtocolVersion,
    ParameterStatus,
    PasswordMessage,
    ProtocolViolation,
    Query,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
)
from reference_proxy.protocol.postgres.framing import peek_query
from reference_proxy.session_services import LatencyByInstance, SessionServices, turn_away

__all__ = ["REQUIRE_TLS_MESSAGE", "PostgresClientSession", "PostgresSessions"]

log = logging.getLogger("reference_proxy.engines.postgres.session")

READ_SIZE = 65536
REQUIRE_TLS_MESSAGE = "This RDS Proxy requires TLS connections."
PROTOCOL_VIOLATION = "08P01"
CONNECTION_FAILURE = "08006"
SERIALIZATION_FAILURE = "40001"
RETRY_MESSAGE = "could not serialize access: the database connection was lost; retry the transaction"
"""What the ``lost_write_reported_retryable`` failpoint tells a client whose backend was lost."""
UNABLE_TO_CONNECT = "08001"
ADMIN_SHUTDOWN = "57P01"
TOO_MANY_CONNECTIONS = "53300"
TOO_MANY_CLIENTS = ErrorResponse.build("FATAL", TOO_MANY_CONNECTIONS, "sorry, too many clients already").encode()
"""What a client turned away before login gets (too many clients setting up, or no descriptor left):
PostgreSQL's own answer to a client over max_connections.  A session sends it in answer to the
StartupMessage (see ``_turn_away``); out of descriptors the accept loop can only send it at once,
which libpq, if it sent an SSLRequest first, reports without the text."""
TURN_AWAY_TIMEOUT = 5.0
"""Seconds a client turned away may take to send its StartupMessage before it is closed without
an answer: it holds no place among the clients in login, so it must not hold a connection long."""
MAX_LOGIN_MESSAGE_SIZE = 65535
"""The largest message accepted before authentication completes: PostgreSQL's own limit on an
authentication message (PG_MAX_AUTH_TOKEN_LENGTH), room for any password, SCRAM message or IAM
token, where a logged-in client may send up to the 64 MB of the relay.  The untyped startup packet
keeps its smaller limit of 10,000 bytes."""
STARTUP_ERRORS_PASSED_ON = frozenset({"3D000", "42501", "55000", "28000"})
"""SQLSTATEs the database gives a login that are about what the client asked for (database "x"
does not exist; permission denied for database; database not accepting connections; role not
permitted to log in): the client gets them as PostgreSQL sends them, not as the proxy's 08001."""
LOST_BACKEND_MESSAGE = ("terminating connection: the database connection to instance {instance} was lost "
                        "(a failover, or the database shut down or crashed); reconnect to continue")


class PostgresSessions:
    """The PostgreSQL session factory: one per proxy, called once per accepted client.

    Holds what all PostgreSQL sessions of the proxy share besides the engine-neutral
    :class:`SessionServices`: the proxy's cancel keys, the ParameterStatus values learnt per pool
    key, the SCRAM verifiers and the largest message accepted.
    """

    def __init__(self, services: SessionServices, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.services = services
        self.cancel_registry = CancelRegistry()
        self.parameter_cache: dict[PoolKey, tuple[tuple[str, str], ...]] = {}
        self.scram_cache = ScramSecretCache()
        self.max_message_size = max_message_size

    def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: str,
                 client_id: int) -> PostgresClientSession:
        return PostgresClientSession(reader, writer, endpoint, self, client_id)


class _SessionOver(Exception):
    """Internal: the session has said its last word and must close."""


class PostgresClientSession:
    """Serves one client connection; see the module docstring. ``run()`` never raises."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: str,
                 sessions: PostgresSessions, client_id: int) -> None:
        self.reader = reader
        self.writer = writer
        self.endpoint = endpoint
        self.s = sessions.services
        self.shared = sessions
        self.client_id = client_id
        self.tls = False
        self.address: InstanceAddress | None = None
        self.key: PoolKey | None = None
        self.backend: Any = None
        self._set_aside: Any = None
        """The held backend while it is being reset under a pin: only with the failpoint
        ``reset_pinned_backends`` (unsafe on purpose), else always None."""
        self.tracker = TransactionTracker(self.s.classifier(endpoint, client_id),  # failpoints: unsafe on purpose
                                          named_statements_pin=self.s.failpoint != "named_statements_unpinned")
        self._cancel_key: tuple[int, int] | None = None
        self._given_back: Any = None
        """The backend this session last gave back to the pool (read only by the failpoint
        ``cancel_to_last_backend``: unsafe on purpose)."""
        self._client_splitter = MessageSplitter(FRONTEND_TYPES, sessions.max_message_size, "client")
        self._backend_splitter = MessageSplitter(BACKEND_TYPES, sessions.max_message_size, "server")
        self._inflight: deque[tuple[float, float]] = deque()  # (arrived, sent) per pending sync point
        self._resend: tuple[Frames, float] | None = None  # only for the resend_after_backend_loss failpoint
        self._commit_in_flight = False  # only for the lost_commit_acknowledged failpoint
        self._discarding_until_sync = False
        self._unserved_error = ErrorResponse.build("ERROR", UNABLE_TO_CONNECT, BorrowTimeout.TEXT)
        self._drain_requested = asyncio.Event()
        self._set_up = False
        self._closing = False
        self._login_clock: Any = None
        self._login_slot: Any = None
        self._client_transport: asyncio.BaseTransport | None = None
        self._relay_driver: Relay | None = None
        self._m_queries: Any = None
        self._m_queries_tls: Any = None
        self._m_response_latency: Any = None
        self._database_latency = LatencyByInstance(self.s.metrics)

    # ------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        m, ep = self.s.metrics, self.endpoint
        m.inc("ClientConnectionsReceived", endpoint=ep)
        m.gauge_add("ClientConnections", 1, endpoint=ep)
        try:
            self._login_slot = self.s.admit(ep)
            if self._login_slot is None:
                await self._turn_away()
                raise _SessionOver()
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

    @property
    def pinned(self) -> bool:
        """Whether the session holds its backend connection until it disconnects."""
        return self.tracker.pinned

    def request_drain(self) -> None:
        """Shutdown: finish the current transaction (if any), then close the client."""
        self._drain_requested.set()
        if self._relay_driver is not None:
            self._relay_driver.wakeup()

    async def cancel_current(self) -> None:
        """Forward a cancel to the backend this session holds right now, if any: a session that holds
        none runs nothing, and the backend it held last may serve someone else by now."""
        backend = self.backend
        if backend is None and self.s.failpoint == "cancel_to_last_backend":  # unsafe on purpose
            backend = self._given_back
        if backend is not None:
            await backend.cancel()

    async def _finish(self) -> None:
        m, ep = self.s.metrics, self.endpoint
        if self._login_slot is not None:
            self._login_slot.release()
        if self.backend is not None:
            state = self.tracker.release_state_if_client_leaves()
            self._release(state)
        elif self._set_aside is not None:  # failpoint reset_pinned_backends: the reset never ran
            backend, self._set_aside = self._set_aside, None
            self.s.pool.release(backend, ReleaseState.DIRTY)
        self.shared.cancel_registry.unregister(self._cancel_key)
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

    async def _turn_away(self) -> None:
        """Too many clients in login: answer TLS and GSS requests N and the StartupMessage with
        PostgreSQL's FATAL 53300, the way libpq expects a refusal (an error in place of the answer
        to its SSLRequest is not shown to the user)."""
        decoder = Decoder(Direction.FRONTEND)
        with contextlib.suppress(TimeoutError, ProtocolViolation):
            async with asyncio.timeout(TURN_AWAY_TIMEOUT):
                while isinstance(await self._read_startup_message(decoder), (SSLRequest, GSSENCRequest)):
                    self.writer.write(b"N")
        await turn_away(self.reader, self.writer, TOO_MANY_CLIENTS)

    async def _read_startup_message(self, decoder: Decoder) -> Any:
        while True:
            msg = decoder.next_event()
            if msg is not NEED_DATA:
                return msg
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise _SessionOver()
            self._heard_from_client()
            decoder.receive_data(data)

    def _heard_from_client(self) -> None:
        """Client bytes during the handshake restart its silence limit (not its total limit)."""
        if self._login_clock is not None:
            self._login_clock.heard()

    async def _handshake(self) -> bytes | None:
        """Returns client bytes already received after the handshake, or None if the session ended."""
        decoder = Decoder(Direction.FRONTEND, max_message_size=MAX_LOGIN_MESSAGE_SIZE)
        clock = self._login_clock = self.s.login_clock()
        try:
            async with asyncio.timeout(None) as timer:
                clock.attach(timer)
                startup = await self._negotiate_transport(decoder)
                if startup is None:
                    return None
                accepted = await self._check_and_authenticate(startup, decoder)
        except TimeoutError:
            log.info("[proxyEndpoint=%s] [clientConnection=%s] the client %s; closing", self.endpoint,
                     self.client_id, clock.limit_reached())
            raise _SessionOver() from None
        finally:
            clock.detach()
            self._login_clock = None
        self._login_slot.release()  # authenticated: no longer a stranger
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
                await self.writer.start_tls(self.s.tls_context, ssl_handshake_timeout=self.s.handshake_timeout)
                self._heard_from_client()
                self.tls = True
            elif isinstance(msg, GSSENCRequest):
                self.writer.write(b"N")
            elif isinstance(msg, CancelRequest):
                session = self.shared.cancel_registry.find(msg.process_id, msg.secret_key)
                if session is not None and self.s.failpoint != "cancels_dropped":  # failpoint: unsafe on purpose
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
        if not self.tls and self.s.tls_required(self.endpoint):
            m.inc("ClientConnectionsSetupFailedAuth", endpoint=ep)
            await self._say_fatal("28000", REQUIRE_TLS_MESSAGE)
            raise _SessionOver()
        if startup.needs_negotiation:
            self.writer.write(NegotiateProtocolVersion(0, startup.unrecognized_options).encode())
        held = await self.s.credential_source.lookup(startup.user)
        auth = ClientAuthenticator(
            startup.user, None if held is None else held.client, scram_cache=self.shared.scram_cache,
            token_bytes=self.s.token_bytes, iam=self.s.iam, tls=self.tls,
            token_endpoint=None if self.s.token_endpoint is None else self.s.token_endpoint(self.endpoint))
        try:
            self._send(*auth.start())
            while True:
                await self.writer.drain()
                answer = await self._read_startup_message(decoder)
                if not isinstance(answer, PasswordMessage):
                    raise ProtocolViolation(f"expected a password message, got {type(answer).__name__}")
                try:
                    out, done = auth.receive(answer)
                except WrongPassword as e:
                    out, done = await self._after_wrong_password(auth, e)
                self._send(*out)
                if done:
                    return startup
        except AuthFailed as e:
            m.inc("ClientConnectionsSetupFailedAuth", endpoint=ep)
            log.info("[proxyEndpoint=%s] [clientConnection=%s] login of %s refused: %s%s", ep, self.client_id,
                     startup.user, e.message, f" ({e.detail})" if e.detail else "")
            await self._say_fatal(e.sqlstate, e.message)
            raise _SessionOver() from None
        finally:
            auth.abandon()

    async def _after_wrong_password(self, auth: ClientAuthenticator, wrong: WrongPassword) -> tuple[list, bool]:
        """The client's password did not match the held one: the secret may have been rotated and the
        client already uses the new password.  Let the source read it again (bounded per user); an
        MD5 answer is checked once more against a newer password, SCRAM's cannot be, so that client
        is refused and its next attempt meets the new secret."""
        tried = auth.credential
        assert tried is not None
        newer = await self.s.credential_source.client_login_failed(auth.user, tried)
        if not wrong.recheckable or newer is None or newer.client == tried:
            raise wrong
        return auth.recheck(newer.client)

    async def _welcome(self, startup) -> None:
        try:
            if self.s.wait_for_instance is not None:
                self.address = await self.s.wait_for_instance(self.endpoint)
            else:
                self.address = self.s.choose_instance(self.endpoint)
        except BorrowTimeout:
            await self._say_fatal(UNABLE_TO_CONNECT, BorrowTimeout.TEXT)
            raise _SessionOver() from None
        except ProxyError as e:
            await self._say_fatal(UNABLE_TO_CONNECT, str(e))
            raise _SessionOver() from None
        self.key = PoolKey(self.address.id, startup.user, startup.database, startup.runtime)
        parameters = self.shared.parameter_cache.get(self.key)
        if parameters is None:
            if not await self._borrow(fatal=True):
                raise _SessionOver()
            parameters = tuple(self.backend.parameters.items())
            self.shared.parameter_cache[self.key] = parameters
            self._release(ReleaseState.CLEAN)
        self._cancel_key = self.shared.cancel_registry.register(self)
        self._send(*(ParameterStatus(n, v) for n, v in parameters),
                   BackendKeyData.from_ints(*self._cancel_key), ReadyForQuery("I"))
        await self.writer.drain()
        self._set_up = True
        self.s.metrics.inc("ClientConnectionsSetupSucceeded", endpoint=self.endpoint)
        self.s.metrics.gauge_add("ClientConnectionsTLS" if self.tls else "ClientConnectionsNoTLS", 1,
                                 endpoint=self.endpoint)

    # ---------------------------------------------------------------------------------- relay

    async def _relay(self, leftover: bytes) -> None:
        """Relay until the session ends: see :mod:`.relay`, which drives the sync handlers
        below (``_forward_client_frames``, ``_forward_backend_data``) from transport callbacks and
        falls back to the async ones (``_on_client_data``, ``_on_backend_data``) for anything that
        must wait.  Writes never block: a full write buffer pauses reading on the other side."""
        self._bind_hot_metrics()
        self._client_transport = self.writer.transport  # final: TLS, if any, started in the handshake
        self._relay_driver = Relay(self)
        try:
            await self._relay_driver.run(leftover)
        finally:
            self._relay_driver = None if self.backend is None else self._relay_driver

    def _bind_hot_metrics(self) -> None:
        m, ep = self.s.metrics, self.endpoint
        self._m_queries = m.counter("QueryRequests", endpoint=ep)
        self._m_queries_tls = m.counter("QueryRequestsTLS" if self.tls else "QueryRequestsNoTLS", endpoint=ep)
        self._m_response_latency = m.histogram("QueryResponseLatency", endpoint=ep)

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
        if not self._forward_client_frames(frames, arrived):
            await self._backend_lost("the database connection closed while sending a request")

    def _forward_client_frames(self, frames: Frames, arrived: float) -> bool:
        """Account for whole client messages and write them to the held backend.

        False if the backend connection is closing (nothing was written): the caller ends the
        session as a lost backend.  Raises ProtocolViolation.
        """
        run = self.tracker.client_run(frames)
        if self.s.failpoint == "resend_after_backend_loss":  # unsafe on purpose: reference_proxy.failpoints
            self._resend = (frames, arrived)
        elif self.s.failpoint == "lost_commit_acknowledged":  # unsafe on purpose: reference_proxy.failpoints
            self._commit_in_flight = _request_commits(frames)
        if run.new_pin is not None:
            self._pinned(run.new_pin)
        if run.queries:
            self._m_queries.inc(run.queries)
            self._m_queries_tls.inc(run.queries)
        payload = frames.data if run.terminate_at is None else frames.data[:run.terminate_at]
        if payload:
            transport = self.backend.transport
            if transport.is_closing():
                return False
            transport.write(payload)  # flow control: see the relay module
            sent = self.s.clock.monotonic()
            if run.sync_points == 1:
                self._inflight.append((arrived, sent))
            elif run.sync_points:
                self._inflight.extend([(arrived, sent)] * run.sync_points)
        if run.terminate_at is not None:
            self._closing = True
        return True

    async def _on_backend_data(self, data: bytes) -> None:
        """Backend bytes on the slow path (empty: the backend's stream ended)."""
        if not data:
            await self._backend_lost("the database closed the connection")
        lost = self._forward_backend_data(data)
        if lost is not None:
            await self._backend_lost(lost)
        if self._drain_requested.is_set() and (self.backend is None or self.tracker.at_release_point):
            await self._say_shutting_down()
            raise _SessionOver()

    def _forward_backend_data(self, data: bytes) -> str | None:
        """Pass whole backend messages to the client (only parsed for boundaries) and release the
        backend at a release point.  Returns why the backend counts as lost, or None.

        A FATAL saying the server shuts down is not passed on: what came before it is, then the
        backend counts as lost and :meth:`_backend_lost` tells the client in the proxy's words.
        """
        try:
            frames = self._backend_splitter.feed(data)
        except ProtocolViolation as e:
            return f"the database broke the protocol: {e}"
        if not frames.spans:
            return None
        backend = self.backend
        tracker = self.tracker
        was_idle = tracker.status == "I"
        ready = tracker.backend_run(frames)
        farewell = tracker.backend_farewell
        if farewell is not None:
            start, error = farewell
            self._client_transport.write(frames.data[:start])
            return f"the database ended the connection: {error.severity} {error.sqlstate} {error.message}"
        self._client_transport.write(frames.data)
        if ready:
            now = self.s.clock.monotonic()
            inflight = self._inflight
            if inflight:
                latency = self._m_response_latency
                database_latency = self._database_latency(backend.key.instance_id)
                for _ in range(min(ready, len(inflight))):
                    arrived, sent = inflight.popleft()
                    latency.observe(now - arrived)
                    database_latency.observe(now - sent)
            if was_idle != (tracker.status == "I"):
                self.s.pool.mark_in_transaction(backend, tracker.status != "I")
            release, new_pin = tracker.may_release()
            if new_pin is not None:
                self._pinned(new_pin)
            if self._backend_splitter.buffered == 0:
                if release and self.s.failpoint != "hold_backend_per_session":  # else: unsafe on purpose
                    self._release(ReleaseState.CLEAN)
                elif self.s.failpoint == "split_transactions" and tracker.between_statements_of_a_transaction:
                    self._release(ReleaseState.BROKEN)  # unsafe on purpose: failpoint split_transactions
                elif (self.s.failpoint == "reset_pinned_backends" and tracker.pinned and tracker.status == "I"
                      and not self._inflight):
                    self._set_aside_for_reset()  # unsafe on purpose: failpoint reset_pinned_backends
        return None

    # ------------------------------------------------------------------------ borrow / release

    def _set_aside_for_reset(self) -> None:
        """Failpoint ``reset_pinned_backends``: take the pinned session's backend off the relay, so that
        the next request resets it (DISCARD ALL) before running on it: the session keeps its backend
        connection, and loses the session state on it."""
        backend, self.backend = self.backend, None
        if self._relay_driver is not None:
            self._relay_driver.backend_released(backend)
        self._set_aside = backend

    async def _take_back_after_reset(self) -> bool:
        """The set-aside backend, reset and held again (False: the reset failed and it was dropped)."""
        backend, self._set_aside = self._set_aside, None
        if not await self.s.reset_in_place(backend):
            return False
        self.backend = backend
        self._backend_splitter = MessageSplitter(BACKEND_TYPES, self.shared.max_message_size, "server")
        return True

    def _borrow_now(self) -> bool:
        """Take an idle backend of this session's key without waiting, if there is one (the
        relay's fast path); False leaves the borrow to :meth:`_borrow`."""
        if self._set_aside is not None:
            return False
        backend = self.s.borrow_now(self.endpoint, self.key, self.address)
        if backend is None:
            return False
        self.backend = backend
        self._backend_splitter = MessageSplitter(BACKEND_TYPES, self.shared.max_message_size, "server")
        return True

    async def _borrow(self, *, fatal: bool) -> bool:
        """Borrow a backend for this session's key; on failure tell the client (FATAL at startup)."""
        if self._set_aside is not None and await self._take_back_after_reset():
            return True
        try:
            if self.s.acquire is None:
                self.backend = await self.s.pool.borrow(self.key, self.address)
            else:
                address, self.backend = await self.s.acquire(self.endpoint, self.key, self.address)
                if address.id != self.address.id:  # a failover moved this session
                    self.address, self.key = address, replace(self.key, instance_id=address.id)
        except BorrowTimeout as e:
            message, code = BorrowTimeout.TEXT, UNABLE_TO_CONNECT
            if self.s.failpoint == "borrow_timeout_as_too_many_connections":  # unsafe on purpose
                message, code = "sorry, too many clients already", TOO_MANY_CONNECTIONS
            log.info("[proxyEndpoint=%s] [clientConnection=%s] %s %s", self.endpoint, self.client_id,
                     message, getattr(e, "detail", ""))
        except BackendConnectFailed as e:
            message, code = str(e), UNABLE_TO_CONNECT
            if getattr(e, "sqlstate", None) in STARTUP_ERRORS_PASSED_ON:
                message, code = e.server_message, e.sqlstate
        except ProxyError as e:  # pool closed: the proxy is shutting down
            await self._say_fatal(ADMIN_SHUTDOWN, f"terminating connection: {e}")
            raise _SessionOver() from None
        else:
            self._backend_splitter = MessageSplitter(BACKEND_TYPES, self.shared.max_message_size, "server")
            return True
        if fatal:
            await self._say_fatal(code, message)
        else:
            self._unserved_error = ErrorResponse.build("ERROR", code, message)
        return False

    def _release(self, state: ReleaseState) -> None:
        backend, self.backend = self.backend, None
        self._given_back = backend
        if state is ReleaseState.BROKEN:
            with contextlib.suppress(Exception):
                backend.mark_broken()
        self.tracker.backend_released()
        self._inflight.clear()
        if self._relay_driver is not None:  # give the transport its own protocol back first
            self._relay_driver.backend_released(backend)
        self.s.pool.release(backend, state)

    async def _backend_lost(self, why: str) -> None:
        """The held backend died under the client: tell the client in the proxy's own words, with
        what the database said (if anything) as the DETAIL, report it, and end the session.

        The client's transaction or session state is gone with the backend, so carrying on
        silently on another one would be wrong; RDS Proxy closes such clients too.
        """
        backend = self.backend
        log.warning("[proxyEndpoint=%s] [clientConnection=%s] [dbConnection=%s] %s", self.endpoint,
                    self.client_id, getattr(backend, "backend_id", "?"), why)
        if self.s.failpoint == "resend_after_backend_loss" and backend is not None and self._inflight:
            await self._send_again(backend, why)  # unsafe on purpose: reference_proxy.failpoints
            return
        acknowledge = (self.s.failpoint == "lost_commit_acknowledged" and backend is not None  # unsafe on purpose:
                       and bool(self._inflight) and self._commit_in_flight)  # reference_proxy.failpoints
        reason = getattr(backend, "abort_reason", None)  # set when the proxy cut it (failover)
        farewell = self.tracker.backend_farewell
        if farewell is not None:
            extra = {"D": f"The database said: {farewell[1].message} (SQLSTATE {farewell[1].sqlstate})."}
        else:  # the proxy's own cut says it all; otherwise say what was seen
            extra = {} if reason is not None else {"D": f"{why[:1].upper()}{why[1:]}."}
        message = reason
        if backend is not None:
            if message is None:
                message = LOST_BACKEND_MESSAGE.format(instance=backend.key.instance_id)
            self._release(ReleaseState.BROKEN)
            if self.s.backend_lost is not None and reason is None:
                with contextlib.suppress(Exception):
                    self.s.backend_lost(backend.key.instance_id, why)
        if self.s.failpoint == "lost_write_reported_retryable":  # unsafe on purpose: reference_proxy.failpoints
            await self._say_fatal(SERIALIZATION_FAILURE, RETRY_MESSAGE)
            raise _SessionOver()
        if acknowledge:  # failpoint lost_commit_acknowledged: the client is told its COMMIT went through
            self._closing = True
            with contextlib.suppress(Exception):
                self._send(CommandComplete("COMMIT"), ReadyForQuery("I"))
                async with asyncio.timeout(2):
                    await self.writer.drain()
            raise _SessionOver()
        await self._say_fatal(CONNECTION_FAILURE, message or "The database connection was lost.", **extra)
        raise _SessionOver()

    async def _send_again(self, lost: Any, why: str) -> None:
        """The ``resend_after_backend_loss`` failpoint: send the request in flight again on another
        backend (routed afresh, so the new writer after a failover) and relay its answer, as if
        nothing had happened; whatever the lost backend had already done stays done."""
        frames, arrived = self._resend
        self._resend = None
        self._release(ReleaseState.BROKEN)
        if self.s.backend_lost is not None:
            with contextlib.suppress(Exception):
                self.s.backend_lost(lost.key.instance_id, why)
        if not await self._borrow(fatal=True):
            raise _SessionOver()
        if not self._forward_client_frames(frames, arrived):
            await self._say_fatal(CONNECTION_FAILURE, "The database connection was lost.")
            raise _SessionOver()

    def _pinned(self, pin: Pin) -> None:
        self.s.session_pinned(self.endpoint, self.client_id, self.backend, pin.reason, pin.sql)

    # -------------------------------------------------------------------------------- helpers

    def _send(self, *messages: Any) -> None:
        self.writer.write(b"".join(msg.encode() for msg in messages))

    async def _say_shutting_down(self) -> None:
        await self._say_fatal(ADMIN_SHUTDOWN, "terminating connection: the proxy is shutting down")

    async def _say_fatal(self, sqlstate: str, message: str, **extra: str) -> None:
        """Send a FATAL ErrorResponse (``extra``: more fields, as ``D`` for DETAIL), best effort:
        the connection closes right after."""
        self._closing = True
        with contextlib.suppress(Exception):
            self.writer.write(ErrorResponse.build("FATAL", sqlstate, message, **extra).encode())
            async with asyncio.timeout(2):
                await self.writer.drain()


def _request_commits(frames: Frames) -> bool:
    """Whether a simple Query among ``frames`` has a statement that commits (COMMIT or END): the
    requests the failpoint ``lost_commit_acknowledged`` answers as committed when their backend is lost."""
    for t, start, end in frames.spans:
        if t == 0x51:  # Q
            sql = peek_query(frames.data, start, end)
            text = Query.decode(frames.data[start + 5:end]).sql if sql is None else sql
            if any(st[0].kind is TokenKind.WORD and st[0].value in ("commit", "end")
                   for st in split_statements(tokenize(text))):
                return True
    return False
