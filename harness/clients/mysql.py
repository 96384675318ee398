"""A recording client for MySQL-protocol targets through PyMySQL (synchronous only).

The same model as :mod:`harness.clients.postgres`: one connection, one history process, every
request recorded and classified (:func:`harness.clients.outcomes.classify_pymysql`), data
operations inside one explicit transaction that also reads ``@@report_host`` (the target's identity
query) and ``CONNECTION_ID()``.

PyMySQL's own ``connect_timeout`` covers only the TCP connect, and a server that accepts but never
answers hangs a client with no ``read_timeout`` for ever; ``read_timeout`` therefore defaults to a
generous backstop, and ``op_timeout`` bounds each request as for PostgreSQL.  TLS is off unless
driver options ask for it: PyMySQL 1.2 otherwise negotiates it whenever the server offers it.

Session state for the isolation checker: ``setting`` is a user variable (``SET @name``) and
``advisory_lock`` is ``GET_LOCK``; temp tables, prepared statements and LISTEN have no reliable
way to be observed on MariaDB and raise :class:`ClientError`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Self

import pymysql

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
from harness.clients.outcomes import Stage, classify_pymysql
from harness.history import OpError, Recorder

DEFAULT_TABLE = "harness_writes"
STATE_KINDS = ("setting", "advisory_lock")


def _quoted(name: str) -> str:
    return "`" + check_table_name(name) + "`"


def create_table_statement(table: str = DEFAULT_TABLE) -> Statement:
    return Statement(f"CREATE TABLE IF NOT EXISTS {_quoted(table)} (id BIGINT PRIMARY KEY) ENGINE=InnoDB")


def write_plan(write_id: int, table: str = DEFAULT_TABLE) -> Plan:
    write_id = check_write_id(write_id)
    return Plan("write", write_id, (Statement(f"INSERT INTO {_quoted(table)} (id) VALUES (%s)", (write_id,)),),
                result=lambda rows: write_id)


def read_plan(table: str = DEFAULT_TABLE, f: str = "read") -> Plan:
    return Plan(f, None, (Statement(f"SELECT id FROM {_quoted(table)} ORDER BY id"),), idempotent=True,
                result=lambda rows: ids_from_rows(rows[0]))


def _unsupported(kind: str) -> ClientError:
    return ClientError(f"session state kind {kind!r} is not available for MySQL; "
                       f"supported: {', '.join(STATE_KINDS)}")


def set_state_plan(kind: str, name: str, value: Any = True) -> Plan:
    if kind == "setting":
        if not isinstance(value, str):
            raise ClientError(f"a setting's value must be a string, got {value!r}")
        stmt = Statement(f"SET @{check_table_name(name)} = %s", (value,))
    elif kind == "advisory_lock":
        stmt = Statement("SELECT GET_LOCK(%s, 0)", (name,))
    else:
        raise _unsupported(kind)
    recorded = {"kind": kind, "name": name, "value": value if kind == "setting" else True}
    return Plan("set_state", recorded, (stmt,), result=lambda rows: recorded)


def read_state_plan(kind: str, name: str) -> Plan:
    if kind == "setting":
        stmt = Statement(f"SELECT @{check_table_name(name)}")
    elif kind == "advisory_lock":
        stmt = Statement("SELECT COALESCE(IS_USED_LOCK(%s) = CONNECTION_ID(), 0)", (name,))
    else:
        raise _unsupported(kind)

    def observed(rows: list[Any]) -> dict[str, Any]:
        v = rows[0][0][0] if rows[0] else None
        if kind == "advisory_lock":
            v = bool(v)
        elif isinstance(v, (bytes, bytearray)):
            v = v.decode()
        return {"kind": kind, "name": name, "value": v}

    return Plan("read_state", {"kind": kind, "name": name}, (stmt,), idempotent=True, result=observed)


def idle_probe_plan() -> Plan:
    return Plan("idle_probe", None, (Statement("SELECT 1"),), idempotent=True, result=lambda rows: 1)


def backend_plan() -> Plan:
    return Plan("backend_id", None, (), idempotent=True)


def statement_plan(f: str, sql: str, params: Any = None, *, value: Any = None, idempotent: bool = False,
                   identify: bool = False, invoke_extra: dict[str, Any] | None = None) -> Plan:
    if not isinstance(sql, str) or not sql.strip():
        raise ClientError("execute needs a non-empty SQL string")
    return Plan(f, value, (Statement(sql, params),), transaction=identify, identify=identify,
                idempotent=idempotent, result=lambda rows: value, invoke_extra=invoke_extra)


class MySQLClient(RecordingMixin):
    """A synchronous recording client on one PyMySQL connection."""

    def __init__(self, recorder: Recorder, process: int | str, address: Address, *,
                 table: str = DEFAULT_TABLE, connect_timeout: float = 10, read_timeout: float | None = 300,
                 op_timeout: float | None = None, **driver_options: Any) -> None:
        if address.engine != "mysql":
            raise ClientError(f"a MySQL client cannot use a {address.engine} address")
        self.recorder, self.process, self.address = recorder, process, address
        self.table = check_table_name(table)
        self.deadline = SocketDeadline(op_timeout)
        self._connect_kwargs = {"host": address.host, "port": address.port, "user": address.user,
                                "password": address.password, "database": address.database,
                                "autocommit": True, "connect_timeout": connect_timeout,
                                "read_timeout": read_timeout, "write_timeout": read_timeout,
                                "ssl_disabled": True, **driver_options}
        self._identity = identity_statement("mysql", address.identity_query)
        self.conn: Any = None

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.open

    def _fileno(self) -> int | None:
        sock = getattr(self.conn, "_sock", None)
        try:
            return sock.fileno() if sock is not None else None
        except OSError:
            return None

    def _classify(self, exc: BaseException, stage: Stage) -> OpError:
        return classify_pymysql(exc, stage, timed_out=self.deadline.fired)

    def connect(self) -> Result:
        inv = self._invoke("connect")
        try:
            self.conn = pymysql.connect(**self._connect_kwargs)
        except pymysql.MySQLError as e:
            return self._error(inv, self._classify(e, Stage.CONNECT), idempotent=True)
        except BaseException as e:
            self._bug(inv, e)
            raise
        return self._ok(inv, None)

    def setup(self) -> None:
        """Create the writes table (not recorded)."""
        if not self.connected:
            raise ClientError("setup needs a connected client")
        with self.conn.cursor() as cur:
            cur.execute(create_table_statement(self.table).sql)

    def _execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]] | None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else None

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
                self._execute("BEGIN")
            for st in plan.statements:
                rows.append(self._execute(st.sql, st.params))
            if plan.identify:
                ident = self._execute(self._identity.sql)
                node, backend = ident[0] if ident else (None, None)
                if isinstance(node, (bytes, bytearray)):
                    node = node.decode()
            if plan.transaction:
                stage = Stage.COMMIT
                self._execute("COMMIT")
        except pymysql.MySQLError as e:
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
        if not self.connected:
            return
        if self.deadline.fired:
            self.close()
            return
        try:
            self._execute("ROLLBACK")
        except pymysql.MySQLError:
            self.close()

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
        return self.run(statement_plan(f, sql, params, **kwargs))

    def close(self) -> None:
        self.deadline.disarm()
        if self.conn is not None and self.conn.open:
            with contextlib.suppress(pymysql.MySQLError):
                self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
