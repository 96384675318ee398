"""External targets on real servers: preflight refusals, and certifying real peers by their endpoints.

* Preflight: a wrong password and a writer DSN that reaches a reader each end ``certify`` before any
  suite with one line and exit status 2, showing no password; a reader DSN served by the writer is
  a warning naming the endpoint.
* Each peer is certified as a user would point the harness at it, and its documented behaviour is
  what the verdicts must say:

  - PgBouncer, transaction mode (writer DSN only): it leaks session state, so
    ISOLATION-NO-SESSION-LEAK is false, and a session loses its own (SESSION-OWN-STATE false); routing is judged from the role each serving instance
    reported (no view behind it).
  - PgBouncer, session mode: nothing leaks and what pins stays pinned, but every session keeps one
    server connection for good, so a statement that should leave it free to move (PIN-NON-TRIGGERS)
    never does.
  - PgBouncer, statement mode: it hands the server connection on after every statement and refuses
    a transaction of more than one, so a pinning statement pins nothing and the session model's
    transactions are refused.
  - HAProxy in TCP mode, one in front of the writer and one balancing over the two readers: a plain
    pipe, so isolation holds, and every routing guarantee is judged true from the reported roles.
  - pgpool-II with load balancing: one port for the whole cluster, given as the writer DSN (the
    preflight warns that the reader DSN is the writer's address); it sends writer-endpoint reads to
    replicas and reader-endpoint reads to the primary, so ROUTE-WRITER-ENDPOINT and ROUTE-READER-ONLY
    are false, and a session's own state is not where its reads land (SESSION-OWN-STATE false).
  - No proxy at all: the writer and a reader instance themselves; isolation and routing hold.

Each certify run is limited to the suites that judge the point (``-k``), to stay well under a minute:
a pooler in session mode holds a server connection per client, so the pooling suite's 200 sessions
held at once would wait for minutes there.
"""

from __future__ import annotations

import json
import re

import pytest
from test_certify import certify

from harness.clients.preflight import check_endpoints
from harness.peers.haproxy import HAProxy
from harness.peers.pgbouncer import PgBouncer
from harness.peers.pgpool import PgPool
from harness.standins.postgres.cluster import PostgresCluster
from harness.targets.external import ExternalTarget

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow, pytest.mark.shares_cluster]

QUICK_SUITES = ["--suite", "conformance", "-k", "routing or isolation or own_state or transactions"]
MODEL = "suites/models/test_sessions_model.py::test_sessions_behave_like_private_sessions"


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


def test_a_writer_endpoint_that_serves_reads_from_replicas_but_writes_on_the_writer_is_a_warning(cluster):
    # pgpool-II with no read weight on the primary: every read a replica's, every write the primary's.
    with PgPool([cluster.connection_params(i.id) for i in cluster.instances],
                weights=[0 if i.id == cluster.writer.id else 1 for i in cluster.instances]) as pool:
        warnings = check_endpoints(ExternalTarget("postgres", dsn(pool.params)), timeout=5)
    assert len(warnings) == 1, warnings
    assert f"writer endpoint 127.0.0.1:{pool.params.port} served every read from a read-only instance" in warnings[0]
    assert "routes writes to a writer" in warnings[0] and cluster.writer.id not in warnings[0]


def verdicts(run_dir) -> dict[str, dict]:
    return json.loads((run_dir / "results.json").read_text())["guarantees"]


def test_pgbouncer_transaction_mode_as_an_external_target(cluster, tmp_path):
    with PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode="transaction", pool_size=3) as bouncer:
        run_dir = tmp_path / "run"
        done = certify("--target", "external", "--writer-dsn", dsn(bouncer.params), *QUICK_SUITES,
                       "--run-dir", str(run_dir), "--seed", "7")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "NOT CERTIFIED: 2 false (ISOLATION-NO-SESSION-LEAK, SESSION-OWN-STATE)" in done.stdout
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
    for gid in ("ROUTE-WRITER-ENDPOINT", "ROUTE-READER-ONLY", "ROUTE-READER-BALANCE", "SESSION-OWN-STATE",
                "TRANSACTION-ONE-BACKEND"):
        assert g[gid]["valid"] == "true", (gid, g[gid])
    assert "reported" in g["ROUTE-READER-ONLY"]["reason"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.stdout.rstrip().endswith("CERTIFIED")
    assert writer.password not in done.stdout + done.stderr


def certify_peer(run_dir, writer, readers=(), *, select: str, suites=("conformance",)):
    args = ["--target", "external", "--writer-dsn", dsn(writer)]
    for r in readers:
        args += ["--reader-dsn", dsn(r)]
    for suite in suites:
        args += ["--suite", suite]
    return certify(*args, "-k", select, "--run-dir", str(run_dir), "--seed", "7")


def test_pgbouncer_session_mode_keeps_each_session_on_one_server_connection(cluster, tmp_path):
    with PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode="session", pool_size=20) as bouncer:
        done = certify_peer(tmp_path / "run", bouncer.params,
                            select="routing or isolation or pinning or own_state or transactions")
    g = verdicts(tmp_path / "run")
    for gid in ("ISOLATION-NO-SESSION-LEAK", "PIN-TRIGGERS", "ROUTE-WRITER-ENDPOINT", "SESSION-OWN-STATE",
                "TRANSACTION-ONE-BACKEND"):
        assert g[gid]["valid"] == "true", (gid, g[gid])
    assert g["PIN-NON-TRIGGERS"]["valid"] == "false", g["PIN-NON-TRIGGERS"]
    assert "stayed on one backend" in g["PIN-NON-TRIGGERS"]["reason"]
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "NOT CERTIFIED: 1 false (PIN-NON-TRIGGERS)" in done.stdout
    assert bouncer.params.password not in done.stdout + done.stderr


