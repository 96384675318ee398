"""The PostgreSQL stand-in against real PostgreSQL 15 servers on 127.0.0.1.

Most tests share one 1+2 cluster (``shares_cluster``); each leaves it with one writer and every
reader streaming, so the order of the tests does not matter for correctness.  Tests that need a
fresh cluster, or that check clean-up, start their own small one.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading

import psycopg
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
from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster
from harness.standins.postgres.control import ServerControl
from harness.standins.registry import cluster_from_state

pytestmark = [pytest.mark.integration, pytest.mark.postgres,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]


# -- helpers -----------------------------------------------------------------------------------
def eventually(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll until truthy; a server that is still starting may refuse or error meanwhile."""
    return _eventually(predicate, timeout, what, tolerate=(psycopg.Error, OSError))


def connect(cluster: PostgresCluster, instance_id: str) -> psycopg.Connection:
    p = cluster.connection_params(instance_id)
    return psycopg.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                           dbname=p.database, autocommit=True, connect_timeout=3)


def scalar(cluster: PostgresCluster, instance_id: str, query: str, params: tuple = ()):
    with connect(cluster, instance_id) as conn:
        return conn.execute(query, params).fetchone()[0]


def all_streaming(cluster: PostgresCluster) -> bool:
    topo = cluster.topology()
    return topo.writer == cluster.writer.id and all(r.replicating for r in topo.readers) \
        and {r.id for r in topo.readers} == {r.id for r in cluster.readers}


def reader_status(cluster: PostgresCluster, instance_id: str):
    return next(r for r in cluster.topology().readers if r.id == instance_id)


def in_recovery_by_instance(cluster: PostgresCluster) -> dict[str, bool]:
    return {i.id: scalar(cluster, i.id, "SELECT pg_is_in_recovery()") for i in cluster.instances}


class WriteLoop(threading.Thread):
    """Inserts unique ids into the writer, following the cluster's writer, and records every
    insert the server acknowledged.  Failed or interrupted inserts are not counted: their
    outcome is unknown, so they may or may not survive."""

    def __init__(self, cluster: PostgresCluster, table: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.table = cluster, table
        self.acknowledged: list[int] = []
        self.stop_event = threading.Event()
        self._ids = itertools.count(1)

    def run(self) -> None:
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = connect(self.cluster, self.cluster.writer.id)
                n = next(self._ids)
                conn.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (n,))
                self.acknowledged.append(n)
            except Exception:  # noqa: BLE001 - any failure means "unknown outcome, reconnect"
                if conn is not None:
                    conn.close()
                conn = None
                self.stop_event.wait(0.02)  # back off before reconnecting
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)
        assert not self.is_alive(), "write loop did not stop"


# -- shared cluster ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster(readers=2) as c:
        yield c


@pytest.mark.shares_cluster
def test_instances_are_one_writer_and_two_readers(cluster):
    assert [(i.id, i.role) for i in cluster.instances] == [
        ("instance-1", Role.WRITER), ("instance-2", Role.READER), ("instance-3", Role.READER)]
    ports = {i.port for i in cluster.instances}
    assert len(ports) == 3
    assert all(i.host == "127.0.0.1" for i in cluster.instances)


@pytest.mark.shares_cluster
def test_each_instance_reports_its_own_id(cluster):
    for inst in cluster.instances:
        assert scalar(cluster, inst.id, "SELECT aurora_db_instance_identifier()") == inst.id


@pytest.mark.shares_cluster
def test_instance_id_function_exists_in_new_databases(cluster):
    with connect(cluster, cluster.writer.id) as conn:
        conn.execute("DROP DATABASE IF EXISTS later_db")
        conn.execute("CREATE DATABASE later_db")
    p = cluster.connection_params(cluster.writer.id)
    with psycopg.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                         dbname="later_db", autocommit=True) as conn:
        assert conn.execute("SELECT aurora_db_instance_identifier()").fetchone()[0] == cluster.writer.id


@pytest.mark.shares_cluster
def test_cluster_user_has_scram_secret_and_md5_roles_can_log_in(cluster):
    secret = scalar(cluster, cluster.writer.id,
                    "SELECT rolpassword FROM pg_authid WHERE rolname = current_user")
    assert secret.startswith("SCRAM-SHA-256$")
    with connect(cluster, cluster.writer.id) as conn:
        conn.execute("SET password_encryption = 'md5'")
        conn.execute("DROP ROLE IF EXISTS legacy_md5")
        conn.execute("CREATE ROLE legacy_md5 LOGIN PASSWORD 'legacy-pass'")
    p = cluster.connection_params(cluster.writer.id)
    with psycopg.connect(host=p.host, port=p.port, user="legacy_md5", password="legacy-pass",
                         dbname=p.database, connect_timeout=3) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "legacy_md5"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=p.host, port=p.port, user=p.user, password="wrong",
                        dbname=p.database, connect_timeout=3)


