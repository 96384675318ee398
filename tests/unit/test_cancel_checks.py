"""CANCEL-OWN-QUERY and CANCEL-NEVER-OTHERS on hand-made histories: held, broken and unknown."""

from __future__ import annotations

import pytest

from harness.checkers import CHECKER_TYPES, CheckContext, Validity, check_safe
from harness.checkers.cancel import SLEEP_KEY, CancelNeverOthersChecker, CancelOwnQueryChecker
from harness.checkers.synthetic import HistoryBuilder
from harness.clients.cancel import TARGET_KEY
from harness.history import OpError, OpType

CANCELLED = {"postgres": OpError("57014", "canceling statement due to user request", definite=True),
             "mysql": OpError("1317", "Query execution was interrupted", definite=True)}
TIMED_OUT = OpError("timeout", "no answer within the client's deadline", definite=False)


def sleep(b: HistoryBuilder, process: str, *, at: float, took: float | None, seconds: float = 30.0,
          error: OpError | None = None, result=None) -> None:
    b.op(process, "sleep", at=at, took=took, type=OpType.FAIL if error else OpType.OK, error=error,
         invoke_extra={SLEEP_KEY: seconds}, result=result)


def cancel(b: HistoryBuilder, canceller: str, target: str, *, at: float, error: OpError | None = None) -> None:
    b.op(canceller, "cancel", at=at, took=0.01, type=OpType.FAIL if error else OpType.OK, error=error,
         invoke_extra={TARGET_KEY: target})


def context(engine: str | None = "postgres", target: str = "reference") -> CheckContext:
    return CheckContext(engine=engine, target=target)


def own_history(engine: str, *, stopped_after: float | None = 0.2, error: OpError | None = None) -> HistoryBuilder:
    """c1 sleeps from 0 s, its canceller x1 cancels at 0.3 s; it ends ``stopped_after`` s later."""
    b = HistoryBuilder()
    took = None if stopped_after is None else 0.3 + stopped_after
    sleep(b, "c1", at=0.0, took=took, error=error if error is not None else CANCELLED[engine])
    cancel(b, "x1", "c1", at=0.3)
    return b


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_own_statement_stopped_with_the_cancel_error_within_the_bound_holds(engine):
    v = CancelOwnQueryChecker().check(own_history(engine).history(), context(engine))
    assert v.valid is Validity.TRUE and v.figure == pytest.approx(0.2)


def test_a_mysql_sleep_that_answers_1_was_interrupted_too():
    b = HistoryBuilder()
    sleep(b, "c1", at=0.0, took=0.5, result=1)
    cancel(b, "x1", "c1", at=0.3)
    assert CancelOwnQueryChecker().check(b.history(), context("mysql")).valid is Validity.TRUE
    assert CancelOwnQueryChecker().check(b.history(), context("postgres")).valid is Validity.FALSE


def test_an_ignored_cancel_breaks_it_whatever_the_delay():
    v = CancelOwnQueryChecker().check(own_history("postgres", stopped_after=14.7, error=TIMED_OUT).history(),
                                      context())
    assert v.valid is Validity.FALSE and "not stopped" in v.reason and v.evidence


def test_a_cancel_that_stops_the_statement_too_late_breaks_it():
    v = CancelOwnQueryChecker().check(own_history("postgres", stopped_after=8.0).history(), context())
    assert v.valid is Validity.FALSE and v.figure == pytest.approx(8.0)


def test_a_cancel_the_proxy_refuses_breaks_it():
    b = HistoryBuilder()
    sleep(b, "c1", at=0.0, took=15.0, error=TIMED_OUT)
    cancel(b, "x1", "c1", at=0.3, error=OpError("1235", "This version doesn't yet support KILL", definite=True))
    assert CancelOwnQueryChecker().check(b.history(), context("mysql")).valid is Validity.FALSE


