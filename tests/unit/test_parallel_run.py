"""The parallel test run's own machinery (``tests/conftest.py``), driven through a child pytest with
three workers on hand-written tests: tests sharing a module-scoped fixture stay on one worker (one per
parameter), and every worker draws ports from a slice of its own.  No servers; a few seconds."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RECORDING = textwrap.dedent('''
    import json, os, pytest

    def record(path, what):
        with open(path, "a") as f:
            f.write(json.dumps({"what": what, "pid": os.getpid(),
                                "slice": os.environ.get("AURORA_HARNESS_PORT_SLICE")}) + "\\n")
''')

SHARED = RECORDING + textwrap.dedent('''
    @pytest.fixture(scope="module")
    def cluster():
        return os.getpid()

    @pytest.mark.parametrize("n", range(6))
    def test_shared(cluster, n):
        record(os.environ["RECORD"], "shared")
''')

PER_ENGINE = RECORDING + textwrap.dedent('''
    @pytest.fixture(scope="module", params=["postgres", "mysql"])
    def cluster(request):
        return request.param

    @pytest.mark.parametrize("n", range(4))
    def test_per_engine(cluster, n):
        record(os.environ["RECORD"], cluster)
''')

ALONE = RECORDING + textwrap.dedent('''
    @pytest.mark.parametrize("n", range(12))
    def test_alone(n):
        record(os.environ["RECORD"], "alone")
''')


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    """What each test of a parallel child run recorded, with our conftest.py and pytest options."""
    root = tmp_path_factory.mktemp("parallel")
    here = Path(__file__).parent.parent
    (root / "conftest.py").write_text((here / "conftest.py").read_text())
    for name, text in (("test_shared.py", SHARED), ("test_per_engine.py", PER_ENGINE), ("test_alone.py", ALONE)):
        (root / name).write_text(text)
    (root / "pytest.ini").write_text("[pytest]\naddopts = -n 3 --dist loadgroup\n")
    out = root / "records.jsonl"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:locust", "-q",
                           "-c", str(root / "pytest.ini"), "--rootdir", str(root), str(root)],
                          check=False, capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "RECORD": str(out)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_tests_sharing_a_module_fixture_run_on_one_worker_one_per_parameter(records):
    workers = collections.defaultdict(set)
    for r in records:
        workers[r["what"]].add(r["pid"])
    assert len(records) == 6 + 8 + 12
    assert len(workers["shared"]) == 1
    assert len(workers["postgres"]) == 1 and len(workers["mysql"]) == 1
    assert len({r["pid"] for r in records}) > 1, "the child run was not parallel"


def test_every_worker_has_a_port_slice_of_its_own(records):
    slices = {r["pid"]: r["slice"] for r in records}
    assert all(s is not None and s.endswith("/3") for s in slices.values()), slices
    assert len(set(slices.values())) == len(slices)


def test_a_certification_run_refuses_workers_and_auto_starts_none(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    base = [sys.executable, "-m", "pytest", str(tmp_path / "test_one.py"), "-p", "no:cacheprovider", "-p",
            "no:locust", "-c", os.devnull, "--rootdir", str(tmp_path), "--target", "external",
            "--writer-dsn", "host=127.0.0.1 port=1 user=nobody", "--run-dir", str(tmp_path / "run")]
    env = {**os.environ, "AURORA_HARNESS_PREFLIGHT_DONE": "1"}
    refused = subprocess.run([*base, "-n", "2"], check=False, capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 4 and "--target runs the suites in one process" in refused.stderr
    assert "Traceback" not in refused.stderr
    auto = subprocess.run([*base, "-n", "auto"], check=False, capture_output=True, text=True, timeout=60, env=env)
    assert auto.returncode == 0, auto.stdout[-2000:]
    assert "workers" not in auto.stdout
