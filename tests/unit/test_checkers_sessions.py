"""Pooling, routing, pinning and isolation checkers on hand-made histories: pass, fail, unknown."""

from __future__ import annotations

import pytest

from harness.checkers.base import CheckContext, Validity
from harness.checkers.isolation import SessionLeakChecker
from harness.checkers.pinning import PinNonTriggersChecker, PinTriggersChecker
from harness.checkers.pooling import BackendCapChecker, MultiplexingChecker
from harness.checkers.routing import (
    ReaderBalanceChecker,
    ReaderOnlyChecker,
    WriterEndpointChecker,
    WriterTimeline,
)
from harness.checkers.synthetic import HistoryBuilder
from harness.history import OpError, OpType
from harness.metrics import MetricSample

T, F, U = Validity.TRUE, Validity.FALSE, Validity.UNKNOWN
CTX = CheckContext()


# -- pooling --------------------------------------------------------------------------------------
def test_backend_cap_from_metrics_and_ops():
    ctx = CheckContext(pool_cap={"i1": 10, "i2": 5},
                       metrics=[MetricSample(0, "DatabaseConnections", 9, {"Target": "i1"}),
                                MetricSample(1, "DatabaseConnections", 5, {"Target": "i2"}),
                                MetricSample(1, "ClientConnections", 500, {})])
    v = BackendCapChecker().check(HistoryBuilder().history(), ctx)
    assert v.valid is T and v.figure == 100.0 and "on i2" in v.reason
    h = HistoryBuilder().op("probe", "backend_count", result=11, at=1, node="i1").history()
    v = BackendCapChecker().check(h, ctx)
    assert v.valid is F and v.figure == 110.0 and len(v.evidence) == 1 and v.evidence[0]["value"] == 11


def test_backend_cap_unknown_without_cap_or_samples():
    h = HistoryBuilder().op("probe", "backend_count", result=3, at=1, node="i1").history()
    assert BackendCapChecker().check(h, CTX).valid is U
    v = BackendCapChecker().check(HistoryBuilder().history(), CheckContext(pool_cap={"i1": 3}))
    assert v.valid is U and "no backend-count samples" in v.reason


def _txns(b: HistoryBuilder, process, backends, start=0.0, f="txn"):
    for k, backend in enumerate(backends):
        b.op(process, f, k, at=start + k, endpoint="writer", node="i1", extra={"backend": backend})


def test_multiplexing_true_when_a_client_moves_between_backends():
    b = HistoryBuilder()
    _txns(b, 1, [100, 100, 100])
    _txns(b, 2, [100, 101, 100])
    v = MultiplexingChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == 2.0


def test_multiplexing_false_when_every_client_is_stuck():
    b = HistoryBuilder()
    _txns(b, 1, [100, 100, 100])
    _txns(b, 2, [101, 101])
    v = MultiplexingChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 1.0


def test_multiplexing_ignores_pinned_clients_and_is_unknown_without_backend_ids():
    b = HistoryBuilder()
    b.op(1, "pin_trigger", "SET", at=0, extra={"backend": 100})
    _txns(b, 1, [100, 101], start=1)
    assert MultiplexingChecker().check(b.history(), CTX).valid is U
    b = HistoryBuilder().op(1, "txn", at=0).op(1, "txn", at=1)
    assert MultiplexingChecker().check(b.history(), CTX).valid is U


# -- routing --------------------------------------------------------------------------------------
def failover_run() -> HistoryBuilder:
    """i1 is writer until a failover promotes i2 at 2.0 s; i3 stays a reader."""
    b = HistoryBuilder()
    b.event("roles", {"writer": "i1", "readers": ["i2", "i3"]}, at=0.0)
    b.fault("failover", start=1.0, end=2.0, new_writer="i2")
    b.op(1, "write", 1, at=0.5, endpoint="writer", node="i1")
    b.op(1, "write", 2, at=1.95, took=0.1, endpoint="writer", node="i2")  # straddles promotion: allowed
    b.op(1, "write", 3, at=2.5, endpoint="writer", node="i2")
    b.op(2, "read", at=0.5, endpoint="reader", node="i2")
    b.op(2, "read", at=2.5, endpoint="reader", node="i3")
    return b


