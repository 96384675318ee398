"""What every recording client shares: where it connects, how a request is planned and recorded.

A recording client follows Jepsen's client lifecycle (open, setup, invoke, close) and records every
request in a :class:`~harness.history.Recorder` as an ``invoke`` followed by exactly one of ``ok``,
``fail`` or ``info``.  The engines differ only in their driver and SQL dialect, so a request is
first described as a :class:`Plan` - the statements to run, whether inside one transaction, whether
to read the serving instance and backend connection inside that same transaction, and whether it is
idempotent - and then run by the engine's client.  Plans are plain data, so the SQL each operation
sends is tested without a server.

A client is one connection, and one history *process*: checkers read "the requests of one
process" as "the requests of one connection".  A worker that reconnects takes a new process id
(:class:`ProcessIds`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from harness.clients.outcomes import completion_type
from harness.errors import HarnessError
from harness.history import Op, OpError, OpType, Recorder
from harness.targets.base import IDENTITY_QUERIES

if TYPE_CHECKING:
    from harness.standins.base import Cluster
    from harness.targets.base import Endpoint, Target


class ClientError(HarnessError):
    """Root of the recording clients' errors: misuse (bad arguments, an unsupported operation)."""


@dataclasses.dataclass(frozen=True)
class Address:
    """Where a client connects and how it tells who served it.

    ``endpoint`` is the label written into the history: ``writer``, ``reader`` or
    ``direct:<instance id>`` for a connection that bypasses the proxy.
    """

    engine: str
    endpoint: str
    host: str
    port: int
    user: str
    password: str
    database: str
    identity_query: str

    def __post_init__(self) -> None:
        if self.engine not in IDENTITY_QUERIES:
            raise ClientError(f"unknown engine {self.engine!r}: expected one of {', '.join(IDENTITY_QUERIES)}")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise ClientError(f"port must be an integer from 1 to 65535, got {self.port!r}")
        if not self.endpoint:
            raise ClientError("an address needs an endpoint label")

    @classmethod
    def of(cls, target: Target, endpoint: Endpoint | str = "writer") -> Address:
        """The target's writer (``"writer"``), first reader (``"reader"``) or a given Endpoint."""
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
        c = target.credentials
        return cls(target.engine, endpoint.role, endpoint.host, endpoint.port, c.user, c.password, c.database,
                   target.identity_query)

    @classmethod
    def direct(cls, cluster: Cluster, instance_id: str) -> Address:
        """One stand-in instance, bypassing any proxy (for baselines and for tests of the clients)."""
        p = cluster.connection_params(instance_id)
        return cls(cluster.engine, f"direct:{instance_id}", p.host, p.port, p.user, p.password, p.database,
                   IDENTITY_QUERIES[cluster.engine])


class ProcessIds:
    """Hands out history process ids, unique within a run; safe to share between threads."""

    def __init__(self, start: int = 1) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            return next(self._counter)


@dataclasses.dataclass(frozen=True)
class Statement:
    sql: str
    params: Sequence[Any] | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """One recorded request, as data.

    * ``statements`` run in order; with ``transaction`` they run between BEGIN and COMMIT, so a
      lost connection before COMMIT is a definite failure and one during COMMIT is not;
    * ``identify`` adds the identity query and the backend connection id as the transaction's last
      statement, so ``node`` and ``extra["backend"]`` name whoever ran the statements;
    * ``result`` turns the rows of every statement (a list per statement; ``None`` for a statement
      without a result set) into the value recorded on ``ok`` and returned to the caller;
    * ``idempotent`` requests (reads) never end ``info``: see :mod:`harness.clients.outcomes`.
    """

    f: str
    value: Any
    statements: tuple[Statement, ...]
    transaction: bool = True
    identify: bool = True
    idempotent: bool = False
    result: Callable[[list[list[tuple[Any, ...]] | None]], Any] = lambda rows: None
    invoke_extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.f:
            raise ClientError("a request needs an operation name (f)")
        if self.identify and not self.transaction:
            # Without a transaction a pooler may run the identity query on another backend.
            raise ClientError(f"{self.f}: identifying the serving instance needs a transaction")


