"""Peers in front of stand-ins: HAProxy (TCP) with PyMySQL, PgBouncer (each pool mode) and pgpool-II
with psycopg; each keeps its password files private and leaves nothing behind, whether the block
using it ends normally, by Ctrl-C, or the peer refuses to start."""

from __future__ import annotations

import os

import psutil
import pymysql
import pytest

from harness import process
from harness.peers import base as peer_base
from harness.peers.haproxy import HAProxy
from harness.peers.pgbouncer import PgBouncer
from harness.peers.pgpool import PgPool
from harness.standins.base import BinaryMissing, ConnectionParams, StartFailed
from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster
from harness.standins.postgres.cluster import PostgresCluster

pytestmark = [pytest.mark.integration]


def _query(params, sql):
    conn = pymysql.connect(host=params.host, port=params.port, user=params.user, password=params.password,
                           database=params.database, autocommit=True, connect_timeout=5, ssl_disabled=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.mysql
@pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                    reason="MariaDB server binaries are not installed")
def test_pymysql_reaches_the_writer_through_haproxy_and_everything_is_removed():
    with MySQLCluster(readers=0) as cluster:
        writer = cluster.connection_params(cluster.writer.id)
        with HAProxy(writer) as peer:
            assert peer.params.port != writer.port and peer.params.host == "127.0.0.1"
            assert oct(os.stat(peer.base_dir).st_mode & 0o777) == "0o700"
            assert _query(peer.params, "SELECT @@report_host") == cluster.writer.id
            base_dir, pid, pid_start = peer.base_dir, peer.pid, peer.pid_start
        assert not process.pid_alive(pid, pid_start) and not os.path.exists(base_dir)


def test_a_missing_binary_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(peer_base, "SEARCH_DIRS", [str(tmp_path)])
    monkeypatch.setenv("PATH", str(tmp_path))
    peer = HAProxy(ConnectionParams("127.0.0.1", process.free_port(), "u", "p", "d"))
    with pytest.raises(BinaryMissing, match="apt-get install haproxy"):
        peer.start()
    assert peer.pid is None and peer.base_dir is None


@pytest.mark.postgres
def test_pgbouncer_keeps_its_password_file_private_and_everything_is_removed():
    import psycopg

    with PostgresCluster(readers=0) as cluster:
        writer = cluster.connection_params(cluster.writer.id)
        with PgBouncer(writer, pool_size=2) as peer:
            assert oct(os.stat(peer.base_dir).st_mode & 0o777) == "0o700"
            userlist = os.path.join(peer.base_dir, "userlist.txt")
            assert oct(os.stat(userlist).st_mode & 0o777) == "0o600"
            p = peer.params
            with psycopg.connect(host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database,
                                 connect_timeout=10, autocommit=True) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            base_dir, pid, pid_start = peer.base_dir, peer.pid, peer.pid_start
        assert not process.pid_alive(pid, pid_start) and not os.path.exists(base_dir)


def _pg_connect(params, **kwargs):
    import psycopg

    return psycopg.connect(host=params.host, port=params.port, user=params.user, password=params.password,
                           dbname=params.database, connect_timeout=10, **kwargs)


def _removed(peer_state) -> bool:
    base_dir, pid, pid_start = peer_state
    return not process.pid_alive(pid, pid_start) and not os.path.exists(base_dir)


@pytest.mark.postgres
def test_pgpool_balances_reads_over_every_backend_and_everything_is_removed():
    with PostgresCluster(readers=2) as cluster:
        backends = [cluster.connection_params(i.id) for i in cluster.instances]
        with PgPool(backends) as pool:
            assert pool.params.host == "127.0.0.1" and pool.params.port not in {b.port for b in backends}
            assert oct(os.stat(pool.base_dir).st_mode & 0o777) == "0o700"
            assert oct(os.stat(os.path.join(pool.base_dir, "pool_passwd")).st_mode & 0o777) == "0o600"
            for name in os.listdir(pool.base_dir):  # the password is in pool_passwd only
                path = os.path.join(pool.base_dir, name)
                if name != "pool_passwd" and os.path.isfile(path):
                    with open(path, errors="replace") as f:
                        assert pool.params.password not in f.read(), name
            served = set()
            for _ in range(30):  # each session is balanced on its own, by equal weights
                with _pg_connect(pool.params, autocommit=True) as conn:
                    served.add(conn.execute("SELECT aurora_db_instance_identifier()").fetchone()[0])
            assert served == {i.id for i in cluster.instances}
            with _pg_connect(pool.params, autocommit=True) as conn:  # a write goes to the primary
                conn.execute("CREATE TABLE IF NOT EXISTS peer_write (x int)")
                assert conn.execute("INSERT INTO peer_write VALUES (1) RETURNING NOT pg_is_in_recovery()"
                                    ).fetchone() == (True,)
            state = pool.base_dir, pool.pid, pool.pid_start
        assert _removed(state)
        assert not [p for p in psutil.Process().children(recursive=True) if p.name() == "pgpool"]  # its children too


@pytest.mark.postgres
def test_a_peer_stopped_by_ctrl_c_or_refusing_to_start_leaves_nothing_behind():
    with PostgresCluster(readers=1) as cluster:
        writer = cluster.connection_params(cluster.writer.id)
        backends = [writer, cluster.connection_params(cluster.readers[0].id)]
        for make in (lambda: PgBouncer(writer, pool_mode="session", pool_size=2), lambda: HAProxy(writer),
                     lambda: PgPool(backends, children=2)):
            with pytest.raises(KeyboardInterrupt), make() as peer:
                with _pg_connect(peer.params, autocommit=True) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                state = peer.base_dir, peer.pid, peer.pid_start
                raise KeyboardInterrupt
            assert _removed(state), type(peer).__name__
        refused = PgPool(backends, children=0)  # pgpool-II refuses zero children and exits at once
        with pytest.raises(StartFailed, match="num_init_children"):
            refused.start()
        assert refused.pid is None and refused.base_dir is None


@pytest.mark.postgres
def test_pgbouncer_statement_mode_refuses_a_transaction_and_session_mode_keeps_session_state():
    import psycopg

    with PostgresCluster(readers=0) as cluster:
        writer = cluster.connection_params(cluster.writer.id)
        with (PgBouncer(writer, pool_mode="statement", pool_size=2) as statement_mode,
              _pg_connect(statement_mode.params) as conn,  # not autocommit: psycopg opens a transaction
              pytest.raises(psycopg.Error, match="transaction blocks not allowed in statement pooling mode")):
            conn.execute("SELECT 1")
            conn.execute("SELECT 2")
            conn.commit()
        with (PgBouncer(writer, pool_mode="session", pool_size=2) as session_mode,
              _pg_connect(session_mode.params, autocommit=True) as first,
              _pg_connect(session_mode.params, autocommit=True) as second):
            first.execute("SET application_name = 'first-client'")
            assert second.execute("SHOW application_name").fetchone() != ("first-client",)
            pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (first, first, second)}
            assert len(pids) == 2  # one server connection each, held for the whole session
            assert first.execute("SHOW application_name").fetchone() == ("first-client",)
