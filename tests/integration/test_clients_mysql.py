"""The PyMySQL recording client against a real MariaDB stand-in (writer only, no proxy)."""

from __future__ import annotations

import os

import pytest

from harness import process
from harness.clients.address import Address
from harness.clients.client import Client
from harness.history import OpType, Recorder
from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.shares_cluster,
              pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                                 reason="MariaDB server binaries are not installed")]


@pytest.fixture(scope="module")
def cluster():
    with MySQLCluster(readers=0) as c:
        yield c


@pytest.fixture
def recorder():
    with Recorder() as r:
        yield r


def test_write_read_and_backend_name_the_serving_instance(cluster, recorder):
    writer = cluster.writer.id
    with Client(recorder, 1, Address.direct(cluster, writer)) as client:
        assert client.connect().ok
        client.setup()
        assert all(client.write(i).node == writer for i in (1, 2))
        duplicate = client.write(1)
        assert duplicate.type is OpType.FAIL and duplicate.error.code == "1062" and duplicate.error.definite
        read = client.final_read()
        assert read.ok and read.node == writer and read.value == [1, 2]
        backend = client.backend_id()
        assert backend.ok and backend.backend == client.connection.conn.thread_id()
        assert client.set_state("setting", "who", "client-1").ok
        assert client.read_state("setting", "who").value["value"] == "client-1"
        assert client.set_state("advisory_lock", "lock-a").ok
        assert client.read_state("advisory_lock", "lock-a").value["value"] is True
    writes = recorder.history().ops(f="write", type="ok")
    assert all(o.extra["backend"] and o.endpoint == f"direct:{writer}" for o in writes)


def test_refused_connect_and_lost_connection(cluster, recorder):
    refused = Client(recorder, 1, Address("mysql", "writer", "127.0.0.1", process.free_port(),
                                          "u", "p", "d", "SELECT @@report_host"), connect_timeout=2)
    result = refused.connect()
    assert result.type is OpType.FAIL and result.error.code == "2003" and result.error.definite
    with Client(recorder, 2, Address.direct(cluster, cluster.writer.id)) as victim, \
            Client(recorder, 3, Address.direct(cluster, cluster.writer.id)) as killer:
        assert victim.connect().ok and killer.connect().ok
        assert killer.execute("kill", "KILL %s", (victim.connection.conn.thread_id(),)).ok
        # an autocommit write on the killed connection: as far as the client knows, it may have run
        lost = victim.execute("write", "INSERT INTO harness_writes (id) VALUES (99)", value=99)
        assert not victim.connected
    assert lost.type is OpType.INFO and lost.error.code in ("2013", "2006") and not lost.error.definite
