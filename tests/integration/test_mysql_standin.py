"""The MySQL-protocol stand-in against real MariaDB servers on 127.0.0.1, through PyMySQL.

Read-only checks share one 1+2 cluster (``shares_cluster``).  Tests that fail over, crash,
restart or add instances start their own cluster: a MariaDB stand-in starts in a couple of
seconds, and a fresh one keeps each test's story readable.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

import pymysql
import pytest
from polling import eventually as _eventually

from harness import process
from harness.standins.base import (
    BinaryMissing,
    PortInUse,
    Role,
    StandinError,
    StartFailed,
    UnknownInstance,
)
from harness.standins.mysql.cluster import SEARCH_DIRS, MySQLCluster
from harness.standins.registry import cluster_from_state

pytestmark = [
    pytest.mark.integration, pytest.mark.mysql,
    pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                       reason="MariaDB server binaries are not installed"),
]

ER_OPTION_PREVENTS_STATEMENT = 1290


# -- helpers -----------------------------------------------------------------------------------
def eventually(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll until truthy; a server that is still starting may refuse or error meanwhile."""
    return _eventually(predicate, timeout, what, tolerate=(pymysql.err.MySQLError, OSError))


def connect(cluster: MySQLCluster, instance_id: str, **kw) -> pymysql.connections.Connection:
    p = cluster.connection_params(instance_id)
    return pymysql.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                           database=p.database, autocommit=True, connect_timeout=3, **kw)


def scalar(cluster: MySQLCluster, instance_id: str, sql: str, args: tuple = ()):
    with connect(cluster, instance_id) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return row[0] if row else None


def execute(cluster: MySQLCluster, instance_id: str, sql: str, args: tuple = ()) -> None:
    with connect(cluster, instance_id) as conn, conn.cursor() as cur:
        cur.execute(sql, args)


def ids_on(cluster: MySQLCluster, instance_id: str, table: str) -> set[int]:
    with connect(cluster, instance_id) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {table}")
        return {r[0] for r in cur.fetchall()}


def read_only_by_instance(cluster: MySQLCluster) -> dict[str, int]:
    # @@read_only alone: MariaDB 10.11 reports 0 for it in a statement that also reads a table.
    return {i.id: scalar(cluster, i.id, "SELECT @@global.read_only") for i in cluster.instances}


def all_streaming(cluster: MySQLCluster) -> bool:
    topo = cluster.topology()
    return (topo.writer == cluster.writer.id and all(r.replicating for r in topo.readers)
            and {r.id for r in topo.readers} == {r.id for r in cluster.readers})


def reader_status(cluster: MySQLCluster, instance_id: str):
    return next(r for r in cluster.topology().readers if r.id == instance_id)


class WriteLoop(threading.Thread):
    """Inserts unique ids through the login user into whatever the cluster calls its writer,
    reconnecting after errors, and records the inserts the server acknowledged.  An insert that
    failed or lost its connection is not counted: its outcome is unknown."""

    def __init__(self, cluster: MySQLCluster, table: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.table = cluster, table
        self.acked: list[int] = []
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        conn = None
        next_id = 0
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = connect(self.cluster, self.cluster.writer.id, read_timeout=30)
                next_id += 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (next_id,))
                self.acked.append(next_id)
            except (pymysql.err.MySQLError, OSError, StandinError):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                self.halt.wait(0.01)  # back off between reconnects, not a wait for state
        if conn is not None:
            conn.close()

    def wait_for_acks(self, more_than: int, timeout: float = 30.0) -> None:
        eventually(lambda: len(self.acked) > more_than, timeout, f"more than {more_than} acked writes")


# -- a shared cluster for checks that leave it as they found it ---------------------------------
@pytest.fixture(scope="module")
def shared():
    with MySQLCluster(readers=2, reader_max_connections=(151, 302)) as cluster:
        execute(cluster, cluster.writer.id, "CREATE TABLE shared_rows (id INT PRIMARY KEY, note TEXT)")
        yield cluster


@pytest.mark.shares_cluster
def test_each_reader_has_its_own_size(shared):
    """Readers of different sizes, as Aurora instances of different classes: RDS Proxy weighs them by it."""
    sizes = {i.id: int(scalar(shared, i.id, "SELECT @@max_connections")) for i in shared.instances}
    assert sizes == {"instance-1": 151, "instance-2": 151, "instance-3": 302}


@pytest.mark.shares_cluster
def test_a_write_reaches_every_reader(shared):
    execute(shared, shared.writer.id, "INSERT INTO shared_rows VALUES (1, 'hello')")
    for reader in shared.readers:
        eventually(lambda r=reader: scalar(shared, r.id, "SELECT note FROM shared_rows WHERE id = 1") == "hello",
                   what=f"row 1 on {reader.id}")
    shared.wait_replicated(timeout=10)


