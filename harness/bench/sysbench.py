"""Running sysbench's OLTP scripts against a MySQL-protocol endpoint and reading their result.

sysbench is what MySQL people measure with, so its numbers compare with everything published.
It runs as a subprocess; its connection options, password included, go in a ``--config-file``
written to a private (0700) directory rather than on the command line, where ``ps`` would show
the password to every user of the machine.  Nothing printed here carries the password.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from harness import process
from harness.standins.base import ConnectionParams, StandinError

SEARCH_DIRS = ["/usr/bin", "/usr/local/bin"]
DEBIAN_PACKAGE = "sysbench"
WORKLOADS = ("oltp_point_select", "oltp_read_only")
PS_MODES = ("auto", "disable")
TABLE_SIZE = 10_000


@dataclasses.dataclass(frozen=True)
class SysbenchResult:
    """One sysbench run: transactions and queries per second, latency, errors."""

    label: str
    workload: str
    tps: float
    qps: float
    latency_avg_ms: float
    latency_p95_ms: float
    transactions: int
    errors: int
    reconnects: int
    seconds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _binary() -> str:
    return process.find_binary("sysbench", SEARCH_DIRS, DEBIAN_PACKAGE)


@contextmanager
def _options_file(params: ConnectionParams, extra: Sequence[str] = ()) -> Iterator[str]:
    """A sysbench ``--config-file`` holding the connection (and ``extra``) options, removed after use."""
    directory = tempfile.mkdtemp(prefix=f"{process.SCRATCH_PREFIX}sysbench-")  # 0700
    path = os.path.join(directory, "options")
    try:
        process.write_private(path, "\n".join([
            "db-driver=mysql", f"mysql-host={params.host}", f"mysql-port={params.port}",
            f"mysql-user={params.user}", f"mysql-password={params.password}",
            f"mysql-db={params.database}", *extra, ""]))
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _run(argv: list[str], params: ConnectionParams, timeout: float, label: str) -> str:
    with _options_file(params) as options:
        proc = subprocess.run([_binary(), f"--config-file={options}", *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)
    out = (proc.stdout + proc.stderr).replace(params.password, "***") if params.password else proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise StandinError(f"sysbench {' '.join(argv)} ({label}) exited with {proc.returncode}:\n{out[-2000:]}")
    return out


def prepare(params: ConnectionParams, *, tables: int = 1, table_size: int = TABLE_SIZE) -> None:
    """Create and fill sysbench's tables once, on a writer directly (never through a proxy)."""
    common = [f"--tables={tables}", f"--table-size={table_size}"]
    _run(["oltp_common", *common, "cleanup"], params, 120, "cleanup")
    _run(["oltp_common", *common, "prepare"], params, 600, "prepare")


_NUMBER = r"([\d.]+)"
_PATTERNS = {
    "transactions": re.compile(rf"^\s*transactions:\s+(\d+)\s+\({_NUMBER} per sec\.\)", re.MULTILINE),
    "queries": re.compile(rf"^\s*queries:\s+(\d+)\s+\({_NUMBER} per sec\.\)", re.MULTILINE),
    "errors": re.compile(r"^\s*ignored errors:\s+(\d+)", re.MULTILINE),
    "reconnects": re.compile(r"^\s*reconnects:\s+(\d+)", re.MULTILINE),
    "avg": re.compile(rf"^\s*avg:\s+{_NUMBER}", re.MULTILINE),
    "p95": re.compile(rf"^\s*95th percentile:\s+{_NUMBER}", re.MULTILINE),
}


def parse(label: str, workload: str, output: str, seconds: float) -> SysbenchResult:
    """Read sysbench's summary; StandinError quoting the output if a figure is missing."""
    found = {name: pattern.search(output) for name, pattern in _PATTERNS.items()}
    missing = [name for name, match in found.items() if match is None]
    if missing:
        raise StandinError(f"sysbench printed no {', '.join(missing)} for {label}:\n{output[-2000:]}")
    tx, q = found["transactions"], found["queries"]
    return SysbenchResult(label, workload, tps=float(tx.group(2)), qps=float(q.group(2)),
                          latency_avg_ms=float(found["avg"].group(1)), latency_p95_ms=float(found["p95"].group(1)),
                          transactions=int(tx.group(1)), errors=int(found["errors"].group(1)),
                          reconnects=int(found["reconnects"].group(1)), seconds=seconds)


def run(label: str, params: ConnectionParams, workload: str, *, threads: int = 20, seconds: int = 10,
        ps_mode: str = "auto", tables: int = 1, table_size: int = TABLE_SIZE) -> SysbenchResult:
    """Run ``workload`` (one of :data:`WORKLOADS`) for ``seconds`` against ``params``."""
    if workload not in WORKLOADS:
        raise StandinError(f"unknown sysbench workload {workload!r}: expected one of {', '.join(WORKLOADS)}")
    if ps_mode not in PS_MODES:
        raise StandinError(f"--db-ps-mode must be one of {', '.join(PS_MODES)}, got {ps_mode!r}")
    argv = [workload, f"--threads={threads}", f"--time={seconds}", f"--db-ps-mode={ps_mode}",
            f"--tables={tables}", f"--table-size={table_size}", "--percentile=95", "run"]
    return parse(label, workload, _run(argv, params, seconds + 120, label), seconds)
