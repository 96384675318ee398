"""MySQL's (and MariaDB's) spelling of the recording clients' statements.

Session state for the isolation checker:

* ``setting`` is a user variable (``SET @name``; a dotted setting name becomes ``@a_b``);
* ``session_variable`` is a system variable at session scope (``SET SESSION name``); the one each
  client sets is ``time_zone`` (:meth:`MySQLDialect.own_session_variable`), a variable RDS Proxy
  tracks rather than pins on, so a session keeps it only if the proxy matches backends by it;
* ``temp_table`` is a temporary table; reading a missing one fails with error 1146, which is the
  answer "absent" (:attr:`~harness.clients.plans.Statement.absent_on_error`);
* ``prepared_statement`` is an SQL prepared statement of ``SELECT 1``; executing a missing one
  fails with error 1243, again the answer "absent";
* ``advisory_lock`` is a named lock (``GET_LOCK``).

Only named locks can be *listed* (:meth:`MySQLDialect.find_state`, through the performance
schema's ``metadata_locks``, when the server instruments them); neither MySQL nor MariaDB lists a
session's temporary tables or SQL prepared statements by name, so a leak of those is seen only by
a client that asks for the leaked object's own name.  PostgreSQL's LISTEN has no counterpart.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

from harness.clients.dialects.base import Dialect, ProtocolPinCase
from harness.clients.outcomes import classify_pymysql
from harness.clients.plans import ClientError, Statement, as_text, check_table_name

NO_SUCH_TABLE = "1146"
UNKNOWN_PREPARED_STATEMENT = "1243"

def _nothing_lost(*counters: str) -> str:
    """True while the performance schema has dropped none of the rows these status counters count
    (a table that ran out of room silently misses rows); NULL, never true, when it cannot say."""
    names = ", ".join(f"'Performance_schema_{c}_lost'" for c in counters)
    return (f"(SELECT SUM(VARIABLE_VALUE) FROM performance_schema.global_status "
            f"WHERE VARIABLE_NAME IN ({names})) = 0")


_LOCKS_OBSERVABLE = ("@@performance_schema AND EXISTS (SELECT 1 FROM performance_schema.setup_instruments "
                     "WHERE NAME = 'wait/lock/metadata/sql/mdl' AND ENABLED = 'YES') AND "
                     + _nothing_lost("metadata_lock", "thread_instances"))
"""Whether the server records who holds which named lock (a server may run without it)."""

_PROGRAMS_KNOWN = "@@performance_schema AND " + _nothing_lost("session_connect_attrs", "thread_instances")
"""Whether every connection's connect attributes (its program name) are on record."""


