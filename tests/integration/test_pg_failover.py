"""Failover through the reference proxy, against a real PostgreSQL stand-in cluster (1 writer, 2 readers).

Each behaviour RDS Proxy documents for a failover has its own test: idle clients survive, clients
in a transaction or statement and pinned clients get an error and are disconnected, new work
waits for the new writer (or gets the borrow-timeout text), nothing is sent to a demoted writer,
and the read-only endpoint moves or waits but never reads from the writer.  Then the loops:
consecutive failovers under writes, a SIGKILLed writer promoted by the stand-in's supervisor, a
reader crash under read load, and a split brain.

The cluster is shared by the module and the tests run in file order (each leaves one writer and
running readers behind); the split-brain test comes last because it ends with an instance crashed.
Each test runs its own proxy (in a thread of the test process) with fast topology polling.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Self

import psycopg
import pytest
from pg_proxy_support import RunningProxy, eventually, running_proxy

from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster
from harness.standins.supervisor import SupervisorThread
from reference_proxy.contracts import BorrowTimeout

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow, pytest.mark.shares_cluster,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]

FAST_MONITOR = {"monitor__interval": 0.2, "monitor__fast_interval": 0.05, "monitor__connect_timeout": 1.0,
                "monitor__query_timeout": 0.5}
SETTLE = 20.0  # seconds allowed for the proxy to see a change the stand-in already finished
WHO = "SELECT aurora_db_instance_identifier()::text, pg_is_in_recovery()"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    with PostgresCluster(readers=2, max_connections=50) as c:
        with direct(c, c.writer.id) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS failover_writes (id bigint PRIMARY KEY)")
        yield c


@pytest.fixture
def proxy(cluster) -> Iterator[RunningProxy]:
    with running_proxy(cluster, **FAST_MONITOR, pool__connection_borrow_timeout=30) as p:
        yield p


def direct(cluster: PostgresCluster, instance_id: str) -> psycopg.Connection:
    p = cluster.connection_params(instance_id)
    return psycopg.connect(host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database,
                           autocommit=True, connect_timeout=3)


def who(conn: psycopg.Connection) -> tuple[str, bool]:
    """(instance id, in recovery) of whatever served this transaction."""
    row = conn.execute(WHO).fetchone()
    return row[0], row[1]


def proxy_writer(proxy: RunningProxy) -> str | None:
    return proxy.call(lambda: proxy.server.monitor.writer)


def fail_over(cluster: PostgresCluster, proxy: RunningProxy) -> tuple[str, str]:
    """Planned failover at the stand-in; returns (old, new) once the proxy has accepted the new writer."""
    old = cluster.writer.id
    new = cluster.failover()
    eventually(lambda: proxy_writer(proxy) == new, SETTLE, f"the proxy to accept {new} as writer")
    return old, new


def all_readers_running(cluster: PostgresCluster, proxy: RunningProxy) -> None:
    """Wait until the proxy sees every non-writer instance as a reader again (the old writer rejoined)."""
    def ready() -> bool:
        roles = proxy.call(lambda: {i: r.value for i, r in proxy.server.monitor.roles.items()})
        return sum(1 for r in roles.values() if r == "reader") == len(cluster.instances) - 1
    eventually(ready, SETTLE, "every reader back")


def assert_failover_error(error: BaseException) -> None:
    """The proxy's own words for a backend lost to a failover: 08006 naming the failover, never
    the old writer's ``57P01 terminating connection due to administrator command`` as is."""
    assert isinstance(error, psycopg.OperationalError), repr(error)
    assert error.sqlstate == "08006", f"unexpected SQLSTATE {error.sqlstate}: {error}"
    primary = error.diag.message_primary or ""
    assert "failover" in primary and "administrator command" not in primary, error  # the server's text: DETAIL


def assert_closed_with_error(conn: psycopg.Connection, statement: str = "SELECT 1") -> psycopg.Error:
    """The next statement fails with the proxy's failover error and the connection is gone."""
    with pytest.raises(psycopg.OperationalError) as caught:
        conn.execute(statement)
    assert_failover_error(caught.value)
    assert conn.closed or conn.broken
    return caught.value


# ------------------------------------------------------------------------- deliverable bullets