@pytest.mark.shares_cluster
def test_readers_are_in_recovery_and_writer_is_not(cluster):
    assert in_recovery_by_instance(cluster) == {
        i.id: i.role is Role.READER for i in cluster.instances}


@pytest.mark.shares_cluster
def test_write_reaches_every_reader(cluster):
    with connect(cluster, cluster.writer.id) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes VALUES (1, 'hello readers') ON CONFLICT DO NOTHING")
    for reader in cluster.readers:
        eventually(lambda r=reader: scalar(cluster, r.id, "SELECT body FROM notes WHERE id = 1")
                   == "hello readers", what=f"row replicated to {reader.id}")


@pytest.mark.shares_cluster
def test_wait_replicated_and_topology_lag(cluster):
    with connect(cluster, cluster.writer.id) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bulk (n int)")
        conn.execute("INSERT INTO bulk SELECT generate_series(1, 5000)")
        expected = conn.execute("SELECT count(*) FROM bulk").fetchone()[0]
    cluster.wait_replicated(timeout=30)
    for reader in cluster.readers:  # replayed, so visible right away: no polling
        assert scalar(cluster, reader.id, "SELECT count(*) FROM bulk") == expected
    topo = cluster.topology()
    assert topo.writer == cluster.writer.id
    assert {r.id for r in topo.readers} == {r.id for r in cluster.readers}
    assert all(r.replicating for r in topo.readers)
    eventually(lambda: all(r.lag_bytes == 0 for r in cluster.topology().readers),
               what="lag_bytes drop to 0")


@pytest.mark.shares_cluster
def test_reader_writes_are_refused(cluster):
    with connect(cluster, cluster.readers[0].id) as conn, \
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("CREATE TABLE must_fail (x int)")


@pytest.mark.shares_cluster
def test_crash_and_restart_reader(cluster):
    reader = cluster.readers[0]
    cluster.crash(reader.id)
    assert not cluster.running(reader.id)
    eventually(lambda: not reader_status(cluster, reader.id).replicating,
               what="crashed reader reported as not replicating")
    assert reader_status(cluster, reader.id).lag_seconds is None
    # With ANY 1 synchronous replication the other reader still acknowledges commits.
    with connect(cluster, cluster.writer.id) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS during_reader_crash (x int)")
        conn.execute("INSERT INTO during_reader_crash VALUES (7)")
    cluster.restart(reader.id)
    assert cluster.running(reader.id)
    eventually(lambda: all_streaming(cluster), what="restarted reader streaming again")
    cluster.wait_replicated(timeout=30)
    assert scalar(cluster, reader.id, "SELECT max(x) FROM during_reader_crash") == 7


@pytest.mark.shares_cluster
def test_crash_and_restart_writer(cluster):
    writer = cluster.writer
    with connect(cluster, writer.id) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS before_writer_crash (x int)")
        conn.execute("INSERT INTO before_writer_crash VALUES (42)")
    cluster.crash(writer.id)
    eventually(lambda: cluster.topology().writer is None, what="topology without a writer")
    assert not cluster.topology().readers[0].replicating
    cluster.restart(writer.id)
    assert cluster.writer is writer
    assert scalar(cluster, writer.id, "SELECT pg_is_in_recovery()") is False
    assert scalar(cluster, writer.id, "SELECT max(x) FROM before_writer_crash") == 42
    eventually(lambda: all_streaming(cluster), what="readers streaming from the restarted writer")


@pytest.mark.shares_cluster
def test_failover_under_writes_loses_no_acknowledged_commit(cluster):
    with connect(cluster, cluster.writer.id) as conn:
        conn.execute("CREATE TABLE acked (id bigint PRIMARY KEY)")
    cluster.wait_replicated(timeout=30)
    old_writer = cluster.writer.id
    loop = WriteLoop(cluster, "acked")
    loop.start()
    try:
        eventually(lambda: len(loop.acknowledged) >= 50, what="50 acknowledged inserts")
        new_writer = cluster.failover()
        after = len(loop.acknowledged)
        eventually(lambda: len(loop.acknowledged) >= after + 50,
                   what="writes resuming on the new writer")
    finally:
        loop.stop()
    assert new_writer != old_writer
    assert cluster.writer.id == new_writer
    assert cluster.instance(old_writer).role is Role.READER
    with connect(cluster, new_writer) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM acked")}
    lost = set(loop.acknowledged) - stored
    assert not lost, f"{len(lost)} acknowledged inserts lost, e.g. {sorted(lost)[:10]}"
    recovery = in_recovery_by_instance(cluster)
    assert [i for i, r in recovery.items() if not r] == [new_writer]
    eventually(lambda: all_streaming(cluster), what="old writer streaming as a reader")
    cluster.wait_replicated(timeout=30)
    assert scalar(cluster, old_writer, "SELECT count(*) FROM acked") == len(stored)


