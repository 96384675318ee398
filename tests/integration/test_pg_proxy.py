"""The reference proxy's PostgreSQL path, end to end: psycopg 3 -> proxy -> real PostgreSQL 15.

One 1-writer + 1-reader stand-in serves the module (``shares_cluster``); each test starts its own
proxy (a fresh pool) in a background thread, so pool-level assertions start from nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psycopg
import pytest
from pg_proxy_support import MD5_PASSWORD, MD5_USER, backend_pid, eventually, proxy_config, running_proxy

from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster
from reference_proxy.contracts import BorrowTimeout

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.shares_cluster,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster(readers=1, max_connections=100) as c:
        yield c


@pytest.fixture
def proxy(cluster):
    with running_proxy(cluster) as p:
        yield p


def test_transactions_multiplex_over_backends(proxy):
    """One client's consecutive transactions run on whichever backend is free: its pid changes."""
    a, b, c = (proxy.connect(prepare_threshold=None) for _ in range(3))
    try:
        with a.transaction():
            held_by_a = backend_pid(a)
            first = backend_pid(b)
            assert first != held_by_a  # a's backend is borrowed, b cannot get it
            with c.transaction():
                held_by_c = backend_pid(c)  # takes b's now-idle backend
                second = backend_pid(b)
        assert held_by_c == first
        assert second not in (held_by_c, first)
        assert proxy.metric("QueryRequests", endpoint="default") >= 5
    finally:
        for conn in (a, b, c):
            conn.close()


def test_many_clients_share_few_backends(proxy, cluster):
    """Eight busy clients: every query answered, backends stay few, clients see several of them."""
    def work(_):
        with proxy.connect(prepare_threshold=None) as conn:
            return [backend_pid(conn) for _ in range(25)]

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(work, range(8)))
    assert all(len(r) == 25 for r in results)
    opened = proxy.pool_instance(cluster.writer.id)["open"]
    assert opened <= 8
    assert any(len(set(r)) > 1 for r in results), "no client ever moved to another backend"


PIN_TRIGGERS = [
    "SET search_path TO public",
    "SELECT set_config('application_name', 'x', false)",
    "PREPARE proxy_test_stmt AS SELECT 1",
    "CREATE TEMP TABLE proxy_test_temp (x int)",
    "DECLARE proxy_test_cursor CURSOR WITH HOLD FOR SELECT 1",
    "LISTEN proxy_test_channel",
    "SELECT nextval('proxy_test_seq')",
    "SELECT pg_advisory_lock(4242)",
    "DISCARD ALL",
]

NON_TRIGGERS = [
    ["BEGIN", "SET LOCAL statement_timeout = 5000", "COMMIT"],
    ["SELECT pg_advisory_xact_lock(4243)"],
    ["SELECT 1 WHERE 1 = %s"],  # unnamed extended-protocol statement with a parameter
]


def _next_client_gets(proxy, pid_of_first: int) -> bool:
    """Does a new client's transaction land on ``pid_of_first`` (i.e. was it returned to the pool)?"""
    with proxy.connect(prepare_threshold=None) as other, other.transaction():
        return backend_pid(other) == pid_of_first


