"""Database engines: everything the proxy does that depends on the wire protocol it speaks.

An engine is a folder, ``engines/<name>/``, whose package exports ``ENGINE``, a
:class:`ProxyEngine`: the few parts the engine-neutral server plugs together.  The pool, routing,
topology, metrics and the server never name an engine; they get these parts from
:func:`engine_for`.  Adding an engine is its folder plus one line in :data:`IMPLEMENTATIONS`.

An engine's package is imported only when a configuration asks for it, so the drivers one engine
needs (psycopg for PostgreSQL's probe...) are never loaded for another.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from reference_proxy.config import Engine, ProxyConfig
from reference_proxy.contracts import BackendCredentials, BackendFactory, ConfigError
from reference_proxy.credentials.source import CredentialSource
from reference_proxy.pinning import PinDecision
from reference_proxy.session_services import SessionFactory, SessionServices
from reference_proxy.topology import ProbeConstructor

__all__ = ["IMPLEMENTATIONS", "BackendFactoryBase", "BackendFactoryConstructor", "ProxyEngine", "StreamBackendBase",
           "TappableStreamProtocol", "engine_for", "open_tappable_connection"]

IMPLEMENTATIONS: dict[Engine, str] = {
    Engine.POSTGRES: "reference_proxy.engines.postgres",
    Engine.MYSQL: "reference_proxy.engines.mysql",
}
"""The package implementing each engine the proxy serves."""


class BackendFactoryConstructor(Protocol):
    """How an engine makes the pool's :data:`BackendFactory`.

    ``credentials(user)`` is the database login for a client user as held now (None: unknown user);
    ``credential_source``, when given, is where it comes from: a factory that can wait asks it instead
    (reading a secret that is due) and, when the database refuses the login, asks it once for a newer
    one.  ``init_query()`` is the InitQuery in force when a connection opens;
    ``on_max_connections(instance_id, value)`` hears the server's connection limit once per instance,
    on its first connection.
    """

    def __call__(self, credentials: Callable[[str], BackendCredentials | None], *,
                 init_query: Callable[[], str | None],
                 on_max_connections: Callable[[str, int], None],
                 credential_source: CredentialSource | None = None) -> BackendFactory: ...


class StreamTap(Protocol):
    """Who a :class:`TappableStreamProtocol` lends its incoming bytes to."""

    def data_received(self, data: bytes) -> None: ...

    def stream_ended(self) -> None:
        """The stream ended or was lost (the stream reader has been told already, or is next)."""
        ...


class TappableStreamProtocol(asyncio.StreamReaderProtocol):
    """A backend connection's stream protocol that can lend what arrives to a relay for a while.

    A relay that follows each reply from transport callbacks could install its own protocol on
    the backend's transport, but uvloop stops and restarts reading on every protocol switch (two
    system calls each way, per query on a multiplexed session); setting :attr:`tap` costs nothing.
    End of stream and loss reach the stream reader as always, and the tap too."""

    tap: StreamTap | None = None

    def data_received(self, data: bytes) -> None:
        tap = self.tap
        if tap is None:
            super().data_received(data)
        else:
            tap.data_received(data)

    def eof_received(self) -> bool:
        keep_open = bool(super().eof_received())
        if self.tap is not None:
            self.tap.stream_ended()
        return keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tap is not None:
            self.tap.stream_ended()
        super().connection_lost(exc)


async def open_tappable_connection(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`asyncio.open_connection` with a :class:`TappableStreamProtocol`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = TappableStreamProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class StreamBackendBase:
    """What every engine's backend connection over asyncio streams shares: telling whether it may
    be lent again, and cutting it.

    A subclass sets ``reader``, ``writer``, ``_usable`` (True) and ``abort_reason`` (None)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    _usable: bool
    abort_reason: str | None

    def is_usable(self) -> bool:
        """False once broken, closed or hung up.

        An idle pooled connection has nothing to say: a server that goes away (shutdown, a
        failover fencing the old writer, KILL, wait_timeout) leaves its goodbye unread or just
        closes, so unread bytes or a seen end of stream both mean it must not be lent again."""
        return (self._usable and not self.writer.transport.is_closing()
                and not _has_unread_input(self.reader))  # an end of stream seen is unread input too

    def mark_broken(self) -> None:
        """The relay saw this connection fail or lose sync: never pool it again."""
        self._usable = False

    def abort(self, reason: str) -> None:
        """Cut the connection now (failover): the relay sees it end and tells its client ``reason``."""
        self._usable = False
        self.abort_reason = reason
        self.writer.transport.abort()


