"""The MySQL engine's backend connections and topology probe against a real MariaDB stand-in.

The connections are the proxy's own (the engine's codec over asyncio streams, no driver); PyMySQL
appears only as the independent observer that checks what the server saw.  The tests share one
1+1 cluster; the last one fails it over and watches the topology monitor, driving the MySQL probe,
find the new writer by polling.
"""

from __future__ import annotations

import asyncio
import os
import time

import pymysql
import pytest

from harness import process
from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster
from reference_proxy.contracts import BackendConnectFailed, BackendCredentials, InstanceAddress, PoolKey, Role
from reference_proxy.engines.mysql.backend import MySQLBackend, MySQLBackendFactory, MySQLConnectFailed
from reference_proxy.engines.mysql.probe import MySQLProbe
from reference_proxy.protocol.mysql import ServerStatus
from reference_proxy.routing import Router
from reference_proxy.topology import ProbeFailed, TopologyMonitor

pytestmark = [
    pytest.mark.integration, pytest.mark.mysql,
    pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                       reason="MariaDB server binaries are not installed"),
]

ER_ACCESS_DENIED = 1045


@pytest.fixture(scope="module")
def cluster():
    with MySQLCluster(readers=1) as c:
        yield c


def address_of(cluster: MySQLCluster, instance_id: str) -> InstanceAddress:
    inst = cluster.instance(instance_id)
    return InstanceAddress(inst.id, inst.host, inst.port)


def factory_for(cluster: MySQLCluster, *, password: str | None = None, init_query: str | None = None,
                seen: dict[str, int] | None = None) -> MySQLBackendFactory:
    creds = BackendCredentials(cluster.user, cluster.password if password is None else password)
    return MySQLBackendFactory(lambda user: creds if user == cluster.user else None,
                               init_query=lambda: init_query, connect_timeout=5.0, io_timeout=5.0,
                               on_max_connections=None if seen is None else seen.__setitem__)


async def open_backend(cluster: MySQLCluster, **kw) -> MySQLBackend:
    key = PoolKey(cluster.writer.id, cluster.user, cluster.database)
    return await factory_for(cluster, **kw)(key, address_of(cluster, cluster.writer.id))


def observer(cluster: MySQLCluster, instance_id: str) -> pymysql.connections.Connection:
    p = cluster.connection_params(instance_id)
    return pymysql.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                           database=p.database, autocommit=True, connect_timeout=3)


# -- backend connections -------------------------------------------------------------------------
@pytest.mark.shares_cluster
def test_login_query_and_max_connections(cluster):
    async def scenario():
        seen: dict[str, int] = {}
        backend = await open_backend(cluster, seen=seen)
        try:
            assert backend.is_usable() and backend.is_mariadb
            result = await backend.query("SELECT @@report_host AS host, DATABASE() AS db, NULL AS nothing")
            assert result.error is None and result.columns == ("host", "db", "nothing")
            assert result.rows == ((cluster.writer.id, cluster.database, None),)
            assert result.status_flags & ServerStatus.AUTOCOMMIT
            assert await backend.query_value("SELECT CONNECTION_ID()") == backend.backend_id
            failed = await backend.query("SELECT * FROM no_such_table")
            assert failed.error is not None and failed.error.error_code == 1146 and backend.is_usable()
            max_connections = await backend.query_value("SELECT @@max_connections")
        finally:
            await backend.close()
        assert not backend.is_usable()
        return seen, int(max_connections)

    seen, max_connections = asyncio.run(scenario())
    assert seen == {cluster.writer.id: max_connections}


@pytest.mark.shares_cluster
def test_init_query_applies_to_new_and_reset_connections(cluster):
    async def scenario():
        backend = await open_backend(cluster, init_query="SET SESSION wait_timeout = 1234; "
                                                         "SET @from_init_query = 'yes'")
        try:
            first = await backend.query("SELECT @@session.wait_timeout, @from_init_query")
            await backend.query("SET SESSION wait_timeout = 99")
            assert await backend.reset()
            second = await backend.query("SELECT @@session.wait_timeout, @from_init_query")
            return first.rows, second.rows
        finally:
            await backend.close()

    first, second = asyncio.run(scenario())
    assert first == second == (("1234", "yes"),)


@pytest.mark.shares_cluster
def test_reset_clears_session_state_and_returns_to_the_key_schema(cluster):
    async def scenario():
        backend = await open_backend(cluster)
        try:
            assert (await backend.query("SET @leak = 42")).error is None
            assert (await backend.query("CREATE TEMPORARY TABLE scratch (id INT)")).error is None
            assert (await backend.query("BEGIN")).status_flags & ServerStatus.IN_TRANS
            assert (await backend.query("USE mysql")).error is None
            assert await backend.reset()
            assert backend.is_usable()
            assert not backend.status_flags & ServerStatus.IN_TRANS
            leak = await backend.query_value("SELECT @leak")
            scratch = await backend.query("SELECT * FROM scratch")
            schema = await backend.query_value("SELECT DATABASE()")
            status = (await backend.query("SELECT 1")).status_flags
            return leak, scratch.error, schema, status
        finally:
            await backend.close()

    leak, scratch_error, schema, status = asyncio.run(scenario())
    assert leak is None
    assert scratch_error is not None and scratch_error.error_code == 1146
    assert schema == cluster.database
    assert status & ServerStatus.AUTOCOMMIT and not status & ServerStatus.IN_TRANS


