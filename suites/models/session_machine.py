"""A state machine of several clients using the proxy, checked step by step against a model.

Each client runs a random sequence of BEGIN, COMMIT, ROLLBACK, SET, temporary-table DDL and
inserts, SQL prepared statements, session advisory locks, plain queries and disconnects, through
the writer endpoint.  A client may also be of a kind whose driver prepares its parameterised query
as a protocol-level statement (``Dialect.protocol_pin_cases`` that are ``in_model``: psycopg's
default prepare threshold or ``prepare=True``; Connector/Python's prepared cursor, COM_STMT_PREPARE
then execution by id), which it then runs again across transactions: the statement must still be
there for it, and never be seen by another client.  The model says what every statement must return
for a client that owns a private database session, which is exactly what a transparent pooling proxy must provide.  Any
difference - including seeing another client's setting, table, statement or lock - fails the run;
Hypothesis shrinks the sequence and the failure prints the SQL steps (``note``) to replay it.

The SQL of session state comes from the engine's dialect, and so does what the model expects of a
ROLLBACK: PostgreSQL undoes a setting and a temporary table created in the transaction, MySQL
keeps both and undoes only the table's rows (``Dialect.transactional_session_state``).  Rules for
a kind of state the engine does not have are never drawn; advisory locks are listed where the
server can list them, and otherwise only the client's own lock is asked for.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from harness.clients.client import Client
from harness.clients.plans import (
    Plan,
    find_state_plan,
    in_open_transaction,
    read_state_plan,
    request_plan,
    set_state_plan,
)

CLIENTS = 3
TAG = "harness.model_tag"
TEMP_TABLE = "harness_model_t"
PREPARED = "harness_model_ps"


class ModelMismatch(AssertionError):
    """The proxy answered differently from what a private session would have."""


@dataclasses.dataclass
class ClientModel:
    """What one client's own database session holds, as far as the model knows."""

    tag: str | None = None
    temp_table: bool = False
    temp_rows: int = 0
    prepared: bool = False
    locks: int = 0
    in_txn: bool = False
    # State to restore when the open transaction rolls back.
    saved: tuple[str | None, bool, int] | None = None


