"""Requests a workload needed served: failures count against routing and multiplexing, a borrow
timeout (the pool's stated limit) makes the verdict unknown, and one success never passes the rest."""

from __future__ import annotations

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
