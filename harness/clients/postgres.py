"""Recording clients for PostgreSQL through psycopg 3: :class:`PgClient` (sync) and :class:`AsyncPgClient`.

Each client is one connection and one history process.  Every operation is recorded as an
invocation and one completion, classified by :func:`harness.clients.outcomes.classify_psycopg`.
Operations that touch data run inside one explicit transaction that also reads the serving
instance (the target's identity query) and ``pg_backend_pid()``: through a pooling proxy the next
transaction may run elsewhere, so only a reading taken *inside* the same transaction says who ran it.

The connection is opened in autocommit mode and transactions are spelled out as ``BEGIN`` /
``COMMIT`` statements, so the client always knows whether COMMIT had been sent when something broke.
Automatic server-side prepared statements are off (``prepare_threshold=None``) unless asked for:
through a transaction-mode pooler they would change what is being tested.

The session-state vocabulary of the isolation checker (:data:`harness.checkers.isolation.STATE_KINDS`)
is :func:`set_state_plan` / :func:`read_state_plan`: a setting, a temp table, a prepared statement,
a session advisory lock and a LISTEN registration.
"""

from __future__ import annotations

import zlib
from typing import Any, Self

import psycopg

from harness.clients.base import (
    NOT_CONNECTED,
    Address,
    ClientError,
    Plan,
    RecordingMixin,
    Result,
    SocketDeadline,
    Statement,
    check_table_name,
    check_write_id,
    identity_statement,
    ids_from_rows,
)
from harness.clients.outcomes import Stage, classify_psycopg
from harness.history import OpError, Recorder

DEFAULT_TABLE = "harness_writes"
STATE_KINDS = ("setting", "temp_table", "prepared_statement", "advisory_lock", "listen")


# -- plans (pure) ---------------------------------------------------------------------------------
def _quoted(name: str) -> str:
    """A double-quoted identifier; names are restricted so no escaping is ever needed."""
    return '"' + check_table_name(name) + '"'


def advisory_key(name: str) -> int:
    """A stable 32-bit advisory lock key for a lock name (the checker sees names, the server keys)."""
    return zlib.crc32(name.encode())


def create_table_statement(table: str = DEFAULT_TABLE) -> Statement:
    return Statement(f"CREATE TABLE IF NOT EXISTS {_quoted(table)} (id bigint PRIMARY KEY)")


def write_plan(write_id: int, table: str = DEFAULT_TABLE) -> Plan:
    write_id = check_write_id(write_id)
    return Plan("write", write_id, (Statement(f"INSERT INTO {_quoted(table)} (id) VALUES (%s)", (write_id,)),),
                result=lambda rows: write_id)


def read_plan(table: str = DEFAULT_TABLE, f: str = "read") -> Plan:
    return Plan(f, None, (Statement(f"SELECT id FROM {_quoted(table)} ORDER BY id"),), idempotent=True,
                result=lambda rows: ids_from_rows(rows[0]))


def set_state_plan(kind: str, name: str, value: Any = True) -> Plan:
    """Create session state of ``kind`` named ``name`` (``value`` is only used by settings)."""
    if kind == "setting":
        if "." not in name and not name.isidentifier():
            raise ClientError(f"setting name must be an identifier or a custom 'a.b' name, got {name!r}")
        if not isinstance(value, str):
            raise ClientError(f"a setting's value must be a string, got {value!r}")
        stmt = Statement("SELECT set_config(%s, %s, false)", (name, value))
    elif kind == "temp_table":
        stmt = Statement(f"CREATE TEMP TABLE {_quoted(name)} (x int)")
    elif kind == "prepared_statement":
        stmt = Statement(f"PREPARE {_quoted(name)} AS SELECT 1")
    elif kind == "advisory_lock":
        stmt = Statement("SELECT pg_advisory_lock(%s)", (advisory_key(name),))
    elif kind == "listen":
        stmt = Statement(f"LISTEN {_quoted(name)}")
    else:
        raise ClientError(f"unknown session state kind {kind!r}; known: {', '.join(STATE_KINDS)}")
    recorded = {"kind": kind, "name": name, "value": value if kind == "setting" else True}
    return Plan("set_state", recorded, (stmt,), result=lambda rows: recorded)


