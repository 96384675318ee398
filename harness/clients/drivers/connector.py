"""MySQL Connector/Python adapter (MySQL-protocol servers), synchronous, for the binary protocol.

PyMySQL inlines parameters into SQL text and never uses the binary protocol, so a client that
prepares server-side statements (COM_STMT_PREPARE, then COM_STMT_EXECUTE by statement id, as
Connector/Python's ``cursor(prepared=True)`` and most Java and Go drivers do) needs another driver.
Like a driver's statement cache, each distinct text is prepared once per connection and executed by
its id afterwards, so the statement outlives the transaction it was prepared in: the case a proxy
must pin for (RDS Proxy pins on COM_STMT_PREPARE).  One statement per prepared request (the binary
protocol has no batches); a request without parameters goes as text and may hold several statements
(``BEGIN; SELECT ...``), whose result sets are all read, as PyMySQL's adapter does, so that none is
left on the connection to be taken for the next command's answer.  The pure-Python implementation
is used; its errors are re-raised as PyMySQL's, carrying the same error number and text, so the
engine's one error classifier reads both drivers.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import pymysql

from harness.clients.address import Address
from harness.clients.drivers.pymysql import PyMySQLConnection, read_result_sets

Rows = list[tuple[Any, ...]]


def _as_pymysql(e: Exception) -> pymysql.MySQLError:
    """A Connector/Python error as the PyMySQL error a classifier knows (errno, text)."""
    errno = getattr(e, "errno", None) or 0
    text = getattr(e, "msg", None) or str(e)
    kind = pymysql.err.OperationalError if errno == 0 or 2000 <= errno < 3000 else pymysql.err.InternalError
    return kind(errno, text)


class ConnectorConnection:
    """A blocking Connector/Python connection whose statements with parameters are prepared on the server."""

    errors = pymysql.MySQLError
    plaintext_options: ClassVar[dict[str, Any]] = {}
    multi_host_options = None
    tls_options = staticmethod(PyMySQLConnection.tls_options)

    def __init__(self, address: Address, *, connect_timeout: float = 10, read_timeout: float | None = 300,
                 write_timeout: float | None = None, ssl_disabled: bool | None = None, ssl: Any = None,
                 **options: Any) -> None:
        if ssl_disabled is None:
            ssl_disabled = not address.tls
        self._kwargs = {"host": address.host, "port": address.port, "user": address.user,
                        "password": address.password, "database": address.database, "autocommit": True,
                        "connection_timeout": max(1, round(connect_timeout)), "use_pure": True,
                        "ssl_disabled": ssl_disabled, **options}
        if not ssl_disabled:
            self._kwargs["ssl_verify_cert"] = False
        self.conn: Any = None
        self._statements: dict[str, Any] = {}

    @staticmethod
    def io_timeout_options(seconds: float) -> dict[str, Any]:
        return {"read_timeout": seconds}

    @property
    def connected(self) -> bool:
        return self.conn is not None and getattr(self.conn, "_socket", None) is not None

    def fileno(self) -> int | None:
        sock = getattr(getattr(self.conn, "_socket", None), "sock", None)
        try:
            return sock.fileno() if sock is not None else None
        except OSError:
            return None

    @property
    def tls_in_use(self) -> bool:
        return self.connected and bool(getattr(self.conn, "_ssl_active", False))

    def open(self) -> None:
        import mysql.connector  # only the clients that ask for the binary protocol need it

        try:
            self.conn = mysql.connector.connect(**self._kwargs)
        except mysql.connector.Error as e:
            raise _as_pymysql(e) from None

    def execute(self, sql: str, params: Any = None) -> Rows | None:
        import mysql.connector

        try:
            if params is None:
                cur = self.conn.cursor()
                try:
                    cur.execute(sql)
                    return read_result_sets(cur)
                finally:
                    cur.close()
            cur = self._statements.get(sql)
            if cur is None:
                cur = self._statements[sql] = self.conn.cursor(prepared=True)
            cur.execute(sql, tuple(params))
            return [tuple(r) for r in cur.fetchall()] if cur.description else None
        except mysql.connector.Error as e:
            raise _as_pymysql(e) from None

    def settle(self, timed_out: bool) -> None:
        """Roll back what the failed request left open, or close a connection cut off by its deadline.

        A rollback that fails in any way closes the connection: besides its own errors, the
        pure-Python protocol code raises plain ``IndexError``/``struct.error`` on a reply it cannot
        parse, and a connection whose replies cannot be read is no use to the next request."""
        if not self.connected:
            return
        if timed_out:
            self.close()
            return
        try:
            self.conn.rollback()
        except Exception:  # noqa: BLE001 - whatever the failure, the connection is finished
            self.close()

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
        self._statements.clear()
