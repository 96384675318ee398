"""SESSION-OWN-STATE and TRANSACTION-ONE-BACKEND on hand-made histories (true, false, unknown), and
PIN-TRIGGERS telling a routing fault from a pinning fault."""

from __future__ import annotations

from harness.checkers import CHECKER_TYPES
from harness.checkers.base import CheckContext, Validity
from harness.checkers.own_state import OwnStateChecker
from harness.checkers.pinning import PinTriggersChecker
from harness.checkers.synthetic import HistoryBuilder
from harness.checkers.transactions import OneBackendChecker
from harness.clients import plans
from harness.clients.dialects.mysql import MYSQL
from harness.clients.dialects.postgres import POSTGRES
from harness.history import OpError, OpType

T, F, U = Validity.TRUE, Validity.FALSE, Validity.UNKNOWN
CTX = CheckContext()


def test_both_are_registered_under_their_ids():
    assert CHECKER_TYPES["SESSION-OWN-STATE"] is OwnStateChecker
    assert CHECKER_TYPES["TRANSACTION-ONE-BACKEND"] is OneBackendChecker


# -- SESSION-OWN-STATE ---------------------------------------------------------------------------
def _set(b, process, kind, name, value=True, at=0.0, **kw):
    b.op(process, "set_state", {"kind": kind, "name": name, "value": value}, at=at, node="i1",
         extra={"backend": 7}, **kw)


def _read(b, process, kind, name, observed, at, **kw):
    b.op(process, "read_state", {"kind": kind, "name": name}, at=at, node="i1", extra={"backend": 7},
         result={"kind": kind, "name": name, "value": observed}, **kw)


def test_own_state_true_when_every_later_read_sees_it():
    b = HistoryBuilder()
    for p in (1, 2):
        _set(b, p, "setting", "harness.own", f"client-{p}", at=0.1 * p)
        _set(b, p, "temp_table", f"t_{p}", at=0.5 + 0.1 * p)
        for k in range(3):
            _read(b, p, "setting", "harness.own", f"client-{p}", at=1 + k + 0.1 * p)
            _read(b, p, "temp_table", f"t_{p}", True, at=1.5 + k + 0.1 * p)
    v = OwnStateChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == 100.0
    assert "12 reads of a client's own session state by 2 clients" in v.reason


def test_own_state_false_per_client_when_one_read_goes_elsewhere():
    """pgpool-II's load balancing: one read of client 2's prepared statement lands on a backend
    that never saw it.  Client 1 is perfect, but the judgement is per client."""
    b = HistoryBuilder()
    for p in (1, 2):
        _set(b, p, "prepared_statement", f"ps_{p}", at=0.1 * p)
        for k in range(4):
            _read(b, p, "prepared_statement", f"ps_{p}", not (p == 2 and k == 2), at=1 + k + 0.1 * p)
    v = OwnStateChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 75.0
    assert "1 clients did not see their own state in 1 reads (kinds: prepared_statement" in v.reason
    assert [e["process"] for e in v.evidence] == [2] and v.evidence[0]["value"]["value"] is False


def test_own_state_a_setting_with_another_value_is_not_ones_own():
    """A leaking pooler can show a client *another* client's value under the same name."""
    b = HistoryBuilder()
    _set(b, 1, "setting", "harness.tag", "client-1", at=0)
    _read(b, 1, "setting", "harness.tag", "client-2", at=1)
    v = OwnStateChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 0.0 and v.evidence[0]["value"]["value"] == "client-2"


def test_own_state_ignores_reads_before_the_set_after_a_reconnect_or_of_unmade_state():
    b = HistoryBuilder()
    _read(b, 1, "temp_table", "t_1", False, at=0)             # before it made it: no expectation yet
    _set(b, 1, "temp_table", "t_1", at=1)
    _read(b, 1, "temp_table", "t_1", True, at=2)
    b.op(1, "connect", at=3)                                  # a new session: its state is gone
    _read(b, 1, "temp_table", "t_1", False, at=4)
    _set(b, 2, "advisory_lock", "l_2", False, at=1)           # a lock not granted makes nothing
    _read(b, 2, "advisory_lock", "l_2", False, at=2)
    _set(b, 3, "setting", "harness.x", "v", at=1, type=OpType.INFO, error=OpError("timeout", "cut", False))
    _read(b, 3, "setting", "harness.x", None, at=2)           # the set's outcome is unknown
    v = OwnStateChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == 100.0 and "1 reads of a client's own session state by 1 clients" in v.reason


