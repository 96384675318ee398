"""The PyMySQL and aiomysql recording clients against a real MariaDB stand-in (writer only, no proxy)."""

from __future__ import annotations

import asyncio
import os

import pytest

from harness import process
from harness.clients.address import Address
from harness.clients.client import AsyncClient, Client
from harness.clients.plans import in_open_transaction, read_state_plan, statement_plan
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


def test_session_state_of_every_mysql_kind_is_observed_and_listed(cluster, recorder):
    """Temporary tables and prepared statements read as absent through their errors (1146 / 1243),
    named locks are listed through the performance schema, and a multi-statement request answers
    with its last result set."""
    writer = cluster.writer.id
    with Client(recorder, 1, Address.direct(cluster, writer)) as client, \
            Client(recorder, 2, Address.direct(cluster, writer)) as other:
        assert client.connect().ok and other.connect().ok
        for kind, name in (("temp_table", "harness_t_c1"), ("prepared_statement", "harness_ps_c1")):
            assert client.read_state(kind, name).value["value"] is False, kind
            assert client.set_state(kind, name).ok
            assert client.read_state(kind, name).value["value"] is True, kind
            assert other.read_state(kind, name).value["value"] is False, f"{kind} of another session"
        assert client.set_state("setting", "harness.tag", "client-1").ok
        assert client.read_state("setting", "harness.tag").value["value"] == "client-1"
        name, value = client.dialect.own_session_variable("c1")
        assert client.set_state("session_variable", name, value).ok
        assert client.read_state("session_variable", name).value["value"] == value
        assert other.read_state("session_variable", name).value["value"] != value, "a session variable is per session"
        assert client.set_state("advisory_lock", "c1").ok
        mine = client.find_state("advisory_lock", "", "c1")
        assert mine.ok and mine.value == {"kind": "advisory_lock", "name": "c1", "value": True}
        theirs = other.find_state("advisory_lock", "", "c2")
        assert theirs.value == {"kind": "advisory_lock", "name": "c2", "value": False}
        both = client.request("both", f"DO 1; SELECT 41 + 1, {client.who()}", result=lambda row: row[0])
        assert both.ok and both.value == 42 and both.node == writer
        missing = client.request("missing", f"SELECT 1, {client.who()} FROM no_such_table")
        assert missing.type is OpType.FAIL and missing.error.code == "1146", "only reads of state answer absent"


def test_backend_count_leaves_out_connections_by_program_name(cluster, recorder):
    from harness.clients.dialects.mysql import MYSQL

    writer = cluster.writer.id
    address = Address.direct(cluster, writer)
    with Client(recorder, 1, address) as counter, \
            Client(recorder, 2, address, program_name="harness-monitor-like") as monitor, \
            Client(recorder, 3, address, program_name="app") as app:
        assert counter.connect().ok and monitor.connect().ok and app.connect().ok
        sql = MYSQL.backend_count_sql(counter.who(), ("harness-monitor-like", "other's"))
        counted = counter.request("backend_count", sql, result=lambda row: row[0])
        assert counted.ok and counted.value == 1, "only the app connection is counted"
        everything = counter.request("backend_count", MYSQL.backend_count_sql(counter.who(), ()),
                                     result=lambda row: row[0])
        assert everything.value == 2


def test_the_supervisors_probes_name_themselves_so_backend_counts_leave_them_out(cluster):
    from harness.standins.base import PROBE_PROGRAM_NAME

    named = cluster.query_value(cluster.writer.id, "SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs "
                                "WHERE PROCESSLIST_ID = CONNECTION_ID() AND ATTR_NAME = 'program_name'", 5)
    assert named == PROBE_PROGRAM_NAME


def test_binary_protocol_client_reads_every_result_set_of_a_text_request(cluster, recorder):
    """A binary-protocol (Connector/Python) client's ``BEGIN; SELECT ...`` answers with the SELECT's
    row, and leaves no result set behind to be taken for the next request's answer (which once broke
    the next request and left it without an outcome)."""
    writer = cluster.writer.id
    with Client(recorder, "binary", Address.direct(cluster, writer), binary_protocol=True) as client:
        assert client.connect().ok
        opened = client.request("txn", f"BEGIN; SELECT {client.who()}", idempotent=False)
        assert opened.ok and opened.node == writer and opened.backend
        own = client.run(in_open_transaction(read_state_plan(client.dialect, "prepared_statement", "absent_ps")))
        assert own.ok and own.value["value"] is False and own.backend == opened.backend
        bound = client.request("read", f"SELECT ? AS n, {client.who()}", (7,), result=lambda row: row[0])
        assert bound.ok and bound.value == 7 and bound.backend == opened.backend
        assert client.request("txn", f"ROLLBACK; SELECT {client.who()}", idempotent=False).node == writer
    assert not recorder.outstanding()
    assert not recorder.history().ops(type="info")
