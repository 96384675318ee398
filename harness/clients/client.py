"""The recording client: one connection, one history process, every request recorded.

A client follows Jepsen's client lifecycle (open, setup, invoke, close) and records every
request as an ``invoke`` followed by exactly one of ``ok``, ``fail`` or ``info``
(:class:`~harness.clients.outcomes.Recording`).  What a request sends comes from its
:class:`~harness.clients.plans.Plan` and the engine's :class:`~harness.clients.dialects.base.Dialect`;
the driver adapter (:mod:`harness.clients.drivers`) only sends it.  :class:`Client` blocks (psycopg
or PyMySQL, picked by the address's engine); :class:`AsyncClient` runs in an event loop (psycopg's
async connection or aiomysql).

Operations that touch data run inside one explicit transaction that also reads the serving
instance (the target's identity query) and the backend connection id: through a pooling proxy the
next transaction may run elsewhere, so only a reading taken *inside* the same transaction says who
ran it.  :meth:`Client.request` is the other style, one batch in autocommit mode whose last row
ends with :meth:`Client.who`'s columns, for suites that must send exactly the SQL they test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from harness.clients.address import Address
from harness.clients.deadline import SocketDeadline
from harness.clients.dialects import dialect_for
from harness.clients.drivers.aiomysql import AsyncAioMySQLConnection
from harness.clients.drivers.connector import ConnectorConnection
from harness.clients.drivers.psycopg import AsyncPsycopgConnection, PsycopgConnection
from harness.clients.drivers.pymysql import PyMySQLConnection
from harness.clients.outcomes import NOT_CONNECTED, Recording, Result, Stage
from harness.clients.plans import (
    ABSENT,
    DEFAULT_TABLE,
    ClientError,
    Completed,
    Plan,
    Rows,
    Step,
    as_text,
    backend_plan,
    check_table_name,
    create_table_statement,
    find_state_plan,
    idle_probe_plan,
    point_read_plan,
    read_plan,
    read_state_plan,
    request_plan,
    role_of,
    set_state_plan,
    statement_plan,
    steps,
    write_plan,
)
from harness.history import Op, OpError, Recorder

SYNC_DRIVERS: dict[str, Any] = {"postgres": PsycopgConnection, "mysql": PyMySQLConnection}
ASYNC_DRIVERS: dict[str, Any] = {"postgres": AsyncPsycopgConnection, "mysql": AsyncAioMySQLConnection}
BINARY_PROTOCOL_DRIVERS: dict[str, Any] = {"mysql": ConnectorConnection}
"""Drivers for a client made with ``binary_protocol=True`` (PostgreSQL's psycopg prepares named
protocol statements itself, with ``prepare``/``prepare_threshold``)."""


def tls_options(engine: str, *, required: bool) -> dict[str, Any]:
    """Driver options for a :class:`Client` of ``engine`` that insist on TLS (unverified) or refuse it."""
    if engine not in SYNC_DRIVERS:
        raise ClientError(f"no driver for {engine}: available for {', '.join(SYNC_DRIVERS)}")
    return SYNC_DRIVERS[engine].tls_options(required)


def query_value(address: Address, sql: str, *, connect_timeout: float = 5.0) -> Any:
    """The first column of the first row of ``sql``, on a connection of its own, recorded nowhere.

    For the harness's own look-ups (a server's ``max_connections``), not for workload: a look-up
    is preparation, and a history holds only what the system under test was asked to do.  Raises
    the driver's error, or ClientError when no row comes back."""
    if address.engine not in SYNC_DRIVERS:
        raise ClientError(f"no driver for {address.engine}: available for {', '.join(SYNC_DRIVERS)}")
    connection = SYNC_DRIVERS[address.engine](address, connect_timeout=connect_timeout)
    try:
        connection.open()
        rows = connection.execute(sql)
    finally:
        connection.close()
    if not rows:
        raise ClientError(f"{sql!r} returned no row on {address.endpoint}")
    return as_text(rows[0][0])


