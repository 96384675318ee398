"""Borrow timeout: with every backend connection held, a client gets RDS Proxy's error on time.

A second reference proxy on the same cluster is configured with two backend connections per
instance (2 % of max_connections = 100) and a 2-second ConnectionBorrowTimeout.  Two clients hold
open transactions (so both backends are borrowed), then three more send a query each and must
receive ``Timed-out waiting to acquire database connection.`` about 2 seconds later.
"""

from __future__ import annotations

import pytest

from harness.plugin.targets import extra_proxy
from harness.targets.base import Capability
from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, run_clients

BORROW_TIMEOUT_S = 2.0
POOL = {"max_connections_percent": 2, "connection_borrow_timeout": BORROW_TIMEOUT_S}


@pytest.mark.guarantee("BORROW-TIMEOUT")
def test_borrow_timeout_text_and_timing(target, clients, recorder, check_context, harness_run):
    target.require(Capability.SIBLING_PROXY)  # a proxy whose pool settings the harness sets
    check_context["borrow_timeout_s"] = BORROW_TIMEOUT_S
    small = extra_proxy(target, pool=POOL)
    with small:
        try:
            holders = [clients("writer", target=small) for _ in range(2)]
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
