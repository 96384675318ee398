"""One MySQL client session: the proxy's own login, then command-by-command relay over pooled backends.

Life of a session
-----------------
1. **Login** (no backend involved, :mod:`.login`): the proxy's greeting, TLS if the client asks
   for it, the client's proof (a password, or an IAM token over TLS) checked against what the
   proxy's credential source holds for the user, read again first when its secret is due, and once
   more after a mismatch (the client may already use a rotated password).  MySQL clients send their TLS
   ClientHello right after the SSLRequest without waiting for an answer, so when TLS is configured
   the login reads whole packets straight from the socket (a stream reader could swallow the
   ClientHello) and TLS starts on that socket as the server.
2. **Instance**: the endpoint's router picks the instance (waiting out a failover up to the borrow
   timeout); the pool key is instance, user, schema.
3. **Commands**: COM_PING, COM_QUIT, COM_RESET_CONNECTION and COM_CHANGE_USER are answered by the
   proxy.  Any other command borrows a backend if the session holds none (failover routing, the
   borrow timeout answered with RDS's ``ERROR 9501``), goes to it, and its reply is relayed packet
   by packet while a :class:`ReplyRelay` follows it.  After a complete reply the release rule of
   :class:`SessionTracker` decides whether the backend goes back to the pool.  Plain commands do
   all of this from transport callbacks when nothing has to wait (:mod:`.relay`); the session's
   coroutine takes everything else, with the same handlers.
4. **Pinning**: COM_STMT_PREPARE (statement ids live on one backend) and COM_QUERY text the engine's
   classifier flags pin the session; the pin is logged once with its reason and digest.  A pinned
   backend goes back DIRTY when the client leaves or resets, so the pool resets it with
   COM_RESET_CONNECTION (or closes it) before anyone else gets it.
5. **Tracked state** (:mod:`.tracked`): COM_INIT_DB, ``USE`` and session ``SET`` of a variable RDS
   Proxy tracks (autocommit, character sets, sql_mode, time_zone...) change the pool key's schema
   or variant for later borrows instead of pinning; the backend that ran them goes back DIRTY (its
   reset restores its own key's schema and variables).

Framing is identical on both sides (no compression, classic EOFs, no session tracking toward
clients, and the backend is not asked for it either), so replies pass through byte for byte.
LOCAL INFILE is never offered; a server that asks for a file anyway gets an empty one and the client
an ERR.  A backend lost mid-command costs the client its connection, after an ERR saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
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
from reference_proxy.engines.mysql.auth import (
    AuthFailed,
    ClientAuthenticator,
    Sha2FastPathCache,
    WrongPassword,
)
from reference_proxy.engines.mysql.kill import Kill, KillRefused, could_kill, process_kill, read_kill
from reference_proxy.engines.mysql.lexer import TokenKind, lexing_options, split_statements, tokenize
from reference_proxy.engines.mysql.login import (
    LOGIN_MAX_PAYLOAD,
    Authenticated,
    ClientLogin,
    LoginEvent,
    LookUpCredentials,
    RecheckCredentials,
    Refused,
    SendToClient,
    StartTls,
)
from reference_proxy.engines.mysql.relay import FastCommand, Handover, Relay
from reference_proxy.engines.mysql.tracked import TrackedChange
from reference_proxy.engines.mysql.tracking import RESET_SESSION_SETTINGS, Pin, ReplyRelay, SessionTracker
from reference_proxy.protocol.mysql import (
    DEFAULT_MAX_PAYLOAD,
    HEADER_SIZE,
    Capability,
    ComChangeUser,
    Command,
    ComQuery,
    ComStmtPrepare,
    ErrPacket,
    OkPacket,
    Packet,
    PacketReader,
    ProtocolViolation,
    ReplyShape,
    encode_packet,
    next_sequence_id,
    reply_shape,
)
from reference_proxy.session_services import LatencyByInstance, SessionServices, turn_away

__all__ = ["BORROW_TIMEOUT_CODE", "LOST_BACKEND_CODE", "MySQLClientSession", "MySQLSessions"]

log = logging.getLogger("reference_proxy.engines.mysql.session")

READ_SIZE = 65536
WRITE_BUFFER_LIMIT = 65536
"""Bytes a peer may leave unread in the proxy's write buffer before the relay waits for it."""
BORROW_TIMEOUT_CODE = 9501
BORROW_TIMEOUT_MESSAGE = "Timed-out waiting to acquire database connection"
"""RDS Proxy's ``ERROR 9501 (HY000): Timed-out waiting to acquire database connection``: the MySQL
text has no full stop, where the PostgreSQL one (:attr:`BorrowTimeout.TEXT`) has one."""
ER_CON_COUNT_ERROR = 1040
"""MySQL's own ``Too many connections``: what the failpoint ``borrow_timeout_as_too_many_connections``
answers in place of RDS Proxy's error 9501."""
READ_ONLY_REFUSALS = frozenset({1290, 1836})
"""ER_OPTION_PREVENTS_STATEMENT (``--read-only``) and ER_READ_ONLY_MODE: what a demoted writer
answers a write with while it keeps running; the proxy takes it as a hint of a failover."""
LOST_BACKEND_CODE = 2013
DEADLOCK_CODE = 1213
DEADLOCK_MESSAGE = "Deadlock found when trying to get lock; try restarting transaction"
"""What the ``lost_write_reported_retryable`` failpoint tells a client whose backend was lost (MySQL's own
words for a transaction it rolled back)."""
"""MySQL's "Lost connection to server during query": drivers treat it as a dead connection."""
SHUTDOWN_CODE = 1053
ER_UNKNOWN_ERROR = 1105
ER_NOT_SUPPORTED = 1235
ER_NO_SUCH_THREAD = 1094
ER_KILL_DENIED = 1095
ER_QUERY_INTERRUPTED = 1317
ER_CONNECTION_KILLED = 1927
LOST_BACKEND_MESSAGE = ("Lost connection: the database connection to instance {instance} was lost (a failover, "
                        "or the database shut down or crashed); reconnect to continue")
