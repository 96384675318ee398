"""Borrow, availability, durability, storm, netfault and latency checkers on hand-made histories."""

from __future__ import annotations

import random

import pytest

from harness.checkers.availability import (
    FailoverReadErrorsChecker,
    FailoverWriteGapChecker,
    IdleSurvivalChecker,
)
from harness.checkers.base import CheckContext, Validity
from harness.checkers.borrow import MYSQL_TEXT, PG_TEXT, BorrowTimeoutChecker
from harness.checkers.durability import NoDuplicateChecker, NoFailedVisibleChecker, NoLostAckChecker
from harness.checkers.latency import (
    AddedLatencyP50Checker,
    AddedLatencyP99Checker,
    percentile_us,
    quantile_band_us,
)
from harness.checkers.netfault import SilentFaultDetectedChecker
from harness.checkers.routing import ReaderOnlyChecker, WriterEndpointChecker
from harness.checkers.storm import StormServedChecker
from harness.checkers.synthetic import HistoryBuilder
from harness.history import OpError

T, F, U = Validity.TRUE, Validity.FALSE, Validity.UNKNOWN
CTX = CheckContext()
LOST = OpError("08006", "server closed the connection unexpectedly", definite=False)
PG_TIMEOUT = OpError(None, PG_TEXT, definite=True)
MY_TIMEOUT = OpError("9501", MYSQL_TEXT, definite=True)


# -- borrow timeout -------------------------------------------------------------------------------
def test_borrow_timeout_true_when_text_and_time_match():
    b = HistoryBuilder()
    b.op(1, "txn", at=0, took=5.3, type="fail", error=PG_TIMEOUT, invoke_extra={"expect": "borrow_timeout"})
    b.op(2, "txn", at=1, took=4.9, type="fail", error=MY_TIMEOUT)
    v = BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5))
    assert v.valid is T and v.figure == pytest.approx(0.3)


def test_borrow_timeout_false_when_late_or_early():
    b = HistoryBuilder().op(1, "txn", at=0, took=8.0, type="fail", error=PG_TIMEOUT)
    v = BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5, engine="postgres"))
    assert v.valid is F and v.figure == pytest.approx(3.0)
    b = HistoryBuilder().op(1, "txn", at=0, took=0.1, type="fail", error=PG_TIMEOUT)
    assert BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5)).valid is F


def test_borrow_timeout_false_on_wrong_text():
    wrong = OpError("9501", "timed-out waiting for a connection", definite=True)
    b = HistoryBuilder().op(1, "txn", at=0, took=5.0, type="fail", error=wrong)
    v = BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5))
    assert v.valid is F and "with a text other than" in v.reason
    # The MySQL text is wrong for a PostgreSQL target.
    b = HistoryBuilder().op(1, "txn", at=0, took=5.0, type="fail", error=OpError(None, MYSQL_TEXT, True))
    assert BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5, engine="postgres")).valid is F
    # ...and PostgreSQL's (with its full stop) is wrong for MySQL; the reason names MySQL's own.
    b = HistoryBuilder().op(1, "txn", at=0, took=5.0, type="fail", error=OpError("9501", MYSQL_TEXT + ".", True))
    v = BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5, engine="mysql"))
    assert v.valid is F and v.reason.endswith(f"with a text other than errno 9501 {MYSQL_TEXT!r}")


def test_borrow_timeout_false_when_an_expected_timeout_succeeded():
    b = HistoryBuilder().op(1, "txn", at=0, took=0.2, invoke_extra={"expect": "borrow_timeout"})
    v = BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5))
    assert v.valid is F and "did not end in a borrow timeout" in v.reason


