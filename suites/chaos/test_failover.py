"""Failover under mixed load: writers, readers and idle clients while a reader is promoted.

Full profile only: it changes the cluster (a reader becomes the writer), so it runs after the
conformance suites.  Every acknowledged write must be in the final read, writes must resume soon
after the promotion, readers and idle clients must barely notice.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from harness.plugin.recording import WHO
from harness.targets.base import Capability
from suites.workloads import note_roles

LOAD_AFTER_S = 8.0


def _table(pg_clients, name: str) -> None:
    s = pg_clients("writer")
    s.request("setup", f"CREATE TABLE IF NOT EXISTS {name} (id bigint PRIMARY KEY); SELECT {WHO}",
              idempotent=False)
    s.close()


def mixed_load(pg_clients, table: str, stop: threading.Event, *, writers: int = 4, readers: int = 4,
               **client_kwargs):
    """Writer and reader threads until ``stop``; ``client_kwargs`` go to every session they open."""
    ids = itertools.count(1)
    lock = threading.Lock()

    def writer() -> None:
        s = pg_clients("writer", **client_kwargs)
        while not stop.is_set():
            with lock:
                n = next(ids)
            if s.conn is None:
                s = pg_clients("writer", **client_kwargs)
                if s.conn is None:
                    stop.wait(0.1)
                    continue
            s.request("write", f"INSERT INTO {table} VALUES (%s) RETURNING {WHO}", (n,), value=n,
                      idempotent=False)
            stop.wait(0.02)
        s.close()

    def reader() -> None:
        s = pg_clients("reader", **client_kwargs)
        while not stop.is_set():
            if s.conn is None:
                s = pg_clients("reader", **client_kwargs)
                if s.conn is None:
                    stop.wait(0.1)
                    continue
            s.read()
            stop.wait(0.02)
        s.close()

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(writers)]
    threads += [threading.Thread(target=reader, daemon=True) for _ in range(readers)]
    for t in threads:
        t.start()
    return threads


def final_read(pg_clients, table: str, deadline_s: float = 60.0) -> None:
    """Read every id once the cluster answers again (the last ok final read is the truth)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        s = pg_clients("writer")
        op = s.request("final_read", f"SELECT coalesce(array_agg(id), '{{}}'), {WHO} FROM {table}",
                       result=lambda row: sorted(row[0]))
        s.close()
        if op.type.value == "ok":
            return
        time.sleep(0.5)


@pytest.mark.guarantee("FAILOVER-WRITE-GAP", "FAILOVER-READ-ERRORS", "FAILOVER-IDLE-SURVIVAL",
                       "DURABILITY-NO-LOST-ACK", "DURABILITY-NO-FAILED-VISIBLE", "ROUTE-WRITER-ENDPOINT")
def test_failover_under_mixed_load(target, pg_clients, faults, recorder):
    target.require(Capability.FAILOVER)
    table = "harness_failover_writes"
    _table(pg_clients, table)
    note_roles(target, recorder)
    idle = [pg_clients("writer") for _ in range(4)]
    stop = threading.Event()
    threads = mixed_load(pg_clients, table, stop)
    try:
        time.sleep(2.0)  # let the load settle before the fault (a workload phase, not a wait for state)
        faults.failover()
        note_roles(target, recorder)
        time.sleep(LOAD_AFTER_S)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    for s in idle:
        s.request("idle_probe", f"SELECT {WHO}")
        s.close()
    final_read(pg_clients, table)
