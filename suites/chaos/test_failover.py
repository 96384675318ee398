"""Failover under mixed load: writers, readers and idle clients while a reader is promoted.

Part of both profiles (it is the promise RDS Proxy is bought for). It changes the cluster (a reader
becomes the writer), so the chaos suite runs after the conformance suites.  Every acknowledged write must be in the final read, writes must resume soon
after the promotion, readers and idle clients must barely notice.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from harness.plugin.recording import WHO
from harness.targets.base import Capability
from suites.workloads import note_roles

LOAD_AFTER_S = 8.0


@contextlib.contextmanager
def run_table(pg_clients, prefix: str) -> Iterator[str]:
    """A table of write ids private to this run, dropped afterwards (best effort).

    The name carries a random suffix, so a second run against the same persistent cluster (or a
    run that died before its cleanup) never collides with earlier rows, and ids can start at 1.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    s = pg_clients("writer")
    s.request("setup", f"CREATE TABLE {name} (id bigint PRIMARY KEY); SELECT {WHO}", idempotent=False)
    s.close()
    try:
        yield name
    finally:
        s = pg_clients("writer", connect_timeout=5.0, request_timeout=10.0)
        s.request("teardown", f"DROP TABLE IF EXISTS {name}; SELECT {WHO}", idempotent=False)
        s.close()


def mixed_load(pg_clients, table: str, stop: threading.Event, *, writers: int = 4, readers: int = 4,
               **client_kwargs):
    """Writer and reader threads until ``stop``; ``client_kwargs`` go to every session they open.

    Each thread is one logical client: it opens a new session (a new history process) after a
    broken connection, and names itself in every request's ``extra["worker"]`` so that per-client
    checkers count its errors together.
    """
    ids = itertools.count(1)
    lock = threading.Lock()

    def writer(worker: str) -> None:
        s = pg_clients("writer", worker=worker, **client_kwargs)
        while not stop.is_set():
            with lock:
                n = next(ids)
            if s.conn is None:
                s = pg_clients("writer", worker=worker, **client_kwargs)
                if s.conn is None:
                    stop.wait(0.1)
                    continue
            s.request("write", f"INSERT INTO {table} VALUES (%s) RETURNING {WHO}", (n,), value=n,
                      idempotent=False)
            stop.wait(0.02)
        s.close()

    def reader(worker: str) -> None:
        s = pg_clients("reader", worker=worker, **client_kwargs)
        while not stop.is_set():
            if s.conn is None:
                s = pg_clients("reader", worker=worker, **client_kwargs)
                if s.conn is None:
                    stop.wait(0.1)
                    continue
            s.read()
            stop.wait(0.02)
        s.close()

    threads = [threading.Thread(target=writer, args=(f"writer-{n}",), daemon=True) for n in range(writers)]
    threads += [threading.Thread(target=reader, args=(f"reader-{n}",), daemon=True) for n in range(readers)]
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
    with run_table(pg_clients, "harness_failover_writes") as table:
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