def test_borrow_timeout_false_when_a_connect_to_an_exhausted_pool_is_refused_with_another_error():
    too_many = OpError("53300", "sorry, too many clients already", definite=True)
    b = HistoryBuilder().op(1, "connect", at=0, took=0.1, type="fail", error=too_many,
                            invoke_extra={"expect": "borrow_timeout_if_refused"})
    v = BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5))
    assert v.valid is F and "1 of 1 requests sent to an exhausted pool did not end in a borrow timeout" in v.reason
    # Served at once (the proxy borrows only at the first query): nothing expected of that connect.
    b = HistoryBuilder().op(1, "connect", at=0, took=0.1, invoke_extra={"expect": "borrow_timeout_if_refused"})
    b.op(1, "read", at=1, took=5.1, type="fail", error=PG_TIMEOUT, invoke_extra={"expect": "borrow_timeout"})
    assert BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5)).valid is T
    # Refused with the documented error, on time: that is the borrow timeout itself.
    b = HistoryBuilder().op(1, "connect", at=0, took=5.2, type="fail", error=PG_TIMEOUT,
                            invoke_extra={"expect": "borrow_timeout_if_refused"})
    assert BorrowTimeoutChecker().check(b.history(), CheckContext(borrow_timeout_s=5)).valid is T


def test_borrow_timeout_unknown_when_nothing_timed_out_and_defaults_to_120s():
    b = HistoryBuilder().op(1, "txn", at=0)
    assert BorrowTimeoutChecker().check(b.history(), CTX).valid is U
    b = HistoryBuilder().op(1, "txn", at=0, took=120.5, type="fail", error=PG_TIMEOUT)
    v = BorrowTimeoutChecker().check(b.history(), CTX)
    assert v.valid is T and "RDS default 120 s assumed" in v.reason


# -- failover write gap ---------------------------------------------------------------------------
def writes_every(b: HistoryBuilder, start: float, stop: float, step: float, ok_after: float,
                 node_after: str = "i2") -> None:
    t, p = start, 0
    while t < stop:
        p += 1
        if t < ok_after:
            b.op(f"w{p}", "write", p, at=t, took=0.01, type="info", endpoint="writer", error=LOST)
        else:
            b.op(f"w{p}", "write", p, at=t, took=0.01, endpoint="writer", node=node_after)
        t += step


def test_write_gap_measured_from_promotion():
    b = HistoryBuilder().fault("failover", start=1.0, end=2.0, new_writer="i2")
    writes_every(b, 0.0, 6.0, 0.25, ok_after=3.5)
    v = FailoverWriteGapChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == pytest.approx(1.51, abs=0.01)
    b = HistoryBuilder().fault("failover", start=1.0, end=2.0, new_writer="i2")
    writes_every(b, 0.0, 8.0, 0.25, ok_after=5.5)
    v = FailoverWriteGapChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == pytest.approx(3.51, abs=0.01)


def test_write_gap_uses_a_new_writer_event_inside_the_window():
    b = HistoryBuilder().fault("failover", start=1.0, end=5.0)
    b.event("roles", {"writer": "i1"}, at=0.5)
    b.event("new_writer", "i2", at=1.5)
    writes_every(b, 0.0, 6.0, 0.25, ok_after=4.9)
    v = FailoverWriteGapChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == pytest.approx(3.51, abs=0.01)


def test_write_gap_no_recovery_is_false_only_if_the_run_went_on_long_enough():
    b = HistoryBuilder().fault("failover", start=1.0, end=2.0)
    writes_every(b, 0.0, 10.0, 0.5, ok_after=99)
    v = FailoverWriteGapChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure > 7
    b = HistoryBuilder().fault("failover", start=1.0, end=2.0)
    writes_every(b, 0.0, 3.0, 0.5, ok_after=99)
    assert FailoverWriteGapChecker().check(b.history(), CTX).valid is U


def test_write_gap_unknown_without_failover_or_writes():
    b = HistoryBuilder()
    writes_every(b, 0.0, 3.0, 0.5, ok_after=0)
    assert FailoverWriteGapChecker().check(b.history(), CTX).valid is U
    b = HistoryBuilder().fault("failover", start=1.0, end=2.0)
    assert FailoverWriteGapChecker().check(b.history(), CTX).valid is U


# -- failover read errors and idle survival --------------------------------------------------------
def test_read_errors_counted_per_client_inside_failover_windows():
    b = HistoryBuilder().fault("failover", start=1.0, end=2.0)
    b.op(1, "read", at=0.5, endpoint="reader", type="fail", error=LOST)  # before: not counted
    b.op(1, "read", at=1.2, endpoint="reader", type="info", error=LOST)
    b.op(1, "read", at=1.4, endpoint="reader", node="i3")
    b.op(2, "read", at=1.5, endpoint="reader", node="i3")
    v = FailoverReadErrorsChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == 1
    b.op(1, "read", at=1.9, took=0.5, endpoint="reader", type="fail", error=LOST)  # overlaps the end
    v = FailoverReadErrorsChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 2 and len(v.evidence) == 2


