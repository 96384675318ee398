"""Requests per second of one Locust process per user class, beside the same requests from a thread pool.

For each benchmark task, :func:`locust_rate` runs ``loadprofiles/bench_users.py`` with that one user
class, N users and no pause, in a single Locust process (a local runner: what one worker does), and
reads the task's row of Locust's CSV; :func:`thread_rate` runs the same request function
(:mod:`loadprofiles.requests`) on N threads of the harness's request loop with plain recording
clients.  The sleeping task (100 ms in SQL) shows whether concurrency is real: N users should reach
about 10 N req/s in both columns.  Numbers only; nothing here asserts on them.  No Locust import
here: Locust runs as a child process.

Where the time goes: every measurement also takes the CPU time the proxy process, the stand-in's
processes (the database servers and their reaped backends) and the client (the Locust process from its
test start, or this process for the thread pool) spent on it, per request.  On a machine whose cores
are all busy, the rate is bounded by cores / (sum of the three), whoever is slowest.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.clients.address import Address
from harness.clients.outcomes import Result
from harness.clients.workload import ClientFactory, Loop, UniqueIds
from harness.history import Recorder
from harness.targets.base import Target
from loadprofiles import requests
from loadprofiles.histories import MANIFEST


@dataclasses.dataclass(frozen=True)
class BenchTask:
    """One request kind: its Locust user class, endpoint, the CSV row name, and the thread-pool request."""

    name: str
    user_class: str
    endpoint: str
    request: Callable[[Any, UniqueIds], Result]
    reconnect_each_time: bool = False


def _churn(client: Any, ids: UniqueIds) -> Result:
    try:
        return requests.churn_query(client)
    finally:
        client.close()  # the loop connects a new client for the next request


TASKS: tuple[BenchTask, ...] = (
    BenchTask("point_read", "PointReadBench", "writer", lambda c, ids: requests.point_read(c)),
    BenchTask("reader_point_read", "ReaderReadBench", "reader", lambda c, ids: requests.point_read(c)),
    BenchTask("write", "WriteBench", "writer", lambda c, ids: c.write(ids.next())),
    BenchTask("churn_query", "ChurnBench", "writer", _churn, reconnect_each_time=True),
    BenchTask("sleep", "SleepBench", "writer", lambda c, ids: requests.sleep(c)),
)


def _row_name(task: BenchTask) -> str:
    return f"{task.endpoint} {task.name.removeprefix('reader_')}"


class CpuMeter:
    """CPU seconds the target's processes spend over a measurement: the proxy, and the stand-in's
    servers (each with its descendants and the children it reaped: backends that ended)."""

    def __init__(self, target: Target) -> None:
        self.roots: dict[str, list[int]] = {"proxy": [p for p in [getattr(target, "proxy_pid", None)] if p],
                                            "database": self._servers(target)}

    @staticmethod
    def _servers(target: Target) -> list[int]:
        """The processes listening on the stand-in's instance ports (each server's main process)."""
        import psutil

        cluster = getattr(target, "cluster", None)
        ports = {inst.port for inst in getattr(cluster, "instances", [])}
        try:
            return sorted({c.pid for c in psutil.net_connections(kind="tcp")
                           if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports})
        except psutil.Error:
            return []

    @staticmethod
    def _tree_cpu(pids: list[int]) -> float | None:
        """CPU seconds of ``pids``, their descendants and the children they reaped (None: none found)."""
        import psutil

        total, found = 0.0, False
        for pid in pids:
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in tree:
                try:
                    t = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += t.user + t.system + t.children_user + t.children_system
                found = True
        return total if found else None

    def sample(self) -> dict[str, float | None]:
        return {name: self._tree_cpu(pids) for name, pids in self.roots.items()}

    @staticmethod
    def spent(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
        return {k: (None if before[k] is None or after.get(k) is None else after[k] - before[k]) for k in before}


def _per_request_ms(cpu: dict[str, float | None], requests_done: int) -> dict[str, float | None]:
    return {k: (None if v is None or not requests_done else round(v * 1000 / requests_done, 3)) for k, v in cpu.items()}


def locust_rate(task: BenchTask, *, record: Path, workdir: Path, users: int, seconds: int) -> dict[str, Any]:
    """Run one Locust process with ``task``'s user class; its row of Locust's statistics."""
    locustfile = Path(requests.__file__).resolve().parent / "bench_users.py"
    prefix = workdir / f"locust-{task.name}"
    cmd = [sys.executable, "-m", "locust", "-f", os.fspath(locustfile), "--headless", "--only-summary",
           "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--stop-timeout", "10",
           "--exit-code-on-error", "0", "--target-record", os.fspath(record), "--run-dir",
           os.fspath(workdir / f"run-{task.name}"), "--skip-verdicts", "--csv", os.fspath(prefix), "-L", "WARNING",
           task.user_class]
    root = os.fspath(locustfile.parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURORA_HARNESS_")}
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   timeout=seconds + 180)
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as fh:
        row = next((r for r in csv.DictReader(fh) if r["Name"] == _row_name(task)), None)
    if row is None:
        return {"requests": 0, "failures": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None}
    requests_done = int(row["Request Count"])
    try:
        client_cpu = json.loads((workdir / f"run-{task.name}" / MANIFEST).read_text(encoding="utf-8")).get("cpu_s")
    except (OSError, ValueError):
        client_cpu = None
    return {"requests": requests_done, "failures": int(row["Failure Count"]),
            "rps": round(_number(row["Requests/s"]) or 0.0, 1), "p50_ms": _number(row["50%"]),
            "p99_ms": _number(row["99%"]), "client_cpu_s": client_cpu}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def thread_rate(task: BenchTask, target: Target, *, users: int, seconds: int) -> dict[str, Any]:
    """The same request on ``users`` threads of the harness's request loop, for ``seconds``."""
    ids = UniqueIds(start=10**12)
    factory = ClientFactory(Recorder(), Address.of(target, task.endpoint), op_timeout=30, connect_timeout=10)
    done: list[Result] = []
    lock = threading.Lock()

    def counted(result: Result) -> None:
        with lock:
            done.append(result)

    loop = Loop(factory.new, lambda c: task.request(c, ids), workers=users, on_result=counted,
                name=f"bench-{task.name}")
    started, cpu_started = time.monotonic(), time.process_time()
    with loop:
        loop.stop_event.wait(seconds)
    elapsed, client_cpu = time.monotonic() - started, time.process_time() - cpu_started
    failures = sum(1 for r in done if not r.ok)
    return {"requests": len(done), "failures": failures, "rps": round(len(done) / elapsed, 1),
            "client_cpu_s": round(client_cpu, 3)}


