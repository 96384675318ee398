"""Network faults between proxy and writer: a silent blackhole and a loud connection reset.

On the reference target a second proxy is started on the same cluster with a TCP relay in front of
every instance, so the fault damages only that proxy's path to the writer and no other suite sees
it.  Other targets need the ``network_faults`` capability themselves, or the guarantee is unknown.
Only the silent fault is judged by NETFAULT-SILENT-DETECTED (a reset is noticed by construction);
the loud case runs the same workload so the two histories can be compared.

Clients give up on a request only *after* the guarantee's threshold (plus a margin), so a detection
within the threshold is the proxy's doing, never the client's own timeout; and the fault lasts that
long too.  Full profile only.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from harness.plugin.targets import extra_proxy
from harness.pytest_plugin import Faults
from harness.targets.base import Capability
from suites.chaos.test_failover import mixed_load, run_table
from suites.workloads import write_identified

MARGIN_S = 5.0
RECOVERY_REQUEST_TIMEOUT_S = 5.0


RECOVERY_S = 30.0


@pytest.mark.profile("full")
@pytest.mark.parametrize("fault_name", [
    pytest.param("blackhole", marks=pytest.mark.guarantee("NETFAULT-SILENT-DETECTED")),
    "reset_peer",  # loud: no guarantee measures it, so the check is recovery below
])
def test_netfault_between_proxy_and_writer(target, clients, recorder, harness_run, fault_name):
    with contextlib.ExitStack() as stack:
        if not target.supports(Capability.NETWORK_FAULTS) and target.supports(Capability.SIBLING_PROXY):
            faulty = stack.enter_context(extra_proxy(target, relays=True))
            stack.callback(lambda: harness_run.store.copy_log(faulty.log_path, f"proxy-netfault-{fault_name}.log"))
        else:
            faulty = target
        faulty.require(Capability.NETWORK_FAULTS)
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