def read_state_plan(kind: str, name: str) -> Plan:
    """Observe session state of ``kind`` named ``name``: the setting's value, or whether it exists."""
    if kind == "setting":
        stmt = Statement("SELECT current_setting(%s, true)", (name,))
    elif kind == "temp_table":
        stmt = Statement("SELECT to_regclass(%s) IS NOT NULL", (f"pg_temp.{_quoted(name)}",))
    elif kind == "prepared_statement":
        stmt = Statement("SELECT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = %s)", (name,))
    elif kind == "advisory_lock":
        stmt = Statement("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                         "AND pid = pg_backend_pid() AND classid = 0 AND objid::bigint = %s AND objsubid = 1)",
                         (advisory_key(name),))
    elif kind == "listen":
        stmt = Statement("SELECT %s = ANY (ARRAY(SELECT pg_listening_channels()))", (name,))
    else:
        raise ClientError(f"unknown session state kind {kind!r}; known: {', '.join(STATE_KINDS)}")
    return Plan("read_state", {"kind": kind, "name": name}, (stmt,), idempotent=True,
                result=lambda rows: {"kind": kind, "name": name, "value": rows[0][0][0] if rows[0] else None})


def idle_probe_plan() -> Plan:
    return Plan("idle_probe", None, (Statement("SELECT 1"),), idempotent=True, result=lambda rows: 1)


def backend_plan() -> Plan:
    return Plan("backend_id", None, (), idempotent=True)


def statement_plan(f: str, sql: str, params: Any = None, *, value: Any = None, idempotent: bool = False,
                   identify: bool = False, invoke_extra: dict[str, Any] | None = None) -> Plan:
    """An ad-hoc statement; with ``identify`` it runs in a transaction that also names node and backend."""
    if not isinstance(sql, str) or not sql.strip():
        raise ClientError("execute needs a non-empty SQL string")
    return Plan(f, value, (Statement(sql, params),), transaction=identify, identify=identify,
                idempotent=idempotent, result=lambda rows: value, invoke_extra=invoke_extra)


# -- clients --------------------------------------------------------------------------------------
class _PgBase(RecordingMixin):
    def __init__(self, recorder: Recorder, process: int | str, address: Address, *,
                 table: str = DEFAULT_TABLE, connect_timeout: int = 10, op_timeout: float | None = None,
                 prepare_threshold: int | None = None, **driver_options: Any) -> None:
        """``op_timeout`` bounds each request (see :class:`SocketDeadline`); ``driver_options`` go to
        ``psycopg.connect`` (``options``, ``keepalives``, ``sslmode``...)."""
        if address.engine != "postgres":
            raise ClientError(f"a PostgreSQL client cannot use a {address.engine} address")
        self.recorder, self.process, self.address = recorder, process, address
        self.table = check_table_name(table)
        self.deadline = SocketDeadline(op_timeout)
        self._connect_kwargs = {"host": address.host, "port": address.port, "user": address.user,
                                "password": address.password, "dbname": address.database, "autocommit": True,
                                "connect_timeout": connect_timeout, "prepare_threshold": prepare_threshold,
                                **driver_options}
        self._identity = identity_statement("postgres", address.identity_query)
        self.conn: Any = None

    def _fileno(self) -> int | None:
        try:
            return self.conn.pgconn.socket if self.conn is not None else None
        except psycopg.Error:
            return None

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def _classify(self, exc: BaseException, stage: Stage) -> OpError:
        return classify_psycopg(exc, stage, timed_out=self.deadline.fired)