def test_idle_clients_survive_and_run_on_the_new_writer(cluster, proxy):
    clients = [proxy.connect() for _ in range(4)]
    try:
        old = cluster.writer.id
        assert {who(c) for c in clients} == {(old, False)}
        old, new = fail_over(cluster, proxy)
        assert {who(c) for c in clients} == {(new, False)}  # no error, no reconnect
    finally:
        for c in clients:
            c.close()
    all_readers_running(cluster, proxy)


def test_transaction_in_flight_on_the_lost_writer_is_cut(cluster, proxy):
    in_txn = proxy.connect()
    in_statement = proxy.connect()
    in_txn.execute("BEGIN")
    in_txn.execute("INSERT INTO failover_writes VALUES (-1)")
    outcome: dict[str, BaseException] = {}

    def long_statement() -> None:
        try:
            in_statement.execute("SELECT pg_sleep(60)")
        except psycopg.Error as e:
            outcome["error"] = e
    sleeper = threading.Thread(target=long_statement)
    sleeper.start()
    eventually(lambda: proxy.pool_instance(cluster.writer.id).get("borrowed") == 2, 10, "both backends lent")
    _, new = fail_over(cluster, proxy)
    sleeper.join(SETTLE)
    assert not sleeper.is_alive(), "the statement on the lost writer was not cut"
    error = outcome["error"]
    assert_failover_error(error)
    assert in_statement.closed or in_statement.broken
    idle_error = assert_closed_with_error(in_txn)
    for e in (error, idle_error):  # cut by the old writer's shutdown or by the proxy's monitor, whichever came first
        detail = e.diag.message_detail or ""
        assert "administrator command" in detail or "no longer the writer" in (e.diag.message_primary or ""), e
    with direct(cluster, new) as conn:  # the uncommitted insert did not survive
        assert conn.execute("SELECT count(*) FROM failover_writes WHERE id = -1").fetchone()[0] == 0
    all_readers_running(cluster, proxy)


def test_pinned_client_on_the_lost_writer_errors_on_next_statement(cluster, proxy):
    pinned = proxy.connect(prepare_threshold=None)
    pinned.execute("SET search_path TO public", prepare=False)
    old = cluster.writer.id
    assert proxy.pool_instance(old)["pinned"] == 1
    idle = proxy.connect()
    fail_over(cluster, proxy)
    assert_closed_with_error(pinned)
    assert who(idle)[1] is False  # a multiplexed neighbour is untouched
    idle.close()
    eventually(lambda: proxy.pool_instance(old).get("pinned", 0) == 0, 10, "the pin on the old writer to end")
    all_readers_running(cluster, proxy)


def test_new_work_waits_for_the_writer_or_gets_the_borrow_timeout(cluster, proxy):
    with running_proxy(cluster, **FAST_MONITOR, pool__connection_borrow_timeout=1) as impatient:
        idle = proxy.connect()
        assert who(idle)[1] is False
        old = cluster.writer.id
        cluster.crash(old)  # no promotion yet: a gap without a writer
        eventually(lambda: proxy_writer(proxy) is None and proxy_writer(impatient) is None, SETTLE,
                   "both proxies to see no writer")
        results: dict[str, object] = {}

        def new_connection() -> None:
            with proxy.connect(connect_timeout=60) as conn:
                results["new"] = who(conn)

        def next_transaction() -> None:
            results["idle"] = who(idle)
        waiters = [threading.Thread(target=new_connection), threading.Thread(target=next_transaction)]
        for t in waiters:
            t.start()
        with pytest.raises(psycopg.OperationalError) as caught:  # 1 s borrow timeout: refused with RDS's text
            impatient.connect(connect_timeout=30)
        assert BorrowTimeout.TEXT in str(caught.value)
        # The impatient proxy needed its full second to give up; the patient waiters are still queued.
        assert all(t.is_alive() for t in waiters) and not results
        new = cluster.failover()
        for t in waiters:
            t.join(SETTLE)
        assert results == {"new": (new, False), "idle": (new, False)}
        idle.close()
    cluster.restart(old)
    all_readers_running(cluster, proxy)