@pytest.fixture(scope="module")
def sequence(cluster):
    with psycopg.connect(host="127.0.0.1", port=cluster.writer.port, user=cluster.user,
                         password=cluster.password, dbname=cluster.database, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS proxy_test_seq")


@pytest.mark.parametrize("statement", PIN_TRIGGERS)
def test_each_pinning_trigger_pins(proxy, cluster, sequence, statement):
    with proxy.connect(prepare_threshold=None) as conn:
        conn.execute(statement, prepare=False)
        pid = backend_pid(conn)
        assert proxy.metric("DatabaseConnectionsCurrentlySessionPinned", instance=cluster.writer.id) == 1
        assert not _next_client_gets(proxy, pid)
        assert backend_pid(conn) == pid
    eventually(lambda: proxy.metric("DatabaseConnectionsCurrentlySessionPinned",
                                    instance=cluster.writer.id) == 0, what="the pin to end")


@pytest.mark.parametrize("statements", NON_TRIGGERS, ids=lambda s: s[-1][:30])
def test_non_triggers_do_not_pin(proxy, cluster, statements):
    with proxy.connect(prepare_threshold=None) as conn:
        for statement in statements:
            conn.execute(statement, (1,) if "%s" in statement else None, prepare=False)
        pid = backend_pid(conn)
        assert proxy.metric("DatabaseConnectionsCurrentlySessionPinned", instance=cluster.writer.id) == 0
        assert _next_client_gets(proxy, pid)


def test_no_session_state_leaks_to_the_next_client(proxy, cluster):
    """A pinned client's SET, temp table, prepared statement and advisory lock die with its session."""
    with proxy.connect(prepare_threshold=None) as first:
        first.execute("SET search_path TO leaked_schema, public")
        first.execute("CREATE TEMP TABLE leaked_temp (x int)")
        first.execute("PREPARE leaked_stmt AS SELECT 42")
        first.execute("SELECT pg_advisory_lock(777)")
        first.execute("SELECT %s::int", (1,), prepare=True)  # a protocol-level named statement too
        pid = backend_pid(first)
        with proxy.connect(prepare_threshold=None) as during:  # meanwhile: someone else's backend
            assert backend_pid(during) != pid
            assert during.execute("SHOW search_path").fetchone()[0] != "leaked_schema, public"
    eventually(lambda: proxy.pool_instance(cluster.writer.id)["idle"] >= 2,
               what="the pinned backend to be reset and pooled")
    seen = set()
    clients = [proxy.connect(prepare_threshold=None) for _ in range(2)]
    try:
        for conn in clients:
            conn.execute("BEGIN")
            seen.add(backend_pid(conn))
            assert conn.execute("SHOW search_path").fetchone()[0] == '"$user", public'
            assert conn.execute("SELECT to_regclass('pg_temp.leaked_temp')").fetchone()[0] is None
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0] == 0
        assert pid in seen  # the pinned backend itself was reused, after its reset
    finally:
        for conn in clients:
            conn.close()


def _backend_alive(cluster, pid: int) -> bool:
    with psycopg.connect(host="127.0.0.1", port=cluster.writer.port, user=cluster.user,
                         password=cluster.password, dbname=cluster.database, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 1


def test_client_leaving_mid_transaction_closes_its_backend(proxy, cluster):
    conn = proxy.connect(prepare_threshold=None)
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE IF NOT EXISTS proxy_half_done (x int)")
    pid = backend_pid(conn)
    conn.close()  # Terminate inside an open transaction
    eventually(lambda: not _backend_alive(cluster, pid), what="the half-used backend to be closed")
    assert pid not in {backend_pid(c) for c in [proxy.connect(prepare_threshold=None)]}


def test_idle_client_timeout_closes_client_not_backend(cluster):
    with running_proxy(cluster, pool__idle_client_timeout=1) as proxy:
        conn = proxy.connect(prepare_threshold=None)
        pid = backend_pid(conn)
        eventually(lambda: proxy.metric("ClientConnectionsClosed", endpoint="default") >= 1,
                   what="the idle client to be closed")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
        assert _backend_alive(cluster, pid)
        assert proxy.pool_instance(cluster.writer.id)["idle"] >= 1


def test_drain_closes_idle_pinned_sessions_at_once(cluster):
    with running_proxy(cluster) as proxy:
        pinned = proxy.connect(prepare_threshold=None)
        pinned.execute("SET search_path TO public")
        # The grace is long: only closing the idle pinned session at once lets the drain end in time.
        stopped = asyncio.run_coroutine_threadsafe(proxy.server.stop(grace=120), proxy.loop)
        eventually(lambda: stopped.done(), timeout=60, what="the drain to finish well before its grace")
        with pytest.raises(psycopg.OperationalError):
            pinned.execute("SELECT 1")
        pinned.close()


def test_backend_cap_holds_with_200_clients(cluster):
    """max_connections 100 x 10 % = 10 backends at most, whatever the number of clients."""
    with running_proxy(cluster, pool__max_connections_percent=10,
                       pool__max_idle_connections_percent=10) as proxy:
        peak = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], proxy.pool_instance(cluster.writer.id).get("open", 0))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        barrier = threading.Barrier(200)

        def client(_):
            with proxy.connect(prepare_threshold=None) as conn:
                barrier.wait(60)
                return [conn.execute("SELECT pg_backend_pid() FROM pg_sleep(0.01)").fetchone()[0]
                        for _ in range(3)]

        try:
            with concurrent.futures.ThreadPoolExecutor(200) as ex:
                results = list(ex.map(client, range(200)))
        finally:
            stop.set()
            watcher.join()
        assert len(results) == 200 and all(len(r) == 3 for r in results)
        assert len({pid for r in results for pid in r}) <= 10
        assert 1 <= peak[0] <= 10
        assert proxy.pool_instance(cluster.writer.id)["connection_cap"] == 10


