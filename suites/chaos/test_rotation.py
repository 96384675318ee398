"""Credential rotation behind the proxy: a secret's password (or user) changes while clients work.

The rotation drill (:mod:`harness.bench.rotation`) keeps sessions open with the old login, starts new
logins at a steady rate with whatever the secret holds and with the old login, and rotates the
secret with boto3 in the four real steps (or in the wrong order).  It needs a target that can rotate
its secrets (``rotate_secret``); any other target's rotation guarantees are unknown.  An external
proxy given ``--rotate-command`` rotates by that command, which does the four steps out of the
harness's sight: only the single-user rotation is asked of it.

Quick profile: one single-user rotation.  Full profile: the same under a connection storm, the
alternating-users rotation (what it does to the previous user's sessions is catalogued; RDS Proxy is
reported to drop them), and the database changed before the secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from harness.bench.rotation import rotation_drill
from harness.targets.base import Capability

LOGIN_RATE = 10.0
"""New logins a second during a certification drill (the bench measures at 50)."""
OBSERVE_MARGIN_S = 3.0


def observe_seconds(harness_run) -> float:
    """Long enough after finishSecret for a figure above either bound to be seen as such."""
    bounds = (harness_run.catalogue[g].threshold for g in ("ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD"))
    return max(bounds) + OBSERVE_MARGIN_S


@pytest.mark.guarantee("ROTATION-SESSIONS-KEPT", "ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD",
                       "ROTATION-BACKEND-AUTH")
@pytest.mark.timeout(300)
def test_single_user_rotation(target, clients, recorder, harness_run):
    target.require(Capability.ROTATE_SECRET)
    rotation_drill(target, clients, recorder, strategy="single_user", rate=LOGIN_RATE,
                   observe_seconds=observe_seconds(harness_run))


@pytest.mark.profile("full")
@pytest.mark.guarantee("ROTATION-SESSIONS-KEPT", "ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD",
                       "ROTATION-BACKEND-AUTH")
@pytest.mark.timeout(900)
def test_single_user_rotation_under_a_connection_storm(target, clients, recorder, faults, harness_run,
                                                       check_context):
    target.require(Capability.ROTATE_SECRET)
    check_context.setdefault("borrow_timeout_s", 120.0)

    @contextlib.contextmanager
    def storm() -> Iterator[None]:
        started = faults.start("storm", clients=1000, ramp_seconds=4.0, hold_seconds=0.5)
        try:
            yield
        finally:
            started.stop()

    rotation_drill(target, clients, recorder, strategy="single_user", rate=LOGIN_RATE,
                   observe_seconds=observe_seconds(harness_run), during=storm)


@pytest.mark.profile("full")
@pytest.mark.guarantee("ROTATION-ALTERNATING-SESSIONS", "ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD")
@pytest.mark.timeout(300)
def test_alternating_users_rotation(target, clients, recorder, harness_run):
    target.require(Capability.ROTATE_SECRET)
    rotation_drill(target, clients, recorder, strategy="alternating_users", rate=LOGIN_RATE,
                   observe_seconds=observe_seconds(harness_run))


@pytest.mark.profile("full")
@pytest.mark.guarantee("ROTATION-SESSIONS-KEPT", "ROTATION-BACKEND-AUTH")
@pytest.mark.timeout(300)
def test_password_changed_in_the_database_first(target, clients, recorder, harness_run):
    target.require(Capability.ROTATE_SECRET)
    rotation_drill(target, clients, recorder, strategy="database_first", rate=LOGIN_RATE,
                   observe_seconds=observe_seconds(harness_run))
