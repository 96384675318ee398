"""Network faults between proxy and writer: a silent failover, a silent blackhole and a loud reset.

On the reference target a second proxy is started on the same cluster with a TCP relay in front of
every instance, so the fault damages only that proxy's path to the writer and no other suite sees
it.  Other targets need the ``network_faults`` capability themselves, or the guarantee is unknown.
Only the silent fault is judged by NETFAULT-SILENT-DETECTED (a reset is noticed by construction);
the loud case runs the same workload so the two histories can be compared.

Clients give up on a request only *after* the guarantee's threshold (plus a margin), so a detection
within the threshold is the proxy's doing, never the client's own timeout; and the fault lasts that
long too.  The blackhole and the reset are in the full profile only.

The silent failover is in both profiles: the writer goes silent (its relay holds every packet and
closes nothing, as a frozen host or a cut link does), then a reader is promoted.  Nothing tells the
proxy: no socket closes, no backend error hints at a failover, so only its own polling can find the
new writer, and FAILOVER-WRITE-GAP's bound from the promotion separates a proxy that polls every
second from one that polls every ten.  Lingering writes are in flight when the writer goes silent,
so the durability guarantees are judged on writes whose replies never came.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from harness.plugin.targets import extra_proxy
from harness.pytest_plugin import Faults
from harness.targets.base import Capability
from suites.chaos.test_failover import final_read, mixed_load, run_table
from suites.workloads import note_roles, write_identified

MARGIN_S = 5.0
RECOVERY_REQUEST_TIMEOUT_S = 5.0


RECOVERY_S = 30.0

SILENT_BEFORE_PROMOTION_S = 5.0
"""How long the writer is silent before a reader is promoted: a proxy that polls every second, with
a few seconds' poll timeout, has given the silent writer up by then."""
SILENT_AFTER_PROMOTION_S = 6.0


def faulty_proxy(stack: contextlib.ExitStack, target, harness_run, name: str):
    """The target itself when it offers network faults, else a sibling proxy behind relays (its log
    kept in the run as ``proxy-netfault-<name>.log``); Unsupported when neither can be had."""
    if not target.supports(Capability.NETWORK_FAULTS) and target.supports(Capability.SIBLING_PROXY):
        faulty = stack.enter_context(extra_proxy(target, relays=True))
        stack.callback(lambda: harness_run.store.copy_log(faulty.log_path, f"proxy-netfault-{name}.log"))
    else:
        faulty = target
    faulty.require(Capability.NETWORK_FAULTS)
    return faulty


@pytest.mark.guarantee("FAILOVER-WRITE-GAP", "DURABILITY-NO-LOST-ACK", "DURABILITY-NO-FAILED-VISIBLE",
                       "DURABILITY-NO-DUPLICATE")
def test_silent_failover(target, clients, recorder, harness_run):
    target.require(Capability.FAILOVER)
    with contextlib.ExitStack() as stack:
        faulty = faulty_proxy(stack, target, harness_run, "silent-failover")
        faults = Faults(faulty, recorder)
        stack.callback(faults.heal_all)
        table = stack.enter_context(run_table(clients, "harness_silent_failover"))
        note_roles(target, recorder)
        stop = threading.Event()
        loops = mixed_load(clients, table, stop, readers=0, target=faulty)
        try:
            time.sleep(1.0)  # load before the fault: a workload phase, not a wait for state
            silence = faults.start("blackhole")
            time.sleep(SILENT_BEFORE_PROMOTION_S)
            faults.failover()
            note_roles(target, recorder)
            time.sleep(SILENT_AFTER_PROMOTION_S)
            silence.stop()
        finally:
            stop.set()
            for loop in loops:
                loop.join(timeout=60)
        final_read(clients, table)


@pytest.mark.profile("full")
@pytest.mark.parametrize("fault_name", [
    pytest.param("blackhole", marks=pytest.mark.guarantee("NETFAULT-SILENT-DETECTED")),
    "reset_peer",  # loud: no guarantee measures it, so the check is recovery below
])
def test_netfault_between_proxy_and_writer(target, clients, recorder, harness_run, fault_name):
    with contextlib.ExitStack() as stack:
        faulty = faulty_proxy(stack, target, harness_run, fault_name)
        limit = harness_run.catalogue["NETFAULT-SILENT-DETECTED"].threshold + MARGIN_S
        faults = Faults(faulty, recorder)
        stack.callback(faults.heal_all)
        table = stack.enter_context(run_table(clients, f"harness_netfault_{fault_name}"))
        stop = threading.Event()
        loops = mixed_load(clients, table, stop, readers=0, target=faulty,
                             request_timeout=limit)
        try:
            time.sleep(1.0)  # load before the fault: a workload phase, not a wait for state
            fault = faults.start(fault_name)
            time.sleep(limit)
            fault.stop()
        finally:
            stop.set()
            for loop in loops:
                loop.join(timeout=60)
        assert writes_resume(clients, faulty, table), \
            f"no write through the proxy succeeded within {RECOVERY_S:.0f}s of healing the {fault_name} fault"


def writes_resume(clients, faulty, table: str) -> bool:
    """Poll (with a deadline) for one successful write through the damaged proxy after the heal."""
    deadline = time.monotonic() + RECOVERY_S
    n = 10**9
    while time.monotonic() < deadline:
        s = clients("writer", target=faulty, request_timeout=RECOVERY_REQUEST_TIMEOUT_S)
        n += 1
        ok = s.connected and write_identified(clients, s, table, n).ok
        s.close()
        if ok:
            return True
        time.sleep(0.5)
    return False
