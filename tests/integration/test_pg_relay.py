"""The callback-driven relay under stress: a client that stops reading, a backend that dies while held.

The relay takes over the client's and the backend's transports while a backend is held and
hands the backend's back at release; these tests check the cases where that hand-over and the
flow control matter, with a real PostgreSQL behind a proxy running in a background thread.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import psycopg
import pytest
from pg_proxy_support import backend_pid, eventually, running_proxy

from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.shares_cluster,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]

ROWS = 60000
ROW_WIDTH = 400  # about 25 MB of DataRows: far more than any socket and write buffer hold


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster(readers=0, max_connections=100) as c:
        yield c


def _startup_and_login(sock: socket.socket, cluster) -> None:
    """A raw client speaking just enough protocol: MD5 login as the proxy's md5 user."""
    from pg_proxy_support import MD5_PASSWORD, MD5_USER

    from reference_proxy.engines.postgres.auth import md5_answer

    params = f"user\0{MD5_USER}\0database\0{cluster.database}\0\0".encode()
    sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    reader = _Messages(sock)
    t, body = reader.next()
    assert t == b"R" and struct.unpack("!i", body[:4])[0] == 5, (t, body)
    answer = md5_answer(MD5_USER, MD5_PASSWORD, body[4:8]).encode() + b"\0"
    sock.sendall(b"p" + struct.pack("!i", 4 + len(answer)) + answer)
    while True:
        t, body = reader.next()
        assert t != b"E", body
        if t == b"Z":
            return


class _Messages:
    """Reads whole backend messages from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, need: int) -> None:
        while len(self.buf) < need:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the proxy closed the connection")
            self.buf += chunk

    def next(self) -> tuple[bytes, bytes]:
        self._fill(5)
        length = struct.unpack_from("!i", self.buf, 1)[0]
        self._fill(1 + length)
        t, body = bytes(self.buf[:1]), bytes(self.buf[5:1 + length])
        del self.buf[:1 + length]
        return t, body


def test_a_client_that_stops_reading_gets_every_row_and_blocks_nobody(cluster):
    with running_proxy(cluster) as proxy, socket.create_connection(("127.0.0.1", proxy.port())) as sock:
        sock.settimeout(60)
        _startup_and_login(sock, cluster)
        sql = f"SELECT g, repeat('z', {ROW_WIDTH}) FROM generate_series(1, {ROWS}) g\0".encode()
        sock.sendall(b"Q" + struct.pack("!i", 4 + len(sql)) + sql)
        # While this client reads nothing, the proxy must keep serving everyone else.
        with proxy.connect(prepare_threshold=None) as other:
            for i in range(20):
                assert other.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        rows, reader = 0, _Messages(sock)
        while True:
            t, body = reader.next()
            if t == b"D":
                rows += 1
            elif t == b"Z":
                assert body == b"I"
                break
            else:
                assert t in (b"T", b"C"), (t, body[:200])
        assert rows == ROWS
        eventually(lambda: proxy.metric("DatabaseConnectionsCurrentlyBorrowed",
                                        instance=cluster.writer.id) == 0,
                   what="the backend to go back to the pool after the big result")


def test_a_backend_killed_while_held_fails_its_client_only(cluster):
    with running_proxy(cluster) as proxy:
        pinned = proxy.connect(prepare_threshold=None)
        pinned.execute("SET application_name TO 'relay-victim'")  # pins: the backend stays held
        pid = backend_pid(pinned)
        with psycopg.connect(host="127.0.0.1", port=cluster.writer.port, user=cluster.user,
                             password=cluster.password, dbname=cluster.database, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        deadline = time.monotonic() + 30
        with pytest.raises(psycopg.OperationalError):
            while time.monotonic() < deadline:  # the FATAL may land between two queries
                pinned.execute("SELECT 1")
                time.sleep(0.05)
        pinned.close()
        eventually(lambda: proxy.metric("DatabaseConnectionsCurrentlySessionPinned",
                                        instance=cluster.writer.id) == 0,
                   what="the dead pinned backend to be given up")
        with proxy.connect(prepare_threshold=None) as fresh:
            assert fresh.execute("SELECT 41 + 1").fetchone() == (42,)
            assert backend_pid(fresh) != pid