def query_once(address: Address, sql: str, *, timeout: float = 5.0) -> list[Any]:
    """The rows of ``sql`` on one new connection to ``address``, recorded nowhere, closed afterwards.

    The whole exchange is bounded by ``timeout`` (a server that accepts and never answers included).
    Raises the driver's error."""
    if address.engine not in SYNC_DRIVERS:
        raise ClientError(f"no driver for {address.engine}: available for {', '.join(SYNC_DRIVERS)}")
    driver = SYNC_DRIVERS[address.engine]
    connection = driver(address, connect_timeout=timeout, **driver.io_timeout_options(timeout))
    deadline = SocketDeadline(timeout)
    try:
        connection.open()
        deadline.arm(connection.fileno)
        return list(connection.execute(sql))
    finally:
        deadline.disarm()
        connection.close()


def identify(address: Address, *, timeout: float = 5.0) -> tuple[str | None, str | None]:
    """(instance id, role) of whoever serves a new connection to ``address``, recorded nowhere.

    The engine's identity query beside its writable test (:meth:`Dialect.identity_sql`): the role is
    the instance's own word at that moment, so it stays right after a failover.  Raises the driver's
    error, or ClientError when no row comes back."""
    rows = query_once(address, dialect_for(address.engine).identity_sql(address.identity_query), timeout=timeout)
    if not rows:
        raise ClientError(f"the identity query returned no row on {address.endpoint}")
    instance, _backend, writable = rows[0]
    return (None if instance is None else str(as_text(instance))), role_of(writable)


class _ClientBase:
    """What both clients hold: the address, dialect, recording, deadline and the plans they offer."""

    def __init__(self, drivers: dict[str, Any], recorder: Recorder, process: int | str, address: Address, *,
                 table: str = DEFAULT_TABLE, op_timeout: float | None = None, worker: str | None = None,
                 identify_connect: bool = False, connect_extra: dict[str, Any] | None = None,
                 **driver_options: Any) -> None:
        """``op_timeout`` bounds each request (:class:`SocketDeadline`); ``worker`` names the logical
        client across reconnects; ``identify_connect`` records who served the ``connect`` request;
        ``connect_extra`` goes into the ``connect`` invocation's extra (e.g. which of a rotation's
        passwords it logs in with; never the password); ``driver_options`` go to the driver's connect
        (``connect_timeout``, ``sslmode``...)."""
        if address.engine not in drivers:
            raise ClientError(f"no {type(self).__name__} for {address.engine}: "
                              f"available for {', '.join(drivers)}")
        self.address = address
        self.dialect = dialect_for(address.engine)
        self.recording = Recording(recorder, process, address.endpoint, worker)
        self.table = check_table_name(table)
        self.deadline = SocketDeadline(op_timeout)
        self.identify_connect = identify_connect
        self.connect_extra = dict(connect_extra or {})
        driver = drivers[address.engine]
        if driver_options.pop("binary_protocol", False):  # server-side prepared statements, by id
            if drivers is not SYNC_DRIVERS or address.engine not in BINARY_PROTOCOL_DRIVERS:
                raise ClientError(f"no binary-protocol driver for {address.engine} in this client kind")
            driver = BINARY_PROTOCOL_DRIVERS[address.engine]
        self.connection = driver(address, **driver_options)
        self.opened = False
        """Whether the connection was ever opened (it may have broken since)."""

    @property
    def recorder(self) -> Recorder:
        return self.recording.recorder

    @property
    def process(self) -> int | str:
        return self.recording.process

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def tls_in_use(self) -> bool:
        """Whether the connection to the endpoint is encrypted (TLS), as the driver sees it."""
        return self.connection.tls_in_use

    def who(self) -> str:
        """Select-list columns naming the serving instance and backend connection, for :meth:`request`."""
        return self.dialect.who(self.address.identity_query)

    # -- plans ----------------------------------------------------------------------------------------
    def write_plan(self, write_id: int) -> Plan:
        return write_plan(self.dialect, write_id, self.table)

    def read_plan(self, f: str = "read") -> Plan:
        return read_plan(self.dialect, self.table, f)

    def point_read_plan(self, write_id: int) -> Plan:
        return point_read_plan(self.dialect, self.who(), write_id, self.table)

    def _absent(self, step: Step, exc: BaseException, stage: Stage) -> Rows:
        """The answer "absent" for an error the step expects (:attr:`Statement.absent_on_error`);
        any other error goes on to be recorded."""
        if step.absent_on_error and self.dialect.classify(exc, stage).code in step.absent_on_error:
            return ABSENT
        raise exc

    def _classify(self, exc: BaseException, stage: Stage) -> OpError:
        """The driver's error as recorded; the deadline is over either way."""
        self.deadline.disarm()
        return self.dialect.classify(exc, stage, timed_out=self.deadline.fired)

    def _start(self, plan: Plan) -> tuple[Op, Result | None]:
        """Record the invocation; a client without a connection fails it at once (a definite fail)."""
        inv = self.recording.invoke(plan.f, plan.value, plan.invoke_extra)
        if not self.connected:
            return inv, self.recording.error(inv, NOT_CONNECTED, idempotent=plan.idempotent)
        self.deadline.arm(self.connection.fileno)
        return inv, None

    def _ended(self, inv: Op, plan: Plan, error: OpError) -> Result:
        return self.recording.error(inv, error, idempotent=plan.idempotent)

    def _stopped(self, inv: Op, exc: BaseException) -> None:
        """Something other than the driver ended the request (a bug, Ctrl-C, a cancelled task)."""
        self.deadline.disarm()
        self.recording.interrupted(inv, exc)

    def _connected_ok(self, inv: Any, ident: Any) -> Result:
        self.opened = True
        node, backend, writable = ident[0] if ident else (None, None, None)
        return self.recording.ok(inv, None, as_text(node), backend, role=role_of(writable))

    def _done(self, inv: Any, done: Completed) -> Result:
        self.deadline.disarm()
        return self.recording.ok(inv, done.value, done.node, done.backend, done.rows, done.note, done.role)