def test_own_query_is_unknown_without_a_cancel_that_arrived_or_a_statement_that_ended():
    assert CancelOwnQueryChecker().check(HistoryBuilder().history(), context()).valid is Validity.UNKNOWN
    lost = HistoryBuilder()
    sleep(lost, "c1", at=0.0, took=15.0, error=TIMED_OUT)
    cancel(lost, "x1", "c1", at=0.3, error=OpError("connect-failed", "connection refused", definite=True))
    assert CancelOwnQueryChecker().check(lost.history(), context()).valid is Validity.UNKNOWN
    assert CancelOwnQueryChecker().check(own_history("postgres", stopped_after=None).history(),
                                         context()).valid is Validity.UNKNOWN
    assert CancelOwnQueryChecker().check(own_history("postgres").history(), context(None)).valid is Validity.UNKNOWN


def test_a_failure_on_rds_postgres_is_reported_unknown_with_the_documented_limitation():
    h = own_history("postgres", stopped_after=14.7, error=TIMED_OUT).history()
    v = check_safe(CancelOwnQueryChecker(), h, context("postgres", "rds"))
    assert v.valid is Validity.UNKNOWN and "CancelRequest as unsupported" in v.reason and "not stopped" in v.reason
    assert check_safe(CancelOwnQueryChecker(), h, context("mysql", "rds")).valid is Validity.FALSE
    held = check_safe(CancelOwnQueryChecker(), own_history("postgres").history(), context("postgres", "rds"))
    assert held.valid is Validity.TRUE


def others_history(engine: str, *, hit: bool) -> HistoryBuilder:
    """s1 cancels itself at 0.5 s, running nothing (its read ended at 0.1 s), while c1 and c2 sleep 2 s."""
    b = HistoryBuilder()
    b.op("s1", "read", at=0.0, took=0.1)
    sleep(b, "c1", at=0.2, took=2.0, seconds=2.0)
    sleep(b, "c2", at=0.2, took=0.35 if hit else 2.0, seconds=2.0, error=CANCELLED[engine] if hit else None)
    cancel(b, "x1", "s1", at=0.5)
    return b


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_stale_cancels_that_stop_nobody_hold(engine):
    v = CancelNeverOthersChecker().check(others_history(engine, hit=False).history(), context(engine))
    assert v.valid is Validity.TRUE and v.figure == 0 and "1 after their client's statement had ended" in v.reason


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_a_stale_cancel_that_stops_a_strangers_statement_breaks_it(engine):
    v = CancelNeverOthersChecker().check(others_history(engine, hit=True).history(), context(engine))
    assert v.valid is Validity.FALSE and v.figure == 1 and v.evidence[0]["process"] == "c2"


def test_an_own_cancel_is_no_stranger_and_a_bystander_that_fails_otherwise_counts():
    b = own_history("postgres")
    sleep(b, "c2", at=0.0, took=2.0, seconds=2.0)
    assert CancelNeverOthersChecker().check(b.history(), context()).valid is Validity.TRUE
    sleep(b, "c3", at=0.0, took=0.4, seconds=2.0, error=OpError("08006", "server closed the connection", False))
    assert CancelNeverOthersChecker().check(b.history(), context()).valid is Validity.FALSE


def test_never_others_is_unknown_without_cancels_or_bystanders_or_with_one_still_running():
    no_cancel = HistoryBuilder()
    sleep(no_cancel, "c1", at=0.0, took=2.0, seconds=2.0)
    assert CancelNeverOthersChecker().check(no_cancel.history(), context()).valid is Validity.UNKNOWN
    assert CancelNeverOthersChecker().check(own_history("postgres").history(), context()).valid is Validity.UNKNOWN
    running = others_history("postgres", hit=False)
    sleep(running, "c3", at=0.2, took=None, seconds=2.0)
    assert CancelNeverOthersChecker().check(running.history(), context()).valid is Validity.UNKNOWN


def test_the_checkers_are_registered_for_their_guarantees():
    assert CHECKER_TYPES["CANCEL-OWN-QUERY"] is CancelOwnQueryChecker
    assert CHECKER_TYPES["CANCEL-NEVER-OTHERS"] is CancelNeverOthersChecker
