"""``aurora-harness bench postgres``: the reference proxy side by side with direct access and PgBouncer.

One stand-in writer serves three paths in the same run: direct, PgBouncer in transaction mode with
a pool of ``pool_size``, and the reference proxy capped to the same number of backend connections
(MaxConnectionsPercent of the instance's max_connections).  Each path gets pgbench ``-S`` (steady
clients) and ``-S -C`` (a new connection per transaction: the serverless pattern a proxy exists
for), then a connection storm through the poolers.  Numbers are printed and written as JSON; they
are never asserted on, since shared machines are noisy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from harness.bench import pgbench
from harness.bench.document import ratio, storm_lines, storm_section
from harness.peers.pgbouncer import PgBouncer
from harness.standins.base import ConnectionParams
from harness.standins.postgres.cluster import PostgresCluster
from harness.targets.reference import ReferenceTarget


@dataclasses.dataclass
class BenchConfig:
    seconds: int = 10
    clients: int = 20
    pool_size: int = 20
    storm_clients: int = 10_000
    max_connections: int = 100
    mode: str = "simple"


def run(cfg: BenchConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement and return the result document (also what is written as JSON)."""
    results: dict[str, Any] = {"engine": "postgres", "config": dataclasses.asdict(cfg), "pgbench": {}, "storm": {}}
    percent = max(1, round(cfg.pool_size * 100 / cfg.max_connections))
    with PostgresCluster(readers=0, max_connections=cfg.max_connections) as cluster:
        writer = cluster.connection_params(cluster.writer.id)
        say(f"stand-in writer on {writer.host}:{writer.port} (max_connections={cfg.max_connections})")
        pgbench.initialise(writer)
        with PgBouncer(writer, pool_size=cfg.pool_size) as bouncer, \
                ReferenceTarget("postgres", 0, cluster=cluster,
                                pool={"max_connections_percent": percent}) as proxy:
            ep = proxy.writer_endpoint
            paths = {
                "direct": writer,
                "pgbouncer": bouncer.params,
                "proxy": ConnectionParams(ep.host, ep.port, writer.user, writer.password, writer.database),
            }
            for mode_name, reconnect in (("select_only", False), ("select_only_reconnect", True)):
                row: dict[str, Any] = {}
                for path, params in paths.items():
                    say(f"pgbench -S{' -C' if reconnect else ''} -c {cfg.clients} -T {cfg.seconds} via {path} ...")
                    row[path] = pgbench.run(path, params, clients=cfg.clients, seconds=cfg.seconds,
                                            reconnect=reconnect, mode=cfg.mode).as_dict()
                row["ratio_proxy_pgbouncer"] = ratio(row["proxy"]["tps"], row["pgbouncer"]["tps"])
                row["ratio_proxy_direct"] = ratio(row["proxy"]["tps"], row["direct"]["tps"])
                results["pgbench"][mode_name] = row
            if cfg.storm_clients:
                results["storm"] = storm_section("postgres", {"proxy": (paths["proxy"], proxy.proxy_pid),
                                                              "pgbouncer": (paths["pgbouncer"], bouncer.pid)},
                                                 cfg.storm_clients, say)
    return results


def table(results: dict[str, Any]) -> str:
    """The human summary: one line per pgbench run, one per storm."""
    lines = [f"{'run':<24} {'path':<10} {'tps':>10} {'lat ms':>8} {'failed':>7}"]
    for mode, row in results["pgbench"].items():
        for path in ("direct", "pgbouncer", "proxy"):
            r = row[path]
            lines.append(f"{mode:<24} {path:<10} {r['tps']:>10.0f} {r['latency_ms']:>8.3f} {r['failed']:>7}")
        lines.append(f"{'':<24} proxy/pgbouncer = {row['ratio_proxy_pgbouncer']}, "
                     f"proxy/direct = {row['ratio_proxy_direct']}")
    lines += storm_lines(results["storm"])
    return "\n".join(lines)

