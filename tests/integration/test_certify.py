"""End-to-end certification runs through the ``aurora-harness certify`` command.

1. The quick profile against the reference target (stand-in + reference proxy) must pass, and
   leave a complete run directory, on PostgreSQL and on MySQL (MariaDB stand-in).
2. PgBouncer in transaction mode, certified as an external target, must be caught leaking session
   state: ISOLATION-NO-SESSION-LEAK false, with the leaking reads as evidence, the Hypothesis model
   failing with its seed and SQL steps, and exit status 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from harness.peers.pgbouncer import PgBouncer
from harness.standins.postgres.cluster import PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CERTIFY = [sys.executable, "-c", "from harness.cli import main; main()", "certify"]


def certify(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CERTIFY, *args], check=False, capture_output=True, text=True,
                          timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_quick_certification(engine: str, tmp_path) -> dict:
    run_dir = tmp_path / "run"
    done = certify("--target", "reference", "--engine", engine, "--profile", "quick", "--run-dir", str(run_dir),
                   "--json", "--seed", "1234")
    assert done.returncode == 0, f"certify ended {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    report = json.loads(done.stdout)
    assert report["passed"] is True
    # Every guarantee of the profile judged true: no unknown left (durability included, which needs
    # writes that fail definitely; the failover workload makes them).
    assert report["certification"]["headline"] == "CERTIFIED", report["certification"]
    valid = {g["id"]: g["valid"] for g in report["guarantees"]}
    reasons = {g["id"]: g.get("reason", "") for g in report["guarantees"]}
    assert valid["ISOLATION-NO-SESSION-LEAK"] == "true"
    assert "false" not in valid.values()
    assert "[verdict] ISOLATION-NO-SESSION-LEAK" in done.stderr  # live progress went to stderr with --json

    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "complete"
    assert "NETFAULT-SILENT-DETECTED" in results["not_in_profile"]  # network faults are full-only
    assert valid["FAILOVER-WRITE-GAP"] == "true"  # one failover is part of quick
    assert valid["ROTATION-NEW-LOGINS"] == valid["ROTATION-SESSIONS-KEPT"] == "true"  # and one rotation
    assert valid["IAM-TOKEN-CHECKS"] == "true"  # boto3 tokens, good and bad, against the IAM user
    assert valid["TLS-REQUIRED"] == "true"  # a sibling proxy that requires TLS, both endpoints
    assert valid["CANCEL-OWN-QUERY"] == valid["CANCEL-NEVER-OTHERS"] == "true"  # cancels mapped by session
    assert valid["SESSION-OWN-STATE"] == valid["TRANSACTION-ONE-BACKEND"] == "true"
    assert "ROTATION-ALTERNATING-SESSIONS" in results["not_in_profile"]
    assert results["run"]["versions"]["server"], "the server version is read through the engine's driver"
    assert valid["STORM-SERVED"] == "true"
    for test in results["tests"]:
        assert test["outcome"] == "passed", test
        if test["guarantees"]:
            assert (run_dir / test["history"]).stat().st_size > 0, test["id"]
    assert json.loads((run_dir / "target.json").read_text())["target"] == "reference"
    assert (run_dir / "proxy.log").exists()
    suites = ET.parse(run_dir / "junit.xml").getroot()
    cases = suites.find("testsuite[@name='guarantees']").findall("testcase")
    assert {c.get("name") for c in cases} == set(valid)
    assert not any(c.find("failure") is not None for c in cases)
    return reasons


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_quick_certification_of_the_reference_target_passes(tmp_path):
    assert_quick_certification("postgres", tmp_path)


@pytest.mark.mysql
@pytest.mark.timeout(900)
def test_quick_certification_of_the_mysql_reference_target_passes(tmp_path):
    reasons = assert_quick_certification("mysql", tmp_path)
    # MySQL cannot list temporary tables or SQL prepared statements: the verdict says they were
    # looked for by name only, never silently.
    assert "temp_table: asked by name" in reasons["ISOLATION-NO-SESSION-LEAK"]
    assert "prepared_statement: asked by name" in reasons["ISOLATION-NO-SESSION-LEAK"]


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_pgbouncer_transaction_mode_is_caught_leaking_session_state(tmp_path):
    with PostgresCluster(readers=0) as cluster, \
            PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode="transaction", pool_size=3) as bouncer:
        p = bouncer.params
        dsn = f"host={p.host} port={p.port} user={p.user} password={p.password} dbname={p.database}"
        run_dir = tmp_path / "run"
        done = certify("--target", "external", "--writer-dsn", dsn, "--suite", "conformance", "--suite", "models",
                       "-k", "isolation or private_sessions", "--run-dir", str(run_dir), "--seed", "7")
    assert done.returncode == 1, f"expected a failed certification:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    assert "ISOLATION-NO-SESSION-LEAK" in done.stdout and "FALSE" in done.stdout
    assert "NOT CERTIFIED: 1 false (ISOLATION-NO-SESSION-LEAK)" in done.stdout
    assert p.password not in done.stdout + done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    verdict = results["guarantees"]["ISOLATION-NO-SESSION-LEAK"]
    assert verdict["valid"] == "false"
    assert verdict["figure"] > 0
    evidence = verdict["evidence"]
    assert evidence, "a false isolation verdict must name the leaking operations"
    for op in evidence:
        assert op["f"] == "read_state" and op["type"] == "ok"
        observed = op["value"]["value"]
        # What leaked is some other client's state: a tag naming another process, or an object it made.
        assert observed is True or (isinstance(observed, str) and observed != f"client-{op['process']}")
    # The Hypothesis model catches it too, and says how to replay it.
    model = next(t for t in results["tests"] if t["id"].endswith("test_sessions_behave_like_private_sessions"))
    assert model["outcome"] == "failed"
    assert "seed '7'" in model["message"] or "seed 7" in model["message"], model["message"][-800:]
    assert "-- client" in done.stdout  # the SQL steps of the shrunk example
    failures = ET.parse(run_dir / "junit.xml").getroot().findall(".//testcase[@name='ISOLATION-NO-SESSION-LEAK']/failure")
    assert failures and "read_state" in failures[0].text


@pytest.mark.mysql
@pytest.mark.timeout(600)
def test_mysql_proxy_ignoring_variable_sets_is_caught_leaking_user_variables(tmp_path):
    """SessionPinningFilters = EXCLUDE_VARIABLE_SETS: ``SET @x`` no longer pins, so the variable stays
    on a backend that goes back to the pool, as AWS warns.  The MySQL isolation suite must see it."""
    from urllib.parse import quote

    from harness.targets.reference import ReferenceTarget

    with ReferenceTarget("mysql", readers=0, pool={"session_pinning_filters": ["EXCLUDE_VARIABLE_SETS"],
                                                  "max_connections_percent": 3}) as leaky:
        w, c = leaky.writer_endpoint, leaky.credentials
        dsn = f"mysql://{c.user}:{quote(c.password, safe='')}@{w.host}:{w.port}/{c.database}"
        run_dir = tmp_path / "run"
        done = certify("--target", "external", "--engine", "mysql", "--writer-dsn", dsn, "--suite", "conformance",
                       "-k", "isolation", "--run-dir", str(run_dir), "--seed", "7")
    assert done.returncode == 1, f"expected a failed certification:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    verdict = json.loads((run_dir / "results.json").read_text())["guarantees"]["ISOLATION-NO-SESSION-LEAK"]
    assert verdict["valid"] == "false" and verdict["figure"] > 0
    assert "kinds: setting" in verdict["reason"]
    for op in verdict["evidence"]:
        assert op["f"] == "read_state" and op["value"]["kind"] == "setting"
        assert op["value"]["value"] != f"client-{op['process']}"  # another client's user variable


@pytest.mark.mysql
@pytest.mark.timeout(600)
def test_mysql_proxy_that_never_resets_is_caught_leaking_session_state(tmp_path):
    """The proxy's unsafe test mode lends MySQL backends on without pinning or resetting them: the
    isolation suite and the session model, run by the same ``certify`` as a passing run, must both
    catch it."""
    run_dir = tmp_path / "run"
    done = certify("--target", "reference", "--engine", "mysql", "--suite", "conformance", "--suite", "models",
                   "-k", "isolation or private_sessions", "--proxy-setting", "testing.failpoint=leak_session_state",
                   "--run-dir", str(run_dir), "--seed", "7")
    assert done.returncode == 1, f"expected a failed certification:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    results = json.loads((run_dir / "results.json").read_text())
    verdict = results["guarantees"]["ISOLATION-NO-SESSION-LEAK"]
    assert verdict["valid"] == "false" and verdict["figure"] > 0
    kinds = {op["value"]["kind"] for op in verdict["evidence"]}
    assert kinds & {"setting", "advisory_lock", "temp_table"}, kinds
    model = next(t for t in results["tests"] if t["id"].endswith("test_sessions_behave_like_private_sessions"))
    assert model["outcome"] == "failed"
    assert json.loads((run_dir / "target.json").read_text())["proxy_testing"] == {"failpoint": "leak_session_state"}
