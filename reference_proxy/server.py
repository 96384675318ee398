"""The reference proxy's asyncio server: configuration in, listening endpoints out.

Wiring: ``ProxyConfig`` -> :class:`Pool` (with the PostgreSQL backend factory) -> :class:`Router`
-> one :class:`PostgresClientSession` per accepted client, all sharing one :class:`SessionServices`;
metrics and the admin listener (``/metrics``, ``/status``) on the side.  Every endpoint listens on
its own port of 127.0.0.1 (or the configured loopback host).

Shutdown (SIGTERM) drains: listeners stop accepting, idle clients are told the proxy is shutting
down, clients inside a transaction finish it (up to the grace period), then the pool closes.
Reload (SIGHUP) swaps the pool settings (caps, borrow timeout, InitQuery for new connections,
idle client timeout) without dropping anyone.

Failover, as RDS Proxy handles it: the :class:`TopologyMonitor` keeps the router's roles true, and
every borrow is routed afresh (:meth:`ProxyServer._acquire`), so an idle multiplexed client simply
runs its next transaction on whichever instance is the writer then.  While there is no writer,
new connections and new transactions wait for one, up to ConnectionBorrowTimeout.  When the
monitor demotes a writer, its idle backend connections close and the lent ones are cut: the
clients in a transaction or pinned there get a FATAL naming the failover and are disconnected
(their session state cannot move).  On a read-only endpoint a session whose reader is lost moves,
between transactions, to a reader the monitor has seen at or past the old reader's last known
replay position (no stale reads); pinned ones are cut; the writer is never used for reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from reference_proxy.admin import AdminServer
from reference_proxy.config import EndpointRole, Engine, ProxyConfig
from reference_proxy.contracts import (
    BackendConnectFailed,
    BorrowTimeout,
    Clock,
    InstanceAddress,
    NoReader,
    NoWriter,
    PoolKey,
    ProxyError,
    ReleaseState,
    Role,
    SystemClock,
)
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.pinning.postgres import classify, digest
from reference_proxy.pinning.screen import screened
from reference_proxy.pool import Pool
from reference_proxy.routing import Router
from reference_proxy.sessions.postgres import PostgresClientSession, SessionServices
from reference_proxy.sessions.postgres_auth import MD5, SCRAM, ClientCredential
from reference_proxy.sessions.postgres_backend import (
    BackendCredentials,
    PostgresBackend,
    PostgresBackendFactory,
)
from reference_proxy.sessions.tls import server_context
from reference_proxy.topology import RoundOutcome, monitor_for_config

__all__ = ["DEFAULT_GRACE_SECONDS", "ProxyServer", "ServerError"]

log = logging.getLogger("reference_proxy.server")

DEFAULT_GRACE_SECONDS = 30.0
REAP_INTERVAL = 30.0
LISTEN_BACKLOG = 4096
"""Pending connections the kernel may queue per endpoint (asyncio's default is 100): a storm of
thousands of clients connecting at once must queue, not be refused.  The kernel caps it at
``net.core.somaxconn``."""
DEMOTED_WRITER_MESSAGE = ("terminating connection because of a failover: instance {instance} is no longer "
                          "the writer; reconnect to reach the new writer")
LOST_READER_MESSAGE = ("terminating connection because of a failover: reader instance {instance} is no longer "
                       "available to this pinned session; reconnect to reach another reader")


class ServerError(ProxyError):
    """The server cannot start with this configuration (engine not served, port taken...)."""


class ProxyServer:
    """Runs every endpoint of one configuration. ``await start()``, then ``await stop()``.

    ``ports`` maps endpoint names to the ports actually bound (useful with port 0);
    ``admin_port`` is the admin listener's.
    """

    def __init__(self, config: ProxyConfig, *, clock: Clock | None = None, metrics: ProxyMetrics | None = None,
                 token_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if config.engine is not Engine.POSTGRES:
            raise ServerError(f"engine {config.engine.value!r} is not served by this proxy yet; use 'postgres'")
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = metrics or ProxyMetrics()
        self.router = Router([(i.address, i.role or Role.UNKNOWN) for i in config.instances],
                             reader_endpoints={e.name: e.readers for e in config.endpoints
                                               if e.role is EndpointRole.READ_ONLY})
        self._factory = PostgresBackendFactory(self._backend_credentials, init_query=lambda: self.pool.settings.init_query,
                                               on_first_connect=self._learn_instance)
        self.pool = Pool(self._factory, config.pool, self.clock, self.metrics)
        tls_context = server_context(config.tls.cert_file, config.tls.key_file)
        self.services = SessionServices(
            pool=self.pool, choose_instance=self._choose_instance, session_ended=self.router.session_ended,
            credentials=self._client_credential, classify=screened(classify), digest=digest, metrics=self.metrics,
            clock=self.clock, tls_context=tls_context, require_tls=config.tls.require_tls, token_bytes=token_bytes,
            acquire=self._acquire, acquire_now=self._acquire_now, backend_lost=self._backend_lost,
            wait_for_instance=self._wait_for_instance, handshake_timeout=config.proxy.client_handshake_timeout)
        self.monitor = monitor_for_config(config, self.router, self.metrics, self.clock)
        self.monitor.add_listener(self._on_topology)
        self._reader_positions: dict[str, int] = {}  # last replay position the monitor saw per reader
        self._roles = {e.name: e.role for e in config.endpoints}
        self._listeners: dict[str, asyncio.Server] = {}
        self._sessions: dict[PostgresClientSession, asyncio.Task] = {}
        self._client_ids = itertools.count(1)
        self._admin: AdminServer | None = None
        self._reaper: asyncio.Task | None = None
        self.ports: dict[str, int] = {}
        self.admin_port: int | None = None

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.monitor.start()  # roles are verified before the first client is served
        try:
            for endpoint in self.config.endpoints:
                server = await asyncio.start_server(
                    lambda r, w, name=endpoint.name: self._serve(name, r, w), endpoint.host, endpoint.port,
                    backlog=LISTEN_BACKLOG)
                self._listeners[endpoint.name] = server
                self.ports[endpoint.name] = server.sockets[0].getsockname()[1]
            self._admin = AdminServer(self.metrics, self.status, self.config.admin.host, self.config.admin.port)
            await self._admin.start()
            self.admin_port = self._admin.port
        except OSError as e:
            await self.stop(grace=0)
            raise ServerError(f"cannot listen: {e}") from None
        self._reaper = asyncio.ensure_future(self._reap_periodically())
        log.info("reference proxy listening: %s; admin on port %s",
                 ", ".join(f"{n}={self.config.endpoint(n).host}:{p}" for n, p in self.ports.items()),
                 self.admin_port)

    async def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Drain: stop accepting, let transactions finish for up to ``grace`` seconds, close all."""
        for server in self._listeners.values():
            server.close()
        for session in list(self._sessions):
            session.request_drain()
        tasks = list(self._sessions.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        await self.pool.drain(timeout=5.0)
        await self.monitor.stop()
        for server in self._listeners.values():
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._listeners.clear()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    def reload(self, config: ProxyConfig) -> None:
        """Apply a new configuration's pool settings; listeners, users and TLS stay as they are."""
        self.pool.settings = config.pool
        for instance_id, info in self.pool.snapshot()["instances"].items():
            with contextlib.suppress(ProxyError):
                self.pool.set_instance_max_connections(instance_id, info["max_connections"])
        log.info("reloaded pool settings: %s", config.pool)

    # -------------------------------------------------------------------------------- serving

    async def _serve(self, endpoint: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = PostgresClientSession(reader, writer, endpoint, self.services, next(self._client_ids))
        self._sessions[session] = asyncio.current_task()
        try:
            await session.run()
        finally:
            self._sessions.pop(session, None)

    def _choose_instance(self, endpoint: str):
        if self._roles[endpoint] is EndpointRole.READ_ONLY:
            return self.router.choose_reader(endpoint)
        return self.router.choose_writer()

    # ------------------------------------------------------------------------------- failover

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.pool.settings.connection_borrow_timeout

    @staticmethod
    def _remaining(deadline: float) -> float:
        return max(0.0, deadline - asyncio.get_running_loop().time())

    async def _wait_for_instance(self, endpoint: str) -> InstanceAddress:
        """The instance for a new session; during a failover wait for one up to the borrow timeout."""
        deadline = self._deadline()
        if self._roles[endpoint] is EndpointRole.READ_ONLY:
            return await self._reader_for(endpoint, None, deadline)
        while True:
            try:
                return self.router.choose_writer()
            except NoWriter:
                await self._writer_or_timeout(deadline)

    async def _writer_or_timeout(self, deadline: float) -> None:
        remaining = self._remaining(deadline)
        if remaining <= 0 or await self.monitor.wait_for_writer(remaining) is None:
            raise BorrowTimeout("no writer instance became available in time (failover)")

    async def _route(self, endpoint: str, current: InstanceAddress, deadline: float) -> InstanceAddress:
        """Where a session's next transaction goes; moves the session's count when that changes."""
        if self._roles[endpoint] is EndpointRole.READ_ONLY:
            return await self._reader_for(endpoint, current, deadline)
        while True:
            try:
                writer = self.router.writer()
            except NoWriter:
                await self._writer_or_timeout(deadline)
                continue
            self.router.move_session(current.id, writer.id)
            return writer

    async def _reader_for(self, endpoint: str, current: InstanceAddress | None,
                          deadline: float) -> InstanceAddress:
        """A reader for a new session (``current`` None) or the next transaction of one.

        A session stays on its reader while it is one.  Moving off a lost reader, only readers the
        monitor has seen replayed at least as far as the lost one are eligible; readers that exist
        but are not available are waited for, a cluster without readers fails at once.
        """
        if current is not None and self.router.role(current.id) is Role.READER:
            self._note_position(current.id)
            return current
        required = self._reader_positions.get(current.id) if current is not None else None

        def eligible() -> list[str]:
            views = self.monitor.core.views
            return [i for i in self.router.readers_of(endpoint)
                    if required is None or (views[i].wal_position is not None
                                            and views[i].wal_position >= required)]
        while True:
            if not self.router.could_serve_reads(endpoint):
                raise NoReader(f"endpoint {endpoint!r} has no reader instance in the cluster")
            candidates = eligible()
            if candidates:
                chosen = self.router.choose_reader(endpoint, candidates)
                if current is not None:
                    self.router.session_ended(current.id)
                self._note_position(chosen.id)
                return chosen
            remaining = self._remaining(deadline)
            if remaining <= 0:
                raise BorrowTimeout(f"no reader of endpoint {endpoint!r} was available in time")
            await self.monitor.wait_for(lambda core: bool(eligible()) or
                                        not self.router.could_serve_reads(endpoint), remaining)

    def _note_position(self, instance_id: str) -> None:
        position = self.monitor.core.views[instance_id].wal_position
        if position is not None and position > self._reader_positions.get(instance_id, -1):
            self._reader_positions[instance_id] = position

    def _acquire_now(self, endpoint: str, key: PoolKey, current: InstanceAddress) -> Any:
        """The backend for a session's next transaction when nothing needs waiting for, else None.

        Steady state: the session's instance still has the role its endpoint needs and an idle
        connection of its key is pooled with nobody waiting in line.  Anything else (a failover,
        a move between readers, an empty pool, a queue) is :meth:`_acquire`'s business.
        """
        if key.instance_id != current.id or self.router.role(current.id) is not self._expected_role(endpoint):
            return None
        backend = self.pool.try_borrow_now(key)
        if backend is not None and self._roles[endpoint] is EndpointRole.READ_ONLY:
            self._note_position(current.id)
        return backend

    async def _acquire(self, endpoint: str, key: PoolKey, current: InstanceAddress) -> tuple[InstanceAddress, Any]:
        """Route, then borrow; a connection failure that turns out to be a failover is waited out.

        One ConnectionBorrowTimeout covers the whole wait: for a writer, a reader and the pool.
        """
        deadline = self._deadline()
        original = current
        try:
            while True:
                try:
                    target = await self._route(endpoint, current, deadline)
                except NoReader as e:
                    raise BackendConnectFailed(str(e)) from None
                current = target
                try:
                    if key.instance_id != target.id:
                        key = replace(key, instance_id=target.id)
                    backend = await self.pool.borrow(key, target, timeout=self._remaining(deadline))
                except BackendConnectFailed as e:
                    if not await self._role_changed(target.id, endpoint, str(e), deadline):
                        raise
                    continue
                if self._expected_role(endpoint) is self.router.role(target.id):
                    return target, backend
                self.pool.release(backend, ReleaseState.BROKEN)  # demoted while we were connecting
        except BaseException:
            # The session keeps its old instance when nothing was lent: keep the router's count there.
            if current.id != original.id:
                with contextlib.suppress(ProxyError):
                    self.router.move_session(current.id, original.id)
            raise

    def _expected_role(self, endpoint: str) -> Role:
        return Role.READER if self._roles[endpoint] is EndpointRole.READ_ONLY else Role.WRITER

    async def _role_changed(self, instance_id: str, endpoint: str, why: str, deadline: float) -> bool:
        """After a failed connect: poll now; True when the instance no longer has the role we needed.

        The round is not cancelled when the borrow deadline comes first (cutting a round short
        would cost the monitor its connections); it just finishes without us.
        """
        self.monitor.report_backend_error(instance_id, why)
        round_ = asyncio.ensure_future(self.monitor.poll_now())
        round_.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception not retrieved"
        await asyncio.wait({round_}, timeout=self._remaining(deadline))
        return self.router.role(instance_id) is not self._expected_role(endpoint)

    def _backend_lost(self, instance_id: str, why: str) -> None:
        self.monitor.report_backend_error(instance_id, why)

    def _on_topology(self, outcome: RoundOutcome) -> None:
        """Nothing opened to a demoted writer or a lost reader is lent again; pinned/in-flight users are cut."""
        for instance_id in outcome.demoted:
            closed = self.pool.close_instance(
                instance_id, cut_lent=DEMOTED_WRITER_MESSAGE.format(instance=instance_id))
            log.warning("failover: %s is no longer the writer; closed %d idle backend connections and cut the lent "
                        "ones", instance_id, closed)
        for instance_id in outcome.readers_lost:
            if instance_id in outcome.demoted:
                continue
            closed = self.pool.close_instance(
                instance_id, cut_lent=LOST_READER_MESSAGE.format(instance=instance_id), only_pinned=True)
            log.warning("reader %s is no longer available; closed %d idle backend connections", instance_id, closed)

    def _client_credential(self, user: str) -> ClientCredential | None:
        cfg = self.config.user(user)
        if cfg is None:
            return None
        method = self.config.auth_method(cfg).value
        return ClientCredential(cfg.name, cfg.password, MD5 if method == MD5 else SCRAM)

    def _backend_credentials(self, user: str) -> BackendCredentials | None:
        cfg = self.config.user(user)
        if cfg is None:
            return None
        return BackendCredentials(cfg.database_user, cfg.database_password)

    async def _learn_instance(self, instance_id: str, backend: PostgresBackend) -> None:
        """First connection to an instance: read max_connections, which sets its pool cap."""
        value = await backend.query_value("SHOW max_connections")
        if value and value.isdigit():
            self.pool.set_instance_max_connections(instance_id, int(value))
            with contextlib.suppress(ProxyError):
                self.router.set_weight(instance_id, int(value))

    async def _reap_periodically(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            with contextlib.suppress(ProxyError):
                self.pool.reap()

    def status(self) -> dict[str, Any]:
        """The admin ``/status`` document."""
        return {
            "engine": self.config.engine.value,
            "endpoints": {n: {"port": p, "role": self._roles[n].value} for n, p in self.ports.items()},
            "client_sessions": len(self._sessions),
            "pinned_sessions": sum(1 for s in self._sessions if s.tracker.pinned),
            "pool": self.pool.snapshot(),
            "routing": self.router.snapshot(),
            "topology": self.monitor.snapshot(),
        }
