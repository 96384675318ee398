"""``aurora-harness up|status|down|failover|crash``: a reference target running in the background.

``failover`` and ``rotate`` also serve as the hooks of an external target over a running reference
target (``certify --target external --failover-command "aurora-harness failover" --rotate-command
"aurora-harness rotate"``): ``failover`` promotes the reader ``$AURORA_HARNESS_FAILOVER_TO`` names when
``--to`` is not given, and ``rotate`` takes the user and its new password from the environment the
hook is given (a password never goes on a command line).

``up`` starts a stand-in cluster and the reference proxy in front of it, records both in the state
directory and exits, leaving them running; the other commands rebuild the target from the record.
By default ``up`` also starts the stand-in's automatic-failover supervisor (Aurora's control plane):
``crash`` of the writer is then followed by a promotion, and ``failover`` holds the supervisor's
lock so that a planned and an automatic failover never run at once.  The proxy reads its logins from
Secrets Manager by default: ``up`` also starts a local AWS stand-in holding one secret per user and
prints its endpoint (``aws_endpoint_url``); ``--credentials static`` writes the users into the proxy's
configuration instead.
"""

from __future__ import annotations

import os
import time

import click

from harness.cli.common import CliFailure, emit, fail_on_errors, show_secrets_option, shown, state_dir
from harness.standins.registry import engine_names
from harness.targets.hooks import FAILOVER_TO_ENV, NEW_PASSWORD_ENV, ROTATE_USER_ENV
from harness.targets.reference import CREDENTIAL_MODES, ReferenceTarget

RECORD = "target"


def load_running(ctx: click.Context) -> ReferenceTarget:
    record = state_dir(ctx).read(RECORD)
    if record is None:
        raise CliFailure(f"no target is running (nothing recorded in {state_dir(ctx).path}); "
                         "start one with 'aurora-harness up'")
    return ReferenceTarget.from_state(record)


def _human(t: ReferenceTarget, d: dict) -> str:
    """``d``: the target's description, as it may be printed."""
    c = d["credentials"]
    auto = d.get("auto_failover") or {}
    if auto.get("enabled"):
        supervision = f"automatic failover after {auto['grace_seconds']:g}s"
        if not auto.get("supervisor_running"):
            supervision += " (SUPERVISOR NOT RUNNING)"
    else:
        supervision = "no automatic failover"
    proxy = "proxy running" if t.proxy_running() else "PROXY NOT RUNNING"
    lines = [f"{t.engine} reference target ({proxy}; {supervision})",
             f"  writer endpoint  {d['endpoints']['writer']['host']}:{d['endpoints']['writer']['port']}"]
    lines += [f"  reader endpoint  {e['host']}:{e['port']} ({e['name']})" for e in d["endpoints"]["readers"]]
    lines += [f"  credentials      user={c['user']} password={c['password']} database={c['database']}",
              f"  metrics          {d['metrics_url']}", f"  status           {d['status_url']}",
              "  logins from      " + (f"Secrets Manager at {d['aws_endpoint_url']} ({', '.join(d['secrets'])})"
                                       if d.get("aws_endpoint_url") else "the proxy's configuration"),
              f"  proxy log        {d['proxy_log']}", "  instances:"]
    lines += [f"    {i['id']:<12} {i['role']:<7} {i['host']}:{i['port']}" for i in d["instances"]]
    return "\n".join(lines)


@click.command()
@click.option("--engine", type=click.Choice(engine_names()), default="postgres", show_default=True)
@click.option("--readers", type=click.IntRange(0, 15), default=2, show_default=True)
@click.option("--require-tls", is_flag=True, help="Reject clients that do not use TLS (RequireTLS).")
@click.option("--borrow-timeout", type=click.FloatRange(0, 300), default=None,
              help="ConnectionBorrowTimeout in seconds (default 120, as RDS Proxy).")
@click.option("--max-connections-percent", type=click.IntRange(1, 100), default=None)
@click.option("--auto-failover/--no-auto-failover", default=True, show_default=True,
              help="Promote a reader when the writer stops answering, as Aurora does.")
@click.option("--failover-grace", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
              help="Seconds the writer may stay silent before a reader is promoted.")
@click.option("--credentials", type=click.Choice(CREDENTIAL_MODES), default="secrets", show_default=True,
              help="Where the proxy takes its logins from: a local Secrets Manager stand-in (one secret per "
                   "user; needed to rotate them) or its own configuration.")
@click.option("--relays", is_flag=True, help="Put a TCP relay between the proxy and each instance, kept by a "
                                              "background process, for 'aurora-harness fault' (network faults).")
