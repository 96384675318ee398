"""The ROTATION-* checkers on hand-made histories: each can hold, break, or not know."""

from __future__ import annotations

from harness.checkers import CHECKER_TYPES, CheckContext, Validity
from harness.checkers.rotation import (
    RotationAlternatingSessionsChecker,
    RotationBackendAuthChecker,
    RotationNewLoginsChecker,
    RotationOldPasswordChecker,
    RotationSessionsKeptChecker,
    failed_login_window,
    rotation_windows,
)
from harness.checkers.synthetic import HistoryBuilder
from harness.history import OpError, OpType
from harness.metrics import MetricSample

BAD_PASSWORD = OpError("28P01", "password authentication failed for user rotation_user", definite=True)
LOST = OpError("08006", "server closed the connection unexpectedly", definite=False)
FINISH = 3.0


def rotation(strategy: str = "single_user") -> HistoryBuilder:
    """A rotation from 1 s to 3 s: setSecret at 1.5 s, finishSecret at 3 s."""
    b = HistoryBuilder()
    b.fault("rotate_secret", start=1.0, end=FINISH + 0.01, strategy=strategy)
    b.event("rotation_step", "setSecret", at=1.5)
    b.event("rotation_step", "finishSecret", at=FINISH)
    return b


def held_sessions(b: HistoryBuilder, *, failing: dict[int, OpError] | None = None,
                  recovers: bool = True) -> HistoryBuilder:
    """Two sessions connected at 0.1 s pinging every half second until 10 s; ``failing`` makes one
    session's ping at 2 s fail with that error."""
    for process in (1, 2):
        b.op(process, "connect", at=0.1, took=0.01)
        t = 0.5
        while t < 10:
            error = (failing or {}).get(process) if abs(t - 2.0) < 1e-9 else None
            if error is None and not recovers and (failing or {}).get(process) and t > 2.0:
                error = OpError("not-connected", "the client has no open connection", definite=True)
            b.op(process, "ping", at=t, took=0.005, type=OpType.OK if error is None else OpType.FAIL,
                 error=error)
            t += 0.5
    return b


def logins(b: HistoryBuilder, label: str, *, fail_until: float | None = None, ok_until: float | None = None,
           end: float = 11.0) -> HistoryBuilder:
    """A login every 0.25 s from 0 to ``end`` with ``label``; those starting in [setSecret, fail_until)
    fail, or (``ok_until``) those after ``ok_until`` fail."""
    t, n = 0.0, 0
    while t < end:
        failed = (fail_until is not None and 1.5 <= t < fail_until) or (ok_until is not None and t >= ok_until)
        b.op(f"{label}{n}", "connect", at=t, took=0.02, invoke_extra={"login": label},
             type=OpType.FAIL if failed else OpType.OK, error=BAD_PASSWORD if failed else None)
        t, n = t + 0.25, n + 1
    return b


CONTEXT = CheckContext()


def test_every_rotation_guarantee_has_its_checker():
    ids = {"ROTATION-SESSIONS-KEPT", "ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD", "ROTATION-BACKEND-AUTH",
           "ROTATION-ALTERNATING-SESSIONS"}
    assert ids <= set(CHECKER_TYPES)


# -- sessions ---------------------------------------------------------------------------------------
def test_sessions_kept_through_a_rotation_hold():
    v = RotationSessionsKeptChecker().check(held_sessions(rotation()).history(), CONTEXT)
    assert v.valid is Validity.TRUE and v.figure == 0


def test_a_session_whose_connection_is_lost_is_dropped_and_the_first_failure_is_the_evidence():
    h = held_sessions(rotation(), failing={1: LOST}, recovers=False).history()
    v = RotationSessionsKeptChecker().check(h, CONTEXT)
    assert v.valid is Validity.FALSE and v.figure == 1
    assert v.evidence[0]["process"] == 1 and v.evidence[0]["error"]["code"] == "08006"


def test_a_refused_request_in_a_session_that_goes_on_working_is_not_a_drop():
    h = held_sessions(rotation(), failing={1: LOST}).history()  # even with a connection-class code
    v = RotationSessionsKeptChecker().check(h, CONTEXT)
    assert v.valid is Validity.TRUE and "1 of their requests were refused" in v.reason


def test_a_session_whose_last_request_failed_is_dropped_whatever_the_error():
    h = held_sessions(rotation(), failing={2: BAD_PASSWORD}, recovers=False).history()
    assert RotationSessionsKeptChecker().check(h, CONTEXT).figure == 1


def test_sessions_need_a_rotation_of_their_strategy_and_requests_after_it():
    single = held_sessions(rotation()).history()
    assert RotationAlternatingSessionsChecker().check(single, CONTEXT).valid is Validity.UNKNOWN
    alternating = held_sessions(rotation("alternating_users"), failing={1: LOST}, recovers=False).history()
    assert RotationAlternatingSessionsChecker().check(alternating, CONTEXT).valid is Validity.FALSE
    assert RotationSessionsKeptChecker().check(alternating, CONTEXT).valid is Validity.UNKNOWN
    no_sessions = logins(rotation(), "new").history()
    assert RotationSessionsKeptChecker().check(no_sessions, CONTEXT).valid is Validity.UNKNOWN


