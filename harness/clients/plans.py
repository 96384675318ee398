"""Requests as data, and the statements a request sends, worked out without a connection.

A :class:`Plan` describes one recorded request: the statements to run, whether inside one
transaction, how the serving instance and backend connection are learnt, and whether it is
idempotent.  :func:`steps` is a sans-I/O generator: it yields each statement of a plan with the
:class:`~harness.clients.outcomes.Stage` the request is at while that statement runs, takes the
rows back, and returns what the request came to.  A driver adapter only sends what it is given, so
the SQL of every operation is tested without a server.

The engine's words (quoting, the identity query, session-state SQL) come from a
:class:`~harness.clients.dialects.base.Dialect`; the plan builders here are engine-neutral.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from harness.clients.outcomes import Stage
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.clients.dialects.base import Dialect

DEFAULT_TABLE = "harness_writes"

Rows = list[tuple[Any, ...]]


class ClientError(HarnessError):
    """Root of the recording clients' errors: misuse (bad arguments, an unsupported operation)."""


WHO_COLUMNS = 3
"""How many trailing columns :meth:`~harness.clients.dialects.base.Dialect.who` adds: instance id, backend connection id, writable."""


def role_of(writable: Any) -> str | None:
    """``writer`` or ``reader`` from a :attr:`~harness.clients.dialects.base.Dialect.writable_expression` cell (None when unknown)."""
    if writable is None:
        return None
    if isinstance(writable, (bytes, bytearray)):
        writable = writable.decode()
    if isinstance(writable, str):
        writable = writable.strip().upper() in ("1", "T", "TRUE", "ON", "YES")
    return "writer" if bool(writable) else "reader"


ABSENT: Rows = [(0,)]
"""The rows a statement stands for when it fails with one of its ``absent_on_error`` codes."""


@dataclasses.dataclass(frozen=True)
class Statement:
    """One statement; ``absent_on_error`` lists server error codes that answer it rather than fail it.

    Some engines can only say an object is missing by refusing to read it (MySQL: no such
    temporary table, no such prepared statement).  Such an error is the answer "absent": the
    statement then counts as having returned :data:`ABSENT`, and the request goes on."""

    sql: str
    params: Sequence[Any] | None = None
    absent_on_error: tuple[str, ...] = ()


class Identify(str, enum.Enum):
    """How a request learns who served it (``node``) and on which backend connection (``backend``)."""

    NONE = "none"
    STATEMENT = "statement"
    """The identity query runs as the transaction's last statement, before COMMIT."""
    TRAILING = "trailing"
    """The request's own last row ends with the identity columns (:attr:`Dialect.who`): one batch in
    autocommit mode, so the proxy sees exactly the statements the caller wrote."""


def _rows_value(rows: list[Rows | None]) -> Any:
    return None


@dataclasses.dataclass(frozen=True)
class Plan:
    """One recorded request, as data.

    * ``statements`` run in order; with ``transaction`` they run between BEGIN and COMMIT, so a
      lost connection before COMMIT is a definite failure and one during COMMIT is not;
    * ``identify`` says how ``node`` and ``extra["backend"]`` are learnt (:class:`Identify`);
      ``True`` means :attr:`Identify.STATEMENT`;
    * ``result`` turns the rows of every statement (a list per statement; ``None`` for a statement
      without a result set) into the value recorded on ``ok`` and returned to the caller;
    * ``idempotent`` requests (reads) never end ``info``: see :mod:`harness.clients.outcomes`;
    * ``in_open_transaction`` plans run inside a transaction the caller already opened: no BEGIN or
      COMMIT of their own, and the identity query still runs in that same transaction.
    """

    f: str
    value: Any
    statements: tuple[Statement, ...]
    transaction: bool = True
    identify: Identify | bool = True
    idempotent: bool = False
    result: Callable[[list[Rows | None]], Any] = _rows_value
    invoke_extra: dict[str, Any] | None = None
    in_open_transaction: bool = False

    def __post_init__(self) -> None:
        if not self.f:
            raise ClientError("a request needs an operation name (f)")
        mode = Identify.STATEMENT if self.identify is True else Identify.NONE if self.identify is False \
            else Identify(self.identify)
        object.__setattr__(self, "identify", mode)
        if self.transaction and self.in_open_transaction:
            raise ClientError(f"{self.f}: a plan inside an open transaction cannot open its own")
        if mode is Identify.STATEMENT and not (self.transaction or self.in_open_transaction):
            # Without a transaction a pooler may run the identity query on another backend.
            raise ClientError(f"{self.f}: identifying the serving instance needs a transaction")