def _literal(text: str) -> str:
    """A string literal for SQL the harness writes itself (program names, never user input)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class MySQLDialect(Dialect):
    engine = "mysql"
    quote_char = "`"
    backend_function = "CONNECTION_ID()"
    max_connections_sql = "SELECT @@max_connections"
    server_version_sql = "SELECT VERSION()"
    writable_expression = "(@@global.read_only = 0 AND @@global.innodb_read_only = 0)"
    table_options = " ENGINE=InnoDB"
    begin_sql = "START TRANSACTION"
    state_kinds = ("setting", "session_variable", "temp_table", "prepared_statement", "advisory_lock")
    listable_kinds = ("advisory_lock",)
    pinning_reads = ("prepared_statement",)
    transactional_session_state = False
    # RDS Proxy documents one text for every refused MySQL-family login, IAM ones included: ERROR 1045
    # "Access denied for user 'DB_USER'@'%' (using password: YES)"; the host part is the client's.
    iam_tls_refusals = ("Access denied for user '{user}'@",)
    iam_token_refusals = ("Access denied for user '{user}'@",)
    # MariaDB 10.11 stops SELECT SLEEP(n), ... under KILL QUERY with ERROR 1317 (70100) "Query
    # execution was interrupted", and a lone SELECT SLEEP(n) too; MySQL 8 answers a lone one with 1.
    cancelled_codes = ("1317",)
    interrupted_sleep_value = 1
    classify = staticmethod(classify_pymysql)

    def unsupported(self, kind: str) -> ClientError:
        return ClientError(f"session state kind {kind!r} is not available for MySQL; "
                           f"supported: {', '.join(self.state_kinds)}")

    def not_listable_reason(self, kind: str) -> str:
        if kind in ("temp_table", "prepared_statement"):
            return f"MySQL and MariaDB cannot list a session's {kind.replace('_', ' ')}s by name"
        if kind == "advisory_lock":
            return ("the server does not record who holds named locks (performance_schema or its "
                    "wait/lock/metadata/sql/mdl instrument is off)")
        if kind == "listen":
            return "MySQL has no LISTEN"
        return super().not_listable_reason(kind)

    def insert_identified_sql(self, table: str, who: str, rows: int = 1) -> str:
        # Two statements in one request: MySQL has no RETURNING (MariaDB's is its own extension).
        return f"INSERT INTO {self.quote(table)} VALUES {self.values_rows(rows)}; SELECT {who}"

    def array_agg(self, expression: str) -> str:
        return f"COALESCE(JSON_ARRAYAGG({expression}), '[]')"

    def sleep_sql(self, seconds: float) -> str:
        return f"DO {self.sleep_expression(seconds)}"

    def sleep_expression(self, seconds: float) -> str:
        return f"SLEEP({float(seconds)!r})"

    def decode_array(self, raw: Any) -> list[Any]:
        raw = as_text(raw)
        return list(json.loads(raw)) if isinstance(raw, str) else list(raw)

    def backend_count_sql(self, who: str, excluded_programs: Sequence[str],
                          users: Sequence[str] | None = None) -> str:
        """The process list has no program name: it is the ``program_name`` connect attribute, which
        only the performance schema shows.  Without it, or once it has lost a connection's
        attributes, the count is NULL, not a guess."""
        names = ", ".join(_literal(n) for n in excluded_programs) or "''"
        whose = (f"p.USER IN ({', '.join(_literal(u) for u in users)})" if users
                 else "p.USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        return (f"SELECT IF({_PROGRAMS_KNOWN}, count(*), NULL), {who} FROM information_schema.PROCESSLIST p "
                f"WHERE {whose} AND p.ID <> CONNECTION_ID() "
                f"AND p.COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID') "
                f"AND NOT EXISTS (SELECT 1 FROM performance_schema.session_connect_attrs a "
                f"WHERE a.PROCESSLIST_ID = p.ID AND a.ATTR_NAME = 'program_name' AND a.ATTR_VALUE IN ({names}))")

    def protocol_pin_cases(self, who: str) -> dict[str, ProtocolPinCase]:
        """A client that prepares its parameterised statements with COM_STMT_PREPARE and executes them
        by id (Connector/Python's prepared cursor): RDS Proxy pins on the prepare."""
        return {"binary protocol (COM_STMT_PREPARE)": ProtocolPinCase({"binary_protocol": True},
                                                                       f"SELECT ? AS n, {who}", (1,), 1)}

    def pin_cases(self, who: str) -> tuple[dict[str, str], dict[str, str]]:
        """RDS Proxy's documented pinning triggers for Aurora MySQL, and statements documented not to pin."""
        triggers = {
            "SET user variable": f"SET @harness_pin = 1; SELECT {who}",
            "SET untracked variable": f"SET SESSION group_concat_max_len = 4096; SELECT {who}",
            "PREPARE": f"PREPARE harness_pin_ps FROM 'SELECT 1'; SELECT {who}",
            "CREATE TEMPORARY TABLE": f"CREATE TEMPORARY TABLE harness_pin_t (x int); SELECT {who}",
            "GET_LOCK": f"SELECT GET_LOCK(CONCAT('harness_pin_', CONNECTION_ID()), 0), {who}",
            "FOUND_ROWS": f"SELECT FOUND_ROWS(), {who}",
        }
        non_triggers = {
            "SELECT": f"SELECT 1, {who}",
            "transaction": f"START TRANSACTION; SELECT 1, {who}; COMMIT",
            "SET NAMES (tracked)": f"SET NAMES utf8mb4; SELECT {who}",
        }
        return triggers, non_triggers

    @staticmethod
    def _variable(name: str) -> str:
        return "@" + check_table_name(name.replace(".", "_"))

    def set_state(self, kind: str, name: str, value: Any) -> Statement:
        self._check_kind(kind)
        if kind in self.valued_kinds and not isinstance(value, str):
            raise ClientError(f"a {kind.replace('_', ' ')}'s value must be a string, got {value!r}")
        if kind == "setting":
            return Statement(f"SET {self._variable(name)} = %s", (value,))
        if kind == "session_variable":
            return Statement(f"SET SESSION {check_table_name(name)} = %s", (value,))
        if kind == "temp_table":
            return Statement(f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.quote(name)} (x int)")
        if kind == "prepared_statement":
            return Statement(f"PREPARE {check_table_name(name)} FROM 'SELECT 1'")
        return Statement("SELECT GET_LOCK(%s, 0)", (name,))

    def read_state(self, kind: str, name: str) -> Statement:
        self._check_kind(kind)
        if kind == "setting":
            return Statement(f"SELECT {self._variable(name)}")
        if kind == "session_variable":
            return Statement(f"SELECT @@SESSION.{check_table_name(name)}")
        if kind == "temp_table":
            return Statement(f"SELECT COUNT(*) >= 0 FROM {self.quote(name)}", absent_on_error=(NO_SUCH_TABLE,))
        if kind == "prepared_statement":
            return Statement(f"EXECUTE {check_table_name(name)}", absent_on_error=(UNKNOWN_PREPARED_STATEMENT,))
        return Statement("SELECT COALESCE(IS_USED_LOCK(%s) = CONNECTION_ID(), 0)", (name,))

    def find_state(self, kind: str, prefix: str) -> Statement:
        if kind == "advisory_lock":
            return Statement(
                f"SELECT IF({_LOCKS_OBSERVABLE}, (SELECT {self.array_agg('m.OBJECT_NAME')} "
                "FROM performance_schema.metadata_locks m JOIN performance_schema.threads t "
                "ON t.THREAD_ID = m.OWNER_THREAD_ID WHERE t.PROCESSLIST_ID = CONNECTION_ID() "
                "AND m.OBJECT_TYPE = 'USER LEVEL LOCK' AND m.LOCK_STATUS = 'GRANTED' "
                "AND m.OBJECT_NAME LIKE %s), NULL)", (_like_prefix(prefix),))
        return super().find_state(kind, prefix)

    def state_value(self, kind: str, raw: Any) -> Any:
        return as_text(raw) if kind in self.valued_kinds else bool(raw)

    def own_session_variable(self, process: str) -> tuple[str, str]:
        """``time_zone`` at an offset derived from the client's name (within every server's range)."""
        minutes = zlib.crc32(process.encode()) % (12 * 60)
        return "time_zone", f"+{minutes // 60:02d}:{minutes % 60:02d}"


MYSQL = MySQLDialect()
