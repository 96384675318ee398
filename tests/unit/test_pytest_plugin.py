"""The harness pytest plugin, driven through a child pytest on hand-written tests (no servers).

The external target is given an address nothing listens on: its endpoints are only used by the
clients, which these tests do not make, so the plugin's judging is exercised without a database.
The runs say the endpoints were checked already (as ``aurora-harness certify`` does), except the
one that shows the plugin's own preflight refusing them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SUITE = textwrap.dedent('''
    import pytest
    from harness.targets.base import Capability

    def _leak(recorder):
        for process, tag in (("c1", "client-c1"), ("c2", "client-c2")):
            inv = recorder.invoke(process, "set_state", {"kind": "setting", "name": "t", "value": tag})
            recorder.ok(inv, {"kind": "setting", "name": "t", "value": tag})
        inv = recorder.invoke("c2", "read_state", {"kind": "setting", "name": "t"})
        recorder.ok(inv, {"kind": "setting", "name": "t", "value": "client-c1"})

    @pytest.mark.guarantee("ISOLATION-NO-SESSION-LEAK")
    def test_leaks(recorder):
        _leak(recorder)

    @pytest.mark.guarantee("FAILOVER-WRITE-GAP")
    def test_needs_failover(target, recorder):
        target.require(Capability.FAILOVER)

    @pytest.mark.profile("full")
    @pytest.mark.guarantee("STORM-SERVED")
    def test_only_in_full(recorder):
        pass

    def test_plain_check():
        assert True

    def test_plain_check_needs_a_sibling_proxy(target):
        target.require(Capability.SIBLING_PROXY)
''')


def run_suite(tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_suite.py"), "-c", str(tmp_path / "pytest.ini"),
         "-p", "no:locust", "-p", "no:cacheprovider", "-p", "no:aurora_harness", "-p", "harness.pytest_plugin",
         "--target", "external", "--writer-dsn", "host=127.0.0.1 port=1 user=nobody", "--run-dir", str(run_dir),
         *extra], check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "AURORA_HARNESS_PREFLIGHT_DONE": "1"})
    results = run_dir / "results.json"
    return done, json.loads(results.read_text()) if results.exists() else {}


def test_false_fails_the_test_with_evidence_and_unsupported_is_unknown(tmp_path):
    done, results = run_suite(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "ISOLATION-NO-SESSION-LEAK is FALSE" in done.stdout
    assert '"process": "c2"' in done.stdout  # the leaking read is printed as evidence
    assert "[verdict] ISOLATION-NO-SESSION-LEAK" in done.stdout  # live progress
    lines = done.stdout.splitlines()
    assert "-- test_suite.py (4 tests)" in lines, "the suite's heading"
    progress = [l for l in lines if l.startswith("[") and " elapsed, " in l]
    assert progress and progress[-1].split()[0].startswith("[") and "last test]" in progress[-1], progress
    assert not any(set(l.strip()) <= set(".FsEx") and l.strip() for l in lines), "no dots mix into the lines"
    g = results["guarantees"]
    assert g["ISOLATION-NO-SESSION-LEAK"]["valid"] == "false"
    assert g["ISOLATION-NO-SESSION-LEAK"]["evidence"][0]["value"]["value"] == "client-c1"
    assert g["FAILOVER-WRITE-GAP"]["valid"] == "unknown"
    assert "does not support failover" in g["FAILOVER-WRITE-GAP"]["reason"]
    assert "STORM-SERVED" not in g and results["not_in_profile"] == ["STORM-SERVED"]
    outcomes = {t["id"].split("::")[-1]: t["outcome"] for t in results["tests"]}
    assert outcomes == {"test_leaks": "failed", "test_needs_failover": "skipped", "test_plain_check": "passed",
                        "test_plain_check_needs_a_sibling_proxy": "skipped"}
    sibling = next(t for t in results["tests"] if t["id"].endswith("test_plain_check_needs_a_sibling_proxy"))
    assert "unknown" in sibling["message"] and "does not support sibling_proxy" in sibling["message"]
    assert results["status"] == "complete"
    history = tmp_path / "run" / next(t["history"] for t in results["tests"] if t["id"].endswith("test_leaks"))
    assert len(history.read_text().splitlines()) == 1 + 6  # the clock anchor, then the ops
    assert "ISOLATION-NO-SESSION-LEAK" in (tmp_path / "run" / "junit.xml").read_text()  # rendered at the end


def test_full_profile_runs_the_full_only_tests(tmp_path):
    _, results = run_suite(tmp_path, "--profile", "full", "-k", "only_in_full")
    assert list(results["guarantees"]) == ["STORM-SERVED"]
    assert results["guarantees"]["STORM-SERVED"]["valid"] == "unknown"  # an empty history proves nothing


def test_bad_threshold_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text("NOT-A-GUARANTEE = 1\n")
    (tmp_path / "test_suite.py").write_text(SUITE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_suite.py"), "-p", "no:locust",
         "-p", "no:aurora_harness", "-p", "harness.pytest_plugin", "--target", "external",
         "--writer-dsn", "host=127.0.0.1 port=1 user=nobody", "--thresholds", str(bad)],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 4  # pytest's usage error
    assert "NOT-A-GUARANTEE" in done.stderr


PASSWORD = "Sekr3t-plugin-pw"


def test_an_unreachable_external_target_stops_the_session_in_one_line(tmp_path):
    (tmp_path / "test_suite.py").write_text(SUITE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_suite.py"), "-p", "no:locust", "-p", "no:cacheprovider",
         "-p", "no:aurora_harness", "-p", "harness.pytest_plugin", "--target", "external",
         "--writer-dsn", f"host=127.0.0.1 port=1 user=nobody password={PASSWORD}", "--run-dir", str(tmp_path / "run")],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 4, done.stdout  # pytest's usage error: no test ran
    assert "preflight: writer endpoint 127.0.0.1:1 is unreachable" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr and PASSWORD not in done.stdout + done.stderr
    assert "passed" not in done.stdout and "failed" not in done.stdout


def test_a_traceback_never_shows_the_targets_password(tmp_path):
    """Long tracebacks print every frame's arguments; a driver's connect arguments hold the password."""
    (tmp_path / "test_secret.py").write_text(textwrap.dedent(f'''
        import pytest

        def connect(host, password):
            raise RuntimeError("connection failed for " + password)

        @pytest.mark.guarantee("ROUTE-WRITER-ENDPOINT")
        def test_judged(recorder):
            connect("127.0.0.1", "{PASSWORD}")

        def test_plain():
            print("captured {PASSWORD}")
            connect("127.0.0.1", "{PASSWORD}")
    '''))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_secret.py"), "-p", "no:locust", "-p", "no:cacheprovider",
         "-p", "no:aurora_harness", "-p", "harness.pytest_plugin", "--target", "external", "--tb=long",
         "--writer-dsn", f"host=127.0.0.1 port=1 user=nobody password={PASSWORD}", "--run-dir", str(tmp_path / "run")],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "AURORA_HARNESS_PREFLIGHT_DONE": "1"})
    assert done.returncode == 1
    assert "connection failed for ***" in done.stdout and "password = '***'" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    assert PASSWORD not in (tmp_path / "run" / "results.json").read_text()


def test_proxy_settings_reach_the_target_which_refuses_what_does_not_apply(tmp_path):
    done, results = run_suite(tmp_path, "-k", "needs_failover", "--proxy-setting", "testing.failpoint=leak_session_state")
    assert done.returncode == 4 and not results  # refused before any test
    assert "--proxy-setting is for --target reference" in done.stderr


def test_the_server_version_is_asked_through_the_engines_driver_in_its_words(monkeypatch):
    from harness import pytest_plugin
    from harness.clients import client as client_module
    from harness.targets.base import Credentials, Endpoint, Target

    class OneWriter(Target):
        kind = "fake"
        writer_endpoint = Endpoint("default", "writer", "127.0.0.1", 5001)
        reader_endpoints = ()
        credentials = Credentials("u", "p", "db")

    asked = []

    def answer(address, sql, *, connect_timeout):
        asked.append((address.engine, address.port, sql))
        if address.engine == "postgres":
            raise OSError("refused")
        return "10.11.19-MariaDB"

    monkeypatch.setattr(client_module, "query_value", answer)
    assert pytest_plugin._server_version(OneWriter("mysql")) == "10.11.19-MariaDB"
    assert pytest_plugin._server_version(OneWriter("postgres")) is None  # unreadable: left out, not fatal
    assert asked == [("mysql", 5001, "SELECT VERSION()"), ("postgres", 5001, "SHOW server_version")]


def test_a_check_outside_the_catalogue_that_the_target_cannot_run_is_skipped_with_its_reason(tmp_path):
    """test_netfault[reset_peer] names no guarantee: on an external target its Unsupported is a skip
    saying why (unknown), never a failed check, and the run is INCOMPLETE rather than NOT CERTIFIED."""
    from harness.runstore import certification

    suites = Path(__file__).resolve().parents[2] / "suites"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(suites / "chaos" / "test_netfault.py"), "-p", "no:locust",
         "-p", "no:cacheprovider", "-p", "no:aurora_harness", "-p", "harness.pytest_plugin", "--rootdir",
         str(suites.parent), "--target", "external", "--writer-dsn", "host=127.0.0.1 port=1 user=nobody",
         "--profile", "full", "--run-dir", str(tmp_path / "run")],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "AURORA_HARNESS_PREFLIGHT_DONE": "1"})
    assert done.returncode == 0, done.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    reset = next(t for t in results["tests"] if "reset_peer" in t["id"])
    assert reset["outcome"] == "skipped" and "does not support network_faults" in reset["message"]
    assert results["guarantees"]["NETFAULT-SILENT-DETECTED"]["valid"] == "unknown"
    assert certification(results).headline == "INCOMPLETE"
