"""``aurora-harness load``: a Locust load profile against a target, judged like a certification.

The command brings the target up as ``certify`` does (a reference target is started here and stopped
at the end; an external one is tried first), then runs Locust as child processes: one local runner,
or with ``--workers N`` a master and N workers on this machine.  Locust runs in processes of its own
because importing it patches the whole process with gevent, which neither this command nor the
reference proxy may be.  The Locust processes learn the target from a record file readable by this
user only (:mod:`loadprofiles.options`: it holds the passwords), never from their command lines.

Headless by default, printing Locust's own statistics line while the load runs; ``--web`` serves
Locust's web UI on a free port of 127.0.0.1 (the URL is printed) instead, starts the profile at once
and quits when it ends.  The run
directory keeps Locust's ``locust_stats.csv``, ``locust_stats_history.csv``, ``locust_failures.csv``
and ``locust.html`` beside every process's history, the merged history, ``load.json`` (the master's
manifest of its workers' last reports), ``load-phases.json`` (requests, failures, req/s and p50/p99
before, during and after each fault, from the history's nanoseconds) and ``results.json``; the phases
table, then the verdict table and headline are printed as ``certify`` prints them, and the exit status is the same: 0 certified, 1 a guarantee
false, 2 not carried out, 3 incomplete (unknown verdicts; ``--allow-unknown`` makes that 0).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from harness.cli.certify import NotCarriedOut, finish, preflight, target_options
from harness.process import free_port
from harness.runstore import DEFAULT_ROOT, RunStore, RunStoreError, default_run_dir, utc_now
from harness.targets import registry as target_kinds
from harness.targets.base import Capability, TargetError, TargetOptions
from loadprofiles import histories
from loadprofiles import options as load_options
from loadprofiles.profiles import PROFILES
from loadprofiles.stages import ShapeError, parse_duration

LOCUST_GRACE_S = 240.0
"""How long Locust may run past the run time (starting workers, stopping users, the last reports)."""
STOP_TIMEOUT_S = 10
"""Locust's --stop-timeout: a stopping user finishes the request it is in, so its history ends whole."""


def profile_path(name: str) -> Path:
    import loadprofiles

    return Path(loadprofiles.__file__).resolve().parent / f"{name}.py"