def identity_statement(engine: str, identity_query: str) -> Statement:
    """One statement returning (instance id, backend connection id) of the current session."""
    backend = "pg_backend_pid()" if engine == "postgres" else "CONNECTION_ID()"
    return Statement(f"SELECT ({identity_query}), {backend}")


def check_table_name(table: str) -> str:
    """Table names are written into SQL, so only plain identifiers are accepted."""
    if not isinstance(table, str) or not table.isidentifier() or not table.isascii() or len(table) > 60:
        raise ClientError(f"table name must be a plain ASCII identifier, got {table!r}")
    return table


def check_write_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ClientError(f"a write id must be a non-negative 64-bit integer, got {value!r}")
    return value


def ids_from_rows(rows: list[tuple[Any, ...]] | None) -> list[int]:
    return [int(r[0]) for r in rows or []]


class SocketDeadline:
    """Gives up on a request that takes longer than ``seconds`` by shutting its socket down.

    A silent network fault (a blackhole) leaves a request waiting forever: no byte and no reset
    arrives.  Cancelling through the database is no help, since the cancel request would travel the
    same dead path.  Shutting the socket down makes the driver raise at once; the client records
    the request with the code ``timeout`` (Jepsen's ``client/timeout``) and the connection is
    finished.  ``arm`` and ``disarm`` bracket one request; the timer is a thread so it also works
    while the calling thread is blocked inside the driver.
    """

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not 0 < seconds <= 86400):
            raise ClientError(f"a request timeout must be a positive number of seconds, got {seconds!r}")
        self.seconds = seconds
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._armed = False
        self.fired = False

    def arm(self, fileno: Callable[[], int | None]) -> None:
        self.fired = False
        if self.seconds is None:
            return
        with self._lock:
            self._armed = True
        self._timer = threading.Timer(self.seconds, self._fire, args=(fileno,))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        with self._lock:
            self._armed = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self, fileno: Callable[[], int | None]) -> None:
        with self._lock:
            if not self._armed:
                return
            fd = fileno()
            if fd is None or fd < 0:
                return
            self.fired = True
            shutdown_socket(fd)


def shutdown_socket(fd: int) -> None:
    """Shut down the socket behind ``fd`` in both directions without closing the owner's fd."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


@dataclasses.dataclass(frozen=True)
class Result:
    """What a recorded request came to, as recorded (``rows`` are the raw result sets, unrecorded)."""

    type: OpType
    value: Any = None
    node: str | None = None
    backend: int | None = None
    error: OpError | None = None
    rows: list[list[tuple[Any, ...]] | None] | None = None

    @property
    def ok(self) -> bool:
        return self.type is OpType.OK


NOT_CONNECTED = OpError("not-connected", "the client has no open connection", definite=True)


class RecordingMixin:
    """The invoke/complete bookkeeping shared by the engine clients (no I/O here)."""

    recorder: Recorder
    process: int | str
    address: Address

    def _invoke(self, f: str, value: Any = None, extra: dict[str, Any] | None = None) -> Op:
        return self.recorder.invoke(self.process, f, value, endpoint=self.address.endpoint, extra=extra)

    def _ok(self, inv: Op, value: Any, node: str | None = None, backend: int | None = None,
            rows: list[list[tuple[Any, ...]] | None] | None = None) -> Result:
        extra = {"backend": backend} if backend is not None else None
        self.recorder.ok(inv, value, node=node, extra=extra)
        return Result(OpType.OK, value, node, backend, None, rows)

    def _error(self, inv: Op, error: OpError, *, idempotent: bool) -> Result:
        op_type = completion_type(error, idempotent=idempotent)
        self.recorder.complete(inv, op_type, inv.value, error=error)
        return Result(op_type, inv.value, None, None, error)

    def _bug(self, inv: Op, exc: BaseException) -> None:
        """Close the op of a request interrupted by something other than the driver (a bug, Ctrl-C):
        its outcome is unknown, and the exception goes on to the caller."""
        if inv in self.recorder.outstanding():
            self.recorder.info(inv, OpError("client-error", f"{type(exc).__name__}: {exc}"[:500], False))
