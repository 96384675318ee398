"""``aurora-harness fault`` on a target left running by ``up --relays``: toxics added by hand reach the
proxy's path to the writer, are listed, removed and cleared; wrong input is a one-line error; ``down``
stops the relay keeper with everything else."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest

from harness.clients.address import Address
from harness.clients.client import Client
from harness.history import Recorder
from harness.targets.reference import ReferenceTarget

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

CLI = [sys.executable, "-c", "from harness.cli import main; main()"]


def harness(state_dir, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--state-dir", str(state_dir), *args], capture_output=True, text=True,
                          timeout=300, check=False, stdin=subprocess.DEVNULL)


def keepers() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if "harness.net.relay_keeper" in " ".join(p.info["cmdline"] or [])]


def timed_query(target: ReferenceTarget) -> float:
    """Seconds one autocommit query through the writer endpoint takes (a fresh client each time)."""
    client = Client(Recorder(), "probe", Address.of(target, "writer"), connect_timeout=15, op_timeout=30)
    try:
        assert client.connect().ok
        started = time.monotonic()
        assert client.execute("probe", "SELECT 1").ok
        return time.monotonic() - started
    finally:
        client.close()


def test_faults_by_hand_on_a_running_target(tmp_path) -> None:
    state = tmp_path / "state"
    before = len(keepers())
    up = harness(state, "up", "--engine", "postgres", "--readers", "1", "--relays", "--no-auto-failover")
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        assert len(keepers()) == before + 1, "one relay keeper runs for the target"
        record = json.loads((state / "target.json").read_text())
        target = ReferenceTarget.from_state(record)
        assert sorted(record["relay_keeper"]["ports"]) == ["instance-1", "instance-2"]
        assert oct((state / "target.json").stat().st_mode & 0o777) == "0o600", "the record holds the desk's token"

        added = harness(state, "fault", "add", "latency", "--endpoint", "writer", "--latency-ms", "200")
        assert added.returncode == 0 and "added latency_both" in added.stdout and "instance-1" in added.stdout, \
            added.stderr
        listed = json.loads(harness(state, "fault", "list", "--json").stdout)
        assert [t["latency_ms"] for t in listed["instance-1"]] == [200] and listed["instance-2"] == []
        # 200 ms each way on the proxy's path to the writer: a query cannot answer in under 0.4 s
        assert timed_query(target) >= 0.4

        again = harness(state, "fault", "add", "latency", "--latency-ms", "5")
        assert again.returncode == 1 and "already installed" in again.stderr and "Traceback" not in again.stderr
        bad = harness(state, "fault", "add", "latency", "--latency-mss", "5")
        assert bad.returncode == 1 and "allowed: jitter_ms, latency_ms" in bad.stderr
        unknown = harness(state, "fault", "remove", "nothing")
        assert unknown.returncode == 1 and "no toxic 'nothing'" in unknown.stderr

        removed = harness(state, "fault", "remove", "latency_both")
        assert removed.returncode == 0, removed.stderr
        assert harness(state, "fault", "add", "blackhole", "--endpoint", "reader").returncode == 0
        assert [t["type"] for t in json.loads(harness(state, "fault", "list", "--json").stdout)["instance-2"]] == \
            ["blackhole"]
        assert harness(state, "fault", "clear").returncode == 0
        assert json.loads(harness(state, "fault", "list", "--json").stdout) == {"instance-1": [], "instance-2": []}
    finally:
        down = harness(state, "down")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 15
    while len(keepers()) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(keepers()) == before, "down stops the relay keeper"


def test_fault_needs_a_target_with_relays(tmp_path) -> None:
    nothing = harness(tmp_path, "fault", "list")
    assert nothing.returncode == 1 and "aurora-harness up" in nothing.stderr and "Traceback" not in nothing.stderr
