"""Where a recording client connects, and the history process ids it records under.

A client is one connection and one history *process*: checkers read "the requests of one
process" as "the requests of one connection".  A worker that reconnects takes a new process id
(:class:`ProcessIds`).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from typing import TYPE_CHECKING

from harness.clients.plans import ClientError
from harness.targets.base import IDENTITY_QUERIES, Capability

if TYPE_CHECKING:
    from harness.standins.base import Cluster
    from harness.targets.base import Endpoint, Target


DIRECT_PROGRAM = "aurora-harness-direct"
"""The program name of the harness's own connections straight to an instance (baselines, samplers,
role and ``max_connections`` look-ups)."""


@dataclasses.dataclass(frozen=True)
class Address:
    """Where a client connects and how it tells who served it.

    ``endpoint`` is the label written into the history: ``writer``, ``reader`` or
    ``direct:<instance id>`` for a connection that bypasses the proxy.  ``program`` is the program
    (application) name the connection gives the server: every connection the harness makes straight
    to an instance carries :data:`DIRECT_PROGRAM`, so that counts of the proxy's backends taken on
    the instance can leave the harness's own sessions out.
    """

    engine: str
    endpoint: str
    host: str
    port: int
    user: str
    password: str = dataclasses.field(repr=False)  # never in a log line or a test report
    database: str
    identity_query: str
    program: str | None = None
    tls: bool = False
    """Insist on TLS (the proxy requires it): every driver then negotiates TLS unless told otherwise."""

    def __post_init__(self) -> None:
        if self.engine not in IDENTITY_QUERIES:
            raise ClientError(f"unknown engine {self.engine!r}: expected one of {', '.join(IDENTITY_QUERIES)}")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise ClientError(f"port must be an integer from 1 to 65535, got {self.port!r}")
        if not self.endpoint:
            raise ClientError("an address needs an endpoint label")

    @classmethod
    def of(cls, target: Target, endpoint: Endpoint | str = "writer", label: str | None = None) -> Address:
        """The target's writer (``"writer"``), first reader (``"reader"``) or a given Endpoint.

        ``label`` overrides the endpoint label written into the history."""
        if isinstance(endpoint, str):
            if endpoint == "writer":
                endpoint = target.writer_endpoint
            elif endpoint == "reader":
                readers = target.reader_endpoints
                if not readers:
                    raise ClientError(f"target {target.kind!r} has no reader endpoint")
                endpoint = readers[0]
            else:
                raise ClientError(f"endpoint must be 'writer', 'reader' or an Endpoint, got {endpoint!r}")
        c = target.credentials_for(endpoint)
        # The proxy requires TLS; the instances behind it (direct endpoints) are another matter.
        tls = target.supports(Capability.REQUIRES_TLS) and endpoint not in target.direct_endpoints
        return cls(target.engine, label or endpoint.role, endpoint.host, endpoint.port, c.user, c.password,
                   c.database, target.identity_query, tls=tls)

    def with_login(self, user: str, password: str) -> Address:
        """The same place reached as ``user`` with ``password`` (another database user, or a password
        a rotation just made current)."""
        return dataclasses.replace(self, user=user, password=password)

    @classmethod
    def direct(cls, cluster: Cluster, instance_id: str) -> Address:
        """One stand-in instance, bypassing any proxy (for baselines and for tests of the clients)."""
        p = cluster.connection_params(instance_id)
        return cls(cluster.engine, f"direct:{instance_id}", p.host, p.port, p.user, p.password, p.database,
                   IDENTITY_QUERIES[cluster.engine], DIRECT_PROGRAM)

    @classmethod
    def of_instance(cls, engine: str, instance: dict[str, object]) -> Address:
        """An instance as a target lists it (``Target.direct_instances()``), bypassing the proxy."""
        return cls(engine, f"direct:{instance['id']}", str(instance["host"]), int(instance["port"]),  # type: ignore[call-overload]
                   str(instance["user"]), str(instance["password"]), str(instance["database"]),
                   IDENTITY_QUERIES[engine], DIRECT_PROGRAM)


class ProcessIds:
    """Hands out history process ids, unique within a run; safe to share between threads.

    With a ``prefix`` the ids are strings (``c1``, ``c2``...), else integers."""

    def __init__(self, start: int = 1, prefix: str | None = None) -> None:
        self._counter = itertools.count(start)
        self._prefix = prefix
        self._lock = threading.Lock()

    def next(self) -> int | str:
        with self._lock:
            n = next(self._counter)
        return n if self._prefix is None else f"{self._prefix}{n}"
