"""Pool guarantees judged for an external target, whose pool settings the user states.

A reference target stands in for "a proxy someone else runs": it is certified as ``--target
external`` by its endpoints, with the stand-in's instances as direct DSNs and its pool settings
given as ``--max-connections-percent`` / ``--borrow-timeout``.

* BORROW-TIMEOUT: a proxy with 2 % of max_connections (2 backends) and a 2-second borrow timeout is
  exhausted by the test itself (no sibling proxy: an external target has none) and judged true.
* POOL-BACKEND-CAP: the backend count taken on the writer is held against the stated percentage of
  the writer's own max_connections: true when the statement is the proxy's setting, false when the
  user states a cap smaller than the proxy keeps to.
"""

from __future__ import annotations

import json

import pytest
from test_certify import certify
from test_external_direct import endpoint_dsn, instance_dsn

from harness.peers.pgbouncer import PgBouncer
from harness.standins.postgres.cluster import PostgresCluster
from harness.targets.reference import ReferenceTarget

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow, pytest.mark.shares_cluster]


@pytest.fixture(scope="module")
def ref():
    with ReferenceTarget("postgres", readers=1, credentials="static", pool={"max_connections_percent": 20}) as t:
        yield t


def as_external(target: ReferenceTarget, cluster_of: ReferenceTarget) -> list[str]:
    roles = cluster_of.roles()
    return ["--target", "external", "--writer-dsn", endpoint_dsn(cluster_of, target.writer_endpoint),
            "--reader-dsn", endpoint_dsn(cluster_of, target.reader_endpoints[0]),
            "--direct-writer-dsn", instance_dsn(cluster_of, roles["writer"]),
            *[a for r in roles["readers"] for a in ("--direct-reader-dsn", instance_dsn(cluster_of, r))]]


def verdicts(run_dir) -> dict[str, dict]:
    return json.loads((run_dir / "results.json").read_text())["guarantees"]


def test_borrow_timeout_is_judged_on_the_external_proxy_itself(ref, tmp_path):
    with ref.sibling_proxy(pool={"max_connections_percent": 2, "connection_borrow_timeout": 2.0}) as small:
        run_dir = tmp_path / "run"
        done = certify(*as_external(small, ref), "--max-connections-percent", "2", "--borrow-timeout", "2",
                       "--suite", "conformance", "-k", "borrow", "--run-dir", str(run_dir), "--seed", "7",
                       timeout=300)
    g = verdicts(run_dir)
    assert g["BORROW-TIMEOUT"]["valid"] == "true", g["BORROW-TIMEOUT"]
    assert "borrow timeouts against a 2 s timeout" in g["BORROW-TIMEOUT"]["reason"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert ref.credentials.password not in done.stdout + done.stderr


def test_without_stated_settings_the_borrow_timeout_is_unknown_with_the_reason(ref, tmp_path):
    run_dir = tmp_path / "run"
    done = certify(*as_external(ref, ref), "--suite", "conformance", "-k", "borrow", "--run-dir", str(run_dir),
                   timeout=300)
    verdict = verdicts(run_dir)["BORROW-TIMEOUT"]
    assert verdict["valid"] == "unknown" and "pool_settings" in verdict["reason"], verdict
    assert done.returncode == 3


@pytest.mark.parametrize(("stated", "valid", "status"), [("20", "true", 0), ("2", "false", 1)])
def test_the_backend_cap_is_judged_against_the_stated_percentage(ref, tmp_path, stated, valid, status):
    run_dir = tmp_path / "run"
    done = certify(*as_external(ref, ref), "--max-connections-percent", stated, "--suite", "conformance",
                   "-k", "backend_cap", "--run-dir", str(run_dir), "--seed", "7", timeout=300)
    verdict = verdicts(run_dir)["POOL-BACKEND-CAP"]
    assert verdict["valid"] == valid, verdict
    assert f"against a cap of {int(stated)}" in verdict["reason"] and "counted on the servers" in verdict["reason"]
    assert done.returncode == status, done.stdout[-3000:] + done.stderr[-2000:]


def test_a_session_mode_pooler_is_judged_on_the_clients_it_did_not_serve(tmp_path):
    # A cluster of its own: another proxy's idle backends logged in as the same user would be counted.
    with PostgresCluster(readers=0) as cluster, \
            PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode="session", pool_size=3) as bouncer:
        p, w = bouncer.params, cluster.connection_params(cluster.writer.id)
        run_dir = tmp_path / "run"
        done = certify("--target", "external", "--writer-dsn",
                       f"host={p.host} port={p.port} user={p.user} password={p.password} dbname={p.database}",
                       "--direct-writer-dsn",
                       f"host={w.host} port={w.port} user={w.user} password={w.password} dbname={w.database}",
                       "--max-connections-percent", "3",
                       "--borrow-timeout", "2", "--suite", "conformance", "-k", "backend_cap or writer_endpoint",
                       "--run-dir", str(run_dir), "--seed", "7", timeout=300)
    g = verdicts(run_dir)
    multiplexing = g["POOL-MULTIPLEXING"]
    # Three clients got a backend each and kept it; the other 197 waited past the stated borrow
    # timeout and its margin: they count against the guarantee, they are not passed over.
    assert multiplexing["valid"] == "false", multiplexing
    assert "client connects and requests the workload needed were not served" in multiplexing["reason"]
    assert g["POOL-BACKEND-CAP"]["valid"] == "true", g["POOL-BACKEND-CAP"]  # it never exceeds its pool
    assert g["ROUTE-WRITER-ENDPOINT"]["valid"] == "true", g["ROUTE-WRITER-ENDPOINT"]  # sessions take turns
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert p.password not in done.stdout + done.stderr
