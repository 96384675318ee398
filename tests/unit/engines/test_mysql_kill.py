"""Recognising a client's KILL (reference_proxy.engines.mysql.kill): by tokens, not by text."""

from __future__ import annotations

import pytest

from reference_proxy.engines.mysql.kill import Kill, KillRefused, could_kill, process_kill, read_kill


@pytest.mark.parametrize("sql, expected", [
    ("KILL QUERY 42", Kill(42, query_only=True)),
    ("kill query 42;", Kill(42, query_only=True)),
    ("  Kill\n\tQuery   7  ", Kill(7, query_only=True)),
    ("/* stop it */ KILL QUERY 7 -- now\n", Kill(7, query_only=True)),
    ("# why\nKILL /* inline */ QUERY /**/ 9", Kill(9, query_only=True)),
    ("KILL 5", Kill(5, query_only=False)),
    ("KILL CONNECTION 5", Kill(5, query_only=False)),
    ("kill connection 5", Kill(5, query_only=False)),
    ("KILL HARD QUERY 3", Kill(3, query_only=True)),
    ("KILL SOFT CONNECTION 3", Kill(3, query_only=False)),
    ("KILL QUERY 18446744073709551615", Kill(2 ** 64 - 1, query_only=True)),
])
def test_kill_statements_are_read_whatever_their_case_comments_and_whitespace(sql, expected):
    assert could_kill(sql.encode())
    assert read_kill(sql) == expected


@pytest.mark.parametrize("sql", [
    "SELECT 'KILL QUERY 4'",
    "SELECT 1 /* KILL QUERY 4 */",
    "SELECT 1 -- KILL 4",
    "SELECT `kill` FROM t",
    "UPDATE skills SET killed = 1",
    "SELECT 1",
])
def test_kill_in_a_string_comment_or_name_is_no_kill(sql):
    assert read_kill(sql) is None


def test_the_screen_lets_through_only_texts_holding_the_word():
    assert not could_kill(b"\x03SELECT 1")
    assert could_kill(b"\x03sElEct 'kIlL'")  # a maybe: the reader decides


@pytest.mark.parametrize("sql", [
    "KILL QUERY ID 12",          # MariaDB: a query id, known only to the instance
    "KILL USER app",             # MariaDB: every connection of a user
    "KILL CONNECTION USER app",
    "KILL QUERY",                # no id
    "KILL QUERY 1 + 1",          # an expression
    "KILL QUERY 0x10",
    "KILL QUERY 18446744073709551616",
    "SELECT 1; KILL QUERY 4",    # not alone
    "KILL QUERY 4; SELECT 1",
])
def test_kill_forms_the_proxy_cannot_map_are_refused_with_a_reason(sql):
    refused = read_kill(sql)
    assert isinstance(refused, KillRefused) and refused.reason


def test_ansi_quotes_make_a_double_quoted_kill_a_name():
    assert read_kill('SELECT "KILL 4"') is None
    assert read_kill('SELECT "KILL 4"', ansi_quotes=True) is None


def test_com_process_kill_is_a_kill_connection_of_its_little_endian_id():
    assert process_kill(b"\x0c\x2a\x00\x00\x00") == Kill(42, query_only=False)
    with pytest.raises(ValueError):
        process_kill(b"\x0c\x2a\x00")
