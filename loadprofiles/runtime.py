"""What each Locust process of a load run holds, and how a run ends with every history whole.

Importing this module (every profile does, through ``users``) registers the harness's listeners on
Locust's events.  ``import locust`` patches the process with gevent, which is why only the modules of
this package that need Locust import it, and nothing outside ``loadprofiles/`` imports them: the
proxy, pytest and the harness's own commands never run under gevent.  ``aurora-harness load`` starts
Locust as child processes.

Per process, :class:`LoadProcess` (``environment.harness_load``, made at ``test_start``, when a
worker has received the master's options) holds the target, this process's history recorder and
the request reporter.  The master (or the single local runner) also runs the fault plan: the shape
hands it fault actions, each carried out in a greenlet of its own so the shape keeps ticking.

Ending: Locust's master fires ``test_stop`` before its workers' last statistics arrive, and on quit
waits only half a second for them.  So when the master starts stopping (``test_stopping``) it first
heals any fault still active, then sends every worker :data:`FINISH`; a worker stops its users
(each finishes its request within ``--stop-timeout``, so its history ends with completions), flushes
its statistics to the master and answers :data:`FINAL` with its history file and record count.
The master waits for every worker's answer (at most :data:`FINAL_WAIT_S`), and on ``quitting``
writes the manifest (:mod:`loadprofiles.histories`) naming any worker that did not answer; then,
unless ``--skip-verdicts``, it judges the merged histories and sets Locust's exit code to the
verdict's (:mod:`loadprofiles.verdicts`).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from harness.clients.address import Address, ProcessIds
from harness.clients.client import Client
from harness.history import Recorder
from harness.runstore import write_json_atomically
from harness.targets.base import Target, TargetError
from loadprofiles import histories
from loadprofiles import options as load_options
from loadprofiles.bridge import RequestReporter
from loadprofiles.stages import FaultAction

log = logging.getLogger("aurora-harness.load")

FINISH = "aurora_harness_finish"
"""Master to workers: stop your users and send your last report."""
FINAL = "aurora_harness_final"
"""Worker to master: my users are stopped; here are my history file and its record count."""
HISTORY_PIECE = "aurora_harness_history_piece"
"""Worker to master, before FINAL, from a worker that does not share the master's file system: one
piece of its history (:func:`loadprofiles.histories.history_pieces`)."""
FINAL_WAIT_S = 60.0
"""How long the master waits for the workers' last reports."""
DEFAULT_STOP_TIMEOUT_S = 10.0
"""Locust's --stop-timeout when none is given: how long a stopping user may take to finish its request."""
WRITE_ID_PROCESS_BITS = 22
"""Write ids are ``(random process nonce << 40) | counter``: unique across processes and machines."""


def _role(environment: Any) -> str:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "local"