LOCAL_INFILE_MESSAGE = "LOAD DATA LOCAL INFILE is not supported by this proxy"
TOO_MANY_CLIENTS = encode_packet(ErrPacket(1040, "Too many connections", "08004").encode(), 0)[0]
"""What a client turned away before login gets (too many clients setting up, or no descriptor left):
MySQL's own ERROR 1040 in place of the greeting, as a server over max_connections sends it."""
DATABASE_REFUSALS = frozenset({1049, 1044})
"""ER_BAD_DB_ERROR ("Unknown database 'x'") and ER_DBACCESS_DENIED_ERROR: a server refuses the login
with them in place of the OK, so the proxy checks a database a client names before its OK."""
_QUERIES = (Command.QUERY, Command.STMT_EXECUTE)
_FAST_COMMANDS = frozenset((Command.QUERY, Command.STMT_EXECUTE, Command.INIT_DB, Command.STMT_PREPARE,
                            Command.STMT_RESET, Command.STMT_FETCH))
"""Commands the fast path sends on the spot: each has a reply and needs nothing but a backend."""
_KILL_CARRIERS = {Command.QUERY: ComQuery, Command.STMT_PREPARE: ComStmtPrepare}
"""Commands whose SQL text may be a KILL, which the proxy answers itself (:mod:`.kill`)."""


class MySQLSessions:
    """The MySQL session factory: one per proxy, called once per accepted client.

    Holds what the MySQL sessions of one proxy share besides :class:`SessionServices`: the
    caching_sha2 fast-path cache and the largest packet accepted.
    """

    def __init__(self, services: SessionServices, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.services = services
        self.sha2_cache = Sha2FastPathCache()
        self.max_payload = max_payload
        self.databases_seen: set[tuple[str, str]] = set()
        """(user, database) pairs a backend has opened: a login naming one needs no check."""
        self.by_connection_id: dict[int, MySQLClientSession] = {}
        """Sessions set up and not yet over, by the connection id their greeting gave: what a
        client's KILL names (:mod:`.kill`)."""

    def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: str,
                 client_id: int) -> MySQLClientSession:
        return MySQLClientSession(reader, writer, endpoint, self, client_id)


class _SessionOver(Exception):
    """Internal: the session has said its last word and must close."""


RESEND_ATTEMPTS = 30
RESEND_PAUSE_S = 0.2
"""How often, and how far apart, the ``resend_after_backend_loss`` failpoint sends a command again."""


class _Resent(Exception):
    """Internal, only with the ``resend_after_backend_loss`` failpoint: a command whose backend was
    lost was sent again on another one and its whole reply relayed; the session goes on."""