class ProxySessions(RuleBasedStateMachine):
    """Bind ``clients`` (the suites' client factory) with :func:`machine_for` before running it."""

    clients: ClassVar[Any] = None
    failures: ClassVar[list[tuple[str, list[str]]]] = []
    """Every mismatch seen, with the SQL steps that led to it: against a leaking proxy the replay
    during shrinking may not fail the same way, so the steps are kept as they happened."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[Client | None] = [None] * CLIENTS
        self.models = [ClientModel() for _ in range(CLIENTS)]
        self.kinds: list[Any] = [None] * CLIENTS  # each client's ProtocolPinCase, or None: plain
        self.steps: list[str] = []

    # -- plumbing ----------------------------------------------------------------------------
    def _send(self, c: int, plan: Plan) -> Any:
        """Run one planned request for client ``c``; inside its open transaction if it has one."""
        session = self.sessions[c]
        assert session is not None
        if self.models[c].in_txn and plan.transaction:
            plan = in_open_transaction(plan)
        sql = "; ".join(st.sql for st in plan.statements)
        line = f"-- client {c} ({session.process}): {sql}"
        op = session.run(plan)
        note(f"{line}  => {op.type.value} {op.value if op.ok else op.error}")
        self.steps.append(line)
        if not op.ok:
            self._mismatch(f"client {c}: {sql!r} failed through the proxy: {op.error}")
        return op.value

    def _run(self, c: int, f: str, sql: str, *, value: Any = None, result=None) -> Any:
        """``sql`` as written, its last row ending with the identity columns."""
        return self._send(c, request_plan(f, sql, value=value, result=result, idempotent=False))

    @property
    def who(self) -> str:
        return self.clients.who

    @property
    def dialect(self) -> Any:
        return self.clients.dialect

    def _expect(self, c: int, what: str, got: Any, want: Any) -> None:
        if got != want:
            self._mismatch(f"client {c}: {what} is {got!r} through the proxy; a private session has {want!r}")

    def has(self, kind: str) -> bool:
        return kind in self.dialect.state_kinds

    def _mismatch(self, message: str) -> None:
        self.failures.append((message, list(self.steps)))
        raise ModelMismatch(message)

    def connected(self, c: int) -> bool:
        return self.sessions[c] is not None

    # -- rules -------------------------------------------------------------------------------
    @initialize()
    def connect_everyone(self) -> None:
        for c in range(CLIENTS):
            self.connect(c)

    @rule(c=st.integers(0, CLIENTS - 1), kind=st.integers(0, 3))
    def connect(self, c: int, kind: int = 0) -> None:
        if self.sessions[c] is not None:
            return
        kinds = [None, *((n, k) for n, k in self.dialect.protocol_pin_cases(self.who).items() if k.in_model)]
        chosen = kinds[kind % len(kinds)]
        options = chosen[1].options if chosen else {}
        session = self.clients("writer", connect=False, **options)
        named = f" with {chosen[0]}" if chosen else ""
        op = session.connect()
        note(f"-- client {c}: connect as {session.process}{named} => {op.type.value}")
        self.steps.append(f"-- client {c}: connect (as {session.process}){named}")
        self.kinds[c] = chosen[1] if chosen else None
        if not op.ok:
            self._mismatch(f"client {c} could not connect: {op.error}")
        self.sessions[c] = session
        self.models[c] = ClientModel()

    @precondition(lambda self: any(self.sessions))
    @rule(c=st.integers(0, CLIENTS - 1))
    def disconnect(self, c: int) -> None:
        if self.sessions[c] is None:
            return
        note(f"-- client {c}: disconnect (leaving its session state behind)")
        self.steps.append(f"-- client {c}: disconnect")
        self.sessions[c].close()
        self.sessions[c] = None

    @rule(c=st.integers(0, CLIENTS - 1))
    def begin(self, c: int) -> None:
        m = self.models[c]
        if not self.connected(c) or m.in_txn:
            return
        self._run(c, "txn", f"BEGIN; SELECT {self.who}")
        m.in_txn, m.saved = True, (m.tag, m.temp_table, m.temp_rows)

    @rule(c=st.integers(0, CLIENTS - 1), commit=st.booleans())
    def end(self, c: int, commit: bool) -> None:
        m = self.models[c]
        if not self.connected(c) or not m.in_txn:
            return
        self._run(c, "txn", f"{'COMMIT' if commit else 'ROLLBACK'}; SELECT {self.who}")
        if not commit and m.saved is not None:
            tag, temp_table, temp_rows = m.saved
            if self.dialect.transactional_session_state:
                m.tag, m.temp_table, m.temp_rows = tag, temp_table, temp_rows
            else:  # the setting and the table stay; the rows inserted in the transaction go
                m.temp_rows = temp_rows if temp_table else 0
        m.in_txn, m.saved = False, None

    @rule(c=st.integers(0, CLIENTS - 1), n=st.integers(0, 99))
    def set_tag(self, c: int, n: int) -> None:
        if not self.connected(c):
            return
        tag = f"{self.sessions[c].process}-{n}"
        self._send(c, set_state_plan(self.dialect, "setting", TAG, tag))
        self.models[c].tag = tag

    @rule(c=st.integers(0, CLIENTS - 1))
    def show_tag(self, c: int) -> None:
        if not self.connected(c):
            return
        got = self._send(c, read_state_plan(self.dialect, "setting", TAG))
        self._expect(c, TAG, got["value"] or None, self.models[c].tag)

    @precondition(lambda self: self.has("temp_table"))
    @rule(c=st.integers(0, CLIENTS - 1))
    def create_temp(self, c: int) -> None:
        if not self.connected(c):
            return
        self._send(c, set_state_plan(self.dialect, "temp_table", TEMP_TABLE))
        m = self.models[c]
        if not m.temp_table:
            m.temp_table, m.temp_rows = True, 0

    @rule(c=st.integers(0, CLIENTS - 1))
    def insert_temp(self, c: int) -> None:
        if not self.connected(c) or not self.models[c].temp_table:
            return
        self._run(c, "write", f"INSERT INTO harness_model_t VALUES (1); SELECT {self.who}")
        self.models[c].temp_rows += 1

    @precondition(lambda self: self.has("temp_table"))
    @rule(c=st.integers(0, CLIENTS - 1))
    def check_temp(self, c: int) -> None:
        if not self.connected(c):
            return
        got = self._send(c, read_state_plan(self.dialect, "temp_table", TEMP_TABLE))
        m = self.models[c]
        self._expect(c, "the temporary table's existence", got["value"], m.temp_table)
        if m.temp_table:
            rows = self._run(c, "read", f"SELECT count(*), {self.who} FROM harness_model_t", result=lambda row: row[0])
            self._expect(c, "the temporary table's row count", rows, m.temp_rows)

    @precondition(lambda self: self.has("prepared_statement"))
    @rule(c=st.integers(0, CLIENTS - 1))
    def prepare(self, c: int) -> None:
        m = self.models[c]
        if not self.connected(c) or m.prepared or m.in_txn:
            return
        self._send(c, set_state_plan(self.dialect, "prepared_statement", PREPARED))
        m.prepared = True

    @precondition(lambda self: self.has("prepared_statement"))
    @rule(c=st.integers(0, CLIENTS - 1))
    def check_prepared(self, c: int) -> None:
        if not self.connected(c):
            return
        got = self._send(c, read_state_plan(self.dialect, "prepared_statement", PREPARED))
        self._expect(c, f"prepared statement {PREPARED}", got["value"], self.models[c].prepared)

    @precondition(lambda self: self.has("advisory_lock"))
    @rule(c=st.integers(0, CLIENTS - 1))
    def lock(self, c: int) -> None:
        m = self.models[c]
        if not self.connected(c) or m.in_txn:
            return
        got = self._send(c, set_state_plan(self.dialect, "advisory_lock", self.sessions[c].process))
        self._expect(c, f"the advisory lock {got['name']}", got["value"], True)
        m.locks += 1

    @precondition(lambda self: self.has("advisory_lock"))
    @rule(c=st.integers(0, CLIENTS - 1))
    def check_locks(self, c: int) -> None:
        if not self.connected(c):
            return
        own = self.sessions[c].process
        got = None
        if "advisory_lock" in self.dialect.listable_kinds:
            got = self._send(c, find_state_plan(self.dialect, "advisory_lock", "", own))
        if got is None or got["value"] is None:  # the server cannot list locks: ask for the own one
            got = self._send(c, read_state_plan(self.dialect, "advisory_lock", own))
        held = got["value"] if got["name"] == self.dialect.state_label("advisory_lock", own) else "another's"
        self._expect(c, "advisory locks held by the session", held, bool(self.models[c].locks))

    @rule(c=st.integers(0, CLIENTS - 1), n=st.integers(0, 1000))
    def query(self, c: int, n: int) -> None:
        if not self.connected(c):
            return
        got = self._run(c, "read", f"SELECT {n} + 1, {self.who}", result=lambda row: row[0])
        self._expect(c, f"SELECT {n} + 1", got, n + 1)

    @rule(c=st.integers(0, CLIENTS - 1), times=st.integers(1, 7))
    def protocol_query(self, c: int, times: int) -> None:
        """The client's parameterised query, run ``times`` times: enough for psycopg's threshold to
        prepare it, and once prepared it is run by name or id, wherever the client's transaction is."""
        case = self.kinds[c]
        if not self.connected(c) or case is None:
            return
        for _ in range(times):
            plan = request_plan("read", case.sql, case.params, result=lambda row: row[0], idempotent=False)
            got = self._send(c, plan)
            self._expect(c, f"{case.sql} with {case.params}", got, case.params[0])

    @invariant()
    def nothing_outstanding(self) -> None:
        assert not self.clients.recorder.outstanding(), "a request was left without an outcome"

    def teardown(self) -> None:
        for s in self.sessions:
            if s is not None:
                s.close()


def machine_for(clients: Any) -> type[ProxySessions]:
    """A subclass bound to the test's clients, and so to one history (the state machine API takes a class)."""
    return type("BoundProxySessions", (ProxySessions,), {"clients": clients, "failures": []})


def shortest_failure(machine: type[ProxySessions]) -> str:
    """The shortest recorded failing step sequence, as text to replay by hand (empty if none)."""
    if not machine.failures:
        return ""
    message, steps = min(machine.failures, key=lambda f: len(f[1]))
    return "\n".join(["SQL steps of the shortest failing sequence seen:", *steps, f"=> {message}"])
