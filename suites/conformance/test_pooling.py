"""Pooling: many clients share a capped number of backend connections, transaction by transaction.

The backend count is taken on the writer itself (``pg_stat_activity``, or MySQL's process list with
the connect attributes of the performance schema) while the clients run, when
the target gives direct access; otherwise the checker falls back to the proxy's own gauge.
"""

from __future__ import annotations

import contextlib
import threading

import pytest

from harness.targets.base import Capability
from suites.workloads import (
    CLIENT_REQUEST_TIMEOUT_S,
    backend_count_sampler,
    note_roles,
    run_clients,
    serving_read,
)


@pytest.mark.guarantee("POOL-BACKEND-CAP", "POOL-MULTIPLEXING")
def test_backend_cap_under_200_clients(target, recorder, clients, profile):
    count, reads = (200, 5) if profile == "quick" else (400, 10)
    all_connected = threading.Barrier(count)

    def client(i: int) -> int:
        session = clients("writer", connect=False, request_timeout=CLIENT_REQUEST_TIMEOUT_S)
        try:
            session.connect()
        finally:
            try:
                all_connected.wait(timeout=120)  # every client holds its connection at once
            except threading.BrokenBarrierError:
                pass
        ok = sum(1 for _ in range(reads) if serving_read(clients, session).ok)
        session.close()
        return ok

    with contextlib.ExitStack() as stack:
        sampler = None
        if target.supports(Capability.DIRECT):
            roles = note_roles(target, recorder)
            sampler = stack.enter_context(backend_count_sampler(clients, roles["writer"]))
        served = run_clients(count, client)
    assert sum(served) > 0, "no read succeeded through the writer endpoint"
    if sampler is not None:
        assert sampler.counts["ok"] > 0, "no backend count could be taken on the writer during the load"
