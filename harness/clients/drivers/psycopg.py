"""psycopg 3 adapters (PostgreSQL): one connection, sync or async.

The connection is opened in autocommit mode and transactions are spelled out as ``BEGIN`` /
``COMMIT`` statements, so the client always knows whether COMMIT had been sent when something broke.
Automatic server-side prepared statements are off (``prepare_threshold=None``) unless a client asks
for them: through a transaction-mode pooler they would change what is being tested, so they are a
per-client choice - ``prepare_threshold=5`` (psycopg's own default: what applications run) or
``prepare=True`` (every statement prepared as a named protocol statement, as ``execute(...,
prepare=True)`` does), for the suites that test how a proxy treats named statements.  A statement string
may hold several statements when it has no parameters (one simple-query batch); the rows handed
back are those of the last result set that has rows.  So ``prepare=True`` applies to statements
with parameters, as an application passes it for the query it runs again and again: a batch
without parameters cannot be one prepared statement (42601), and is sent as it is.
"""

from __future__ import annotations

import traceback
from typing import Any, ClassVar

import psycopg

from harness.clients.address import Address

Rows = list[tuple[Any, ...]]


def _connect_kwargs(address: Address, connect_timeout: float, options: dict[str, Any]) -> dict[str, Any]:
    named = {"application_name": address.program} if address.program else {}
    return {"host": address.host, "port": address.port, "user": address.user, "password": address.password,
            "dbname": address.database, "autocommit": True, "connect_timeout": max(1, round(connect_timeout)),
            "prepare_threshold": None, **named, **({"sslmode": "require"} if address.tls else {}), **options}


def _must_close(conn: Any, timed_out: bool) -> bool:
    return bool(timed_out or conn.broken)


def _in_transaction(conn: Any) -> bool:
    return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def _socket(conn: Any) -> int | None:
    try:
        return conn.pgconn.socket if conn is not None else None
    except psycopg.Error:
        return None


class _PsycopgBase:
    """What the sync and async adapters share: settings, state, and the socket for deadlines."""

    errors = psycopg.Error
    plaintext_options: ClassVar[dict[str, Any]] = {"sslmode": "disable"}
    """Options that keep the connection off TLS (libpq's default ``prefer`` would negotiate it)."""

    def __init__(self, address: Address, *, connect_timeout: float = 10, prepare: bool | None = None,
                 **options: Any) -> None:
        self._kwargs = _connect_kwargs(address, connect_timeout, options)
        self._prepare = prepare  # psycopg's execute(prepare=...): None lets the threshold decide
        self.conn: Any = None

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def fileno(self) -> int | None:
        return _socket(self.conn)

    @staticmethod
    def io_timeout_options(seconds: float) -> dict[str, Any]:
        """None needed: libpq's ``connect_timeout`` bounds the whole connection set-up."""
        return {}

    @staticmethod
    def tls_options(required: bool) -> dict[str, Any]:
        """Connect options that insist on TLS (unverified, like ``sslmode=require``) or refuse it."""
        return {"sslmode": "require" if required else "disable"}

    @property
    def tls_in_use(self) -> bool:
        return self.connected and bool(self.conn.pgconn.ssl_in_use)

    cancel_needs_connection = False
    """A cancel travels on a connection libpq opens for it (a CancelRequest), not on one of ours."""

    def cancel_from_elsewhere(self, via: Any = None, *, timeout: float = 5.0) -> dict[str, Any]:
        """Ask the server, from another thread, to cancel what this connection runs: psycopg's
        ``cancel_safe``, a CancelRequest with the BackendKeyData the server (or proxy) gave this
        connection.  Returns what to record about it."""
        if self.conn is None:
            raise psycopg.OperationalError("the connection was never opened")
        self.conn.cancel_safe(timeout=timeout)
        return {"backend_key": self.conn.info.backend_pid}


def multi_host_options(hosts: list[tuple[str, int]], writer: bool) -> dict[str, Any]:
    """libpq options that try each instance in turn and keep the one of the wanted role.

    What a PostgreSQL client does without a proxy: ``target_session_attrs`` ``read-write`` finds
    the writer, ``standby`` a reader, on every (re)connect."""
    return {"host": ",".join(h for h, _ in hosts), "port": ",".join(str(p) for _, p in hosts),
            "target_session_attrs": "read-write" if writer else "standby"}


def _let_go_of_the_attempt(error: BaseException) -> None:
    """Close the socket of a failed connection attempt now, not when the garbage collector runs.

    psycopg keeps the half-made connection in a local of its ``connect`` frame, and the error it
    raises refers to that frame through its traceback while the frame refers back to the error: a
    cycle only the collector breaks.  Until then the socket stays open, and a pooler that gives each
    client a process (pgpool-II) keeps a process waiting on it: after 168 timed-out connects,
    fresh ones were refused for more than 30 s.  Clearing the finished frames' locals drops the
    attempt at once."""
    traceback.clear_frames(error.__traceback__)


class PsycopgConnection(_PsycopgBase):
    """A blocking psycopg connection; ``options`` go to ``psycopg.connect``."""

    multi_host_options = staticmethod(multi_host_options)

    def open(self) -> None:
        try:
            self.conn = psycopg.connect(**self._kwargs)
        except psycopg.Error as e:
            _let_go_of_the_attempt(e)
            raise

    def execute(self, sql: str, params: Any = None) -> Rows | None:
        cur = self.conn.execute(sql, params, prepare=self._prepare if params is not None else None)
        rows: Rows | None = None
        while True:
            if cur.description is not None:
                got = cur.fetchall()
                if got or rows is None:
                    rows = got
            if not cur.nextset():
                return rows

    def settle(self, timed_out: bool) -> None:
        """Leave the connection usable (rolled back) or closed - never half-way inside a transaction."""
        if not self.connected:
            return
        if _must_close(self.conn, timed_out):
            self.conn.close()
            return
        try:
            if _in_transaction(self.conn):
                self.conn.execute("ROLLBACK")
        except psycopg.Error:
            self.conn.close()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass


class AsyncPsycopgConnection(_PsycopgBase):
    """The same on a psycopg ``AsyncConnection``, for many clients in one event loop."""

    async def open(self) -> None:
        try:
            self.conn = await psycopg.AsyncConnection.connect(**self._kwargs)
        except psycopg.Error as e:
            _let_go_of_the_attempt(e)
            raise

    async def execute(self, sql: str, params: Any = None) -> Rows | None:
        cur = await self.conn.execute(sql, params, prepare=self._prepare if params is not None else None)
        rows: Rows | None = None
        while True:
            if cur.description is not None:
                got = await cur.fetchall()
                if got or rows is None:
                    rows = got
            if not cur.nextset():
                return rows

    async def settle(self, timed_out: bool) -> None:
        if not self.connected:
            return
        if _must_close(self.conn, timed_out):
            await self.conn.close()
            return
        try:
            if _in_transaction(self.conn):
                await self.conn.execute("ROLLBACK")
        except psycopg.Error:
            await self.conn.close()

    async def close(self) -> None:
        if self.conn is not None:
            try:
                await self.conn.close()
            except psycopg.Error:
                pass
