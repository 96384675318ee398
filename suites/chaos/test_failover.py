"""Failover under mixed load: writers, readers and idle clients while a reader is promoted.

Part of both profiles (it is the promise RDS Proxy is bought for). It changes the cluster (a reader
becomes the writer), so the chaos suite runs after the conformance suites.  Every acknowledged write must be in the final read, writes must resume soon
after the promotion, readers and idle clients must barely notice.  Routing is judged through and after
the fault: writer-endpoint requests on the writer of their time, reader-endpoint reads never on the
writer, the reader just promoted included once the proxy could know of it
(:func:`~harness.checkers.routing.promotion_graces`).  Lingering writes are in flight
when the writer is fenced, some already committed: their outcome is unknown to the client, and no
write may be applied twice (a proxy that re-sends a statement after losing its backend).

The failover is whatever the target does for one: the reference target promotes a stand-in reader;
an external proxy runs the user's ``--failover-command``.  A failover that could not be carried out
(that command failed) leaves these guarantees unknown with its reason, not false.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from harness.clients.workload import Loop
from harness.targets.base import Capability
from suites.workloads import (
    note_roles,
    read_all_ids,
    run_table,
    serving_read,
    write_identified,
    write_lingering,
    write_refused,
)

LOAD_AFTER_S = 8.0
LINGERERS = 4
"""Lingering writers in the failover: two of them keep a write in flight before its COMMIT (each
about 93 % of the time), so that the fault cuts at least one transaction that has not committed in
nearly every run; that write must not be acknowledged (DURABILITY-NO-LOST-ACK)."""


REFUSED_EVERY = 5
"""Every fifth write of a writer loop is one the server refuses (:func:`~suites.workloads.write_refused`):
definitely failed writes, for DURABILITY-NO-FAILED-VISIBLE to judge."""


def mixed_load(clients, table: str, stop: threading.Event, *, writers: int = 4, readers: int = 4,
               lingerers: int = 2, **client_kwargs) -> list[Loop]:
    """Writer, lingering writer and reader loops, started, until ``stop``; ``client_kwargs`` go to
    every client they open.

    Writes carry unique ids from 1, each written once, so a copy too many in the final read is a
    write applied twice; every :data:`REFUSED_EVERY`-th plain write is refused by the server on
    purpose.  Lingering writers (:func:`~suites.workloads.write_lingering`) keep a write in flight
    nearly all the time, so a fault lands mid-statement: the even ones linger after their COMMIT
    (the fault cuts a write that took effect), the odd ones before it.

    Each loop is one logical client: it opens a new client (a new history process) after a broken
    connection, and names itself in every request's ``extra["worker"]`` so that per-client
    checkers count its errors together.  Join them with ``loop.join()`` after setting ``stop``.
    """
    ids = itertools.count(1)
    lock = threading.Lock()

    def write(client):
        with lock:
            n = next(ids)
        if n % REFUSED_EVERY == 0:
            return write_refused(clients, client, table, n)
        return write_identified(clients, client, table, n)

    def linger(commit_first: bool):
        def request(client):
            with lock:
                n = next(ids)
            return write_lingering(clients, client, table, n, commit_first=commit_first)
        return request

    def loop(endpoint: str, worker: str, request) -> Loop:
        return Loop(lambda: clients(endpoint, connect=False, worker=worker, **client_kwargs), request,
                    interval=0.02, pause=0.1, stop_event=stop, name=worker)

    loops = [loop("writer", f"writer-{n}", write) for n in range(writers)]
    loops += [loop("writer", f"lingerer-{n}", linger(commit_first=n % 2 == 0)) for n in range(lingerers)]
    loops += [loop("reader", f"reader-{n}", lambda c: serving_read(clients, c)) for n in range(readers)]
    for one in loops:
        one.start()
    return loops


def final_read(clients, table: str, deadline_s: float = 60.0) -> None:
    """Read every id once the cluster answers again (the last ok final read is the truth)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        s = clients("writer")
        op = read_all_ids(clients, s, table)
        s.close()
        if op.ok:
            return
        time.sleep(0.5)


@pytest.mark.guarantee("FAILOVER-WRITE-GAP", "FAILOVER-READ-ERRORS", "FAILOVER-IDLE-SURVIVAL",
                       "DURABILITY-NO-LOST-ACK", "DURABILITY-NO-FAILED-VISIBLE", "DURABILITY-NO-DUPLICATE",
                       "ROUTE-WRITER-ENDPOINT", "ROUTE-READER-ONLY")
def test_failover_under_mixed_load(target, clients, faults, recorder):
    target.require(Capability.FAILOVER)
    with run_table(clients, "harness_failover_writes") as table:
        note_roles(target, recorder)
        idle = [clients("writer") for _ in range(4)]
        stop = threading.Event()
        loops = mixed_load(clients, table, stop, lingerers=LINGERERS)
        try:
            time.sleep(2.0)  # let the load settle before the fault (a workload phase, not a wait for state)
            faults.failover()
            note_roles(target, recorder)
            time.sleep(LOAD_AFTER_S)
        finally:
            stop.set()
            for loop in loops:
                loop.join(timeout=60)
        for s in idle:
            s.request("idle_probe", f"SELECT {clients.who}")
            s.close()
        final_read(clients, table)