@dataclasses.dataclass(frozen=True)
class Step:
    """One statement to send, and how far the request is while it runs."""

    sql: str
    params: Sequence[Any] | None
    stage: Stage
    absent_on_error: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Completed:
    """What a request that raised nothing came to."""

    value: Any
    node: str | None = None
    backend: int | None = None
    rows: list[Rows | None] | None = None
    note: str | None = None
    role: str | None = None
    """``writer`` or ``reader`` as the serving instance reported it (None when not asked)."""


def as_text(value: Any) -> Any:
    """Drivers hand some strings back as bytes (PyMySQL's system variables)."""
    return value.decode() if isinstance(value, (bytes, bytearray)) else value


def steps(plan: Plan, dialect: Dialect, identity_query: str) -> Generator[Step, Rows | None, Completed]:
    """The statements of ``plan`` in order; send each one's rows back in, get :class:`Completed`."""
    stage = Stage.IN_TRANSACTION if plan.transaction or plan.in_open_transaction else Stage.COMMIT
    if plan.transaction:
        yield Step("BEGIN", None, stage)
    rows: list[Rows | None] = []
    for st in plan.statements:
        rows.append((yield Step(st.sql, st.params, stage, st.absent_on_error)))
    node = backend = writable = None
    if plan.identify is Identify.STATEMENT:
        ident = yield Step(dialect.identity_sql(identity_query), None, stage)
        node, backend, writable = ident[0] if ident else (None, None, None)
    if plan.transaction:
        yield Step("COMMIT", None, Stage.COMMIT)
    if plan.identify is Identify.TRAILING:
        last = rows[-1] if rows else None
        if not last or len(last[0]) < WHO_COLUMNS:
            return Completed(plan.value, rows=rows, note="no identity columns in the result")
        node, backend, writable = last[0][-WHO_COLUMNS:]
    return Completed(plan.result(rows), as_text(node), backend, rows, role=role_of(writable))


# -- checks ----------------------------------------------------------------------------------------
def check_table_name(table: str) -> str:
    """Table names are written into SQL, so only plain identifiers are accepted."""
    if not isinstance(table, str) or not table.isidentifier() or not table.isascii() or len(table) > 60:
        raise ClientError(f"table name must be a plain ASCII identifier, got {table!r}")
    return table


def check_write_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ClientError(f"a write id must be a non-negative 64-bit integer, got {value!r}")
    return value


def ids_from_rows(rows: Rows | None) -> list[int]:
    return [int(r[0]) for r in rows or []]


# -- plans -----------------------------------------------------------------------------------------
def create_table_statement(dialect: Dialect, table: str = DEFAULT_TABLE) -> Statement:
    return Statement(dialect.create_table_sql(dialect.quote(table)))


def write_plan(dialect: Dialect, write_id: int, table: str = DEFAULT_TABLE) -> Plan:
    write_id = check_write_id(write_id)
    return Plan("write", write_id,
                (Statement(f"INSERT INTO {dialect.quote(table)} (id) VALUES (%s)", (write_id,)),),
                result=lambda rows: write_id)


def point_read_plan(dialect: Dialect, who: str, write_id: int, table: str = DEFAULT_TABLE) -> Plan:
    """One row by primary key and who served it (``who``: :meth:`Dialect.who`'s columns), in a single
    autocommit statement: one round trip, what a read-heavy application sends.

    The row is read by a scalar subquery, so the answer is always one row that carries the identity
    columns (the id, or NULL when no such row): a miss still says which instance served it, and
    routing stays judgeable.  Recorded value: ``[id]`` or ``[]``."""
    write_id = check_write_id(write_id)
    sql = f"SELECT (SELECT id FROM {dialect.quote(table)} WHERE id = %s), {who}"
    return request_plan("point_read", sql, (write_id,), value=write_id,
                        result=lambda row: [] if row[0] is None else [int(row[0])])


