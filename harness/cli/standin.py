"""``aurora-harness standin ...``: run an Aurora stand-in cluster in the background.

``up`` starts the servers in their own sessions and records the cluster in the state directory, so
they outlive this process; every other subcommand rebuilds the cluster handle from that record.
"""

from __future__ import annotations

import time

import click

from harness.cli.common import CliFailure, emit, fail_on_errors, show_secrets_option, shown, state_dir
from harness.standins.base import Cluster, Role
from harness.standins.registry import cluster_class, cluster_from_state, engine_names
from harness.statedir import STANDIN_RECORD

RECORD = STANDIN_RECORD


def _load(ctx: click.Context) -> Cluster:
    record = state_dir(ctx).read(RECORD)
    if record is None:
        raise CliFailure(f"no stand-in is running (nothing recorded in {state_dir(ctx).path}); "
                         "start one with 'aurora-harness standin up'")
    return cluster_from_state(record)


def _save(ctx: click.Context, cluster: Cluster) -> None:
    state_dir(ctx).write(RECORD, cluster.to_state())


def _running(cluster: Cluster) -> dict[str, bool]:
    return {i.id: cluster.running(i.id) for i in cluster.instances}


def _describe(cluster: Cluster, show_secrets: bool = False) -> dict:
    """The cluster's description with each instance's state; passwords hidden unless asked for."""
    data = cluster.describe()
    alive = _running(cluster)
    for inst in data["instances"]:
        inst["running"] = alive[inst["id"]]
    return shown(data, show_secrets)


def _table(cluster: Cluster, show_secrets: bool = False) -> str:
    alive = _running(cluster)
    password = shown({"password": cluster.password}, show_secrets)["password"]
    lines = [(f"engine {cluster.engine}; user {cluster.user}; password {password}; "
              f"database {cluster.database}"),
             f"{'id':<12} {'role':<7} {'address':<22} state"]
    for i in cluster.instances:
        lines.append(f"{i.id:<12} {i.role.value:<7} {i.host + ':' + str(i.port):<22} "
                     f"{'running' if alive[i.id] else 'stopped'}")
    return "\n".join(lines)


@click.group()
def standin() -> None:
    """Run an Aurora stand-in cluster (one writer, N replicating readers) in the background."""


@standin.command()
@click.option("--engine", type=click.Choice(engine_names()), default="postgres", show_default=True)
@click.option("--readers", type=click.IntRange(0, 15), default=2, show_default=True,
              help="Number of reader instances (Aurora allows up to 15).")
@click.option("--json", "as_json", is_flag=True, help="Print the cluster as JSON (public contract).")
@show_secrets_option
@click.pass_context
@fail_on_errors
def up(ctx: click.Context, engine: str, readers: int, as_json: bool, show_secrets: bool) -> None:
    """Start a stand-in cluster and record it; its servers keep running after this command exits."""
    sd = state_dir(ctx)
    previous = sd.read(RECORD)
    if previous is not None:
        old = cluster_from_state(previous)
        if any(_running(old).values()):
            raise CliFailure(f"a {old.engine} stand-in is already running from {sd.path}; "
                             "stop it first with 'aurora-harness standin down'")
        old.stop()  # leftovers of a crashed run: remove its data before starting anew
        sd.remove(RECORD)
    cluster = cluster_class(engine)(readers=readers)
    started = time.monotonic()
    try:
        cluster.start()
        _save(ctx, cluster)
    except BaseException:  # a failed start, a failed record, or Ctrl-C: leave nothing behind
        cluster.stop()
        sd.remove(RECORD)
        raise
    elapsed = time.monotonic() - started
    emit({**_describe(cluster, show_secrets), "start_seconds": round(elapsed, 3)}, as_json,
         _table(cluster, show_secrets) + f"\nstarted in {elapsed:.1f}s; stop with 'aurora-harness standin down'")


@standin.command()
@click.option("--json", "as_json", is_flag=True)
@show_secrets_option
@click.pass_context
@fail_on_errors
def status(ctx: click.Context, as_json: bool, show_secrets: bool) -> None:
    """Show the recorded cluster, which instances run, and the live topology."""
    cluster = _load(ctx)
    try:
        topo = cluster.topology()
    except Exception as e:  # noqa: BLE001 - the servers are the source of truth, but may be down
        topo, topo_error = None, str(e)
    else:
        topo_error = None
        if topo.writer is not None and topo.writer != cluster.writer.id:
            for inst in cluster.instances:  # someone else (e.g. a supervisor) failed over: follow it
                inst.role = Role.WRITER if inst.id == topo.writer else Role.READER
            _save(ctx, cluster)
    data = _describe(cluster, show_secrets)
    data["topology"] = topo.as_dict() if topo else None
    if topo_error:
        data["topology_error"] = topo_error
    human = _table(cluster, show_secrets)
    if topo:
        human += "\nreplication: " + ", ".join(
            f"{r.id} {'streaming' if r.replicating else 'NOT replicating'}"
            + (f" lag {r.lag_seconds:.3f}s" if r.lag_seconds is not None else "")
            for r in topo.readers)
    elif topo_error:
        human += f"\ntopology unavailable: {topo_error}"
    emit(data, as_json, human)


@standin.command()
@click.option("--to", "target", default=None, metavar="ID", help="Promote this reader (default: most advanced).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def failover(ctx: click.Context, target: str | None, as_json: bool) -> None:
    """Planned failover: fence the writer, promote a reader, bring the old writer back as a reader."""
    cluster = _load(ctx)
    previous = cluster.writer.id
    started = time.monotonic()
    try:
        new_writer = cluster.failover(target)
    finally:
        _save(ctx, cluster)
    elapsed = time.monotonic() - started
    emit({**_describe(cluster), "previous_writer": previous, "new_writer": new_writer,
          "failover_seconds": round(elapsed, 3)}, as_json,
         f"{new_writer} is the writer now (was {previous}); took {elapsed:.2f}s")


@standin.command()
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def crash(ctx: click.Context, instance_id: str, as_json: bool) -> None:
    """Kill one instance's server with SIGKILL (no shutdown, no promotion)."""
    cluster = _load(ctx)
    cluster.crash(instance_id)
    _save(ctx, cluster)
    emit(_describe(cluster), as_json, f"{instance_id} killed")


@standin.command()
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def restart(ctx: click.Context, instance_id: str, as_json: bool) -> None:
    """Start a stopped or crashed instance again in its recorded role."""
    cluster = _load(ctx)
    try:
        cluster.restart(instance_id)
    finally:
        _save(ctx, cluster)
    emit(_describe(cluster), as_json, f"{instance_id} is running again")


@standin.command(name="add-reader")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def add_reader(ctx: click.Context, as_json: bool) -> None:
    """Add one reader cloned from the current writer."""
    cluster = _load(ctx)
    try:
        new_id = cluster.add_reader()
    finally:
        _save(ctx, cluster)
    emit({**_describe(cluster), "added": new_id}, as_json, f"{new_id} added and replicating")


@standin.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def down(ctx: click.Context, as_json: bool) -> None:
    """Stop every instance of the recorded cluster and remove its data."""
    sd = state_dir(ctx)
    record = sd.read(RECORD)
    if record is None:
        emit({"stopped": False}, as_json, "no stand-in recorded; nothing to stop")
        return
    cluster = cluster_from_state(record)
    cluster.stop()
    sd.remove(RECORD)
    emit({"stopped": True, "engine": cluster.engine}, as_json,
         f"{cluster.engine} stand-in stopped and its data removed")
