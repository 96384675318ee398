"""Running pgbench against an endpoint and reading its result.

pgbench is PostgreSQL's own load generator, so the numbers are comparable with anything else
people measure with it.  We run it as a subprocess and parse the summary lines it prints.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess

from harness import process
from harness.standins.base import ConnectionParams, StandinError

PGBENCH_DIRS = ["/usr/lib/postgresql/15/bin", "/usr/bin"]


@dataclasses.dataclass(frozen=True)
class PgbenchResult:
    """One pgbench run: throughput, mean latency, and how many transactions failed."""

    label: str
    tps: float
    latency_ms: float
    transactions: int
    failed: int
    seconds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _binary() -> str:
    return process.find_binary("pgbench", PGBENCH_DIRS, "postgresql-15")


def _env(params: ConnectionParams) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PGPASSWORD=params.password, PGSSLMODE="disable", PGCONNECT_TIMEOUT="10")
    return env


def initialise(params: ConnectionParams, scale: int = 1) -> None:
    """Create pgbench's tables on a writer (directly, not through a proxy)."""
    process.run([_binary(), "-i", "-q", "-s", str(scale), "-h", params.host, "-p", str(params.port),
                 "-U", params.user, params.database], env=_env(params), timeout=300)


_TPS = re.compile(r"^tps = ([\d.]+)", re.MULTILINE)
_LAT = re.compile(r"^latency average = ([\d.]+) ms", re.MULTILINE)
_TX = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)


def parse(label: str, output: str, seconds: float) -> PgbenchResult:
    """Read pgbench's summary; StandinError quoting the output if it has no tps line."""
    tps, lat, tx = _TPS.search(output), _LAT.search(output), _TX.search(output)
    if not (tps and lat and tx):
        raise StandinError(f"pgbench printed no result for {label}:\n{output[-2000:]}")
    failed = _FAILED.search(output)
    return PgbenchResult(label, float(tps.group(1)), float(lat.group(1)), int(tx.group(1)),
                         int(failed.group(1)) if failed else 0, seconds)


def run(label: str, params: ConnectionParams, *, clients: int = 20, threads: int = 2, seconds: int = 10,
        select_only: bool = True, reconnect: bool = False, mode: str = "simple") -> PgbenchResult:
    """Run pgbench for ``seconds`` against ``params`` and return its summary."""
    argv = [_binary(), "-n", "-c", str(clients), "-j", str(threads), "-T", str(seconds), "-M", mode,
            "-h", params.host, "-p", str(params.port), "-U", params.user]
    if select_only:
        argv.append("-S")
    if reconnect:
        argv.append("-C")
    argv.append(params.database)
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(params), timeout=seconds + 120,
                          check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode not in (0, 2):  # 2: some transactions failed, summary still printed
        raise StandinError(f"pgbench ({label}) exited with {proc.returncode}:\n{out[-2000:]}")
    return parse(label, out, seconds)
