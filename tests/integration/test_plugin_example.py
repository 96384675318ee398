"""The README's example of a user's own tests on the pytest plugin, run as a user runs it.

``examples/test_my_proxy.py`` must pass against the reference target on both engines, with its
guarantees judged true in the run directory; without ``--target`` the same file is one usage error
(exit 4, one line naming what to give), not a traceback per test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "test_my_proxy.py"


def run_example(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", str(EXAMPLE), "-p", "no:cacheprovider", "-o", "addopts=",
                           "-q", *args], capture_output=True, text=True, timeout=600, check=False,
                          stdin=subprocess.DEVNULL, cwd=EXAMPLE.parent.parent)


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres),
                                    pytest.param("mysql", marks=pytest.mark.mysql)])
def test_the_example_passes_and_its_guarantees_are_judged(tmp_path, engine: str) -> None:
    done = run_example("--target", "reference", "--engine", engine, "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {gid: g["valid"] for gid, g in results["guarantees"].items()} == {
        "ROUTE-READER-ONLY": "true", "ROUTE-WRITER-ENDPOINT": "true"}


def test_without_a_target_the_example_is_one_usage_error() -> None:
    done = run_example()
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "need a target: give --target" in errors[0], errors
    assert "Traceback" not in done.stdout + done.stderr
