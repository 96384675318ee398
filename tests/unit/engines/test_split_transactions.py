"""Where ``[testing] split_transactions`` may give a backend up: between two statements of an open
transaction of an unpinned session, and nowhere else (both engines' trackers, no I/O)."""

from __future__ import annotations

import reference_proxy.protocol.postgres as pg
from reference_proxy.config import UnsafeTestingConfig
from reference_proxy.engines.mysql.tracking import SessionTracker
from reference_proxy.engines.postgres.pinning import classify
from reference_proxy.engines.postgres.tracking import TransactionTracker
from reference_proxy.protocol.mysql import ServerStatus

AUTOCOMMIT, IN_TRANS = int(ServerStatus.AUTOCOMMIT), int(ServerStatus.IN_TRANS)
MORE = int(ServerStatus.MORE_RESULTS_EXISTS)


def test_the_failpoint_is_off_unless_asked_for():
    assert not UnsafeTestingConfig().on("split_transactions")


def _client(*messages) -> pg.Frames:
    return pg.MessageSplitter(pg.FRONTEND_TYPES).feed(b"".join(m.encode() for m in messages))


def _ready(status: str) -> pg.Frames:
    return pg.MessageSplitter(pg.BACKEND_TYPES).feed(pg.CommandComplete("X").encode()
                                                     + pg.ReadyForQuery(status).encode())


def test_postgres_between_statements_only_inside_an_answered_transaction():
    t = TransactionTracker(classify)
    t.client_run(_client(pg.Query("begin")))
    assert not t.between_statements_of_a_transaction  # BEGIN not answered yet
    t.backend_run(_ready("T"))
    assert t.between_statements_of_a_transaction and t.may_release() == (False, None)
    t.client_run(_client(pg.Parse("", "insert into t values (1)"), pg.Bind("", "")))
    assert not t.between_statements_of_a_transaction  # messages sent since the last answer
    t.client_run(_client(pg.Execute(""), pg.Sync()))
    t.backend_run(_ready("T"))
    assert t.between_statements_of_a_transaction
    t.client_run(_client(pg.Query("commit")))
    t.backend_run(_ready("I"))
    assert not t.between_statements_of_a_transaction and t.may_release() == (True, None)


def test_postgres_a_pinned_session_is_never_split():
    t = TransactionTracker(classify)
    t.client_run(_client(pg.Query("begin; create temp table x (i int)")))
    t.backend_run(_ready("T"))
    assert t.pinned and not t.between_statements_of_a_transaction


def test_mysql_between_statements_only_after_a_whole_reply_in_a_transaction():
    tracker = SessionTracker(lambda sql, **lexing: None)
    tracker.reply_done(AUTOCOMMIT)
    assert not tracker.between_statements_of_a_transaction
    tracker.reply_done(AUTOCOMMIT | IN_TRANS | MORE)
    assert not tracker.between_statements_of_a_transaction  # another result of the same request follows
    tracker.reply_done(AUTOCOMMIT | IN_TRANS)
    assert tracker.between_statements_of_a_transaction and not tracker.at_release_point


def test_mysql_a_pinned_session_is_never_split():
    from reference_proxy.engines.mysql.pinning import classify as mysql_classify
    from reference_proxy.protocol.mysql import Command

    tracker = SessionTracker(mysql_classify)
    pin, _ = tracker.inspect(Command.QUERY, b"\x03PREPARE s FROM 'SELECT 1'", "app")
    assert pin is not None
    tracker.pinned_by(pin)
    tracker.reply_done(AUTOCOMMIT | IN_TRANS)
    assert not tracker.between_statements_of_a_transaction