def test_own_state_unknown_when_no_client_read_its_own_state():
    b = HistoryBuilder()
    _set(b, 1, "setting", "harness.x", "v", at=0)
    _read(b, 2, "setting", "harness.x", None, at=1)  # another client's read is isolation's business
    b.op(1, "read", at=2, node="i1")
    v = OwnStateChecker().check(b.history(), CTX)
    assert v.valid is U and "no client read session state it had set itself" in v.reason
    assert OwnStateChecker().check(HistoryBuilder().history(), CTX).valid is U


def test_own_state_unknown_names_the_sets_that_failed():
    b = HistoryBuilder()
    b.op(1, "set_state", {"kind": "temp_table", "name": "t_1", "value": True}, at=0, type=OpType.FAIL,
         error=OpError("08P01", "transaction blocks not allowed in statement pooling mode", True))
    _read(b, 1, "temp_table", "t_1", False, at=1)
    v = OwnStateChecker().check(b.history(), CTX)
    assert v.valid is U and "1 attempts to set state failed (first: transaction blocks not allowed" in v.reason
    assert v.evidence[0]["type"] == "fail"


def test_own_state_failed_reads_are_counted_not_judged():
    b = HistoryBuilder()
    _set(b, 1, "temp_table", "t_1", at=0)
    _read(b, 1, "temp_table", "t_1", True, at=1)
    b.op(1, "read_state", {"kind": "temp_table", "name": "t_1"}, at=2, type=OpType.FAIL,
         error=OpError("08006", "server closed the connection", True))
    v = OwnStateChecker().check(b.history(), CTX)
    assert v.valid is T and "1 reads of own state failed and were not judged" in v.reason


def test_mysql_session_variable_is_set_and_read_at_session_scope_with_a_value_per_client():
    name, value = MYSQL.own_session_variable("c7")
    assert name == "time_zone" and value == MYSQL.own_session_variable("c7")[1]
    assert value != MYSQL.own_session_variable("c8")[1] and value.startswith("+") and len(value) == 6
    made = plans.set_state_plan(MYSQL, "session_variable", name, value)
    assert made.statements[0].sql == "SET SESSION time_zone = %s" and made.statements[0].params == (value,)
    assert made.value == {"kind": "session_variable", "name": "time_zone", "value": value}
    read = plans.read_state_plan(MYSQL, "session_variable", name)
    assert read.statements[0].sql == "SELECT @@SESSION.time_zone"
    assert read.result([[(value.encode(),)]])["value"] == value  # PyMySQL hands system variables back as bytes
    assert POSTGRES.own_session_variable("c7") is None  # its setting already is a SET


def test_own_state_judges_a_session_variable_by_its_value():
    b = HistoryBuilder()
    _set(b, 1, "session_variable", "time_zone", "+03:07", at=0)
    _read(b, 1, "session_variable", "time_zone", "+03:07", at=1)
    _read(b, 1, "session_variable", "time_zone", "SYSTEM", at=2)  # a backend with the server's default
    v = OwnStateChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 50.0 and "kinds: session_variable" in v.reason


# -- TRANSACTION-ONE-BACKEND ---------------------------------------------------------------------
def _txn(b, process, txn, *, at, ending="commit", backends=(5, 5, 5), saw=1, visible=None, fail_at=None):
    """BEGIN; write; read_own; read; COMMIT/ROLLBACK, then the outcome read."""
    steps = [("begin", None), ("write", backends[0]), ("read_own", backends[1]), ("read", backends[2]),
             (ending, None)]
    for k, (step, backend) in enumerate(steps):
        extra = {} if backend is None else {"backend": backend}
        if step == fail_at:
            b.op(process, "txn", at=at + k * 0.01, type=OpType.FAIL, invoke_extra={"txn": txn, "step": step},
                 error=OpError("08P01", "transaction blocks not allowed in statement pooling mode", True))
            return
        b.op(process, "txn", saw if step == "read_own" else None, at=at + k * 0.01,
             node=None if backend is None else "i1", extra=extra, invoke_extra={"txn": txn, "step": step})
    if visible is None:
        visible = ending == "commit"
    b.op(process, "txn_outcome", visible, at=at + 0.1, node="i1", extra={"backend": 99},
         invoke_extra={"txn": txn, "ended": ending})


