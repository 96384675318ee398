"""The reference proxy's MySQL engine end to end: PyMySQL clients, the proxy, a real MariaDB stand-in.

The tests share one writer + one reader cluster and start a proxy per test (or per module for the
plain ones).  Which backend served a statement is read with CONNECTION_ID(); waits poll with
deadlines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading

import pymysql
import pytest
from mysql_proxy_support import SHA2_PASSWORD, SHA2_USER, connection_id, running_proxy, scalar
from polling import eventually

from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster
from reference_proxy.engines.mysql.login import REQUIRE_TLS_CODE
from reference_proxy.engines.mysql.session import (
    BORROW_TIMEOUT_CODE,
    BORROW_TIMEOUT_MESSAGE,
    LOST_BACKEND_CODE,
)

pytestmark = [
    pytest.mark.integration, pytest.mark.mysql,
    pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                       reason="MariaDB server binaries are not installed"),
]

ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
COM_CHANGE_USER = 0x11
COM_RESET_CONNECTION = 0x1F
COM_STMT_PREPARE = 0x16
COM_STMT_EXECUTE = 0x17
COM_STMT_CLOSE = 0x19


@pytest.fixture(scope="module")
def cluster():
    with MySQLCluster(readers=1) as c:
        yield c


@pytest.fixture(scope="module")
def proxy(cluster):
    with running_proxy(cluster) as p:
        yield p


def test_login_and_queries(proxy):
    with proxy.connect() as conn:
        assert scalar(conn, "SELECT 1 + 1") == 2
        assert scalar(conn, "SELECT DATABASE()") == proxy.cluster.database
        conn.ping()
        with conn.cursor() as cur:
            cur.execute("SELECT 1; SELECT 2")  # multi-statement: both results, then release
            assert cur.fetchone()[0] == 1
            assert cur.nextset() and cur.fetchone()[0] == 2
        assert scalar(conn, "SELECT 3") == 3


def test_login_over_tls_and_caching_sha2(proxy):
    with proxy.connect(tls=True) as conn:
        assert scalar(conn, "SELECT 7") == 7
        assert proxy.metric("ClientConnectionsTLS", endpoint="default") >= 1
    with proxy.connect(user=SHA2_USER, password=SHA2_PASSWORD, tls=True) as conn:  # full path over TLS
        assert scalar(conn, "SELECT CURRENT_USER()").startswith(proxy.cluster.user + "@")
    with proxy.connect(user=SHA2_USER, password=SHA2_PASSWORD) as conn:  # then the fast path, plaintext
        assert scalar(conn, "SELECT 8") == 8


def test_require_tls_refuses_plaintext_with_3159(cluster):
    with running_proxy(cluster, tls__require_tls=True) as proxy:
        with pytest.raises(pymysql.err.OperationalError) as info:
            proxy.connect()
        assert info.value.args[0] == REQUIRE_TLS_CODE and "requires TLS" in info.value.args[1]
        assert proxy.metric("ClientConnectionsSetupFailedAuth", endpoint="default") == 1
        with proxy.connect(tls=True) as conn:
            assert scalar(conn, "SELECT 1") == 1


def test_wrong_password_is_1045(proxy):
    with pytest.raises(pymysql.err.OperationalError) as info:
        proxy.connect(password="not-the-password")
    assert info.value.args[0] == ER_ACCESS_DENIED


def test_autocommit_clients_share_backends(proxy):
    conns = [proxy.connect() for _ in range(4)]
    try:
        ids = {connection_id(c) for c in conns for _ in range(3)}
        assert len(ids) < len(conns)  # served one at a time: fewer backends than clients
    finally:
        for c in conns:
            c.close()


def test_a_transaction_holds_its_backend_until_commit(proxy):
    with proxy.connect() as a, proxy.connect() as b:
        a.begin()
        held = connection_id(a)
        for _ in range(3):
            assert connection_id(b) != held  # the open transaction keeps it away from b
        assert connection_id(a) == held
        a.commit()
        assert connection_id(b) > 0


def test_an_unknown_schema_is_refused_and_use_moves_the_session(proxy):
    with proxy.connect() as conn:
        with pytest.raises(pymysql.err.OperationalError) as info:
            conn.select_db("no_such_schema")
        assert info.value.args[0] == ER_BAD_DB
        with conn.cursor() as cur:
            cur.execute("USE information_schema")
        assert scalar(conn, "SELECT DATABASE()") == "information_schema"
        conn.select_db(proxy.cluster.database)
        assert scalar(conn, "SELECT DATABASE()") == proxy.cluster.database
    with proxy.connect() as other:  # nobody inherits a schema another client chose
        for _ in range(3):
            assert scalar(other, "SELECT DATABASE()") == proxy.cluster.database


def test_reset_connection_answers_ok_and_unpins(proxy):
    with proxy.connect() as conn:
        conn.begin()
        with conn.cursor() as cur:
            cur.execute("SET @leak = 42")
        conn._execute_command(COM_RESET_CONNECTION, b"")
        conn._read_ok_packet()
        assert not conn.get_autocommit() or scalar(conn, "SELECT @@in_transaction") == 0
        assert scalar(conn, "SELECT @leak") is None


def test_a_user_variable_pins_and_does_not_leak(cluster):
    with running_proxy(cluster) as proxy:
        with proxy.connect() as a:
            with a.cursor() as cur:
                cur.execute("SET @secret = 'a'")
            pinned = connection_id(a)
            with proxy.connect() as b:
                for _ in range(3):
                    assert connection_id(b) != pinned
            assert proxy.call(lambda: proxy.server.status()["pinned_sessions"]) == 1
        with proxy.connect() as c:  # the pinned backend was reset before reuse
            for _ in range(3):
                assert scalar(c, "SELECT @secret") is None


def test_exclude_variable_sets_keeps_a_user_variable_from_pinning(cluster):
    with running_proxy(cluster, pool__session_pinning_filters=["EXCLUDE_VARIABLE_SETS"]) as proxy, \
            proxy.connect() as a:
        with a.cursor() as cur:
            cur.execute("SET @unpinned = 'a'")
        assert proxy.call(lambda: proxy.server.status()["pinned_sessions"]) == 0
        with a.cursor() as cur:
            cur.execute("SELECT GET_LOCK('harness_filter_check', 0)")
        assert proxy.call(lambda: proxy.server.status()["pinned_sessions"]) == 1  # other pins stay


def test_tracked_settings_partition_the_pool_instead_of_pinning(proxy):
    with proxy.connect() as a, proxy.connect() as b:
        with a.cursor() as cur:
            cur.execute("SET time_zone = '+05:00'")
        assert proxy.call(lambda: proxy.server.status()["pinned_sessions"]) == 0
        for _ in range(3):
            assert scalar(a, "SELECT @@time_zone") == "+05:00"  # kept on every borrow
            assert scalar(b, "SELECT @@time_zone") != "+05:00"  # and never handed to anyone else
        with a.cursor() as cur:
            cur.execute("SET time_zone = DEFAULT")
        assert scalar(a, "SELECT @@time_zone") == scalar(b, "SELECT @@time_zone")


def test_pymysql_defaults_autocommit_off_multiplex_between_transactions(proxy):
    with proxy.connect(autocommit=False) as a, proxy.connect(autocommit=None) as b:
        with a.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS proxy_items (id INT PRIMARY KEY, v INT)")
            cur.execute("REPLACE INTO proxy_items VALUES (1, 10)")
        held = connection_id(a)
        assert scalar(b, "SELECT @@in_transaction") == 0 and connection_id(b) != held
        assert scalar(b, "SELECT @@autocommit") == 1
        a.commit()
        assert scalar(a, "SELECT @@autocommit") == 0  # its setting follows it to any backend
        assert scalar(b, "SELECT v FROM proxy_items WHERE id = 1") == 10
        a.commit()


def test_init_query_runs_on_every_backend_and_survives_resets(cluster):
    with (running_proxy(cluster, pool__init_query="SET SESSION time_zone = '+03:00'") as proxy,
          proxy.connect() as conn):
        assert scalar(conn, "SELECT @@time_zone") == "+03:00"
        conn._execute_command(COM_RESET_CONNECTION, b"")
        conn._read_ok_packet()
        with conn.cursor() as cur:
            cur.execute("SET NAMES utf8mb4")
        assert scalar(conn, "SELECT @@time_zone") == "+03:00"


def test_borrow_timeout_is_9501_with_a_pool_of_one(cluster):
    with (running_proxy(cluster, pool__max_connections_percent=1, pool__max_idle_connections_percent=1,
                        pool__connection_borrow_timeout=1) as proxy,
          proxy.connect() as holder, proxy.connect() as waiter):
        holder.begin()
        connection_id(holder)
        with pytest.raises(pymysql.err.MySQLError) as info:
            scalar(waiter, "SELECT 1")
        assert info.value.args[0] == BORROW_TIMEOUT_CODE
        assert info.value.args[1] == BORROW_TIMEOUT_MESSAGE
        holder.commit()
        assert scalar(waiter, "SELECT 2") == 2  # the session survived


def test_reader_endpoint_reaches_a_reader(proxy):
    with proxy.connect("reader") as conn:
        assert scalar(conn, "SELECT @@read_only") == 1
    with proxy.connect() as conn:
        assert scalar(conn, "SELECT @@read_only") == 0


def test_binary_prepared_statements_pin_and_run(proxy):
    """PyMySQL has no binary protocol: its low-level packet calls send COM_STMT_PREPARE/EXECUTE."""
    with proxy.connect() as conn:
        conn._execute_command(COM_STMT_PREPARE, "SELECT 40 + 2")
        prepare_ok = conn._read_packet().get_all_data()
        assert prepare_ok[0] == 0
        statement_id = int.from_bytes(prepare_ok[1:5], "little")
        columns = int.from_bytes(prepare_ok[5:7], "little")
        for _ in range(columns + 1):  # column definitions, then their EOF
            conn._read_packet()
        assert proxy.call(lambda: proxy.server.status()["pinned_sessions"]) == 1
        pinned = connection_id(conn)
        execute = statement_id.to_bytes(4, "little") + b"\x00" + (1).to_bytes(4, "little")
        conn._execute_command(COM_STMT_EXECUTE, execute)
        assert conn._read_packet().get_all_data() == b"\x01"  # one column
        conn._read_packet()  # its definition
        assert conn._read_packet().is_eof_packet()
        row = conn._read_packet().get_all_data()
        assert row[0] == 0 and int.from_bytes(row[2:], "little") == 42  # binary row: header, null map, value
        assert conn._read_packet().is_eof_packet()
        conn._execute_command(COM_STMT_CLOSE, statement_id.to_bytes(4, "little"))  # no reply
        assert connection_id(conn) == pinned
    assert eventually(lambda: proxy.call(lambda: proxy.server.status()["pinned_sessions"]) == 0, timeout=10)


def observer(cluster: MySQLCluster) -> pymysql.connections.Connection:
    """A direct connection to the writer, to see what the server sees."""
    p = cluster.connection_params(cluster.writer.id)
    return pymysql.connect(host=p.host, port=p.port, user=p.user, password=p.password, database=p.database,
                           autocommit=True, connect_timeout=10)


def thread_alive(cluster: MySQLCluster, thread_id: int) -> bool:
    with observer(cluster) as direct:
        return scalar(direct, f"SELECT COUNT(*) FROM information_schema.processlist WHERE id = {thread_id}") == 1


def test_a_client_leaving_mid_transaction_costs_its_backend(proxy):
    conn = proxy.connect()
    conn.begin()
    held = connection_id(conn)
    conn._sock.shutdown(socket.SHUT_RDWR)  # vanish without COM_QUIT
    conn._sock.close()
    assert eventually(lambda: not thread_alive(proxy.cluster, held), timeout=10)
    with proxy.connect() as other:
        assert scalar(other, "SELECT @@in_transaction") == 0


def test_a_backend_lost_under_its_client_is_a_clear_2013(proxy):
    with proxy.connect() as conn:
        conn.begin()
        held = connection_id(conn)
        with observer(proxy.cluster) as direct, direct.cursor() as cur:
            cur.execute(f"KILL {held}")
        with pytest.raises(pymysql.err.OperationalError) as info:
            scalar(conn, "SELECT 1")
        assert info.value.args[0] == LOST_BACKEND_CODE
        assert "was lost" in info.value.args[1]
    with proxy.connect() as other:  # the proxy carries on
        assert scalar(other, "SELECT 5") == 5


def test_change_user_is_answered_by_the_proxy_and_resets_the_session(proxy):
    with proxy.connect() as conn:
        conn.begin()
        with conn.cursor() as cur:
            cur.execute("SET @kept = 1")
        user = proxy.cluster.user.encode()
        scramble = pymysql._auth.scramble_native_password(proxy.cluster.password.encode(), conn.salt)
        payload = (user + b"\0" + bytes([len(scramble)]) + scramble + proxy.cluster.database.encode() + b"\0"
                   + (45).to_bytes(2, "little") + b"mysql_native_password\0")
        conn._execute_command(COM_CHANGE_USER, payload)
        conn._read_ok_packet()
        assert scalar(conn, "SELECT @kept") is None and scalar(conn, "SELECT @@in_transaction") == 0
        bad = (user + b"\0" + bytes([20]) + b"x" * 20 + b"\0" + (45).to_bytes(2, "little")
               + b"mysql_native_password\0")
        conn._execute_command(COM_CHANGE_USER, bad)
        with pytest.raises(pymysql.err.OperationalError) as info:
            conn._read_ok_packet()
        assert info.value.args[0] == ER_ACCESS_DENIED
        assert scalar(conn, "SELECT 9") == 9  # the session survives as it was


def test_idle_client_timeout_closes_the_client_not_its_backend(cluster):
    with running_proxy(cluster, pool__idle_client_timeout=1) as proxy:
        conn = proxy.connect()
        served = connection_id(conn)
        eventually(lambda: proxy.metric("ClientConnectionsClosed", endpoint="default") >= 1,
                   what="the idle client to be closed")
        with pytest.raises(pymysql.err.OperationalError):
            scalar(conn, "SELECT 1")
        assert thread_alive(cluster, served)
        assert proxy.pool_instance(cluster.writer.id)["idle"] >= 1


def test_shutdown_closes_idle_pinned_sessions_at_once(cluster):
    with running_proxy(cluster) as proxy:
        pinned = proxy.connect()
        with pinned.cursor() as cur:
            cur.execute("SET @pin = 1")
        assert proxy.call(lambda: proxy.server.status()["pinned_sessions"]) == 1
        stopped = asyncio.run_coroutine_threadsafe(proxy.server.stop(grace=120), proxy.loop)
        eventually(lambda: stopped.done(), timeout=30, what="the drain to finish well before its grace")
        with pytest.raises(pymysql.err.OperationalError):
            scalar(pinned, "SELECT 1")


def test_a_large_result_streams_through(proxy):
    with proxy.connect() as conn, conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute("SELECT seq, REPEAT('x', 1000) FROM seq_1_to_20000")
        rows = 0
        for seq, text in cur:
            rows += 1
            assert len(text) == 1000 and seq == rows
        assert rows == 20000
        assert scalar(conn, "SELECT 11") == 11


def test_pipelined_commands_are_answered_in_order(proxy):
    with proxy.connect() as conn:
        sock = conn._sock
        query = b"\x03SELECT 'first'"
        ping = b"\x0e"
        sock.sendall(len(query).to_bytes(3, "little") + b"\x00" + query + len(ping).to_bytes(3, "little")
                     + b"\x00" + ping)
        conn._next_seq_id = 1  # as if PyMySQL had sent the query itself
        result = pymysql.connections.MySQLResult(conn)
        result.read()
        assert result.rows == (("first",),)
        conn._next_seq_id = 1
        conn._read_ok_packet()
        assert scalar(conn, "SELECT 12") == 12


def test_concurrent_clients_all_get_answers(proxy):
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with proxy.connect() as conn:
                for i in range(20):
                    assert scalar(conn, f"SELECT {i}") == i
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


# ---------------------------------------------------------------------------------- failover
# These run last: they move the shared cluster's writer.

FAST_MONITOR = {"monitor__interval": 0.2, "monitor__fast_interval": 0.05, "monitor__connect_timeout": 1.0,
                "monitor__query_timeout": 0.5}
SETTLE = 30.0  # seconds allowed for the proxy to see a change the stand-in already finished
WHO = "SELECT @@global.report_host, @@global.read_only"


def who(conn: pymysql.connections.Connection) -> tuple[str, int]:
    with conn.cursor() as cur:
        cur.execute(WHO)
        host, read_only = cur.fetchone()
        return host, read_only


def proxy_writer(proxy) -> str | None:
    return proxy.call(lambda: proxy.server.monitor.writer)


@pytest.mark.shares_cluster  # restarts the shared cluster's instances
def test_failover_keeps_idle_clients_and_cuts_the_transaction_in_flight(cluster):
    with running_proxy(cluster, **FAST_MONITOR, pool__connection_borrow_timeout=30) as proxy:
        idle = [proxy.connect() for _ in range(3)]
        in_txn = proxy.connect()
        reader = proxy.connect("reader")
        try:
            old = cluster.writer.id
            assert {who(c) for c in idle} == {(old, 0)}
            in_txn.begin()
            assert who(in_txn) == (old, 0)
            reader_before = who(reader)
            assert reader_before[1] == 1
            new = cluster.failover()
            eventually(lambda: proxy_writer(proxy) == new, SETTLE, f"the proxy to accept {new} as writer")
            assert {who(c) for c in idle} == {(new, 0)}  # no error, no reconnect
            with pytest.raises(pymysql.err.OperationalError) as info:
                who(in_txn)
            assert info.value.args[0] == LOST_BACKEND_CODE
            assert "failover" in info.value.args[1] or "was lost" in info.value.args[1]
            for _ in range(3):
                assert who(reader)[1] == 1  # the reader endpoint never reaches the writer
        finally:
            for c in [*idle, in_txn, reader]:
                with contextlib.suppress(Exception):
                    c.close()


@pytest.mark.shares_cluster  # restarts the shared cluster's instances
def test_new_work_waits_for_a_writer_during_a_failover(cluster):
    with running_proxy(cluster, **FAST_MONITOR, pool__connection_borrow_timeout=60) as proxy:
        idle = proxy.connect()
        try:
            old = cluster.writer.id
            assert who(idle) == (old, 0)
            cluster.crash(old)  # no promotion yet: a gap without a writer
            eventually(lambda: proxy_writer(proxy) is None, SETTLE, "the proxy to see no writer")
            results: dict[str, object] = {}

            def next_statement() -> None:
                try:
                    results["idle"] = who(idle)
                except pymysql.err.MySQLError as e:  # reported by the assertion below
                    results["idle"] = e
            waiter = threading.Thread(target=next_statement)
            waiter.start()
            waiter.join(1)
            assert waiter.is_alive() and not results  # waiting, not failing
            new = cluster.failover()
            waiter.join(SETTLE)
            assert results == {"idle": (new, 0)}
        finally:
            idle.close()


def sleeping_threads(cluster: MySQLCluster) -> int:
    with observer(cluster) as direct:
        return scalar(direct, "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(%'")


def test_kill_names_the_proxy_session_and_stops_only_its_statement(proxy):
    """KILL QUERY with the id a client's greeting gave stops that client's statement on the backend it
    holds, nobody else's; unknown ids and KILL CONNECTION answer as MySQL does."""
    with proxy.connect() as victim, proxy.connect() as bystander, proxy.connect() as killer:
        outcomes: dict[str, object] = {}

        def run(name: str, conn, seconds: int) -> None:
            try:
                outcomes[name] = scalar(conn, f"SELECT SLEEP({seconds}), 1")
            except pymysql.err.OperationalError as e:
                outcomes[name] = e.args[0]

        threads = [threading.Thread(target=run, args=("victim", victim, 30)),
                   threading.Thread(target=run, args=("bystander", bystander, 2))]
        for t in threads:
            t.start()
        assert eventually(lambda: sleeping_threads(proxy.cluster) == 2, timeout=10)
        with killer.cursor() as cur:
            cur.execute(f"KILL QUERY {victim.thread_id()}")
        for t in threads:
            t.join(timeout=20)
        assert outcomes == {"victim": 1317, "bystander": 0}
        assert scalar(victim, "SELECT 7") == 7  # KILL QUERY leaves the connection usable

        with pytest.raises(pymysql.err.OperationalError) as unknown:
            scalar(killer, "kill /* nobody */ query 999999")
        assert unknown.value.args == (1094, "Unknown thread id: 999999")
        with pytest.raises(pymysql.err.OperationalError) as own:
            scalar(killer, f"KILL QUERY {killer.thread_id()}")
        assert own.value.args[0] == 1317
        with pytest.raises(pymysql.err.MySQLError) as prepared:  # prepared, it would reach a backend unmapped
            killer._execute_command(COM_STMT_PREPARE, f"KILL QUERY {victim.thread_id()}")
            killer._read_packet()
        assert prepared.value.args[0] == 1235
        with pytest.raises(pymysql.err.MySQLError) as by_user:
            scalar(killer, "KILL USER harness")
        assert by_user.value.args[0] == 1235
        assert scalar(killer, "SELECT 'kill' AS skill") == "kill"  # the word alone is no KILL

        with killer.cursor() as cur:
            cur.execute(f"KILL CONNECTION {victim.thread_id()}")
        with pytest.raises(pymysql.err.OperationalError):
            scalar(victim, "SELECT 1")
        killer.kill(bystander.thread_id())  # COM_PROCESS_KILL
        with pytest.raises(pymysql.err.OperationalError):
            scalar(bystander, "SELECT 1")
        assert scalar(killer, "SELECT 5") == 5
