"""PyMySQL adapter (MySQL-protocol servers), synchronous.

PyMySQL's own ``connect_timeout`` covers only the TCP connect, and a server that accepts but never
answers hangs a client with no ``read_timeout`` for ever; the adapter bounds the login handshake by
the connect timeout too, ``read_timeout`` defaults to a generous backstop, and the client's request
deadline bounds each request.  TLS is off unless
driver options ask for it: PyMySQL 1.2 otherwise negotiates it whenever the server offers it.

A statement string may hold several statements (the connection asks for MULTI_STATEMENTS), sent
as one query, so that a suite's ``BEGIN; SELECT ...`` reaches one backend connection in one
request, as with psycopg; the rows handed back are those of the last result set that has rows.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any, ClassVar

import pymysql
from pymysql.constants import CLIENT

from harness.clients.address import Address

Rows = list[tuple[Any, ...]]


def read_result_sets(cur: Any) -> Rows | None:
    """Every result set of the statement string ``cur`` just sent, read off the connection; the rows
    of the last one that has rows (else of the first with columns, else None).

    Reading them all is what keeps the connection usable: a result set left unread is taken for the
    answer to the next command sent on it.  Works with any DB-API cursor that has ``nextset``."""
    rows: Rows | None = None
    while True:
        if cur.description:
            got = [tuple(r) for r in cur.fetchall()]
            if got or rows is None:
                rows = got
        if not cur.nextset():
            return rows


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
                        "write_timeout": read_timeout, **self.tls_options(address.tls),
                        "client_flag": CLIENT.MULTI_STATEMENTS,
                        **({"program_name": address.program} if address.program else {}), **options}
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

    @staticmethod
    def io_timeout_options(seconds: float) -> dict[str, Any]:
        """Options bounding every read and write, the greeting included (a server that never greets)."""
        return {"read_timeout": seconds, "write_timeout": seconds}

    @staticmethod
    def tls_options(required: bool) -> dict[str, Any]:
        """Connect options that insist on TLS without verifying the certificate (a server that does
        not offer it is refused), or that never use it."""
        if not required:
            return {"ssl_disabled": True}
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return {"ssl_disabled": False, "ssl": context}

    cancel_needs_connection = True
    """MySQL has no out-of-band cancel: a KILL QUERY is sent on a second connection (``via``)."""

    def cancel_from_elsewhere(self, via: PyMySQLConnection, *, timeout: float = 5.0) -> dict[str, Any]:
        """Stop what this connection runs as a MySQL client does: ``KILL QUERY <id>`` on ``via``,
        another connection to the same address, where the id is the connection id this one's
        handshake gave (behind a proxy, the proxy's id, not a backend thread's).  Returns what to
        record about it."""
        if self.conn is None:
            raise pymysql.err.InterfaceError(0, "the connection was never opened")
        thread = int(self.conn.thread_id())
        via.execute(f"KILL QUERY {thread}")
        return {"thread_id": thread}

    @property
    def tls_in_use(self) -> bool:
        return self.connected and isinstance(getattr(self.conn, "_sock", None), ssl.SSLSocket)

    def open(self) -> None:
        """Connect, with the handshake's reads and writes bounded by the connect timeout.

        A proxy may keep a login waiting (for a backend connection); libpq's ``connect_timeout``
        bounds psycopg's whole set-up, and PyMySQL's only the TCP connect, so without this a login
        could wait as long as ``read_timeout`` and count as served.  The connection then gets its own
        read and write timeouts back (PyMySQL applies them at its next read or write)."""
        limit = self._kwargs["connect_timeout"]
        own = {k: self._kwargs.get(k) for k in ("read_timeout", "write_timeout")}
        during = {k: limit if v is None else min(limit, v) for k, v in own.items()}
        self.conn = pymysql.connect(**{**self._kwargs, **during})
        self.conn._read_timeout, self.conn._write_timeout = own["read_timeout"], own["write_timeout"]

    def execute(self, sql: str, params: Any = None) -> Rows | None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return read_result_sets(cur)

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
