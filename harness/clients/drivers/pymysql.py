"""PyMySQL adapter (MySQL-protocol servers), synchronous.

PyMySQL's own ``connect_timeout`` covers only the TCP connect, and a server that accepts but never
answers hangs a client with no ``read_timeout`` for ever; ``read_timeout`` therefore defaults to a
generous backstop, and the client's request deadline bounds each request.  TLS is off unless
driver options ask for it: PyMySQL 1.2 otherwise negotiates it whenever the server offers it.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import pymysql

from harness.clients.address import Address

Rows = list[tuple[Any, ...]]


class PyMySQLConnection:
    """A blocking PyMySQL connection; ``options`` go to ``pymysql.connect``."""

    errors = pymysql.MySQLError
    plaintext_options: ClassVar[dict[str, Any]] = {}
    """Options that keep the connection off TLS (none: the adapter disables it itself)."""
    multi_host_options = None
    """PyMySQL connects to one host only: it has no way to find a writer among several instances."""

    def __init__(self, address: Address, *, connect_timeout: float = 10, read_timeout: float | None = 300,
                 **options: Any) -> None:
        self._kwargs = {"host": address.host, "port": address.port, "user": address.user,
                        "password": address.password, "database": address.database, "autocommit": True,
                        "connect_timeout": connect_timeout, "read_timeout": read_timeout,
                        "write_timeout": read_timeout, "ssl_disabled": True, **options}
        self.conn: Any = None

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.open

    def fileno(self) -> int | None:
        sock = getattr(self.conn, "_sock", None)
        try:
            return sock.fileno() if sock is not None else None
        except OSError:
            return None

    def open(self) -> None:
        self.conn = pymysql.connect(**self._kwargs)

    def execute(self, sql: str, params: Any = None) -> Rows | None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else None

    def settle(self, timed_out: bool) -> None:
        """Roll back what the failed request left open, or close a connection cut off by its deadline."""
        if not self.connected:
            return
        if timed_out:
            self.close()
            return
        try:
            self.execute("ROLLBACK")
        except pymysql.MySQLError:
            self.close()

    def close(self) -> None:
        if self.conn is not None and self.conn.open:
            with contextlib.suppress(pymysql.MySQLError):
                self.conn.close()
