"""The reference proxy as a process: its ``[logging]`` section, reloaded on SIGHUP, and what it does
when it runs out of file descriptors.  psycopg against a real PostgreSQL 15 stand-in."""

from __future__ import annotations

import os
import resource
import socket
import stat
import tempfile

import psycopg
import pytest
from pg_proxy_support import proxy_config
from polling import eventually
from standalone_proxy import standalone_proxy

from harness.standins.postgres.cluster import PG_BIN_DIR, PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.shares_cluster, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(os.path.join(PG_BIN_DIR, "postgres")),
                                 reason="PostgreSQL 15 server binaries are not installed")]


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster(readers=0, max_connections=100) as c:
        yield c


def _query(cluster, port: int, sql: str) -> None:
    with psycopg.connect(host="127.0.0.1", port=port, user=cluster.user, password=cluster.password,
                         dbname=cluster.database, autocommit=True, connect_timeout=10, sslmode="disable") as conn:
        conn.execute(sql)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_logging_section_applies_and_is_reloaded_on_sighup(cluster):
    """``file`` takes the log off standard error, ``level`` filters it, ``debug_logging`` adds the SQL
    text of statements, and SIGHUP applies a changed section to the running proxy."""
    with tempfile.TemporaryDirectory() as tmp:
        log_file = os.path.join(tmp, "proxy.log")
        stderr = os.path.join(tmp, "stderr.log")
        quiet = proxy_config(cluster, logging__file=log_file, logging__level="warning")
        with standalone_proxy(quiet, tmp, stderr_path=stderr) as proxy:
            eventually(lambda: " WARNING reference_proxy.topology " in _read(log_file),
                       what="the monitor's warning in the log file")
            _query(cluster, proxy.port(), "SELECT 'first-needle'")
            text = _read(log_file)
            assert " INFO " not in text  # level = warning: the 'listening' line is INFO
            assert "first-needle" not in text  # debug logging is off
            assert " WARNING " not in _read(stderr)  # file = ...: nothing left for standard error
            assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600  # it may come to hold SQL text

            proxy.rewrite(proxy_config(cluster, logging__file=log_file, logging__level="info",
                                       logging__debug_logging=True))
            eventually(lambda: " INFO reference_proxy.server reloaded" in _read(log_file),
                       what="the reload to be logged at the new level")
            _query(cluster, proxy.port(), "SELECT 'second-needle'")
            [line] = [line for line in _read(log_file).splitlines() if "second-needle" in line]
            assert " INFO reference_proxy.sql [proxyEndpoint=default] [clientConnection=" in line
            assert line.endswith("SQL text: SELECT 'second-needle'")

            proxy.rewrite(proxy_config(cluster, logging__file=log_file, logging__level="info"))
            eventually(lambda: _read(log_file).count(" INFO reference_proxy.server reloaded") == 2,
                       what="the second reload")
            _query(cluster, proxy.port(), "SELECT 'third-needle'")
            text = _read(log_file)
            assert "third-needle" not in text and "first-needle" not in text


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, 64))  # in the child, before it starts


def test_running_out_of_descriptors_is_reported_and_survived(cluster):
    """With 64 descriptors, clients beyond them get PostgreSQL's 53300 instead of silence; the episode
    is logged once with the limit and, when descriptors free up, once more with the count refused;
    the metric counts them; and the proxy serves again."""
    with tempfile.TemporaryDirectory() as tmp:
        stderr = os.path.join(tmp, "stderr.log")
        config = proxy_config(cluster, proxy__client_handshake_timeout=600, proxy__client_login_timeout=600)
        with standalone_proxy(config, tmp, stderr_path=stderr, preexec_fn=_low_descriptor_limit) as proxy:
            assert "file descriptor limit: 64 (hard limit 64, raised from 48)" in _read(stderr)
            held = []
            try:
                for _ in range(80):  # more than the proxy has descriptors for
                    held.append(socket.create_connection(("127.0.0.1", proxy.port())))
                with pytest.raises(psycopg.OperationalError, match="sorry, too many clients already"):
                    _query(cluster, proxy.port(), "SELECT 1")
                text = _read(stderr)
                assert text.count("cannot accept new clients") == 1
                assert "Too many open files (open file limit 64)" in text
            finally:
                for sock in held:
                    sock.close()
            eventually(lambda: _query(cluster, proxy.port(), "SELECT 1") is None,
                       tolerate=(psycopg.OperationalError,), what="the proxy to serve again")
            text = _read(stderr)
            assert "accepting new clients again;" in text
            refused = int(text.split("accepting new clients again; ")[1].split()[0])
            assert refused >= 1
            metrics = proxy.metrics_text()
            line = next(line for line in metrics.splitlines()
                        if line.startswith("ClientConnectionsRefused_total") and 'reason="descriptors"' in line)
            assert float(line.split()[-1]) == refused
