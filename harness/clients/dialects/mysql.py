"""MySQL's (and MariaDB's) spelling of the recording clients' statements.

Session state for the isolation checker: ``setting`` is a user variable (``SET @name``) and
``advisory_lock`` is ``GET_LOCK``; temp tables, prepared statements and LISTEN have no reliable
way to be observed on MariaDB and raise :class:`~harness.clients.plans.ClientError`.
"""

from __future__ import annotations

from typing import Any

from harness.clients.dialects.base import Dialect
from harness.clients.outcomes import classify_pymysql
from harness.clients.plans import ClientError, Statement, as_text, check_table_name


class MySQLDialect(Dialect):
    engine = "mysql"
    quote_char = "`"
    backend_function = "CONNECTION_ID()"
    max_connections_sql = "SELECT @@max_connections"
    table_options = " ENGINE=InnoDB"
    state_kinds = ("setting", "advisory_lock")
    classify = staticmethod(classify_pymysql)

    def unsupported(self, kind: str) -> ClientError:
        return ClientError(f"session state kind {kind!r} is not available for MySQL; "
                           f"supported: {', '.join(self.state_kinds)}")

    def set_state(self, kind: str, name: str, value: Any) -> Statement:
        self._check_kind(kind)
        if kind == "setting":
            if not isinstance(value, str):
                raise ClientError(f"a setting's value must be a string, got {value!r}")
            return Statement(f"SET @{check_table_name(name)} = %s", (value,))
        return Statement("SELECT GET_LOCK(%s, 0)", (name,))

    def read_state(self, kind: str, name: str) -> Statement:
        self._check_kind(kind)
        if kind == "setting":
            return Statement(f"SELECT @{check_table_name(name)}")
        return Statement("SELECT COALESCE(IS_USED_LOCK(%s) = CONNECTION_ID(), 0)", (name,))

    def state_value(self, kind: str, raw: Any) -> Any:
        return bool(raw) if kind == "advisory_lock" else as_text(raw)


MYSQL = MySQLDialect()
