"""Shared fixtures for our own tests.

``no_leaked_processes`` runs around every integration test: any database or proxy process started
by this test process whose command line mentions one of the harness's scratch directories
(:data:`harness.process.SCRATCH_PREFIX`) and that appeared during the test must be gone when the test
ends, or the test fails naming it.  A process is known by its pid and start time, so a pid reused
during the test is not mistaken for one that was already running.  Only this process's descendants
are judged: in a parallel run every worker judges its own tests, never another worker's servers.

The run is parallel (pytest-xdist; ``-n auto --dist loadgroup`` in the project's pytest options):
most of a test's time is spent waiting for servers, so :func:`pytest_xdist_auto_num_workers` starts
two workers per CPU, and none when only unit tests are asked for.  Each worker draws listening ports
from a slice of its own (:data:`harness.process.PORT_SLICE_ENV`, inherited by everything it starts),
and tests that share a module-scoped cluster stay together on one worker (:func:`shared_group`).
``-n 0`` runs everything in this one process, in file order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil
import pytest

from harness import process
from harness.process import PORT_SLICE_ENV, SCRATCH_PREFIX, start_time

WORKERS_PER_CPU = 2
"""Parallel workers per CPU: a test mostly waits (for a server to start, a failover to settle, a
borrow to time out), so two per CPU keep the CPUs busy without making every wait much longer."""
UNIT_TESTS = Path(__file__).parent / "unit"


def pytest_configure(config):
    """Treat SIGTERM like Ctrl-C, so fixtures tear down the servers they started when a test run
    is stopped by a supervisor or a timeout (by default SIGTERM ends pytest without cleanup).
    In a worker of a parallel run, take the worker's own slice of the listening ports."""

    def interrupt(signum, frame):  # signal handler signature
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        os.environ[PORT_SLICE_ENV] = worker_port_slice(workerinput["workerid"], workerinput["workercount"])


def worker_port_slice(worker_id: str, worker_count: int) -> str:
    """The port slice (``K/N``) of the xdist worker ``gwK`` of N."""
    return f"{int(worker_id.removeprefix('gw'))}/{worker_count}"


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own, which always answers
def pytest_xdist_auto_num_workers(config):
    """How many workers ``-n auto`` starts: none when every path asked for is a unit test (they
    take seconds; starting workers would cost more), else :data:`WORKERS_PER_CPU` per CPU.
    $PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set (xdist's own hook reads it)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    here = config.invocation_params.dir
    asked = [(here / arg.split("::", 1)[0]).resolve() for arg in config.args]
    if asked and all(path.is_relative_to(UNIT_TESTS) for path in asked):
        return 0
    return WORKERS_PER_CPU * len(os.sched_getaffinity(0))


def shared_group(item: pytest.Item) -> str | None:
    """The group of tests that must run on the same worker as ``item``, or None if it may run anywhere.

    A test that uses a module- or class-scoped fixture of our own (a cluster shared by the module's
    tests), or is marked ``shares_cluster``, runs with the rest of its module: split across workers,
    each worker would start the module's servers again.  A module fixture with parameters (one cluster
    per engine) makes one group per parameter, which can run on different workers."""
    info = getattr(item, "_fixtureinfo", None)
    params = getattr(getattr(item, "callspec", None), "params", {})
    shared = [] if info is None else sorted(
        name for name in info.names_closure
        if any(d.scope in ("module", "class", "package") and d.baseid for d in info.name2fixturedefs.get(name, ())))
    explicit = item.get_closest_marker("xdist_group")
    if explicit is not None:
        return str(explicit.args[0] if explicit.args else explicit.kwargs.get("name", "default"))
    if not shared and item.get_closest_marker("shares_cluster") is None:
        return None
    module = item.nodeid.split("::", 1)[0]
    variant = ",".join(f"{name}={params[name]}" for name in shared if name in params)
    return f"{module}:{variant}" if variant else module


# -- the parallel run's scheduling ---------------------------------------------------------------
# xdist's own ``loadgroup`` passes a test's group to the scheduler as a suffix of its node id, which
# current pytest no longer lets a plugin change (the groups are then silently ignored).  Instead the
# workers write the groups, by node id, to a file the controller names, and the controller's scheduler
# reads them: the work units are whole groups, and single tests elsewhere.
GROUPS_FILE_KEY = "aurora_harness_groups_file"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """(controller) Tell each worker where the groups go."""
    node.workerinput[GROUPS_FILE_KEY] = os.path.join(_groups_dir(node.config), "groups.json")


def _groups_dir(config) -> str:
    if not hasattr(config, "_aurora_groups_dir"):
        config._aurora_groups_dir = tempfile.mkdtemp(prefix="pytest-groups-")
    return config._aurora_groups_dir


def pytest_unconfigure(config):
    if hasattr(config, "_aurora_groups_dir"):
        shutil.rmtree(config._aurora_groups_dir, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    """(worker) Write the groups of the tests collected, before the collection is reported."""
    path = getattr(session.config, "workerinput", {}).get(GROUPS_FILE_KEY)
    if path is None:
        return
    groups = {item.nodeid: group for item in session.items if (group := shared_group(item)) is not None}
    process.write_private(path, json.dumps(groups), replace=True)  # every worker writes the same


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """(controller) With ``--dist loadgroup``, schedule by the groups the workers wrote."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedClusterScheduling(LoadScopeScheduling):
        """Load scheduling in which a group of :func:`shared_group` is one unit of work, and the
        units with most tests are handed out first."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                try:
                    with open(os.path.join(_groups_dir(config), "groups.json"), encoding="utf-8") as f:
                        self.groups = json.load(f)
                except (OSError, ValueError):
                    self.groups = {}
            return self.groups.get(nodeid, nodeid)

    return SharedClusterScheduling(config, log)


_summaries: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    """Keep the text a test left under the user property ``summary`` (the failpoint matrix leaves its
    table), whichever worker ran it: xdist hands the reports, properties included, to this process."""
    _summaries.extend((report.nodeid, value) for name, value in report.user_properties if name == "summary")


def pytest_terminal_summary(terminalreporter):
    """Print the kept summaries at the end of the run, where a serial and a parallel run both show them."""
    for nodeid, text in _summaries:
        terminalreporter.section(f"summary from {nodeid}", sep="-")
        terminalreporter.write_line(text)


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
