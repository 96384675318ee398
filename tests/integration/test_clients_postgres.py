"""Recording clients against a real PostgreSQL stand-in (no proxy): outcomes, attribution, workloads.

One 1+1 cluster with synchronous replication serves the module.  The crash test uses that to make a
COMMIT wait deterministically: with the reader down, a commit is flushed on the writer and then
waits for a standby that never answers - exactly the moment where the outcome is unknown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os

import psycopg
import pytest
from polling import eventually

from harness import process
from harness.checkers.base import CheckContext, Validity
from harness.checkers.durability import NoFailedVisibleChecker, NoLostAckChecker
from harness.checkers.isolation import SessionLeakChecker
from harness.clients.address import Address
from harness.clients.client import AsyncClient, Client
from harness.clients.workload import ClientFactory, IdleClients, UniqueIds, write_loop
from harness.history import OpType, Recorder
from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.shares_cluster,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster(readers=1) as c:
        yield c


@pytest.fixture
def recorder():
    with Recorder() as r:
        yield r


def connected(recorder, address, process_id, **options) -> Client:
    client = Client(recorder, process_id, address, **options)
    assert client.connect().ok
    return client


def test_write_read_and_final_read_name_the_serving_instance(cluster, recorder):
    writer, reader = cluster.writer.id, cluster.readers[0].id
    with connected(recorder, Address.direct(cluster, writer), 1) as w, \
            connected(recorder, Address.direct(cluster, reader), 2) as r:
        w.setup()
        results = [w.write(i) for i in (1, 2, 3)]
        assert all(res.ok and res.node == writer for res in results)
        backend = w.backend_id()
        assert backend.ok and backend.backend == w.connection.conn.info.backend_pid and backend.node == writer
        cluster.wait_replicated()
        read = r.read()
        assert read.ok and read.node == reader and {1, 2, 3} <= set(read.value)
        final = w.final_read()
        assert final.type is OpType.OK and {1, 2, 3} <= set(final.value)
        duplicate = w.write(1)
        assert duplicate.type is OpType.FAIL and duplicate.error.code == "23505" and duplicate.error.definite
        assert w.write(4).ok, "the client must roll back and stay usable after a server error"
    h = recorder.history()
    writes = h.ops(f="write", type="ok")
    assert [o.value for o in writes] == [1, 2, 3, 4]
    assert all(o.endpoint == f"direct:{writer}" and isinstance(o.extra["backend"], int) for o in writes)
    assert h.ops(f="read", type="ok")[0].endpoint == f"direct:{reader}"


def test_refused_connect_is_a_definite_fail(recorder):
    port = process.free_port()  # nothing listens there
    address = Address("postgres", "writer", "127.0.0.1", port, "u", "p", "d", "SELECT 1")
    client = Client(recorder, 1, address, connect_timeout=2)
    result = client.connect()
    assert result.type is OpType.FAIL and result.error.definite and result.error.code == "connect-failed"
    write = client.write(1)
    assert write.type is OpType.FAIL and write.error.code == "not-connected"
    assert [o.type for o in recorder.history()] == [OpType.INVOKE, OpType.FAIL, OpType.INVOKE, OpType.FAIL]


def test_session_state_is_observed_by_its_own_session_only(cluster, recorder):
    address = Address.direct(cluster, cluster.writer.id)
    with connected(recorder, address, 1) as a, connected(recorder, address, 2) as b:
        for kind, value in [("setting", "client-1"), ("temp_table", True), ("prepared_statement", True),
                            ("advisory_lock", True), ("listen", True)]:
            name = "application_name" if kind == "setting" else f"h_{kind}"
            assert a.set_state(kind, name, value).ok
            assert a.read_state(kind, name).value["value"] == value
            seen = b.read_state(kind, name).value["value"]
            # b's own program name (every direct connection of the harness names itself) is not a leak.
            assert seen in (False, None, "", address.program), f"{kind} leaked to another session: {seen!r}"
    verdict = SessionLeakChecker().check(recorder.history(), CheckContext())
    assert verdict.valid is Validity.TRUE


def test_async_client_records_like_the_sync_one(cluster, recorder):
    address = Address.direct(cluster, cluster.writer.id)

    async def scenario():
        async with AsyncClient(recorder, 1, address) as client:
            assert (await client.connect()).ok
            await client.setup()
            wrote = await client.write(1001)
            read = await client.read()
            probe = await client.idle_probe()
            return wrote, read, probe

    wrote, read, probe = asyncio.run(scenario())
    assert wrote.ok and wrote.node == cluster.writer.id and 1001 in read.value and probe.ok


def test_write_loop_and_idle_clients_feed_the_checkers(cluster, recorder):
    factory = ClientFactory(recorder, Address.direct(cluster, cluster.writer.id), table="loop_writes")
    with connected(recorder, factory.address, 0, table="loop_writes") as setup:
        setup.setup()
    ids = UniqueIds()
    with IdleClients(factory, 3) as idle:
        assert idle.connect() == 3
        loop = write_loop(factory, ids).start()
        eventually(lambda: len(recorder.history().ops(f="write", type="ok")) >= 20, what="20 ok writes")
        counts = loop.stop()
        assert counts["ok"] >= 20
        assert idle.probe() == {"ok": 3}
    with connected(recorder, factory.address, "final", table="loop_writes") as final:
        assert final.final_read().ok
    h = recorder.history()
    assert NoLostAckChecker().check(h, CheckContext()).valid is Validity.TRUE
    # nothing failed, so the other durability promise has nothing to judge
    assert NoFailedVisibleChecker().check(h, CheckContext()).valid is Validity.UNKNOWN


def test_commit_timeout_and_writer_crash_are_indefinite(cluster, recorder):
    """With the reader down a COMMIT is flushed on the writer but never acknowledged: a client
    deadline then gives ``info`` (and the write is in fact durable); a writer crash at that moment
    gives ``info`` too; connecting to the dead writer is a definite ``fail``."""
    writer, reader = cluster.writer.id, cluster.readers[0].id
    address = Address.direct(cluster, writer)
    with connected(recorder, address, 0) as setup:
        setup.setup()
    observer = psycopg.connect(**{k: v for k, v in cluster.connection_params(writer).as_dict().items()
                                  if k != "database"}, dbname=cluster.database, autocommit=True)
    cluster.crash(reader)
    try:
        with connected(recorder, address, 1, op_timeout=1.0) as impatient:
            timed_out = impatient.write(2001)
        assert timed_out.type is OpType.INFO
        assert timed_out.error.code == "timeout" and not timed_out.error.definite
        def commits_waiting() -> int:
            return observer.execute("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE wait_event = 'SyncRep'").fetchone()[0]

        # The impatient client's COMMIT may still wait on the server after its socket went away:
        # wait for one more than that, which can only be the patient client's COMMIT.
        already_waiting = commits_waiting()
        with connected(recorder, address, 2) as patient, concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(patient.write, 2002)
            eventually(lambda: commits_waiting() > already_waiting, what="a commit waiting for the standby")
            observer.close()
            cluster.crash(writer)
            crashed = pending.result(timeout=30)
        assert crashed.type is OpType.INFO and not crashed.error.definite
        refused = Client(recorder, 3, address, connect_timeout=2).connect()
        assert refused.type is OpType.FAIL and refused.error.definite
    finally:
        observer.close()
        cluster.restart(writer)
        cluster.restart(reader)
        cluster.wait_replicated()
    with connected(recorder, address, 4) as final:
        after = final.final_read()
    assert 2001 in after.value, "the timed-out commit was durable: recording it as failed would be wrong"
