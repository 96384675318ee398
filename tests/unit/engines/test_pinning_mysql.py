"""The MySQL pin classifier against RDS Proxy's documented Aurora MySQL list, its lexer, and the
screen in front of it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_proxy.engines.mysql import screen
from reference_proxy.engines.mysql.lexer import TokenKind, lexing_options, split_statements, tokenize
from reference_proxy.engines.mysql.pinning import MAX_INSPECTED_BYTES, REASON_SETTINGS, classify, digest
from reference_proxy.engines.mysql.screen import could_change_tracked, could_pin, screened
from reference_proxy.pinning import PinDecision

MUST_PIN = [
    # user variables
    ("SET @x = 1", "user_variable"),
    ("set @x := 'a', @y = 2", "user_variable"),
    ("SET @`odd name` = 1", "user_variable"),
    ("SET @'quoted' = 1", "user_variable"),
    ("SET SESSION time_zone = '+00:00', @x = 1", "user_variable"),
    ("SELECT id INTO @last FROM t ORDER BY id DESC LIMIT 1", "user_variable"),
    ("SELECT a, b INTO @a, @b FROM t", "user_variable"),
    ("SELECT @n := @n + 1 FROM t", "user_variable"),
    ("UPDATE t SET a = (@old := a) + 1", "user_variable"),
    # system variables the proxy does not track
    ("SET foreign_key_checks = 0", "set_variable"),
    ("SET SESSION max_execution_time = 1000", "set_variable"),
    ("SET LOCAL unique_checks = 0", "set_variable"),
    ("SET @@session.group_concat_max_len = 100000", "set_variable"),
    ("SET @@sql_select_limit = 10", "set_variable"),
    ("SET session_track_state_change = ON", "set_variable"),
    ("SET SESSION session_track_system_variables = '*'", "set_variable"),
    ("SET names utf8mb4, sql_safe_updates = 1", "set_variable"),
    ("SET `optimizer_switch` = 'index_merge=off'", "set_variable"),
    ("SET validate_password.length = 4", "set_variable"),
    # transaction characteristics of the next transaction only, roles
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "set_transaction"),
    ("set transaction read only", "set_transaction"),
    ("SET ROLE reporting", "set_role"),
    # SQL prepared statements
    ("PREPARE s FROM 'SELECT ?'", "prepare"),
    ("prepare s from @sql", "prepare"),
    ("EXECUTE s USING @a", "execute"),
    ("EXECUTE IMMEDIATE 'SELECT 1'", "execute"),
    ("DEALLOCATE PREPARE s", "deallocate"),
    ("DROP PREPARE s", "deallocate"),
    # temporary tables
    ("CREATE TEMPORARY TABLE t (id int)", "temp_table"),
    ("create temporary table if not exists t like items", "temp_table"),
    ("CREATE OR REPLACE TEMPORARY TABLE t AS SELECT 1", "temp_table"),
    # named locks
    ("SELECT GET_LOCK('job', 10)", "named_lock"),
    ("select get_lock ( 'job' , 0 )", "named_lock"),
    ("SELECT RELEASE_LOCK('job')", "named_lock"),
    ("DO RELEASE_ALL_LOCKS()", "named_lock"),
    ("SELECT IS_USED_LOCK('job')", "named_lock"),
    ("SELECT IS_FREE_LOCK('job')", "named_lock"),
    ("SET @l = GET_LOCK('a', 0)", "user_variable"),
    # table locks
    ("LOCK TABLES t READ", "lock_tables"),
    ("lock table t write, u read", "lock_tables"),
    ("FLUSH TABLES WITH READ LOCK", "flush_read_lock"),
    ("flush tables t1, t2 with read lock", "flush_read_lock"),
    ("FLUSH TABLES t FOR EXPORT", "flush_read_lock"),
    # functions that read the session's previous statement
    ("SELECT FOUND_ROWS()", "session_function"),
    ("SELECT ROW_COUNT()", "session_function"),
    # executable comments, whatever they hold
    ("/*!40101 SET NAMES utf8 */", "executable_comment"),
    ("SELECT /*! STRAIGHT_JOIN */ a FROM t", "executable_comment"),
    ("SELECT 1 /*!80000 , 2 */", "executable_comment"),
    ("/*M!100100 SET STATEMENT max_statement_time=1 FOR */ SELECT 1", "executable_comment"),
    ("/*m! SELECT 1 */", "executable_comment"),
    # several statements: any one pins
    ("SELECT 1; SET @x = 1", "user_variable"),
    ("BEGIN; LOCK TABLES t WRITE; COMMIT", "lock_tables"),
    ("(SELECT GET_LOCK('a', 1))", "named_lock"),
    ("SET STATEMENT max_statement_time = 5 FOR SELECT GET_LOCK('a', 1)", "named_lock"),
]

MUST_NOT_PIN = [
    "SELECT 1",
    "select * from t where id = 5",
    "INSERT INTO t (a, b) VALUES (1, 'x')",
    "UPDATE t SET a = 1 WHERE id = 2",
    "DELETE FROM t WHERE id = 3",
    "REPLACE INTO t VALUES (1)",
    "CALL refresh_totals(1)",
    "BEGIN",
    "START TRANSACTION READ ONLY",
    "COMMIT",
    "ROLLBACK",
    "USE shop",
    "SELECT LAST_INSERT_ID()",
    "SELECT @x",
    "SELECT @@session.time_zone",
    # tracked settings partition the pool instead
    "SET autocommit = 0",
    "SET AUTOCOMMIT=1",
    "SET @@session.autocommit = OFF",
    "SET NAMES utf8mb4",
    "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'",
    "SET CHARACTER SET utf8mb4",
    "SET CHARSET latin1",
    "SET time_zone = '+00:00'",
    "SET SESSION sql_mode = 'STRICT_TRANS_TABLES'",
    "SET sql_mode = DEFAULT",
    "SET @@session.wait_timeout = 28800, interactive_timeout = 28800",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION TRANSACTION READ ONLY",
    "SET tx_isolation = 'READ-COMMITTED'",
    "SET transaction_read_only = 1",
    "SET session_track_schema = ON",
    "SET SESSION query_cache_type = OFF",
    "SET net_write_timeout = 60, auto_increment_increment = 1",
    "SET character_set_results = NULL",
    # no session state
    "SET GLOBAL max_connections = 100",
    "SET @@global.foreign_key_checks = 0",
    "SET PERSIST innodb_lock_wait_timeout = 10",
    "SET PASSWORD = 'secret'",
    "SET DEFAULT ROLE ALL TO alice",
    "SET STATEMENT max_statement_time = 1 FOR SELECT 1",
    "XA PREPARE 'x'",
    "UNLOCK TABLES",
    "FLUSH TABLES",
    "FLUSH PRIVILEGES",
    "CREATE TABLE temporary_results (a int)",
    "SELECT * FROM locks WHERE table_lock = 1",
    "SELECT shop.get_lock(1)",
    "SELECT 1 INTO OUTFILE 'out.txt'",
    "GRANT EXECUTE ON PROCEDURE p TO bob",
    "SELECT * FROM prepare_queue WHERE lock_owner = 'set'",
    "CREATE PROCEDURE p() SET @x = 1",
    "DROP TABLE t",
    "DROP TEMPORARY TABLE t",
    # look-alikes in strings, identifiers and comments
    "SELECT 'SET @x = 1'",
    "SELECT \"GET_LOCK('a', 1)\"",
    "SELECT `get_lock`, `prepare` FROM t",
    "SELECT 1 -- LOCK TABLES t READ",
    "SELECT 1 # SET @x = 1",
    "SELECT 1 /* CREATE TEMPORARY TABLE t */",
    "SELECT 1 /*+ BKA(t) */",
    "SELECT 'it''s', 'a\\'; SET @x = 1; --'",
    "SELECT 1--1",
    "INSERT INTO log (msg) VALUES ('@x := 1')",
    "SELECT \"quoted \"\" SET @x=1 \"",
    "",
    "   ;  ; ",
]


@pytest.mark.parametrize(("sql", "trigger"), MUST_PIN)
def test_documented_triggers_pin(sql, trigger):
    decision = classify(sql)
    assert decision is not None, sql
    assert decision.trigger == trigger
    assert decision.reason.endswith(".")


@pytest.mark.parametrize("sql", MUST_NOT_PIN)
def test_documented_non_triggers_do_not_pin(sql):
    assert classify(sql) is None


def test_untracked_set_uses_rds_wording():
    assert classify("SET foreign_key_checks = 0") == PinDecision(REASON_SETTINGS, "set_variable")
    assert "Consider moving session configuration to the proxy's initialization query." in REASON_SETTINGS


@pytest.mark.parametrize("sql", [
    "SET @x = 1",
    "SET foreign_key_checks = 0",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, @x = 1",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET ROLE ALL",
    "SET session_track_state_change = ON",
    "set @a := 1; set @b := 2",
])
def test_exclude_variable_sets_ignores_every_set(sql):
    assert classify(sql) is not None
    assert classify(sql, exclude_variable_sets=True) is None


@pytest.mark.parametrize(("sql", "trigger"), [
    ("SELECT 1 INTO @x", "user_variable"),
    ("SELECT @x := 1", "user_variable"),
    ("SET @l = GET_LOCK('a', 0)", "named_lock"),
    ("SET @x = 1; LOCK TABLES t READ", "lock_tables"),
    ("PREPARE s FROM 'SET @x = 1'", "prepare"),
    ("/*!40101 SET @x = 1 */", "executable_comment"),
])
def test_exclude_variable_sets_keeps_what_is_not_a_set(sql, trigger):
    decision = classify(sql, exclude_variable_sets=True)
    assert decision is not None and decision.trigger == trigger


def test_the_16_kb_boundary_counts_bytes():
    head = "SELECT '"
    at_limit = head + "x" * (MAX_INSPECTED_BYTES - len(head) - 1) + "'"
    assert len(at_limit.encode()) == MAX_INSPECTED_BYTES
    assert classify(at_limit) is None
    over = head + "x" * (MAX_INSPECTED_BYTES - len(head)) + "'"
    assert classify(over) == PinDecision(classify(over).reason, "statement_too_large")
    multibyte = "SELECT '" + "é" * (MAX_INSPECTED_BYTES // 2) + "'"  # fewer characters than bytes
    assert len(multibyte) < MAX_INSPECTED_BYTES
    assert classify(multibyte).trigger == "statement_too_large"
    assert classify(over, exclude_variable_sets=True).trigger == "statement_too_large"


def test_ansi_quotes_turns_double_quotes_into_identifiers():
    assert classify('SELECT "get_lock"(1)') is None
    assert classify('SELECT "x" FROM t', ansi_quotes=True) is None
    assert classify("SELECT \"a\" FROM t WHERE b = 'x'; SET @x = 1", ansi_quotes=True).trigger == "user_variable"
    kinds = [t.kind for t in tokenize('"a"', ansi_quotes=True)]
    assert kinds == [TokenKind.QUOTED_IDENT]
    assert [t.kind for t in tokenize('"a"')] == [TokenKind.STRING]


def test_no_backslash_escapes_ends_a_string_at_the_backslash_quote():
    sql = "SELECT 'a\\'; SET @x = 1; -- '"
    assert classify(sql) is None                                   # the backslash escapes the quote
    assert classify(sql, backslash_escapes=False).trigger == "user_variable"


def test_lexing_options_follow_sql_mode_and_the_server_status():
    assert lexing_options() == {"ansi_quotes": False, "backslash_escapes": True}
    assert lexing_options(sql_mode="STRICT_TRANS_TABLES,ANSI_QUOTES") == {"ansi_quotes": True,
                                                                          "backslash_escapes": True}
    assert lexing_options(sql_mode="ansi, no_backslash_escapes") == {"ansi_quotes": True,
                                                                     "backslash_escapes": False}
    assert lexing_options(status_flags=0x0002 | 0x0200) == {"ansi_quotes": False, "backslash_escapes": False}
    assert lexing_options(sql_mode="NO_BACKSLASH_ESCAPES", status_flags=0x8002) == {
        "ansi_quotes": True, "backslash_escapes": True}
    sql = "SELECT 'a\\'; SET @x = 1; -- '"
    assert classify(sql, **lexing_options(sql_mode="NO_BACKSLASH_ESCAPES")).trigger == "user_variable"


def test_digest_replaces_literals_and_collapses_whitespace():
    assert digest("SET @x = 'a',   @y = 2") == "SET @x = ?,@y = ?"
    assert digest("SELECT *\n  FROM t\tWHERE a = 10 AND b = 'x' -- note") == "SELECT * FROM t WHERE a = ? AND b = ?"
    assert digest("SELECT a FROM t WHERE b = ? # why") == "SELECT a FROM t WHERE b = ?"
    assert digest("/*!40101 SET NAMES utf8 */") == "SET NAMES utf8"
    assert digest("SELECT x'0A', 0x1F, 1.5e3, \"s\"") == "SELECT ?,?,?,?"
    assert digest("SELECT `a b`.c FROM s.t") == "SELECT `a b`.c FROM s.t"


def test_lexer_kinds_and_values():
    tokens = tokenize("SELECT @@SESSION.Time_Zone, @@x, @U, @`q``x`, ?, 12, 'a\\'b', `Q``x`, 1abc; x := y")
    assert [t.kind for t in tokens] == [
        TokenKind.WORD, TokenKind.SYSTEM_VAR, TokenKind.PUNCT, TokenKind.SYSTEM_VAR, TokenKind.PUNCT,
        TokenKind.USER_VAR, TokenKind.PUNCT, TokenKind.USER_VAR, TokenKind.PUNCT, TokenKind.PARAM,
        TokenKind.PUNCT, TokenKind.NUMBER, TokenKind.PUNCT, TokenKind.STRING, TokenKind.PUNCT,
        TokenKind.QUOTED_IDENT, TokenKind.PUNCT, TokenKind.WORD, TokenKind.SEMICOLON, TokenKind.WORD,
        TokenKind.OPERATOR, TokenKind.WORD]
    assert tokens[1].value == "session.time_zone"
    assert tokens[5].value == "u"
    assert tokens[7].value == "q`x"
    assert tokens[15].value == "Q`x"
    assert tokens[-2].text == ":="


def test_lexer_executable_comments_and_statement_splitting():
    tokens = tokenize("/*!80000 SET @a = 1 */; SELECT 2 /* c; */ ; ;")
    assert tokens[0].kind is TokenKind.EXECUTABLE_COMMENT and tokens[0].value == "80000"
    statements = split_statements(tokens)
    assert [[t.text for t in s] for s in statements] == [["SET", "@a", "=", "1"], ["SELECT", "2"]]
    mariadb = tokenize("/*M!100100 SELECT 1 */")
    assert mariadb[0].kind is TokenKind.EXECUTABLE_COMMENT and mariadb[0].value == "100100"


def test_unterminated_text_never_raises():
    for sql in ("SELECT 'open", 'SELECT "open', "SELECT `open", "/* open", "/*! SET @x = 1", "@", "@@",
                "@'", "SELECT 1 #", "--", "\\", "x'", "SET", "SET @x", "SET NAMES", "SET x =",
                "LOCK", "FLUSH", "CREATE", "SET STATEMENT x = 1"):
        classify(sql)
        digest(sql)
    assert classify("/*! SET @x = 1").trigger == "executable_comment"


# ------------------------------------------------------------------------------------ the screen

screened_classify = screened(classify)


def test_every_statement_of_the_corpus_gets_the_same_answer_through_the_screen():
    for sql, _ in MUST_PIN:
        assert could_pin(sql), sql
        assert screened_classify(sql) == classify(sql)
        assert screened_classify(sql, exclude_variable_sets=True) == classify(sql, exclude_variable_sets=True)
    for sql in MUST_NOT_PIN:
        assert screened_classify(sql) is None, sql


def test_plain_queries_skip_the_classifier():
    calls = []
    spy = screened(lambda sql, **_: calls.append(sql))
    spy("SELECT c FROM sbtest1 WHERE id = 42")
    spy("UPDATE t SET x = 1")  # mentions a trigger word: classified
    assert calls == ["UPDATE t SET x = 1"]
    assert not could_change_tracked("SELECT c FROM sbtest1 WHERE id = 42")
    assert could_change_tracked("use shop") and could_change_tracked("SET NAMES utf8mb4")


def test_non_ascii_and_long_text_is_always_classified():
    assert could_pin("SELECT 'é'")
    assert could_pin("SELECT 1" + " " * 20000)


# --------------------------------------------------------------------------------------- fuzzing

_SQLISH = st.sampled_from([
    "SET", "set", "SESSION", "GLOBAL", "@", "@@", "@x", "@@session.", "x", "'", "''", '"', "`", "\\", "#",
    "-- ", "--", "\n", " ", "/*", "/*!", "/*!80000", "/*M!", "*/", ";", ",", "=", ":=", "(", ")", "1", ".",
    "GET_LOCK", "get_lock", "LOCK", "TABLES", "FLUSH", "WITH", "READ", "FOR", "EXPORT", "CREATE", "TEMPORARY",
    "TABLE", "PREPARE", "EXECUTE", "DEALLOCATE", "DROP", "INTO", "SELECT", "NAMES", "COLLATE", "CHARACTER",
    "TRANSACTION", "ISOLATION", "LEVEL", "STATEMENT", "ROLE", "DEFAULT", "row_count", "x'", "0x", "?", "é",
])


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300), st.booleans(), st.booleans())
def test_classify_and_lexer_never_raise_on_arbitrary_text(sql, exclude, ansi):
    decision = classify(sql, exclude_variable_sets=exclude, ansi_quotes=ansi)
    assert decision is None or isinstance(decision, PinDecision)
    assert isinstance(digest(sql), str)
    tokenize(sql, ansi_quotes=ansi, backslash_escapes=not exclude)


@settings(max_examples=500, deadline=None)
@given(st.lists(_SQLISH, max_size=40), st.booleans())
def test_sql_like_fragments_never_raise_and_the_screen_never_hides_a_pin(parts, exclude):
    sql = "".join(parts)
    digest(sql)
    assert screened_classify(sql, exclude_variable_sets=exclude) == classify(sql, exclude_variable_sets=exclude)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_the_screen_never_hides_a_pin_in_arbitrary_text(sql):
    assert screened_classify(sql) == classify(sql)


def test_remembered_answers_are_the_functions_own_and_stay_bounded(monkeypatch):
    calls: list[tuple[str, dict]] = []

    def reader(sql: str, **options):
        calls.append((sql, options))
        if sql == "boom":
            raise ValueError("unreadable")
        return (sql.upper(), tuple(sorted(options.items())))

    remembered = screen.Remembered(reader)
    assert remembered("set a=1") == reader("set a=1")
    calls.clear()
    assert remembered("set a=1") == ("SET A=1", ())           # from memory
    assert remembered("set a=1", ansi_quotes=True) == ("SET A=1", (("ansi_quotes", True),))
    assert len(calls) == 1                                      # other options: asked afresh
    for _ in range(2):
        with pytest.raises(ValueError):
            remembered("boom")                                  # a failure is never remembered
    long_text = "x" * (screen.REMEMBERED_TEXT_LIMIT + 1)
    calls.clear()
    remembered(long_text)
    remembered(long_text)
    assert len(calls) == 2                                      # long texts are not kept
    monkeypatch.setattr(screen, "REMEMBERED_ENTRIES", 3)
    for i in range(10):
        remembered(f"set v={i}")
    assert len(remembered._answers) <= 3
