"""Pooling: many clients share a capped number of backend connections, transaction by transaction."""

from __future__ import annotations

import threading

import pytest

from suites.workloads import run_clients


@pytest.mark.guarantee("POOL-BACKEND-CAP", "POOL-MULTIPLEXING")
def test_backend_cap_under_200_clients(pg_clients, profile):
    clients, reads = (200, 5) if profile == "quick" else (400, 10)
    all_connected = threading.Barrier(clients)

    def client(i: int) -> int:
        session = pg_clients("writer", connect=False)
        try:
            session.connect()
        finally:
            try:
                all_connected.wait(timeout=120)  # every client holds its connection at once
            except threading.BrokenBarrierError:
                pass
        ok = sum(1 for _ in range(reads) if session.read().type.value == "ok")
        session.close()
        return ok

    served = run_clients(clients, client)
    assert sum(served) > 0, "no read succeeded through the writer endpoint"
