"""Secret rotation on the reference target, end to end: moto as Secrets Manager, the proxy, real servers.

Each test starts a reference target whose proxy reads its logins from the AWS stand-in, runs the
rotation drill (sessions kept open, new logins ten a second, the rotation in its real steps) and
judges the history with the ROTATION-* checkers.  A proxy configured never to read a secret again
(a day-long cache, and failed logins allowed to re-read it only once an hour) must break the
guarantees about new logins and the old password: the checkers can fail.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from harness.bench.rotation import rotation_drill
from harness.checkers import CheckContext, Validity, default_checkers
from harness.clients.fleet import Clients
from harness.history import OpType, Recorder
from harness.plugin.metrics import MetricsSampler
from harness.standins.mysql.cluster import SEARCH_DIRS
from harness.standins.postgres.cluster import PG_BIN_DIR
from harness.targets.aws_standin import secretsmanager_client
from harness.targets.reference import ReferenceTarget

HAVE_POSTGRES = os.path.exists(os.path.join(PG_BIN_DIR, "postgres"))
HAVE_MARIADB = any(os.path.exists(os.path.join(d, "mariadbd")) for d in SEARCH_DIRS)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENGINES = [pytest.param("postgres", marks=[pytest.mark.postgres,
                                           pytest.mark.skipif(not HAVE_POSTGRES, reason="no PostgreSQL 15")]),
           pytest.param("mysql", marks=[pytest.mark.mysql,
                                        pytest.mark.skipif(not HAVE_MARIADB, reason="no MariaDB")])]
SINGLE_USER = ["ROTATION-SESSIONS-KEPT", "ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD", "ROTATION-BACKEND-AUTH"]
NEVER_REREADS = {"cache_ttl": 86400, "refresh_min_interval": 3600}


@contextlib.contextmanager
def drilled(engine: str, strategy: str = "single_user", **target_options) -> Iterator[tuple]:
    """A fresh target, the drill run on it, and the verdicts' inputs: (target, history, context, rotation summary)."""
    with ReferenceTarget(engine, readers=0, **target_options) as target, Recorder() as recorder:
        clients = Clients(target, recorder)
        sampler = MetricsSampler(target.metrics).start()
        try:
            summary = rotation_drill(target, clients, recorder, strategy=strategy, rate=10.0, observe_seconds=8.0)
        finally:
            metrics = sampler.stop()
            clients.close_all()
        yield target, recorder.history(), CheckContext(metrics=tuple(metrics)), summary


def verdicts(ids: list[str], history, context) -> dict[str, object]:
    return {c.guarantee_id: c.check(history, context) for c in default_checkers(ids)}


@pytest.mark.parametrize("engine", ENGINES)
def test_single_user_rotation_holds_every_guarantee_on_the_reference_proxy(engine):
    with drilled(engine) as (target, history, context, summary):
        judged = verdicts(SINGLE_USER, history, context)
        assert {gid: v.valid for gid, v in judged.items()} == dict.fromkeys(SINGLE_USER, Validity.TRUE), judged
        # The drill makes the proxy open backend connections while the database refuses the held
        # password, so the bound on failed setups is put to the test, and met.
        assert judged["ROTATION-BACKEND-AUTH"].figure > 0, judged["ROTATION-BACKEND-AUTH"]
        access = target.secrets_access()
        user, first_password = target.logins[access.single_user]
        # By stage: moto answers a read without one from its default version, which
        # update_secret_version_stage does not move (AWS would answer AWSCURRENT).
        secret = secretsmanager_client(access).get_secret_value(SecretId=access.single_user, VersionStage="AWSCURRENT")
        assert first_password not in secret["SecretString"]
        with pytest.raises(Exception, match="(password authentication failed|Access denied)"):
            target.check_database_login(user, first_password)
        assert summary.logins > 50


@pytest.mark.postgres
@pytest.mark.skipif(not HAVE_POSTGRES, reason="no PostgreSQL 15")
def test_a_proxy_that_never_reads_its_secrets_again_breaks_new_logins_and_the_old_password():
    with drilled("postgres", secrets_manager=NEVER_REREADS) as (_, history, context, _summary):
        judged = verdicts(["ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD"], history, context)
    assert judged["ROTATION-NEW-LOGINS"].valid is Validity.FALSE, judged["ROTATION-NEW-LOGINS"]
    assert judged["ROTATION-OLD-PASSWORD"].valid is Validity.FALSE, judged["ROTATION-OLD-PASSWORD"]
    assert "until the end of the observation" in judged["ROTATION-NEW-LOGINS"].reason
    # Its held sessions are not judged here: whether one of them needs a new backend connection
    # (which the stale password cannot open) during the drill depends on timing.


@pytest.mark.postgres
@pytest.mark.skipif(not HAVE_POSTGRES, reason="no PostgreSQL 15")
def test_alternating_rotation_keeps_the_previous_users_sessions_and_refuses_its_new_logins():
    with drilled("postgres", strategy="alternating_users") as (target, history, context, _summary):
        judged = verdicts(["ROTATION-ALTERNATING-SESSIONS", "ROTATION-NEW-LOGINS"], history, context)
        assert all(v.valid is Validity.TRUE for v in judged.values()), judged
        finish = next(e.time for e in history.events("rotation_step") if e.value == "finishSecret")
        late_old = [c for i, c in history.pairs() if i.f == "connect" and i.extra.get("login") == "old"
                    and i.time > finish + 5e9]
        assert late_old and all(c is not None and c.type is OpType.FAIL for c in late_old)
        assert "This RDS proxy has no credentials for the role rotation_alt_a" in late_old[-1].error.text
        access = target.secrets_access()
        secret = secretsmanager_client(access).get_secret_value(SecretId=access.alternating[0],
                                                                VersionStage="AWSCURRENT")
        assert '"rotation_alt_b"' in secret["SecretString"]
