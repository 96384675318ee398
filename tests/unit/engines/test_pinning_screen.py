"""The pinning screen never hides a statement the classifier would pin on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_pinning_postgres import MUST_NOT_PIN, MUST_PIN  # the classifier's own corpus

from reference_proxy.engines.postgres.pinning import classify
from reference_proxy.engines.postgres.screen import could_pin, screened

screened_classify = screened(classify)


def test_every_statement_of_the_classifier_corpus_gets_the_same_answer():
    for sql, _ in MUST_PIN:
        assert could_pin(sql), sql
        assert screened_classify(sql) == classify(sql)
    for sql in MUST_NOT_PIN:
        assert screened_classify(sql) is None, sql


def test_plain_queries_skip_the_classifier():
    calls = []
    spy = screened(lambda sql: calls.append(sql))
    spy("SELECT abalance FROM pgbench_accounts WHERE aid = 42;")
    spy("UPDATE t SET x = 1")  # mentions a trigger word: classified
    assert calls == ["UPDATE t SET x = 1"]


def test_non_ascii_long_and_unicode_escaped_text_is_always_classified():
    assert could_pin("SELECT 'é'")
    assert could_pin("SELECT 1" + " " * 20000)
    assert could_pin('SELECT U&"nextv\\0061l"(\'s\')')


_WORDS = st.sampled_from(["SET", "set", "LOCAL", "'", '"', "$$", "--", "\n", "/*", "*/", ";", "E'", "\\",
                          "nextval", "NEXTVAL", "setval", "pg_advisory_lock", "pg_try_advisory_lock_shared",
                          "(", ")", " ", "x", "1", "TEMP", "temporary", "pg_temp", "CREATE", "TABLE", "INTO",
                          "SELECT", "WITH", "PREPARE", "EXECUTE", "DEALLOCATE", "DISCARD", "DECLARE",
                          "LISTEN", "LOAD", "RESET", "set_config", "$1", "U&", "U&'", "."])


@settings(max_examples=600, deadline=None)
@given(st.lists(_WORDS, max_size=30))
def test_the_screen_never_hides_a_pin(parts):
    sql = "".join(parts)
    assert screened_classify(sql) == classify(sql)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_the_screen_never_hides_a_pin_in_arbitrary_text(sql):
    assert screened_classify(sql) == classify(sql)
