"""IAM token checks on the reference target, end to end: boto3's tokens, the proxy, real servers.

A reference target (one writer) comes up with its IAM user; every case of the IAM checker is tried
through the recording clients and the history is judged.  The refusal texts are those RDS Proxy
documents for the engine, and the history never holds a token or a password.  A proxy configured for
another region than the one its clients sign for (``--proxy-setting iam.region=...``) refuses the
fresh token and lets in the one signed for its region: the guarantee is false.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.checkers import CheckContext, Validity
from harness.checkers.iam import CASES, FRESH, IamTokenChecksChecker
from harness.clients.fleet import Clients
from harness.clients.iam import iam_login_attempts
from harness.history import OpType, Recorder
from harness.standins.mysql.cluster import SEARCH_DIRS
from harness.standins.postgres.cluster import PG_BIN_DIR
from harness.targets.base import Capability
from harness.targets.reference import ReferenceTarget

HAVE_POSTGRES = os.path.exists(os.path.join(PG_BIN_DIR, "postgres"))
HAVE_MARIADB = any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENGINES = [pytest.param("postgres", marks=[pytest.mark.postgres,
                                           pytest.mark.skipif(not HAVE_POSTGRES, reason="no PostgreSQL 15")]),
           pytest.param("mysql", marks=[pytest.mark.mysql,
                                        pytest.mark.skipif(not HAVE_MARIADB, reason="no MariaDB")])]


def attempted(target: ReferenceTarget, path) -> tuple[list, object]:
    """Every case tried on ``target``: (the connects' results, the history)."""
    with Recorder(str(path)) as recorder:
        clients = Clients(target, recorder)
        try:
            results = iam_login_attempts(clients, target.iam_access())
        finally:
            clients.close_all()
        return results, recorder.history()


@pytest.mark.parametrize("engine", ENGINES)
def test_every_iam_case_is_judged_as_rds_proxy_would_on_the_reference_target(engine, tmp_path):
    with ReferenceTarget(engine, readers=0) as target:
        assert target.supports(Capability.IAM_AUTH)
        access = target.iam_access()
        results, history = attempted(target, tmp_path / "history.jsonl")
    verdict = IamTokenChecksChecker().check(history, CheckContext(engine=engine))
    assert verdict.valid is Validity.TRUE and verdict.figure == 0, verdict
    assert [r.ok for r in results] == [True] + [False] * (len(CASES) - 1) + [True]
    tried = [i.extra["iam_case"] for i, _ in history.pairs() if i.f == "connect"]
    assert tried == [*CASES, FRESH]
    sessions = [c for i, c in history.pairs() if i.f == "iam_session"]
    assert len(sessions) == 2 and all(c is not None and c.type is OpType.OK for c in sessions)
    texts = {i.extra["iam_case"]: c.error.text for i, c in history.pairs() if c is not None and c.error}
    # Beyond what RDS documents for MySQL (ERROR 1045 alone), the reference proxy says why on both engines.
    assert "IAM authentication is allowed only with SSL connections." in texts["plaintext"]
    assert all("IAM authentication failed for user iam_user." in text
               for case, text in texts.items() if case != "plaintext"), texts
    written = (tmp_path / "history.jsonl").read_text()
    assert access.user_password not in written and "X-Amz-Signature" not in written


@pytest.mark.postgres
@pytest.mark.skipif(not HAVE_POSTGRES, reason="no PostgreSQL 15")
def test_a_proxy_checking_tokens_for_another_region_breaks_the_guarantee(tmp_path):
    with ReferenceTarget("postgres", readers=0, iam={"region": "eu-west-1"}) as target:
        _, history = attempted(target, tmp_path / "history.jsonl")
    verdict = IamTokenChecksChecker().check(history, CheckContext(engine="postgres"))
    assert verdict.valid is Validity.FALSE, verdict
    judged = {e["extra"]["iam_case"]: e["extra"]["judged"] for e in verdict.evidence}
    assert judged["wrong_region"] == "was accepted"  # signed for eu-west-1, the proxy's region
    assert judged["fresh_token"].startswith("was refused: ") and "IAM authentication failed" in judged["fresh_token"]
    assert verdict.figure == 3  # the fresh token twice, and the other region's


@pytest.mark.mysql
@pytest.mark.skipif(not HAVE_MARIADB, reason="no MariaDB")
@pytest.mark.timeout(600)
def test_certify_fails_a_proxy_set_to_check_tokens_for_another_region(tmp_path):
    """The same misconfiguration reached through ``certify --proxy-setting``: exit status 1, the
    guarantee false in the run's results, with the wrongly accepted token as evidence."""
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "certify",
                           "--target", "reference", "--engine", "mysql", "--suite", "conformance", "-k", "iam",
                           "--proxy-setting", "iam.region=eu-west-1", "--run-dir", str(run_dir)],
                          check=False, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, f"expected a failed certification:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    verdict = json.loads((run_dir / "results.json").read_text())["guarantees"]["IAM-TOKEN-CHECKS"]
    assert verdict["valid"] == "false"
    assert {"iam_case": "wrong_region", "judged": "was accepted"}.items() <= next(
        e["extra"] for e in verdict["evidence"] if e["extra"]["iam_case"] == "wrong_region").items()
