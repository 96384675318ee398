"""Borrow timeout: with every backend connection held, a client gets RDS Proxy's error on time.

A second reference proxy on the same cluster is configured with a few backend connections per
instance (2 % of max_connections: 2 of PostgreSQL's 100, 3 of MariaDB's 151) and a 2-second
ConnectionBorrowTimeout.  As many clients as the writer's cap hold open transactions (so every
backend is borrowed), then three more send a query each and must receive RDS Proxy's
``Timed-out waiting to acquire database connection`` (MySQL: error 9501) about 2 seconds later.
"""

from __future__ import annotations

import pytest

from harness.plugin.targets import extra_proxy, pool_caps
from harness.targets.base import Capability
from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, note_roles, run_clients

BORROW_TIMEOUT_S = 2.0
POOL = {"max_connections_percent": 2, "connection_borrow_timeout": BORROW_TIMEOUT_S}


@pytest.mark.guarantee("BORROW-TIMEOUT")
def test_borrow_timeout_text_and_timing(target, clients, recorder, check_context, harness_run):
    target.require(Capability.SIBLING_PROXY)  # a proxy whose pool settings the harness sets
    target.require(Capability.DIRECT)  # its cap is read from the writer itself
    check_context["borrow_timeout_s"] = BORROW_TIMEOUT_S
    small = extra_proxy(target, pool=POOL)
    with small:
        try:
            writer = note_roles(target, recorder)["writer"]
            cap = (pool_caps(small) or {}).get(writer)
            assert cap, "the small proxy's pool cap on the writer is not known"
            holders = [clients("writer", target=small) for _ in range(cap)]
            for h in holders:
                h.request("hold", f"BEGIN; SELECT {clients.who}", idempotent=False)

            def waiter(i: int) -> None:
                s = clients("writer", target=small, connect=False, request_timeout=CLIENT_REQUEST_TIMEOUT_S)
                s.connect()
                if s.connected:
                    s.request("read", f"SELECT {clients.who}", extra={"expect": "borrow_timeout"})
                s.close()

            run_clients(3, waiter)
            for h in holders:
                h.close()
        finally:
            harness_run.store.copy_log(small.log_path, "proxy-borrow-timeout.log")
