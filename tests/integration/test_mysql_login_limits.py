"""What a MySQL client that has not logged in yet can make the reference proxy hold, and what a login
naming a database that does not exist is told: PyMySQL and raw sockets against a real MariaDB.

Each test starts its own proxy in front of one module-wide stand-in."""

from __future__ import annotations

import os
import socket

import pymysql
import pytest
from mysql_proxy_support import running_proxy
from polling import eventually

from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster
from reference_proxy.protocol.mysql import Capability, ErrPacket, HandshakeResponse41, HandshakeV10
from reference_proxy.protocol.mysql.auth import native_password_scramble

pytestmark = [
    pytest.mark.integration, pytest.mark.mysql, pytest.mark.shares_cluster,
    pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                       reason="MariaDB server binaries are not installed"),
]


@pytest.fixture(scope="module")
def cluster():
    with MySQLCluster(readers=0) as c:
        yield c


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """(sequence id, payload) of the next packet; ('', b'') when the server closed."""
    header = _recv_exactly(sock, 4)
    if len(header) < 4:
        return -1, b""
    size = int.from_bytes(header[:3], "little")
    return header[3], _recv_exactly(sock, size)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _greeted(proxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port()))
    sock.settimeout(10)
    sequence, greeting = _read_packet(sock)
    assert sequence == 0 and greeting[:1] == b"\x0a"
    return sock


def test_a_huge_handshake_response_is_refused_from_its_header(cluster):
    """A 512 KB HandshakeResponse is refused with 1153 as soon as its header is read: before login the
    proxy accepts MySQL's handshake sizes only (96 KiB), not a megabyte or the relay's 64 MB."""
    with running_proxy(cluster) as proxy, _greeted(proxy) as sock:
        sock.sendall((512 * 1024).to_bytes(3, "little") + b"\x01" + b"\x00" * 1024)
        _, payload = _read_packet(sock)
        assert payload[:1] == b"\xff", payload
        assert ErrPacket.decode(payload).error_code == 1153
        try:
            assert _read_packet(sock) == (-1, b"")
        except ConnectionResetError:
            pass  # closed with the rest of the client's bytes unread: a reset is a close too


def test_a_trickling_login_is_closed_at_the_total_login_limit(cluster):
    """A client that sends its HandshakeResponse one byte at a time, never silent long enough for the
    silence limit, is closed when the total login limit runs out."""
    with running_proxy(cluster, proxy__client_handshake_timeout=3, proxy__client_login_timeout=2) as proxy, \
            _greeted(proxy) as sock:
        response = (200).to_bytes(3, "little") + b"\x01" + b"\x00" * 200
        sock.settimeout(0.5)
        sent = 0
        closed = False
        while sent < len(response) and not closed:
            try:
                sock.sendall(response[sent:sent + 1])
                sent += 1
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed, "the proxy read the whole trickled handshake response"
        assert sent < len(response)


def test_clients_over_the_login_cap_get_1040(cluster):
    with running_proxy(cluster, proxy__max_unauthenticated_clients=1) as proxy:
        logged_in = [proxy.connect() for _ in range(2)]  # logged-in clients leave the gate
        stalled = _greeted(proxy)
        try:
            with pytest.raises(pymysql.err.OperationalError) as refused:
                proxy.connect()
            assert refused.value.args[0] == 1040
            assert "Too many connections" in refused.value.args[1]
            assert proxy.metric("ClientConnectionsRefused", endpoint="default", reason="unauthenticated_limit") == 1
        finally:
            stalled.close()
        eventually(lambda: proxy.call(lambda: proxy.server.services.login_gate.in_login) == 0,
                   what="the stalled client to leave")
        with proxy.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        for conn in logged_in:
            conn.close()


def test_an_unknown_database_gets_1049_in_place_of_the_ok(cluster):
    """MariaDB refuses a login naming a database that does not exist with ERROR 1049 where the OK
    would be; so does the proxy, with the server's own words (it used to accept the login)."""
    with pytest.raises(pymysql.err.OperationalError) as direct:
        pymysql.connect(host="127.0.0.1", port=cluster.writer.port, user=cluster.user, password=cluster.password,
                        database="no_such_db", ssl_disabled=True, connect_timeout=10)
    with running_proxy(cluster) as proxy:
        with pytest.raises(pymysql.err.OperationalError) as proxied:
            proxy.connect(database="no_such_db")
        with pytest.raises(pymysql.err.OperationalError) as over_tls:
            proxy.connect(database="no_such_db", tls=True)
        with proxy.connect() as conn, conn.cursor() as cur:  # a database that exists is known from now on
            cur.execute("SELECT DATABASE()")
            assert cur.fetchone() == (cluster.database,)
        with proxy.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert direct.value.args == (1049, "Unknown database 'no_such_db'")
    assert proxied.value.args == direct.value.args
    assert over_tls.value.args == direct.value.args


def _login_reply(port: int, user: str, password: str, database: str) -> tuple[int, bytes]:
    """(sequence id, payload) of the server's answer to a mysql_native_password HandshakeResponse."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        _, payload = _read_packet(sock)
        greeting = HandshakeV10.decode(payload)
        caps = (Capability.LONG_PASSWORD | Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION
                | Capability.CONNECT_WITH_DB | Capability.PLUGIN_AUTH | Capability.TRANSACTIONS)
        response = HandshakeResponse41(int(caps), user, native_password_scramble(password, greeting.auth_plugin_data),
                                       database, "mysql_native_password").encode()
        sock.sendall(len(response).to_bytes(3, "little") + b"\x01" + response)
        return _read_packet(sock)


def test_the_unknown_database_error_takes_the_place_of_the_ok_on_the_wire(cluster):
    """Byte for byte as MariaDB: the answer to the HandshakeResponse is the ERR, at the OK's sequence
    id (2), not an OK followed by an error on the first command."""
    direct = _login_reply(cluster.writer.port, cluster.user, cluster.password, "no_such_db")
    with running_proxy(cluster) as proxy:
        proxied = _login_reply(proxy.port(), cluster.user, cluster.password, "no_such_db")
        assert proxy.metric("ClientConnectionsSetupSucceeded", endpoint="default") == 0
    assert direct[0] == 2 and direct[1][:1] == b"\xff"
    assert ErrPacket.decode(direct[1]).error_code == 1049
    assert proxied == direct