class MySQLClientSession:
    """Serves one client connection; see the module docstring. ``run()`` never raises."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: str,
                 sessions: MySQLSessions, client_id: int) -> None:
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
        self._given_back: Any = None
        """The backend this session last gave back to the pool (read only by the failpoint
        ``cancel_to_last_backend``: unsafe on purpose)."""
        self._set_aside: Any = None
        """The held backend while it is being reset under a pin: only with the failpoint
        ``reset_pinned_backends`` (unsafe on purpose), else always None."""
        self.tracker = SessionTracker(
            self.s.classifier(endpoint, client_id), exclude_variable_sets=lambda: self.s.pool.settings.exclude_variable_sets,
            binary_prepare_pins=self.s.failpoint != "named_statements_unpinned")  # failpoints: unsafe on purpose
        self.capabilities = 0
        self._nonce = b""  # the login's scramble: COM_CHANGE_USER answers it again
        self._client_packets = PacketReader(sessions.max_payload, what="client", expected_sequence=None)
        self._login_slot: Any = None
        self._login_clock: Any = None
        self._held_ok = b""  # the login's OK, held until the database the client named is known to exist
        self._mid_reply = False
        self._resend: bytes | None = None  # only for the resend_after_backend_loss failpoint
        self._commit_in_flight = False  # only for the lost_commit_acknowledged failpoint
        self._set_up = False
        self._drain_requested = False
        self._raw_socket: socket.socket | None = None  # the client's socket while the login reads it raw
        self._relay: Relay | None = None
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
                await turn_away(self.reader, self.writer, TOO_MANY_CLIENTS)
                raise _SessionOver()
            authenticated = await self._log_in()
            self._login_slot.release()  # authenticated: no longer a stranger
            await self._choose_instance(authenticated)
            await self._serve_commands()
        except _SessionOver:
            pass
        except ProtocolViolation as e:
            log.info("[proxyEndpoint=%s] [clientConnection=%s] protocol violation: %s", ep, self.client_id, e)
            await self._say_error(e.error_code, e.sqlstate, e.message, 1)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass  # the client went away (or stalled its login); _finish decides what its backend is worth
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must cost one session, not the proxy
            log.exception("[proxyEndpoint=%s] [clientConnection=%s] session failed", ep, self.client_id)
            await self._say_error(ER_UNKNOWN_ERROR, "HY000", "Unknown error.", 1)
        finally:
            await self._finish()

    @property
    def pinned(self) -> bool:
        """Whether the session holds its backend connection until it disconnects or resets."""
        return self.tracker.pinned

    def request_drain(self) -> None:
        """Shutdown: finish the current transaction (if any), then close the client."""
        self._drain_requested = True
        if self._relay is not None:
            self._relay.wakeup()

    async def _finish(self) -> None:
        m, ep = self.s.metrics, self.endpoint
        if self._login_slot is not None:
            self._login_slot.release()
        if self.shared.by_connection_id.get(self.client_id) is self:
            del self.shared.by_connection_id[self.client_id]
        if self.backend is not None:
            self._release(self.tracker.release_state_if_client_leaves(self._mid_reply))
        elif self._set_aside is not None:  # failpoint reset_pinned_backends: the reset never ran
            backend, self._set_aside = self._set_aside, None
            self.s.pool.release(backend, ReleaseState.DIRTY)
        if self.address is not None:
            with contextlib.suppress(Exception):
                self.s.session_ended(self.address.id)
        if self._set_up:
            m.gauge_add("ClientConnectionsTLS" if self.tls else "ClientConnectionsNoTLS", -1, endpoint=ep)
        m.gauge_add("ClientConnections", -1, endpoint=ep)
        m.inc("ClientConnectionsClosed", endpoint=ep)
        if self._raw_socket is not None:
            self._raw_socket.close()
            return
        with contextlib.suppress(Exception):
            self.writer.close()
            async with asyncio.timeout(2):
                await self.writer.wait_closed()

    # ---------------------------------------------------------------------------------- login

    async def _log_in(self) -> Authenticated:
        clock = self._login_clock = self.s.login_clock()
        try:
            async with asyncio.timeout(None) as timer:
                clock.attach(timer)
                return await self._login_exchange()
        except TimeoutError:
            log.info("[proxyEndpoint=%s] [clientConnection=%s] the client %s; closing", self.endpoint,
                     self.client_id, clock.limit_reached())
            raise _SessionOver() from None
        finally:
            clock.detach()
            self._login_clock = None

    async def _login_exchange(self) -> Authenticated:
        peer = self.writer.get_extra_info("peername")
        login = ClientLogin(
            client_host=peer[0] if peer else "localhost",
            connection_id=self.client_id, sha2_cache=self.shared.sha2_cache,
            tls_available=self.s.tls_context is not None, require_tls=self.s.tls_required(self.endpoint),
            random_bytes=self.s.token_bytes, iam=self.s.iam, token_endpoint=self._token_endpoint())
        try:
            return await self._drive_login(login)
        finally:
            login.abandon()

    def _token_endpoint(self) -> tuple[str, int] | None:
        """The (host, port) an IAM token for this session's endpoint must name."""
        return None if self.s.token_endpoint is None else self.s.token_endpoint(self.endpoint)

    async def _drive_login(self, login: ClientLogin) -> Authenticated:
        source = self.s.credential_source
        raw = self._raw_socket = self._take_socket() if self.s.tls_context is not None else None
        pending: list[LoginEvent] = [login.greeting()]
        while True:
            while pending:
                event = pending.pop(0)
                if isinstance(event, LookUpCredentials):
                    found = await source.lookup(event.user)
                    pending[:0] = login.credentials_found(None if found is None else found.client)
                elif isinstance(event, RecheckCredentials):
                    newer = await source.client_login_failed(event.user, event.tried)
                    pending[:0] = login.recheck(None if newer is None else newer.client)
                elif isinstance(event, SendToClient):
                    if pending and isinstance(pending[0], Authenticated) and pending[0].ok_size:
                        ok_at = len(event.data) - pending[0].ok_size
                        self._held_ok = event.data[ok_at:]  # sent by _check_database
                        await self._write_login(raw, event.data[:ok_at])
                    else:
                        await self._write_login(raw, event.data)
                elif isinstance(event, StartTls):
                    if event.early_data or raw is None:
                        raise ProtocolViolation("client data arrived before TLS could start")
                    await self._attach(raw, self.s.tls_context)
                    raw = None
                    self.tls = True
                    login.tls_started()
                elif isinstance(event, Authenticated):
                    self._nonce = login.nonce
                    if raw is not None:
                        await self._attach(raw, None)
                    self._client_packets.receive_data(login.take_buffered())
                    self.capabilities = event.capabilities
                    return event
                elif isinstance(event, Refused):
                    if event.auth_failure:
                        self.s.metrics.inc("ClientConnectionsSetupFailedAuth", endpoint=self.endpoint)
                        log.info("[proxyEndpoint=%s] [clientConnection=%s] login refused: %s%s", self.endpoint,
                                 self.client_id, event.message, f" ({event.detail})" if event.detail else "")
                    raise _SessionOver()
            data = await (self._read_raw_packet(raw) if raw is not None else self.reader.read(READ_SIZE))
            if not data:
                raise _SessionOver()
            self._login_clock.heard()
            pending = login.receive_data(data)

    def _take_socket(self) -> socket.socket:
        """The client's socket, taken from the stream the server opened (nothing was read from it
        yet: the proxy speaks first), for exact reads until TLS starts."""
        transport = self.writer.transport
        transport.pause_reading()
        sock = transport.get_extra_info("socket").dup()
        transport.abort()  # closes the stream's own descriptor; the duplicate keeps the connection
        sock.setblocking(False)
        return sock

    async def _read_raw_packet(self, sock: socket.socket) -> bytes:
        """One whole packet (header included) from the socket, reading no byte past it."""
        header = await self._recv_exactly(sock, HEADER_SIZE)
        if len(header) < HEADER_SIZE:
            return b""
        size = int.from_bytes(header[:3], "little")
        if size > LOGIN_MAX_PAYLOAD:
            return header  # the login refuses the oversized packet from its header
        body = await self._recv_exactly(sock, size)
        return header + body if len(body) == size else b""

    @staticmethod
    async def _recv_exactly(sock: socket.socket, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        data = bytearray()
        while len(data) < size:
            chunk = await loop.sock_recv(sock, size - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    async def _write_login(self, sock: socket.socket | None, data: bytes) -> None:
        if sock is not None:
            await asyncio.get_running_loop().sock_sendall(sock, data)
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def _attach(self, sock: socket.socket, tls_context: ssl.SSLContext | None) -> None:
        """Streams over the client's socket again, as the TLS server when ``tls_context`` is given."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 ** 16, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, sock, ssl=tls_context,
            ssl_handshake_timeout=self.s.handshake_timeout if tls_context is not None else None)
        self.reader, self.writer = reader, asyncio.StreamWriter(transport, protocol, reader, loop)
        self._raw_socket = None  # the new transport owns it

    async def _choose_instance(self, authenticated: Authenticated) -> None:
        try:
            if self.s.wait_for_instance is not None:
                self.address = await self.s.wait_for_instance(self.endpoint)
            else:
                self.address = self.s.choose_instance(self.endpoint)
        except BorrowTimeout:
            self.writer.write(self._held_ok)
            await self._say_error(BORROW_TIMEOUT_CODE, "HY000", BORROW_TIMEOUT_MESSAGE, 0)
            raise _SessionOver() from None
        except ProxyError as e:
            self.writer.write(self._held_ok)
            await self._say_error(BORROW_TIMEOUT_CODE, "HY000", str(e), 0)
            raise _SessionOver() from None
        self.key = PoolKey(self.address.id, authenticated.user, authenticated.database or "")
        await self._check_database(authenticated)
        self._set_up = True
        self.shared.by_connection_id[self.client_id] = self
        self.s.metrics.inc("ClientConnectionsSetupSucceeded", endpoint=self.endpoint)
        self.s.metrics.gauge_add("ClientConnectionsTLS" if self.tls else "ClientConnectionsNoTLS", 1,
                                 endpoint=self.endpoint)

    # ------------------------------------------------------------------------------- commands

    async def _next_client_packet(self) -> Packet | None:
        """The client's next packet in the middle of an exchange (None: the client left)."""
        assert self._relay is not None
        item = await self._relay.next_work(command=False)
        if isinstance(item, Handover):  # no fast command runs during an exchange
            raise TypeError("a fast command was handed over in the middle of an exchange")
        return item

    def _idle_too_long(self) -> None:
        log.info("[proxyEndpoint=%s] [clientConnection=%s] closing the client: idle for longer than "
                 "IdleClientTimeout (%ss)", self.endpoint, self.client_id, self.s.pool.settings.idle_client_timeout)

    async def _serve_commands(self) -> None:
        m, ep = self.s.metrics, self.endpoint
        self._m_queries = m.counter("QueryRequests", endpoint=ep)
        self._m_queries_tls = m.counter("QueryRequestsTLS" if self.tls else "QueryRequestsNoTLS", endpoint=ep)
        self._m_response_latency = m.histogram("QueryResponseLatency", endpoint=ep)
        relay = self._relay = Relay(self)
        relay.start()
        try:
            while True:
                self._client_packets.expected_sequence = 0  # every command starts a new exchange
                item = await relay.next_work()
                if item is None:
                    return
                try:
                    if isinstance(item, Handover):
                        await self._finish_handed_over(item)
                    elif not item.payload or item.payload[0] == Command.QUIT:
                        return
                    else:
                        await self._command(item.payload)
                except _Resent:  # unsafe on purpose: failpoint resend_after_backend_loss
                    pass
                if self.writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                    await self.writer.drain()
                if self._drain_requested and not self.tracker.in_transaction:
                    return
        finally:
            relay.stop()

    async def _command(self, payload: bytes) -> None:
        """One command on the coroutine (the slow path)."""
        command = payload[0]
        if command == Command.PING:
            self._say_ok(1)
        elif command == Command.RESET_CONNECTION:
            self._reset_session()
            self._say_ok(1)
        elif command == Command.CHANGE_USER:
            await self._change_user(payload)
        elif command in (Command.STMT_CLOSE, Command.STMT_SEND_LONG_DATA) and self.backend is None:
            pass  # no statement can exist without the pinned backend that prepared it
        elif command == Command.PROCESS_KILL:
            try:
                kill: Kill | KillRefused | None = process_kill(payload)
            except ValueError as e:
                raise ProtocolViolation(str(e)) from None
            await self._kill(kill)
        elif command in _KILL_CARRIERS and could_kill(payload) and (kill := read_kill(
                _KILL_CARRIERS[command].decode(payload).sql,
                **lexing_options(status_flags=self.tracker.status_flags))) is not None:
            if command == Command.STMT_PREPARE:  # prepared, it would run on a backend with the id unmapped
                kill = KillRefused("KILL cannot be prepared through this proxy; send it as a statement")
            await self._kill(kill)
        else:
            await self._relay_command(command, payload)

    async def _kill(self, kill: Kill | KillRefused) -> None:
        """KILL and COM_PROCESS_KILL, answered by the proxy (see :mod:`.kill`): the id names the
        session whose greeting gave it; its statement is stopped on the backend it holds now, and
        ``KILL CONNECTION`` closes that client too.  The answers are MySQL's own: an id no live
        session has is 1094 ``Unknown thread id``, another user's session 1095, one's own
        statement 1317 and one's own connection 1927 (MariaDB 10.11 answers so)."""
        assert self.key is not None
        if isinstance(kill, KillRefused):
            await self._say_error(ER_NOT_SUPPORTED, "42000", kill.reason, 1)
            return
        n = kill.connection_id
        target = self.shared.by_connection_id.get(n)
        if target is None or target.key is None:
            await self._say_error(ER_NO_SUCH_THREAD, "HY000", f"Unknown thread id: {n}", 1)
            return
        if target.key.user != self.key.user:
            await self._say_error(ER_KILL_DENIED, "HY000", f"You are not owner of thread {n}", 1)
            return
        if target is self:
            if kill.query_only:
                await self._say_error(ER_QUERY_INTERRUPTED, "70100", "Query execution was interrupted", 1)
                return
            await self._say_error(ER_CONNECTION_KILLED, "70100", "Connection was killed", 1)
            raise _SessionOver()
        await target.stop_statement()
        if not kill.query_only:
            target.close_client()
        self._say_ok(1)

    async def stop_statement(self) -> None:
        """Stop the statement this session runs now, if any: ``KILL QUERY`` on the backend it holds
        (a session that holds none runs nothing, and the backend it held last may serve someone
        else by now)."""
        if self.s.failpoint == "cancels_dropped":  # unsafe on purpose: reference_proxy.failpoints
            return
        backend = self.backend
        if backend is None and self.s.failpoint == "cancel_to_last_backend":  # unsafe on purpose
            backend = self._given_back
        if backend is not None:
            await backend.cancel()

    def close_client(self) -> None:
        """KILL CONNECTION from another session: drop this client's connection; the session ends
        as when a client leaves (its backend, stopped mid-statement, is not lent again as it is)."""
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    def _start_fast(self, packet: Packet, wire: bytes | None = None) -> bool:
        """The fast path (see :mod:`.relay`): answer or send a plain command on the spot.  False
        leaves it to the coroutine, with nothing done that it would do differently.  ``wire`` is
        the packet as the client framed it (sequence 0), when the relay knows it."""
        payload = packet.payload
        if not payload:
            return False
        command = payload[0]
        if command == Command.PING:
            self._say_ok(1)
            return True
        if command not in _FAST_COMMANDS or self._drain_requested or (command in _KILL_CARRIERS and could_kill(payload)):
            return False
        assert self.key is not None and self._relay is not None
        pin, change = self.tracker.inspect(command, payload, self.key.database)
        if self.backend is None:
            if not self._borrow_now():
                return False
        elif not self.backend.is_usable():
            return False  # held since an earlier command: the coroutine finds out what became of it
        backend = self.backend
        if command in _QUERIES:
            self._m_queries.inc()
            self._m_queries_tls.inc()
        if pin is not None:
            self.tracker.pinned_by(pin)
            self._pinned(pin)
        now = self.s.clock.monotonic()
        self._mid_reply = True
        if self.s.failpoint == "resend_after_backend_loss":  # unsafe on purpose: reference_proxy.failpoints
            self._resend = payload
        elif self.s.failpoint == "lost_commit_acknowledged":  # unsafe on purpose: reference_proxy.failpoints
            self._commit_in_flight = _command_commits(payload)
        self._relay.send(FastCommand(backend, command, ReplyRelay(command, backend.capabilities,
                                                                  self.shared.max_payload), change, now, now),
                         encode_packet(payload, 0)[0] if wire is None else wire)
        return True

    async def _finish_handed_over(self, handover: Handover) -> None:
        """A fast command the callbacks could not finish: its backend was lost, or its reply needs
        the coroutine (a LOCAL INFILE request)."""
        fast = handover.fast
        if handover.lost is not None:
            await self._backend_lost(handover.lost, fast.reply.next_sequence)
        await self._relay_reply(fast.reply)
        self._command_done(fast)

    async def _relay_command(self, command: int, payload: bytes) -> None:
        if self._relay is not None:
            self._relay.detach_backend()  # the coroutine reads the reply through the backend's own stream
        tracker = self.tracker
        assert self.key is not None
        pin, change = tracker.inspect(command, payload, self.key.database)
        arrived = self.s.clock.monotonic()
        if self.backend is None and not await self._borrow():
            return
        backend = self.backend
        if command in _QUERIES:
            self._m_queries.inc()
            self._m_queries_tls.inc()
        if pin is not None:
            tracker.pinned_by(pin)
            self._pinned(pin)
        if self.s.failpoint == "lost_commit_acknowledged":  # unsafe on purpose: reference_proxy.failpoints
            self._commit_in_flight = _command_commits(payload)
        if backend.transport.is_closing():
            await self._backend_lost("the database connection closed before the command could be sent", 1)
        if self.s.failpoint == "resend_after_backend_loss":  # unsafe on purpose: reference_proxy.failpoints
            self._resend = payload
        backend.writer.write(encode_packet(payload, 0)[0])
        if reply_shape(command) is ReplyShape.NONE:
            return
        fast = FastCommand(backend, command, ReplyRelay(command, backend.capabilities, self.shared.max_payload),
                           change, arrived, self.s.clock.monotonic())
        await self._relay_reply(fast.reply)
        self._command_done(fast)

    def _command_done(self, fast: FastCommand) -> None:
        """A command's reply is complete: account for it, follow what it changed, and give the
        backend back if the release rule allows."""
        self._mid_reply = False
        self._commit_in_flight = False
        tracker, relay, backend = self.tracker, fast.reply, fast.backend
        if fast.command in _QUERIES:
            now = self.s.clock.monotonic()
            self._m_response_latency.observe(now - fast.arrived)
            self._database_latency(backend.key.instance_id).observe(now - fast.sent)
        error = relay.error
        if error is not None and error.error_code in READ_ONLY_REFUSALS and self.s.write_refused is not None:
            self.s.write_refused(backend.key.instance_id, f"a write was refused as read-only ({error.error_code})")
        was_in_transaction = tracker.in_transaction
        tracker.reply_done(relay.status_flags)
        if fast.change is not None:
            self._follow(fast.change, backend, succeeded=relay.error is None and not relay.local_infile)
        if was_in_transaction != tracker.in_transaction:
            with contextlib.suppress(ProxyError):
                self.s.pool.mark_in_transaction(backend, tracker.in_transaction)
        if tracker.at_release_point and self.s.failpoint != "hold_backend_per_session":  # else: unsafe on purpose
            self._release(tracker.release_state())
        elif self.s.failpoint == "split_transactions" and tracker.between_statements_of_a_transaction:
            self._release(ReleaseState.BROKEN)  # unsafe on purpose: failpoint split_transactions
        elif self.s.failpoint == "reset_pinned_backends" and tracker.pinned and not tracker.in_transaction:
            self._set_aside_for_reset()  # unsafe on purpose: failpoint reset_pinned_backends

    def _follow(self, change: TrackedChange, backend: Any, *, succeeded: bool) -> None:
        """A command changed tracked state (schema, tracked variables): later borrows use the pool
        key that matches it, and the backend that ran it is reset when it goes back unless it
        already matches its own key.  A failed command may have changed part of it (one statement
        of several): its backend is reset anyway, and the session keeps the key it had."""
        assert self.key is not None
        if succeeded:
            self.tracker.apply(change)
            schema = self.key.database if change.schema is None else change.schema
            baseline = RESET_SESSION_SETTINGS if self.s.pool.settings.init_query is None else {}
            self.key = replace(self.key, database=schema, variant=self.tracker.variant(baseline))
        held = backend.key
        if not succeeded or (held.database, held.variant) != (self.key.database, self.key.variant):
            self.tracker.state_changed = True

    async def _relay_reply(self, relay: ReplyRelay) -> None:
        """Relay the rest of a reply on the coroutine (all of it on the slow path)."""
        backend = self.backend
        reader, client = backend.reader, self.writer
        self._mid_reply = True
        try:
            if backend.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                await backend.writer.drain()
            while not relay.done and not relay.local_infile:
                data = await reader.read(READ_SIZE)
                if not data:
                    await self._backend_lost("the database closed the connection", relay.next_sequence)
                out = relay.feed(data)
                if out:
                    client.write(out)
                    if client.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                        await client.drain()  # a slow client slows its own reply, not the proxy
            if relay.local_infile:
                await self._refuse_local_infile(relay)
            if relay.buffered:
                raise ProtocolViolation("the database sent bytes after a complete reply")
        except (ConnectionError, OSError) as e:
            await self._backend_lost(f"the database connection failed: {e}", relay.next_sequence)
        except ProtocolViolation as e:
            await self._backend_lost(f"the database broke the protocol: {e}", relay.next_sequence)

    async def _refuse_local_infile(self, relay: ReplyRelay) -> None:
        """The server asked for a client file, which the proxy never offered: send it an empty one,
        swallow the rest of its reply and tell the client why instead."""
        backend = self.backend
        backend.writer.write(encode_packet(b"", next_sequence_id(relay.infile_sequence))[0])
        await backend.writer.drain()
        while not relay.done:
            data = await backend.reader.read(READ_SIZE)
            if not data:
                await self._backend_lost("the database closed the connection", relay.infile_sequence)
            relay.feed(data)
        await self._say_error(ER_NOT_SUPPORTED, "42000", LOCAL_INFILE_MESSAGE, relay.infile_sequence, flush=False)

    # --------------------------------------------------------------------- proxy's own answers

    def _reset_session(self) -> None:
        """COM_RESET_CONNECTION: the session starts afresh (keeping its schema, as the server does);
        a backend it held is reset by the pool."""
        if self.backend is not None:
            self._release(ReleaseState.DIRTY)
        self.tracker.reset()
        if self.key is not None:
            self.key = replace(self.key, variant=())

    async def _change_user(self, payload: bytes) -> None:
        """COM_CHANGE_USER, answered by the proxy: the new user proves its password against the
        login's nonce; on success the session is reset and its pool key names the new user."""
        request = ComChangeUser.decode(payload, self.capabilities)
        peer = self.writer.get_extra_info("peername")
        held = await self.s.credential_source.lookup(request.username)
        auth = ClientAuthenticator(request.username, None if held is None else held.client, nonce=self._nonce,
                                   client_host=peer[0] if peer else "localhost", tls=self.tls,
                                   sha2_cache=self.shared.sha2_cache,
                                   can_switch_plugin=bool(self.capabilities & Capability.PLUGIN_AUTH),
                                   iam=self.s.iam, token_endpoint=self._token_endpoint())
        sequence = 1
        try:
            packets, done = await self._auth_step(auth, lambda: auth.start(request.auth_plugin_name,
                                                                           request.auth_response))
            while True:
                out = bytearray()
                for packet in packets:
                    data, sequence = encode_packet(packet.encode(), sequence)
                    out += data
                self.writer.write(bytes(out))
                if done:
                    break
                self._client_packets.expected_sequence = sequence
                answer = await self._next_client_packet()
                if answer is None:
                    raise _SessionOver()
                sequence = next_sequence_id(answer.sequence_id)
                packets, done = await self._auth_step(auth, lambda data=answer.payload: auth.receive(data))
        except AuthFailed as e:
            self.s.metrics.inc("ClientConnectionsSetupFailedAuth", endpoint=self.endpoint)
            log.info("[proxyEndpoint=%s] [clientConnection=%s] COM_CHANGE_USER refused: %s%s", self.endpoint,
                     self.client_id, e.message, f" ({e.detail})" if e.detail else "")
            await self._say_error(e.error_code, e.sqlstate, e.message, sequence, flush=False)
            return
        finally:
            auth.abandon()
        self._reset_session()
        assert self.key is not None
        self.key = replace(self.key, user=request.username, database=request.schema or "")
        self._say_ok(sequence)

    async def _auth_step(self, auth: ClientAuthenticator,
                         step: Callable[[], tuple[list, bool]]) -> tuple[list, bool]:
        """One step of a COM_CHANGE_USER authentication; after a wrong password the source reads the
        user's secret again and the same answer is checked against what it holds now (as the login
        does, :class:`~.login.RecheckCredentials`)."""
        try:
            return step()
        except WrongPassword as wrong:
            tried = auth.credential
            assert tried is not None
            if not wrong.recheckable:
                raise
            newer = await self.s.credential_source.client_login_failed(auth.user, tried)
            if newer is None or newer.client == tried:
                raise wrong from None
            return auth.recheck(newer.client)

    # ------------------------------------------------------------------------ borrow / release

    async def _take_backend(self) -> Any:
        """A backend for this session's key, or the pool's or failover's error."""
        assert self.key is not None and self.address is not None
        backend = None
        if self.s.acquire_now is not None:
            with contextlib.suppress(ProxyError):
                backend = self.s.acquire_now(self.endpoint, self.key, self.address)
        if backend is None:
            if self.s.acquire is None:
                backend = await self.s.pool.borrow(self.key, self.address)
            else:
                address, backend = await self.s.acquire(self.endpoint, self.key, self.address)
                if address.id != self.address.id:  # a failover moved this session
                    self.address, self.key = address, replace(self.key, instance_id=address.id)
        return backend

    async def _check_database(self, authenticated: Authenticated) -> None:
        """Send the login's OK once the database the client named is known to exist, or the server's
        ERROR 1049 (1044) in its place, as a MySQL server refuses such a login.

        A database is known once a backend of this user opened it; the first login naming it
        borrows one (kept in the pool for its first command).  Any other failure to borrow leaves the
        answer to the client's first command, as when no database is named."""
        ok, self._held_ok = self._held_ok, b""
        database = authenticated.database
        seen = self.shared.databases_seen
        if database is not None and (authenticated.user, database) not in seen:
            try:
                self.backend = await self._take_backend()
            except BackendConnectFailed as e:
                code = getattr(e, "error_code", None)
                if code in DATABASE_REFUSALS:
                    await self._say_error(code, e.sqlstate, e.server_message, authenticated.ok_sequence)
                    raise _SessionOver() from None
            except ProxyError:
                pass
            else:
                seen.add((authenticated.user, database))
                self._release(ReleaseState.CLEAN)
        self.writer.write(ok)

    async def _borrow(self) -> bool:
        """Borrow a backend for this session's key; on failure the client gets an ERR (at sequence 1)."""
        if self._set_aside is not None and await self._take_back_after_reset():
            return True
        try:
            backend = await self._take_backend()
        except BorrowTimeout as e:
            log.info("[proxyEndpoint=%s] [clientConnection=%s] %s %s", self.endpoint, self.client_id,
                     BORROW_TIMEOUT_MESSAGE, e.detail)
            if self.s.failpoint == "borrow_timeout_as_too_many_connections":  # unsafe on purpose
                await self._say_error(ER_CON_COUNT_ERROR, "08004", "Too many connections", 1)
                return False
            await self._say_error(BORROW_TIMEOUT_CODE, "HY000", BORROW_TIMEOUT_MESSAGE, 1)
            return False
        except BackendConnectFailed as e:
            await self._say_error(getattr(e, "error_code", ER_UNKNOWN_ERROR), getattr(e, "sqlstate", "HY000"),
                                  getattr(e, "server_message", str(e)), 1)
            return False
        except ProxyError as e:  # pool closed: the proxy is shutting down
            await self._say_error(SHUTDOWN_CODE, "08S01", f"Server shutdown in progress: {e}", 1)
            raise _SessionOver() from None
        self.backend = backend
        return True

    def _set_aside_for_reset(self) -> None:
        """Failpoint ``reset_pinned_backends``: take the pinned session's backend off the relay, so that
        the next command resets it (COM_RESET_CONNECTION) before running on it: the session keeps its
        backend connection, and loses the session state on it."""
        backend, self.backend = self.backend, None
        if self._relay is not None:
            self._relay.release_backend(backend)
        self._set_aside = backend

    async def _take_back_after_reset(self) -> bool:
        """The set-aside backend, reset and held again (False: the reset failed and it was dropped)."""
        backend, self._set_aside = self._set_aside, None
        if not await self.s.reset_in_place(backend):
            return False
        self.backend = backend
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
        return True

    def _release(self, state: ReleaseState) -> None:
        backend, self.backend = self.backend, None
        self._given_back = backend
        if self._relay is not None:
            self._relay.release_backend(backend)  # its own protocol back before anyone else may borrow it
        if state is ReleaseState.BROKEN:
            with contextlib.suppress(Exception):
                backend.mark_broken()
        self.tracker.backend_released()
        self.s.pool.release(backend, state)

    async def _backend_lost(self, why: str, sequence: int) -> None:
        """The held backend died under the client: say so in an ERR, report it, end the session.

        The client's transaction or session state is gone with the backend, so carrying on silently
        on another one would be wrong; RDS Proxy closes such clients too.
        """
        backend = self.backend
        log.warning("[proxyEndpoint=%s] [clientConnection=%s] [dbConnection=%s] %s", self.endpoint,
                    self.client_id, getattr(backend, "backend_id", "?"), why)
        if self.s.failpoint == "resend_after_backend_loss" and backend is not None and self._resend is not None:
            await self._send_again(backend, why, sequence)  # unsafe on purpose: reference_proxy.failpoints
        acknowledge = backend is not None and self._commit_in_flight  # failpoint lost_commit_acknowledged
        reason = getattr(backend, "abort_reason", None)  # set when the proxy cut it (failover)
        message = reason
        if backend is not None:
            if message is None:
                message = f"{LOST_BACKEND_MESSAGE.format(instance=backend.key.instance_id)} ({why})"
            self._mid_reply = False
            self._release(ReleaseState.BROKEN)
            if self.s.backend_lost is not None and reason is None:
                with contextlib.suppress(Exception):
                    self.s.backend_lost(backend.key.instance_id, why)
        if self.s.failpoint == "lost_write_reported_retryable":  # unsafe on purpose: reference_proxy.failpoints
            await self._say_error(DEADLOCK_CODE, "40001", DEADLOCK_MESSAGE, sequence)
            raise _SessionOver()
        if acknowledge:  # unsafe on purpose: failpoint lost_commit_acknowledged tells the client it committed
            with contextlib.suppress(Exception):
                self.writer.write(encode_packet(OkPacket().encode(self.capabilities), sequence)[0])
                async with asyncio.timeout(2):
                    await self.writer.drain()
            raise _SessionOver()
        await self._say_error(LOST_BACKEND_CODE, "HY000", message or "The database connection was lost.", sequence)
        raise _SessionOver()

    async def _send_again(self, lost: Any, why: str, sequence: int) -> None:
        """The ``resend_after_backend_loss`` failpoint: send the command in flight again on another
        backend (routed afresh, and again a little later while the instance it reaches refuses it as
        read-only: the new writer after a failover) and relay its whole reply, its packets numbered
        on from where the lost reply stopped, as if nothing had happened; whatever the lost backend
        had already done stays done.  Raises :class:`_Resent` when it worked."""
        payload, self._resend = self._resend, None
        self._mid_reply = False
        self._release(ReleaseState.BROKEN)
        if self.s.backend_lost is not None:
            with contextlib.suppress(Exception):
                self.s.backend_lost(lost.key.instance_id, why)
        command = payload[0]
        for attempt in range(RESEND_ATTEMPTS):
            if not await self._borrow():
                raise _SessionOver()
            backend = self.backend
            backend.writer.write(encode_packet(payload, 0)[0])
            reply = ReplyRelay(command, backend.capabilities, self.shared.max_payload)
            self._mid_reply = True
            out = bytearray()
            while not reply.done:
                data = await backend.reader.read(READ_SIZE)
                if not data:
                    await self._say_error(LOST_BACKEND_CODE, "HY000", "The database connection was lost.", sequence)
                    raise _SessionOver()
                out += reply.feed(data)
            refused = reply.error is not None and reply.error.error_code in READ_ONLY_REFUSALS
            if refused and attempt + 1 < RESEND_ATTEMPTS:
                self._mid_reply = False
                self._release(ReleaseState.BROKEN)
                await asyncio.sleep(RESEND_PAUSE_S)
                continue
            at, shift = 0, sequence - 1
            while at < len(out):  # whole packets: number them on from the lost reply
                out[at + 3] = (out[at + 3] + shift) & 0xFF
                at += 4 + int.from_bytes(out[at:at + 3], "little")
            self.writer.write(bytes(out))
            now = self.s.clock.monotonic()
            self._command_done(FastCommand(backend, command, reply, None, now, now))
            raise _Resent()

    def _pinned(self, pin: Pin) -> None:
        self.s.session_pinned(self.endpoint, self.client_id, self.backend, pin.reason, pin.sql)

    # -------------------------------------------------------------------------------- helpers

    def _say_ok(self, sequence: int) -> None:
        ok = OkPacket(status_flags=self.tracker.status_flags).encode(self.capabilities)
        self.writer.write(encode_packet(ok, sequence)[0])

    async def _say_error(self, code: int, sqlstate: str, message: str, sequence: int, *,
                         flush: bool = True) -> None:
        """Send an ERR at ``sequence``, best effort; with ``flush`` wait (briefly) until it is out."""
        with contextlib.suppress(Exception):
            self.writer.write(encode_packet(ErrPacket(code, message, sqlstate).encode(self.capabilities),
                                            sequence)[0])
            if flush:
                async with asyncio.timeout(2):
                    await self.writer.drain()


def _command_commits(payload: bytes) -> bool:
    """Whether a COM_QUERY has a statement that commits: the commands the failpoint
    ``lost_commit_acknowledged`` answers as committed when their backend is lost."""
    if not payload or payload[0] != Command.QUERY:
        return False
    text = payload[1:].decode("utf-8", "replace")
    return any(st[0].kind is TokenKind.WORD and st[0].value == "commit" for st in split_statements(tokenize(text)))