def test_borrow_timeout_fires_with_rds_text(cluster):
    with running_proxy(cluster, pool__max_connections_percent=1, pool__max_idle_connections_percent=1,
                       pool__connection_borrow_timeout=1) as proxy:
        holder = proxy.connect(prepare_threshold=None)
        waiter = proxy.connect(prepare_threshold=None)
        try:
            holder.execute("BEGIN")
            backend_pid(holder)
            with pytest.raises(psycopg.OperationalError) as info:
                waiter.execute("SELECT 1")
            assert info.value.diag.message_primary == BorrowTimeout.TEXT
            holder.execute("COMMIT")
            assert waiter.execute("SELECT 2").fetchone()[0] == 2  # the session survived
        finally:
            holder.close()
            waiter.close()


def test_tls_and_require_tls(cluster):
    with running_proxy(cluster, tls__require_tls=True) as proxy:
        with pytest.raises(psycopg.OperationalError, match="This RDS Proxy requires TLS connections."):
            proxy.connect(sslmode="disable")
        assert proxy.metric("ClientConnectionsSetupFailedAuth", endpoint="default") == 1
        with proxy.connect(sslmode="require") as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1").fetchone()[0] == 1
            assert proxy.metric("ClientConnectionsTLS", endpoint="default") == 1


def test_md5_user_and_wrong_password(proxy):
    with proxy.connect(user=MD5_USER, password=MD5_PASSWORD) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    with pytest.raises(psycopg.OperationalError, match="is wrong"):
        proxy.connect(password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="has no credentials for the role nobody"):
        proxy.connect(user="nobody")


def test_startup_options_are_refused_like_rds(proxy):
    with pytest.raises(psycopg.OperationalError,
                       match="RDS Proxy currently doesn't support command-line options"):
        proxy.connect(options="-c search_path=x")
    with proxy.connect(application_name="proxy-test-app") as conn:
        assert conn.execute("SHOW application_name").fetchone()[0] == "proxy-test-app"


def test_cancel_reaches_the_running_query(proxy):
    """cancel_safe() here: the blocking cancel() holds the GIL inside libpq while it waits for the
    server, which would starve this in-process proxy; the standalone-process test covers cancel()."""
    with proxy.connect(prepare_threshold=None) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(20)")
        finally:
            timer.cancel()
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_psycopg_automatic_prepared_statements(proxy):
    """Default prepare_threshold (prepares on the 6th run) and prepare=True give right answers."""
    def work(n):
        with proxy.connect() as conn:
            for i in range(12):
                assert conn.execute("SELECT %s::int + 1", (i,)).fetchone()[0] == i + 1
                with conn.transaction():
                    assert conn.execute("SELECT %s::text || 'x'", (str(i),)).fetchone()[0] == f"{i}x"
            assert conn.execute("SELECT %s::int * 2", (n,), prepare=True).fetchone()[0] == 2 * n
            return conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        prepared = list(ex.map(work, range(4)))
    assert all(p >= 2 for p in prepared)


def test_prepared_statement_eviction_closes_cleanly(proxy):
    with proxy.connect() as conn:
        conn.prepared_max = 2  # evicting the oldest deallocates it on the server
        for i in range(6):
            assert conn.execute(f"SELECT %s::int + {i}", (1,), prepare=True).fetchone()[0] == 1 + i
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] <= 2