# -- new logins -------------------------------------------------------------------------------------
def test_new_logins_that_recover_soon_after_finish_hold_and_the_window_is_reported():
    h = logins(rotation(), "new", fail_until=FINISH + 1.0).history()
    v = RotationNewLoginsChecker().check(h, CONTEXT)
    assert v.valid is Validity.TRUE
    assert abs(v.figure - 0.77) < 1e-6  # the last failure started at 3.75 s and ended 0.02 s later
    assert "rotation window 10 failed logins over 2.27 s" in v.reason


def test_new_logins_that_recover_too_late_break_it():
    h = logins(rotation(), "new", fail_until=FINISH + 7.0).history()
    v = RotationNewLoginsChecker().check(h, CONTEXT)
    assert v.valid is Validity.FALSE and v.figure > 5


def test_new_logins_failing_to_the_end_break_it_when_watched_past_the_bound():
    h = logins(rotation(), "new", fail_until=100.0).history()
    v = RotationNewLoginsChecker().check(h, CONTEXT)
    assert v.valid is Validity.FALSE and "until the end of the observation" in v.reason


def test_new_logins_failing_to_an_early_end_of_observation_are_unknown():
    h = logins(rotation(), "new", fail_until=100.0, end=FINISH + 2.0).history()
    assert RotationNewLoginsChecker().check(h, CONTEXT).valid is Validity.UNKNOWN


def test_new_logins_need_a_finished_rotation_and_attempts_after_it():
    unfinished = HistoryBuilder().fault("rotate_secret", start=1.0, end=2.0, strategy="single_user")
    assert RotationNewLoginsChecker().check(logins(unfinished, "new").history(), CONTEXT).valid is Validity.UNKNOWN
    assert RotationNewLoginsChecker().check(logins(rotation(), "old").history(), CONTEXT).valid is Validity.UNKNOWN


# -- old password -----------------------------------------------------------------------------------
def test_an_old_password_refused_soon_after_finish_holds():
    h = logins(rotation(), "old", ok_until=FINISH + 1.0).history()
    v = RotationOldPasswordChecker().check(h, CONTEXT)
    assert v.valid is Validity.TRUE and 0.7 < v.figure < 1.0


def test_an_old_password_still_accepted_at_the_end_breaks_it():
    h = logins(rotation(), "old").history()
    v = RotationOldPasswordChecker().check(h, CONTEXT)
    assert v.valid is Validity.FALSE and v.figure > 5 and v.evidence


def test_an_old_password_accepted_to_an_early_end_of_observation_is_unknown():
    h = logins(rotation(), "old", end=FINISH + 2.0).history()
    assert RotationOldPasswordChecker().check(h, CONTEXT).valid is Validity.UNKNOWN


# -- backend logins ---------------------------------------------------------------------------------
def samples(values: list[tuple[float, float]], name: str = "DatabaseConnectionsSetupFailed") -> list[MetricSample]:
    return [MetricSample(round(t * 1e9), name, v, {"Target": "instance-1"}) for t, v in values]


def backend_context(failed: list[tuple[float, float]]) -> CheckContext:
    reads = samples([(0.0, 1), (12.0, 1)], "DatabaseConnections")
    return CheckContext(metrics=tuple(reads + samples(failed)))


def test_a_few_failed_backend_logins_in_the_window_hold():
    v = RotationBackendAuthChecker().check(rotation().history(), backend_context([(0.5, 2), (2.0, 5), (11.0, 6)]))
    assert v.valid is Validity.TRUE and v.figure == 4  # counted from the rotation's start, not before


def test_the_reason_says_how_many_setups_were_requested_when_the_target_reports_it():
    requested = samples([(0.5, 10), (11.0, 19)], "DatabaseConnectionRequests")
    context = backend_context([(0.5, 2), (11.0, 5)])
    v = RotationBackendAuthChecker().check(rotation().history(), CheckContext(metrics=context.metrics + tuple(requested)))
    assert v.valid is Validity.TRUE and v.figure == 3 and v.reason.startswith("3 of 9 requested backend")
    alone = RotationBackendAuthChecker().check(rotation().history(), context)
    assert alone.reason.startswith("3 backend connection setups failed")


def test_a_storm_of_failed_backend_logins_breaks_it():
    v = RotationBackendAuthChecker().check(rotation().history(), backend_context([(0.5, 0), (2.5, 400)]))
    assert v.valid is Validity.FALSE and v.figure == 400


def test_a_counter_never_reported_while_other_metrics_were_is_zero():
    v = RotationBackendAuthChecker().check(rotation().history(), backend_context([]))
    assert v.valid is Validity.TRUE and v.figure == 0


def test_backend_logins_without_metrics_around_the_rotation_are_unknown():
    h = rotation().history()
    assert RotationBackendAuthChecker().check(h, CheckContext()).valid is Validity.UNKNOWN
    late = CheckContext(metrics=tuple(samples([(2.0, 0), (12.0, 0)])))
    assert RotationBackendAuthChecker().check(h, late).valid is Validity.UNKNOWN


def test_the_failed_login_window_counts_the_logins_that_follow_the_secret_only():
    h = logins(logins(rotation(), "new", fail_until=FINISH + 1.0), "old", ok_until=FINISH).history()
    (window,) = rotation_windows(h)
    count, span = failed_login_window(h, window, None)
    assert count == 10 and abs(span - 2.27) < 1e-6  # the old login's refusals after finishSecret are not in it
