"""Peers in front of stand-ins: HAProxy (TCP) with PyMySQL, PgBouncer with psycopg; both keep their
files private and leave nothing behind."""

from __future__ import annotations

import os

import pymysql
import pytest

from harness import process
from harness.peers import base as peer_base
from harness.peers.haproxy import HAProxy
from harness.peers.pgbouncer import PgBouncer
from harness.standins.base import BinaryMissing, ConnectionParams
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
