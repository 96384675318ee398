"""Locust load runs end to end: ``aurora-harness load`` and plain ``locust -f loadprofiles/<profile>.py``.

Each run is a few seconds of load by a handful of users against the reference target (a stand-in
behind the reference proxy, started and stopped by the command), in child processes: Locust patches
its process with gevent, and this one must stay unpatched.  A run must leave the verdict table, the
run directory (Locust's CSV and HTML, every process's history, the merged history, the manifest,
``results.json``), and histories that account for every request Locust counted: the master's total
equals the client requests in the merged history, which shows the last reports of every worker
were waited for.  The two-worker run must reach the same verdict set as the single-process run, and
a proxy made to leak session state (a failpoint) must be caught by the same load.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.history import History
from harness.process import free_port
from loadprofiles import histories

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-c", "from harness.cli import main; main()"]
LOCUST = [sys.executable, "-m", "locust"]
STEADY_GUARANTEES = {"ROUTE-WRITER-ENDPOINT", "ROUTE-READER-ONLY", "DURABILITY-NO-LOST-ACK",
                     "ISOLATION-NO-SESSION-LEAK"}


def load(run_dir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "load", "--target", "reference", "--users", "6", "--run-time", "5s",
                           "--run-dir", str(run_dir), *args], check=False, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_load_run(done: subprocess.CompletedProcess, run_dir: Path, expected: set[str]) -> dict[str, str]:
    """The run certified, its files complete and its history accounting for every Locust request;
    returns each guarantee's validity."""
    assert done.returncode == 0, f"load ended {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "CERTIFIED" in done.stdout and "guarantee" in done.stdout
    for gid in expected:
        assert any(line.startswith(gid) and " TRUE " in line for line in done.stdout.splitlines()), gid
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust.html", "results.json", "target.json",
                 histories.MANIFEST, histories.MERGED, "report.html"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "complete"
    valid = {gid: g["valid"] for gid, g in results["guarantees"].items()}
    assert set(valid) == expected and set(valid.values()) == {"true"}, valid

    manifest = json.loads((run_dir / histories.MANIFEST).read_text())
    assert manifest["missing_workers"] == [] and manifest["fault_errors"] == []
    assert histories.check_manifest(run_dir) == []
    with open(run_dir / "locust_stats.csv", newline="") as fh:
        aggregated = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    merged = History.load(run_dir / histories.MERGED)
    requests = [op for op in merged.completed() if not str(op.process).startswith("final-read")]
    assert int(aggregated["Request Count"]) == manifest["requests"] == len(requests) > 50
    invoked = [op for op in merged.ops(type="invoke") if not str(op.process).startswith("final-read")]
    assert len(invoked) == len(requests), "every request the users started was completed in the history"
    assert int(aggregated["Failure Count"]) == sum(1 for op in requests if op.type.value != "ok")
    assert merged.ops(f="final_read", type="ok"), "the durability checkers' final read"
    return valid


@pytest.mark.slow
@pytest.mark.postgres
def test_steady_load_on_postgres_and_two_workers_give_the_same_verdicts(tmp_path) -> None:
    single = tmp_path / "single"
    valid_single = assert_load_run(load(single, "--profile", "steady", "--engine", "postgres"), single,
                                   STEADY_GUARANTEES)
    assert [p.name.split("-")[0] for p in histories.history_files(single)] == ["final", "local"]

    workers = tmp_path / "workers"
    done = load(workers, "--profile", "steady", "--engine", "postgres", "--workers", "2")
    assert assert_load_run(done, workers, STEADY_GUARANTEES) == valid_single
    manifest = json.loads((workers / histories.MANIFEST).read_text())
    assert manifest["role"] == "master" and len(manifest["workers"]) == 2
    roles = sorted(p.name.split("-")[0] for p in histories.history_files(workers))
    assert roles == ["final", "master", "worker", "worker"]
    merged = History.load(workers / histories.MERGED)
    by_worker = {str(op.process).split("-c")[0] for op in merged.completed() if str(op.process).startswith("worker")}
    assert len(by_worker) == 2, "both workers' requests are in the merged history"


