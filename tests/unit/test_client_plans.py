"""The recording clients' pure parts: addresses, request plans and the request deadline."""

from __future__ import annotations

import socket

import pytest

from harness.clients import mysql as my_plans
from harness.clients import postgres as pg_plans
from harness.clients.base import Address, ClientError, Plan, SocketDeadline, Statement, identity_statement
from harness.history import ManualClock, OpType, Recorder
from harness.targets.base import Credentials, Endpoint, Target


class TwoEndpoints(Target):
    kind = "fake"
    writer_endpoint = Endpoint("default", "writer", "127.0.0.1", 5001)

    @property
    def reader_endpoints(self):
        return [Endpoint("reader", "reader", "127.0.0.1", 5002)]

    credentials = Credentials("u", "p", "db")


def test_address_of_a_target_labels_the_endpoint_and_carries_the_identity_query():
    t = TwoEndpoints("postgres")
    w, r = Address.of(t, "writer"), Address.of(t, "reader")
    assert (w.endpoint, w.port, r.endpoint, r.port) == ("writer", 5001, "reader", 5002)
    assert w.identity_query == "SELECT aurora_db_instance_identifier()"
    with pytest.raises(ClientError, match="endpoint must be"):
        Address.of(t, "primary")
    with pytest.raises(ClientError, match="port must be"):
        Address("postgres", "writer", "127.0.0.1", 0, "u", "p", "d", "SELECT 1")
    with pytest.raises(ClientError, match="unknown engine"):
        Address("oracle", "writer", "127.0.0.1", 1, "u", "p", "d", "SELECT 1")


def test_write_plan_is_one_transaction_that_identifies_its_server():
    plan = pg_plans.write_plan(7)
    assert plan.transaction and plan.identify and not plan.idempotent
    assert plan.statements == (Statement('INSERT INTO "harness_writes" (id) VALUES (%s)', (7,)),)
    assert plan.result([None]) == 7
    assert identity_statement("postgres", "SELECT aurora_db_instance_identifier()").sql == \
        "SELECT (SELECT aurora_db_instance_identifier()), pg_backend_pid()"
    assert identity_statement("mysql", "SELECT @@report_host").sql == \
        "SELECT (SELECT @@report_host), CONNECTION_ID()"


def test_reads_are_idempotent_and_return_ids():
    plan = my_plans.read_plan(f="final_read")
    assert plan.idempotent and plan.f == "final_read"
    assert plan.result([[(1,), (5,)]]) == [1, 5]


@pytest.mark.parametrize("bad", [-1, True, 2**63, "3"])
def test_bad_write_ids_are_rejected(bad):
    with pytest.raises(ClientError, match="write id"):
        pg_plans.write_plan(bad)


@pytest.mark.parametrize("table", ["x; DROP TABLE y", "a b", "", "é"])
def test_only_plain_table_names_reach_sql(table):
    with pytest.raises(ClientError, match="plain ASCII identifier"):
        pg_plans.read_plan(table)


def test_session_state_vocabulary_matches_the_isolation_checker():
    from harness.checkers.isolation import STATE_KINDS

    assert set(pg_plans.STATE_KINDS) == STATE_KINDS
    plan = pg_plans.set_state_plan("setting", "application_name", "client-7")
    assert plan.value == {"kind": "setting", "name": "application_name", "value": "client-7"}
    read = pg_plans.read_state_plan("advisory_lock", "lock-a")
    assert read.idempotent and read.result([[(True,)]])["value"] is True
    with pytest.raises(ClientError, match="unknown session state kind"):
        pg_plans.set_state_plan("cursor", "c")
    with pytest.raises(ClientError, match="not available for MySQL"):
        my_plans.set_state_plan("temp_table", "t")


def test_identifying_a_request_needs_a_transaction():
    with pytest.raises(ClientError, match="needs a transaction"):
        Plan("x", None, (Statement("SELECT 1"),), transaction=False, identify=True)


def test_a_client_without_connection_records_a_definite_fail():
    recorder = Recorder(clock=ManualClock())
    client = pg_plans.PgClient(recorder, 1, Address.of(TwoEndpoints("postgres")))
    result = client.read()
    assert result.type is OpType.FAIL and result.error.code == "not-connected"
    assert recorder.outstanding() == []
    with pytest.raises(ClientError, match="cannot use a mysql address"):
        pg_plans.PgClient(recorder, 2, Address.of(TwoEndpoints("mysql")))


def test_socket_deadline_shuts_the_socket_down_and_says_so():
    a, b = socket.socketpair()
    try:
        deadline = SocketDeadline(0.05)
        deadline.arm(a.fileno)
        a.settimeout(10)
        assert a.recv(1) == b""  # shut down: reads end instead of blocking for ever
        assert deadline.fired
        quiet = SocketDeadline(0.05)
        quiet.arm(b.fileno)
        timer = quiet._timer
        quiet.disarm()
        timer.join(5)  # a cancelled timer's thread ends without firing
        assert not timer.is_alive() and not quiet.fired
    finally:
        a.close()
        b.close()
    with pytest.raises(ClientError, match="positive number"):
        SocketDeadline(0)