@pytest.mark.shares_cluster
def test_report_host_names_the_serving_instance(shared):
    assert {i.id: scalar(shared, i.id, "SELECT @@report_host") for i in shared.instances} == {
        "instance-1": "instance-1", "instance-2": "instance-2", "instance-3": "instance-3"}
    assert len({i.port for i in shared.instances}) == 3


@pytest.mark.shares_cluster
def test_readers_reject_writes_of_the_login_user(shared):
    for reader in shared.readers:
        with pytest.raises(pymysql.err.OperationalError) as err:
            execute(shared, reader.id, "INSERT INTO shared_rows VALUES (99, 'nope')")
        assert err.value.args[0] == ER_OPTION_PREVENTS_STATEMENT
    assert read_only_by_instance(shared) == {"instance-1": 0, "instance-2": 1, "instance-3": 1}


@pytest.mark.shares_cluster
def test_topology_is_measured_from_the_servers(shared):
    topo = shared.topology()
    assert topo.writer == "instance-1"
    assert [r.id for r in topo.readers] == ["instance-2", "instance-3"]
    assert all(r.replicating and r.lag_seconds is not None for r in topo.readers)
    assert topo.as_dict()["writer"] == "instance-1"


@pytest.mark.shares_cluster
def test_bad_requests_get_clear_errors(shared):
    with pytest.raises(UnknownInstance, match="instance-9"):
        shared.crash("instance-9")
    with pytest.raises(StandinError, match="writer already"):
        shared.failover("instance-1")
    with pytest.raises(StandinError, match="already started"):
        shared.start()


# -- failover ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("writer_fate", ["fenced", "crashed"])
def test_failover_under_writes_keeps_every_acknowledged_write(writer_fate):
    """Fenced: the live writer is drained.  Crashed: only semi-sync puts acked writes on a reader."""
    with MySQLCluster(readers=2) as cluster:
        execute(cluster, "instance-1", "CREATE TABLE acked (id INT PRIMARY KEY)")
        loop = WriteLoop(cluster, "acked")
        loop.start()
        try:
            loop.wait_for_acks(30)
            if writer_fate == "crashed":
                cluster.crash("instance-1")
            new_writer = cluster.failover()
            before = len(loop.acked)
            loop.wait_for_acks(before + 30)
        finally:
            loop.halt.set()
            loop.join(timeout=30)
        assert new_writer != "instance-1" and cluster.writer.id == new_writer
        assert cluster.instance("instance-1").role is Role.READER
        cluster.wait_replicated(timeout=30)
        for inst in cluster.instances:
            missing = set(loop.acked) - ids_on(cluster, inst.id, "acked")
            assert not missing, f"{inst.id} lost acknowledged writes {sorted(missing)[:10]}"
        assert [i for i, ro in read_only_by_instance(cluster).items() if ro == 0] == [new_writer]
        eventually(lambda: all_streaming(cluster), what="every reader streaming from the new writer")
        assert reader_status(cluster, "instance-1").replicating


def test_failover_to_a_named_reader():
    with MySQLCluster(readers=2) as cluster:
        execute(cluster, "instance-1", "CREATE TABLE t (id INT PRIMARY KEY)")
        assert cluster.failover("instance-3") == "instance-3"
        assert cluster.topology().writer == "instance-3"
        execute(cluster, "instance-3", "INSERT INTO t VALUES (1)")
        cluster.wait_replicated(timeout=10)
        assert ids_on(cluster, "instance-1", "t") == ids_on(cluster, "instance-2", "t") == {1}
        assert read_only_by_instance(cluster) == {"instance-1": 1, "instance-2": 1, "instance-3": 0}


def test_dead_writer_failover_to_a_lagging_reader_keeps_acknowledged_writes():
    """The named target had stopped receiving, so it first catches up from the other reader."""
    with MySQLCluster(readers=2) as cluster:
        execute(cluster, "instance-1", "CREATE TABLE t (id INT PRIMARY KEY)")
        cluster.wait_replicated(timeout=10)
        with cluster._connect(cluster.instance("instance-3")) as admin, admin.cursor() as cur:
            cur.execute("STOP SLAVE IO_THREAD")
        for i in range(1, 21):
            execute(cluster, "instance-1", "INSERT INTO t VALUES (%s)", (i,))
        assert ids_on(cluster, "instance-3", "t") == set()
        cluster.crash("instance-1")
        assert cluster.failover("instance-3") == "instance-3"
        assert ids_on(cluster, "instance-3", "t") == set(range(1, 21))
        cluster.wait_replicated(timeout=30)
        assert ids_on(cluster, "instance-1", "t") == set(range(1, 21))
        eventually(lambda: all_streaming(cluster), what="readers streaming from instance-3")