def test_read_errors_unknown_without_reads_during_failover():
    b = HistoryBuilder().fault("failover", start=1.0, end=2.0).op(1, "read", at=3, endpoint="reader")
    assert FailoverReadErrorsChecker().check(b.history(), CTX).valid is U
    assert FailoverReadErrorsChecker().check(HistoryBuilder().history(), CTX).valid is U


def test_idle_survival():
    b = HistoryBuilder()
    for p in (1, 2, 3, 4):
        b.op(p, "connect", at=0.1 * p)
    b.fault("failover", start=1.0, end=2.0)
    b.op(4, "read", at=1.5, endpoint="writer", type="info", error=LOST)  # busy during failover: not idle
    for p in (1, 2, 3):
        b.op(p, "idle_probe", at=3.0)
    b.op(4, "idle_probe", at=3.0, type="fail", error=LOST)
    v = IdleSurvivalChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == 1.0 and "3 idle clients" in v.reason
    b.op(5, "idle_probe", at=4.0, type="info", error=LOST)
    v = IdleSurvivalChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == pytest.approx(0.75)
    assert IdleSurvivalChecker().check(HistoryBuilder().fault("failover", start=1, end=2).history(), CTX).valid is U


# -- durability -----------------------------------------------------------------------------------
def durability_run(final: list[int]) -> HistoryBuilder:
    b = HistoryBuilder()
    b.op(1, "write", 1, at=0.0)
    b.op(1, "write", {"id": 2}, at=0.1)
    b.op(2, "write", 3, at=0.2, type="fail", error=OpError("40001", "serialization failure", True))
    b.op(2, "write", 4, at=0.3, type="info", error=LOST)
    b.op(3, "write", 5, at=0.4, took=None)
    b.op(4, "write", 6, at=0.5, type="fail", error=OpError("08006", "lost during commit", False))
    b.op(9, "final_read", at=5.0, result=final)
    return b


def test_durability_true_when_acked_present_and_failed_absent():
    for final in ([1, 2], [1, 2, 4, 5, 6]):  # indeterminate writes may go either way
        h = durability_run(final).history()
        lost, visible = NoLostAckChecker().check(h, CTX), NoFailedVisibleChecker().check(h, CTX)
        assert (lost.valid, visible.valid) == (T, T)
        assert "3 indeterminate writes" in lost.reason


def test_durability_false_on_lost_ack_and_on_visible_failure():
    h = durability_run([2, 3]).history()
    lost = NoLostAckChecker().check(h, CTX)
    assert lost.valid is F and lost.figure == 1 and lost.evidence[0]["value"] == 1
    visible = NoFailedVisibleChecker().check(h, CTX)
    assert visible.valid is F and visible.evidence[0]["value"] == 3


def test_durability_unknown_without_final_read_or_relevant_writes():
    b = HistoryBuilder().op(1, "write", 1, at=0)
    assert NoLostAckChecker().check(b.history(), CTX).valid is U
    b.op(9, "final_read", at=1, type="info", error=LOST)
    assert NoLostAckChecker().check(b.history(), CTX).valid is U
    b.op(9, "final_read", at=2, result=[1])
    assert NoLostAckChecker().check(b.history(), CTX).valid is T
    v = NoFailedVisibleChecker().check(b.history(), CTX)
    assert v.valid is U and "no write failed definitely" in v.reason


def duplicate_run(final: list[int]) -> HistoryBuilder:
    """Writes around a failover: one acknowledged before it, one cut mid-statement by it (unknown
    outcome), one acknowledged after it, one refused."""
    b = HistoryBuilder().fault("failover", start=1.0, end=2.0)
    b.op(1, "write", 1, at=0.0)
    b.op(2, "write", 2, at=0.8, took=0.5, type="info", error=LOST)  # in flight across the fault's start
    b.op(3, "write", {"id": 3}, at=3.0)
    b.op(4, "write", 4, at=3.1, type="fail", error=OpError("23514", "check violation", True))
    b.op(9, "final_read", at=5.0, result=final)
    return b