@pytest.mark.slow
@pytest.mark.mysql
def test_steady_load_on_mysql(tmp_path) -> None:
    run_dir = tmp_path / "run"
    assert_load_run(load(run_dir, "--profile", "steady", "--engine", "mysql"), run_dir, STEADY_GUARANTEES)


@pytest.mark.slow
@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres),
                                    pytest.param("mysql", marks=pytest.mark.mysql)])
def test_failover_under_load(tmp_path, engine: str) -> None:
    run_dir = tmp_path / "run"
    done = load(run_dir, "--profile", "failover_under_load", "--engine", engine, "--users", "8",
                "--run-time", "8s")
    assert_load_run(done, run_dir, STEADY_GUARANTEES | {"FAILOVER-WRITE-GAP", "FAILOVER-READ-ERRORS"})
    merged = History.load(run_dir / histories.MERGED)
    phases = json.loads((run_dir / "load-phases.json").read_text())
    assert [p["name"] for p in phases] == ["before", "during failover", "after"]
    assert sum(p["requests"] for p in phases) == len([op for op in merged.completed()
                                                      if not str(op.process).startswith("final-read")])
    assert "during failover" in done.stdout  # the phases table
    (window,) = merged.fault_windows("failover")
    assert len(merged.events("new_writer")) == 1, "one promotion instant: the watcher's, or the fault's after it"
    assert window.end is not None and window.end_op.params["new_writer"] != window.params["old_writer"]
    writes_after = [op for op in merged.ops(f="write", type="ok") if op.time > window.end]
    assert writes_after and {op.node for op in writes_after} == {window.end_op.params["new_writer"]}


@pytest.mark.slow
@pytest.mark.postgres
def test_network_fault_under_load_blackholes_the_writer_from_the_locust_master(tmp_path) -> None:
    """The relays run in the ``load`` process and the fault in the Locust process: the blackhole goes
    through the relay desk, holds the writer's traffic until the proxy gives up on it (connection
    errors during the window, none after the heal), and the detection delay is judged."""
    run_dir = tmp_path / "run"
    done = load(run_dir, "--profile", "network_fault_under_load", "--engine", "postgres", "--users", "8",
                "--run-time", "20s")
    assert_load_run(done, run_dir, STEADY_GUARANTEES | {"NETFAULT-SILENT-DETECTED"})
    merged = History.load(run_dir / histories.MERGED)
    (window,) = merged.fault_windows("blackhole")
    writer = next(i["id"] for i in json.loads((run_dir / "target.json").read_text())["instances"]
                  if i["role"] == "writer")
    assert window.end is not None and window.params["instance"] == writer
    phases = {p["name"]: p for p in json.loads((run_dir / "load-phases.json").read_text())}
    assert phases["during blackhole"]["failures"] > 0, "the proxy ended requests on the silent writer"
    assert phases["after"]["failures"] == 0 and phases["after"]["requests"] > 0, "healed: the load goes on"
    verdict = json.loads((run_dir / "results.json").read_text())["guarantees"]["NETFAULT-SILENT-DETECTED"]
    assert "1 silent faults measured" in verdict["reason"], verdict["reason"]


ROTATION_GUARANTEES = {"ROTATION-SESSIONS-KEPT", "ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD"}


