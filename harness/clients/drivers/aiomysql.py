"""aiomysql adapter (MySQL-protocol servers), for many clients in one event loop.

aiomysql is PyMySQL's protocol code on asyncio streams: it raises PyMySQL's own exceptions, so
errors are classified exactly as the blocking adapter's (:func:`~harness.clients.outcomes.classify_pymysql`),
and a storm of thousands of MySQL clients costs one process, as psycopg's async connection does
for PostgreSQL.  Its ``connect_timeout`` bounds only the TCP connect; the client's request
deadline bounds the rest.  TLS is never negotiated unless an ``ssl`` context is passed.
Multi-statement requests and their rows follow the blocking adapter's rule (the rows of the last
result set that has rows).
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any, ClassVar

import aiomysql
import pymysql
from pymysql.constants import CLIENT

from harness.clients.address import Address

Rows = list[tuple[Any, ...]]


class AsyncAioMySQLConnection:
    """One aiomysql connection; ``options`` go to ``aiomysql.connect``."""

    errors = pymysql.MySQLError
    plaintext_options: ClassVar[dict[str, Any]] = {}
    """Options that keep the connection off TLS (none needed: aiomysql uses TLS only when asked)."""

    def __init__(self, address: Address, *, connect_timeout: float = 10, **options: Any) -> None:
        self._kwargs = {"host": address.host, "port": address.port, "user": address.user,
                        "password": address.password, "db": address.database, "autocommit": True,
                        "connect_timeout": connect_timeout, "client_flag": CLIENT.MULTI_STATEMENTS,
                        **({"program_name": address.program} if address.program else {}),
                        **(self.tls_options(True) if address.tls else {}), **options}
        self.conn: Any = None

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def fileno(self) -> int | None:
        writer = getattr(self.conn, "_writer", None)
        sock = writer.transport.get_extra_info("socket") if writer is not None else None
        try:
            return sock.fileno() if sock is not None else None
        except OSError:
            return None

    @staticmethod
    def tls_options(required: bool) -> dict[str, Any]:
        """Connect options that insist on TLS without verifying the certificate, or that never use it."""
        if not required:
            return {}
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return {"ssl": context}

    @property
    def tls_in_use(self) -> bool:
        writer = getattr(self.conn, "_writer", None) if self.connected else None
        return writer is not None and writer.transport.get_extra_info("ssl_object") is not None

    async def open(self) -> None:
        self.conn = await aiomysql.connect(**self._kwargs)

    async def execute(self, sql: str, params: Any = None) -> Rows | None:
        async with self.conn.cursor() as cur:
            await cur.execute(sql, params)
            rows: Rows | None = None
            while True:
                if cur.description:
                    got = list(await cur.fetchall())
                    if got or rows is None:
                        rows = got
                if not await cur.nextset():
                    return rows

    async def settle(self, timed_out: bool) -> None:
        """Roll back what the failed request left open, or close a connection cut off by its deadline."""
        if not self.connected:
            return
        if timed_out:
            await self.close()
            return
        try:
            await self.execute("ROLLBACK")
        except pymysql.MySQLError:
            await self.close()

    async def close(self) -> None:
        """Say goodbye (COM_QUIT) when the connection still stands, then drop the socket."""
        if self.conn is None:
            return
        with contextlib.suppress(pymysql.MySQLError, OSError, ConnectionError):
            await self.conn.ensure_closed()
        self.conn.close()