class LoadProcess:
    """One Locust process's part of a load run: target, history, reporter, write ids, faults."""

    def __init__(self, environment: Any, target: Target, run_dir: str) -> None:
        self.environment = environment
        self.target = target
        self.role = _role(environment)
        self.tag = histories.process_tag(self.role)
        path = histories.process_history_path(run_dir, self.tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.recorder_path = path
        self.recorder = Recorder(path)
        self.shipments = histories.Shipments(run_dir)
        """Histories of workers that do not share this file system (the master's)."""
        self.process_ids = ProcessIds(prefix=f"{self.tag}-c")
        self.reporter = RequestReporter(environment.events.request.fire, target.engine)
        self.addresses = {"writer": Address.of(target, "writer")}
        if target.reader_endpoints:
            self.addresses["reader"] = Address.of(target, "reader")
        self._nonce = secrets.randbits(WRITE_ID_PROCESS_BITS)
        self._writes = itertools.count(1)
        self._faults: dict[int, Any] = {}
        self._fault_greenlets: list[Any] = []
        self.fault_errors: list[str] = []
        self.finals: dict[str, dict[str, Any]] = {}
        self.missing: list[str] = []
        self.initial_writer: str | None = None
        self.secret_logins: Any = None
        """:class:`loadprofiles.secret_logins.SecretLogins` when the profile's users follow the secret."""
        self.cpu_at_start = time.process_time()
        """This process's CPU time when the load began: the manifest's ``cpu_s`` is what the run cost it."""

    def address(self, endpoint: str) -> Address:
        """The writer's or the reader endpoint's address (the writer's when the target has no reader)."""
        return self.addresses.get(endpoint) or self.addresses["writer"]

    def next_write_id(self) -> int:
        return (self._nonce << 40) | next(self._writes)

    def records(self) -> int:
        return len(self.recorder.history())

    # -- faults (master or local runner only) -----------------------------------------------------
    def carry_out(self, action: FaultAction) -> None:
        """Start or heal one planned fault in a greenlet of its own (a failover takes seconds)."""
        self._fault_greenlets.append(gevent.spawn(self._carry_out, action))

    def _carry_out(self, action: FaultAction) -> None:
        from harness.faults.registry import fault_from_spec

        name = action.plan.spec["name"]
        try:
            if action.kind == "start":
                fault = fault_from_spec(dict(action.plan.spec))
                self._faults[action.index] = fault
                log.info("starting fault %s", name)
                fault.start(self.target, self.recorder)  # a failover records its promotion instant itself
            else:
                fault = self._faults.pop(action.index, None)
                if fault is not None:
                    log.info("healing fault %s", name)
                    fault.stop()
        except Exception as e:  # noqa: BLE001 - a fault that cannot be done makes its verdicts unknown
            self.fault_errors.append(f"{name} ({action.kind}): {type(e).__name__}: {e}")
            self.recorder.event("fault_not_carried_out", {"fault": name, "action": action.kind,
                                                          "error": f"{type(e).__name__}: {e}"[:500]})
            log.error("fault %s could not be carried out (%s): %s", name, action.kind, e)

    def heal_all(self) -> None:
        """Wait for fault actions under way, then heal every fault still active."""
        gevent.joinall(self._fault_greenlets)
        for index in sorted(self._faults):
            fault = self._faults.pop(index)
            try:
                fault.stop()
            except Exception as e:  # noqa: BLE001
                self.fault_errors.append(f"{fault.name} (heal at the end): {type(e).__name__}: {e}")

    def close(self) -> None:
        self.recorder.close()


def load_process(environment: Any) -> LoadProcess:
    """This process's :class:`LoadProcess` (made at ``test_start``)."""
    load = getattr(environment, "harness_load", None)
    if load is None:
        raise RuntimeError("the harness's load process is not set up: the test has not started")
    return load


def default_run_dir(engine: str, now: _dt.datetime | None = None) -> str:
    stamp = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return os.path.join("runs", f"{stamp}-load-{engine}")


# -- listeners ----------------------------------------------------------------------------------------
@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_kw: Any) -> None:
    load_options.add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(FINAL, _on_final)
        runner.register_message(HISTORY_PIECE, _on_history_piece)
    elif isinstance(runner, WorkerRunner):
        runner.register_message(FINISH, _on_finish)
        return
    ns = environment.parsed_options
    if ns is None:
        return
    try:  # fail before any user starts, with one line
        target = load_options.build_target(ns)
    except TargetError as e:
        sys.stderr.write(f"aurora-harness: {e}\n")
        sys.exit(2)
    refusal = _profile_refusal(ns, target)
    if refusal is not None:
        sys.stderr.write(f"aurora-harness: {refusal}\n")
        sys.exit(2)
    if not ns.run_dir:
        ns.run_dir = default_run_dir(target.engine)
    if not environment.stop_timeout:
        # Locust's default kills users mid-request when the run ends; let each finish the request it is
        # in, so the history ends with completions (the master hands this to its workers).
        environment.stop_timeout = DEFAULT_STOP_TIMEOUT_S


def _profile(ns: Any) -> Any:
    """The profile the locustfile is (None for a locustfile of the user's own)."""
    from loadprofiles.profiles import PROFILES

    locustfile = getattr(ns, "locustfile", None)
    return PROFILES.get(Path(locustfile).stem) if isinstance(locustfile, str) else None


def _profile_refusal(ns: Any, target: Target) -> str | None:
    """Why the profile named by the locustfile cannot run against ``target`` (:meth:`Profile.refusal`),
    None for any other file."""
    profile = _profile(ns)
    return profile.refusal(target) if profile is not None else None


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    if getattr(environment, "harness_load", None) is not None:
        return
    ns = environment.parsed_options
    target = load_options.build_target(ns)
    load = LoadProcess(environment, target, ns.run_dir or default_run_dir(target.engine))
    environment.harness_load = load
    profile = _profile(ns)
    if load.role != "master" and profile is not None and profile.follows_secret:
        # Before any user starts, so "old" is the login from before the run's rotation.
        from loadprofiles.secret_logins import SecretLogins

        load.secret_logins = SecretLogins.of(target)
    if load.role != "worker":
        from loadprofiles.verdicts import writer_now

        load.initial_writer = writer_now(target)
        log.info("aurora-harness: %s target (%s), run directory %s", target.kind, target.engine, ns.run_dir)
    if load.role != "master":
        _ensure_table(load)


def _ensure_table(load: LoadProcess) -> None:
    """The writes table; not recorded (preparation, not workload), and harmless when it exists."""
    client = Client(Recorder(), "setup", load.address("writer"), connect_timeout=15, op_timeout=30)
    try:
        if client.connect().ok:
            client.setup()
    except Exception as e:  # noqa: BLE001 - another process made it at the same moment, or the writer is down
        log.warning("could not create the writes table (%s): writes will show why", type(e).__name__)
    finally:
        client.close()


