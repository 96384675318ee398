"""Network faults between proxy and writer: a silent blackhole must be detected, a loud reset too.

Needs relays between the proxy and its instances (``network_faults`` capability); targets without
them report the guarantee as unknown.  Full profile only.
"""

from __future__ import annotations

import threading
import time

import pytest

from harness.history import Phase
from harness.targets.base import Capability
from suites.chaos.test_failover import _table, mixed_load


@pytest.mark.profile("full")
@pytest.mark.parametrize("mode", ["blackhole", "reset"])
@pytest.mark.guarantee("NETFAULT-SILENT-DETECTED")
def test_netfault_between_proxy_and_writer(target, pg_clients, recorder, mode):
    target.require(Capability.NETWORK_FAULTS)
    table = f"harness_netfault_{mode}"
    _table(pg_clients, table)
    stop = threading.Event()
    threads = mixed_load(pg_clients, table, stop, readers=0)
    try:
        time.sleep(1.0)
        recorder.fault(mode, Phase.START, {"endpoint": "writer"})
        target.network_fault(mode)  # type: ignore[attr-defined]  # provided by targets with relays
        time.sleep(10.0)
        target.heal_network()  # type: ignore[attr-defined]
        recorder.fault(mode, Phase.END, {"endpoint": "writer"})
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