@pytest.mark.shares_cluster
def test_failover_to_named_target(cluster):
    old_writer = cluster.writer.id
    target = cluster.readers[-1].id
    assert cluster.failover(target) == target
    assert cluster.writer.id == target
    recovery = in_recovery_by_instance(cluster)
    assert [i for i, r in recovery.items() if not r] == [target]
    assert scalar(cluster, target, "SELECT aurora_db_instance_identifier()") == target
    with connect(cluster, target) as conn:
        conn.execute("CREATE TABLE after_named_failover (x int)")
        conn.execute("INSERT INTO after_named_failover VALUES (1)")
    eventually(lambda: all_streaming(cluster), what="all readers streaming from the named target")
    cluster.wait_replicated(timeout=30)
    assert scalar(cluster, old_writer, "SELECT count(*) FROM after_named_failover") == 1
    names = scalar(cluster, target, "SHOW synchronous_standby_names")
    assert all(f'"{r.id}"' in names for r in cluster.readers) and f'"{target}"' not in names


@pytest.mark.shares_cluster
def test_failover_rebuilds_old_writer_when_rewind_fails(cluster, monkeypatch):
    real_run = process.run
    rewinds = []

    def run_without_rewind(argv, **kwargs):
        if os.path.basename(argv[0]) == "pg_rewind":
            rewinds.append(argv)
            raise StandinError("pg_rewind exited with 1: simulated failure")
        return real_run(argv, **kwargs)

    monkeypatch.setattr(process, "run", run_without_rewind)
    old_writer = cluster.writer.id
    cluster.crash(old_writer)  # an unclean old writer is the case that most needs a rewind
    new_writer = cluster.failover()
    assert rewinds, "failover did not try pg_rewind"
    assert scalar(cluster, old_writer, "SELECT pg_is_in_recovery()") is True
    assert scalar(cluster, old_writer, "SELECT aurora_db_instance_identifier()") == old_writer
    eventually(lambda: all_streaming(cluster), what="re-cloned old writer streaming")
    assert cluster.topology().writer == new_writer


@pytest.mark.shares_cluster
def test_paused_reader_answers_nothing_until_resumed(cluster):
    reader = cluster.readers[0]
    assert cluster.runtime.pause(reader.id)
    try:
        assert cluster.running(reader.id)  # frozen, not gone
        with pytest.raises(psycopg.OperationalError):
            cluster.query_value(reader.id, "SELECT 1", timeout=2)
    finally:
        assert cluster.runtime.resume(reader.id)
    assert eventually(lambda: cluster.query_value(reader.id, "SELECT 1", timeout=2) == 1,
                      what="resumed reader answering")
    eventually(lambda: all_streaming(cluster), what="resumed reader streaming")


@pytest.mark.shares_cluster
def test_failover_rejects_bad_targets(cluster):
    with pytest.raises(UnknownInstance):
        cluster.failover("instance-99")
    with pytest.raises(StandinError, match="already the writer"):
        cluster.failover(cluster.writer.id)


@pytest.mark.shares_cluster
def test_add_reader(cluster):
    with connect(cluster, cluster.writer.id) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS before_new_reader (x int)")
        conn.execute("INSERT INTO before_new_reader VALUES (5)")
    new_id = cluster.add_reader()
    assert new_id == "instance-4"
    assert cluster.instance(new_id).role is Role.READER
    assert scalar(cluster, new_id, "SELECT aurora_db_instance_identifier()") == new_id
    assert scalar(cluster, new_id, "SELECT pg_is_in_recovery()") is True
    assert scalar(cluster, new_id, "SELECT max(x) FROM before_new_reader") == 5
    assert any(r.id == new_id and r.replicating for r in cluster.topology().readers)
    assert f'"{new_id}"' in scalar(cluster, cluster.writer.id, "SHOW synchronous_standby_names")