def test_bulk_traffic_copy_big_results_and_pipelines(proxy):
    """Several MB each way: COPY FROM STDIN, COPY TO STDOUT, a big result set, a pipeline."""
    rows = [(i, "x" * 100) for i in range(40000)]
    with proxy.connect(prepare_threshold=None) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS proxy_bulk (id int, pad text)")
        conn.execute("TRUNCATE proxy_bulk")
        with conn.cursor() as cur:
            with cur.copy("COPY proxy_bulk FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            assert cur.execute("SELECT count(*), sum(id) FROM proxy_bulk").fetchone() == (40000, sum(range(40000)))
            with cur.copy("COPY proxy_bulk TO STDOUT") as copy:
                assert sum(1 for _ in copy.rows()) == 40000
            cur.execute("SELECT g, repeat('y', 200) FROM generate_series(1, 50000) g")
            assert sum(1 for _ in cur) == 50000
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(300)]
        assert [c.fetchone()[0] for c in cursors] == list(range(300))
        assert proxy.metric("DatabaseConnectionsCurrentlySessionPinned", instance=proxy.cluster.writer.id) == 0


def test_read_only_endpoint_reaches_only_readers(proxy, cluster):
    reader_ids = {r.id for r in cluster.readers}
    for _ in range(3):
        with proxy.connect("reader") as conn:
            in_recovery, served_by = conn.execute(
                "SELECT pg_is_in_recovery(), aurora_db_instance_identifier()").fetchone()
            assert in_recovery is True
            assert served_by in reader_ids


def _read_error(sock: socket.socket) -> tuple[bytes, dict[str, str]]:
    """Read messages until an ErrorResponse; return its type byte and fields."""
    buf = b""
    sock.settimeout(10)
    while True:
        while len(buf) < 5 or len(buf) < 1 + struct.unpack("!i", buf[1:5])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before an ErrorResponse; got {buf!r}")
            buf += chunk
        length = struct.unpack("!i", buf[1:5])[0]
        t, body, buf = buf[:1], buf[5:1 + length], buf[1 + length:]
        if t == b"E":
            fields = {chr(p[0]): p[1:].decode() for p in body.split(b"\0") if p}
            return t, fields


def _assert_closed(sock: socket.socket) -> None:
    sock.settimeout(10)
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
    assert rest == b""


def test_malformed_client_bytes_get_08p01_and_close(proxy):
    # During startup: an impossible packet length.
    with socket.create_connection(("127.0.0.1", proxy.port())) as sock:
        sock.sendall(struct.pack("!ii", 3, 0))
        _, fields = _read_error(sock)
        assert fields["C"] == "08P01"
        _assert_closed(sock)
    # After authentication (MD5, done by hand): an unknown message type.
    with socket.create_connection(("127.0.0.1", proxy.port())) as sock:
        params = b"user\0" + MD5_USER.encode() + b"\0database\0" + proxy.cluster.database.encode() + b"\0\0"
        sock.sendall(struct.pack("!ii", 8 + len(params), 3 << 16) + params)
        head = sock.recv(13)
        assert head[:1] == b"R" and struct.unpack("!i", head[5:9])[0] == 5
        salt = head[9:13]
        inner = hashlib.md5((MD5_PASSWORD + MD5_USER).encode()).hexdigest()
        answer = b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\0"
        sock.sendall(b"p" + struct.pack("!i", 4 + len(answer)) + answer)
        buf = b""
        while not buf.endswith(b"Z\0\0\0\x05I"):
            buf += sock.recv(65536)
        sock.sendall(b"@\0\0\0\x04")
        _, fields = _read_error(sock)
        assert fields["C"] == "08P01" and fields["V"] == "FATAL"
        _assert_closed(sock)
    with proxy.connect() as conn:  # and the proxy goes on serving
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_reload_changes_pool_settings_without_dropping_clients(cluster):
    with running_proxy(cluster) as proxy, proxy.connect(prepare_threshold=None) as conn:
        backend_pid(conn)
        assert proxy.pool_instance(cluster.writer.id)["connection_cap"] == 100
        new = proxy_config(cluster, pool__max_connections_percent=20, pool__max_idle_connections_percent=20)
        proxy.call(proxy.server.reload, new)
        assert proxy.pool_instance(cluster.writer.id)["connection_cap"] == 20
        assert conn.execute("SELECT 1").fetchone()[0] == 1