@pytest.mark.slow
@pytest.mark.postgres
def test_rotation_under_load_rotates_the_secret_its_users_follow(tmp_path) -> None:
    """The master rotates the secret; the users of the Locust process read it themselves: held
    sessions from before the rotation, logins with what AWSCURRENT holds, logins with the old login."""
    run_dir = tmp_path / "run"
    done = load(run_dir, "--profile", "rotation_under_load", "--engine", "postgres", "--users", "10",
                "--run-time", "15s")
    assert_load_run(done, run_dir, STEADY_GUARANTEES | ROTATION_GUARANTEES)
    merged = History.load(run_dir / histories.MERGED)
    assert len(merged.fault_windows("rotate_secret")) == 1
    steps = [op.value for op in merged.events("rotation_step")]
    assert steps == ["createSecret", "setSecret", "testSecret", "finishSecret"], steps
    finish = merged.events("rotation_step")[-1].time
    logins = {label: [(inv, done) for inv, done in merged.pairs() if inv.f == "connect"
                      and (inv.extra or {}).get("login") == label and inv.time > finish + 1_000_000_000]
              for label in ("new", "old")}
    assert logins["new"] and all(d is not None and d.type.value == "ok" for _, d in logins["new"])
    assert logins["old"] and all(d is not None and d.type.value == "fail" for _, d in logins["old"]), \
        "a second after finishSecret the old password is refused"


@pytest.mark.slow
@pytest.mark.mysql
def test_a_proxy_that_reads_its_secrets_once_is_caught_under_load(tmp_path) -> None:
    run_dir = tmp_path / "run"
    done = load(run_dir, "--profile", "rotation_under_load", "--engine", "mysql", "--users", "10",
                "--run-time", "15s", "--proxy-setting", "testing.failpoint=secrets_read_once")
    assert done.returncode == 1, f"load ended {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    verdicts = json.loads((run_dir / "results.json").read_text())["guarantees"]
    assert verdicts["ROTATION-NEW-LOGINS"]["valid"] == "false", verdicts["ROTATION-NEW-LOGINS"]
    assert verdicts["ROTATION-OLD-PASSWORD"]["valid"] == "false", verdicts["ROTATION-OLD-PASSWORD"]
    # A held session may be dropped too when its pool must open a backend (the failpoint's may_also_break).
    assert verdicts["ROTATION-SESSIONS-KEPT"]["valid"] in ("true", "false")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_proxy_that_leaks_session_state_is_caught_under_load(tmp_path) -> None:
    run_dir = tmp_path / "run"
    done = load(run_dir, "--profile", "steady", "--engine", "postgres", "--run-time", "4s",
                "--proxy-setting", "testing.failpoint=leak_session_state")
    assert done.returncode == 1, f"load ended {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "NOT CERTIFIED: 1 false (ISOLATION-NO-SESSION-LEAK)" in done.stdout
    verdicts = json.loads((run_dir / "results.json").read_text())["guarantees"]
    assert verdicts["ISOLATION-NO-SESSION-LEAK"]["valid"] == "false"
    assert verdicts["ISOLATION-NO-SESSION-LEAK"]["evidence"], "the leaking reads are the evidence"


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_that_do_not_share_the_masters_directory_send_their_histories(tmp_path) -> None:
    """Plain Locust, as over several machines: the master and its workers run in different directories
    and the run directory is relative, so the workers write theirs elsewhere and must send it."""
    state, master_dir, worker_dir = tmp_path / "state", tmp_path / "master", tmp_path / "workers"
    master_dir.mkdir()
    worker_dir.mkdir()
    harness = [*CLI, "--state-dir", str(state)]
    up = subprocess.run([*harness, "up", "--engine", "postgres", "--readers", "1"], capture_output=True, text=True,
                        timeout=300, check=False, stdin=subprocess.DEVNULL)
    assert up.returncode == 0, up.stderr[-2000:]
    locustfile = str(Path(histories.__file__).parent / "steady.py")
    env = {**os.environ, "PYTHONPATH": str(Path(histories.__file__).parent.parent)}
    port = str(free_port())
    try:
        master = subprocess.Popen([*LOCUST, "-f", locustfile, "--headless", "-u", "6", "-r", "6", "-t", "6s",
                                   "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                                   "--expect-workers", "2", "--target", "reference", "--state-dir", str(state),
                                   "--run-dir", "run"], cwd=master_dir, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        workers = [subprocess.Popen([*LOCUST, "-f", locustfile, "--worker", "--master-host", "127.0.0.1",
                                     "--master-port", port], cwd=worker_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            out, _ = master.communicate(timeout=240)
        finally:
            for p in [master, *workers]:
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=60)
    finally:
        subprocess.run([*harness, "down"], capture_output=True, timeout=120, check=False)
    assert master.returncode == 0, out[-4000:]
    run_dir = master_dir / "run"
    manifest = json.loads((run_dir / histories.MANIFEST).read_text())
    assert [w["shipped"] >= 1 for w in manifest["workers"].values()] == [True, True], manifest
    assert histories.check_manifest(run_dir) == []
    for report in manifest["workers"].values():
        arrived = histories.process_history_path(run_dir, report["tag"])
        assert arrived.read_text() == histories.process_history_path(worker_dir / "run", report["tag"]).read_text()
    merged = History.load(run_dir / histories.MERGED)
    requests = [op for op in merged.completed() if not str(op.process).startswith("final-read")]
    assert manifest["requests"] == len(requests) > 20
    assert not list((run_dir / "history").glob(".master-*")), "the marker is removed"


def test_plain_locust_takes_the_target_options_and_refuses_a_missing_target(tmp_path) -> None:
    """The options are Locust's own (its --help is printed before the locustfile loads, so they show only
    in the web UI and in what they do)."""
    locustfile = str(Path(histories.__file__).parent / "steady.py")

    def locust(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*LOCUST, "-f", locustfile, "--headless", "-u", "1", "-t", "1s", *args],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, **env}, stdin=subprocess.DEVNULL)

    missing = locust("--target", "reference", "--state-dir", str(tmp_path))
    assert missing.returncode == 2 and "aurora-harness up" in missing.stderr, missing.stderr[-2000:]
    no_dsn = locust(AURORA_HARNESS_TARGET="external", AURORA_HARNESS_ENGINE="mysql")
    assert no_dsn.returncode == 2 and "needs --writer-dsn" in no_dsn.stderr, no_dsn.stderr[-2000:]
    netfault = subprocess.run([*LOCUST, "-f", str(Path(histories.__file__).parent / "network_fault_under_load.py"),
                               "--headless", "-u", "1", "-t", "1s", "--target", "external", "--writer-dsn",
                               "postgresql://app@127.0.0.1:1/app"], capture_output=True, text=True, timeout=120,
                              check=False, stdin=subprocess.DEVNULL)
    assert netfault.returncode == 2 and "needs network faults" in netfault.stderr, netfault.stderr[-2000:]
    bogus = locust("--target", "bogus")
    assert bogus.returncode != 0 and "invalid choice" in bogus.stderr


