"""Driver errors classified as definite or indefinite, from constructed exceptions (no server)."""

from __future__ import annotations

import psycopg
import psycopg.errors
import pymysql
import pytest

from harness.clients.outcomes import (
    CONNECTION_LOST,
    TIMEOUT,
    Stage,
    classify_psycopg,
    classify_pymysql,
    completion_type,
)
from harness.history import OpError, OpType


def pg(sqlstate: str, text: str = "error") -> psycopg.Error:
    return psycopg.errors.lookup(sqlstate)(text)


LOST = psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")


@pytest.mark.parametrize("stage, definite", [(Stage.CONNECT, True), (Stage.IN_TRANSACTION, True),
                                             (Stage.COMMIT, False)])
def test_psycopg_lost_connection_depends_on_whether_commit_was_sent(stage, definite):
    error = classify_psycopg(LOST, stage)
    assert error.definite is definite
    assert error.text.startswith("consuming input failed")


def test_psycopg_refused_connect_is_definite():
    refused = psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 1 '
                                       "failed: Connection refused")
    error = classify_psycopg(refused, Stage.CONNECT)
    assert error.definite and error.code == "connect-failed"


def test_psycopg_connection_exception_class_08_follows_the_stage():
    assert classify_psycopg(pg("08006"), Stage.COMMIT) == OpError("08006", "error", False)
    assert classify_psycopg(pg("08006"), Stage.CONNECT).definite


@pytest.mark.parametrize("sqlstate", ["57P01", "57P02", "57P03"])
def test_psycopg_shutdowns_are_indefinite_during_commit_only(sqlstate):
    assert not classify_psycopg(pg(sqlstate), Stage.COMMIT).definite
    assert classify_psycopg(pg(sqlstate), Stage.IN_TRANSACTION).definite
    assert classify_psycopg(pg(sqlstate), Stage.CONNECT).definite


@pytest.mark.parametrize("sqlstate", ["40001", "40P01", "25006", "23505", "42601"])
def test_psycopg_server_errors_are_definite_even_at_commit(sqlstate):
    error = classify_psycopg(pg(sqlstate, "rejected"), Stage.COMMIT)
    assert error == OpError(sqlstate, "rejected", True)


def test_psycopg_client_timeout_and_lost_connection_without_sqlstate():
    assert classify_psycopg(LOST, Stage.COMMIT).code == CONNECTION_LOST
    timed_out = classify_psycopg(LOST, Stage.COMMIT, timed_out=True)
    assert timed_out.code == TIMEOUT and not timed_out.definite
    assert classify_psycopg(LOST, Stage.IN_TRANSACTION, timed_out=True).definite


def test_psycopg_borrow_timeout_is_definite_whatever_the_code():
    e = pg("08001", "Timed-out waiting to acquire database connection.")
    error = classify_psycopg(e, Stage.COMMIT)
    assert error.definite and error.code == "08001"


def test_psycopg_cancelled_commit_is_indefinite():
    assert not classify_psycopg(pg("57014"), Stage.COMMIT).definite
    assert classify_psycopg(pg("57014"), Stage.IN_TRANSACTION).definite


@pytest.mark.parametrize("errno", [2003, 2002])
def test_pymysql_cannot_connect_is_definite(errno):
    error = classify_pymysql(pymysql.err.OperationalError(errno, "Can't connect to MySQL server"), Stage.COMMIT)
    assert error == OpError(str(errno), "Can't connect to MySQL server", True)


@pytest.mark.parametrize("errno", [2013, 2006])
def test_pymysql_lost_connection_follows_the_stage(errno):
    e = pymysql.err.OperationalError(errno, "Lost connection to MySQL server during query")
    assert not classify_pymysql(e, Stage.COMMIT).definite
    assert classify_pymysql(e, Stage.IN_TRANSACTION).definite
    assert classify_pymysql(e, Stage.CONNECT).definite


@pytest.mark.parametrize("errno", [1290, 9501, 1205, 1213, 1062])
def test_pymysql_server_errors_are_definite(errno):
    error = classify_pymysql(pymysql.err.OperationalError(errno, "no"), Stage.COMMIT)
    assert error.definite and error.code == str(errno)


def test_pymysql_borrow_timeout_text_and_closed_connection():
    e = pymysql.err.OperationalError(9501, "Timed-out waiting to acquire database connection")
    assert classify_pymysql(e, Stage.COMMIT).definite
    closed = classify_pymysql(pymysql.err.InterfaceError(0, ""), Stage.COMMIT)
    assert closed.definite and closed.code == "closed"


def test_pymysql_timeout_flag_wins():
    e = pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
    error = classify_pymysql(e, Stage.COMMIT, timed_out=True)
    assert error.code == TIMEOUT and not error.definite


def test_idempotent_requests_turn_indefinite_into_fail():
    indefinite = OpError(CONNECTION_LOST, "lost", False)
    assert completion_type(indefinite, idempotent=False) is OpType.INFO
    assert completion_type(indefinite, idempotent=True) is OpType.FAIL
    assert completion_type(OpError("40001", "x", True), idempotent=False) is OpType.FAIL


@pytest.mark.parametrize("errno", [1053, 1927, 1317, 3169])
def test_pymysql_shutdown_and_kill_follow_the_stage_like_postgres(errno):
    e = pymysql.err.OperationalError(errno, "Server shutdown in progress / killed / interrupted")
    assert not classify_pymysql(e, Stage.COMMIT).definite
    assert classify_pymysql(e, Stage.IN_TRANSACTION).definite
    assert classify_pymysql(e, Stage.COMMIT).code == str(errno)
    assert classify_pymysql(e, Stage.CONNECT).definite


def test_connection_level_errors_are_told_from_server_decisions():
    from harness.clients.outcomes import BORROW_TIMEOUT_TEXT, is_connection_level
    for code in ("08006", "57P01", "57P03", TIMEOUT, CONNECTION_LOST, "connect-failed", "2013", "1927"):
        assert is_connection_level(OpError(code, "x", False)), code
    assert is_connection_level(OpError(None, BORROW_TIMEOUT_TEXT + ".", True))
    for code in ("23505", "40001", "1062", "1213", None):
        assert not is_connection_level(OpError(code, "x", True)), code
    assert not is_connection_level(None)