def test_no_duplicate_true_when_every_id_appears_at_most_once():
    for final in ([1, 3], [1, 2, 3]):  # the cut write may have committed once, or not at all
        v = NoDuplicateChecker().check(duplicate_run(final).history(), CTX)
        assert v.valid is T and v.figure == 0
        assert "1 in flight during a fault" in v.reason and "1 indeterminate" in v.reason


def test_no_duplicate_false_when_a_write_is_applied_twice():
    v = NoDuplicateChecker().check(duplicate_run([1, 2, 2, 3]).history(), CTX)  # re-sent after its commit
    assert v.valid is F and v.figure == 1 and v.evidence[0]["value"] == 2
    assert "1 extra copies" in v.reason
    v = NoDuplicateChecker().check(duplicate_run([1, 1, 3, 3, 3]).history(), CTX)  # acked ones too
    assert v.valid is F and v.figure == 2 and "3 extra copies" in v.reason


def test_no_duplicate_false_without_a_fault_when_a_copy_is_there_anyway():
    b = HistoryBuilder().op(1, "write", 1, at=0.0).op(9, "final_read", at=1.0, result=[1, 1])
    assert NoDuplicateChecker().check(b.history(), CTX).valid is F


def test_no_duplicate_unknown_without_final_read_writes_or_risk():
    assert NoDuplicateChecker().check(HistoryBuilder().op(1, "write", 1, at=0).history(), CTX).valid is U
    v = NoDuplicateChecker().check(HistoryBuilder().op(9, "final_read", at=1, result=[]).history(), CTX)
    assert v.valid is U and "no write was made" in v.reason
    b = HistoryBuilder().fault("failover", start=5.0, end=6.0)
    b.op(1, "write", 1, at=0.0).op(9, "final_read", at=1.0, result=[1])
    v = NoDuplicateChecker().check(b.history(), CTX)  # no write overlapped the fault: never at risk
    assert v.valid is U and "none in flight while a fault was active" in v.reason


# -- storm ----------------------------------------------------------------------------------------
def test_storm_served_fraction_inside_storm_window():
    b = HistoryBuilder().fault("storm", start=1.0, end=3.0)
    b.op("x", "connect", at=0.5, type="fail", error=OpError("1040", "too many", True))  # outside: ignored
    for p in range(99):
        b.op(p, "connect", at=1.0 + p * 0.01, took=2.0)
    b.op(100, "connect", at=2.5, took=7.0)  # served, but after the 5 s borrow timeout
    ctx = CheckContext(borrow_timeout_s=5)
    v = StormServedChecker().check(b.history(), ctx)
    assert v.valid is T and v.figure == pytest.approx(0.99)
    b.op(101, "connect", at=2.6, took=None)
    v = StormServedChecker().check(b.history(), ctx)
    assert v.valid is F and len(v.evidence) == 2
    assert StormServedChecker().check(HistoryBuilder().history(), ctx).valid is U


# -- netfault -------------------------------------------------------------------------------------
def test_silent_fault_detected_in_time_and_too_late():
    b = HistoryBuilder().fault("blackhole", start=10.0, end=40.0)
    b.op(1, "read", at=5.0, type="fail", error=LOST)  # before the fault: not detection
    b.op(1, "read", at=11.0, took=4.0, type="info", error=LOST)
    v = SilentFaultDetectedChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == pytest.approx(5.0)
    b = HistoryBuilder().fault("blackhole", start=10.0, end=50.0)
    b.event("detected", {"instance": "i1"}, at=45.0)
    v = SilentFaultDetectedChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == pytest.approx(35.0)


def test_silent_fault_never_detected():
    b = HistoryBuilder().fault("blackhole", start=0.0, end=60.0).op(1, "read", at=1, took=None)
    v = SilentFaultDetectedChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == pytest.approx(60.0)
    b = HistoryBuilder().fault("blackhole", start=0.0, end=5.0)
    assert SilentFaultDetectedChecker().check(b.history(), CTX).valid is U
    assert SilentFaultDetectedChecker().check(HistoryBuilder().history(), CTX).valid is U