def test_writer_timeline_from_roles_and_failover_params():
    h = failover_run().history()
    tl = WriterTimeline.from_history(h)
    assert tl.writer_at(int(0.5e9)) == "i1" and tl.writer_at(int(2.5e9)) == "i2"
    assert tl.writers_during(int(1.5e9), int(2.5e9)) == {"i1", "i2"}
    assert WriterTimeline.from_history(HistoryBuilder().history()).writers_during(0, 1) is None
    assert tl.readers_seen(h) == {"i2", "i3"}


def test_writer_endpoint_true_across_failover():
    v = WriterEndpointChecker().check(failover_run().history(), CTX)
    assert v.valid is T and v.figure == 0 and "3 writer-endpoint requests" in v.reason


def test_writer_endpoint_false_when_old_writer_serves_after_promotion():
    b = failover_run().op(3, "write", 9, at=3.0, endpoint="writer", node="i1")
    v = WriterEndpointChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 1 and v.evidence[0]["value"] == 9


def test_writer_endpoint_unknown_without_a_known_writer_or_requests():
    b = HistoryBuilder().op(1, "write", at=1, endpoint="writer", node="i1")
    assert WriterEndpointChecker().check(b.history(), CTX).valid is U
    assert WriterEndpointChecker().check(b.history(), CheckContext(initial_writer="i1")).valid is T
    v = WriterEndpointChecker().check(HistoryBuilder().history(), CheckContext(initial_writer="i1"))
    assert v.valid is U and "no ok writer-endpoint request" in v.reason


def test_reader_only_true_and_false():
    assert ReaderOnlyChecker().check(failover_run().history(), CTX).valid is T
    b = failover_run().op(4, "read", at=3.0, endpoint="reader", node="i2")  # i2 is writer now
    v = ReaderOnlyChecker().check(b.history(), CTX)
    assert v.valid is F and v.evidence[0]["node"] == "i2"
    assert ReaderOnlyChecker().check(HistoryBuilder().history(), CTX).valid is U


def test_routing_without_a_timeline_is_judged_by_the_role_each_serving_instance_reported():
    """An external proxy: nobody outside sees the instances, but each request asked its server's role."""
    b = HistoryBuilder()
    for k in range(3):
        b.op(1, "read", at=k, endpoint="writer", node="w", extra={"role": "writer"})
        b.op(2, "read", at=k, endpoint="reader", node="r1", extra={"role": "reader"})
    v = WriterEndpointChecker().check(b.history(), CTX)
    assert v.valid is T and "reported" in v.reason
    assert ReaderOnlyChecker().check(b.history(), CTX).valid is T
    # A pooler that balances writer-endpoint reads onto readers, and reader-endpoint reads onto the writer.
    b.op(3, "read", at=4, endpoint="writer", node="r2", extra={"role": "reader"})
    b.op(4, "read", at=4, endpoint="reader", node="w", extra={"role": "writer"})
    w, r = WriterEndpointChecker().check(b.history(), CTX), ReaderOnlyChecker().check(b.history(), CTX)
    assert w.valid is F and w.figure == 1 and w.evidence[0]["node"] == "r2"
    assert r.valid is F and r.figure == 1 and r.evidence[0]["node"] == "w"
    # Requests that did not ask leave it unknown, as before.
    plain = HistoryBuilder().op(1, "read", at=1, endpoint="reader", node="r1")
    assert ReaderOnlyChecker().check(plain.history(), CTX).valid is U


def test_reader_balance_finds_the_readers_by_their_reported_role():
    b = HistoryBuilder()
    for p, node in enumerate(["r1", "r2"] * 6):
        b.op(p, "read", at=p * 0.01, endpoint="reader", node=node, extra={"role": "reader"})
    assert ReaderBalanceChecker().check(b.history(), CTX).valid is T


