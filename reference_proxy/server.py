"""The reference proxy's asyncio server: configuration in, listening endpoints out.

Wiring: ``ProxyConfig`` -> the configured engine (:func:`~reference_proxy.engines.engine_for`) ->
:class:`Pool` (with the engine's backend factory) -> :class:`Router` -> one engine client session
per accepted client, all sharing one :class:`SessionServices`; metrics and the admin listener
(``/metrics``, ``/status``) on the side.  Every endpoint listens on its own port of 127.0.0.1 (or
the configured loopback host).

Shutdown (SIGTERM) drains: listeners stop accepting, idle clients are told the proxy is shutting
down, clients inside a transaction finish it (up to the grace period), then the pool closes.
Reload (SIGHUP) swaps the pool settings (caps, borrow timeout, InitQuery for new connections,
idle client timeout) without dropping anyone.

Failover, as RDS Proxy handles it: the :class:`TopologyMonitor` keeps the router's roles true, and
:class:`~reference_proxy.failover.FailoverRouting` routes every borrow afresh, waits out a missing
writer, moves sessions off lost readers and cuts what a demoted writer had lent (see
:mod:`reference_proxy.failover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from typing import Any

from reference_proxy.admin import AdminServer
from reference_proxy.config import EndpointRole, ProxyConfig
from reference_proxy.contracts import (
    BackendCredentials,
    ClientCredential,
    Clock,
    InstanceAddress,
    ProxyError,
    Role,
    SystemClock,
)
from reference_proxy.engines import engine_for
from reference_proxy.failover import FailoverRouting
from reference_proxy.leaking import WARNING as LEAKING_WARNING
from reference_proxy.leaking import LeakingPool, never_pins
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.pool import Pool
from reference_proxy.routing import Router
from reference_proxy.session_services import ClientSession, SessionServices
from reference_proxy.tls import server_context
from reference_proxy.topology import monitor_for_config

__all__ = ["DEFAULT_GRACE_SECONDS", "ProxyServer", "ServerError"]

log = logging.getLogger("reference_proxy.server")

DEFAULT_GRACE_SECONDS = 30.0
REAP_INTERVAL = 30.0
LISTEN_BACKLOG = 4096
"""Pending connections the kernel may queue per endpoint (asyncio's default is 100): a storm of
thousands of clients connecting at once must queue, not be refused.  The kernel caps it at
``net.core.somaxconn``."""


class ServerError(ProxyError):
    """The server cannot start with this configuration (a port taken, a host it cannot listen on...)."""


class ProxyServer:
    """Runs every endpoint of one configuration. ``await start()``, then ``await stop()``.

    ``ports`` maps endpoint names to the ports actually bound (useful with port 0);
    ``admin_port`` is the admin listener's.
    """

    def __init__(self, config: ProxyConfig, *, clock: Clock | None = None, metrics: ProxyMetrics | None = None,
                 token_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config
        self.engine = engine_for(config)
        self.clock = clock or SystemClock()
        self.metrics = metrics or ProxyMetrics()
        self.router = Router([(i.address, i.role or Role.UNKNOWN) for i in config.instances],
                             reader_endpoints={e.name: e.readers for e in config.endpoints
                                               if e.role is EndpointRole.READ_ONLY})
        self._factory = self.engine.backends(self._backend_credentials,
                                             init_query=lambda: self.pool.settings.init_query,
                                             on_max_connections=self._learn_max_connections)
        leaking = config.testing.leak_session_state  # unsafe on purpose: see reference_proxy.leaking
        self.pool = (LeakingPool if leaking else Pool)(self._factory, config.pool, self.clock, self.metrics)
        self._roles = {e.name: e.role for e in config.endpoints}
        self.monitor = monitor_for_config(config, self.engine.probe, self.router, self.metrics, self.clock)
        self.failover = FailoverRouting(self.router, self.pool, self.monitor, self._roles)
        self.monitor.add_listener(self.failover.on_topology)
        tls_context = server_context(config.tls.cert_file, config.tls.key_file)
        self.services = SessionServices(
            pool=self.pool, choose_instance=self._choose_instance, session_ended=self.router.session_ended,
            credentials=self._client_credential, classify=never_pins if leaking else self.engine.classify,
            digest=self.engine.digest,
            metrics=self.metrics, clock=self.clock, tls_context=tls_context, require_tls=config.tls.require_tls,
            token_bytes=token_bytes, acquire=self.failover.acquire, acquire_now=self.failover.acquire_now,
            backend_lost=self.failover.backend_lost, wait_for_instance=self.failover.wait_for_instance,
            handshake_timeout=config.proxy.client_handshake_timeout)
        self._new_session = self.engine.sessions(self.services)
        self._listeners: dict[str, asyncio.Server] = {}
        self._sessions: dict[ClientSession, asyncio.Task] = {}
        self._client_ids = itertools.count(1)
        self._admin: AdminServer | None = None
        self._reaper: asyncio.Task | None = None
        self.ports: dict[str, int] = {}
        self.admin_port: int | None = None

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.config.testing.leak_session_state:
            log.warning(LEAKING_WARNING)
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
        session = self._new_session(reader, writer, endpoint, next(self._client_ids))
        self._sessions[session] = asyncio.current_task()
        try:
            await session.run()
        finally:
            self._sessions.pop(session, None)

    def _choose_instance(self, endpoint: str) -> InstanceAddress:
        if self._roles[endpoint] is EndpointRole.READ_ONLY:
            return self.router.choose_reader(endpoint)
        return self.router.choose_writer()

    # ---------------------------------------------------------------------------- credentials

    def _client_credential(self, user: str) -> ClientCredential | None:
        cfg = self.config.user(user)
        if cfg is None:
            return None
        return ClientCredential(cfg.name, cfg.password, self.config.auth_method(cfg).value)

    def _backend_credentials(self, user: str) -> BackendCredentials | None:
        cfg = self.config.user(user)
        if cfg is None:
            return None
        return BackendCredentials(cfg.database_user, cfg.database_password)

    def _learn_max_connections(self, instance_id: str, max_connections: int) -> None:
        """First connection to an instance: its max_connections sets its pool cap and routing weight."""
        self.pool.set_instance_max_connections(instance_id, max_connections)
        with contextlib.suppress(ProxyError):
            self.router.set_weight(instance_id, max_connections)

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
            "pinned_sessions": sum(1 for s in self._sessions if s.pinned),
            "pool": self.pool.snapshot(),
            "routing": self.router.snapshot(),
            "topology": self.monitor.snapshot(),
        }
