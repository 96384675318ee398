"""``aurora-harness bench mysql`` end to end with tiny durations: the command a user runs, as a process.

The benchmark never asserts on speed; this test holds its document to its shape: every sysbench
workload on every path, churn on both paths, the storm through the proxy, each with numbers > 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.bench.mysql import CHURN_PATHS, SYSBENCH_PATHS
from harness.bench.sysbench import WORKLOADS
from harness.standins.mysql.cluster import SEARCH_DIRS

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.slow,
              pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS),
                                 reason="MariaDB server binaries are not installed")]


def test_one_short_run_has_every_path_and_writes_json(tmp_path):
    out = tmp_path / "mysql.json"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--state-dir", str(tmp_path), "bench", "mysql",
                           "--seconds", "1", "--threads", "4", "--storm", "50", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "proxy/haproxy" in proc.stdout and "storm 50 clients via proxy" in proc.stdout
    results = json.loads(out.read_text())
    assert set(results["sysbench"]) == set(WORKLOADS)
    for workload, row in results["sysbench"].items():
        for path in SYSBENCH_PATHS:
            r = row[path]
            assert r["tps"] > 0 and r["qps"] >= r["tps"] and r["latency_p95_ms"] > 0, (workload, path, r)
            assert r["errors"] == 0 and r["transactions"] > 0
        assert row["ratio_proxy_haproxy"] > 0 and row["ratio_proxy_direct"] > 0
    for path in CHURN_PATHS:
        assert results["churn"][path]["connections"] > 0 and results["churn"][path]["failed"] == 0
    assert results["churn"]["ratio_proxy_direct"] > 0
    storm = results["storm"]["proxy"]
    assert storm["clients"] == 50 and storm["ok"] == 50 and storm["failed"] == 0 and storm["peak_rss_mb"] > 0


def test_bad_settings_are_refused_before_anything_starts(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--state-dir", str(tmp_path), "bench", "mysql",
                           "--threads", "95"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "max_connections" in proc.stderr and "Traceback" not in proc.stderr
