"""``aurora-harness bench ...``: benchmarks that print numbers beside the peers' numbers."""

from __future__ import annotations

import json

import click

from harness.cli.common import CliFailure, fail_on_errors


@click.group()
def bench() -> None:
    """Benchmarks (numbers to read, never pass/fail)."""


@bench.command()
@click.option("--seconds", type=click.IntRange(1, 3600), default=10, show_default=True,
              help="Duration of each pgbench run.")
@click.option("--clients", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--pool-size", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Backend connections allowed to PgBouncer and to the proxy.")
@click.option("--storm", "storm_clients", type=click.IntRange(0, 20000), default=10_000, show_default=True,
              help="Clients in the connection storm (0 to skip).")
@click.option("--mode", type=click.Choice(["simple", "extended", "prepared"]), default="simple",
              show_default=True, help="pgbench query mode (-M).")
@click.option("--out", default="bench-results/postgres.json", show_default=True, help="JSON result file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of the table.")
@fail_on_errors
def postgres(seconds: int, clients: int, pool_size: int, storm_clients: int, mode: str, out: str,
             as_json: bool) -> None:
    """pgbench -S and -S -C direct, via PgBouncer and via the reference proxy; then a connection storm."""
    from harness.bench import postgres as pgb
    from harness.bench.document import write

    cfg = pgb.BenchConfig(seconds=seconds, clients=clients, pool_size=pool_size, storm_clients=storm_clients,
                          mode=mode)
    results = pgb.run(cfg, say=lambda m: click.echo(m, err=True))
    write(results, out)
    click.echo(json.dumps(results, indent=2) if as_json else pgb.table(results) + f"\nJSON written to {out}")


@bench.command()
@click.option("--seconds", type=click.IntRange(1, 3600), default=10, show_default=True,
              help="Duration of each sysbench run and each churn run.")
