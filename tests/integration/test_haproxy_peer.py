"""HAProxy as a TCP peer in front of a MariaDB stand-in: PyMySQL works through it, and it cleans up."""

from __future__ import annotations

import os

import pymysql
import pytest

from harness import process
from harness.peers import haproxy
from harness.peers.haproxy import HAProxy
from harness.standins.base import BinaryMissing, ConnectionParams
from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster

pytestmark = [pytest.mark.integration, pytest.mark.mysql,
              pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                                 reason="MariaDB server binaries are not installed")]


def _query(params, sql):
    conn = pymysql.connect(host=params.host, port=params.port, user=params.user, password=params.password,
                           database=params.database, autocommit=True, connect_timeout=5, ssl_disabled=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


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
    monkeypatch.setattr(haproxy, "SEARCH_DIRS", [str(tmp_path)])
    monkeypatch.setenv("PATH", str(tmp_path))
    peer = HAProxy(ConnectionParams("127.0.0.1", process.free_port(), "u", "p", "d"))
    with pytest.raises(BinaryMissing, match="apt-get install haproxy"):
        peer.start()
    assert peer.pid is None and peer.base_dir is None
