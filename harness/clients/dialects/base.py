"""What an engine contributes to a request: quoting, who served it, and session state.

A dialect holds no connection and does no I/O; it only spells statements, so that the plans of
:mod:`harness.clients.plans` stay engine-neutral and every statement is testable without a server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from harness.clients.outcomes import Classifier
from harness.clients.plans import ClientError, Statement, check_table_name


@dataclasses.dataclass(frozen=True)
class ProtocolPinCase:
    """A client whose driver prepares ``sql`` as a named protocol statement that outlives its
    transaction: ``options`` are the client's driver options (e.g. psycopg's ``prepare=True`` or its
    default ``prepare_threshold``), and the ``runs``-th execution of ``sql`` (with ``params``) is
    the one that leaves the statement open, so the session pins there."""

    options: dict[str, Any]
    sql: str
    params: tuple[Any, ...]
    runs: int
    in_model: bool = True
    """Whether the session model (suites/models) draws clients of this kind too."""


class Dialect:
    """One engine's spelling.  Subclasses set the class attributes and the state statements."""

    engine: str
    quote_char: str
    backend_function: str
    """Returns the backend connection id of the current session (``pg_backend_pid()``...)."""
    max_connections_sql: str
    """One row, one column: the server's connection limit, the base of a proxy's pool cap."""
    server_version_sql: str
    """One row, one column: the server's version text (for the run's description)."""
    writable_expression: str
    """True when the instance asked takes writes (it is, or just became, the writer): how a request
    learns the role of whoever served it, with no access to the instances behind a proxy."""
    table_options: str = ""
    begin_sql: str = "BEGIN"
    """The statement that opens a transaction in a multi-statement request."""
    state_kinds: tuple[str, ...] = ()
    valued_kinds: tuple[str, ...] = ("setting", "session_variable")
    """The state kinds that hold a value (set and read back) rather than an object that exists or
    not; the checkers' :data:`harness.checkers.state_ops.VALUED_KINDS`."""
    listable_kinds: tuple[str, ...] = ()
    """The state kinds whose objects a session can list by name (:meth:`find_state`); a leak of
    another kind can only be seen by a client that knows the leaked object's name."""
    pinning_reads: tuple[str, ...] = ()
    """State kinds whose *read* statement itself pins a session on RDS Proxy (MySQL's ``EXECUTE``):
    a workload that reads them before creating its own state would pin every session early and
    hide a proxy that fails to pin on something else."""
    transactional_session_state: bool = True
    """Whether ROLLBACK undoes a setting or a temporary table created in the transaction
    (PostgreSQL); MySQL keeps both (only the temporary table's rows roll back)."""
    iam_tls_refusals: tuple[str, ...] = ()
    """RDS Proxy's documented texts refusing an IAM login made without TLS; a refusal must contain
    one of them.  ``{user}`` stands for the user who tried to log in."""
    require_tls_refusals: tuple[str, ...] = ("This RDS Proxy requires TLS connections.",)
    """RDS Proxy's text refusing a plaintext client when RequireTLS is on (both engines; MySQL sends
    it as ERROR 3159)."""
    iam_token_refusals: tuple[str, ...] = ()
    """RDS Proxy's documented texts refusing an IAM token (expired, forged, for someone or somewhere
    else, or a password instead of a token); ``{user}`` as above."""
    cancelled_codes: tuple[str, ...] = ()
    """Error codes (as recorded) of a statement its session's cancel stopped: PostgreSQL's
    ``query_canceled``, MySQL's ``Query execution was interrupted``."""
    interrupted_sleep_value: Any = None
    """What the sleep of :meth:`cancellable_sleep_sql` answers when a cancel interrupts it without an
    error (MySQL 8 documents 1 for a statement that calls nothing but SLEEP), None when it never does."""
    classify: Classifier

    def quote(self, name: str) -> str:
        """A quoted identifier; names are restricted so no escaping is ever needed."""
        return self.quote_char + check_table_name(name) + self.quote_char

    @property
    def writer_check_sql(self) -> str:
        """One row, one column: whether the instance asked takes writes, in a statement a pooler
        routes as it routes writes where the engine has one (:attr:`writable_expression` here)."""
        return f"SELECT {self.writable_expression}"

    def who(self, identity_query: str) -> str:
        """:data:`~harness.clients.plans.WHO_COLUMNS` select-list columns: the serving instance, the backend connection, and
        whether that instance takes writes (its role as it reports it).

        A query that only selects an expression (``SELECT aurora_db_instance_identifier()``) gives
        the bare expression, so the SQL a suite sends reads as written by hand."""
        upper = identity_query.upper()
        if upper.startswith("SELECT ") and " FROM " not in upper and "," not in identity_query:
            return f"{identity_query[len('SELECT '):].strip()}, {self.backend_function}, {self.writable_expression}"
        return f"({identity_query}), {self.backend_function}, {self.writable_expression}"

    def identity_sql(self, identity_query: str) -> str:
        """One statement returning :meth:`who`'s columns for the current session."""
        return f"SELECT ({identity_query}), {self.backend_function}, {self.writable_expression}"

    def create_table_sql(self, quoted: str) -> str:
        return f"CREATE TABLE IF NOT EXISTS {quoted} (id BIGINT PRIMARY KEY){self.table_options}"

    def create_ledger_sql(self, quoted: str) -> str:
        """A table of write ids that keeps every copy of an id (no key), so that a write applied twice
        shows in the final read; a negative id breaks its CHECK, which is how a write is made to fail
        definitely (the whole statement is refused, the other ids in it too)."""
        return f"CREATE TABLE IF NOT EXISTS {quoted} (id BIGINT NOT NULL CHECK (id >= 0)){self.table_options}"

    def insert_identified_sql(self, table: str, who: str, rows: int = 1) -> str:
        """Insert ``rows`` ids (one ``%s`` each) into ``table`` in one statement, and answer with
        ``who``'s columns, in one request."""
        raise NotImplementedError

    def sleep_sql(self, seconds: float) -> str:
        """One statement that keeps the session busy on the server for ``seconds``."""
        raise NotImplementedError

    def sleep_expression(self, seconds: float) -> str:
        """An expression that keeps the server busy for ``seconds``."""
        raise NotImplementedError

    def cancellable_sleep_sql(self, seconds: float, who: str) -> str:
        """One statement that sleeps ``seconds`` on the server and then answers the sleep's value
        and ``who``'s columns, and that a cancel stops with an error (:attr:`cancelled_codes`).  The
        sleep is one column among others on purpose: MySQL 8 answers a cancelled statement that is
        nothing but ``SLEEP()`` with 1 and no error, and MariaDB a cancelled ``DO SLEEP()`` with OK."""
        return f"SELECT {self.sleep_expression(seconds)}, {who}"

    def lingering_write_sql(self, table: str, who: str, write_id: int, seconds: float, *,
                            commit_first: bool) -> str:
        """One request that inserts ``write_id`` into ``table`` in its own transaction and keeps the
        server busy for ``seconds``: after the COMMIT (``commit_first``: a fault then cuts a write that
        already took effect, whose reply is lost) or before it (a fault cuts a write still in flight,
        which must not take effect).  Then ``who``'s columns.  The id is written into the text (an
        integer, checked), because PostgreSQL takes several statements in one request only without
        parameters."""
        if isinstance(write_id, bool) or not isinstance(write_id, int):
            raise ClientError(f"a write id is an integer, got {write_id!r}")
        insert = f"INSERT INTO {self.quote(table)} VALUES ({write_id})"
        middle = (f"{insert}; COMMIT; {self.sleep_sql(seconds)}" if commit_first
                  else f"{insert}; {self.sleep_sql(seconds)}; COMMIT")
        return f"{self.begin_sql}; {middle}; SELECT {who}"

    @staticmethod
    def values_rows(rows: int) -> str:
        """``(%s), (%s)...``: the VALUES list of :meth:`insert_identified_sql`."""
        if rows < 1:
            raise ClientError(f"an insert needs at least one row, got {rows}")
        return ", ".join(["(%s)"] * rows)

    def array_agg(self, expression: str) -> str:
        """An aggregate of ``expression`` over the rows as one cell (empty, never NULL, for no rows);
        :meth:`decode_array` turns the cell into a list."""
        raise NotImplementedError

    def decode_array(self, raw: Any) -> list[Any]:
        """The list held by a cell of :meth:`array_agg` or :meth:`find_state`."""
        return list(raw)

    def backend_count_sql(self, who: str, excluded_programs: Sequence[str],
                          users: Sequence[str] | None = None) -> str:
        """One row: how many connections of ``users`` (default: the current user) the server holds,
        leaving out this one and those whose program (application) name is in ``excluded_programs``,
        then ``who``'s columns.  The count is NULL when the server cannot tell programs apart: a
        count that included the excluded connections would be wrong, not approximate."""
        raise NotImplementedError

    # -- session state: the isolation checker's vocabulary ----------------------------------------
    def _check_kind(self, kind: str) -> None:
        if kind not in self.state_kinds:
            raise self.unsupported(kind)

    def unsupported(self, kind: str) -> ClientError:
        return ClientError(f"unknown session state kind {kind!r}; known: {', '.join(self.state_kinds)}")

    def state_label(self, kind: str, name: str) -> str:
        """The name under which the server reports an object of ``kind`` (and the history records it)."""
        return name

    def set_state(self, kind: str, name: str, value: Any) -> Statement:
        raise NotImplementedError

    def read_state(self, kind: str, name: str) -> Statement:
        raise NotImplementedError

    def find_state(self, kind: str, prefix: str) -> Statement:
        """One row, one column: the names of this session's objects of ``kind`` starting with ``prefix``
        (see :meth:`decode_array`), or NULL when the server cannot list them now."""
        raise self.unsupported(kind)

    def not_listable_reason(self, kind: str) -> str:
        """Why objects of ``kind`` cannot be listed on this engine (for reports of what was not judged)."""
        return f"{self.engine} cannot list a session's {kind} objects by name"

    def own_session_variable(self, process: str) -> tuple[str, str] | None:
        """A server variable at session scope and a value for it particular to client ``process``,
        for the ``session_variable`` state kind; None when the engine has no such kind (PostgreSQL's
        ``setting`` already is a SET of a session variable)."""
        return None

    def pin_cases(self, who: str) -> tuple[dict[str, str], dict[str, str]]:
        """Requests that must pin a session to its backend, and look-alikes that must not, by name.

        Each is one batch whose last row ends with ``who``'s columns (a trailing-identity request)."""
        raise ClientError(f"no pinning cases are known for {self.engine}")

    def protocol_pin_cases(self, who: str) -> dict[str, ProtocolPinCase]:
        """Sessions pinned by their driver's protocol-level prepared statements, by name: nothing in
        the SQL pins, the client's own driver settings do (see :class:`ProtocolPinCase`)."""
        return {}

    def state_value(self, kind: str, raw: Any) -> Any:
        """A read's raw column as the value recorded for the checker."""
        return raw