def test_crashed_writer_rejoins_without_its_unacknowledged_commit():
    """A commit written to the writer's binary log but never acknowledged by a reader must not
    survive on the old writer once it rejoins as a reader of the promoted one."""
    with MySQLCluster(readers=1, semi_sync_timeout=60) as cluster:
        execute(cluster, "instance-1", "CREATE TABLE t (id INT PRIMARY KEY)")
        execute(cluster, "instance-1", "INSERT INTO t VALUES (1)")
        cluster.wait_replicated(timeout=10)
        with cluster._connect(cluster.instance("instance-2")) as admin, admin.cursor() as cur:
            cur.execute("STOP SLAVE IO_THREAD")
        outcome: dict[str, object] = {}

        def unacknowledged_insert():
            try:
                execute(cluster, "instance-1", "INSERT INTO t VALUES (2)")
                outcome["ok"] = True
            except pymysql.err.MySQLError as e:
                outcome["error"] = e

        writer = threading.Thread(target=unacknowledged_insert, daemon=True)
        writer.start()
        with cluster._connect(cluster.instance("instance-1")) as admin, admin.cursor() as cur:
            def waiting_for_ack():
                cur.execute("SHOW STATUS LIKE 'Rpl_semi_sync_master_wait_sessions'")
                return int(cur.fetchone()[1]) >= 1
            eventually(waiting_for_ack, 20, "the insert waiting for a reader's acknowledgement")
        cluster.crash("instance-1")
        writer.join(timeout=30)
        assert "ok" not in outcome
        assert cluster.failover() == "instance-2"
        execute(cluster, "instance-2", "INSERT INTO t VALUES (3)")
        cluster.wait_replicated(timeout=30)
        assert ids_on(cluster, "instance-1", "t") == ids_on(cluster, "instance-2", "t") == {1, 3}
        eventually(lambda: all_streaming(cluster), what="the old writer streaming")
        assert cluster.rebuilt == []  # semi-sync crash recovery removed it; no rebuild needed


# -- crash, restart, add ---------------------------------------------------------------------------
def test_a_diverged_reader_is_rebuilt_from_the_seed_on_restart():
    """A reader holding a transaction the writer never had cannot follow it by GTID any more."""
    with MySQLCluster(readers=1) as cluster:
        execute(cluster, "instance-1", "CREATE TABLE t (id INT PRIMARY KEY)")
        execute(cluster, "instance-1", "INSERT INTO t VALUES (1)")
        cluster.wait_replicated(timeout=10)
        with cluster._connect(cluster.instance("instance-2")) as admin, admin.cursor() as cur:
            cur.execute(f"INSERT INTO {cluster.database}.t VALUES (100)")  # a local, stray write
        execute(cluster, "instance-1", "INSERT INTO t VALUES (2)")
        eventually(lambda: not reader_status(cluster, "instance-2").replicating,
                   what="the reader stopping on the conflicting transaction")
        cluster.restart("instance-2")
        assert cluster.rebuilt == ["instance-2"]
        cluster.wait_replicated(timeout=30)
        assert ids_on(cluster, "instance-2", "t") == {1, 2}
        assert reader_status(cluster, "instance-2").replicating


def test_crash_and_restart_of_a_reader():
    with MySQLCluster(readers=2) as cluster:
        execute(cluster, "instance-1", "CREATE TABLE t (id INT PRIMARY KEY)")
        cluster.crash("instance-2")
        assert not reader_status(cluster, "instance-2").replicating
        for i in range(10):
            execute(cluster, "instance-1", "INSERT INTO t VALUES (%s)", (i,))
        cluster.restart("instance-2")
        cluster.wait_replicated(timeout=30)
        assert ids_on(cluster, "instance-2", "t") == set(range(10))
        assert reader_status(cluster, "instance-2").replicating
        assert scalar(cluster, "instance-2", "SELECT @@global.read_only") == 1


def test_crash_and_restart_of_the_writer():
    with MySQLCluster(readers=2) as cluster:
        execute(cluster, "instance-1", "CREATE TABLE t (id INT PRIMARY KEY)")
        execute(cluster, "instance-1", "INSERT INTO t VALUES (1)")
        cluster.crash("instance-1")
        assert cluster.topology().writer is None
        cluster.restart("instance-1")
        assert cluster.topology().writer == "instance-1"
        execute(cluster, "instance-1", "INSERT INTO t VALUES (2)")
        cluster.wait_replicated(timeout=30)
        for reader in cluster.readers:
            assert ids_on(cluster, reader.id, "t") == {1, 2}
        eventually(lambda: all_streaming(cluster), what="readers streaming again")


