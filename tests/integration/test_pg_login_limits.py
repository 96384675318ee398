"""What a PostgreSQL client that has not logged in yet can make the reference proxy hold, and what a
login that fails after authentication is told: psycopg and raw sockets against a real PostgreSQL 15.

Each test starts its own proxy in front of one module-wide stand-in."""

from __future__ import annotations

import os
import socket
import struct

import psycopg
import pytest
from pg_proxy_support import eventually, running_proxy
from scramp import ScramClient

from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster
from reference_proxy.protocol.postgres import (
    NEED_DATA,
    PROTOCOL_3_0,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    Decoder,
    Direction,
    ErrorResponse,
    SASLInitialResponse,
    SASLResponse,
    StartupMessage,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.shares_cluster,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster(readers=0, max_connections=100) as c:
        yield c


def _startup(user: str, database: str) -> bytes:
    return StartupMessage(PROTOCOL_3_0, (("user", user), ("database", database))).encode()


def _messages(sock: socket.socket, decoder: Decoder) -> list:
    """Every server message until the server closes or sends ReadyForQuery/ErrorResponse."""
    sock.settimeout(10)
    out = []
    while True:
        msg = decoder.next_event()
        if msg is NEED_DATA:
            data = sock.recv(65536)
            if not data:
                return out
            decoder.receive_data(data)
            continue
        out.append(msg)
        if isinstance(msg, ErrorResponse) or type(msg).__name__ == "ReadyForQuery":
            return out


def _scram_login_trace(port: int, user: str, password: str, database: str) -> list[str]:
    """Log in over SCRAM with a raw socket; the names of the messages the server sent, in order,
    the error as ``ErrorResponse <severity> <sqlstate> <message>``."""
    decoder = Decoder(Direction.BACKEND)
    trace: list[str] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(_startup(user, database))
        scram = None
        while True:
            msg = decoder.next_event()
            if msg is NEED_DATA:
                data = sock.recv(65536)
                if not data:
                    return trace
                decoder.receive_data(data)
                continue
            if isinstance(msg, ErrorResponse):
                trace.append(f"ErrorResponse {msg.severity} {msg.sqlstate} {msg.message}")
                return trace
            trace.append(type(msg).__name__)
            if isinstance(msg, AuthenticationSASL):
                scram = ScramClient(["SCRAM-SHA-256"], user, password)
                sock.sendall(SASLInitialResponse("SCRAM-SHA-256", scram.get_client_first().encode()).encode())
            elif isinstance(msg, AuthenticationSASLContinue):
                scram.set_server_first(msg.data.decode())
                sock.sendall(SASLResponse(scram.get_client_final().encode()).encode())
            elif isinstance(msg, AuthenticationSASLFinal):
                scram.set_server_final(msg.data.decode())
            elif trace[-1] == "ReadyForQuery":
                return trace


def _read_error(sock: socket.socket) -> ErrorResponse:
    """The first ErrorResponse the server sends (what comes before it is skipped)."""
    for msg in _messages(sock, Decoder(Direction.BACKEND)):
        if isinstance(msg, ErrorResponse):
            return msg
    raise AssertionError("the server closed without an ErrorResponse")


def _assert_closed(sock: socket.socket) -> None:
    sock.settimeout(10)
    while chunk := sock.recv(65536):
        assert not chunk.startswith(b"R"), "the proxy went on with the login"


# ------------------------------------------------------------------------------ message size

def test_a_huge_password_message_is_refused_from_its_header(cluster):
    """Before login a message of 60 MB is refused as soon as its length is read: the proxy neither
    waits for nor buffers the body (it used to accept up to its 64 MB post-login limit)."""
    with running_proxy(cluster) as proxy, socket.create_connection(("127.0.0.1", proxy.port())) as sock:
        sock.sendall(_startup(cluster.user, cluster.database))
        first = _messages_until_auth_request(sock)
        assert isinstance(first, AuthenticationSASL)
        sock.sendall(b"p" + struct.pack("!i", 60 * 1024 * 1024 + 4) + b"x" * 1024)
        error = _read_error(sock)
        assert (error.severity, error.sqlstate) == ("FATAL", "08P01")
        assert "65535" in error.message
        _assert_closed(sock)


def _messages_until_auth_request(sock: socket.socket):
    decoder = Decoder(Direction.BACKEND)
    sock.settimeout(10)
    while (msg := decoder.next_event()) is NEED_DATA:
        decoder.receive_data(sock.recv(65536))
    return msg


def test_a_password_message_of_postgres_size_is_still_read(cluster):
    """A 60 kB password (below PostgreSQL's own 65,535-byte limit) is read and judged, not refused as
    too large: the limit is PostgreSQL's, not tighter."""
    with running_proxy(cluster) as proxy, \
            pytest.raises(psycopg.OperationalError, match="The password that was provided for the role"):
        proxy.connect(password="x" * 60_000)


# ---------------------------------------------------------------------------------- total time

def test_a_trickling_login_is_closed_at_the_total_login_limit(cluster):
    """A client that sends its startup packet one byte at a time, never silent long enough for the
    silence limit, is closed when the total login limit runs out, long before its packet is whole."""
    with running_proxy(cluster, proxy__client_handshake_timeout=3, proxy__client_login_timeout=2) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port())) as sock:
        packet = _startup(cluster.user, cluster.database)
        sock.settimeout(0.5)
        sent = 0
        closed = False
        while sent < len(packet) and not closed:
            try:
                sock.sendall(packet[sent:sent + 1])
                sent += 1
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed, "the proxy read the whole trickled startup packet"
        assert sent < len(packet)
        assert proxy.metric("ClientConnectionsClosed", endpoint="default") == 1


