"""Control queries against one running PostgreSQL stand-in server.

The cluster (:mod:`harness.standins.postgres.cluster`) decides *what* to do; this module knows *how to
ask* a server: short-lived autocommit sessions over TCP as the cluster's superuser, with a short
connect timeout so that a server that is down answers "down" quickly instead of hanging a
failover.  Nothing here keeps state between calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from harness.standins.base import ReaderStatus, StandinError
from harness.standins.postgres import conf

#: application_name of our own control sessions, so they are easy to tell apart in pg_stat_activity.
CONTROL_APPLICATION_NAME = "standin-control"


class ServerControl:
    """Ask or tell one server something; every method opens and closes its own session."""

    def __init__(self, host: str, port: int, user: str, password: str, database: str) -> None:
        self.host, self.port = host, port
        self.user, self.password, self.database = user, password, database

    def connect(self, dbname: str | None = None) -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, dbname=dbname or self.database,
                               autocommit=True, connect_timeout=2,
                               application_name=CONTROL_APPLICATION_NAME)

    def rows(self, query: str | sql.Composable, params: Sequence[Any] = ()) -> list[tuple]:
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, query: str) -> Any:
        found = self.rows(query)
        return found[0][0] if found else None

    def accepts_connections(self) -> bool:
        """True once the server lets a client in ("postgres" exists even before our database)."""
        try:
            with self.connect(dbname="postgres"):
                return True
        except psycopg.Error:
            return False

    # -- positions ---------------------------------------------------------------------------
    def current_lsn(self) -> int:
        lsn = conf.parse_lsn(self.scalar("SELECT pg_current_wal_lsn()::text"))
        assert lsn is not None
        return lsn

    def received_lsn(self) -> int | None:
        """How much WAL a reader holds (received or replayed, whichever is further); None if down."""
        try:
            received, replayed = self.rows("SELECT pg_last_wal_receive_lsn()::text, "
                                           "pg_last_wal_replay_lsn()::text")[0]
        except psycopg.Error:
            return None
        values = [v for v in (conf.parse_lsn(received), conf.parse_lsn(replayed)) if v is not None]
        return max(values) if values else None

    def replayed_lsn(self) -> int | None:
        try:
            return conf.parse_lsn(self.scalar("SELECT pg_last_wal_replay_lsn()::text"))
        except psycopg.Error:
            return None

    # -- replication status ------------------------------------------------------------------
    def streaming_names(self) -> set[str]:
        """application_name of every reader streaming from this writer; empty if unreachable."""
        try:
            return {r[0] for r in self.rows("SELECT application_name FROM pg_stat_replication "
                                            "WHERE state = 'streaming'")}
        except psycopg.Error:
            return set()

    def replication_view(self) -> dict[str, ReaderStatus]:
        """Readers streaming from this writer, with lag as the writer measures it."""
        found = self.rows("""
            SELECT application_name,
                   EXTRACT(EPOCH FROM replay_lag)::float8,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
            FROM pg_stat_replication WHERE state = 'streaming'""")
        view = {}
        for name, lag_s, lag_b in found:
            if lag_s is None and lag_b == 0:
                lag_s = 0.0  # the writer clears replay_lag once a reader is idle and caught up
            view[name] = ReaderStatus(name, replicating=True, lag_seconds=lag_s,
                                      lag_bytes=max(0, int(lag_b)) if lag_b is not None else None)
        return view

    def reader_self_view(self, instance_id: str) -> ReaderStatus:
        """A reader the writer does not list: ask the reader whether, and how far behind, it streams."""
        try:
            streaming, lag_b, since_replay = self.rows("""
                SELECT coalesce((SELECT status FROM pg_stat_wal_receiver) = 'streaming', false),
                       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
                       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8""")[0]
        except psycopg.Error:
            return ReaderStatus(instance_id, replicating=False, lag_seconds=None)
        lag_s = 0.0 if lag_b == 0 else since_replay
        return ReaderStatus(instance_id, replicating=bool(streaming), lag_seconds=lag_s,
                            lag_bytes=int(lag_b) if lag_b is not None else None)

    # -- changes -----------------------------------------------------------------------------
    def bootstrap(self, replication_password: str) -> None:
        """Replication role, the instance-id function in every database, the cluster's database."""
        with self.connect(dbname="postgres") as conn:
            conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(conf.REPLICATION_USER), sql.Literal(replication_password)))
            conn.execute(conf.INSTANCE_ID_FUNCTION_SQL)
        with self.connect(dbname="template1") as conn:  # databases created later copy template1
            conn.execute(conf.INSTANCE_ID_FUNCTION_SQL)
        if self.database not in ("postgres", "template1"):
            with self.connect(dbname="postgres") as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def promote(self, instance_id: str, wait_seconds: int = 60) -> None:
        with self.connect() as conn:
            row = conn.execute("SELECT pg_promote(wait => true, wait_seconds => %s)",
                               (wait_seconds,)).fetchone()
        if not row or not row[0]:
            raise StandinError(f"{instance_id} did not finish promotion within {wait_seconds}s")

    def ensure_slot(self, slot: str) -> None:
        """Create a physical slot that reserves WAL from now on, unless it already exists."""
        self.rows("SELECT pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS "
                  "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)", (slot, slot))

    def drop_idle_slots_except(self, keep: list[str]) -> None:
        self.rows("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                  "WHERE NOT active AND slot_type = 'physical' AND NOT (slot_name = ANY(%s))",
                  (keep,))

    def become_primary_settings(self) -> None:
        """Forget the standby settings a promoted reader still carries, and checkpoint.

        The checkpoint writes the new timeline into pg_control, which pg_rewind reads from the
        source to decide whether (and from where) the old writer must be rewound.
        """
        with self.connect() as conn:
            conn.execute("ALTER SYSTEM RESET primary_conninfo")
            conn.execute("ALTER SYSTEM RESET primary_slot_name")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CHECKPOINT")

    def set_synchronous_names(self, names: str) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(
                sql.Literal(names)))
            conn.execute("SELECT pg_reload_conf()")

    def follow(self, primary_conninfo: str, slot: str) -> None:
        """Stream from another writer; PostgreSQL 15 restarts the WAL receiver on reload."""
        with self.connect() as conn:
            conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(
                sql.Literal(primary_conninfo)))
            conn.execute(sql.SQL("ALTER SYSTEM SET primary_slot_name = {}").format(sql.Literal(slot)))
            conn.execute("SELECT pg_reload_conf()")