class PgClient(_PgBase):
    """A synchronous recording client on one psycopg connection."""

    def connect(self) -> Result:
        inv = self._invoke("connect")
        try:
            self.conn = psycopg.connect(**self._connect_kwargs)
        except psycopg.Error as e:
            return self._error(inv, self._classify(e, Stage.CONNECT), idempotent=True)
        except BaseException as e:
            self._bug(inv, e)
            raise
        return self._ok(inv, None)

    def setup(self) -> None:
        """Create the writes table (not recorded: it is preparation, not workload)."""
        if not self.connected:
            raise ClientError("setup needs a connected client")
        st = create_table_statement(self.table)
        self.conn.execute(st.sql)

    def run(self, plan: Plan) -> Result:
        """Run and record one planned request."""
        inv = self._invoke(plan.f, plan.value, plan.invoke_extra)
        if not self.connected:
            return self._error(inv, NOT_CONNECTED, idempotent=plan.idempotent)
        stage = Stage.IN_TRANSACTION if plan.transaction else Stage.COMMIT
        rows: list[list[tuple[Any, ...]] | None] = []
        node = backend = None
        self.deadline.arm(self._fileno)
        try:
            if plan.transaction:
                self.conn.execute("BEGIN")
            for st in plan.statements:
                cur = self.conn.execute(st.sql, st.params)
                rows.append(cur.fetchall() if cur.description else None)
            if plan.identify:
                node, backend = self.conn.execute(self._identity.sql).fetchone()
            if plan.transaction:
                stage = Stage.COMMIT
                self.conn.execute("COMMIT")
        except psycopg.Error as e:
            self.deadline.disarm()
            error = self._classify(e, stage)
            self._after_error()
            return self._error(inv, error, idempotent=plan.idempotent)
        except BaseException as e:
            self.deadline.disarm()
            self._bug(inv, e)
            raise
        self.deadline.disarm()
        return self._ok(inv, plan.result(rows), node, backend, rows)

    def _after_error(self) -> None:
        """Leave the connection usable (rolled back) or closed - never half-way inside a transaction."""
        if self.conn is None or self.conn.closed:
            return
        if self.deadline.fired or self.conn.broken:
            self.conn.close()
            return
        try:
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
        except psycopg.Error:
            self.conn.close()

    # -- operations -----------------------------------------------------------------------------
    def write(self, write_id: int) -> Result:
        return self.run(write_plan(write_id, self.table))

    def read(self) -> Result:
        return self.run(read_plan(self.table))

    def final_read(self) -> Result:
        return self.run(read_plan(self.table, "final_read"))

    def backend_id(self) -> Result:
        return self.run(backend_plan())

    def set_state(self, kind: str, name: str, value: Any = True) -> Result:
        return self.run(set_state_plan(kind, name, value))

    def read_state(self, kind: str, name: str) -> Result:
        return self.run(read_state_plan(kind, name))

    def idle_probe(self) -> Result:
        return self.run(idle_probe_plan())

    def execute(self, f: str, sql: str, params: Any = None, **kwargs: Any) -> Result:
        """An ad-hoc statement (see :func:`statement_plan` for the keyword arguments)."""
        return self.run(statement_plan(f, sql, params, **kwargs))

    def close(self) -> None:
        self.deadline.disarm()
        if self.conn is not None:
            self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPgClient(_PgBase):
    """The same client on a psycopg ``AsyncConnection``, for many clients in one event loop."""

    async def connect(self) -> Result:
        inv = self._invoke("connect")
        try:
            self.conn = await psycopg.AsyncConnection.connect(**self._connect_kwargs)
        except psycopg.Error as e:
            return self._error(inv, self._classify(e, Stage.CONNECT), idempotent=True)
        except BaseException as e:
            self._bug(inv, e)
            raise
        return self._ok(inv, None)

    async def setup(self) -> None:
        if not self.connected:
            raise ClientError("setup needs a connected client")
        await self.conn.execute(create_table_statement(self.table).sql)

    async def run(self, plan: Plan) -> Result:
        inv = self._invoke(plan.f, plan.value, plan.invoke_extra)
        if not self.connected:
            return self._error(inv, NOT_CONNECTED, idempotent=plan.idempotent)
        stage = Stage.IN_TRANSACTION if plan.transaction else Stage.COMMIT
        rows: list[list[tuple[Any, ...]] | None] = []
        node = backend = None
        self.deadline.arm(self._fileno)
        try:
            if plan.transaction:
                await self.conn.execute("BEGIN")
            for st in plan.statements:
                cur = await self.conn.execute(st.sql, st.params)
                rows.append(await cur.fetchall() if cur.description else None)
            if plan.identify:
                node, backend = await (await self.conn.execute(self._identity.sql)).fetchone()
            if plan.transaction:
                stage = Stage.COMMIT
                await self.conn.execute("COMMIT")
        except psycopg.Error as e:
            self.deadline.disarm()
            error = self._classify(e, stage)
            await self._after_error()
            return self._error(inv, error, idempotent=plan.idempotent)
        except BaseException as e:  # includes task cancellation: the outcome is unknown
            self.deadline.disarm()
            self._bug(inv, e)
            raise
        self.deadline.disarm()
        return self._ok(inv, plan.result(rows), node, backend, rows)

    async def _after_error(self) -> None:
        if self.conn is None or self.conn.closed:
            return
        if self.deadline.fired or self.conn.broken:
            await self.conn.close()
            return
        try:
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                await self.conn.execute("ROLLBACK")
        except psycopg.Error:
            await self.conn.close()

    async def write(self, write_id: int) -> Result:
        return await self.run(write_plan(write_id, self.table))

    async def read(self) -> Result:
        return await self.run(read_plan(self.table))

    async def final_read(self) -> Result:
        return await self.run(read_plan(self.table, "final_read"))

    async def backend_id(self) -> Result:
        return await self.run(backend_plan())

    async def set_state(self, kind: str, name: str, value: Any = True) -> Result:
        return await self.run(set_state_plan(kind, name, value))

    async def read_state(self, kind: str, name: str) -> Result:
        return await self.run(read_state_plan(kind, name))

    async def idle_probe(self) -> Result:
        return await self.run(idle_probe_plan())

    async def execute(self, f: str, sql: str, params: Any = None, **kwargs: Any) -> Result:
        return await self.run(statement_plan(f, sql, params, **kwargs))

    async def close(self) -> None:
        self.deadline.disarm()
        if self.conn is not None:
            await self.conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