def test_load_refuses_bad_options_before_starting_anything(tmp_path) -> None:
    done = subprocess.run([*CLI, "load", "--profile", "steady", "--target", "reference", "--run-time", "soon",
                           "--run-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2 and "cannot read a duration" in done.stderr and "Traceback" not in done.stderr
    external = subprocess.run([*CLI, "load", "--profile", "steady", "--target", "external",
                               "--run-dir", str(tmp_path / "e")], capture_output=True, text=True, timeout=120,
                              check=False)
    assert external.returncode == 2 and "--writer-dsn" in external.stderr
    netfault = subprocess.run([*CLI, "load", "--profile", "network_fault_under_load", "--target", "external",
                               "--writer-dsn", "postgresql://app@127.0.0.1:1/app", "--run-dir", str(tmp_path / "n")],
                              capture_output=True, text=True, timeout=120, check=False)
    assert netfault.returncode == 2 and "needs network faults" in netfault.stderr, netfault.stderr[-2000:]
    assert not (tmp_path / "n").exists(), "refused before anything was started or written"


def test_the_harness_side_of_the_load_work_never_imports_gevent() -> None:
    """Locust patches a process with gevent on import; the harness's commands and the proxy must not be."""
    code = ("import sys, harness.cli, harness.cli.load, loadprofiles.verdicts, loadprofiles.options, "
            "loadprofiles.profiles, loadprofiles.histories, loadprofiles.bridge, reference_proxy.server\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gevent', 'locust')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
