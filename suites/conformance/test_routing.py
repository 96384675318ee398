"""Routing: the writer endpoint reaches the writer; the reader endpoint only readers, in balance.

Every connect and read here must be served: a failure counts against the routing guarantee of its
endpoint (:mod:`harness.checkers.served`), so a proxy that routes the few requests it serves right
and refuses the rest is not passed.  Waits are bounded from the target's stated limits
(:func:`~suites.workloads.serve_wait_s`).  The reader test holds its sessions open while the others
connect (balancing is by outstanding connections); when the pool caps of the readers are known it
holds at most as many at once as they add up to, in waves, since a pooler that gives each session
its own backend can serve no more.
"""

from __future__ import annotations

import pytest

from suites.workloads import MUST_SERVE, held_at_once, note_roles, run_clients, serve_wait_s, serving_read

READER_SESSIONS = 40


@pytest.mark.guarantee("ROUTE-WRITER-ENDPOINT", "AVAILABILITY-SERVED")
def test_writer_endpoint_reaches_the_writer(target, clients, recorder):
    note_roles(target, recorder)
    wait = serve_wait_s(target)

    def client(i: int) -> None:
        session = clients("writer", request_timeout=wait, connect_timeout=wait, connect_extra=MUST_SERVE)
        if session.connected:
            for _ in range(5):
                serving_read(clients, session, must_serve=True)
        session.close()

    run_clients(10, client, timeout=7 * wait + 30)


@pytest.mark.guarantee("ROUTE-READER-ONLY", "ROUTE-READER-BALANCE", "AVAILABILITY-SERVED")
def test_reader_endpoint_reaches_readers_in_balance(target, clients, recorder):
    roles = note_roles(target, recorder)
    wait = serve_wait_s(target)
    wave = held_at_once(target, roles["readers"] if roles else [], READER_SESSIONS)

    def client(i: int):
        session = clients("reader", request_timeout=wait, connect_timeout=wait, connect_extra=MUST_SERVE)
        if session.connected:
            for _ in range(3):
                serving_read(clients, session, must_serve=True)
        # Stay connected while the others of the wave connect: balancing is by outstanding connections.
        return session

    done = 0
    while done < READER_SESSIONS:
        size = min(wave, READER_SESSIONS - done)
        # Each worker connects (up to twice the wait: login, then who served it) and reads 3 times.
        sessions = run_clients(size, client, max_workers=min(size, 20), timeout=(size // 20 + 1) * 5 * wait + 30)
        for s in sessions:
            s.close()
        done += size

