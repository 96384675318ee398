"""Requests a workload needed served: failures count against routing and multiplexing, a borrow
timeout (the pool's stated limit) makes the verdict unknown, and one success never passes the rest."""

from __future__ import annotations

from harness.checkers.availability import ServedShareChecker
from harness.checkers.base import CheckContext, Validity
from harness.checkers.pooling import MultiplexingChecker
from harness.checkers.routing import ReaderBalanceChecker, ReaderOnlyChecker, WriterEndpointChecker
from harness.checkers.served import EXPECT_SERVED, unserved
from harness.checkers.synthetic import HistoryBuilder
from harness.history import OpError, OpType

T, F, U = Validity.TRUE, Validity.FALSE, Validity.UNKNOWN
MUST = {"expect": EXPECT_SERVED}
REFUSED = OpError("08006", "no more connections allowed (max_client_conn)", definite=True)
BORROW = OpError(None, "Timed-out waiting to acquire database connection.", definite=True)
WAITED = OpError("timeout", "the request got no answer within 30 s", definite=False)


def served_reads(b: HistoryBuilder, endpoint: str, node: str, role: str, processes, start=0.0) -> None:
    for k, p in enumerate(processes):
        b.op(p, "read", at=start + k * 0.01, endpoint=endpoint, node=node, extra={"role": role, "backend": k},
             invoke_extra=MUST)


def test_one_served_read_does_not_pass_a_writer_endpoint_that_refused_the_rest():
    b = HistoryBuilder()
    served_reads(b, "writer", "i1", "writer", ["c1"])
    for k in range(2, 12):
        b.op(f"c{k}", "connect", at=1 + k * 0.01, endpoint="writer", type=OpType.FAIL, error=REFUSED,
             invoke_extra=MUST)
    v = WriterEndpointChecker().check(b.history(), CheckContext())
    assert v.valid is F and "10 writer-endpoint requests the workload needed were not served" in v.reason
    assert "max_client_conn" in v.reason and len(v.evidence) == 10
    assert v.evidence[0]["f"] == "connect" and v.evidence[0]["type"] == "fail"


def test_every_request_failing_is_false_not_unknown():
    b = HistoryBuilder()
    b.op("c1", "connect", at=0, endpoint="writer", type=OpType.INFO, error=WAITED, invoke_extra=MUST)
    b.op("c2", "read", at=0, endpoint="writer", took=None, invoke_extra=MUST)  # never answered
    v = WriterEndpointChecker().check(b.history(), CheckContext())
    assert v.valid is F and "no ok writer-endpoint request" in v.reason and "no answer (1)" in v.reason


def test_borrow_timeouts_are_the_pools_stated_limit_so_routing_is_unknown_for_them():
    b = HistoryBuilder()
    served_reads(b, "reader", "i2", "reader", ["c1", "c2"])
    b.op("c3", "connect", at=1, endpoint="reader", type=OpType.FAIL, error=BORROW, invoke_extra=MUST)
    v = ReaderOnlyChecker().check(b.history(), CheckContext())
    assert v.valid is U and "1 reader-endpoint requests waited out the proxy's borrow timeout" in v.reason
    assert v.figure == 0.0
    # A real violation stays false, and the borrow timeouts are still named.
    served_reads(b, "reader", "i1", "writer", ["c4"], start=2)
    v = ReaderOnlyChecker().check(b.history(), CheckContext())
    assert v.valid is F and v.figure == 1.0 and "waited out the proxy's borrow timeout" in v.reason


def test_unmarked_failures_are_left_to_their_own_guarantees():
    b = HistoryBuilder()
    served_reads(b, "writer", "i1", "writer", ["c1", "c2"])
    b.op("c3", "read", at=1, endpoint="writer", type=OpType.FAIL, error=REFUSED)  # e.g. during a failover
    assert unserved(b.history()) == []
    assert WriterEndpointChecker().check(b.history(), CheckContext()).valid is T


def test_failed_reader_connections_count_against_balance():
    b = HistoryBuilder()
    served_reads(b, "reader", "i2", "reader", [f"a{k}" for k in range(5)])
    served_reads(b, "reader", "i3", "reader", [f"b{k}" for k in range(5)], start=1)
    ctx = CheckContext(reader_weights={"i2": 1.0, "i3": 1.0})
    assert ReaderBalanceChecker().check(b.history(), ctx).valid is T
    b.op("c9", "connect", at=3, endpoint="reader", type=OpType.FAIL, error=REFUSED, invoke_extra=MUST)
    v = ReaderBalanceChecker().check(b.history(), ctx)
    assert v.valid is F and v.figure == 0.0 and "1 reader-endpoint requests the workload needed" in v.reason


