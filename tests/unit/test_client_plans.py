"""The recording clients' pure parts: addresses, request plans, their steps and the request deadline."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from harness.clients import plans
from harness.clients.address import Address
from harness.clients.client import AsyncClient, Client
from harness.clients.deadline import SocketDeadline
from harness.clients.dialects import dialect_for
from harness.clients.dialects.mysql import MYSQL
from harness.clients.dialects.postgres import POSTGRES
from harness.clients.outcomes import Stage
from harness.clients.plans import ClientError, Identify, Plan, Statement
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
    plan = plans.write_plan(POSTGRES, 7)
    assert plan.transaction and plan.identify and not plan.idempotent
    assert plan.statements == (Statement('INSERT INTO "harness_writes" (id) VALUES (%s)', (7,)),)
    assert plan.result([None]) == 7
    assert POSTGRES.identity_sql("SELECT aurora_db_instance_identifier()") == \
        "SELECT (SELECT aurora_db_instance_identifier()), pg_backend_pid(), current_setting('transaction_read_only') = 'off'"
    assert MYSQL.identity_sql("SELECT @@report_host") == \
        "SELECT (SELECT @@report_host), CONNECTION_ID(), (@@global.read_only = 0 AND @@global.innodb_read_only = 0)"


def test_reads_are_idempotent_and_return_ids():
    plan = plans.read_plan(MYSQL, f="final_read")
    assert plan.idempotent and plan.f == "final_read"
    assert plan.result([[(1,), (5,)]]) == [1, 5]


@pytest.mark.parametrize("bad", [-1, True, 2**63, "3"])
def test_bad_write_ids_are_rejected(bad):
    with pytest.raises(ClientError, match="write id"):
        plans.write_plan(POSTGRES, bad)


@pytest.mark.parametrize("table", ["x; DROP TABLE y", "a b", "", "é"])
def test_only_plain_table_names_reach_sql(table):
    with pytest.raises(ClientError, match="plain ASCII identifier"):
        plans.read_plan(POSTGRES, table)


def test_session_state_vocabulary_matches_the_isolation_checker():
    from harness.checkers.state_ops import STATE_KINDS, VALUED_KINDS

    assert set(POSTGRES.state_kinds) | set(MYSQL.state_kinds) == STATE_KINDS
    assert set(POSTGRES.state_kinds) <= STATE_KINDS and set(MYSQL.state_kinds) <= STATE_KINDS
    assert set(POSTGRES.valued_kinds) == set(MYSQL.valued_kinds) == VALUED_KINDS
    plan = plans.set_state_plan(POSTGRES, "setting", "application_name", "client-7")
    assert plan.value == {"kind": "setting", "name": "application_name", "value": "client-7"}
    read = plans.read_state_plan(POSTGRES, "advisory_lock", "lock-a")
    assert read.idempotent and read.result([[(True,)]])["value"] is True
    with pytest.raises(ClientError, match="unknown session state kind"):
        plans.set_state_plan(POSTGRES, "cursor", "c")
    with pytest.raises(ClientError, match="not available for MySQL"):
        plans.set_state_plan(MYSQL, "listen", "channel")


def test_identifying_a_request_needs_a_transaction():
    with pytest.raises(ClientError, match="needs a transaction"):
        Plan("x", None, (Statement("SELECT 1"),), transaction=False, identify=True)


def test_a_client_without_connection_records_a_definite_fail():
    recorder = Recorder(clock=ManualClock())
    client = Client(recorder, 1, Address.of(TwoEndpoints("postgres")))
    result = client.read()
    assert result.type is OpType.FAIL and result.error.code == "not-connected"
    assert not result.ok
    assert recorder.outstanding() == []
    async_result = asyncio.run(AsyncClient(recorder, 2, Address.of(TwoEndpoints("mysql"))).read())
    assert async_result.type is OpType.FAIL and async_result.error.code == "not-connected"
    assert recorder.outstanding() == []


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
        quiet.disarm()
        time.sleep(0.2)  # well past the deadline: a disarmed deadline never fires
        assert not quiet.fired
    finally:
        a.close()
        b.close()
    with pytest.raises(ClientError, match="positive number"):
        SocketDeadline(0)


def drive(plan, dialect, answers):
    """Run the steps of ``plan`` with canned rows; returns the steps sent and what the request came to."""
    gen = plans.steps(plan, dialect, "SELECT aurora_db_instance_identifier()")
    sent = []
    try:
        step = next(gen)
        while True:
            sent.append(step)
            step = gen.send(answers.get(step.sql))
    except StopIteration as done:
        return sent, done.value


def test_steps_of_a_write_wrap_it_in_a_transaction_and_identify_before_commit():
    ident = "SELECT (SELECT aurora_db_instance_identifier()), pg_backend_pid(), current_setting('transaction_read_only') = 'off'"
    sent, done = drive(plans.write_plan(POSTGRES, 7), POSTGRES, {ident: [("instance-2", 4242, True)]})
    assert [s.sql for s in sent] == ["BEGIN", 'INSERT INTO "harness_writes" (id) VALUES (%s)', ident, "COMMIT"]
    assert [s.stage for s in sent] == [Stage.IN_TRANSACTION] * 3 + [Stage.COMMIT]
    assert (done.value, done.node, done.backend, done.role) == (7, "instance-2", 4242, "writer")


def test_trailing_identity_requests_send_the_sql_as_written_in_autocommit():
    who = POSTGRES.who("SELECT aurora_db_instance_identifier()")
    assert who == "aurora_db_instance_identifier(), pg_backend_pid(), current_setting('transaction_read_only') = 'off'"
    assert MYSQL.who("SELECT @@report_host").startswith("@@report_host, CONNECTION_ID(), (@@global.read_only = 0")
    sql = f"SELECT count(*), {who} FROM t"
    plan = plans.request_plan("backend_count", sql, result=lambda row: int(row[0]))
    assert plan.identify is Identify.TRAILING and not plan.transaction
    sent, done = drive(plan, POSTGRES, {sql: [(3, "instance-1", 99, False)]})
    assert [(s.sql, s.stage) for s in sent] == [(sql, Stage.COMMIT)]
    assert (done.value, done.node, done.backend, done.role) == (3, "instance-1", 99, "reader")
    assert [plans.role_of(v) for v in (1, b"0", "1", None)] == ["writer", "reader", "writer", None]
    _, bare = drive(plans.request_plan("read", "SELECT 1", value="v"), POSTGRES, {"SELECT 1": [(1,)]})
    assert bare.value == "v" and bare.note == "no identity columns in the result"


@pytest.mark.parametrize("dialect, identity", [(POSTGRES, "SELECT aurora_db_instance_identifier()"),
                                               (MYSQL, "SELECT @@report_host")])
def test_a_point_read_is_one_autocommit_statement_that_names_its_server_even_on_a_miss(dialect, identity):
    who = dialect.who(identity)
    plan = plans.point_read_plan(dialect, who, 7)
    assert plan.identify is Identify.TRAILING and not plan.transaction and plan.idempotent
    sql = f"SELECT (SELECT id FROM {dialect.quote('harness_writes')} WHERE id = %s), {who}"
    sent, hit = drive(plan, dialect, {sql: [(7, "instance-1", 11, 1)]})
    assert [(s.sql, s.params, s.stage) for s in sent] == [(sql, (7,), Stage.COMMIT)]
    assert (hit.value, hit.node, hit.backend, hit.role) == ([7], "instance-1", 11, "writer")
    _, miss = drive(plan, dialect, {sql: [(None, "instance-2", 12, 0)]})
    assert (miss.value, miss.node, miss.role) == ([], "instance-2", "reader")
    with pytest.raises(ClientError, match="write id"):
        plans.point_read_plan(dialect, who, -1)


def test_a_plan_inside_an_open_transaction_neither_begins_nor_commits():
    plan = plans.in_open_transaction(plans.read_state_plan(POSTGRES, "setting", "harness.tag"))
    sent, done = drive(plan, POSTGRES, {"SELECT current_setting(%s, true)": [("x",)]})
    assert "BEGIN" not in [s.sql for s in sent] and "COMMIT" not in [s.sql for s in sent]
    assert all(s.stage is Stage.IN_TRANSACTION for s in sent)
    assert done.value == {"kind": "setting", "name": "harness.tag", "value": "x"}


def test_session_state_sql_comes_from_the_dialect():
    assert dialect_for("postgres") is POSTGRES and dialect_for("mysql") is MYSQL
    with pytest.raises(ClientError, match="unknown engine"):
        dialect_for("oracle")
    assert POSTGRES.set_state("temp_table", "t_1", True).sql == 'CREATE TEMP TABLE IF NOT EXISTS "t_1" (x int)'
    assert MYSQL.set_state("setting", "tag", "v") == Statement("SET @tag = %s", ("v",))
    # PostgreSQL knows advisory locks by key: set, read and found locks are all recorded under it.
    key = str(POSTGRES.state_label("advisory_lock", "c7"))
    lock = plans.set_state_plan(POSTGRES, "advisory_lock", "c7")
    assert lock.value["name"] == key and lock.statements[0].sql == "SELECT pg_try_advisory_lock(%s)"
    assert lock.result([[(False,)]])["value"] is False, "a lock held elsewhere is reported, not waited for"
    found = plans.find_state_plan(POSTGRES, "advisory_lock", "", "c7")
    assert found.result([[([key],)]]) == {"kind": "advisory_lock", "name": key, "value": True}
    assert found.result([[(["17", key],)]]) == {"kind": "advisory_lock", "name": "17", "value": True}
    temp = plans.find_state_plan(POSTGRES, "temp_table", "harness_leak_t_", "harness_leak_t_c7")
    assert temp.statements[0].params == ("harness\\_leak\\_t\\_%",)
    assert temp.result([[([],)]]) == {"kind": "temp_table", "name": "harness_leak_t_c7", "value": False}
    triggers, non_triggers = POSTGRES.pin_cases("w()")
    assert triggers["SET"] == "SET statement_timeout = 60000; SELECT w()" and "SET LOCAL" in non_triggers
    my_triggers, my_non_triggers = MYSQL.pin_cases("w()")
    assert my_triggers["GET_LOCK"].endswith(", w()") and "SET NAMES (tracked)" in my_non_triggers
    assert all(sql.endswith(("w()", "COMMIT")) for sql in (*my_triggers.values(), *my_non_triggers.values()))


def test_an_address_never_shows_its_password():
    address = Address("postgres", "writer", "127.0.0.1", 5432, "app", "s3cret-pw", "app", "SELECT 1")
    assert "s3cret-pw" not in repr(address) and "s3cret-pw" not in str(address)
    assert address.password == "s3cret-pw"


def test_each_engine_spells_the_suites_own_sql():
    assert POSTGRES.server_version_sql == "SHOW server_version" and MYSQL.server_version_sql == "SELECT VERSION()"
    # A promoted reader is seen by asking it directly: out of recovery / no longer read-only.
    assert POSTGRES.writer_check_sql == "SELECT NOT pg_is_in_recovery()"  # routed as a write by pgpool-II
    assert "@@global.read_only = 0" in MYSQL.writer_check_sql
    assert POSTGRES.insert_identified_sql("t_1", "w()") == 'INSERT INTO "t_1" VALUES (%s) RETURNING w()'
    # MySQL has no RETURNING: the identity comes from a second statement of the same request.
    assert MYSQL.insert_identified_sql("t_1", "w()") == "INSERT INTO `t_1` VALUES (%s); SELECT w()"
    assert POSTGRES.array_agg("id") == "coalesce(array_agg(id), '{}')"
    assert MYSQL.array_agg("id") == "COALESCE(JSON_ARRAYAGG(id), '[]')"
    assert POSTGRES.decode_array([3, 1]) == [3, 1]
    assert MYSQL.decode_array(b"[3, 1]") == [3, 1] and MYSQL.decode_array("[]") == []
    with pytest.raises(ClientError):
        MYSQL.insert_identified_sql("t; DROP", "w()")


def test_ledger_tables_keep_copies_and_lingering_writes_commit_where_asked():
    # No key, so an id applied twice is there twice; a negative id breaks the CHECK (a definite refusal).
    assert POSTGRES.create_ledger_sql('"t_1"') == 'CREATE TABLE IF NOT EXISTS "t_1" (id BIGINT NOT NULL CHECK (id >= 0))'
    assert MYSQL.create_ledger_sql("`t_1`").endswith("(id BIGINT NOT NULL CHECK (id >= 0)) ENGINE=InnoDB")
    after = POSTGRES.lingering_write_sql("t_1", "w()", 7, 0.4, commit_first=True)
    assert after == 'BEGIN; INSERT INTO "t_1" VALUES (7); COMMIT; SELECT pg_sleep(0.4); SELECT w()'
    before = MYSQL.lingering_write_sql("t_1", "w()", 8, 0.4, commit_first=False)
    assert before == "START TRANSACTION; INSERT INTO `t_1` VALUES (8); DO SLEEP(0.4); COMMIT; SELECT w()"
    for bad in ("7; DROP TABLE t_1", True, 1.5):  # the id is written into the text: integers only
        with pytest.raises(ClientError):
            POSTGRES.lingering_write_sql("t_1", "w()", bad, 0.4, commit_first=True)


def test_backend_counts_leave_out_programs_by_name_and_never_guess():
    pg = POSTGRES.backend_count_sql("w()", ("monitor", "it's"))
    assert pg.startswith("SELECT count(*), w() FROM pg_stat_activity")
    assert "NOT IN ('monitor', 'it''s')" in pg and "pid <> pg_backend_pid()" in pg
    my = MYSQL.backend_count_sql("w()", ("monitor",))
    # The process list has no program name: connect attributes name it, and without the
    # performance schema the count is NULL rather than a number that includes the monitor.
    assert my.startswith("SELECT IF(@@performance_schema AND (SELECT SUM(VARIABLE_VALUE) FROM "
                         "performance_schema.global_status WHERE VARIABLE_NAME IN "
                         "('Performance_schema_session_connect_attrs_lost', 'Performance_schema_thread_instances_lost'))"
                         " = 0, count(*), NULL), w() FROM information_schema.PROCESSLIST")
    assert "ATTR_NAME = 'program_name' AND a.ATTR_VALUE IN ('monitor')" in my
    assert "p.ID <> CONNECTION_ID()" in my and "'Binlog Dump'" in my
    assert "IN ('')" in MYSQL.backend_count_sql("w()", ())


def test_mysql_session_state_reads_answer_absent_through_their_errors():
    temp = MYSQL.read_state("temp_table", "harness_t")
    assert temp == Statement("SELECT COUNT(*) >= 0 FROM `harness_t`", None, ("1146",))
    assert MYSQL.read_state("prepared_statement", "harness_ps") == Statement("EXECUTE harness_ps", None, ("1243",))
    assert MYSQL.set_state("prepared_statement", "harness_ps", True).sql == "PREPARE harness_ps FROM 'SELECT 1'"
    assert MYSQL.set_state("setting", "harness.tag", "v") == Statement("SET @harness_tag = %s", ("v",))
    assert MYSQL.read_state("setting", "harness.tag").sql == "SELECT @harness_tag"
    sent, _ = drive(plans.read_state_plan(MYSQL, "temp_table", "harness_t"), MYSQL, {})
    assert sent[1].absent_on_error == ("1146",) and sent[0].absent_on_error == ()
    _, found = drive(plans.read_state_plan(MYSQL, "temp_table", "harness_t"), MYSQL,
                     {"SELECT COUNT(*) >= 0 FROM `harness_t`": plans.ABSENT})
    assert found.value == {"kind": "temp_table", "name": "harness_t", "value": False}
    assert MYSQL.listable_kinds == ("advisory_lock",) and not MYSQL.transactional_session_state
    assert MYSQL.pinning_reads == ("prepared_statement",) and POSTGRES.pinning_reads == ()
    assert POSTGRES.transactional_session_state
    with pytest.raises(ClientError, match="not available for MySQL"):
        MYSQL.find_state("temp_table", "harness_")


def test_a_lock_list_the_server_cannot_give_is_recorded_as_not_judged():
    found = plans.find_state_plan(MYSQL, "advisory_lock", "", "c7")
    stmt = found.statements[0]
    assert "performance_schema.metadata_locks" in stmt.sql and stmt.params == ("%",)
    assert found.result([[('["c7"]',)]]) == {"kind": "advisory_lock", "name": "c7", "value": True}
    assert found.result([[('["c7", "c9"]',)]]) == {"kind": "advisory_lock", "name": "c9", "value": True}
    unknown = found.result([[(None,)]])
    assert unknown["value"] is None and "performance_schema" in unknown["unjudged"]
    assert plans.find_state_plan(MYSQL, "advisory_lock", "a_b", "c7").statements[0].params == ("a\\_b%",)