def _reader_connections(counts: dict[str, int]) -> HistoryBuilder:
    b = HistoryBuilder()
    p = 0
    for node, n in counts.items():
        for _ in range(n):
            p += 1
            b.op(p, "read", at=p * 0.01, endpoint="reader", node=node)
            b.op(p, "read", at=p * 0.01 + 5, endpoint="reader", node=node)
    return b


def test_reader_balance_weighted_by_max_connections():
    ctx = CheckContext(reader_weights={"r1": 500, "r2": 500, "r3": 1000})
    v = ReaderBalanceChecker().check(_reader_connections({"r1": 10, "r2": 11, "r3": 19}).history(), ctx)
    assert v.valid is T and v.figure < 0.25
    v = ReaderBalanceChecker().check(_reader_connections({"r1": 20, "r2": 10, "r3": 10}).history(), ctx)
    assert v.valid is F and "worst is r1" in v.reason


def test_reader_balance_uses_roles_events_and_needs_enough_connections():
    b = _reader_connections({"r1": 6, "r2": 6})
    b.event("roles", {"writer": "w", "readers": ["r1", "r2"]}, at=0)
    assert ReaderBalanceChecker().check(b.history(), CTX).valid is T
    v = ReaderBalanceChecker().check(_reader_connections({"r1": 2, "r2": 2}).history(),
                                     CheckContext(reader_weights={"r1": 1, "r2": 1}))
    assert v.valid is U and "need 5 per reader" in v.reason
    assert ReaderBalanceChecker().check(_reader_connections({"r1": 20}).history(), CTX).valid is U


# -- pinning --------------------------------------------------------------------------------------
def _session(b: HistoryBuilder, process, marker, value, backends, start=0.0):
    b.op(process, marker, value, at=start, extra={"backend": backends[0]}, node="i1")
    _txns(b, process, backends, start=start + 0.5)


def test_pin_triggers_true_when_sessions_stay_and_false_when_one_moves():
    b = HistoryBuilder()
    _session(b, 1, "pin_trigger", "SET", [7, 7, 7])
    _session(b, 2, "pin_trigger", "CREATE TEMP TABLE", [8, 8, 8])
    v = PinTriggersChecker().check(b.history(), CTX)
    assert v.valid is T and "2 pinned sessions" in v.reason
    _session(b, 3, "pin_trigger", "LISTEN", [9, 9, 10])
    v = PinTriggersChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 1 and "LISTEN" in v.reason and v.evidence[0]["extra"]["backend"] == 10


def test_pin_non_triggers_false_when_stuck_true_when_moving_unknown_when_short():
    b = HistoryBuilder()
    _session(b, 1, "non_pin_trigger", "pg_advisory_xact_lock", [7, 8, 7])
    assert PinNonTriggersChecker().check(b.history(), CTX).valid is T
    _session(b, 2, "non_pin_trigger", "SET time_zone", [9, 9, 9])
    v = PinNonTriggersChecker().check(b.history(), CTX)
    assert v.valid is F and "SET time_zone" in v.reason
    b = HistoryBuilder()
    _session(b, 1, "non_pin_trigger", "CALL p()", [7, 8])
    assert PinNonTriggersChecker().check(b.history(), CTX).valid is U
    assert PinTriggersChecker().check(b.history(), CTX).valid is U


# -- isolation ------------------------------------------------------------------------------------
def _state(b, process, f, kind, name, value, at):
    b.op(process, f, {"kind": kind, "name": name, "value": value}, at=at)


def test_no_leak_when_each_client_reads_only_its_own_state():
    b = HistoryBuilder()
    _state(b, 1, "set_state", "setting", "application_name", "client-1", 0)
    _state(b, 2, "set_state", "setting", "application_name", "client-2", 0.1)
    _state(b, 1, "read_state", "setting", "application_name", "client-1", 1)
    _state(b, 3, "read_state", "setting", "application_name", "", 1.1)  # a default: not a leak
    _state(b, 3, "read_state", "temp_table", "t_client_1", False, 1.2)
    v = SessionLeakChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == 0


