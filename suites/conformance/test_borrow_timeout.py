"""Borrow timeout: with every backend connection held, a client gets RDS Proxy's error on time.

Which proxy is made to wait:

* a target that can start a sibling proxy (the reference target) gets a second proxy on the same
  cluster with a few backend connections per instance (2 % of max_connections: 2 of PostgreSQL's
  100, 3 of MariaDB's 151) and a 2-second ConnectionBorrowTimeout, so the other suites' proxy keeps
  its own settings;
* any other target whose pool settings are stated (``--max-connections-percent`` and
  ``--borrow-timeout``) and whose instances can be reached directly (so the cap on the writer is
  known, from the writer's own ``max_connections``) is made to wait itself.  Holding the cap takes
  as many sessions as the cap; beyond :data:`MAX_HELD_SESSIONS` the guarantee is reported unknown
  with the figure rather than tried.

Either way, as many clients as the writer's cap hold open transactions (so every backend is
borrowed), then three more send a query each and must receive RDS Proxy's ``Timed-out waiting to
acquire database connection`` (MySQL: error 9501) the borrow timeout later.  If not every holder
got its transaction, the pool was not known to be exhausted, and the guarantee is unknown.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from harness.checkers.borrow import EXPECT_TIMEOUT, EXPECT_TIMEOUT_IF_REFUSED
from harness.plugin.targets import extra_proxy, pool_caps
from harness.targets.base import Capability, Target
from suites.workloads import CLIENT_REQUEST_TIMEOUT_S, note_roles, run_clients

BORROW_TIMEOUT_S = 2.0
POOL = {"max_connections_percent": 2, "connection_borrow_timeout": BORROW_TIMEOUT_S}
MAX_HELD_SESSIONS = 300
"""The most sessions the test holds open to exhaust a pool; a larger cap is not tried."""
WAITERS = 3


@pytest.mark.guarantee("BORROW-TIMEOUT")
def test_borrow_timeout_text_and_timing(target, clients, recorder, check_context, harness_run):
    target.require(Capability.DIRECT)  # the cap is read from the writer itself
    with contextlib.ExitStack() as stack:
        if target.supports(Capability.SIBLING_PROXY):  # a proxy whose pool settings the harness sets
            waited_on = stack.enter_context(extra_proxy(target, pool=POOL))
            stack.callback(lambda: harness_run.store.copy_log(waited_on.log_path, "proxy-borrow-timeout.log"))
            timeout_s = BORROW_TIMEOUT_S
        else:
            target.require(Capability.POOL_SETTINGS)  # the user stated the proxy's pool settings
            waited_on, timeout_s = target, stated_borrow_timeout(target)
        check_context["borrow_timeout_s"] = timeout_s
        writer = note_roles(target, recorder)["writer"]
        cap = (pool_caps(waited_on) or {}).get(writer)
        assert cap, f"the pool cap on the writer {writer!r} is not known"
        if cap > MAX_HELD_SESSIONS:
            pytest.skip(f"the pool cap on the writer is {cap} backend connections: holding {cap} sessions "
                        f"open to exhaust it is more than this test does ({MAX_HELD_SESSIONS})")
        exhaust_then_wait(clients, waited_on, cap, timeout_s)


def stated_borrow_timeout(target: Target) -> float:
    timeout_s = (target.pool_settings or {}).get("connection_borrow_timeout")
    if not timeout_s:
        pytest.skip("the proxy's borrow timeout is not stated (give --borrow-timeout with "
                    "--max-connections-percent)")
    return float(timeout_s)


def exhaust_then_wait(clients: Any, waited_on: Target, cap: int, timeout_s: float) -> None:
    """Hold ``cap`` transactions open through ``waited_on``'s writer endpoint, then send
    :data:`WAITERS` queries that must time out waiting for a backend connection."""
    holders = [clients("writer", target=waited_on) for _ in range(cap)]
    held = sum(1 for h in holders if h.request("hold", f"BEGIN; SELECT {clients.who}", idempotent=False).ok)
    if held < cap:
        pytest.skip(f"only {held} of {cap} transactions could be held open, so the pool was not known "
                    f"to be exhausted")
    request_timeout = max(CLIENT_REQUEST_TIMEOUT_S, 3 * timeout_s)

    def waiter(i: int) -> None:
        # A proxy may borrow at login (then the connect is what times out) or at the first query.
        s = clients("writer", target=waited_on, connect=False, request_timeout=request_timeout,
                    connect_extra={"expect": EXPECT_TIMEOUT_IF_REFUSED})
        s.connect()
        if s.connected:
            s.request("read", f"SELECT {clients.who}", extra={"expect": EXPECT_TIMEOUT})
        s.close()

    run_clients(WAITERS, waiter, timeout=request_timeout * 2 + 30)
    for h in holders:
        h.close()