def test_silent_fault_only_counts_errors_on_its_endpoint():
    b = HistoryBuilder().fault("blackhole", start=0.0, end=60.0, endpoint="reader")
    b.op(1, "write", at=1, type="fail", error=LOST, endpoint="writer")
    b.op(2, "read", at=2, type="info", error=LOST, endpoint="reader")
    assert SilentFaultDetectedChecker().check(b.history(), CTX).figure == pytest.approx(2.01)


# -- latency --------------------------------------------------------------------------------------
def latency_run(n: int, proxy_ms: float, direct_ms: float, seed: int = 1) -> HistoryBuilder:
    rng = random.Random(seed)
    b = HistoryBuilder()
    for i in range(n):
        b.op(f"p{i}", "read", at=i * 0.1, took=proxy_ms / 1000 * rng.uniform(0.9, 1.1), endpoint="reader")
        b.op(f"d{i}", "read", at=i * 0.1, took=direct_ms / 1000 * rng.uniform(0.9, 1.1), endpoint="direct:i2")
    return b


def test_added_latency_from_direct_requests_in_the_same_history():
    h = latency_run(200, proxy_ms=2.0, direct_ms=1.0).history()
    v50 = AddedLatencyP50Checker().check(h, CTX)
    assert v50.valid is T and 800 <= v50.figure <= 1200
    v99 = AddedLatencyP99Checker(min_samples=200).check(h, CTX)
    assert v99.valid is T
    h = latency_run(200, proxy_ms=12.0, direct_ms=1.0).history()
    assert AddedLatencyP50Checker().check(h, CTX).valid is F


def noisy_run(n: int, added_ms: float, seed: int) -> HistoryBuilder:
    """Interleaved reads on a noisy machine: a lognormal body around 0.3 ms and, one request in thirty,
    a stall of 2-10 ms that lands on either series alike (the shape measured on a shared 2-core machine:
    direct p50 0.25 ms, p99 5-7 ms); the proxy adds ``added_ms`` to each of its own."""
    rng = random.Random(seed)
    b = HistoryBuilder()

    def one() -> float:
        ms = 0.3 * rng.lognormvariate(0.0, 0.35)
        return ms + (rng.uniform(2.0, 10.0) if rng.random() < 1 / 30 else 0.0)

    for i in range(n):
        b.op(f"d{i}", "read", at=i * 0.1, took=one() / 1000, endpoint="direct:i1")
        b.op(f"p{i}", "read", at=i * 0.1 + 0.05, took=(one() + added_ms) / 1000, endpoint="writer")
    return b


@pytest.mark.parametrize("seed", range(10))
def test_a_constant_10_ms_fails_both_percentiles_and_a_light_proxy_passes_despite_a_noisy_baseline(seed):
    slow = noisy_run(2000, added_ms=10.0, seed=seed).history()
    for checker in (AddedLatencyP50Checker(), AddedLatencyP99Checker()):
        v = checker.check(slow, CTX)
        assert v.valid is F, v.reason
    light = noisy_run(2000, added_ms=0.3, seed=seed).history()
    for checker in (AddedLatencyP50Checker(), AddedLatencyP99Checker()):
        v = checker.check(light, CTX)
        assert v.valid is T, v.reason
    none = noisy_run(2000, added_ms=0.0, seed=seed).history()
    assert AddedLatencyP99Checker().check(none, CTX).figure == 0.0


def test_the_p99_needs_a_thousand_samples_and_its_band_is_distribution_free():
    assert AddedLatencyP99Checker().check(noisy_run(500, 10.0, seed=1).history(), CTX).valid is U
    values = list(range(1, 1001))  # the band around rank 990 of 1,000: about ±5 ranks
    lo, hi = quantile_band_us(values, 99)
    assert 983 <= lo < 990 < hi <= 997
    assert quantile_band_us([7], 99) == (7, 7)


def test_added_latency_from_a_baseline_history():
    proxied = HistoryBuilder()
    direct = HistoryBuilder()
    for i in range(150):
        proxied.op(i, "read", at=i, took=0.030, endpoint="writer")
        direct.op(i, "read", at=i, took=0.001, endpoint="direct:i1")
    v = AddedLatencyP99Checker(min_samples=150).check(proxied.history(), CheckContext(baseline=direct.history()))
    assert v.valid is F and v.figure == pytest.approx(29000, rel=0.01)


