"""The PostgreSQL pin classifier against RDS Proxy's documented list, including tricky quoting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_proxy.engines.postgres.lexer import TokenKind, tokenize
from reference_proxy.engines.postgres.pinning import MAX_INSPECTED_BYTES, REASON_SETTINGS, classify, digest
from reference_proxy.pinning import PinDecision

MUST_PIN = [
    # settings
    ("SET search_path TO app, public", "set"),
    ("set search_path = app", "set"),
    ("SET SESSION statement_timeout = '5s'", "set"),
    ("SET statement_timeout TO DEFAULT", "set"),
    ("SET TIME ZONE 'UTC'", "set"),
    ("SET ROLE reporting", "set"),
    ("SET SESSION AUTHORIZATION alice", "set"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "set"),
    ("SET extra_float_digits = 3", "set"),
    ("set application_name to 'x'", "set"),
    ("RESET search_path", "reset"),
    ("reset all", "reset"),
    ("SELECT set_config('search_path', 'app', false)", "set_config"),
    ("select pg_catalog.set_config('a.b', '1', true)", "set_config"),
    ('SELECT "set_config"(\'a.b\', \'1\', false)', "set_config"),
    # prepared statements and discard
    ("PREPARE q(int) AS SELECT $1", "prepare"),
    ("prepare q as select 1", "prepare"),
    ("EXECUTE q(1)", "execute"),
    ("DEALLOCATE q", "deallocate"),
    ("DEALLOCATE ALL", "deallocate"),
    ("DISCARD ALL", "discard"),
    ("discard plans", "discard"),
    ("DISCARD TEMP", "discard"),
    ("DISCARD SEQUENCES", "discard"),
    # temporary objects
    ("CREATE TEMP TABLE t (id int)", "temp_table"),
    ("CREATE TEMPORARY TABLE IF NOT EXISTS t (id int)", "temp_table"),
    ("create local temporary table t as select 1", "temp_table"),
    ("CREATE GLOBAL TEMP TABLE t (a int)", "temp_table"),
    ("CREATE TEMP TABLE t AS SELECT * FROM items", "temp_table"),
    ("CREATE TEMP SEQUENCE s", "temp_sequence"),
    ("CREATE TEMPORARY VIEW v AS SELECT 1", "temp_view"),
    ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", "temp_view"),
    ("CREATE TEMP RECURSIVE VIEW v (n) AS SELECT 1", "temp_view"),
    ("CREATE TABLE pg_temp.t (a int)", "temp_table"),
    ("CREATE TABLE IF NOT EXISTS pg_temp.t (a int)", "temp_table"),
    ("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "temp_function"),
    ("create or replace function pg_temp.f() returns int language sql as 'select 1'", "temp_function"),
    ("CREATE TYPE pg_temp.t AS (a int)", "temp_type"),
    ('CREATE DOMAIN "pg_temp".d AS int', "temp_domain"),
    ("CREATE MATERIALIZED VIEW pg_temp.m AS SELECT 1", "temp_materialized_view"),
    ("EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1", "temp_table"),
    ("explain analyse verbose create temp table t as select 1", "temp_table"),
    ("EXPLAIN (ANALYZE, FORMAT JSON) SELECT 1 INTO TEMP t", "temp_table"),
    ("EXPLAIN (ANALYZE true, BUFFERS) CREATE TABLE pg_temp.t AS SELECT 1", "temp_table"),
    ("EXPLAIN VERBOSE EXECUTE q(1)", "execute"),
    ("SELECT * INTO TEMP t FROM items", "temp_table"),
    ("SELECT a INTO TEMPORARY TABLE t FROM items", "temp_table"),
    ("select a into local temp t from items", "temp_table"),
    ("WITH x AS (SELECT 1 AS a) SELECT a INTO TEMP t FROM x", "temp_table"),
    # cursors, notifications, libraries
    ("DECLARE c CURSOR FOR SELECT 1", "cursor"),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "cursor"),
    ("declare c no scroll cursor without hold for select 1", "cursor"),
    ("LISTEN jobs", "listen"),
    ("LOAD 'auto_explain'", "load"),
    # sequence functions and session advisory locks
    ("SELECT nextval('orders_id_seq')", "sequence"),
    ("INSERT INTO t (id) VALUES (NEXTVAL('s'))", "sequence"),
    ("SELECT setval('s', 42)", "sequence"),
    ('SELECT "nextval"(\'s\') FROM t', "sequence"),  # a quoted lower-case name is the same function
    ("SELECT pg_catalog.nextval ( 's' )", "sequence"),
    ("SELECT pg_advisory_lock(1)", "advisory_lock"),
    ("SELECT pg_advisory_lock_shared(1)", "advisory_lock"),
    ("SELECT pg_try_advisory_lock(1, 2)", "advisory_lock"),
    ("SELECT pg_try_advisory_lock_shared(7)", "advisory_lock"),
    # case, whitespace, comments before, multi-statement
    ("  \n\tSeT\nsearch_path\tTO x", "set"),
    ("/* leading comment */ SET x = 1", "set"),
    ("-- comment\nSET x = 1", "set"),
    ("SELECT 1; SET x = 1", "set"),
    ("BEGIN; SELECT 1; COMMIT; LISTEN ch", "listen"),
    ("SELECT 'a;b'; DISCARD ALL", "discard"),
    ("SELECT $$ ; $$; RESET x", "reset"),
    ("select 1 /* ; set x = 1 */; select nextval('s')", "sequence"),
    ("SELECT $body$ it's $body$, nextval('s')", "sequence"),
]

MUST_NOT_PIN = [
    "SELECT 1",
    "SELECT * FROM items WHERE id = $1",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "START TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SET LOCAL statement_timeout = '5s'",
    "set local search_path to app",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET TRANSACTION READ ONLY",
    "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
    "SET CONSTRAINTS ALL DEFERRED",
    "PREPARE TRANSACTION 'gid-1'",
    "COMMIT PREPARED 'gid-1'",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT pg_advisory_xact_lock_shared(1)",
    "SELECT pg_try_advisory_xact_lock(1)",
    "SELECT pg_try_advisory_xact_lock_shared(1)",
    "SELECT pg_advisory_unlock(1)",
    "SELECT currval('s')",
    "SELECT lastval()",
    "CREATE TABLE t (id int)",
    "CREATE UNLOGGED TABLE t (id int)",
    "CREATE VIEW v AS SELECT 1",
    "CREATE SEQUENCE s",
    "CREATE TABLE temp (id int)",
    "INSERT INTO temp (id) VALUES (1)",
    "INSERT INTO temp SELECT 1",
    "SELECT * FROM temp",
    "ALTER DATABASE app SET search_path TO app",
    "ALTER ROLE app SET statement_timeout = '1s'",
    "UPDATE settings SET value = 1 WHERE name = 'x'",
    "UNLISTEN *",
    "CALL do_things()",
    "NOTIFY jobs, 'payload'",
    "SHOW search_path",
    "EXPLAIN SELECT 1",
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN (ANALYZE, VERBOSE) SELECT * FROM items",
    "EXPLAIN (",
    "CREATE TABLE public.t AS SELECT * FROM pg_temp.x",
    "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    # keywords hidden in literals, identifiers and comments
    "SELECT 'SET search_path TO x'",
    "SELECT 'it''s; SET x = 1'",
    "SELECT E'\\'; SET x = 1; --'",
    "SELECT $$; SET x = 1; $$",
    "SELECT $tag$ $$; DISCARD ALL; $$ $tag$",
    'SELECT "set" FROM t',
    'SELECT "NEXTVAL"(1)',
    "SELECT 1 -- ; SET x = 1",
    "SELECT 1 /* ; SET x = 1 */",
    "SELECT 1 /* nested /* ; SET x = 1 */ ; LISTEN x */",
    "SELECT nextval FROM t",
    "SELECT my_nextval('s')",
    "SELECT 'nextval(' || x FROM t",
    "SELECT x.nextval FROM t x",
    "DO $$ BEGIN PERFORM set_config('a.b', '1', false); END $$",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $f$ SELECT nextval('s') $f$",
    "SELECT U&'\\0041'; SELECT 1",
    "SELECT a$b FROM t",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = app AS 'SELECT 1'",
    "ALTER FUNCTION f() SET search_path = app",
    "SELECT * FROM pg_temp.t",
    "INSERT INTO pg_temp_3.t VALUES (1)",
    "",
    "   ",
    ";;;",
]


@pytest.mark.parametrize(("sql", "trigger"), MUST_PIN)
def test_pins(sql, trigger):
    decision = classify(sql)
    assert isinstance(decision, PinDecision), sql
    assert decision.trigger == trigger
    assert decision.reason.endswith(".")


@pytest.mark.parametrize("sql", MUST_NOT_PIN)
def test_does_not_pin(sql):
    assert classify(sql) is None


def test_the_tables_are_big_enough():
    assert len(MUST_PIN) >= 40 and len(MUST_NOT_PIN) >= 40


def test_settings_reason_is_rds_sentence():
    assert classify("SET x = 1").reason == REASON_SETTINGS
    assert REASON_SETTINGS.startswith("SQL changed session settings that the proxy doesn't track.")


def test_text_larger_than_16_kib_pins_whatever_it_says():
    body = "SELECT 1 -- " + "x" * MAX_INSPECTED_BYTES
    assert classify(body).trigger == "statement_too_large"
    exactly = "SELECT '" + "x" * (MAX_INSPECTED_BYTES - 9) + "'"
    assert len(exactly.encode()) == MAX_INSPECTED_BYTES
    assert classify(exactly) is None
    # bytes, not characters: 6,000 three-byte characters are 18,000 bytes
    assert classify("SELECT '" + "€" * 6000 + "'").trigger == "statement_too_large"


def test_unterminated_literals_and_comments_do_not_raise():
    for sql in ("SELECT 'open", 'SELECT "open', "SELECT $$ open", "SELECT 1 /* open", "SELECT E'\\",
                "SET x = 'open"):
        classify(sql)
        digest(sql)
    assert classify("SET x = 'open") is not None


def test_digest_replaces_literals_and_collapses_whitespace():
    assert digest("set search_path to 'a','b',   'c'") == "set search_path to $1,$2,$3"
    assert digest("SELECT *\n  FROM t\tWHERE a = 10 AND b = 'x' -- note") == \
        "SELECT * FROM t WHERE a = $1 AND b = $2"
    assert digest("SELECT $1, 'x', $$body$$") == "SELECT $1,$2,$3"
    assert digest("SELECT x::int FROM s.t") == "SELECT x::int FROM s.t"


def test_lexer_kinds():
    kinds = [t.kind for t in tokenize("SELECT E'a\\'b', \"Q\"\"x\", $1, 1.5e3, $t$z$t$; x")]
    assert kinds == [TokenKind.WORD, TokenKind.STRING, TokenKind.PUNCT, TokenKind.QUOTED_IDENT,
                     TokenKind.PUNCT, TokenKind.PARAM, TokenKind.PUNCT, TokenKind.NUMBER, TokenKind.PUNCT,
                     TokenKind.STRING, TokenKind.SEMICOLON, TokenKind.WORD]
    assert tokenize('"Q""x"')[0].value == 'Q"x'


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_classify_and_digest_never_raise_on_arbitrary_text(sql):
    decision = classify(sql)
    assert decision is None or isinstance(decision, PinDecision)
    assert isinstance(digest(sql), str)


_SQLISH = st.lists(st.sampled_from(["SET", "set", "LOCAL", "'", "''", '"', "$$", "$a$", "--", "\n", "/*",
                                    "*/", ";", "E'", "\\", "nextval", "(", ")", " ", "x", "1", "TEMP",
                                    "CREATE", "TABLE", "INTO", "SELECT", "$1", "U&'", "."]), max_size=40)


@settings(max_examples=400, deadline=None)
@given(_SQLISH)
def test_classify_never_raises_on_sql_like_fragments(parts):
    sql = "".join(parts)
    classify(sql)
    digest(sql)
