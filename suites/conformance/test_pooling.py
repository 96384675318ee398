"""Pooling: many clients share a capped number of backend connections, transaction by transaction.

The backend count is taken on the writer itself (``pg_stat_activity``, or MySQL's process list with
the connect attributes of the performance schema) while the clients run, when
the target gives direct access; otherwise the checker falls back to the proxy's own gauge.

Every client must be connected and answered: a proxy that keeps clients queued for a backend (a
session-mode pooler) or refuses them does not multiplex, and its failures count against
POOL-MULTIPLEXING (:mod:`harness.checkers.served`), never passed over because some read succeeded.
How long a client waits comes from the target's stated limits: its borrow timeout plus a margin,
or 30 s when none is stated (:func:`~suites.workloads.serve_wait_s`), so a pooler that queues
clients for two minutes is judged in seconds.
"""

from __future__ import annotations

import contextlib
import threading

import pytest

from harness.plugin.targets import pool_caps
from harness.targets.base import Capability
from suites.workloads import (
    MUST_SERVE,
    backend_count_sampler,
    note_roles,
    run_clients,
    serve_wait_s,
    serving_read,
)

CAP_SAMPLE_S = 0.05
"""How often the backend count is taken during the load: a pool that opens one connection too many
may hold it only while the most clients wait, so samples come often enough to see that moment
(every 50 ms is dozens of samples in the second or two the load lasts), at the cost of one
query on the writer each."""


@pytest.mark.guarantee("POOL-BACKEND-CAP", "POOL-MULTIPLEXING", "AVAILABILITY-SERVED")
def test_backend_cap_under_200_clients(target, recorder, clients, profile):
    count, reads = (200, 5) if profile == "quick" else (400, 10)
    wait = serve_wait_s(target)
    all_connected = threading.Barrier(count)

    def client(i: int) -> int:
        session = clients("writer", connect=False, request_timeout=wait, connect_timeout=wait,
                          connect_extra=MUST_SERVE)
        try:
            session.connect()
        finally:
            with contextlib.suppress(threading.BrokenBarrierError):
                # Every client holds its connection at once; the wait is bounded like a connect.
                all_connected.wait(timeout=2 * wait + 5)
        if not session.connected:
            return 0
        ok = sum(1 for _ in range(reads) if serving_read(clients, session, must_serve=True).ok)
        session.close()
        return ok

    with contextlib.ExitStack() as stack:
        sampler = None
        if target.supports(Capability.DIRECT):
            roles = note_roles(target, recorder)
            caps = pool_caps(target)
            if caps:  # the report draws the backend counts against it
                recorder.event("pool_cap", caps)
            sampler = stack.enter_context(backend_count_sampler(clients, roles["writer"], interval_s=CAP_SAMPLE_S))
        run_clients(count, client, timeout=(3 + reads) * wait + 30)
    if sampler is not None:
        assert sampler.counts["ok"] > 0, "no backend count could be taken on the writer during the load"
