"""End-to-end certification runs through the ``aurora-harness certify`` command.

1. The quick profile against the reference target (stand-in + reference proxy) must pass, and
   leave a complete run directory, on PostgreSQL and on MySQL (MariaDB stand-in).
2. PgBouncer in transaction mode, certified as an external target, must be caught leaking session
   state: ISOLATION-NO-SESSION-LEAK false, with the leaking reads as evidence, the Hypothesis model
   failing with its seed and SQL steps, and exit status 1.
3. The report.html of both runs, opened in headless Chromium, shows the headline, every guarantee,
   the failed tests and every plot; ``aurora-harness compare`` of the two lists the isolation flip and
   the latency difference.  The two PostgreSQL runs are made once per module for this (each test
   reads them; none changes them).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.peers.pgbouncer import PgBouncer
from harness.standins.postgres.cluster import PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CERTIFY = [sys.executable, "-c", "from harness.cli import main; main()", "certify"]


def certify(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CERTIFY, *args], check=False, capture_output=True, text=True,
                          timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_quick_certification(engine: str, run_dir: Path) -> dict:
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


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished certification: its run directory, what the command printed, the password it used."""

    run_dir: Path
    done: subprocess.CompletedProcess | None = None
    password: str | None = None


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Run:
    """The quick profile against the reference target on PostgreSQL, checked as it is made."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    assert_quick_certification("postgres", run_dir)
    return Run(run_dir)


@pytest.fixture(scope="module")
def pgbouncer_run(tmp_path_factory) -> Run:
    """PgBouncer in transaction mode certified as an external target (isolation and the model only)."""
    with PostgresCluster(readers=0) as cluster, \
            PgBouncer(cluster.connection_params(cluster.writer.id), pool_mode="transaction", pool_size=3) as bouncer:
        p = bouncer.params
        dsn = f"host={p.host} port={p.port} user={p.user} password={p.password} dbname={p.database}"
        run_dir = tmp_path_factory.mktemp("pgbouncer") / "run"
        done = certify("--target", "external", "--writer-dsn", dsn, "--suite", "conformance", "--suite", "models",
                       "-k", "isolation or private_sessions", "--run-dir", str(run_dir), "--seed", "7")
    return Run(run_dir, done, p.password)


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_quick_certification_of_the_reference_target_passes(reference_run):
    assert (reference_run.run_dir / "report.html").stat().st_size > 0


@pytest.mark.mysql
@pytest.mark.timeout(900)
def test_quick_certification_of_the_mysql_reference_target_passes(tmp_path):
    reasons = assert_quick_certification("mysql", tmp_path / "run")
    # MySQL cannot list temporary tables or SQL prepared statements: the verdict says they were
    # looked for by name only, never silently.
    assert "temp_table: asked by name" in reasons["ISOLATION-NO-SESSION-LEAK"]
    assert "prepared_statement: asked by name" in reasons["ISOLATION-NO-SESSION-LEAK"]


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_pgbouncer_transaction_mode_is_caught_leaking_session_state(pgbouncer_run):
    done, run_dir, password = pgbouncer_run.done, pgbouncer_run.run_dir, pgbouncer_run.password
    assert done.returncode == 1, f"expected a failed certification:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    assert "ISOLATION-NO-SESSION-LEAK" in done.stdout and "FALSE" in done.stdout
    assert "NOT CERTIFIED: 1 false (ISOLATION-NO-SESSION-LEAK)" in done.stdout
    assert password not in done.stdout + done.stderr
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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_dom(page: Path, profile_dir: Path) -> str:
    """The page as headless Chromium parsed it (offline: a file URL, and the page fetches nothing)."""
    assert CHROMIUM, "chromium is not installed (./dev.sh installs it)"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile_dir}",
                           "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "</html>" in done.stdout, done.stderr[-2000:]
    return done.stdout


def assert_page_shows_the_run(run: Run, profile_dir: Path, *, headline: str, plots: set[tuple[str, str]]) -> str:
    """Headline, one row per guarantee with its verdict, each failed test, and every plot drawn."""
    dom = rendered_dom(run.run_dir / "report.html", profile_dir)
    results = json.loads((run.run_dir / "results.json").read_text())
    assert re.search(rf'<header class="banner [a-z-]+" id="headline">\s*<h1>{headline}</h1>', dom), dom[:2000]
    rows = dict(re.findall(r'data-guarantee="([A-Z0-9-]+)" data-valid="(\w+)"', dom))
    assert rows == {gid: g["valid"] for gid, g in results["guarantees"].items()}
    failed = [t["id"] for t in results["tests"] if t["outcome"] in ("failed", "error")]
    assert re.findall(r'class="failed-test" data-test="([^"]+)"', dom) == failed
    drawn = re.findall(r'<figure class="plot" data-plot="([a-z-]+)" data-test="([^"]+)">\s*<svg', dom)
    assert len(drawn) == (run.run_dir / "report.html").read_text().count('<figure class="plot"')  # all parsed
    assert plots <= {(kind, test.rsplit("::", 1)[-1]) for kind, test in drawn}, drawn
    assert "<script" not in dom
    return dom


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_the_report_of_a_quick_run_in_a_browser(reference_run, tmp_path):
    dom = assert_page_shows_the_run(reference_run, tmp_path, headline="CERTIFIED", plots={
        ("latency", "test_failover_under_mixed_load"), ("throughput", "test_failover_under_mixed_load"),
        ("failover", "test_failover_under_mixed_load"), ("failover", "test_silent_failover"),
        ("backends", "test_backend_cap_under_200_clients"), ("latency", "test_added_latency"),
        ("proxy-connections", "test_backend_cap_under_200_clients")})
    # Pinned sessions as the proxy reports them: the tests that leave session state pin sessions for
    # long enough to be sampled (which ones depends on the sampling instants).
    assert 'data-plot="pinned"' in dom
    assert "reference-proxy" in dom and "aurora-harness certify --target reference" in dom
    assert '<a href="junit.xml">' in dom and '<a href="proxy.log">' in dom
    # Evidence and plots are on the wall clock: the histories carry their anchor.
    history = next((reference_run.run_dir / "history").glob("*failover_under_mixed_load*.jsonl"))
    assert json.loads(history.read_text().splitlines()[0])["type"] == "clock"
    assert "seconds since the trigger at 20" in dom


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_the_report_of_a_failed_pgbouncer_run_in_a_browser(pgbouncer_run, tmp_path):
    dom = assert_page_shows_the_run(pgbouncer_run, tmp_path, headline="NOT CERTIFIED", plots={
        ("latency", "test_session_state_never_leaks"), ("throughput", "test_session_state_never_leaks")})
    assert "test_sessions_behave_like_private_sessions" in dom and "seed" in dom
    # The leaking reads as evidence, with wall-clock times; the DSN's password masked in the command.
    assert re.search(r"<td class=\"num\">20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}</td>", dom)
    assert "password=***" in dom and pgbouncer_run.password not in dom


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_compare_lists_the_isolation_flip_and_the_latency_difference(reference_run, pgbouncer_run, tmp_path):
    page = tmp_path / "compare.html"
    done = subprocess.run([*CERTIFY[:-1], "compare", str(reference_run.run_dir), str(pgbouncer_run.run_dir),
                           "--html", str(page)], capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr  # a verdict got worse
    assert "ISOLATION-NO-SESSION-LEAK: TRUE -> FALSE (worse)" in done.stdout
    assert re.search(r"writer: p50 \d+\.\d\d ms -> \d+\.\d\d ms [+-]\d+\.\d\d ms", done.stdout), done.stdout
    dom = rendered_dom(page, tmp_path / "profile")
    assert 'class="flip worse" data-guarantee="ISOLATION-NO-SESSION-LEAK"' in dom
    assert 'data-endpoint="writer"' in dom


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