# ------------------------------------------------------------------------------- clients in login

def test_clients_over_the_login_cap_get_53300_and_logged_in_ones_do_not_count(cluster):
    with running_proxy(cluster, proxy__max_unauthenticated_clients=2) as proxy:
        logged_in = [proxy.connect() for _ in range(3)]  # logged-in clients leave the gate
        stalled = [socket.create_connection(("127.0.0.1", proxy.port())) for _ in range(2)]
        try:
            eventually(lambda: proxy.call(lambda: proxy.server.services.login_gate.in_login) == 2,
                       what="two clients in login")
            with pytest.raises(psycopg.OperationalError, match="sorry, too many clients already"):
                proxy.connect()  # sslmode=prefer: an SSLRequest first, answered N before the refusal
            with socket.create_connection(("127.0.0.1", proxy.port())) as sock:
                sock.sendall(_startup(cluster.user, cluster.database))
                error = _read_error(sock)
            assert (error.severity, error.sqlstate) == ("FATAL", "53300")
            assert proxy.metric("ClientConnectionsRefused", endpoint="default", reason="unauthenticated_limit") >= 1
            assert proxy.admin_status()[0]["login"]["refused"] >= 1
        finally:
            for sock in stalled:
                sock.close()
        eventually(lambda: proxy.call(lambda: proxy.server.services.login_gate.in_login) == 0,
                   what="the stalled clients to leave")
        with proxy.connect() as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        for conn in logged_in:
            assert conn.execute("SELECT 2").fetchone()[0] == 2
            conn.close()


# ------------------------------------------------------------------------------ startup errors

def test_a_missing_database_gets_postgres_own_3d000_in_its_order(cluster):
    """PostgreSQL authenticates first, then finds the database missing: AuthenticationOk, then FATAL
    3D000 'database "x" does not exist', before any ParameterStatus.  The proxy answers the same,
    message for message (it used to say 08001 'Request returned an error: ...')."""
    direct = _scram_login_trace(cluster.writer.port, cluster.user, cluster.password, "no_such_db")
    with running_proxy(cluster) as proxy:
        proxied = _scram_login_trace(proxy.port(), cluster.user, cluster.password, "no_such_db")
        with pytest.raises(psycopg.OperationalError, match='FATAL:  database "no_such_db" does not exist'):
            psycopg.connect(host="127.0.0.1", port=proxy.port(), user=cluster.user, password=cluster.password,
                            dbname="no_such_db", connect_timeout=10)
    assert direct[-2:] == ["AuthenticationOk", 'ErrorResponse FATAL 3D000 database "no_such_db" does not exist']
    assert proxied == direct


def test_errors_before_authentication_keep_their_order(cluster):
    """A wrong password is refused before the database is looked at, as by PostgreSQL: 28P01 even
    when the database does not exist either."""
    with running_proxy(cluster) as proxy:
        trace = _scram_login_trace(proxy.port(), cluster.user, "wrong", "no_such_db")
        with pytest.raises(psycopg.OperationalError, match="The password that was provided for the role"):
            psycopg.connect(host="127.0.0.1", port=proxy.port(), user=cluster.user, password="wrong",
                            dbname="no_such_db", connect_timeout=10)
    assert trace[-1].startswith("ErrorResponse FATAL 28P01 ")
    assert "AuthenticationOk" not in trace


def test_an_existing_database_still_logs_in_after_a_missing_one(cluster):
    with running_proxy(cluster) as proxy:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=proxy.port(), user=cluster.user, password=cluster.password,
                            dbname="no_such_db", connect_timeout=10)
        with proxy.connect() as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == cluster.database