def test_leaks_of_each_kind_are_found():
    b = HistoryBuilder()
    _state(b, 1, "set_state", "setting", "application_name", "client-1", 0)
    _state(b, 1, "set_state", "temp_table", "t1", True, 0.1)
    _state(b, 1, "set_state", "prepared_statement", "s1", True, 0.2)
    _state(b, 1, "set_state", "advisory_lock", "42", True, 0.3)
    _state(b, 2, "read_state", "setting", "application_name", "client-1", 1)
    _state(b, 2, "read_state", "temp_table", "t1", True, 1.1)
    _state(b, 3, "read_state", "prepared_statement", "s1", True, 1.2)
    _state(b, 3, "read_state", "advisory_lock", "42", True, 1.3)
    _state(b, 1, "read_state", "temp_table", "t1", True, 1.4)  # its own: fine
    v = SessionLeakChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 4
    assert "advisory_lock, prepared_statement, setting, temp_table" in v.reason


def test_isolation_unknown_without_reads_or_without_another_client():
    b = HistoryBuilder()
    _state(b, 1, "set_state", "setting", "x", "1", 0)
    assert SessionLeakChecker().check(b.history(), CTX).valid is U
    _state(b, 1, "read_state", "setting", "x", "1", 1)
    v = SessionLeakChecker().check(b.history(), CTX)
    assert v.valid is U and "fewer than two clients" in v.reason


def test_isolation_ignores_failed_reads_and_reports_unknown_kinds():
    b = HistoryBuilder()
    _state(b, 1, "set_state", "setting", "x", "a", 0)
    b.op(2, "read_state", {"kind": "setting", "name": "x", "value": "a"}, at=1, type=OpType.FAIL,
         error=OpError("08006", "gone", True))
    _state(b, 2, "read_state", "setting", "x", None, 2)
    _state(b, 2, "read_state", "cursor", "c", True, 3)
    v = SessionLeakChecker().check(b.history(), CTX)
    assert v.valid is T and "1 state ops with an unknown kind" in v.reason


def test_isolation_accepts_the_setting_shorthand():
    b = HistoryBuilder()
    b.op(1, "set_setting", {"name": "search_path", "value": "client_1"}, at=0)
    b.op(2, "read_setting", {"name": "search_path", "value": "client_1"}, at=1)
    v = SessionLeakChecker().check(b.history(), CTX)
    assert v.valid is F and v.evidence[0]["f"] == "read_setting"


def test_isolation_a_read_is_excused_only_by_the_readers_own_earlier_set():
    b = HistoryBuilder()
    _state(b, 1, "set_state", "temp_table", "probe", True, 0)
    _state(b, 2, "read_state", "temp_table", "probe", True, 1)  # client 1's table, before 2 made its own
    _state(b, 2, "set_state", "temp_table", "probe", True, 2)
    _state(b, 2, "read_state", "temp_table", "probe", True, 3)  # its own now: fine
    v = SessionLeakChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 1 and v.evidence[0]["time"] == pytest.approx(1.01e9)


def test_isolation_own_state_ends_when_the_process_reconnects():
    b = HistoryBuilder()
    _state(b, 1, "set_state", "advisory_lock", "7", True, 0)
    _state(b, 2, "set_state", "advisory_lock", "7", True, 0.5)
    b.op(2, "connect", at=1)  # a new connection under the same process id: a clean session
    _state(b, 2, "read_state", "advisory_lock", "7", True, 2)
    v = SessionLeakChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 1


def test_backend_cap_prefers_counts_taken_on_the_server_to_the_proxys_gauge():
    ctx = CheckContext(pool_cap={"i1": 10}, metrics=[MetricSample(0, "DatabaseConnections", 4, {"Target": "i1"})])
    h = HistoryBuilder().op("probe", "backend_count", result=12, at=1, node="i1").history()
    v = BackendCapChecker().check(h, ctx)  # the gauge understates; the server count is what counts
    assert v.valid is F and v.figure == 120.0 and "counted on the servers" in v.reason
    ctx = CheckContext(pool_cap={"i1": 10}, metrics=[MetricSample(0, "DatabaseConnections", 15, {"Target": "i1"})])
    h = HistoryBuilder().op("probe", "backend_count", result=8, at=1, node="i1").history()
    assert BackendCapChecker().check(h, ctx).valid is T


