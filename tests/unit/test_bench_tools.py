"""The benchmarks' pure parts: sysbench's summary, its options file (the password stays off argv), ratios."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess

import pytest

from harness.bench import sysbench
from harness.bench.document import ratio, storm_lines
from harness.standins.base import ConnectionParams, StandinError

SUMMARY = """\
SQL statistics:
    queries performed:
        read:                            336094
        write:                           0
        other:                           48014
        total:                           384108
    transactions:                        24007  (2399.91 per sec.)
    queries:                             384108 (38398.52 per sec.)
    ignored errors:                      3      (0.30 per sec.)
    reconnects:                          0      (0.00 per sec.)

Latency (ms):
         min:                                    0.98
         avg:                                    8.33
         max:                                   61.02
         95th percentile:                       14.21
         sum:                               199965.15
"""

PARAMS = ConnectionParams("127.0.0.1", 3306, "bench", "s3cret-pw", "harness")


def test_parse_reads_rates_latency_and_errors():
    r = sysbench.parse("proxy", "oltp_read_only", SUMMARY, 10)
    assert (r.tps, r.qps, r.transactions) == (2399.91, 38398.52, 24007)
    assert (r.latency_avg_ms, r.latency_p95_ms, r.errors, r.reconnects) == (8.33, 14.21, 3, 0)


def test_parse_without_a_summary_quotes_the_output():
    with pytest.raises(StandinError, match="(?s)no transactions.*FATAL: boom"):
        sysbench.parse("proxy", "oltp_point_select", "FATAL: boom", 10)


def test_the_password_goes_to_a_private_options_file_never_to_argv(monkeypatch):
    seen = {}

    def fake_run(argv, **kwargs):
        path = argv[1].split("=", 1)[1]
        seen["argv"], seen["text"] = argv, pathlib.Path(path).read_text()
        seen["modes"] = stat.S_IMODE(os.stat(path).st_mode), stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
        seen["path"] = path
        return subprocess.CompletedProcess(argv, 0, SUMMARY + "s3cret-pw", "")

    monkeypatch.setattr(sysbench.subprocess, "run", fake_run)
    monkeypatch.setattr(sysbench, "_binary", lambda: "sysbench")
    result = sysbench.run("direct", PARAMS, "oltp_point_select", threads=3, seconds=1, ps_mode="disable")
    assert result.tps == 2399.91
    assert not any("s3cret-pw" in a for a in seen["argv"]) and "--db-ps-mode=disable" in seen["argv"]
    assert "mysql-password=s3cret-pw" in seen["text"] and "db-driver=mysql" in seen["text"]
    assert seen["modes"] == (0o600, 0o700) and not os.path.exists(seen["path"])


def test_a_failed_run_quotes_the_output_without_the_password(monkeypatch):
    monkeypatch.setattr(sysbench.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(
        argv, 1, "", "FATAL: Access denied for user 'bench' (using password s3cret-pw)"))
    monkeypatch.setattr(sysbench, "_binary", lambda: "sysbench")
    with pytest.raises(StandinError) as failure:
        sysbench.run("direct", PARAMS, "oltp_point_select")
    assert "Access denied" in str(failure.value) and "s3cret-pw" not in str(failure.value)


def test_unknown_workload_and_ps_mode_are_refused():
    with pytest.raises(StandinError, match="unknown sysbench workload"):
        sysbench.run("direct", PARAMS, "oltp_write_only")
    with pytest.raises(StandinError, match="db-ps-mode"):
        sysbench.run("direct", PARAMS, "oltp_point_select", ps_mode="always")


def test_ratio_and_storm_lines():
    assert ratio(3, 4) == 0.75 and ratio(None, 4) is None and ratio(3, 0) is None
    [line] = storm_lines({"proxy": {"clients": 10, "ok": 9, "failed": 1, "seconds": 1.25, "peak_rss_mb": 40.5,
                                    "errors": {"connect: refused": 1}}})
    assert "ok=9 failed=1" in line and "40.5 MB" in line and "connect: refused" in line