@pytest.mark.shares_cluster
def test_tracked_variables_of_the_key_survive_a_reset(cluster):
    async def scenario():
        key = PoolKey(cluster.writer.id, cluster.user, cluster.database,
                      (("time_zone", "+02:00"), ("sql_select_limit", "7"), ("autocommit", "OFF")))
        backend = await factory_for(cluster)(key, address_of(cluster, cluster.writer.id))
        try:
            before = (await backend.query("SELECT @@session.time_zone, @@session.sql_select_limit, "
                                           "@@session.autocommit")).rows
            await backend.query("SET time_zone = '+05:00'")
            assert await backend.reset()
            after = (await backend.query("SELECT @@session.time_zone, @@session.sql_select_limit, "
                                         "@@session.autocommit")).rows
            return before, after
        finally:
            await backend.close()

    before, after = asyncio.run(scenario())
    assert before == after == (("+02:00", "7", "0"),)


@pytest.mark.shares_cluster
def test_a_killed_connection_is_not_usable_and_does_not_reset(cluster):
    async def scenario():
        backend = await open_backend(cluster)
        with observer(cluster, cluster.writer.id) as conn, conn.cursor() as cur:
            cur.execute("KILL %s", (int(backend.backend_id),))
        deadline = time.monotonic() + 10
        while backend.is_usable() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # let the event loop read the server's close
        usable = backend.is_usable()
        reset = await backend.reset()
        await backend.close()
        return usable, reset

    assert asyncio.run(scenario()) == (False, False)


@pytest.mark.shares_cluster
def test_wrong_password_is_refused_with_the_server_code(cluster):
    with pytest.raises(MySQLConnectFailed) as refused:
        asyncio.run(open_backend(cluster, password="not-the-password"))
    assert refused.value.error_code == ER_ACCESS_DENIED and refused.value.sqlstate == "28000"
    assert "Access denied" in refused.value.server_message
    assert isinstance(refused.value, BackendConnectFailed)


@pytest.mark.shares_cluster
def test_unknown_user_and_unreachable_port_fail_to_connect(cluster):
    key = PoolKey(cluster.writer.id, "nobody", cluster.database)
    with pytest.raises(BackendConnectFailed, match="no credentials"):
        asyncio.run(factory_for(cluster)(key, address_of(cluster, cluster.writer.id)))
    nowhere = InstanceAddress("instance-9", "127.0.0.1", process.free_port())
    key = PoolKey("instance-9", cluster.user, cluster.database)
    with pytest.raises(MySQLConnectFailed) as unreachable:
        asyncio.run(factory_for(cluster)(key, nowhere))
    assert unreachable.value.error_code == 2003 and "instance-9" in str(unreachable.value)


@pytest.mark.shares_cluster
def test_a_failing_init_query_fails_the_connect(cluster):
    with pytest.raises(MySQLConnectFailed) as failed:
        asyncio.run(open_backend(cluster, init_query="SELECT * FROM no_such_table"))
    assert failed.value.error_code == 1146 and "InitQuery" in str(failed.value)


# -- the topology probe (the failover test comes last: it changes the shared cluster's roles) --------
def probe_of(cluster: MySQLCluster, instance_id: str) -> MySQLProbe:
    # "postgres" is the [monitor] database default; the MySQL probe needs no schema and ignores it.
    return MySQLProbe(address_of(cluster, instance_id), user=cluster.user, password=cluster.password,
                      database="postgres", connect_timeout=2.0, query_timeout=1.0)


@pytest.mark.shares_cluster
def test_probe_reports_roles_ids_and_reader_lag(cluster):
    async def scenario():
        results = {}
        for inst in cluster.instances:
            probe = probe_of(cluster, inst.id)
            try:
                results[inst.id] = (await probe.poll(), await probe.poll())
            finally:
                await probe.close()
        return results

    results = asyncio.run(scenario())
    writer, reader = cluster.writer.id, cluster.readers[0].id
    for instance_id, (first, second) in results.items():
        assert first.reported_id == second.reported_id == instance_id
        assert first.in_recovery is second.in_recovery is (instance_id == reader)
        assert first.wal_position is None
    assert results[writer][0].replay_age is None
    assert results[reader][0].replay_age is not None and results[reader][0].replay_age >= 0


@pytest.mark.shares_cluster
def test_monitor_with_the_probe_follows_a_failover(cluster):
    addresses = [address_of(cluster, i.id) for i in cluster.instances]
    router = Router(addresses)
    old, new = cluster.writer.id, cluster.readers[0].id

    async def expect(monitor: TopologyMonitor, predicate, what: str, timeout: float = 10.0) -> None:
        if not await monitor.wait_for(predicate, timeout):
            pytest.fail(f"the monitor did not see {what} within {timeout:.0f}s; it sees: {monitor.snapshot(0)}")

    async def scenario() -> None:
        monitor = TopologyMonitor(addresses, lambda a: probe_of(cluster, a.id), router, None,
                                  interval=0.5, fast_interval=0.05, poll_timeout=3.0)
        async with monitor:
            assert monitor.roles == {old: Role.WRITER, new: Role.READER}
            assert all(view.identity_ok for view in monitor.core.views.values())
            await asyncio.to_thread(cluster.failover, new)
            await expect(monitor, lambda core: core.writer == new, f"{new} accepted as writer")
            await expect(monitor, lambda core: core.roles[old] is Role.READER, f"{old} back as a reader")
            assert router.choose_writer().id == new

    asyncio.run(scenario())


def test_probe_fails_cleanly_when_the_instance_is_unreachable():
    probe = MySQLProbe(InstanceAddress("instance-9", "127.0.0.1", process.free_port()), user="u",
                       password="p", connect_timeout=1.0, query_timeout=1.0)

    async def scenario():
        try:
            await probe.poll()
        finally:
            await probe.close()

    with pytest.raises(ProbeFailed, match="instance-9"):
        asyncio.run(scenario())
