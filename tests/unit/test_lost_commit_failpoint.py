"""Which requests the failpoint ``lost_commit_acknowledged`` answers as committed when their backend is
lost: those whose text has a statement that commits, read with each engine's own lexer, so that a
COMMIT inside a string, a comment or an identifier does not count, and reads never do."""

from __future__ import annotations

import pytest

from reference_proxy.engines.mysql.session import _command_commits
from reference_proxy.engines.postgres.session import _request_commits
from reference_proxy.protocol.mysql import Command
from reference_proxy.protocol.postgres import FRONTEND_TYPES, MessageSplitter, Query, Sync

COMMITTING = [
    "BEGIN; INSERT INTO t VALUES (1); SELECT 1; COMMIT; SELECT 2",
    "commit",
    "INSERT INTO t VALUES (1); /* done */ COMMIT",
]
NOT_COMMITTING = [
    "SELECT id FROM t ORDER BY id",
    "INSERT INTO t VALUES (1)",
    "SELECT 'COMMIT'",
    "BEGIN; INSERT INTO t VALUES (1); -- COMMIT later\nSELECT 1",
    "SELECT commit_ts FROM t",
]


def postgres_frames(*messages) -> object:
    return MessageSplitter(FRONTEND_TYPES).feed(b"".join(m.encode() for m in messages))


@pytest.mark.parametrize("sql", COMMITTING)
def test_a_request_that_commits_is_recognised_on_both_engines(sql):
    assert _request_commits(postgres_frames(Query(sql)))
    assert _command_commits(bytes([Command.QUERY]) + sql.encode())


@pytest.mark.parametrize("sql", NOT_COMMITTING)
def test_other_requests_are_not(sql):
    assert not _request_commits(postgres_frames(Query(sql)))
    assert not _command_commits(bytes([Command.QUERY]) + sql.encode())


def test_postgres_end_commits_too_and_only_simple_queries_are_read():
    assert _request_commits(postgres_frames(Query("END")))
    assert not _request_commits(postgres_frames(Sync()))


def test_mysql_only_com_query_is_read():
    assert not _command_commits(bytes([Command.PING]))
    assert not _command_commits(b"")