@click.option("--json", "as_json", is_flag=True, help="Print endpoints and credentials as JSON (public contract).")
@show_secrets_option
@click.pass_context
@fail_on_errors
def up(ctx: click.Context, engine: str, readers: int, require_tls: bool, borrow_timeout: float | None,
       max_connections_percent: int | None, auto_failover: bool, failover_grace: float, credentials: str,
       relays: bool, as_json: bool, show_secrets: bool) -> None:
    """Start a stand-in cluster with the reference proxy in front; both keep running after exit."""
    sd = state_dir(ctx)
    previous = sd.read(RECORD)
    if previous is not None:
        old = ReferenceTarget.from_state(previous)
        if old.proxy_running():
            raise CliFailure(f"a reference target is already running from {sd.path}; "
                             "stop it first with 'aurora-harness down'")
        old.down()
        sd.remove(RECORD)
    pool = {"connection_borrow_timeout": borrow_timeout, "max_connections_percent": max_connections_percent}
    target = ReferenceTarget(engine, readers, pool={k: v for k, v in pool.items() if v is not None},
                             require_tls=require_tls, auto_failover=auto_failover, failover_grace=failover_grace,
                             credentials=credentials, relays=relays, relay_process=relays)
    started = time.monotonic()
    try:
        target.up()
        sd.write(RECORD, target.to_state())
    except BaseException:
        target.down()
        sd.remove(RECORD)
        raise
    elapsed = time.monotonic() - started
    described = shown(target.describe(), show_secrets)
    emit({**described, "start_seconds": round(elapsed, 3)}, as_json,
         _human(target, described) + f"\nstarted in {elapsed:.1f}s; stop with 'aurora-harness down'")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@show_secrets_option
@click.pass_context
@fail_on_errors
def status(ctx: click.Context, as_json: bool, show_secrets: bool) -> None:
    """Show the running target's endpoints, credentials (passwords hidden) and instances."""
    target = load_running(ctx)
    if target.follow_live_roles():
        state_dir(ctx).write(RECORD, target.to_state())
    described = shown(target.describe(), show_secrets)
    emit({**described, "proxy_running": target.proxy_running()}, as_json, _human(target, described))


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def down(ctx: click.Context, as_json: bool) -> None:
    """Stop the proxy and the stand-in cluster and remove their data."""
    sd = state_dir(ctx)
    record = sd.read(RECORD)
    if record is None:
        emit({"stopped": False}, as_json, "no target recorded; nothing to stop")
        return
    ReferenceTarget.from_state(record).down()
    sd.remove(RECORD)
    emit({"stopped": True}, as_json, "reference target stopped and its data removed")


@click.command()
@click.option("--to", "to", default=None, metavar="ID", envvar=FAILOVER_TO_ENV,
              help=f"Promote this reader (default: ${FAILOVER_TO_ENV}, else the most advanced).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def failover(ctx: click.Context, to: str | None, as_json: bool) -> None:
    """Planned failover of the target's cluster (the proxy is not told; the supervisor waits for it)."""
    target = load_running(ctx)
    assert target.cluster is not None
    previous = target.cluster.writer.id
    started = time.monotonic()
    try:
        new_writer = target.failover(to)
    finally:
        state_dir(ctx).write(RECORD, target.to_state())
    elapsed = time.monotonic() - started
    emit({"previous_writer": previous, "new_writer": new_writer, "failover_seconds": round(elapsed, 3)},
         as_json, f"{new_writer} is the writer now (was {previous}); took {elapsed:.2f}s")


@click.command()
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def crash(ctx: click.Context, instance_id: str, as_json: bool) -> None:
    """Kill one instance of the target's cluster with SIGKILL (unplanned failure).

    With automatic failover on, killing the writer makes the supervisor promote a reader after
    the grace period; the proxy is not told either way.
    """
    target = load_running(ctx)
    target.crash(instance_id)
    state_dir(ctx).write(RECORD, target.to_state())
    emit({"crashed": instance_id}, as_json, f"{instance_id} killed")


ROTATION_TIMEOUT_S = 300.0


@click.command()
@click.option("--user", envvar=ROTATE_USER_ENV, required=True, metavar="USER",
              help=f"The database user whose secret rotates (default: ${ROTATE_USER_ENV}).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def rotate(ctx: click.Context, user: str, as_json: bool) -> None:
    """Rotate USER's secret to the password in $AURORA_HARNESS_NEW_PASSWORD, in the four steps.

    createSecret, setSecret, testSecret and finishSecret run against the target's Secrets Manager
    stand-in and its database, as a rotation function would; the password is read from the
    environment only, never from the command line, and never printed.
    """
    from harness.faults.base import FaultError
    from harness.faults.rotation import RotateSecret
    from harness.history import Recorder

    password = os.environ.get(NEW_PASSWORD_ENV, "")
    if not password:
        raise CliFailure(f"${NEW_PASSWORD_ENV} is not set: it carries the new password (never the command line)")
    target = load_running(ctx)
    secret = next((sid for sid, (login_user, _) in target.logins.items() if login_user == user), None)
    if secret is None:
        raise CliFailure(f"no secret of the target holds user {user!r} (have: "
                         f"{', '.join(sorted({u for u, _ in target.logins.values()})) or 'none'})")
    if target.cluster is not None and user == target.cluster.user:
        raise CliFailure(f"{user!r} is the cluster's own user, which the target's control operations log in as; "
                         "rotate another login")
    rotation = RotateSecret(strategy="single_user", window_seconds=0.0, secret_id=secret)
    started = time.monotonic()
    try:
        rotation.prepare(target, password=password)
        with Recorder() as recorder:
            rotation.start(target, recorder)
            rotation.wait(ROTATION_TIMEOUT_S)
            rotation.stop()
            steps = [o.value for o in recorder.history().events("rotation_step")]
    except FaultError as e:
        raise CliFailure(str(e)) from None
    target.logins[secret] = (user, password)
    state_dir(ctx).write(RECORD, target.to_state())
    elapsed = time.monotonic() - started
    emit({"rotated": user, "secret_id": secret, "steps": steps, "rotate_seconds": round(elapsed, 3)}, as_json,
         f"{user}'s secret {secret} rotated ({', '.join(steps)}); took {elapsed:.2f}s")
