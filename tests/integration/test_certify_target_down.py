"""``certify`` against a target that cannot be brought up: the run is not carried out.

The reference target is given a proxy setting the proxy refuses (an unknown key in ``[pool]``): the
stand-in starts, the proxy exits at once naming the key, and ``certify`` ends with exit status 2 and
one line of its own that names the problem, no verdict table, no traceback.  Everything the target
started is stopped and removed: the child run gets a scratch directory of its own (``TMPDIR``), so
what it leaves behind can be told apart from what other runs on the machine are doing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import psutil
import pytest
from test_certify import CERTIFY

from harness.process import SCRATCH_PREFIX

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or ())
        if text in cmd:
            found.append(f"{p.pid}: {cmd[:200]}")
    return found


def test_a_reference_target_whose_proxy_refuses_its_settings_is_not_carried_out(tmp_path):
    scratch = tempfile.mkdtemp(prefix="certify-down-")  # short: unix socket paths live under it
    os.chmod(scratch, 0o755)  # the servers' own account must reach the directories made in it
    try:
        done = subprocess.run([*CERTIFY, "--target", "reference", "--engine", "postgres",
                               "--proxy-setting", "pool.no_such_setting=1", "--run-dir", str(tmp_path / "run")],
                              check=False, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": scratch})
        output = done.stdout + done.stderr
        assert done.returncode == 2, output[-4000:]
        assert "Traceback" not in output
        own = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(own) == 1, own
        assert own[0].startswith("certify: NOT CARRIED OUT: the target did not come up: ")
        assert "pool.no_such_setting: unknown setting" in own[0]
        assert "valid" not in done.stdout and "UNKNOWN" not in done.stdout  # no verdict table
        assert (tmp_path / "run" / "results.json").exists()  # the run directory says what happened
        assert not _processes_mentioning(scratch)
        assert not [name for name in os.listdir(scratch) if name.startswith(SCRATCH_PREFIX)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