def test_transactions_true_when_each_runs_whole_on_one_backend():
    b = HistoryBuilder()
    _txn(b, 1, "a", at=0, backends=(5, 5, 5))
    _txn(b, 1, "b", at=1, ending="rollback", backends=(6, 6, 6))  # the next one may move: that is multiplexing
    v = OneBackendChecker().check(b.history(), CTX)
    assert v.valid is T and v.figure == 0.0
    assert "2 transactions judged (1 commit, 1 rollback), 0 did not run whole" in v.reason


def test_transactions_false_when_a_statement_moves_to_another_backend():
    b = HistoryBuilder()
    _txn(b, 1, "a", at=0, backends=(5, 6, 6), saw=0)
    v = OneBackendChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 1.0 and "ran on 2 backends" in v.reason
    assert v.evidence[0]["extra"]["backend"] == 6


def test_transactions_false_when_a_rollback_did_not_undo_the_write():
    b = HistoryBuilder()
    _txn(b, 1, "a", at=0, ending="rollback", visible=True)
    _txn(b, 2, "b", at=0, saw=0)
    v = OneBackendChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 2.0
    assert "its rolled-back write is visible" in v.reason and "did not see its own uncommitted write" in v.reason


def test_a_refused_transaction_is_evidence_not_silence():
    """PgBouncer's statement mode refuses BEGIN: nothing names a backend, and yet it is false."""
    b = HistoryBuilder()
    _txn(b, 1, "a", at=0, fail_at="begin")
    _txn(b, 2, "b", at=0, fail_at="begin")
    v = OneBackendChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 2.0 and "2 refused or failed at begin" in v.reason
    assert v.evidence[0]["type"] == "fail" and "statement pooling" in v.evidence[0]["error"]["text"]


def test_transactions_unknown_when_none_was_exercised():
    b = HistoryBuilder()
    b.op(1, "read", at=0, node="i1", extra={"backend": 5})
    b.op(1, "txn", at=1, node="i1", extra={"backend": 5}, invoke_extra={"txn": "a", "step": "write"})
    v = OneBackendChecker().check(b.history(), CTX)
    assert v.valid is U and "no multi-statement transaction" in v.reason
    assert OneBackendChecker().check(HistoryBuilder().history(), CTX).valid is U


# -- PIN-TRIGGERS: routing or pinning -----------------------------------------------------------
def _pinned_session(b, process, served, trigger="SET"):
    """A pin_trigger then later reads; ``served`` is (instance, backend) for the trigger and each read."""
    (node, backend), *later = served
    b.op(process, "pin_trigger", trigger, at=process, node=node, extra={"backend": backend})
    for k, (node, backend) in enumerate(later):
        b.op(process, "read", at=process + 0.1 * (k + 1), node=node, extra={"backend": backend})


def test_pin_triggers_a_session_spread_over_instances_is_a_routing_fault_not_a_pinning_one():
    """pgpool-II with load balancing: the SET ran on the primary, the session's later reads stayed on
    one backend of a standby.  Pinning was never given a chance: unknown, naming routing."""
    b = HistoryBuilder()
    _pinned_session(b, 1, [("primary", 10), ("standby", 20), ("standby", 20), ("standby", 20)])
    _pinned_session(b, 2, [("primary", 11), ("primary", 11), ("primary", 11)])
    v = PinTriggersChecker().check(b.history(), CTX)
    assert v.valid is U and v.figure is None
    assert "1 pinned sessions checked, 0 moved" in v.reason
    assert "1 sessions not judged: the session's statements were served by different instances: a routing " \
           "fault, see ROUTE-* / SESSION-OWN-STATE" in v.reason
    assert [(e["f"], e["node"]) for e in v.evidence] == [("pin_trigger", "primary"), ("read", "standby")]


def test_pin_triggers_a_move_within_one_instance_stays_a_pinning_fault_beside_a_routing_one():
    b = HistoryBuilder()
    _pinned_session(b, 1, [("primary", 10), ("standby", 20), ("standby", 20)])
    _pinned_session(b, 2, [("primary", 11), ("primary", 11), ("primary", 12)], trigger="PREPARE")
    v = PinTriggersChecker().check(b.history(), CTX)
    assert v.valid is F and v.figure == 1.0
    assert "(after: PREPARE)" in v.reason and "1 sessions not judged" in v.reason
    assert v.evidence[0]["extra"]["backend"] == 12


def test_pin_triggers_requests_without_an_instance_are_no_evidence_of_routing():
    b = HistoryBuilder()
    _pinned_session(b, 1, [("primary", 10), (None, 10), ("primary", 10)])
    v = PinTriggersChecker().check(b.history(), CTX)
    assert "not judged" not in v.reason and "1 pinned sessions checked" in v.reason
