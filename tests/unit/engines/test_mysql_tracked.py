"""The tracked MySQL session settings: what a client's statement or the server's session-state report
changes, normalised so that the pool can key on it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_proxy.engines.mysql.lexer import tokenize
from reference_proxy.engines.mysql.tracked import (
    TRACKED_VARIABLES,
    TrackedChange,
    apply_change,
    merge_changes,
    pool_variant,
    reported_changes,
    set_assignments,
    statement_changes,
)
from reference_proxy.protocol.mysql.errors import ProtocolViolation
from reference_proxy.protocol.mysql.wire import lenenc_bytes


def variables(sql: str, **kwargs) -> dict:
    return dict(statement_changes(sql, **kwargs).variables)


def test_the_documented_list_is_the_data():
    assert len(TRACKED_VARIABLES) == 20
    assert {"autocommit", "sql_mode", "time_zone", "transaction_isolation", "transaction_read_only",
            "session_track_schema", "character_set_client", "collation_connection"} <= TRACKED_VARIABLES
    assert "session_track_state_change" not in TRACKED_VARIABLES
    assert "tx_isolation" not in TRACKED_VARIABLES  # an alias, read as transaction_isolation


@pytest.mark.parametrize(("sql", "expected"), [
    ("SET autocommit = 0", {"autocommit": "OFF"}),
    ("SET AUTOCOMMIT=1", {"autocommit": "ON"}),
    ("SET @@session.autocommit = OFF", {"autocommit": "OFF"}),
    ("set autocommit = true", {"autocommit": "ON"}),
    ("SET time_zone = '+2:00'", {"time_zone": "+02:00"}),
    ("SET time_zone = 'system'", {"time_zone": "SYSTEM"}),
    ("SET time_zone = 'Europe/Paris'", {"time_zone": "Europe/Paris"}),
    ("SET SESSION sql_mode = 'strict_trans_tables,ansi_quotes'", {"sql_mode": "ANSI_QUOTES,STRICT_TRANS_TABLES"}),
    ("SET sql_mode = 'ANSI_QUOTES, STRICT_TRANS_TABLES,'", {"sql_mode": "ANSI_QUOTES,STRICT_TRANS_TABLES"}),
    ("SET sql_mode = ''", {"sql_mode": ""}),
    ("SET sql_mode = DEFAULT", {"sql_mode": None}),
    ("SET LOCAL wait_timeout = 0028800", {"wait_timeout": "28800"}),
    ("SET @@local.interactive_timeout = 60, net_write_timeout = 30",
     {"interactive_timeout": "60", "net_write_timeout": "30"}),
    ("SET auto_increment_increment = 2", {"auto_increment_increment": "2"}),
    ("SET query_cache_type = 2", {"query_cache_type": "DEMAND"}),
    ("SET session_track_schema = 1", {"session_track_schema": "ON"}),
    ("SET tx_isolation = 'read-committed'", {"transaction_isolation": "READ-COMMITTED"}),
    ("SET transaction_isolation = 'SERIALIZABLE'", {"transaction_isolation": "SERIALIZABLE"}),
    ("SET @@tx_read_only = 1", {"transaction_read_only": "ON"}),
    ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
     {"transaction_isolation": "READ-COMMITTED"}),
    ("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
     {"transaction_isolation": "REPEATABLE-READ", "transaction_read_only": "ON"}),
    ("SET SESSION TRANSACTION READ WRITE", {"transaction_read_only": "OFF"}),
    ("SET NAMES utf8mb4", {"character_set_client": "utf8mb4", "character_set_connection": "utf8mb4",
                           "character_set_results": "utf8mb4", "collation_connection": None}),
    ("SET NAMES 'UTF8MB4' COLLATE 'utf8mb4_BIN'",
     {"character_set_client": "utf8mb4", "character_set_connection": "utf8mb4",
      "character_set_results": "utf8mb4", "collation_connection": "utf8mb4_bin"}),
    ("SET NAMES DEFAULT", {"character_set_client": None, "character_set_connection": None,
                           "character_set_results": None, "collation_connection": None}),
    ("SET CHARACTER SET latin1", {"character_set_client": "latin1", "character_set_results": "latin1",
                                  "character_set_connection": None, "collation_connection": None}),
    ("SET CHARSET `latin1`", {"character_set_client": "latin1", "character_set_results": "latin1",
                              "character_set_connection": None, "collation_connection": None}),
    ("SET character_set_connection = utf8mb4",
     {"character_set_connection": "utf8mb4", "collation_connection": None}),
    ("SET collation_connection = 'utf8mb4_bin'",
     {"collation_connection": "utf8mb4_bin", "character_set_connection": None}),
    # a collation implies its character set: the key keeps the collation alone
    ("SET character_set_server = latin1, collation_server = latin1_bin",
     {"character_set_server": None, "collation_server": "latin1_bin"}),
    # several assignments and statements; later ones win
    ("SET time_zone = '+00:00', autocommit = 0, @x = 1, foreign_key_checks = 0",
     {"time_zone": "+00:00", "autocommit": "OFF"}),
    ("SET autocommit = 0; SET autocommit = 1", {"autocommit": "ON"}),
    ("SET SESSION wait_timeout = 10, GLOBAL interactive_timeout = 10, net_write_timeout = 5",
     {"wait_timeout": "10"}),  # the GLOBAL keyword holds for the assignments after it
    # executable comments run, so their SETs count
    ("/*!40101 SET NAMES utf8mb4 */", {"character_set_client": "utf8mb4", "character_set_connection": "utf8mb4",
                                       "character_set_results": "utf8mb4", "collation_connection": None}),
])
def test_statement_changes(sql, expected):
    assert variables(sql) == expected


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "SET GLOBAL time_zone = '+00:00'",
    "SET @@global.autocommit = 0",
    "SET PERSIST sql_mode = ''",
    "SET @time_zone = '+00:00'",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",  # the next transaction only: it pins instead
    "SET STATEMENT time_zone = '+00:00' FOR SELECT NOW()",
    "SELECT 'SET autocommit = 0'",
    "SELECT 1 -- SET autocommit = 0",
    "UPDATE t SET time_zone = 'x'",
    "SET foreign_key_checks = 0",
])
def test_statements_that_change_nothing_tracked(sql):
    assert not statement_changes(sql)


def test_values_the_text_does_not_reveal_are_unresolved():
    change = statement_changes("SET time_zone = @@global.time_zone, sql_mode = CONCAT(@@sql_mode, ',X')")
    assert change.unresolved == {"time_zone", "sql_mode"}
    assert change.variables == {}
    invalid = statement_changes("SET autocommit = 'maybe', wait_timeout = 'soon'")
    assert invalid.unresolved == {"autocommit", "wait_timeout"}
    assert statement_changes("SET time_zone = @@global.time_zone; SET time_zone = '+01:00'").unresolved == set()


def test_use_and_drop_database_change_the_schema():
    assert statement_changes("USE Shop").schema == "Shop"
    assert statement_changes("use `my db`").schema == "my db"
    assert statement_changes("USE shop; SELECT 1").schema == "shop"
    assert statement_changes("DROP DATABASE shop", current_schema="shop").schema == ""
    assert statement_changes("DROP SCHEMA IF EXISTS `shop`", current_schema="shop").schema == ""
    assert statement_changes("DROP DATABASE other", current_schema="shop").schema is None
    assert statement_changes("DROP DATABASE shop").schema is None
    assert statement_changes("USE a; DROP DATABASE a").schema == ""
    assert statement_changes("SELECT 'USE x'").schema is None


def test_string_values_are_unescaped_by_the_session_rules():
    assert variables("SET time_zone = 'Europe\\/Paris'") == {"time_zone": "Europe/Paris"}
    assert variables("SET time_zone = 'A''B'") == {"time_zone": "A'B"}
    assert variables('SET time_zone = "X"') == {"time_zone": "X"}
    assert variables("SET time_zone = 'a\\b'", backslash_escapes=False) == {"time_zone": "a\\b"}


def test_set_assignments_name_every_target():
    items = set_assignments(tokenize("SET @x = 1, SESSION foreign_key_checks = 0, GLOBAL autocommit = 1, "
                                     "@@session.time_zone = DEFAULT, y"))
    assert [(a.target, a.name, a.scope) for a in items] == [
        ("user", "x", "session"), ("system", "foreign_key_checks", "session"),
        ("system", "autocommit", "global"), ("system", "time_zone", "session"), ("unknown", "", "global")]
    assert [a.tracked for a in items] == [False, False, False, True, False]
    assert items[3].value is None and items[3].resolved
    assert [a.target for a in set_assignments(tokenize("SET PASSWORD FOR bob = 'x'"))] == ["password"]
    assert [a.target for a in set_assignments(tokenize("SET ROLE NONE"))] == ["role"]
    assert [a.target for a in set_assignments(tokenize("SET DEFAULT ROLE r TO bob"))] == ["default_role"]
    assert [a.scope for a in set_assignments(tokenize("SET TRANSACTION READ ONLY"))] == ["next_transaction"]


def _entry(kind: int, data: bytes) -> bytes:
    return bytes((kind,)) + lenenc_bytes(data)


def test_reported_changes_read_the_ok_session_state_block():
    # As MariaDB reports SET time_zone='+02:00' and USE other with its default tracking.
    block = bytes.fromhex("0011") + b"\x09time_zone\x06+02:00" + bytes.fromhex("0106") + b"\x05other"
    change = reported_changes(block)
    assert change.variables == {"time_zone": "+02:00"}
    assert change.schema == "other"


def test_reported_changes_normalise_and_skip_untracked_entries():
    names = (lenenc_bytes("autocommit") + lenenc_bytes("OFF") + lenenc_bytes("character_set_client")
             + lenenc_bytes("UTF8MB4"))
    block = (_entry(0, names) + _entry(0, lenenc_bytes("session_track_state_change") + lenenc_bytes("ON"))
             + _entry(2, lenenc_bytes("1")) + _entry(5, lenenc_bytes("T___W___"))
             + _entry(0, lenenc_bytes("tx_isolation") + lenenc_bytes("READ-COMMITTED")))
    change = reported_changes(block)
    assert change.variables == {"autocommit": "OFF", "character_set_client": "utf8mb4",
                                "transaction_isolation": "READ-COMMITTED"}
    assert change.schema is None
    assert not reported_changes(b"")


def test_a_malformed_block_is_a_protocol_violation():
    with pytest.raises(ProtocolViolation):
        reported_changes(b"\x00\x10\x09time")
    with pytest.raises(ProtocolViolation):
        reported_changes(_entry(0, b"\x09time"))


def test_pool_variant_is_sorted_and_the_same_whatever_the_spelling():
    first = apply_change({}, statement_changes("SET time_zone='+2:00', AUTOCOMMIT = 0, NAMES utf8mb4"))
    second = apply_change({}, statement_changes("SET NAMES 'UTF8MB4'; SET @@session.autocommit=OFF; "
                                                "SET SESSION time_zone = '+02:00'"))
    assert pool_variant(first) == pool_variant(second) == (
        ("autocommit", "OFF"), ("character_set_client", "utf8mb4"), ("character_set_connection", "utf8mb4"),
        ("character_set_results", "utf8mb4"), ("time_zone", "+02:00"))


def test_apply_change_drops_settings_going_back_to_the_default():
    settings_ = {"collation_connection": "utf8mb4_bin", "character_set_connection": "utf8mb4",
                 "sql_mode": "ANSI"}
    after = apply_change(settings_, statement_changes("SET NAMES latin1; SET sql_mode = DEFAULT"))
    assert after == {"character_set_client": "latin1", "character_set_connection": "latin1",
                     "character_set_results": "latin1"}
    assert settings_["sql_mode"] == "ANSI"  # not modified in place


def test_merge_changes_lets_the_server_report_settle_unresolved_values():
    statement = statement_changes("SET time_zone = @@global.time_zone, autocommit = 0; USE a")
    report = reported_changes(_entry(0, lenenc_bytes("time_zone") + lenenc_bytes("SYSTEM")))
    merged = merge_changes([statement, report])
    assert merged == TrackedChange({"autocommit": "OFF", "time_zone": "SYSTEM"}, "a", frozenset())


_SQLISH = st.sampled_from([
    "SET", "SESSION", "GLOBAL", "LOCAL", "@@session.", "@@", "@", "time_zone", "autocommit", "sql_mode", "NAMES",
    "CHARACTER", "CHARSET", "COLLATE", "TRANSACTION", "ISOLATION", "LEVEL", "READ", "COMMITTED", "ONLY",
    "DEFAULT", "USE", "DROP", "DATABASE", "IF", "EXISTS", "=", ":=", ",", ";", "'", "'+1:00'", "`", "\\", "1",
    "-", "(", ")", " ", "x", "ON", "/*!", "*/", "--", "#", "\n", "tx_isolation", "collation_connection",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_SQLISH, max_size=30), st.booleans())
def test_statement_changes_never_raise(parts, ansi):
    sql = " ".join(parts)
    change = statement_changes(sql, current_schema="x", ansi_quotes=ansi)
    assert set(change.variables) <= TRACKED_VARIABLES
    assert pool_variant(apply_change({}, change)) == tuple(sorted(apply_change({}, change).items()))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_statement_changes_never_raise_on_arbitrary_text(sql):
    statement_changes(sql)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_reported_changes_raise_only_protocol_violations(block):
    try:
        reported_changes(block)
    except ProtocolViolation:
        pass