def test_pgbouncer_statement_mode_pins_nothing_and_refuses_transactions(cluster, tmp_path):
    with PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode="statement", pool_size=20) as bouncer:
        done = certify_peer(tmp_path / "run", bouncer.params, select="pinning or sessions_model",
                            suites=("conformance", "models"))
    g = verdicts(tmp_path / "run")
    assert g["PIN-TRIGGERS"]["valid"] == "false", g["PIN-TRIGGERS"]
    assert "moved" in g["PIN-TRIGGERS"]["reason"]
    # (PIN-NON-TRIGGERS is not asserted: whether an unpinned session moves depends on the load, as
    # PgBouncer lends the most recently freed server connection first.)
    # The refusal also shows as the session model's failed check, in PgBouncer's own words
    # (TRANSACTION-ONE-BACKEND false for it: test_session_guarantees_caught.py).
    model = next(t for t in json.loads((tmp_path / "run" / "results.json").read_text())["tests"] if t["id"] == MODEL)
    assert model["outcome"] == "failed"
    assert "transaction blocks not allowed in statement pooling mode" in model["message"]
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"check {MODEL} failed" in done.stdout
    assert bouncer.params.password not in done.stdout + done.stderr


def test_pgpool_load_balancing_sends_writer_endpoint_reads_to_replicas(cluster, tmp_path):
    with PgPool([cluster.connection_params(i.id) for i in cluster.instances]) as pool:
        done = certify_peer(tmp_path / "run", pool.params, [pool.params],
                            select="routing or isolation or own_state or transactions")
    g = verdicts(tmp_path / "run")
    # Load balancing sends a session's reads to the instance it picked for the session, and its writes
    # to the primary: a session's own temporary table or prepared statement is missing where its reads
    # land.  (A transaction's reads before its first write go astray too, but only in a session that
    # did not pick the primary, one in three here: TRANSACTION-ONE-BACKEND is not asserted.)
    assert g["SESSION-OWN-STATE"]["valid"] == "false", g["SESSION-OWN-STATE"]
    assert "is the writer endpoint's address too" in done.stderr
    reader_only = g["ROUTE-READER-ONLY"]
    assert reader_only["valid"] == "false", reader_only
    served_by_writer = re.search(r"(\d+) served by the writer", reader_only["reason"])
    assert served_by_writer and int(served_by_writer.group(1)) > 0, reader_only["reason"]
    assert {op["node"] for op in reader_only["evidence"] if op.get("type") == "ok"} <= {cluster.writer.id}
    route = g["ROUTE-WRITER-ENDPOINT"]
    assert route["valid"] == "false", route
    assert "reported" in route["reason"]
    assert {op["endpoint"] for op in route["evidence"]} == {"writer"}
    assert {op["node"] for op in route["evidence"]} <= {r.id for r in cluster.readers}
    # Each client gets its own pgpool child and its backends are reset before the next one: no leak.
    assert g["ISOLATION-NO-SESSION-LEAK"]["valid"] == "true", g["ISOLATION-NO-SESSION-LEAK"]
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "ROUTE-WRITER-ENDPOINT" in done.stdout and "SESSION-OWN-STATE" in done.stdout
    assert pool.params.password not in done.stdout + done.stderr


def test_no_proxy_at_all_the_instances_themselves(cluster, tmp_path):
    writer = cluster.connection_params(cluster.writer.id)
    reader = cluster.connection_params(cluster.readers[0].id)
    done = certify_peer(tmp_path / "run", writer, [reader], select="routing or isolation")
    g = verdicts(tmp_path / "run")
    for gid in ("ISOLATION-NO-SESSION-LEAK", "ROUTE-WRITER-ENDPOINT", "ROUTE-READER-ONLY"):
        assert g[gid]["valid"] == "true", (gid, g[gid])
    # One reader endpoint that is one instance: there is nothing to balance.
    assert g["ROUTE-READER-BALANCE"]["valid"] == "unknown" and "found 1" in g["ROUTE-READER-BALANCE"]["reason"]
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    assert "INCOMPLETE: 1 guarantee unknown" in done.stdout
    assert writer.password not in done.stdout + done.stderr


def test_pgbouncer_transaction_mode_maps_cancels_by_client(cluster, tmp_path):
    """PgBouncer forwards a client's CancelRequest to the server connection that client is linked to
    at that moment and drops one from a client linked to none: both cancel guarantees hold through a
    proxy that is not ours, and a pool smaller than the sleepers keeps its backends shared."""
    with PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode="transaction", pool_size=4) as bouncer:
        run_dir = tmp_path / "run"
        done = certify_peer(run_dir, bouncer.params, select="test_cancel")
    g = verdicts(run_dir)
    for gid in ("CANCEL-OWN-QUERY", "CANCEL-NEVER-OTHERS"):
        assert g[gid]["valid"] == "true", (gid, g[gid])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