def _has_unread_input(reader: asyncio.StreamReader) -> bool:
    """Bytes or an end of stream received but not read; StreamReader offers no public test."""
    return bool(getattr(reader, "_buffer", b"")) or bool(getattr(reader, "_eof", False))


class BackendFactoryBase:
    """What every engine's backend factory shares: its settings, the no-credentials text, and
    learning each instance's connection limit once.

    An engine's factory (a :class:`BackendFactoryConstructor`) sets ``max_connections_query`` and
    opens and logs in its own connections."""

    max_connections_query: str
    """One row, one column: the server's ``max_connections``."""

    def __init__(self, credentials: Callable[[str], BackendCredentials | None], *,
                 init_query: Callable[[], str | None] = lambda: None,
                 connect_timeout: float = 10.0, io_timeout: float = 30.0,
                 on_max_connections: Callable[[str, int], None] | None = None,
                 credential_source: CredentialSource | None = None) -> None:
        self._credentials = credentials
        self._credential_source = credential_source
        self._init_query = init_query
        self._connect_timeout = connect_timeout
        self._io_timeout = io_timeout
        self._on_max_connections = on_max_connections
        self._seen_instances: set[str] = set()

    @staticmethod
    def no_credentials_text(user: str) -> str:
        """RDS Proxy's words for a client user it holds no database login for."""
        return (f"This RDS proxy has no credentials for the role {user}. Check the credentials for this "
                f"role and try again.")

    async def _login_for(self, user: str) -> BackendCredentials | None:
        """The database login for client ``user`` now: the source's answer (its secret read first when
        due) when there is a source, else the held one; None: the proxy has no credentials for it."""
        if self._credential_source is None:
            return self._credentials(user)
        found = await self._credential_source.lookup(user)
        return None if found is None else found.backend

    async def _login_after_refusal(self, user: str, tried: BackendCredentials) -> BackendCredentials | None:
        """The database refused ``tried`` as ``user``'s login: the login to try once more, when the
        source now holds a different one (a rotated secret); None when retrying cannot help."""
        if self._credential_source is None:
            return None
        found = await self._credential_source.backend_login_failed(user, tried)
        if found is None or found.backend == tried:
            return None
        return found.backend

    async def _learn_max_connections(self, instance_id: str, backend: Any) -> None:
        """On the first connection to an instance, hand its ``max_connections`` (when it is a number)
        to ``on_max_connections``: the pool's cap and the router's weight follow from it."""
        if self._on_max_connections is None or instance_id in self._seen_instances:
            return
        self._seen_instances.add(instance_id)
        value = await backend.query_value(self.max_connections_query)
        if value and value.isdigit():
            self._on_max_connections(instance_id, int(value))


@dataclass(frozen=True)
class ProxyEngine:
    """What the server needs from an engine.

    ``sessions(services)`` makes the session factory of one server (called once; it may keep state
    the engine's sessions share, such as cancel keys); ``backends(...)`` makes the pool's backend
    factory; ``classify(sql)`` is the pin classifier (a :class:`PinDecision` or None) and
    ``digest(sql)`` the statement shape for pinning log lines; ``probe`` opens the topology
    monitor's probe of one instance.  ``too_many_clients`` is what a client turned away before its
    login is sent (the engine's own "too many connections" error), when the proxy is out of
    descriptors or has too many clients setting up.
    """

    name: Engine
    sessions: Callable[[SessionServices], SessionFactory]
    backends: BackendFactoryConstructor
    classify: Callable[[str], PinDecision | None]
    digest: Callable[[str], str]
    probe: ProbeConstructor
    too_many_clients: bytes


def engine_for(config: ProxyConfig) -> ProxyEngine:
    """The engine the configuration names; a ConfigError when the proxy does not serve it."""
    package = IMPLEMENTATIONS.get(config.engine)
    if package is None:
        supported = ", ".join(repr(e.value) for e in IMPLEMENTATIONS)
        raise ConfigError("engine", f"{config.engine.value!r} is not served by this proxy yet; "
                                    f"supported engines: {supported}")
    return importlib.import_module(package).ENGINE