@pytest.mark.slow
def test_standalone_process_drains_on_sigterm(cluster):
    """``reference-proxy --config`` serves, and SIGTERM lets an open transaction finish first."""
    config = proxy_config(cluster)
    with tempfile.TemporaryDirectory(prefix="aurora-harness-proxy-") as tmp:
        path = os.path.join(tmp, "proxy.toml")
        with open(path, "w") as f:
            f.write(_toml(config, cluster))
        proc = subprocess.Popen([sys.executable, "-m", "reference_proxy", "--config", path, "--grace", "20"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.startswith("reference-proxy ready:"), line + proc.stderr.read()
            port = int(line.split("default=")[1].split()[0])
            conn = psycopg.connect(host="127.0.0.1", port=port, user=cluster.user, password=cluster.password,
                                   dbname=cluster.database, autocommit=True, prepare_threshold=None)
            admin = int(line.split("admin=")[1].split()[0])
            assert _connection_cap(admin, cluster.writer.id) == 100
            with open(path, "a") as f:  # SIGHUP: new pool settings, nobody dropped
                f.write("[pool]\nmax_connections_percent = 20\nmax_idle_connections_percent = 20\n")
            proc.send_signal(signal.SIGHUP)
            eventually(lambda: _connection_cap(admin, cluster.writer.id) == 20, what="SIGHUP to apply")
            timer = threading.Timer(0.5, conn.cancel)
            timer.start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(20)")
            conn.execute("BEGIN")
            conn.execute("SELECT 1")
            proc.send_signal(signal.SIGTERM)
            eventually(lambda: not _port_accepts(port), what="the listener to close")
            assert conn.execute("SELECT 2").fetchone()[0] == 2  # the transaction goes on
            conn.execute("COMMIT")
            assert proc.wait(30) == 0
            conn.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _connection_cap(admin_port: int, instance_id: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status", timeout=5) as response:
        return json.load(response)["pool"]["instances"][instance_id]["connection_cap"]


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _toml(config, cluster) -> str:
    lines = ['engine = "postgres"']
    for e in config.endpoints:
        lines += ["[[endpoints]]", f'name = "{e.name}"', f'role = "{e.role.value}"', "port = 0"]
    for i in config.instances:
        lines += ["[[instances]]", f'id = "{i.id}"', f"port = {i.port}", f'role = "{i.role.value}"']
    lines += ["[[auth.users]]", f'name = "{cluster.user}"', f'password = "{cluster.password}"']
    return "\n".join(lines) + "\n"


def test_handshake_timeout_counts_silence_not_total_time(cluster):
    """A client that keeps sending is served however long its handshake takes in total; one
    that falls silent mid-handshake is dropped after client_handshake_timeout."""
    with running_proxy(cluster, proxy__client_handshake_timeout=1) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port())) as sock:
        params = b"user\0" + MD5_USER.encode() + b"\0database\0" + proxy.cluster.database.encode() + b"\0\0"
        packet = struct.pack("!ii", 8 + len(params), 3 << 16) + params
        started = time.monotonic()
        for i in range(4):  # a slow client: 4 pieces 0.6 s apart, 1.8 s in all, never 1 s silent
            sock.sendall(packet[i * len(packet) // 4:(i + 1) * len(packet) // 4])
            if i < 3:
                time.sleep(0.6)
        assert time.monotonic() - started > 1.5
        sock.settimeout(10)
        head = sock.recv(13)
        assert head[:1] == b"R" and struct.unpack("!i", head[5:9])[0] == 5  # asked for the MD5 password
        silent_from = time.monotonic()
        _assert_closed(sock)  # then silence: dropped
        assert time.monotonic() - silent_from >= 0.9