def locust_commands(*, profile: str, record: Path, run_dir: Path, users: int, spawn_rate: float, run_time_s: float,
                    workers: int, web_port: int | None, port: int | None = None) -> list[list[str]]:
    """The Locust command lines: the local runner or master first, then the workers (``web_port``: serve
    the web UI there instead of running headless)."""
    locustfile = os.fspath(profile_path(profile))
    common = [sys.executable, "-m", "locust", "-f", locustfile]
    main = [*common, "--target-record", os.fspath(record), "--run-dir", os.fspath(run_dir), "--skip-verdicts",
            "-u", str(users), "-r", f"{spawn_rate:g}", "-t", f"{math.ceil(run_time_s)}s",
            "--stop-timeout", str(STOP_TIMEOUT_S), "--exit-code-on-error", "0",
            "--csv", os.fspath(run_dir / "locust"), "--html", os.fspath(run_dir / "locust.html")]
    main += (["--web-host", "127.0.0.1", "--web-port", str(web_port), "--autostart", "--autoquit", "1"]
             if web_port is not None else ["--headless"])
    if not workers:
        return [main]
    assert port is not None
    main += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
             "--expect-workers", str(workers), "--expect-workers-max-wait", "120"]
    worker = [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    return [main] + [list(worker) for _ in range(workers)]


def _child_env() -> dict[str, str]:
    """Ours, with the package root first on the path (the locustfile imports ``loadprofiles``) and no
    option a parent gave through the environment (the record says everything)."""
    root = os.fspath(profile_path("steady").parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURORA_HARNESS_")}
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_locust(commands: list[list[str]], *, timeout_s: float) -> int:
    """Start every process, wait for the first (the master or local runner), then the workers; returns the
    first's exit status.  Ctrl-C is passed on, and whatever does not end in time is stopped."""
    env = _child_env()
    procs = [subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=False) for cmd in commands]
    try:
        try:
            status = procs[0].wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            click.echo(f"load: Locust did not end within {timeout_s:.0f} s; stopping it", err=True)
            procs[0].send_signal(signal.SIGTERM)
            status = procs[0].wait(timeout=60)
        for p in procs[1:]:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.terminate()
                p.wait(timeout=30)
        return status
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@click.command()
@click.option("--profile", "profile_name", type=click.Choice(list(PROFILES)), required=True,
              help="; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values()) + ".")
@click.option("--target", "target_kind", type=click.Choice(target_kinds.kind_names()), required=True,
              help="; ".join(f"{k.name}: {k.summary}" for k in target_kinds.registered().values()) + ".")
@click.option("--engine", type=click.Choice(["postgres", "mysql"]), default="postgres", show_default=True)
@click.option("--users", type=click.IntRange(1, 100_000), default=None,
              help="Peak users (default: the profile's).")
@click.option("--spawn-rate", type=click.FloatRange(0.1, 100_000), default=None,
              help="Users started per second (default: all at once).")
@click.option("--run-time", default=None, metavar="DURATION", help="How long the load runs: 30s, 2m, 1h30m "
              "(default: the profile's).")
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Run a Locust master and this many worker processes on this machine (0: one local runner).")
@click.option("--web", is_flag=True, help="Serve Locust's web UI on 127.0.0.1 while the profile runs.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the run (default runs/<UTC time>-<target>-<engine>).")
@target_options
@click.option("--allow-unknown", is_flag=True, help="Exit 0 when nothing is false even if some guarantees are "
                                                    "unknown (the headline still says INCOMPLETE).")
def load(profile_name: str, target_kind: str, engine: str, users: int | None, spawn_rate: float | None,
         run_time: str | None, workers: int, web: bool, run_dir: str | None, allow_unknown: bool,
         **target_values: Any) -> None:
    """Run a Locust load profile against a target, then judge its histories.

    Exit status: 0 CERTIFIED, 1 NOT CERTIFIED, 2 not carried out, 3 INCOMPLETE."""
    from loadprofiles.verdicts import judge, phases_text, writer_now

    profile = PROFILES[profile_name]
    try:
        run_time_s = parse_duration(run_time, profile.default_run_time_s)
        options = TargetOptions(engine, **target_values)
        built = target_kinds.build_target(target_kind, options)
    except (ShapeError, TargetError) as e:
        raise NotCarriedOut(str(e)) from None
    needs = profile.needs()
    if needs is not None:
        built.offer(needs)
    refusal = profile.refusal(built)
    if refusal is not None:
        raise NotCarriedOut(refusal)
    users = users or profile.default_users
    spawn_rate = spawn_rate or float(users)
    default_location = run_dir is None
    path = Path(run_dir) if run_dir else default_run_dir(DEFAULT_ROOT, target_kind, engine, utc_now())
    try:
        store = RunStore.create(path, target=target_kind, engine=engine)
    except RunStoreError as e:
        raise NotCarriedOut(str(e)) from None
    preflight(built, "load")
    click.echo(f"load: profile={profile_name} target={target_kind} engine={engine} users={users} "
               f"spawn-rate={spawn_rate:g} run-time={run_time_s:g}s workers={workers} run-dir={path}")
    private = Path(tempfile.mkdtemp(prefix="aurora-load-"))
    try:
        try:
            built.__enter__()
        except Exception as e:  # noqa: BLE001 - whatever stopped it, the run cannot go on
            raise NotCarriedOut(f"the target did not come up: {type(e).__name__}: {e}") from None
        try:
            target = built
            store.write_target(target.describe())
            if needs is Capability.NETWORK_FAULTS:
                target.serve_relays()  # the Locust master carries out the fault, from another process
            record = private / "target.json"
            load_options.write_record(record, load_options.external_record(options) if target_kind == "external"
                                      else load_options.target_record(target))
            initial_writer = writer_now(target)
            web_port = free_port() if web else None
            commands = locust_commands(profile=profile_name, record=record, run_dir=path, users=users,
                                       spawn_rate=spawn_rate, run_time_s=run_time_s, workers=workers,
                                       web_port=web_port, port=free_port() if workers else None)
            if web_port is not None:
                click.echo(f"load: Locust's web UI is at http://127.0.0.1:{web_port} while the profile runs")
            status = run_locust(commands, timeout_s=run_time_s + LOCUST_GRACE_S)
            if not (path / histories.MANIFEST).exists():
                click.echo(f"load: NOT CARRIED OUT: Locust ended (exit status {status}) without finishing the run",
                           err=True)
                sys.exit(2)
            judge(path, target, profile_name, initial_writer=initial_writer)
            click.echo("\n" + phases_text(path))
        finally:
            if target.proxy_log:
                store.copy_log(target.proxy_log, "proxy.log")
            built.__exit__(None, None, None)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    sys.exit(finish(path, allow_unknown=allow_unknown, as_json=False, pytest_status=status,
                    point_latest=default_location))
