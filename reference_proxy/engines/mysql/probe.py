"""The MySQL probe: one reserved monitoring connection per instance, a query or two per poll.

Like the PostgreSQL probe, the connection is the monitor's own (never borrowed from a client pool:
RDS Proxy keeps its monitoring connections out of ``MaxDatabaseConnectionsAllowed``), opened lazily
with the ``program_name`` :data:`PROGRAM_NAME`, and opened again after any failure.  It speaks the
engine's own codec through :mod:`.backend`: no MySQL driver in the proxy.

What a poll reads:

* role: ``@@global.read_only``, or ``@@global.innodb_read_only`` where the server has it (Aurora
  MySQL readers have the latter; MariaDB has both).  Either on means a reader.  The global scope is
  named because MariaDB 10.11 may report a plain ``@@read_only`` as 0 within a statement that also
  reads a table.
* identity: ``@@aurora_server_id`` on Aurora MySQL, otherwise ``@@report_host`` (the stand-in sets
  it to the instance id).  Which variables exist is learnt once per connection, from
  ``SHOW GLOBAL VARIABLES``, since asking for a missing one is an error (1193).
* lag, on a reader: ``Seconds_Behind_Master`` from ``SHOW SLAVE STATUS`` (None when the reader does
  not replicate by binary log, as on Aurora, or when the login may not ask).  MySQL-protocol servers
  have no byte position comparable across instances, so ``wal_position`` stays None.

A per-statement time limit on the server (``max_statement_time`` on MariaDB, ``max_execution_time``
on MySQL) and a client-side timeout keep a stuck server from holding the monitor.
"""

from __future__ import annotations

from reference_proxy.contracts import BackendConnectFailed, BackendCredentials, InstanceAddress, PoolKey
from reference_proxy.engines.mysql.backend import MySQLBackend, QueryResult, connect_and_log_in
from reference_proxy.protocol.mysql import ProtocolViolation
from reference_proxy.topology.events import ProbeFailed, ProbeResult

__all__ = ["PROGRAM_NAME", "MySQLProbe", "poll_query", "probe_result"]

PROGRAM_NAME = "reference-proxy-monitor"

ER_SPECIFIC_ACCESS_DENIED = 1227
"""The login lacks the privilege a statement needs (here: SHOW SLAVE STATUS)."""

_OPTIONAL_VARIABLES = ("innodb_read_only", "aurora_server_id")
VARIABLES_QUERY = ("SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                   + ", ".join(f"'{name}'" for name in _OPTIONAL_VARIABLES) + ")")


def poll_query(variables: frozenset[str]) -> str:
    """The poll statement for a server that has ``variables`` (of :data:`_OPTIONAL_VARIABLES`):
    columns read_only, innodb_read_only (or NULL), identity."""
    innodb = "@@global.innodb_read_only" if "innodb_read_only" in variables else "NULL"
    identity = "@@global.aurora_server_id" if "aurora_server_id" in variables else "@@global.report_host"
    return f"SELECT @@global.read_only, {innodb}, {identity}"


def _flag(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "TRUE")


def probe_result(row: tuple[str | None, ...], replica_status: list[dict[str, str | None]] | None
                 ) -> ProbeResult:
    """A :class:`ProbeResult` from the poll row and, on a reader, ``SHOW SLAVE STATUS`` records."""
    read_only, innodb_read_only, identity = row
    is_reader = _flag(read_only) or _flag(innodb_read_only)
    lag: float | None = None
    if is_reader and replica_status:
        seconds = replica_status[0].get("Seconds_Behind_Master")
        if seconds is not None and seconds.strip().isdigit():
            lag = float(seconds)
    return ProbeResult(reported_id=identity or None, in_recovery=is_reader, wal_position=None, replay_age=lag)


class MySQLProbe:
    """Polls one MySQL-protocol instance over its own connection (satisfies the topology Probe)."""

    def __init__(self, address: InstanceAddress, *, user: str, password: str, database: str = "",
                 connect_timeout: float = 2.0, query_timeout: float = 1.0) -> None:
        self.address = address
        self.user = user
        self.password = password
        # The monitor's [monitor] database defaults to PostgreSQL's "postgres"; a MySQL poll needs
        # no schema, and one that does not exist would refuse the login (1049).
        self.database = "" if database == "postgres" else database
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self._conn: MySQLBackend | None = None
        self._poll_sql = ""
        self._may_ask_replica_status = True

    async def poll(self) -> ProbeResult:
        """One poll; raises :class:`ProbeFailed` (and drops the connection) on any failure."""
        try:
            if self._conn is None or not self._conn.is_usable():
                await self.close()
                self._conn = await self._connect()
            conn = self._conn
            result = await conn.query(self._poll_sql)
            self._check(result)
            if not result.rows:
                raise ProbeFailed(f"{self._where()}: the poll query returned no row")
            row = result.rows[0]
            replica_status = None
            if (_flag(row[0]) or _flag(row[1])) and self._may_ask_replica_status:
                status = await conn.query("SHOW SLAVE STATUS")
                if status.error is not None and status.error.error_code == ER_SPECIFIC_ACCESS_DENIED:
                    self._may_ask_replica_status = False
                else:
                    self._check(status)
                    replica_status = status.records()
        except ProbeFailed:
            await self.close()
            raise
        except (OSError, TimeoutError, ProtocolViolation) as e:
            await self.close()
            raise ProbeFailed(f"{self._where()}: {e or type(e).__name__}") from None
        result_ = probe_result(row, replica_status)
        if not result_.reported_id:
            raise ProbeFailed(f"{self._where()} reports neither @@aurora_server_id nor @@report_host, so the "
                              f"monitor cannot verify which instance it reached")
        return result_

    async def close(self) -> None:
        """Drop the connection (the next poll opens a new one); never raises."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _connect(self) -> MySQLBackend:
        key = PoolKey(self.address.id, self.user, self.database)
        try:
            conn = await connect_and_log_in(key, self.address, BackendCredentials(self.user, self.password),
                                         connect_timeout=self.connect_timeout, io_timeout=self.query_timeout,
                                         program_name=PROGRAM_NAME)
        except BackendConnectFailed as e:
            raise ProbeFailed(f"{self._where()}: {e}") from None
        try:
            limit = (f"SET SESSION max_statement_time = {self.query_timeout:.3f}" if conn.is_mariadb
                     else f"SET SESSION max_execution_time = {max(1, int(self.query_timeout * 1000))}")
            self._check(await conn.query(limit))
            variables = await conn.query(VARIABLES_QUERY)
            self._check(variables)
            self._poll_sql = poll_query(frozenset((row[0] or "").lower() for row in variables.rows))
        except BaseException:
            await conn.close()
            raise
        return conn

    def _check(self, result: QueryResult) -> None:
        if result.error is not None:
            raise ProbeFailed(f"{self._where()}: ERROR {result.error.error_code}: {result.error.message}")

    def _where(self) -> str:
        return f"{self.address.id} ({self.address.host}:{self.address.port})"
