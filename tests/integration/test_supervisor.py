"""The stand-in supervisor promotes a reader when the writer dies, in a thread and as a process.

Each test starts its own 1+2 PostgreSQL cluster: crashing the writer and failing over changes the
cluster for good.  Timing is asserted against generous budgets (grace + a few seconds), never as
performance claims.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from polling import eventually

from harness import process
from harness.standins.base import Role
from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster
from harness.standins.registry import cluster_from_state
from harness.standins.supervisor import (
    READY_LINE,
    StateFileStore,
    Supervisor,
    SupervisorError,
    SupervisorThread,
    cluster_lock,
    read_promotions,
    write_json_atomically,
)
from harness.targets.reference import ReferenceTarget

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]

GRACE = 2.0
PROMOTION_BUDGET = GRACE + 8.0  # crash -> a reader accepts writes
FAILOVER_BUDGET = 60.0          # crash -> old writer rewound and rejoined as a reader


def in_recovery(cluster: PostgresCluster, instance_id: str) -> bool | None:
    p = cluster.connection_params(instance_id)
    try:
        with psycopg.connect(host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database,
                             autocommit=True, connect_timeout=2) as conn:
            return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except psycopg.Error:
        return None


def writers(cluster: PostgresCluster) -> list[str]:
    return [i.id for i in cluster.instances if in_recovery(cluster, i.id) is False]


def test_crashed_writer_is_replaced_by_a_reader_in_process():
    with PostgresCluster(readers=2) as cluster:
        old = cluster.writer.id
        with SupervisorThread(cluster, grace=GRACE, poll_interval=0.1) as sup:
            with sup.paused():  # a hand-made failover does not race the supervisor
                planned = cluster.failover()
            assert cluster.writer.id == planned and planned != old
            eventually(lambda: sup.supervisor._watching == planned, 5.0, "the supervisor watching the new writer")
            assert sup.promotions == []  # the planned failover's fenced writer was not "lost"
            crashed_at = time.time()
            cluster.crash(planned)
            new = eventually(lambda: next((w for w in writers(cluster)), None), PROMOTION_BUDGET,
                             "a reader promoted")
            promoted_after = time.time() - crashed_at
            assert new != planned
            eventually(lambda: sup.promotions and sup.promotions[0].finished, FAILOVER_BUDGET,
                       "the automatic failover finished")
        promotion = sup.promotions[0]
        assert promotion.error is None, promotion.error
        assert (promotion.old_writer, promotion.new_writer) == (planned, new)
        assert promotion.writer_last_answered <= crashed_at + 0.5
        assert promotion.detected - crashed_at >= GRACE - 0.5
        assert promotion.detected <= promotion.accepting_writes <= promotion.finished
        assert promoted_after >= GRACE - 0.5
        assert cluster.writer.id == new
        assert writers(cluster) == [new]  # exactly one writer
        assert cluster.instance(planned).role is Role.READER
        eventually(lambda: in_recovery(cluster, planned) is True, 30.0, "the crashed writer back as a reader")
        print(f"crash -> reader accepting writes {promoted_after:.2f}s; detection -> accepting writes "
              f"{promotion.accepting_writes - promotion.detected:.2f}s; -> failover finished "
              f"{promotion.finished - promotion.detected:.2f}s")


def test_supervisor_process_follows_the_record_and_records_promotions(tmp_path):
    with PostgresCluster(readers=2) as cluster:
        run_dir = process.make_base_dir("aurora-harness-supervisor-test-", None)
        proc = None
        try:
            state = os.path.join(run_dir, "cluster.json")
            write_json_atomically(Path(state), {"note": "kept", "cluster": cluster.to_state()})
            log_path = os.path.join(run_dir, "supervisor.log")
            with open(log_path, "w") as log:
                proc = subprocess.Popen([sys.executable, "-m", "harness.standins.supervisor", "--state", state,
                                         "--grace", str(GRACE), "--interval", "0.1"], stdout=log, stderr=log)
            eventually(lambda: READY_LINE in Path(log_path).read_text() or proc.poll() is not None, 20.0,
                       "the supervisor starting")
            assert proc.poll() is None, Path(log_path).read_text()
            old = cluster.writer.id
            cluster.crash(old)
            promotions = eventually(lambda: read_promotions(state + ".promotions.jsonl"), FAILOVER_BUDGET,
                                    "a promotion recorded")
            assert promotions[0]["old_writer"] == old and promotions[0]["error"] is None
            new = promotions[0]["new_writer"]
            record = StateFileStore(state).load()
            assert record.writer.id == new
            assert json.loads(Path(state).read_text())["note"] == "kept"
            refreshed = cluster_from_state(record.to_state())
            assert writers(refreshed) == [new]
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
            process.remove_tree(run_dir)
        assert proc.returncode == 0
        # the test's own handle still names the old roles; refresh so stop() finds every server
        cluster.instances = cluster_from_state(record.to_state()).instances


def test_bad_settings_and_records_are_clear_errors(tmp_path):
    from harness.standins.supervisor import MemoryStore

    with pytest.raises(SupervisorError, match="grace"):
        Supervisor(MemoryStore(None), grace=0)  # type: ignore[arg-type]
    with pytest.raises(SupervisorError, match="no cluster record"):
        StateFileStore(tmp_path / "missing.json").load()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SupervisorError, match="cannot read"):
        StateFileStore(tmp_path / "bad.json").load()
    (tmp_path / "other.json").write_text('{"x": 1}')
    with pytest.raises(SupervisorError, match="no engine"):
        StateFileStore(tmp_path / "other.json").load()
    with cluster_lock(tmp_path / "x.json"):
        with cluster_lock(tmp_path / "x.json", blocking=False) as held:
            assert held is False
        with pytest.raises(SupervisorError, match="still held"), cluster_lock(tmp_path / "x.json", timeout=0.2):
            pass


def test_reference_target_with_auto_failover_promotes_and_plans_without_racing():
    with ReferenceTarget("postgres", readers=2, auto_failover=True, failover_grace=GRACE) as target:
        assert target.supervisor_running() and target.supervised
        old = target.cluster.writer.id
        target.crash(old)
        promotions = eventually(target.promotions, FAILOVER_BUDGET, "an automatic promotion")
        new = promotions[0]["new_writer"]
        assert promotions[0]["old_writer"] == old and new != old
        assert promotions[0]["accepting_writes"] - promotions[0]["detected"] < PROMOTION_BUDGET
        rebuilt = ReferenceTarget.from_state(target.to_state())  # what the next CLI command sees
        assert rebuilt.cluster.writer.id == new
        planned = target.failover()  # takes the lock and re-reads the record first
        assert planned not in (new,) and target.cluster.writer.id == planned
        assert writers(target.cluster) == [planned]
        assert len(target.promotions()) == 1  # the planned fence of `new` was not taken for a failure
        run_dir, pid, start = target.run_dir, target.supervisor_pid, target.supervisor_pid_start
    assert not process.pid_alive(pid, start)
    assert not os.path.exists(run_dir)