def test_pool_caps_are_computed_from_the_start_settings_and_the_servers_max_connections(monkeypatch):
    from harness.plugin import targets as plugin_targets
    from harness.targets.base import Capability

    class FakeReference:
        engine = "postgres"
        capabilities = frozenset({Capability.DIRECT, Capability.POOL_SETTINGS})

        def __init__(self, pool_settings):
            self.pool_settings = pool_settings

        def supports(self, capability):
            return capability in self.capabilities

        def status(self):
            raise AssertionError("the cap must not come from the proxy under test")

        def direct_instances(self):
            return [{"id": "i1"}, {"id": "i2"}]

    monkeypatch.setattr(plugin_targets, "server_max_connections",
                        lambda engine, inst: {"i1": 100, "i2": 57}[inst["id"]])
    assert plugin_targets.pool_caps(FakeReference({"max_connections_percent": 20})) == {"i1": 20, "i2": 11}
    assert plugin_targets.pool_caps(FakeReference({})) == {"i1": 100, "i2": 57}
    external = FakeReference({})
    external.capabilities = frozenset({Capability.DIRECT})  # pool settings unknown to the harness
    assert plugin_targets.pool_caps(external) is None


def test_a_narrower_look_at_session_state_is_named_in_the_verdict():
    b = HistoryBuilder()
    b.event("state_kinds_unlisted", {"temp_table": "asked by name only: cannot list temporary tables"}, at=0)
    _state(b, 1, "set_state", "setting", "tag", "client-1", 0.1)
    _state(b, 2, "read_state", "setting", "tag", None, 0.2)
    b.op(2, "read_state", {"kind": "advisory_lock", "name": "c2", "value": None,
                           "unjudged": "the server does not record who holds named locks"}, at=0.3)
    v = SessionLeakChecker().check(b.history(), CTX)
    assert v.valid is T
    assert "temp_table: asked by name only" in v.reason
    assert "advisory_lock: 1 observations not made (the server does not record who holds named locks)" in v.reason


def test_backend_count_samples_the_server_could_not_take_are_named_not_counted():
    ctx = CheckContext(pool_cap={"i1": 10})
    h = HistoryBuilder().op("probe", "backend_count", result=None, at=1, node="i1").history()
    v = BackendCapChecker().check(h, ctx)
    assert v.valid is U and "1 server samples absent" in v.reason
    h = (HistoryBuilder().op("probe", "backend_count", result=None, at=1, node="i1")
         .op("probe", "backend_count", result=4, at=2, node="i1").history())
    v = BackendCapChecker().check(h, ctx)
    assert v.valid is T and v.figure == 40.0 and "1 samples absent" in v.reason



def test_isolation_unknown_says_every_state_read_failed():
    from harness.checkers.isolation import SessionLeakChecker
    from harness.history import OpError

    refusal = OpError("08P01", "transaction blocks not allowed in statement pooling mode", definite=True)
    h = HistoryBuilder().op("c1", "read_state", {"kind": "setting", "name": "x"}, at=1, type="fail",
                            error=refusal).history()
    verdict = SessionLeakChecker().check(h, CTX)
    assert verdict.valid is U
    assert "every state read failed (1)" in verdict.reason and "statement pooling" in verdict.reason


def test_storm_reason_tells_refused_from_slow():
    from harness.checkers.storm import StormServedChecker
    from harness.history import OpError

    b = HistoryBuilder()
    b.op("s1", "connect", at=1, took=0.01)
    b.op("s2", "connect", at=1, took=0.01, type="fail", error=OpError("53300", "sorry, too many clients already", True))
    b.op("s3", "connect", at=1, took=None)
    verdict = StormServedChecker().check(b.history(), CTX)
    assert "2 not served (1 refused or failed, 1 not answered within" in verdict.reason
    assert "too many clients" in verdict.reason