class Client(_ClientBase):
    """A blocking recording client: psycopg for PostgreSQL, PyMySQL for MySQL.

    It creates no thread and blocks only inside the driver, so it runs unchanged under gevent."""

    def __init__(self, recorder: Recorder, process: int | str, address: Address, **options: Any) -> None:
        super().__init__(SYNC_DRIVERS, recorder, process, address, **options)

    def connect(self) -> Result:
        inv = self.recording.invoke("connect", extra=self.connect_extra or None)
        try:
            try:
                self.connection.open()
                ident = None
                if self.identify_connect:
                    self.deadline.arm(self.connection.fileno)  # a proxy may keep the first query waiting
                    ident = self.connection.execute(self.dialect.identity_sql(self.address.identity_query))
                    self.deadline.disarm()
            except self.connection.errors as e:
                error = self._classify(e, Stage.CONNECT)
                self.connection.close()
                return self.recording.error(inv, error, idempotent=True)
        except BaseException as e:  # also from the error path above
            self._stopped(inv, e)
            raise
        return self._connected_ok(inv, ident)

    def setup(self) -> None:
        """Create the writes table (not recorded: it is preparation, not workload)."""
        if not self.connected:
            raise ClientError("setup needs a connected client")
        self.connection.execute(create_table_statement(self.dialect, self.table).sql)

    def run(self, plan: Plan) -> Result:
        """Run and record one planned request."""
        inv, refused = self._start(plan)
        if refused is not None:
            return refused
        gen, stage = steps(plan, self.dialect, self.address.identity_query), Stage.COMMIT
        try:
            try:
                step = next(gen)
                while True:
                    stage = step.stage
                    try:
                        rows = self.connection.execute(step.sql, step.params)
                    except self.connection.errors as e:
                        rows = self._absent(step, e, stage)
                    step = gen.send(rows)
            except StopIteration as finished:
                return self._done(inv, finished.value)
            except self.connection.errors as e:
                error = self._classify(e, stage)
                self.connection.settle(self.deadline.fired)
                return self._ended(inv, plan, error)
        except BaseException as e:  # also from the error path above: no request is left without an outcome
            self._stopped(inv, e)
            raise

    # -- operations -------------------------------------------------------------------------------
    def write(self, write_id: int) -> Result:
        return self.run(self.write_plan(write_id))

    def read(self) -> Result:
        return self.run(self.read_plan())

    def point_read(self, write_id: int) -> Result:
        """One row by primary key, and who served it, in one autocommit round trip."""
        return self.run(self.point_read_plan(write_id))

    def final_read(self) -> Result:
        return self.run(self.read_plan("final_read"))

    def backend_id(self) -> Result:
        return self.run(backend_plan())

    def set_state(self, kind: str, name: str, value: Any = True) -> Result:
        return self.run(set_state_plan(self.dialect, kind, name, value))

    def read_state(self, kind: str, name: str) -> Result:
        return self.run(read_state_plan(self.dialect, kind, name))

    def find_state(self, kind: str, prefix: str, own: str) -> Result:
        return self.run(find_state_plan(self.dialect, kind, prefix, own))

    def idle_probe(self) -> Result:
        return self.run(idle_probe_plan())

    def execute(self, f: str, sql: str, params: Any = None, **kwargs: Any) -> Result:
        """An ad-hoc statement (see :func:`~harness.clients.plans.statement_plan` for the keywords)."""
        return self.run(statement_plan(f, sql, params, **kwargs))

    def request(self, f: str, sql: str, params: Sequence[Any] | None = None, **kwargs: Any) -> Result:
        """``sql`` ending with :meth:`who`'s columns, as sent (see :func:`~harness.clients.plans.request_plan`)."""
        return self.run(request_plan(f, sql, params, **kwargs))

    def close(self) -> None:
        self.deadline.disarm()
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """The same client in an event loop (psycopg's ``AsyncConnection`` or aiomysql), for many clients at once."""

    def __init__(self, recorder: Recorder, process: int | str, address: Address, **options: Any) -> None:
        super().__init__(ASYNC_DRIVERS, recorder, process, address, **options)

    async def connect(self) -> Result:
        inv = self.recording.invoke("connect", extra=self.connect_extra or None)
        try:
            try:
                await self.connection.open()
                ident = None
                if self.identify_connect:
                    self.deadline.arm(self.connection.fileno)
                    ident = await self.connection.execute(self.dialect.identity_sql(self.address.identity_query))
                    self.deadline.disarm()
            except self.connection.errors as e:
                error = self._classify(e, Stage.CONNECT)
                await self.connection.close()
                return self.recording.error(inv, error, idempotent=True)
        except BaseException as e:  # includes task cancellation (the outcome is unknown) and the error path
            self._stopped(inv, e)
            raise
        return self._connected_ok(inv, ident)

    async def setup(self) -> None:
        if not self.connected:
            raise ClientError("setup needs a connected client")
        await self.connection.execute(create_table_statement(self.dialect, self.table).sql)

    async def run(self, plan: Plan) -> Result:
        inv, refused = self._start(plan)
        if refused is not None:
            return refused
        gen, stage = steps(plan, self.dialect, self.address.identity_query), Stage.COMMIT
        try:
            try:
                step = next(gen)
                while True:
                    stage = step.stage
                    try:
                        rows = await self.connection.execute(step.sql, step.params)
                    except self.connection.errors as e:
                        rows = self._absent(step, e, stage)
                    step = gen.send(rows)
            except StopIteration as finished:
                return self._done(inv, finished.value)
            except self.connection.errors as e:
                error = self._classify(e, stage)
                await self.connection.settle(self.deadline.fired)
                return self._ended(inv, plan, error)
        except BaseException as e:  # includes task cancellation (the outcome is unknown) and the error path
            self._stopped(inv, e)
            raise

    async def write(self, write_id: int) -> Result:
        return await self.run(self.write_plan(write_id))

    async def read(self) -> Result:
        return await self.run(self.read_plan())

    async def point_read(self, write_id: int) -> Result:
        return await self.run(self.point_read_plan(write_id))

    async def final_read(self) -> Result:
        return await self.run(self.read_plan("final_read"))

    async def set_state(self, kind: str, name: str, value: Any = True) -> Result:
        return await self.run(set_state_plan(self.dialect, kind, name, value))

    async def read_state(self, kind: str, name: str) -> Result:
        return await self.run(read_state_plan(self.dialect, kind, name))

    async def idle_probe(self) -> Result:
        return await self.run(idle_probe_plan())

    async def request(self, f: str, sql: str, params: Sequence[Any] | None = None, **kwargs: Any) -> Result:
        return await self.run(request_plan(f, sql, params, **kwargs))

    async def close(self) -> None:
        self.deadline.disarm()
        await self.connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