def test_old_writer_connections_are_closed_and_never_reused(cluster, proxy):
    clients = [proxy.connect() for _ in range(3)]
    for c in clients:
        c.execute("SELECT 1")
    old = cluster.writer.id
    assert proxy.pool_instance(old)["open"] >= 1
    _, new = fail_over(cluster, proxy)
    for _ in range(10):
        for c in clients:
            assert who(c) == (new, False)
    eventually(lambda: proxy.pool_instance(old).get("open", 0) == 0, 10, "the old writer's pool to empty")
    all_readers_running(cluster, proxy)
    with direct(cluster, old) as conn:  # back as a reader: no proxy backend is connected to it
        count = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND application_name <> 'reference-proxy-monitor'").fetchone()[0]
        assert count == 0
    for c in clients:
        c.close()


def test_reader_endpoint_moves_off_a_failed_reader_and_never_to_the_writer(cluster, proxy):
    readers = [proxy.connect("reader") for _ in range(4)]
    served = {who(c) for c in readers}
    assert all(in_recovery for _, in_recovery in served) and len(served) == 2  # spread over both readers
    victim = cluster.readers[0].id
    survivor = cluster.readers[1].id
    cluster.crash(victim)
    eventually(lambda: proxy.call(lambda: proxy.server.monitor.roles[victim].value) != "reader", SETTLE,
               "the failed reader to be dropped")
    for c in readers:  # multiplexed and idle: moved without an error
        assert who(c) == (survivor, True)
    with proxy.connect("reader") as fresh:
        assert who(fresh) == (survivor, True)
    for c in readers:
        c.close()
    cluster.restart(victim)
    all_readers_running(cluster, proxy)


def test_reader_endpoint_waits_then_times_out_and_fails_at_once_without_readers(cluster):
    writer_only = [{"id": cluster.writer.id, "port": cluster.writer.port, "role": "writer"}]
    with running_proxy(cluster, **FAST_MONITOR, instances=writer_only) as no_readers:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as caught:
            no_readers.connect("reader", connect_timeout=30)
        assert "no reader" in str(caught.value)
        assert time.monotonic() - started < 5  # at once, not after the 120 s default borrow timeout
    with running_proxy(cluster, **FAST_MONITOR, pool__connection_borrow_timeout=1.5) as proxy:
        conn = proxy.connect("reader")
        assert who(conn)[1] is True
        stopped = [r.id for r in cluster.readers]
        for reader_id in stopped:
            cluster.crash(reader_id)
        eventually(lambda: proxy.call(lambda: not proxy.server.router.readers_of("reader")), SETTLE,
                   "no reader to be available")
        with pytest.raises(psycopg.OperationalError) as caught:  # waits, never reads from the writer
            who(conn)
        assert BorrowTimeout.TEXT in str(caught.value)
        assert not conn.closed  # an ERROR, not a disconnect: the session may retry
        for reader_id in stopped:
            cluster.restart(reader_id)
        all_readers_running(cluster, proxy)
        assert who(conn)[1] is True
        conn.close()


# ---------------------------------------------------------------------------------- the loops

class WriteLoop:
    """One thread writing increasing ids through the writer endpoint; remembers what was acknowledged."""

    def __init__(self, proxy: RunningProxy, start_id: int) -> None:
        self.proxy = proxy
        self.next_id = start_id
        self.acknowledged: list[int] = []
        self.errors: list[str] = []
        self.nodes: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self.proxy.connect(connect_timeout=30)
                with conn.transaction():
                    node = conn.execute("INSERT INTO failover_writes VALUES (%s) "
                                        "RETURNING aurora_db_instance_identifier()::text",
                                        (self.next_id,)).fetchone()[0]
                self.acknowledged.append(self.next_id)
                self.nodes.add(node)
            except psycopg.Error as e:
                self.errors.append(f"{type(e).__name__}: {e}".strip())
                if conn is not None and (conn.closed or conn.broken):
                    conn.close()
                    conn = None
            self.next_id += 1
        if conn is not None:
            conn.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def wait_for_progress(self, writes: int = 3) -> None:
        target = len(self.acknowledged) + writes
        eventually(lambda: len(self.acknowledged) >= target, SETTLE, f"{writes} more acknowledged writes")


def assert_no_acknowledged_write_lost(cluster: PostgresCluster, loop: WriteLoop) -> None:
    with direct(cluster, cluster.writer.id) as conn:
        present = {r[0] for r in conn.execute("SELECT id FROM failover_writes WHERE id = ANY(%s)",
                                              (loop.acknowledged,))}
    missing = sorted(set(loop.acknowledged) - present)
    assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:10]}"


