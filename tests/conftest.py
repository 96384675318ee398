"""Shared fixtures for our own tests.

``no_leaked_processes`` runs around every integration test: any database or proxy process started
by this test process whose command line mentions a stand-in data directory (prefix
``aurora-harness-``) and that appeared during the test must be gone when the test ends, or the test
fails naming it.
"""

from __future__ import annotations

import os
import signal

import psutil
import pytest

STANDIN_MARK = "aurora-harness-"


def pytest_configure(config):
    """Treat SIGTERM like Ctrl-C, so fixtures tear down the servers they started when a test run
    is stopped by a supervisor or a timeout (by default SIGTERM ends pytest without cleanup)."""

    def interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _standin_pids() -> dict[int, str]:
    """Stand-in processes started by this test process (its descendants): other runs on the same
    machine are none of our business."""
    found: dict[int, str] = {}
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if STANDIN_MARK in cmd:
            found[p.pid] = cmd
    return found


def leaked_since(before: dict[int, str]) -> dict[int, str]:
    """Stand-in processes running now that were not running in ``before``."""
    return {pid: cmd for pid, cmd in _standin_pids().items() if pid not in before}


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
        f"  {pid}: {cmd[:200]}" for pid, cmd in leaked.items())
