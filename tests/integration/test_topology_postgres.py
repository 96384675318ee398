"""The topology monitor against a real PostgreSQL stand-in: roles, failover, a lost reader, split brain.

The monitor runs on the test's event loop; blocking stand-in operations (failover, crash, restart)
run in a worker thread meanwhile, so the monitor keeps polling through them exactly as it would
inside the proxy.  Nothing tells the monitor what happened: it must find out by polling.

The tests share one 1+2 cluster and run in file order; the split-brain test comes last because it
leaves two instances believing they are the writer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import psycopg
import pytest

from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster
from reference_proxy.contracts import InstanceAddress, NoWriter, Role
from reference_proxy.engines.postgres.probe import PostgresProbe
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.routing import Router
from reference_proxy.topology import EventKind, TopologyMonitor

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow, pytest.mark.shares_cluster,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]

DETECTION_BUDGET = 3.0  # seconds from a change being done to the monitor reporting it


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster(readers=2) as c:
        yield c


def make_monitor(cluster: PostgresCluster, router: Router | None = None,
                 metrics: ProxyMetrics | None = None) -> TopologyMonitor:
    addresses = [InstanceAddress(i.id, i.host, i.port) for i in cluster.instances]

    def probe(address: InstanceAddress) -> PostgresProbe:
        return PostgresProbe(address, user=cluster.user, password=cluster.password, database="postgres",
                             connect_timeout=2.0, query_timeout=1.0)

    return TopologyMonitor(addresses, probe, router, metrics, interval=0.5, fast_interval=0.05,
                           poll_timeout=3.0)


def connect(cluster: PostgresCluster, instance_id: str) -> psycopg.Connection:
    p = cluster.connection_params(instance_id)
    return psycopg.connect(host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database,
                           autocommit=True, connect_timeout=3)


def router_for(cluster: PostgresCluster) -> Router:
    return Router([InstanceAddress(i.id, i.host, i.port) for i in cluster.instances])


async def expect(monitor: TopologyMonitor, predicate, what: str, timeout: float = DETECTION_BUDGET) -> float:
    """Wait for ``predicate(core)``; returns the seconds it took, fails naming ``what``."""
    started = time.monotonic()
    if not await monitor.wait_for(predicate, timeout):
        pytest.fail(f"the monitor did not see {what} within {timeout:.1f}s; it sees: {monitor.snapshot(0)}")
    return time.monotonic() - started


def test_sees_writer_readers_identity_and_lag(cluster):
    router, metrics = router_for(cluster), ProxyMetrics()

    async def scenario() -> None:
        async with make_monitor(cluster, router, metrics) as monitor:
            expected = {i.id: Role(i.role.value) for i in cluster.instances}
            assert monitor.roles == expected
            assert router.choose_writer().id == cluster.writer.id
            with connect(cluster, cluster.writer.id) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS topology_probe (n int)")
                conn.execute("INSERT INTO topology_probe SELECT generate_series(1, 1000)")
            await expect(monitor, lambda core: all(core.views[r.id].lag_bytes == 0 for r in cluster.readers),
                         "every reader caught up (lag 0 bytes)", timeout=10.0)
            status = monitor.snapshot()
            for r in cluster.readers:
                assert status["instances"][r.id]["lag_seconds"] == 0.0
                assert status["instances"][r.id]["identity_ok"] is True
            assert status["writer"] == cluster.writer.id and not status["fenced"]
            assert any(e["kind"] == "writer_accepted" for e in status["events"])
        assert metrics.value("AvailabilityPercentage", target_role="READ_WRITE") == pytest.approx(100.0)

    asyncio.run(scenario())


def test_follows_a_planned_failover_by_itself(cluster):
    router = router_for(cluster)

    async def scenario() -> None:
        async with make_monitor(cluster, router) as monitor:
            old = cluster.writer.id
            assert monitor.writer == old
            new = await asyncio.to_thread(cluster.failover)
            took = await expect(monitor, lambda core: core.writer == new, f"{new} accepted as writer")
            await expect(monitor, lambda core: core.roles[old] is Role.READER, f"{old} back as a reader",
                         timeout=10.0)
            assert router.choose_writer().id == new
            events = list(monitor.core.events)
            lost = [e for e in events if e.kind is EventKind.WRITER_LOST]
            accepted = [e for e in events if e.kind is EventKind.WRITER_ACCEPTED and e.instance_id == new]
            assert lost and lost[0].instance_id == old
            assert accepted and accepted[0].monotonic >= lost[0].monotonic
            promoted = [e for e in events if e.kind is EventKind.ROLE_CHANGED and e.instance_id == new]
            assert promoted[-1].new_role is Role.WRITER and promoted[-1].wall > 0
            assert not monitor.core.fenced
            print(f"new writer accepted {took:.2f}s after failover() returned")

    asyncio.run(scenario())


def test_marks_a_crashed_reader_unreachable_and_takes_it_back(cluster):
    router = router_for(cluster)

    async def scenario() -> None:
        async with make_monitor(cluster, router) as monitor:
            victim = cluster.readers[0].id
            others = [r.id for r in cluster.readers if r.id != victim]
            await asyncio.to_thread(cluster.crash, victim)
            await expect(monitor, lambda core: core.views[victim].reachable is False,
                         f"{victim} unreachable")
            assert monitor.roles[victim] is Role.UNKNOWN and monitor.writer == cluster.writer.id
            assert {router.choose_reader("reader").id for _ in range(4)} == set(others)
            await asyncio.to_thread(cluster.restart, victim)
            await expect(monitor, lambda core: core.roles[victim] is Role.READER, f"{victim} a reader again",
                         timeout=10.0)

    asyncio.run(scenario())


def test_split_brain_is_fenced_until_one_writer_remains(cluster, caplog):
    router = router_for(cluster)

    async def scenario() -> None:
        async with make_monitor(cluster, router) as monitor:
            old = cluster.writer.id
            rogue = cluster.readers[0].id
            with connect(cluster, rogue) as conn:  # promoted behind the cluster's back
                assert conn.execute("SELECT pg_promote(wait => true)").fetchone()[0] is True
            await expect(monitor, lambda core: core.fenced, "the split brain")
            assert monitor.writer is None and not monitor.writer_available.is_set()
            assert monitor.roles[old] is Role.UNKNOWN and monitor.roles[rogue] is Role.UNKNOWN
            with pytest.raises(NoWriter):
                router.choose_writer()
            await asyncio.to_thread(cluster.crash, old)
            await expect(monitor, lambda core: core.writer == rogue and not core.fenced,
                         f"the split brain resolved with {rogue} as writer")
            assert router.choose_writer().id == rogue
            kinds = [e.kind for e in monitor.core.events]
            assert kinds.count(EventKind.SPLIT_BRAIN_STARTED) == 1 and kinds.count(EventKind.SPLIT_BRAIN_ENDED) == 1

    with caplog.at_level(logging.ERROR, logger="reference_proxy.topology"):
        asyncio.run(scenario())
    assert [r.levelno for r in caplog.records if "SPLIT BRAIN" in r.getMessage()] == [logging.ERROR] * 2
