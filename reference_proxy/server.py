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

Credentials: one :class:`~reference_proxy.credentials.source.CredentialSource` answers every login,
the static users of the file first, then the Secrets Manager secrets (read once at start, then again
as their cache entries fall due, by a periodic refresh and by logins); an IAM authenticator exists
only when ``[auth.iam]`` is configured.  botocore and boto3 are imported only when secrets or IAM
are configured: they are an optional extra.  A refresh never drops a connection.

Failover, as RDS Proxy handles it: the :class:`TopologyMonitor` keeps the router's roles true, and
:class:`~reference_proxy.failover.FailoverRouting` routes every borrow afresh, waits out a missing
writer, moves sessions off lost readers and cuts what a demoted writer had lent (see
:mod:`reference_proxy.failover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from reference_proxy.admin import AdminServer
from reference_proxy.config import DEFAULT_AUTH_METHOD, EndpointRole, ProxyConfig
from reference_proxy.contracts import (
    BackendCredentials,
    Clock,
    ConfigError,
    InstanceAddress,
    ProxyError,
    Role,
    SystemClock,
)
from reference_proxy.credentials.combined import CombinedCredentialSource
from reference_proxy.credentials.source import CredentialSource
from reference_proxy.credentials.static import StaticCredentialSource
from reference_proxy.engines import engine_for
from reference_proxy.failover import FailoverRouting
from reference_proxy.failpoints import warning as failpoint_warning
from reference_proxy.leaking import LeakingPool, never_pins
from reference_proxy.listener import AcceptFailures, Listener
from reference_proxy.login_limits import LoginGate
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.pool import Pool
from reference_proxy.routing import Router
from reference_proxy.session_services import ClientSession, SessionServices
from reference_proxy.tls import server_context
from reference_proxy.topology import RoundOutcome, monitor_for_config

__all__ = ["DEFAULT_GRACE_SECONDS", "ProxyServer", "ServerError"]

log = logging.getLogger("reference_proxy.server")

DEFAULT_GRACE_SECONDS = 30.0
REAP_INTERVAL = 30.0
CREDENTIAL_REFRESH_INTERVAL = 1.0
"""Seconds between two looks for secrets whose cache entry fell due (each is read only when due)."""
CAPPED_LOGINS = 50
"""Clients in login at once under the failpoint ``logins_capped``: what a server sized for its usual
traffic would allow, far below a connection storm."""
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
                                               if e.role is EndpointRole.READ_ONLY},
                             ignore_weights=config.testing.on("readers_round_robin"))
        self.secrets: Any = None  # the SecretsManagerSource, when secrets are configured
        self.credential_source = self._credential_source()
        self.iam = self._iam_authenticator()
        self._factory = self.engine.backends(self._backend_credentials,
                                             init_query=lambda: self.pool.settings.init_query,
                                             on_max_connections=self._learn_max_connections,
                                             credential_source=self.credential_source)
        leaking = config.testing.on("leak_session_state")  # unsafe on purpose: see reference_proxy.leaking
        unreset = leaking or config.testing.on("skip_reset_on_release")  # the pool half of it alone
        self.pool = (LeakingPool if unreset else Pool)(self._factory, config.pool, self.clock, self.metrics,
                                                         failpoint=config.testing.failpoint)
        self._roles = {e.name: e.role for e in config.endpoints}
        self.monitor = monitor_for_config(config, self.engine.probe, self.router, self.metrics, self.clock,
                                          login=self._monitor_login)
        self.failover = FailoverRouting(self.router, self.pool, self.monitor, self._roles,
                                        failpoint=config.testing.failpoint)  # unsafe on purpose: failpoints
        self.monitor.add_listener(self.failover.on_topology)
        if config.testing.on("drop_clients_on_failover"):  # unsafe on purpose: reference_proxy.failpoints
            self.monitor.add_listener(self._drop_writer_clients)
        tls_context = server_context(config.tls.cert_file, config.tls.key_file)
        self.services = SessionServices(
            pool=self.pool, choose_instance=self._choose_instance, session_ended=self.router.session_ended,
            credential_source=self.credential_source, iam=self.iam, token_endpoint=self._token_endpoint,
            classify=never_pins if leaking else self._classifier(config.testing.failpoint), digest=self.engine.digest,
            log_sql=config.logging.debug_logging,
            metrics=self.metrics, clock=self.clock, tls_context=tls_context, require_tls=config.tls.require_tls,
            plaintext_endpoints=frozenset(  # unsafe on purpose: reference_proxy.failpoints
                e.name for e in config.endpoints
                if config.testing.on("tls_unenforced_on_reader") and e.role is EndpointRole.READ_ONLY),
            token_bytes=token_bytes, acquire=self.failover.acquire, acquire_now=self.failover.acquire_now,
            backend_lost=self.failover.backend_lost, write_refused=self.failover.write_refused,
            wait_for_instance=self.failover.wait_for_instance,
            handshake_timeout=config.proxy.client_handshake_timeout,
            failpoint=config.testing.failpoint,  # unsafe on purpose: reference_proxy.failpoints
            login_timeout=config.proxy.client_login_timeout,
            login_gate=LoginGate(self._login_limit(config)))
        self._new_session = self.engine.sessions(self.services)
        self._listeners: dict[str, Listener] = {}
        self.accept_failures: AcceptFailures | None = None  # opened at start: it holds a spare descriptor
        self._sessions: dict[ClientSession, asyncio.Task] = {}
        self._opening: set[asyncio.Task] = set()
        self._client_ids = itertools.count(1)
        self._admin: AdminServer | None = None
        self._reaper: asyncio.Task | None = None
        self._refresher: asyncio.Task | None = None
        self.ports: dict[str, int] = {}
        self.admin_port: int | None = None

    @staticmethod
    def _login_limit(config: ProxyConfig) -> int:
        """How many clients may be setting up at once: the setting, or under the failpoint
        ``logins_capped`` a small fixed number (unsafe on purpose) that turns a storm away."""
        if config.testing.on("logins_capped"):
            return min(CAPPED_LOGINS, config.proxy.max_unauthenticated_clients)
        return config.proxy.max_unauthenticated_clients

    def _classifier(self, failpoint: str | None) -> Callable[..., Any]:
        """The engine's pin classifier; with a failpoint on, told which (the classifiers' own failpoints
        are ``settings_do_not_pin`` and ``every_set_pins``), so that without one nothing is added per call."""
        if not failpoint:
            return self.engine.classify
        return functools.partial(self.engine.classify, failpoint=failpoint)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.config.testing.failpoint:
            log.warning(failpoint_warning(self.config.testing.failpoint))
        await self._load_secrets()  # before the monitor, which may log in with a secret's login
        await self.monitor.start()  # roles are verified before the first client is served
        self.accept_failures = AcceptFailures(self.metrics)
        try:
            for endpoint in self.config.endpoints:
                listener = Listener.bind(endpoint.host, endpoint.port, LISTEN_BACKLOG, endpoint=endpoint.name,
                                         on_client=lambda conn, name=endpoint.name: self._accepted(name, conn),
                                         refusal=self.engine.too_many_clients, failures=self.accept_failures)
                self._listeners[endpoint.name] = listener
                self.ports[endpoint.name] = listener.port
                listener.start()
            self._admin = AdminServer(self.metrics, self.status, self.config.admin.host, self.config.admin.port)
            await self._admin.start()
            self.admin_port = self._admin.port
        except OSError as e:
            await self.stop(grace=0)
            raise ServerError(f"cannot listen: {e}") from None
        self._reaper = asyncio.ensure_future(self._reap_periodically())
        if self.secrets is not None:
            self._refresher = asyncio.ensure_future(self._refresh_credentials_periodically())
        log.info("reference proxy listening: %s; admin on port %s",
                 ", ".join(f"{n}={self.config.endpoint(n).host}:{p}" for n, p in self.ports.items()),
                 self.admin_port)

    async def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Drain: stop accepting, let transactions finish for up to ``grace`` seconds, close all."""
        for listener in self._listeners.values():
            listener.close()
        for session in list(self._sessions):
            session.request_drain()
        tasks = list(self._sessions.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in (self._reaper, self._refresher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.pool.drain(timeout=5.0)
        await self.monitor.stop()
        self._listeners.clear()
        if self.accept_failures is not None:
            self.accept_failures.close()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    def reload(self, config: ProxyConfig) -> None:
        """Apply a new configuration's pool settings and login limits; listeners, users and TLS stay as
        they are."""
        self.pool.settings = config.pool
        self.services.log_sql = config.logging.debug_logging  # for sessions from now on
        self.services.handshake_timeout = config.proxy.client_handshake_timeout
        self.services.login_timeout = config.proxy.client_login_timeout
        if self.services.login_gate is not None:
            self.services.login_gate.limit = config.proxy.max_unauthenticated_clients
        for instance_id, info in self.pool.snapshot()["instances"].items():
            with contextlib.suppress(ProxyError):
                self.pool.set_instance_max_connections(instance_id, info["max_connections"])
        log.info("reloaded pool settings: %s; login limits: %s; debug logging %s", config.pool, config.proxy,
                 "on" if config.logging.debug_logging else "off")

    # -------------------------------------------------------------------------------- serving

    def _accepted(self, endpoint: str, conn: socket.socket) -> None:
        """A client was accepted on ``endpoint``: serve it in a task of its own."""
        task = asyncio.get_running_loop().create_task(self._open_streams(endpoint, conn))
        self._opening.add(task)  # the loop holds tasks weakly until they are registered as sessions
        task.add_done_callback(self._opening.discard)

    async def _open_streams(self, endpoint: str, conn: socket.socket) -> None:
        """Streams over an accepted socket, as :func:`asyncio.start_server` makes them (the callback
        makes the writer a server's, which TLS needs); the protocol runs :meth:`_serve` in a task."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 ** 16, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, lambda r, w: self._serve(endpoint, r, w), loop=loop)
        try:
            await loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError:  # the client left already
            conn.close()

    async def _serve(self, endpoint: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = self._new_session(reader, writer, endpoint, next(self._client_ids))
        self._sessions[session] = asyncio.current_task()
        try:
            await session.run()
        finally:
            self._sessions.pop(session, None)

    def _drop_writer_clients(self, outcome: RoundOutcome) -> None:
        """The ``drop_clients_on_failover`` failpoint: when the writer changes, every client of a
        read/write endpoint is closed once its transaction ends, idle ones at once, so that they
        reconnect to the new writer (RDS Proxy keeps them)."""
        if not outcome.demoted:
            return
        for session in list(self._sessions):
            if self._roles[session.endpoint] is not EndpointRole.READ_ONLY:
                session.request_drain()

    def _choose_instance(self, endpoint: str) -> InstanceAddress:
        if self._roles[endpoint] is EndpointRole.READ_ONLY:
            return self.router.choose_reader(endpoint)
        return self.router.choose_writer()

    # ---------------------------------------------------------------------------- credentials

    def _credential_source(self) -> CredentialSource:
        """The static users, then (when configured) the Secrets Manager secrets, as one source."""
        static = StaticCredentialSource.from_config(self.config)
        auth = self.config.auth
        if not auth.secrets:
            return static
        try:
            from botocore.exceptions import BotoCoreError

            from reference_proxy.credentials.secrets_manager import SecretsManagerSource, make_client
        except ImportError as e:
            raise ConfigError("auth.secrets", f"reading secrets needs boto3 (the 'aws' extra): {e}") from None
        try:
            client = make_client(auth.secrets_manager)
        except BotoCoreError as e:  # no region anywhere, an endpoint URL boto3 refuses...
            raise ConfigError("auth.secrets_manager", f"cannot make a Secrets Manager client: {e}") from None
        self.secrets = SecretsManagerSource(client, auth.secrets,
                                            default_method=DEFAULT_AUTH_METHOD[self.config.engine].value,
                                            clock=self.clock, settings=auth.secrets_manager,
                                            read_once=self.config.testing.on("secrets_read_once"))
        return CombinedCredentialSource([static, self.secrets])

    def _iam_authenticator(self) -> Any:
        """The IAM login checks, when ``[auth.iam]`` is configured; None otherwise."""
        settings = self.config.auth.iam
        if settings is None:
            return None
        try:
            from reference_proxy.credentials.iam_auth import IamAuthenticator
            from reference_proxy.credentials.iam_limit import IamAuthLimiter
            from reference_proxy.credentials.iam_token import IamTokenVerifier
        except ImportError as e:
            raise ConfigError("auth.iam", f"checking IAM tokens needs botocore (the 'aws' extra): {e}") from None

        verifier = IamTokenVerifier(settings.secret_keys(), region=settings.region,
                                    max_clock_skew=settings.max_clock_skew,
                                    check_expiry=not self.config.testing.on("iam_expiry_unchecked"))
        return IamAuthenticator(verifier, IamAuthLimiter(settings.max_concurrent_authentications))

    def _token_endpoint(self, endpoint: str) -> tuple[str, int]:
        """The (host, port) IAM tokens for ``endpoint`` must name: its advertised name, its bound port."""
        return self.config.endpoint(endpoint).token_host, self.ports[endpoint]

    def _backend_credentials(self, user: str) -> BackendCredentials | None:
        found = self.credential_source.cached(user)
        return None if found is None else found.backend

    def _monitor_login(self) -> tuple[str, str] | None:
        """The monitor's login when the configuration names none: the first secret's, as read now."""
        first = None if self.secrets is None else self.secrets.first_login()
        return None if first is None else (first.backend.user, first.backend.password or "")

    async def _load_secrets(self) -> None:
        """Read every secret once.  The source logs what is wrong with each secret it cannot use (never
        a value); this says once which ones the proxy starts without."""
        if self.secrets is None:
            return
        problems = await self.secrets.load_all()
        if problems:
            log.warning("starting without %d of %d secrets: %s", len(problems), len(self.config.auth.secrets),
                        ", ".join(problems))
        if not self.secrets.has_credentials:
            log.warning("no secret gave a usable login: users known only from secrets cannot log in")

    async def _refresh_credentials_periodically(self) -> None:
        drop_on_change = self.config.testing.on("rotation_drops_sessions")
        drop_previous_user = self.config.testing.on("rotation_drops_previous_user")
        held = self._secrets_in_use()
        while True:
            await asyncio.sleep(CREDENTIAL_REFRESH_INTERVAL)
            try:
                await self.credential_source.refresh_due()
            except Exception:  # the refresher must outlive one bad round
                log.exception("refreshing credentials failed")
            if drop_on_change or drop_previous_user:  # unsafe on purpose: reference_proxy.failpoints
                seen, held = held, self._secrets_in_use()
                if drop_on_change and seen != held:  # failpoint rotation_drops_sessions
                    for session in list(self._sessions):
                        session.request_drain()
                dropped = _users_no_longer_named(seen, held) if drop_previous_user else set()
                if dropped:  # failpoint rotation_drops_previous_user
                    for session in list(self._sessions):
                        if session.key is not None and session.key.user in dropped:
                            session.request_drain()

    def _secrets_in_use(self) -> dict[str, tuple[Any, Any]]:
        """Each secret's (version, user) in use (none without Secrets Manager)."""
        if self.secrets is None:
            return {}
        return {sid: (s["version_id"], s["user"]) for sid, s in self.secrets.snapshot().items()}

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
            "credentials": self._credentials_status(),
            "login": self._login_status(),
        }

    def _login_status(self) -> dict[str, Any]:
        """Clients setting up now and those turned away: by the login limit, or failing accepts."""
        gate, failures = self.services.login_gate, self.accept_failures
        status: dict[str, Any] = {}
        if gate is not None:
            status.update(in_progress=gate.in_login, max_unauthenticated_clients=gate.limit,
                          refused=gate.refused)
        if failures is not None:
            status["accept_failures"] = {"failing_now": failures.active, "episodes": failures.episodes,
                                         "refused_in_episode": failures.refused}
        return status

    def _credentials_status(self) -> dict[str, Any]:
        """Where logins come from and how the IAM checks fare; never a password or a key."""
        status: dict[str, Any] = {"static_users": len(self.config.auth.users)}
        if self.secrets is not None:
            status["secrets"] = self.secrets.snapshot()
            status["secret_reads"] = self.secrets.reads_started
        if self.iam is not None:
            limiter = self.iam.limiter
            status["iam"] = {"in_progress": limiter.in_progress, "refused": limiter.refused,
                             "max_concurrent": limiter.max_concurrent}
        return status


def _users_no_longer_named(before: dict[str, tuple[Any, Any]], after: dict[str, tuple[Any, Any]]) -> set[str]:
    """Users some secret named in ``before`` and none names in ``after`` (an alternating-users
    rotation moved their secret to the other user)."""
    named = {user for _, user in after.values()}
    return {user for _, user in before.values() if user is not None and user not in named}