def writers_claimed(cluster: PostgresCluster) -> list[str]:
    claimed = []
    for inst in cluster.instances:
        with direct(cluster, inst.id) as conn:
            if conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]:
                claimed.append(inst.id)
    return claimed


def test_five_failovers_under_writes_lose_nothing(cluster, proxy):
    with WriteLoop(proxy, 1_000_000) as loop:
        loop.wait_for_progress()
        for _ in range(5):
            _, new = fail_over(cluster, proxy)
            loop.wait_for_progress()
            assert writers_claimed(cluster) == [new]
            all_readers_running(cluster, proxy)
    assert_no_acknowledged_write_lost(cluster, loop)
    assert len(loop.nodes) >= 2
    assert len(loop.errors) <= 5, loop.errors  # at most the one write in flight per failover


def test_crashed_writer_is_replaced_by_the_supervisor(cluster, proxy):
    with SupervisorThread(cluster, grace=1.0) as supervisor, WriteLoop(proxy, 2_000_000) as loop:
        loop.wait_for_progress()
        old = cluster.writer.id
        cluster.crash(old)
        eventually(lambda: supervisor.promotions, 60, "the supervisor to promote a reader")
        eventually(lambda: proxy_writer(proxy) not in (None, old), SETTLE, "the proxy to accept the new writer")
        loop.wait_for_progress()
    new = proxy_writer(proxy)
    assert writers_claimed(cluster) == [new]
    assert_no_acknowledged_write_lost(cluster, loop)
    if not cluster.running(old):
        cluster.restart(old)
    all_readers_running(cluster, proxy)


def test_reader_crash_under_read_load(cluster, proxy):
    stop = threading.Event()
    served: list[tuple[str, bool]] = []
    failures: list[str] = []

    def read_loop() -> None:
        conn = proxy.connect("reader")
        while not stop.is_set():
            try:
                served.append(who(conn))
            except psycopg.Error as e:
                failures.append(str(e))
                conn.close()
                conn = proxy.connect("reader")
        conn.close()
    threads = [threading.Thread(target=read_loop, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    eventually(lambda: len(served) > 20, SETTLE, "reads to flow")
    victim, survivor = cluster.readers[0].id, cluster.readers[1].id
    cluster.crash(victim)
    eventually(lambda: proxy.call(lambda: proxy.server.monitor.roles[victim].value) != "reader", SETTLE,
               "the failed reader to be dropped")
    after = len(served)
    eventually(lambda: len(served) > after + 40, SETTLE, "reads to continue")
    stop.set()
    for t in threads:
        t.join(30)
    assert all(in_recovery for _, in_recovery in served)  # never the writer
    assert {node for node, _ in served[after:]} == {survivor}
    assert len(failures) <= len(threads), failures  # only reads in flight on the crashed reader
    cluster.restart(victim)
    all_readers_running(cluster, proxy)


def test_split_brain_is_fenced(cluster):
    with running_proxy(cluster, **FAST_MONITOR, pool__connection_borrow_timeout=2) as proxy:
        old = cluster.writer.id
        rogue = cluster.readers[0].id
        holder = proxy.connect()
        holder.execute("BEGIN")
        holder.execute("INSERT INTO failover_writes VALUES (-2)")
        with direct(cluster, rogue) as conn:  # promoted behind the cluster's back
            assert conn.execute("SELECT pg_promote(wait => true)").fetchone()[0] is True
        eventually(lambda: proxy.call(lambda: proxy.server.monitor.core.fenced), SETTLE, "the split brain")
        error = assert_closed_with_error(holder)  # cut by the proxy itself: its own error names the failover
        assert error.sqlstate == "08006" and "failover" in str(error), error
        with pytest.raises(psycopg.OperationalError) as caught:  # no writer while two claim the role
            proxy.connect(connect_timeout=30)
        assert BorrowTimeout.TEXT in str(caught.value)
        cluster.crash(old)
        eventually(lambda: proxy_writer(proxy) == rogue, SETTLE, f"{rogue} to be accepted once alone")
        with proxy.connect() as conn:
            assert who(conn) == (rogue, False)
