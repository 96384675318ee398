"""``aurora-harness bench mysql``: the reference proxy side by side with direct access and HAProxy.

One MariaDB stand-in writer serves three paths in the same run: direct, HAProxy in TCP mode (a
proxy that pools nothing: one extra hop and no more) and the reference proxy capped to
``pool_size`` backend connections (MaxConnectionsPercent of the instance's max_connections).
Each path gets sysbench ``oltp_point_select`` and ``oltp_read_only`` with steady threads; then
connection churn (connect, ``SELECT 1``, close, again) direct and through the proxy, the pattern a
proxy exists for; then a connection storm through the proxy, with its peak memory.  Numbers are
printed and written as JSON; they are never asserted on, since shared machines are noisy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from harness.bench import churn, sysbench
from harness.bench.document import address, ratio, storm_lines, storm_section
from harness.errors import HarnessError
from harness.peers.haproxy import HAProxy
from harness.standins.base import ConnectionParams
from harness.standins.mysql.cluster import MySQLCluster
from harness.targets.reference import ReferenceTarget

ENGINE = "mysql"
SYSBENCH_PATHS = ("direct", "haproxy", "proxy")
CHURN_PATHS = ("direct", "proxy")


class MySQLBenchError(HarnessError):
    """The MySQL benchmark's settings are out of range."""


@dataclasses.dataclass
class MySQLBenchConfig:
    seconds: int = 10          # each sysbench run and each churn run
    threads: int = 20          # sysbench threads and churn threads
    pool_size: int = 20        # backend connections allowed to the proxy
    storm_clients: int = 10_000
    max_connections: int = 100
    ps_mode: str = "auto"      # sysbench --db-ps-mode
    table_size: int = sysbench.TABLE_SIZE

    def __post_init__(self) -> None:
        if self.ps_mode not in sysbench.PS_MODES:
            raise MySQLBenchError(f"ps_mode must be one of {', '.join(sysbench.PS_MODES)}, got {self.ps_mode!r}")
        if not 1 <= self.pool_size <= self.max_connections:
            raise MySQLBenchError(f"pool_size must be from 1 to max_connections ({self.max_connections}), "
                                  f"got {self.pool_size}")
        if self.threads + 10 > self.max_connections:
            raise MySQLBenchError(f"{self.threads} threads do not fit the writer's max_connections "
                                  f"({self.max_connections}) with room for the harness's own sessions")


def run(cfg: MySQLBenchConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement and return the result document (also what is written as JSON)."""
    results: dict[str, Any] = {"engine": ENGINE, "config": dataclasses.asdict(cfg), "sysbench": {},
                               "churn": {}, "storm": {}}
    percent = max(1, round(cfg.pool_size * 100 / cfg.max_connections))
    with MySQLCluster(readers=0, max_connections=cfg.max_connections) as cluster:
        writer = cluster.connection_params(cluster.writer.id)
        say(f"stand-in writer on {writer.host}:{writer.port} (max_connections={cfg.max_connections}); "
            f"preparing sysbench tables ...")
        sysbench.prepare(writer, table_size=cfg.table_size)
        with HAProxy(writer) as haproxy, \
                ReferenceTarget(ENGINE, 0, cluster=cluster, pool={"max_connections_percent": percent}) as proxy:
            ep = proxy.writer_endpoint
            paths = {"direct": writer, "haproxy": haproxy.params,
                     "proxy": ConnectionParams(ep.host, ep.port, writer.user, writer.password, writer.database)}
            for workload in sysbench.WORKLOADS:
                row: dict[str, Any] = {}
                for path in SYSBENCH_PATHS:
                    say(f"sysbench {workload} --threads={cfg.threads} --time={cfg.seconds} "
                        f"--db-ps-mode={cfg.ps_mode} via {path} ...")
                    row[path] = sysbench.run(path, paths[path], workload, threads=cfg.threads, seconds=cfg.seconds,
                                             ps_mode=cfg.ps_mode, table_size=cfg.table_size).as_dict()
                row["ratio_proxy_haproxy"] = ratio(row["proxy"]["tps"], row["haproxy"]["tps"])
                row["ratio_proxy_direct"] = ratio(row["proxy"]["tps"], row["direct"]["tps"])
                results["sysbench"][workload] = row
            for path in CHURN_PATHS:
                say(f"connection churn, {cfg.threads} threads for {cfg.seconds}s via {path} ...")
                results["churn"][path] = churn.run(address(ENGINE, path, paths[path]), threads=cfg.threads,
                                                   seconds=cfg.seconds).as_dict()
            results["churn"]["ratio_proxy_direct"] = ratio(results["churn"]["proxy"]["connections_per_s"],
                                                           results["churn"]["direct"]["connections_per_s"])
            if cfg.storm_clients:
                results["storm"] = storm_section(ENGINE, {"proxy": (paths["proxy"], proxy.proxy_pid)},
                                                 cfg.storm_clients, say)
    return results


def table(results: dict[str, Any]) -> str:
    """The human summary: one line per sysbench run and per churn run, one per storm."""
    lines = [f"{'run':<20} {'path':<8} {'tps':>10} {'qps':>10} {'p95 ms':>8} {'errors':>7}"]
    for workload, row in results["sysbench"].items():
        for path in SYSBENCH_PATHS:
            r = row[path]
            lines.append(f"{workload:<20} {path:<8} {r['tps']:>10.0f} {r['qps']:>10.0f} {r['latency_p95_ms']:>8.2f} "
                         f"{r['errors']:>7}")
        lines.append(f"{'':<20} proxy/haproxy = {row['ratio_proxy_haproxy']}, "
                     f"proxy/direct = {row['ratio_proxy_direct']}")
    for path in CHURN_PATHS:
        c = results["churn"][path]
        lines.append(f"{'churn':<20} {path:<8} {c['connections_per_s']:>10.0f} connections/s "
                     f"({c['threads']} threads), failed={c['failed']}"
                     + (f", errors: {c['errors']}" if c["errors"] else ""))
    lines.append(f"{'':<20} proxy/direct = {results['churn']['ratio_proxy_direct']}")
    lines += storm_lines(results["storm"])
    return "\n".join(lines)