def test_add_reader_to_a_writer_without_readers():
    with MySQLCluster(readers=0) as cluster:
        execute(cluster, "instance-1", "CREATE TABLE t (id INT PRIMARY KEY)")
        execute(cluster, "instance-1", "INSERT INTO t VALUES (1), (2)")
        assert cluster.topology().readers == ()
        new_id = cluster.add_reader()
        assert new_id == "instance-2" and cluster.instance(new_id).role is Role.READER
        assert ids_on(cluster, new_id, "t") == {1, 2}
        assert scalar(cluster, new_id, "SELECT @@report_host") == new_id
        with cluster._connect(cluster.writer) as admin, admin.cursor() as cur:
            cur.execute("SHOW STATUS LIKE 'Rpl_semi_sync_master_status'")
            assert cur.fetchone()[1] == "ON"
        execute(cluster, "instance-1", "INSERT INTO t VALUES (3)")
        cluster.wait_replicated(timeout=10)
        assert ids_on(cluster, new_id, "t") == {1, 2, 3}


def test_two_clusters_side_by_side():
    with MySQLCluster(readers=1) as a, MySQLCluster(readers=1) as b:
        assert not {i.port for i in a.instances} & {i.port for i in b.instances}
        assert a.base_dir != b.base_dir
        execute(a, "instance-1", "CREATE TABLE only_in_a (id INT PRIMARY KEY)")
        a.wait_replicated(timeout=10)
        b.wait_replicated(timeout=10)
        assert scalar(a, "instance-2", "SELECT COUNT(*) FROM information_schema.tables "
                                      "WHERE table_name = 'only_in_a'") == 1
        assert scalar(b, "instance-2", "SELECT COUNT(*) FROM information_schema.tables "
                                      "WHERE table_name = 'only_in_a'") == 0


# -- clean-up on failure and across processes -------------------------------------------------------
def _assert_left_nothing(cluster: MySQLCluster) -> None:
    assert not cluster.base_dir or not os.path.exists(cluster.base_dir)
    assert not any(cluster.running(i.id) for i in cluster.instances)


def test_port_in_use_is_reported_and_leaves_nothing():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = MySQLCluster(readers=1, ports=[process.free_port(), port])
        with pytest.raises(PortInUse, match=str(port)), cluster:
            pass
    _assert_left_nothing(cluster)


def test_missing_binary_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    cluster = MySQLCluster(readers=1, search_dirs=[str(tmp_path)])
    with pytest.raises(BinaryMissing, match="mariadb-server"):
        cluster.start()
    _assert_left_nothing(cluster)


@pytest.fixture
def fake_bin_dir():
    """A directory the service account can read, for stand-in binaries that fail on purpose."""
    path = tempfile.mkdtemp(prefix="fake-mariadb-bin-")
    os.chmod(path, 0o755)
    yield path
    process.remove_tree(path)


@pytest.mark.parametrize("binary", ["mariadb-install-db", "mariadbd"])
def test_a_failing_binary_gives_its_output_and_leaves_nothing(fake_bin_dir, binary):
    script = os.path.join(fake_bin_dir, binary)
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho 'simulated failure of the server binary' >&2\nexit 3\n")
    os.chmod(script, 0o755)
    cluster = MySQLCluster(readers=1, search_dirs=[fake_bin_dir, *SEARCH_DIRS])
    with pytest.raises(StartFailed, match="simulated failure"):
        cluster.start()
    _assert_left_nothing(cluster)


def test_a_handle_rebuilt_in_another_process_stops_the_cluster():
    """Start a cluster in a child Python that exits without stopping it, then stop it from here."""
    child = subprocess.run(
        [sys.executable, "-c",
         ("import json, os, sys\n"
         "from harness.standins.mysql.cluster import MySQLCluster\n"
         "c = MySQLCluster(readers=1)\n"
         "c.start()\n"
         "sys.stdout.write(json.dumps(c.to_state()))\n"
         "sys.stdout.flush()\n"
         "os._exit(0)\n")],
        capture_output=True, text=True, timeout=120, check=True)
    state = json.loads(child.stdout)
    cluster = cluster_from_state(json.loads(json.dumps(state)))
    try:
        assert isinstance(cluster, MySQLCluster)
        assert cluster.topology().writer == "instance-1"
        assert scalar(cluster, "instance-2", "SELECT @@report_host") == "instance-2"
        assert cluster.failover() == "instance-2"  # control works from the rebuilt handle too
        eventually(lambda: all_streaming(cluster), what="instance-1 streaming from instance-2")
    finally:
        cluster.stop()
    _assert_left_nothing(cluster)
    assert all(not process.pid_alive(i["pid"], i["pid_start_time"]) for i in state["instances"])
    cluster.stop()  # idempotent
