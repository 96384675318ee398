"""The seams between the proxy's engine-agnostic core and its engine-specific sessions.

The pool, routing, topology and metrics know nothing about PostgreSQL or MySQL; an engine
(``engines/postgres/``, later ``engines/mysql/``) supplies backend connections that satisfy
:class:`BackendConnection`, and a factory that opens them, given the credentials below.  Keeping
these few types in one module lets both sides be written and tested apart.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class ProxyError(Exception):
    """Root of the reference proxy's own errors."""


class BorrowTimeout(ProxyError):
    """No backend connection could be lent within ConnectionBorrowTimeout.

    The text is RDS Proxy's, exactly: clients and the harness match on it.
    """

    TEXT = "Timed-out waiting to acquire database connection."

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.TEXT)
        self.detail = detail


class BackendConnectFailed(ProxyError):
    """Opening a new backend connection failed (refused, auth failure, server error)."""


class ConfigError(ProxyError, ValueError):
    """A setting is unknown, missing, of the wrong type or out of range.

    ``key`` is the full dotted name of the offending setting (``pool.max_connections_percent``,
    ``endpoints[1].port``) so that the message points straight at the line to fix.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class NoWriter(ProxyError):
    """No instance is currently known to be the writer (for example in the middle of a failover)."""


class NoReader(ProxyError):
    """A read-only endpoint has no reader instance to send a new session to."""


class Role(str, enum.Enum):
    """An instance's role as the proxy believes it (from its monitor)."""

    WRITER = "writer"
    READER = "reader"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class InstanceAddress:
    """Where one database instance listens, and its id (as the cluster names it)."""

    id: str
    host: str
    port: int


@dataclass(frozen=True)
class PoolKey:
    """Backend connections are interchangeable only within one key (RDS Proxy's partitioning).

    ``variant`` carries engine-specific partitioning (MySQL tracked variables); empty for PostgreSQL.
    """

    instance_id: str
    user: str
    database: str
    variant: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ClientCredential:
    """A user the proxy knows: the password its clients must prove, and how.

    ``method`` is the configured auth method's name (``scram-sha-256``, ``md5``,
    ``caching_sha2_password``...); the engine's authenticator knows which of them it speaks.
    """

    user: str
    password: str
    method: str


@dataclass(frozen=True)
class BackendCredentials:
    """Who the proxy logs in as on the database for a given client user."""

    user: str
    password: str | None


class ReleaseState(str, enum.Enum):
    """What a session says about a backend connection when it gives it back."""

    CLEAN = "clean"      # idle, no session state: return to the pool as is
    DIRTY = "dirty"      # carries session state (was pinned): reset before reuse, close if reset fails
    BROKEN = "broken"    # unusable or state unknown (client vanished mid-transaction): close


class BackendConnection(Protocol):
    """An open, authenticated backend connection, owned by the pool between borrows."""

    key: PoolKey
    backend_id: str  # e.g. the server's backend pid; for logs and status

    def is_usable(self) -> bool:
        """False once the socket closed or a protocol error made its state unknown."""
        ...

    async def reset(self) -> bool:
        """Drop all session state (PostgreSQL: DISCARD ALL). False means: close it instead."""
        ...

    async def close(self) -> None:
        """Close the socket politely (Terminate / COM_QUIT) and never raise."""
        ...


BackendFactory = Callable[[PoolKey, InstanceAddress], Awaitable[BackendConnection]]
"""Opens and authenticates one backend connection (and runs InitQuery). Raises BackendConnectFailed."""


class Clock(Protocol):
    """Injected time source: ``monotonic()`` seconds. Tests pass a fake."""

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock.  ``monotonic`` is :func:`time.monotonic` itself: the relays read the clock
    a few times per query, and a Python method around it cost more than the reading."""

    monotonic = staticmethod(time.monotonic)