@events.test_stopping.add_listener
def _on_test_stopping(environment: Any, **_kw: Any) -> None:
    load = getattr(environment, "harness_load", None)
    if load is None or load.role == "worker":
        return
    load.heal_all()
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    expected = {c.id for c in runner.clients.all}
    marker = histories.leave_marker(load.run_dir)
    runner.send_message(FINISH, {"marker": marker, "boot_id": histories.boot_id()})
    deadline = time.monotonic() + FINAL_WAIT_S + (environment.stop_timeout or 0)
    while not expected <= set(load.finals) and time.monotonic() < deadline:
        gevent.sleep(0.1)
    load.missing = sorted(expected - set(load.finals))
    if load.missing:
        log.error("no last report from worker(s) %s within %.0f s", ", ".join(load.missing), FINAL_WAIT_S)


def _on_finish(environment: Any, msg: Any, **_kw: Any) -> None:
    """On a worker: stop the users, flush Locust's statistics, announce the history."""
    runner = environment.runner
    runner.stop()
    load = getattr(environment, "harness_load", None)
    if hasattr(runner, "_send_stats"):
        runner._send_stats()  # the statistics of the last requests, before the master writes its reports
    if load is None:
        runner.send_message(FINAL, {"tag": None, "records": 0})
        return
    report: dict[str, Any] = {"tag": load.tag, "records": load.records(), "boot_id": histories.boot_id()}
    data = msg.data or {}
    if not histories.sees_marker(load.run_dir, data.get("marker", "")):
        # Another machine (or another file system): the history travels with the messages.
        def send(seq: int, piece: str) -> None:
            runner.send_message(HISTORY_PIECE, {"tag": load.tag, "seq": seq, "text": piece})
            gevent.sleep(0)  # let the messages go out between pieces

        pieces, sha256 = histories.ship(load.recorder_path, send)
        report.update(shipped=pieces, sha256=sha256)
    report["mono_ns"] = time.monotonic_ns()
    runner.send_message(FINAL, report)


def _on_history_piece(environment: Any, msg: Any, **_kw: Any) -> None:
    load = getattr(environment, "harness_load", None)
    if load is not None:
        data = msg.data or {}
        load.shipments.add(str(data.get("tag")), int(data.get("seq", -1)), str(data.get("text", "")))


def _on_final(environment: Any, msg: Any, **_kw: Any) -> None:
    received = time.monotonic_ns()
    load = getattr(environment, "harness_load", None)
    if load is None:  # a worker that never started (more workers than users) answers with no history
        return
    report = dict(msg.data or {})
    if report.get("shipped") is not None and report.get("tag"):
        problem = load.shipments.finish(report["tag"], int(report["shipped"]), str(report.get("sha256")))
        if problem:
            report["shipment_problem"] = problem
    if report.get("boot_id") not in (None, histories.boot_id()) and report.get("mono_ns") is not None:
        report["clock_offset_ns"] = received - int(report["mono_ns"])
    report.pop("mono_ns", None)
    load.finals[msg.node_id] = report


@events.quitting.add_listener
def _on_quitting(environment: Any, **_kw: Any) -> None:
    load = getattr(environment, "harness_load", None)
    if load is None:
        return
    load.close()
    if load.role == "worker":
        return
    ns = environment.parsed_options
    run_dir = Path(ns.run_dir)
    manifest = {"role": load.role, "tag": load.tag, "workers": load.finals, "missing_workers": load.missing,
                "wait_s": FINAL_WAIT_S, "fault_errors": load.fault_errors, "initial_writer": load.initial_writer,
                "requests": environment.stats.total.num_requests, "failures": environment.stats.total.num_failures,
                "cpu_s": round(time.process_time() - load.cpu_at_start, 3)}
    histories.remove_markers(run_dir)
    write_json_atomically(run_dir / histories.MANIFEST, manifest)
    _final_stats_csv(environment)
    if getattr(ns, "skip_verdicts", False):
        return
    from loadprofiles.verdicts import judge_and_print

    profile_name = Path(ns.locustfile).stem if isinstance(getattr(ns, "locustfile", None), str) else "custom"
    environment.process_exit_code = judge_and_print(run_dir, load.target, profile_name)


def _final_stats_csv(environment: Any) -> None:
    """Write ``<csv prefix>_stats.csv`` once more with the final statistics: Locust's writer refreshes it
    every second and does not write it again at the end, so its last second (with the workers' last
    reports) would be missing."""
    import csv

    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix:
        return
    with open(f"{prefix}_stats.csv", "w", newline="", encoding="utf-8") as fh:
        StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(fh))