# -- clusters of their own -----------------------------------------------------------------------
@pytest.mark.slow
def test_readers_of_different_sizes_keep_replicating_when_the_largest_is_promoted():
    """A hot standby pauses replay when its primary allows more connections than it does; promoting
    the large reader must leave the smaller instances streaming (they run with the writer's size)."""
    with PostgresCluster(readers=2, reader_max_connections=(100, 200)) as c:
        sizes = {i.id: int(scalar(c, i.id, "SHOW max_connections")) for i in c.instances}
        assert sizes == {"instance-1": 100, "instance-2": 100, "instance-3": 200}
        assert c.failover("instance-3") == "instance-3"
        with connect(c, "instance-3") as conn:
            conn.execute("CREATE TABLE after_growth (x int)")
            conn.execute("INSERT INTO after_growth VALUES (7)")
        for reader in c.readers:
            eventually(lambda r=reader: scalar(c, r.id, "SELECT x FROM after_growth") == 7,
                       what=f"row replicated to {reader.id}")
            assert int(scalar(c, reader.id, "SHOW max_connections")) == 200


def test_two_clusters_side_by_side():
    with PostgresCluster(readers=0) as a, PostgresCluster(readers=0, synchronous=False) as b:
        assert a.base_dir != b.base_dir
        assert a.writer.port != b.writer.port
        with connect(a, "instance-1") as conn:
            conn.execute("CREATE TABLE only_in_a (x int)")
        assert scalar(b, "instance-1", "SELECT to_regclass('only_in_a') IS NULL") is True
        assert scalar(a, "instance-1", "SELECT to_regclass('only_in_a') IS NULL") is False
        assert a.topology().readers == () and b.topology().writer == "instance-1"
        with pytest.raises(StandinError, match="no running reader"):
            a.failover()
        assert scalar(a, "instance-1", "SELECT pg_is_in_recovery()") is False
    assert not os.path.exists(a.base_dir) and not os.path.exists(b.base_dir)


def test_state_from_another_process_can_stop_the_cluster():
    """A CLI starts a cluster, prints its state and exits; a later process tears it down."""
    script = ("import json; from harness.standins.postgres.cluster import PostgresCluster\n"
              "c = PostgresCluster(readers=1); c.start(); print(json.dumps(c.to_state()))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    handle = cluster_from_state(json.loads(json.dumps(state)))
    try:
        assert isinstance(handle, PostgresCluster)
        assert handle.topology().writer == "instance-1"
        pids = [(i["pid"], i["pid_start_time"]) for i in state["instances"]]
        assert all(process.pid_alive(p, s) for p, s in pids)
    finally:
        handle.stop()
    assert not any(process.pid_alive(p, s) for p, s in pids)
    assert not os.path.exists(state["base_dir"])
    handle.stop()  # idempotent


def test_start_fails_cleanly_when_a_port_is_taken(monkeypatch):
    real_free_port = process.free_port
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    calls = itertools.count()
    # The writer gets a real free port; the reader gets one that is already listening.
    monkeypatch.setattr(process, "free_port",
                        lambda: real_free_port() if next(calls) == 0 else taken)
    cluster = PostgresCluster(readers=1)
    try:
        with pytest.raises(PortInUse, match=str(taken)):
            cluster.start()  # called directly: start() must clean up after itself
    finally:
        blocker.close()
    assert cluster.base_dir and not os.path.exists(cluster.base_dir)
    writer = cluster.instance("instance-1")
    assert not cluster.running(writer.id)
    assert not process.port_open(writer.port)


def test_interrupted_start_leaves_nothing_behind(monkeypatch):
    def interrupted(self, replication_password):
        assert process.port_open(self.port)  # the writer is up by now
        raise KeyboardInterrupt

    monkeypatch.setattr(ServerControl, "bootstrap", interrupted)
    cluster = PostgresCluster(readers=1)
    with pytest.raises(KeyboardInterrupt):
        cluster.start()
    writer = cluster.instance("instance-1")
    assert not cluster.running(writer.id) and not process.port_open(writer.port)
    assert not os.path.exists(cluster.base_dir)


def test_start_fails_cleanly_when_a_binary_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    cluster = PostgresCluster(readers=1, bin_dirs=["/nonexistent/postgresql/bin"])
    with pytest.raises(BinaryMissing, match="postgresql-15"), cluster:
        pytest.fail("start() should have raised")
    assert cluster.base_dir == "" and cluster.instances == []


def test_start_fails_cleanly_when_initdb_fails():
    fake_bin = tempfile.mkdtemp(prefix="pg-fake-bin-")
    try:
        os.chmod(fake_bin, 0o755)
        script = os.path.join(fake_bin, "initdb")
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho 'initdb: error: simulated disk full' >&2\nexit 1\n")
        os.chmod(script, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        cluster = PostgresCluster(readers=0, bin_dirs=[fake_bin, PG_BIN_DIR])
        with pytest.raises(StartFailed, match="simulated disk full"):
            cluster.start()
        assert cluster.base_dir and not os.path.exists(cluster.base_dir)
    finally:
        process.remove_tree(fake_bin)
