"""External targets on real servers: preflight refusals, and certifying real peers by their endpoints.

* Preflight: a wrong password and a writer DSN that reaches a reader each end ``certify`` before any
  suite with one line and exit status 2, showing no password; a reader DSN served by the writer is
  a warning naming the endpoint.
* PgBouncer in transaction mode (writer DSN only): it leaks session state, so ISOLATION-NO-SESSION-LEAK
  is false, and routing is judged from the role each serving instance reported (no view behind it).
* HAProxy in TCP mode, one in front of the writer and one balancing over the two readers: a plain
  pipe, so isolation holds, and every routing guarantee is judged true from the reported roles.

Each certify run is limited to the routing and isolation suites (``-k``), to stay well under a minute.
"""

from __future__ import annotations

import json

import pytest
from test_certify import certify

from harness.clients.preflight import check_endpoints
from harness.peers.haproxy import HAProxy
from harness.peers.pgbouncer import PgBouncer
from harness.standins.postgres.cluster import PostgresCluster
from harness.targets.external import ExternalTarget

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow, pytest.mark.shares_cluster]

QUICK_SUITES = ["--suite", "conformance", "-k", "routing or isolation"]


def dsn(p, *, password: str | None = None) -> str:
    return (f"host={p.host} port={p.port} user={p.user} password={p.password if password is None else password} "
            f"dbname={p.database}")


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster(readers=2) as c:
        yield c


def test_a_wrong_password_is_refused_before_any_suite(cluster, tmp_path):
    writer = cluster.connection_params(cluster.writer.id)
    done = certify("--target", "external", "--writer-dsn", dsn(writer, password="Wrong-Pw-123456"),
                   "--run-dir", str(tmp_path / "run"), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and f"refused the login of user {writer.user!r}" in lines[0], lines
    assert "Wrong-Pw-123456" not in done.stdout + done.stderr and writer.password not in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()


def test_a_postgres_port_given_with_engine_mysql_is_named_as_such(cluster, tmp_path):
    p = cluster.connection_params(cluster.writer.id)
    done = certify("--target", "external", "--engine", "mysql", "--writer-dsn",
                   f"mysql://{p.user}:{p.password}@{p.host}:{p.port}/{p.database}", "--run-dir", str(tmp_path / "run"),
                   timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "speaks the PostgreSQL protocol, not MySQL (--engine mysql)" in done.stderr
    assert p.password not in done.stdout + done.stderr


def test_a_writer_dsn_that_reaches_a_reader_is_refused(cluster, tmp_path):
    reader = cluster.connection_params(cluster.readers[0].id)
    done = certify("--target", "external", "--writer-dsn", dsn(reader), "--run-dir", str(tmp_path / "run"),
                   timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "reached only read-only instances" in done.stderr and cluster.readers[0].id in done.stderr
    assert reader.password not in done.stdout + done.stderr


def test_a_reader_dsn_served_by_the_writer_is_a_warning_naming_it(cluster):
    writer = cluster.connection_params(cluster.writer.id)
    with HAProxy(writer) as pipe:  # another address for the same writer
        target = ExternalTarget("postgres", dsn(writer), [dsn(pipe.params)])
        warnings = check_endpoints(target, timeout=5)
    assert len(warnings) == 1
    assert f"reader endpoint 127.0.0.1:{pipe.params.port}" in warnings[0] and "writable instance" in warnings[0]
    assert cluster.writer.id in warnings[0]


def verdicts(run_dir) -> dict[str, dict]:
    return json.loads((run_dir / "results.json").read_text())["guarantees"]


def test_pgbouncer_transaction_mode_as_an_external_target(cluster, tmp_path):
    with PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode="transaction", pool_size=3) as bouncer:
        run_dir = tmp_path / "run"
        done = certify("--target", "external", "--writer-dsn", dsn(bouncer.params), *QUICK_SUITES,
                       "--run-dir", str(run_dir), "--seed", "7")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "NOT CERTIFIED: 1 false (ISOLATION-NO-SESSION-LEAK)" in done.stdout
    g = verdicts(run_dir)
    assert g["ISOLATION-NO-SESSION-LEAK"]["valid"] == "false"
    assert g["ROUTE-WRITER-ENDPOINT"]["valid"] == "true", g["ROUTE-WRITER-ENDPOINT"]
    assert "reported" in g["ROUTE-WRITER-ENDPOINT"]["reason"]
    assert bouncer.params.password not in done.stdout + done.stderr


def test_haproxy_tcp_mode_as_an_external_target(cluster, tmp_path):
    writer = cluster.connection_params(cluster.writer.id)
    readers = [cluster.connection_params(r.id) for r in cluster.readers]
    with HAProxy(writer) as to_writer, HAProxy(readers) as to_readers:
        run_dir = tmp_path / "run"
        done = certify("--target", "external", "--writer-dsn", dsn(to_writer.params),
                       "--reader-dsn", dsn(to_readers.params), *QUICK_SUITES, "--run-dir", str(run_dir),
                       "--seed", "7")
    g = verdicts(run_dir)
    assert g["ISOLATION-NO-SESSION-LEAK"]["valid"] == "true", g["ISOLATION-NO-SESSION-LEAK"]
    for gid in ("ROUTE-WRITER-ENDPOINT", "ROUTE-READER-ONLY", "ROUTE-READER-BALANCE"):
        assert g[gid]["valid"] == "true", (gid, g[gid])
    assert "reported" in g["ROUTE-READER-ONLY"]["reason"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.stdout.rstrip().endswith("CERTIFIED")
    assert writer.password not in done.stdout + done.stderr