def test_added_latency_unknown_without_baseline_or_samples():
    only_proxy = HistoryBuilder()
    for i in range(150):
        only_proxy.op(i, "read", at=i, endpoint="reader")
    v = AddedLatencyP50Checker().check(only_proxy.history(), CTX)
    assert v.valid is U and "baseline" in v.reason
    v = AddedLatencyP50Checker().check(latency_run(20, 2, 1).history(), CTX)
    assert v.valid is U and "too few samples" in v.reason


def test_percentiles_clamp_out_of_range_values():
    assert percentile_us([0, 0, 0], 50) == 1
    assert percentile_us([100, 200, 300, 400], 50) == 200


# -- review regressions ---------------------------------------------------------------------------
def test_write_gap_uses_the_earliest_completion_not_the_earliest_invocation():
    b = HistoryBuilder().fault("failover", start=1.0, end=3.0, new_writer="i2")
    b.op("w1", "write", 1, at=0.5, took=29.5, endpoint="writer", node="i2")  # stuck until t=30
    b.op("w2", "write", 2, at=4.0, took=0.5, endpoint="writer", node="i2")   # ok at t=4.5
    b.op("w3", "write", 3, at=30.5, took=0.01, endpoint="writer", node="i2")
    v = FailoverWriteGapChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == pytest.approx(1.5, abs=0.01)


def test_read_errors_counted_per_worker_across_reconnects():
    b = HistoryBuilder().fault("failover", start=1.0, end=3.0)
    for n, t in enumerate((1.1, 1.4, 1.7, 2.0)):  # one worker, a new connection after every error
        b.op(f"r{n}", "read", at=t, endpoint="reader", type="fail", error=LOST, invoke_extra={"worker": "reader-0"})
    b.op("r9", "read", at=1.2, endpoint="reader", node="i3", invoke_extra={"worker": "reader-1"})
    v = FailoverReadErrorsChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 4 and "2 clients" in v.reason


def test_silent_fault_ignores_definite_server_errors():
    b = HistoryBuilder().fault("blackhole", start=0.0, end=60.0)
    b.op(1, "write", at=1, type="fail", error=OpError("23505", "duplicate key value", definite=True))
    b.op(2, "write", at=2, type="fail", error=OpError("40001", "could not serialize access", definite=True))
    b.op(3, "write", at=40, took=5, type="info", error=OpError("timeout", "no answer within the client's deadline",
                                                               definite=False))
    v = SilentFaultDetectedChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == pytest.approx(45.0)
    b.op(4, "read", at=3, took=1, type="fail", error=PG_TIMEOUT)  # the proxy's borrow timeout: detection
    assert SilentFaultDetectedChecker().check(b.history(), CTX).figure == pytest.approx(4.0)


# -- reader routing through a promotion -----------------------------------------------------------
def promoted_reader_history(read_at: float, *, writer_endpoint_reached_at: float | None) -> HistoryBuilder:
    """i1 writer until i2 is promoted at t=10; one reader-endpoint read served by i2 invoked at ``read_at``."""
    b = HistoryBuilder().event("roles", {"writer": "i1", "readers": ["i2", "i3"]}, at=0.0)
    b.fault("failover", start=9.5, end=10.0, new_writer="i2")
    b.event("new_writer", "i2", at=10.0)
    b.op("r0", "read", at=1.0, endpoint="reader", node="i3")
    if writer_endpoint_reached_at is not None:
        b.op("w1", "write", 1, at=writer_endpoint_reached_at - 0.01, endpoint="writer", node="i2")
    b.op("r1", "read", at=read_at, endpoint="reader", node="i2")
    return b


def test_reads_on_a_just_promoted_reader_are_excused_until_the_proxy_could_know():
    v = ReaderOnlyChecker().check(promoted_reader_history(10.5, writer_endpoint_reached_at=11.0).history(), CTX)
    assert v.valid is T and "1 reads served by a just-promoted reader before the proxy could know" in v.reason


def test_reads_on_the_promoted_reader_after_the_writer_endpoint_reached_it_are_violations():
    v = ReaderOnlyChecker().check(promoted_reader_history(11.5, writer_endpoint_reached_at=11.0).history(), CTX)
    assert v.valid is F and v.figure == 1.0 and v.evidence[0]["node"] == "i2"


