"""Shared fixtures for our own tests.

``no_leaked_processes`` runs around every integration test: any database or proxy process started
by this test process whose command line mentions one of the harness's scratch directories
(:data:`harness.process.SCRATCH_PREFIX`) and that appeared during the test must be gone when the test
ends, or the test fails naming it.  A process is known by its pid and start time, so a pid reused
during the test is not mistaken for one that was already running.
"""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from harness.process import SCRATCH_PREFIX, start_time


def pytest_configure(config):
    """Treat SIGTERM like Ctrl-C, so fixtures tear down the servers they started when a test run
    is stopped by a supervisor or a timeout (by default SIGTERM ends pytest without cleanup)."""

    def interrupt(signum, frame):  # signal handler signature
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _standin_pids() -> dict[tuple[int, int | None], str]:
    """Stand-in processes started by this test process (its descendants), by (pid, start time):
    other runs on the same machine are none of our business."""
    found: dict[tuple[int, int | None], str] = {}
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if SCRATCH_PREFIX in cmd:
            found[(p.pid, start_time(p.pid))] = cmd
    return found


def leaked_since(before: dict[tuple[int, int | None], str]) -> dict[tuple[int, int | None], str]:
    """Stand-in processes running now that were not running in ``before``."""
    return {key: cmd for key, cmd in _standin_pids().items() if key not in before}


@pytest.fixture(autouse=True)
def no_leaked_processes(request):
    if request.node.get_closest_marker("integration") is None:
        yield
        return
    before = _standin_pids()
    yield
    # Module- or session-scoped clusters legitimately outlive a single test.
    if request.node.get_closest_marker("shares_cluster") is not None:
        return
    leaked = leaked_since(before)
    assert not leaked, "processes left running after the test:\n" + "\n".join(
        f"  {pid}: {cmd[:200]}" for (pid, _), cmd in leaked.items())