def test_multiplexing_is_false_when_clients_were_not_served_even_if_one_moved():
    b = HistoryBuilder()
    for k, backend in enumerate([100, 101, 100]):
        b.op("c1", "read", at=k, endpoint="writer", node="i1", extra={"backend": backend}, invoke_extra=MUST)
    assert MultiplexingChecker().check(b.history(), CheckContext()).valid is T
    for k in range(2, 50):
        b.op(f"c{k}", "connect", at=5 + k * 0.01, endpoint="writer", type=OpType.INFO, error=WAITED,
             invoke_extra=MUST)
    v = MultiplexingChecker().check(b.history(), CheckContext())
    assert v.valid is F and v.figure == 2.0 and "48 client connects and requests" in v.reason


# -- AVAILABILITY-SERVED --------------------------------------------------------------------------
def test_availability_holds_when_every_marked_request_was_served():
    b = HistoryBuilder()
    served_reads(b, "writer", "i1", "writer", [f"w{k}" for k in range(5)])
    served_reads(b, "reader", "i2", "reader", [f"r{k}" for k in range(5)], start=1)
    v = ServedShareChecker().check(b.history(), CheckContext())
    assert v.valid is T and v.figure == 100.0
    assert "writer 100.00 %" in v.reason and "reader 100.00 %" in v.reason


def test_one_client_refused_every_time_fails_though_the_overall_share_is_high():
    b = HistoryBuilder()
    for k in range(300):  # 300 served requests keep the overall share above 99 %
        b.op(f"c{k % 30}", "read", at=k * 0.001, endpoint="reader", node="i2", invoke_extra=MUST)
    b.op("lonely", "connect", at=1, endpoint="reader", type=OpType.FAIL, error=REFUSED, invoke_extra=MUST)
    v = ServedShareChecker().check(b.history(), CheckContext())
    assert v.valid is F and v.figure == 0.0 and "client 'lonely' (reader)" in v.reason
    assert len(v.evidence) == 1 and v.evidence[0]["f"] == "connect"


def test_a_share_below_the_threshold_is_false_per_endpoint():
    b = HistoryBuilder()
    served_reads(b, "writer", "i1", "writer", [f"w{k}" for k in range(10)])
    for k in range(10):  # one reader request in ten refused, each client's last one
        served_reads(b, "reader", "i2", "reader", [f"r{k}"] * 9, start=1 + k)
        b.op(f"r{k}", "read", at=1.5 + k, endpoint="reader", type=OpType.FAIL, error=REFUSED, invoke_extra=MUST)
    v = ServedShareChecker().check(b.history(), CheckContext())
    assert v.valid is F and v.figure == 90.0 and "reader 90.00 %" in v.reason and "writer 100.00 %" in v.reason
    assert "10 of 20 clients not fully served" in v.reason


def test_unmarked_and_borrow_timed_out_requests_are_not_judged_for_availability():
    b = HistoryBuilder()
    served_reads(b, "writer", "i1", "writer", ["c1", "c2"])
    b.op("c3", "read", at=1, endpoint="writer", type=OpType.FAIL, error=REFUSED)  # during a fault: not marked
    b.op("c4", "connect", at=1, endpoint="writer", type=OpType.FAIL, error=BORROW, invoke_extra=MUST)
    v = ServedShareChecker().check(b.history(), CheckContext())
    assert v.valid is T and v.figure == 100.0 and "1 more waited out the proxy's borrow timeout" in v.reason


def test_availability_is_unknown_without_marked_requests_and_false_when_none_was_answered():
    plain = HistoryBuilder()
    plain.op("c1", "read", at=0, endpoint="writer", node="i1")
    assert ServedShareChecker().check(plain.history(), CheckContext()).valid is U
    silent = HistoryBuilder()
    silent.op("c1", "read", at=0, endpoint="reader", took=None, invoke_extra=MUST)
    v = ServedShareChecker().check(silent.history(), CheckContext())
    assert v.valid is F and v.figure == 0.0
