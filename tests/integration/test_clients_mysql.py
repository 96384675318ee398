"""The PyMySQL and aiomysql recording clients against a real MariaDB stand-in (writer only, no proxy)."""

from __future__ import annotations

import asyncio
import os

import pytest

from harness import process
from harness.clients.address import Address
from harness.clients.client import AsyncClient, Client
from harness.clients.plans import statement_plan
from harness.faults.storm import run_storm
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


def test_async_client_records_like_the_sync_one(cluster, recorder):
    address = Address.direct(cluster, cluster.writer.id)

    async def scenario():
        async with AsyncClient(recorder, 1, address, table="async_writes") as client:
            assert (await client.connect()).ok
            await client.setup()
            wrote = await client.write(2001)
            duplicate = await client.write(2001)
            read = await client.read()
            probe = await client.idle_probe()
            return wrote, duplicate, read, probe

    wrote, duplicate, read, probe = asyncio.run(scenario())
    assert wrote.ok and wrote.node == cluster.writer.id and wrote.backend
    assert duplicate.type is OpType.FAIL and duplicate.error.code == "1062" and duplicate.error.definite
    assert read.ok and 2001 in read.value and probe.ok


def test_async_client_classifies_refused_and_lost_connections(cluster, recorder):
    refused_address = Address("mysql", "writer", "127.0.0.1", process.free_port(), "u", "p", "d",
                              "SELECT @@report_host")

    async def scenario():
        refused = await AsyncClient(recorder, 1, refused_address, connect_timeout=2).connect()
        async with AsyncClient(recorder, 2, Address.direct(cluster, cluster.writer.id)) as victim:
            assert (await victim.connect()).ok
            with Client(recorder, 3, Address.direct(cluster, cluster.writer.id)) as killer:
                assert killer.connect().ok
                assert killer.execute("kill", "KILL %s", (victim.connection.conn.thread_id(),)).ok
            # an autocommit write on the killed connection: as far as the client knows, it may have run
            lost = await victim.run(statement_plan("write", "INSERT INTO harness_writes (id) VALUES (98)", value=98))
            return refused, lost, victim.connected

    refused, lost, still_connected = asyncio.run(scenario())
    assert refused.type is OpType.FAIL and refused.error.code == "2003" and refused.error.definite
    assert lost.type is OpType.INFO and lost.error.code in ("2013", "2006") and not lost.error.definite
    assert not still_connected


def test_async_storm_records_every_client(cluster, recorder):
    outcome = run_storm(Address.direct(cluster, cluster.writer.id), 40, recorder=recorder, connect_timeout=20)
    assert outcome.ok == 40 and outcome.failed == 0 and outcome.connect_p50_ms is not None
    attempts = recorder.history().ops(f="connect", type="ok")
    assert len(attempts) == 40 and {o.endpoint for o in attempts} == {f"direct:{cluster.writer.id}"}