@click.option("--threads", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="sysbench threads, and connect-per-query churn threads.")
@click.option("--pool-size", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Backend connections allowed to the proxy.")
@click.option("--storm", "storm_clients", type=click.IntRange(0, 20000), default=10_000, show_default=True,
              help="Clients in the connection storm through the proxy (0 to skip).")
@click.option("--db-ps-mode", "ps_mode", type=click.Choice(["auto", "disable"]), default="auto",
              show_default=True, help="sysbench's use of server-side prepared statements.")
@click.option("--out", default="bench-results/mysql.json", show_default=True, help="JSON result file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of the table.")
@fail_on_errors
def mysql(seconds: int, threads: int, pool_size: int, storm_clients: int, ps_mode: str, out: str,
          as_json: bool) -> None:
    """sysbench point_select and read_only direct, via HAProxy and via the reference proxy; connection
    churn direct and via the proxy; then a connection storm through the proxy."""
    from harness.bench import mysql as myb
    from harness.bench.document import write

    try:
        cfg = myb.MySQLBenchConfig(seconds=seconds, threads=threads, pool_size=pool_size,
                                   storm_clients=storm_clients, ps_mode=ps_mode)
    except myb.MySQLBenchError as e:
        raise CliFailure(str(e)) from None
    results = myb.run(cfg, say=lambda m: click.echo(m, err=True))
    write(results, out)
    click.echo(json.dumps(results, indent=2) if as_json else myb.table(results) + f"\nJSON written to {out}")


@bench.command()
@click.option("--engine", type=click.Choice(["postgres", "mysql"]), default="postgres", show_default=True,
              help="Engine of the stand-in cluster and the proxy.")
@click.option("--rounds", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Failovers to run (the figures are summarised over them).")
@click.option("--clients", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Writer clients and reader clients per path (proxy, and direct unless --no-direct).")
@click.option("--idle-clients", type=click.IntRange(0, 256), default=4, show_default=True,
              help="Clients connected through the writer endpoint before each failover, used after it.")
@click.option("--readers", type=click.IntRange(2, 15), default=2, show_default=True,
              help="Readers in the stand-in cluster.")
@click.option("--direct/--no-direct", default=True, show_default=True,
              help="Also run the clients straight at the instances, for comparison.")
@click.option("--out", default="bench-results/failover.json", show_default=True,
              help="JSON result file; each round's history goes to a directory beside it.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of the table.")
@fail_on_errors
def failover(engine: str, rounds: int, clients: int, idle_clients: int, readers: int, direct: bool, out: str,
             as_json: bool) -> None:
    """Writer failovers under load: time to the first write on the new writer, failed reads, idle
    client survival and lost writes, through the reference proxy and directly (where the engine's
    driver can find the writer by itself)."""
    import os

    from harness.bench import failover as fb
    from harness.bench.document import write

    history_dir = os.path.splitext(out)[0] + "-histories"
    try:
        cfg = fb.FailoverBenchConfig(engine=engine, rounds=rounds, clients=clients, idle_clients=idle_clients,
                                     readers=readers, direct=direct, history_dir=history_dir)
        results = fb.run(cfg, say=lambda m: click.echo(m, err=True))
    except fb.FailoverBenchError as e:
        raise CliFailure(str(e)) from None
    write(results, out)
    click.echo(json.dumps(results, indent=2) if as_json else fb.table(results) + f"\nJSON written to {out}")


@bench.command()
@click.option("--engine", type=click.Choice(["postgres", "mysql"]), default="postgres", show_default=True)
@click.option("--rate", type=click.FloatRange(1, 500), default=50.0, show_default=True,
              help="New logins a second during the drill.")
@click.option("--rounds", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--strategy", type=click.Choice(["single_user", "alternating_users", "database_first"]),
              default="single_user", show_default=True)
@click.option("--window-seconds", type=click.FloatRange(0, 600), default=1.0, show_default=True,
              help="Seconds between setSecret and finishSecret.")
@click.option("--out", default="bench-results/rotation.json", show_default=True, help="JSON result file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of the table.")
@fail_on_errors
def rotation(engine: str, rate: float, rounds: int, strategy: str, window_seconds: float, out: str,
             as_json: bool) -> None:
    """Secret rotations while new logins arrive at a steady rate through the reference proxy: the failed
    logins of each rotation's window, and how long new and old passwords took to be right."""
    from harness.bench import rotation as rb
    from harness.bench.document import write

    try:
        results = rb.run_bench(engine, rate=rate, rounds=rounds, strategy=strategy, window_seconds=window_seconds,
                               say=lambda m: click.echo(m, err=True))
    except rb.RotationBenchError as e:
        raise CliFailure(str(e)) from None
    write(results, out)
    click.echo(json.dumps(results, indent=2) if as_json else rb.table(results) + f"\nJSON written to {out}")


@bench.command("load")
@click.option("--engine", type=click.Choice(["postgres", "mysql"]), default="postgres", show_default=True)
@click.option("--users", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Locust users, and threads of the thread pool.")
@click.option("--seconds", type=click.IntRange(1, 3600), default=10, show_default=True, help="Per task and column.")
@click.option("--task", "task_names", multiple=True,
              type=click.Choice(["point_read", "reader_point_read", "write", "churn_query", "sleep"]),
              help="Only these tasks (repeatable; default all).")
@click.option("--out", default="bench-results/load.json", show_default=True, help="JSON result file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of the table.")
@fail_on_errors
def load(engine: str, users: int, seconds: int, task_names: tuple[str, ...], out: str, as_json: bool) -> None:
    """Requests per second of one Locust process per user class through the reference proxy, beside the
    same requests from the harness's thread pool; 100 ms sleeps in SQL show whether concurrency is real."""
    import shutil
    import tempfile
    from pathlib import Path

    from harness.bench.document import write
    from harness.targets.base import TargetOptions
    from harness.targets.reference import ReferenceTarget
    from loadprofiles import benchmark
    from loadprofiles import options as load_options

    tasks = tuple(t for t in benchmark.TASKS if not task_names or t.name in task_names)
    workdir = Path(tempfile.mkdtemp(prefix="aurora-bench-load-"))
    say = lambda m: click.echo(m, err=True)
    try:
        with ReferenceTarget.from_options(TargetOptions(engine)) as target:
            record = workdir / "target.json"
            load_options.write_record(record, load_options.target_record(target))
            rows = benchmark.run(target, record, workdir, users=users, seconds=seconds, tasks=tasks, progress=say)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {"benchmark": "load", "engine": engine, "users": users, "seconds": seconds, "rows": rows}
    write(results, out)
    click.echo(json.dumps(results, indent=2) if as_json else benchmark.render(rows) + f"\nJSON written to {out}")
