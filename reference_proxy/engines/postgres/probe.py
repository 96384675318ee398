"""The PostgreSQL probe: one reserved monitoring connection per instance, one query per poll.

The connection is the monitor's own (never borrowed from a client pool, as RDS Proxy keeps its
monitoring connections out of ``MaxDatabaseConnectionsAllowed``), opened lazily and opened again
after any failure, so a lost connection costs one failed poll and nothing else.  Each poll asks,
in one round trip: is the server in recovery (a reader), which instance it is, how far its WAL
is (written on a writer, replayed on a reader) and how old the last replayed transaction is.  A
short ``statement_timeout`` keeps a stuck server from holding the monitor.
"""

from __future__ import annotations

import contextlib
import math

import psycopg
from psycopg import errors as pg_errors

from reference_proxy.contracts import InstanceAddress
from reference_proxy.topology.events import ProbeFailed, ProbeResult

APPLICATION_NAME = "reference-proxy-monitor"

POLL_QUERY = """
SELECT pg_is_in_recovery(),
       aurora_db_instance_identifier()::text,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
             ELSE pg_current_wal_lsn() END)::text,
       EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8
"""


def parse_lsn(text: str | None) -> int | None:
    """A PostgreSQL LSN (``'16/B374D848'``) as a byte position; None for NULL."""
    if text is None:
        return None
    high, sep, low = text.partition("/")
    if not sep:
        raise ProbeFailed(f"not a WAL position: {text!r}")
    try:
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        raise ProbeFailed(f"not a WAL position: {text!r}") from None


class PostgresProbe:
    """Polls one PostgreSQL instance over its own autocommit connection (psycopg 3, async)."""

    def __init__(self, address: InstanceAddress, *, user: str, password: str, database: str = "postgres",
                 connect_timeout: float = 2.0, query_timeout: float = 1.0) -> None:
        self.address = address
        self.user = user
        self.password = password
        self.database = database
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self._conn: psycopg.AsyncConnection | None = None

    async def poll(self) -> ProbeResult:
        """One poll; raises :class:`ProbeFailed` (and drops the connection) on any failure."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await self._connect()
            cursor = await self._conn.execute(POLL_QUERY)
            row = await cursor.fetchone()
        except pg_errors.UndefinedFunction as e:
            await self.close()
            raise ProbeFailed(f"{self._where()} has no aurora_db_instance_identifier(), so the monitor "
                              f"cannot verify which instance it reached: {_first_line(e)}") from None
        except psycopg.Error as e:
            await self.close()
            raise ProbeFailed(f"{self._where()}: {_first_line(e)}") from None
        except OSError as e:
            await self.close()
            raise ProbeFailed(f"{self._where()}: {e}") from None
        if row is None:
            raise ProbeFailed(f"{self._where()}: the poll query returned no row")
        in_recovery, reported_id, lsn_text, replay_age = row
        return ProbeResult(reported_id=reported_id, in_recovery=bool(in_recovery),
                           wal_position=parse_lsn(lsn_text),
                           replay_age=None if replay_age is None else max(0.0, float(replay_age)))

    async def close(self) -> None:
        """Drop the connection (the next poll opens a new one); never raises."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _connect(self) -> psycopg.AsyncConnection:
        statement_ms = max(1, int(self.query_timeout * 1000))
        return await psycopg.AsyncConnection.connect(
            host=self.address.host, port=self.address.port, user=self.user, password=self.password,
            dbname=self.database, autocommit=True, application_name=APPLICATION_NAME,
            # libpq rounds connect_timeout to whole seconds and treats values below 2 as 2.
            connect_timeout=max(2, math.ceil(self.connect_timeout)),
            options=f"-c statement_timeout={statement_ms}")

    def _where(self) -> str:
        return f"{self.address.id} ({self.address.host}:{self.address.port})"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