def read_plan(dialect: Dialect, table: str = DEFAULT_TABLE, f: str = "read") -> Plan:
    return Plan(f, None, (Statement(f"SELECT id FROM {dialect.quote(table)} ORDER BY id"),), idempotent=True,
                result=lambda rows: ids_from_rows(rows[0]))


def set_state_plan(dialect: Dialect, kind: str, name: str, value: Any = True) -> Plan:
    """Create session state of ``kind`` named ``name`` (``value`` is only used by settings).

    Advisory locks are only tried, never waited for; the completion says whether it was taken."""
    stmt = dialect.set_state(kind, name, value)
    recorded = {"kind": kind, "name": dialect.state_label(kind, name), "value": value if kind in dialect.valued_kinds else True}

    def made(rows: list[Rows | None]) -> dict[str, Any]:
        if kind == "advisory_lock":
            first = rows[0]
            return {**recorded, "value": bool(first[0][0]) if first else False}
        return recorded

    return Plan("set_state", recorded, (stmt,), result=made)


def read_state_plan(dialect: Dialect, kind: str, name: str) -> Plan:
    """Observe session state of ``kind`` named ``name``: the setting's value, or whether it exists."""
    stmt = dialect.read_state(kind, name)
    label = dialect.state_label(kind, name)

    def observed(rows: list[Rows | None]) -> dict[str, Any]:
        first = rows[0]
        return {"kind": kind, "name": label, "value": dialect.state_value(kind, first[0][0] if first else None)}

    return Plan("read_state", {"kind": kind, "name": label}, (stmt,), idempotent=True, result=observed)


def find_state_plan(dialect: Dialect, kind: str, prefix: str, own: str) -> Plan:
    """Look for any state of ``kind`` whose name starts with ``prefix`` in this session.

    Recorded as a ``read_state`` of ``own``: another client's object if one is present (a leak,
    named so the checker can say whose), else whether ``own`` is.  When the server cannot list
    them just now (the statement answers NULL) the value is None and ``unjudged`` says why.
    """
    stmt = dialect.find_state(kind, prefix)
    own = dialect.state_label(kind, own)

    def observed(rows: list[Rows | None]) -> dict[str, Any]:
        raw = rows[0][0][0] if rows[0] else None
        if raw is None:  # the server cannot list them now: no observation, and the record says so
            return {"kind": kind, "name": own, "value": None, "unjudged": dialect.not_listable_reason(kind)}
        found = [as_text(n) for n in dialect.decode_array(raw)]
        others = sorted(n for n in found if n != own)
        if others:
            return {"kind": kind, "name": others[0], "value": True}
        return {"kind": kind, "name": own, "value": own in found}

    return Plan("read_state", {"kind": kind, "name": own}, (stmt,), idempotent=True, result=observed)


def in_open_transaction(plan: Plan) -> Plan:
    """``plan`` for a session that is already inside a transaction it opened itself."""
    return dataclasses.replace(plan, transaction=False, in_open_transaction=True)


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


def request_plan(f: str, sql: str, params: Sequence[Any] | None = None, *, value: Any = None,
                 result: Callable[[tuple[Any, ...]], Any] | None = None, idempotent: bool = True,
                 extra: dict[str, Any] | None = None) -> Plan:
    """``sql`` whose last row ends with the identity columns (:attr:`Identify.TRAILING`), in autocommit.

    ``result`` turns that row's leading columns into the recorded value (default: ``value``).
    """
    if not isinstance(sql, str) or not sql.strip():
        raise ClientError("a request needs a non-empty SQL string")

    def outcome(rows: list[Rows | None]) -> Any:
        return result(tuple(rows[-1][0][:-WHO_COLUMNS])) if result is not None else value

    return Plan(f, value, (Statement(sql, params),), transaction=False, identify=Identify.TRAILING,
                idempotent=idempotent, result=outcome, invoke_extra=extra)
