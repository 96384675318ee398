"""PostgreSQL's spelling of the recording clients' statements.

Session state, the isolation checker's vocabulary (:data:`harness.checkers.isolation.STATE_KINDS`):
a setting (``set_config``), a temp table, a prepared statement, a session advisory lock (keyed by
the CRC-32 of its name, and reported under that key) and a LISTEN registration.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from harness.clients.dialects.base import Dialect, ProtocolPinCase
from harness.clients.outcomes import classify_psycopg
from harness.clients.plans import ClientError, Statement


def advisory_key(name: str) -> int:
    """A stable 32-bit advisory lock key for a lock name (the checker sees names, the server keys)."""
    return zlib.crc32(name.encode())


def _literal(text: str) -> str:
    """A string literal for SQL the harness writes itself (program names, never user input)."""
    return "'" + text.replace("'", "''") + "'"


class PostgresDialect(Dialect):
    engine = "postgres"
    quote_char = '"'
    backend_function = "pg_backend_pid()"
    max_connections_sql = "SHOW max_connections"
    server_version_sql = "SHOW server_version"
    # Not pg_is_in_recovery(): that function is VOLATILE, and a load-balancing pooler (pgpool-II)
    # sends every statement calling a volatile function to the primary, so asking the role that way
    # would route the harness's own reads unlike the application's.  A standby runs every
    # transaction read-only, and current_setting() is STABLE.
    writable_expression = "current_setting('transaction_read_only') = 'off'"

    @property
    def writer_check_sql(self) -> str:
        """Routed as a write by a pooler that balances reads (the function is VOLATILE), so it asks
        whoever a write would reach; asked directly, a promoted reader answers true at once."""
        return "SELECT NOT pg_is_in_recovery()"
    state_kinds = ("setting", "temp_table", "prepared_statement", "advisory_lock", "listen")
    listable_kinds = ("temp_table", "prepared_statement", "advisory_lock")
    # RDS Proxy documents two wordings of each (its troubleshooting page, an older and a newer one).
    iam_tls_refusals = ("IAM authentication is allowed only with SSL connections.",
                        "IAM is allowed only with SSL connections.")
    iam_token_refusals = (
        "IAM authentication failed for user {user}. Check the IAM token for this user and try again.",
        "The IAM authentication failed for the role {user}. Check the IAM token for this role and try again.")
    cancelled_codes = ("57014",)
    classify = staticmethod(classify_psycopg)

    def insert_identified_sql(self, table: str, who: str, rows: int = 1) -> str:
        return f"INSERT INTO {self.quote(table)} VALUES {self.values_rows(rows)} RETURNING {who}"

    def array_agg(self, expression: str) -> str:
        return f"coalesce(array_agg({expression}), '{{}}')"

    def sleep_sql(self, seconds: float) -> str:
        return f"SELECT {self.sleep_expression(seconds)}"

    def sleep_expression(self, seconds: float) -> str:
        return f"pg_sleep({float(seconds)!r})"

    def backend_count_sql(self, who: str, excluded_programs: Sequence[str],
                          users: Sequence[str] | None = None) -> str:
        """Client backends in ``pg_stat_activity``, told apart by ``application_name`` (always known)."""
        names = ", ".join(_literal(n) for n in excluded_programs) or "''"
        whose = f"usename IN ({', '.join(_literal(u) for u in users)})" if users else "usename = current_user"
        return (f"SELECT count(*), {who} FROM pg_stat_activity WHERE backend_type = 'client backend' "
                f"AND {whose} AND pid <> pg_backend_pid() "
                f"AND coalesce(application_name, '') NOT IN ({names})")

    def state_label(self, kind: str, name: str) -> str:
        """The name under which the server reports the object: advisory locks are known by key."""
        return str(advisory_key(name)) if kind == "advisory_lock" else name

    def pin_cases(self, who: str) -> tuple[dict[str, str], dict[str, str]]:
        """RDS Proxy's documented pinning triggers for PostgreSQL, and statements documented not to pin."""
        triggers = {
            "SET": f"SET statement_timeout = 60000; SELECT {who}",
            "set_config": f"SELECT set_config('harness.pin', 'x', false), {who}",
            "PREPARE": f"PREPARE harness_pin_ps AS SELECT 1; SELECT {who}",
            "CREATE TEMP TABLE": f"CREATE TEMP TABLE harness_pin_t (x int); SELECT {who}",
            "pg_advisory_lock": f"SELECT pg_advisory_lock(424242 + pg_backend_pid()), {who}",
            "LISTEN": f"LISTEN harness_pin_channel; SELECT {who}",
        }
        non_triggers = {
            "SELECT": f"SELECT 1, {who}",
            "pg_advisory_xact_lock": f"SELECT pg_advisory_xact_lock(515151), {who}",
            "SET LOCAL": f"BEGIN; SET LOCAL statement_timeout = 60000; SELECT {who}; COMMIT",
        }
        return triggers, non_triggers

    def protocol_pin_cases(self, who: str) -> dict[str, ProtocolPinCase]:
        """psycopg names a statement (``_pg3_N``) at once with ``prepare=True``, and on the sixth
        execution of the same text with its default ``prepare_threshold`` of 5 (what applications
        run); the statement stays open on the backend after the transaction ends."""
        sql = f"SELECT %s::int AS n, {who}"
        # psycopg ignores prepare=True when prepare_threshold is None (the harness's default): the
        # explicit case is a client with psycopg's default threshold that also asks at every execute.
        return {"named statement (prepare_threshold=5)": ProtocolPinCase({"prepare_threshold": 5}, sql, (1,), 6),
                "named statement (prepare=True)": ProtocolPinCase({"prepare": True, "prepare_threshold": 5},
                                                                  sql, (1,), 1)}

    def set_state(self, kind: str, name: str, value: Any) -> Statement:
        self._check_kind(kind)
        if kind == "setting":
            if "." not in name and not name.isidentifier():
                raise ClientError(f"setting name must be an identifier or a custom 'a.b' name, got {name!r}")
            if not isinstance(value, str):
                raise ClientError(f"a setting's value must be a string, got {value!r}")
            return Statement("SELECT set_config(%s, %s, false)", (name, value))
        if kind == "temp_table":
            return Statement(f"CREATE TEMP TABLE IF NOT EXISTS {self.quote(name)} (x int)")
        if kind == "prepared_statement":
            return Statement(f"PREPARE {self.quote(name)} AS SELECT 1")
        if kind == "advisory_lock":
            # Never wait: a lock left behind by another session (a leak) must show, not hang the client.
            return Statement("SELECT pg_try_advisory_lock(%s)", (advisory_key(name),))
        return Statement(f"LISTEN {self.quote(name)}")

    def read_state(self, kind: str, name: str) -> Statement:
        self._check_kind(kind)
        if kind == "setting":
            return Statement("SELECT current_setting(%s, true)", (name,))
        if kind == "temp_table":
            return Statement("SELECT to_regclass(%s) IS NOT NULL", (f"pg_temp.{self.quote(name)}",))
        if kind == "prepared_statement":
            return Statement("SELECT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = %s)", (name,))
        if kind == "advisory_lock":
            return Statement("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                             "AND pid = pg_backend_pid() AND classid = 0 AND objid::bigint = %s AND objsubid = 1)",
                             (advisory_key(name),))
        return Statement("SELECT %s = ANY (ARRAY(SELECT pg_listening_channels()))", (name,))

    def find_state(self, kind: str, prefix: str) -> Statement:
        like = (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",)
        if kind == "temp_table":
            return Statement("SELECT coalesce(array_agg(relname::text), '{}') FROM pg_class "
                             "WHERE relnamespace = pg_my_temp_schema() AND relname LIKE %s", like)
        if kind == "prepared_statement":
            return Statement("SELECT coalesce(array_agg(name), '{}') FROM pg_prepared_statements "
                             "WHERE name LIKE %s", like)
        if kind == "advisory_lock":
            # Every advisory lock of the session, by key (names are not stored); prefix does not apply.
            return Statement("SELECT coalesce(array_agg(((classid::bigint << 32) | objid::bigint)::text), '{}') "
                             "FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        return super().find_state(kind, prefix)


POSTGRES = PostgresDialect()