def _measured(target: Target, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``'s row with the CPU per request of the proxy, the stand-in and the client."""
    meter = CpuMeter(target)
    before = meter.sample()
    row = measure()
    cpu = CpuMeter.spent(before, meter.sample())
    cpu["client"] = row.pop("client_cpu_s", None)
    row["cpu_ms_per_request"] = _per_request_ms(cpu, row["requests"])
    return row


def run(target: Target, record: Path, workdir: Path, *, users: int, seconds: int,
        tasks: tuple[BenchTask, ...] = TASKS, progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Both measurements for every task, one after the other (never at once: they would share the cores)."""
    rows = []
    for task in tasks:
        progress(f"bench load: {task.name}: one Locust process, {users} users, {seconds} s ...")
        by_locust = _measured(target, lambda t=task: locust_rate(t, record=record, workdir=workdir, users=users,
                                                                 seconds=seconds))
        progress(f"bench load: {task.name}: {users} threads, {seconds} s ...")
        by_threads = _measured(target, lambda t=task: thread_rate(t, target, users=users, seconds=seconds))
        rows.append({"task": task.name, "users": users, "locust": by_locust, "threads": by_threads})
    return rows


def _cpu_text(row: dict[str, Any]) -> str:
    """``proxy/database/client`` CPU milliseconds per request."""
    cpu = row.get("cpu_ms_per_request") or {}
    return "/".join("-" if cpu.get(k) is None else f"{cpu[k]:.2f}" for k in ("proxy", "database", "client"))


def render(rows: list[dict[str, Any]]) -> str:
    header = (f"{'task':<18} {'users':>5}  {'locust req/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'fails':>6} "
              f"{'cpu ms/req p/d/c':>17}  {'threads req/s':>13} {'fails':>6} {'cpu ms/req p/d/c':>17}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lo, th = r["locust"], r["threads"]
        p50 = "-" if lo["p50_ms"] is None else f"{lo['p50_ms']:g}"
        p99 = "-" if lo["p99_ms"] is None else f"{lo['p99_ms']:g}"
        lines.append(f"{r['task']:<18} {r['users']:>5}  {lo['rps']:>12.1f} {p50:>7} {p99:>7} {lo['failures']:>6} "
                     f"{_cpu_text(lo):>17}  {th['rps']:>13.1f} {th['failures']:>6} {_cpu_text(th):>17}")
    lines.append("locust: one Locust process (what one worker sends); threads: the same requests from the harness's "
                 "request loop; sleep is 100 ms in SQL, so N users with real concurrency reach about 10 N req/s")
    lines.append("cpu ms/req p/d/c: CPU milliseconds per request spent by the proxy, the stand-in's database "
                 "processes and the client; with every core busy, req/s <= cores x 1000 / (p + d + c)")
    return "\n".join(lines)
