"""``aurora-harness bench failover`` end to end, one small round: the command a user runs, as a process.

The benchmark itself never asserts; this test holds the reference proxy to the targets on one
failover: nothing acknowledged is lost, every idle client survives, no read on the reader endpoint
fails with two readers, and the JSON document carries every figure with its p50/p95/max.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.bench.failover import FIGURES
from harness.standins.mysql.cluster import SEARCH_DIRS as MARIADB_DIRS
from harness.standins.postgres.cluster import PG_BIN_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENGINES = [
    pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.skipif(
        not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
        reason="PostgreSQL 15 server binaries are not installed")]),
    pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.skipif(
        not any(os.path.exists(os.path.join(d, "mariadbd")) for d in MARIADB_DIRS),
        reason="MariaDB server binaries are not installed")]),
]


@pytest.mark.parametrize("engine", ENGINES)
def test_one_round_meets_the_targets_and_writes_json(tmp_path, engine):
    out = tmp_path / "failover.json"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--state-dir", str(tmp_path), "bench", "failover",
                           "--engine", engine, "--rounds", "1", "--clients", "1", "--idle-clients", "3",
                           "--out", str(out)], capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accepting_to_first_write_s" in proc.stdout
    results = json.loads(out.read_text())
    assert results["engine"] == engine
    [round_] = results["rounds"]
    assert round_["new_writer"] != round_["old_writer"]
    assert round_["lost_writes"] == 0 and round_["acknowledged_writes"] > 0
    assert round_["idle_survival"] == 1.0
    assert round_["failed_reads"] == 0
    assert round_["accepting_to_first_write_s"] is not None
    assert set(results["summary"]) == set(FIGURES)
    assert os.path.exists(round_["history"])  # the timeline itself, one JSON line per operation
    # Direct clients need a driver that finds the writer by itself: libpq does, PyMySQL does not.
    assert (round_["direct_accepting_to_first_write_s"] is not None) == (engine == "postgres")


def test_bad_arguments_are_refused_before_anything_starts(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--state-dir", str(tmp_path), "bench", "failover",
                           "--rounds", "0"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "--rounds" in proc.stderr