def test_the_grace_never_outlasts_the_write_gap_bound():
    # No writer-endpoint request shows the proxy following: it must have by FAILOVER-WRITE-GAP's 3 s.
    v = ReaderOnlyChecker().check(promoted_reader_history(12.9, writer_endpoint_reached_at=None).history(), CTX)
    assert v.valid is T
    v = ReaderOnlyChecker().check(promoted_reader_history(13.1, writer_endpoint_reached_at=None).history(), CTX)
    assert v.valid is F and v.figure == 1.0


def unobserved_promotion_history(read_at: float) -> HistoryBuilder:
    """A failover run by a user's command, no direct access: only the fault's end names the new writer
    (i2, at 20 s), and each request says the role its instance reported."""
    b = HistoryBuilder()
    b.fault("failover", start=5.0, end=20.0, new_writer="i2", promotion_observed=False)
    b.op("r1", "read", at=read_at, endpoint="reader", node="i2", extra={"role": "writer"})
    return b


def test_a_promotion_nobody_saw_excuses_reads_on_the_new_writer_from_the_faults_start_to_its_bound():
    for read_at in (6.0, 19.0, 22.9):  # promoted at some instant of the window; known by its end + 3 s
        v = ReaderOnlyChecker().check(unobserved_promotion_history(read_at).history(), CTX)
        assert v.valid is T, (read_at, v.reason)
    v = ReaderOnlyChecker().check(unobserved_promotion_history(23.5).history(), CTX)
    assert v.valid is F and v.figure == 1.0


READ_ONLY = OpError("25006", "cannot execute INSERT in a read-only transaction", definite=True)
MY_READ_ONLY = OpError("1290", "The MariaDB server is running with the --read-only option", definite=True)


def test_a_write_refused_as_read_only_outside_faults_is_misrouting_evidence():
    b = HistoryBuilder().event("roles", {"writer": "i1", "readers": ["i2"]}, at=0.0)
    b.op("w1", "write", 1, at=1.0, endpoint="writer", node="i1")
    b.op("w2", "write", 2, at=2.0, endpoint="writer", type="fail", error=READ_ONLY)
    b.op("w3", "write", 3, at=3.0, endpoint="writer", type="fail", error=MY_READ_ONLY)
    v = WriterEndpointChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 2.0 and "2 refused as read-only outside any fault" in v.reason
    assert [e["f"] for e in v.evidence] == ["write", "write"]


def test_read_only_refusals_in_a_fault_or_before_the_proxy_could_follow_are_excused():
    b = promoted_reader_history(10.5, writer_endpoint_reached_at=11.0)
    b.op("w9", "write", 9, at=9.7, endpoint="writer", type="fail", error=READ_ONLY)    # in the failover
    b.op("w10", "write", 10, at=10.2, endpoint="writer", type="fail", error=READ_ONLY)  # before it followed
    assert WriterEndpointChecker().check(b.history(), CTX).valid is T
    b.op("w11", "write", 11, at=11.5, endpoint="writer", type="fail", error=READ_ONLY)  # after: misrouted
    v = WriterEndpointChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 1.0


def test_a_writer_endpoint_request_the_new_writer_served_before_the_promotion_was_polled_is_not_misrouted():
    """The watcher's new_writer event comes at its next poll; a request the proxy already routed to
    the new writer (which reported itself writable) shows the promotion had happened by then."""
    def run(role: str) -> HistoryBuilder:
        b = HistoryBuilder().fault("failover", start=1.0, end=3.0, old_writer="i1", new_writer="i2")
        b.event("roles", {"writer": "i1", "readers": ["i2"]}, at=0.0)
        b.op("w1", "point_read", at=0.5, endpoint="writer", node="i1", extra={"role": "writer"})
        b.op("w1", "point_read", at=1.2, took=0.3, endpoint="writer", node="i2", extra={"role": role})
        b.event("new_writer", "i2", at=1.52)
        return b
    v = WriterEndpointChecker().check(run("writer").history(), CTX)
    assert v.valid is T, v.reason
    v = WriterEndpointChecker().check(run("reader").history(), CTX)  # not yet writable: served by a non-writer
    assert v.valid is F and v.figure == 1.0
