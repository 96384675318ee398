"""Replication control of one MariaDB server, over an open control connection.

These are the SQL-level steps the MariaDB stand-in composes into start-up, failover and rejoin:
follow a source by GTID, wait until a server has received or applied a position, drain its relay
log, fence a writer, promote a reader.  Each takes a PyMySQL connection (autocommit, logged in with
an account that has every privilege) and knows nothing about clusters, processes or files, so the
cluster module reads as the story of a failover and this one as the MariaDB details of each step.

Errors from the server propagate as PyMySQL errors; the cluster turns them into stand-in errors.
"""

from __future__ import annotations

import time
from typing import Any

import pymysql

from harness.standins.base import ReplicationTimeout, StandinError
from harness.standins.mysql.gtid import GtidPosition

Connection = pymysql.connections.Connection

ER_LOCK_WAIT_TIMEOUT = 1205
ER_NO_SUCH_THREAD = 1094
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236

POLL_INTERVAL = 0.02


class ReplicationDiverged(StandinError):
    """A reader's history is not a prefix of its source's: it can never catch up (rebuild it)."""


def rows(conn: Connection, sql: str, args: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def value(conn: Connection, sql: str) -> Any:
    """The first column of the first row (``None`` without rows).

    Ask for server variables in statements without tables: MariaDB 10.11 answers
    ``SELECT @@read_only, COUNT(*) FROM t`` with ``read_only = 0`` even on a read-only server.
    """
    result = rows(conn, sql)
    return next(iter(result[0].values())) if result else None


def binlog_position(conn: Connection) -> GtidPosition:
    """What this server has in its binary log (written by it or replicated to it)."""
    return GtidPosition.parse(value(conn, "SELECT @@gtid_binlog_pos"))


def applied_position(conn: Connection) -> GtidPosition:
    """What this server has applied as a replica."""
    return GtidPosition.parse(value(conn, "SELECT @@gtid_slave_pos"))


def slave_status(conn: Connection) -> dict[str, Any] | None:
    result = rows(conn, "SHOW SLAVE STATUS")
    return result[0] if result else None


def streaming(status: dict[str, Any] | None) -> bool:
    """Both replication threads run (the IO thread is connected to its source)."""
    return bool(status) and status["Slave_IO_Running"] == "Yes" and status["Slave_SQL_Running"] == "Yes"


def divergence(status: dict[str, Any] | None) -> str | None:
    """Why this replica can never catch up with its source, or None if it can.

    Error 1236 is the source refusing the replica's GTID position (it has transactions the source
    never had); a stopped SQL thread with an error cannot apply the source's history.
    """
    if not status:
        return None
    if status["Last_IO_Errno"] == ER_MASTER_FATAL_ERROR_READING_BINLOG:
        return f"IO error {status['Last_IO_Errno']}: {status['Last_IO_Error']}"
    if status["Slave_SQL_Running"] == "No" and status["Last_SQL_Errno"]:
        return f"SQL error {status['Last_SQL_Errno']}: {status['Last_SQL_Error']}"
    return None


def follow(conn: Connection, *, host: str, port: int, user: str, password: str) -> None:
    """Become a read-only semi-sync replica of host:port by GTID, from what this server holds.

    A demoted writer's own transactions are in its binary log but not in ``gtid_slave_pos``; what
    a server holds is what its binary log says, so the replica position starts from there.
    """
    rows(conn, "STOP SLAVE")
    rows(conn, "SET GLOBAL read_only = ON")
    rows(conn, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
    rows(conn, "SET GLOBAL rpl_semi_sync_slave_enabled = ON")
    binlog_text = value(conn, "SELECT @@gtid_binlog_pos") or ""
    binlog = GtidPosition.parse(binlog_text)
    if binlog.covers(applied_position(conn)) and binlog != applied_position(conn):
        rows(conn, "SET GLOBAL gtid_slave_pos = %s", (binlog_text,))
    rows(conn, "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
               "MASTER_PASSWORD = %s, MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = slave_pos",
         (host, port, user, password))
    rows(conn, "START SLAVE")


def await_streaming(conn: Connection, name: str, timeout: float) -> None:
    """Until both replication threads run; ReplicationDiverged or ReplicationTimeout if not."""
    deadline = time.monotonic() + timeout
    while True:
        status = slave_status(conn)
        if streaming(status):
            return
        reason = divergence(status)
        if reason:
            raise ReplicationDiverged(f"{name} cannot replicate: {reason}")
        if time.monotonic() >= deadline:
            io = status and f"{status['Slave_IO_Running']} ({status['Last_IO_Error'] or 'no error'})"
            raise ReplicationTimeout(f"{name} did not start replicating within {timeout:.0f}s: IO {io}")
        time.sleep(POLL_INTERVAL)


def await_applied(conn: Connection, name: str, target: GtidPosition, timeout: float) -> None:
    """Until this replica has applied ``target``; ReplicationDiverged or ReplicationTimeout if not."""
    deadline = time.monotonic() + timeout
    while True:
        applied = applied_position(conn)
        if applied.covers(target):
            return
        reason = divergence(slave_status(conn))
        if reason:
            raise ReplicationDiverged(f"{name} has {applied or '(nothing)'}, needs {target}: {reason}")
        if time.monotonic() >= deadline:
            raise ReplicationTimeout(f"{name} has {applied or '(nothing)'}, needs {target}: "
                                     f"not caught up within {timeout:.0f}s")
        time.sleep(POLL_INTERVAL)


def received(conn: Connection, target: GtidPosition, timeout: float) -> bool:
    """Whether this replica receives (not necessarily applies) ``target`` within ``timeout``.

    A stopped IO thread is started again: whoever stopped it, a failover needs the transactions.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = slave_status(conn)
        if status and GtidPosition.parse(status["Gtid_IO_Pos"]).covers(target):
            return True
        if divergence(status) or time.monotonic() >= deadline:
            return False
        if status and status["Slave_IO_Running"] == "No":
            rows(conn, "START SLAVE IO_THREAD")
        time.sleep(POLL_INTERVAL)


def stop_receiving(conn: Connection) -> None:
    rows(conn, "STOP SLAVE IO_THREAD")


def drained_position(conn: Connection, deadline: float) -> GtidPosition:
    """After :func:`stop_receiving`: wait (until ``deadline``) for the SQL thread to apply the
    relay log, and return what this replica holds then."""
    while time.monotonic() < deadline:
        status = slave_status(conn)
        if status is None or status["Slave_SQL_Running"] != "Yes":
            break
        if applied_position(conn).covers(GtidPosition.parse(status["Gtid_IO_Pos"])):
            break
        if "read all relay log" in (status["Slave_SQL_Running_State"] or ""):
            break  # a partly received transaction at the end of the relay log stays unapplied
        time.sleep(POLL_INTERVAL)
    return applied_position(conn)


def kill_clients(conn: Connection, spare_users: tuple[str, ...]) -> int:
    """Kill every client session except replication, system threads, this session and sessions of
    ``spare_users``; returns how many were killed."""
    users = ("system user", "event_scheduler", *spare_users)
    marks = ", ".join(["%s"] * len(users))
    victims = rows(conn, "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
                         f"AND USER NOT IN ({marks}) AND COMMAND NOT IN ('Binlog Dump', 'Daemon')",
                   users)
    killed = 0
    for victim in victims:
        try:
            rows(conn, f"KILL CONNECTION {int(victim['ID'])}")
            killed += 1
        except pymysql.err.MySQLError as e:
            if e.args[0] != ER_NO_SUCH_THREAD:  # it ended on its own meanwhile
                raise
    return killed


def fence(conn: Connection, spare_users: tuple[str, ...]) -> GtidPosition:
    """Stop a writer from taking writes (``read_only``; client sessions killed) and return its
    final binary-log position.

    ``SET GLOBAL read_only`` waits for commits in flight, e.g. one waiting for a semi-sync
    acknowledgement; if that takes longer than two seconds, the clients are killed first.
    Accounts without ``READ_ONLY ADMIN`` (the login user) cannot write once it is set.
    """
    rows(conn, "SET SESSION lock_wait_timeout = 2")
    try:
        rows(conn, "SET GLOBAL read_only = ON")
    except pymysql.err.OperationalError as e:
        if e.args[0] != ER_LOCK_WAIT_TIMEOUT:
            raise
        kill_clients(conn, spare_users)
        rows(conn, "SET GLOBAL read_only = ON")
    kill_clients(conn, spare_users)
    return binlog_position(conn)


def promote(conn: Connection, *, semi_sync_master: bool) -> None:
    """Stop replicating, forget the source, and take writes (waiting for a reader's
    acknowledgement of each commit when ``semi_sync_master``)."""
    rows(conn, "STOP SLAVE")
    rows(conn, "RESET SLAVE ALL")
    rows(conn, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
    rows(conn, f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if semi_sync_master else 'OFF'}")
    rows(conn, "SET GLOBAL read_only = OFF")
