"""Instance crashes: the writer dies and comes back; a reader dies and comes back.

Full profile only.  Acknowledged writes must survive a writer crash and restart, and the writes the
crash cut mid-statement (lingering writers keep some in flight, some past their COMMIT) must not be
applied twice; reads through the reader endpoint must never reach the writer while a reader is down,
and the writer endpoint only the writer, through the crash and after the restart.
"""

from __future__ import annotations

import threading
import time

import pytest

from harness.targets.base import Capability
from suites.chaos.test_failover import final_read, mixed_load, run_table
from suites.workloads import note_roles


@pytest.mark.profile("full")
@pytest.mark.guarantee("DURABILITY-NO-LOST-ACK", "DURABILITY-NO-FAILED-VISIBLE", "DURABILITY-NO-DUPLICATE",
                       "ROUTE-WRITER-ENDPOINT")
def test_writer_crash_and_restart(target, clients, faults, recorder):
    target.require(Capability.CRASH)
    with run_table(clients, "harness_crash_writes") as table:
        roles = note_roles(target, recorder)
        stop = threading.Event()
        loops = mixed_load(clients, table, stop, readers=0)
        try:
            time.sleep(2.0)
            faults.crash(roles["writer"])
            time.sleep(2.0)
            faults.restart(roles["writer"])
            time.sleep(3.0)
        finally:
            stop.set()
            for loop in loops:
                loop.join(timeout=60)
        final_read(clients, table)


@pytest.mark.profile("full")
@pytest.mark.guarantee("ROUTE-READER-ONLY", "ROUTE-WRITER-ENDPOINT")
def test_reader_crash_and_restart(target, clients, faults, recorder):
    target.require(Capability.CRASH)
    with run_table(clients, "harness_reader_crash_writes") as table:
        roles = note_roles(target, recorder)
        victim = roles["readers"][0]
        stop = threading.Event()
        loops = mixed_load(clients, table, stop, writers=1, lingerers=0)
        try:
            time.sleep(2.0)
            faults.crash(victim)
            time.sleep(4.0)
            faults.restart(victim)
            time.sleep(2.0)
        finally:
            stop.set()
            for loop in loops:
                loop.join(timeout=60)
