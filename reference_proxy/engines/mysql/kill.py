"""KILL from a client: which proxy session it names, and whether its statement or its connection.

A MySQL client stops a running statement the only way the protocol has: ``KILL QUERY n`` (or
``KILL [CONNECTION] n``, or COM_PROCESS_KILL) on a second connection, where ``n`` is the connection
id its handshake gave it.  Behind a pooling proxy that id is the proxy's (the login's greeting),
not a backend thread's, and the backend thread a session uses changes from one transaction to the
next; passed through, ``n`` would name whatever backend thread happens to carry that number, or
nothing.  So the proxy answers KILL itself: it maps ``n`` to the session whose greeting gave it and
stops the statement on the backend that session holds at that moment.

This module only reads the statement (sans-I/O): :func:`could_kill` is the screen every COM_QUERY
passes (no tokenizing unless the bytes hold the word), :func:`read_kill` the reading, on tokens, so
that a KILL inside a comment or a string is never taken for one.  MariaDB's grammar:
``KILL [HARD | SOFT] [CONNECTION | QUERY [ID]] {thread_id | USER user_name | query_id}``; the forms
naming a query id or a user are not mapped (they name things only backends know) and are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reference_proxy.engines.mysql.lexer import Token, TokenKind, split_statements, tokenize

__all__ = ["Kill", "KillRefused", "could_kill", "process_kill", "read_kill"]

_KILL_WORD = re.compile(rb"[kK][iI][lL][lL]")
_MAX_ID = 2 ** 64 - 1


@dataclass(frozen=True)
class Kill:
    """``KILL QUERY n`` (``query_only``) or ``KILL [CONNECTION] n``: stop session ``connection_id``'s
    statement, or its whole connection."""

    connection_id: int
    query_only: bool


@dataclass(frozen=True)
class KillRefused:
    """A KILL the proxy cannot map to a session; ``reason`` ends the client's ERR text."""

    reason: str


def could_kill(query: bytes) -> bool:
    """False only when COM_QUERY text ``query`` certainly holds no KILL statement."""
    return _KILL_WORD.search(query) is not None


def process_kill(payload: bytes) -> Kill:
    """COM_PROCESS_KILL (``0x0c`` then the connection id, int<4>): a KILL CONNECTION."""
    if len(payload) != 5:
        raise ValueError(f"COM_PROCESS_KILL carries a 4-byte connection id, got {len(payload) - 1} bytes")
    return Kill(int.from_bytes(payload[1:5], "little"), query_only=False)


def read_kill(sql: str, **lexing: bool) -> Kill | KillRefused | None:
    """The KILL in ``sql``, or None when the text holds no KILL statement.

    A KILL sent with other statements in one COM_QUERY is refused (the others would have to be
    split off and run elsewhere); so is a form without a literal connection id.  ``lexing`` are
    :func:`~.lexer.tokenize`'s options for the session's sql_mode."""
    statements = split_statements(tokenize(sql, **lexing))
    kills = [s for s in statements if _word(s, 0) == "kill"]
    if not kills:
        return None
    if len(statements) > 1:
        return KillRefused("KILL must be sent as a statement of its own through this proxy")
    tokens = kills[0][1:]
    if _word(tokens, 0) in ("hard", "soft"):
        tokens = tokens[1:]
    query_only = _word(tokens, 0) == "query"
    if _word(tokens, 0) in ("query", "connection"):
        tokens = tokens[1:]
    if _word(tokens, 0) in ("id", "user"):
        return KillRefused(f"KILL ... {tokens[0].text.upper()} names what only a database instance knows; "
                           f"give the connection id instead")
    if len(tokens) != 1 or tokens[0].kind is not TokenKind.NUMBER or not tokens[0].text.isdigit() \
            or int(tokens[0].text) > _MAX_ID:
        return KillRefused("KILL takes one connection id, as a number, through this proxy")
    return Kill(int(tokens[0].text), query_only)


def _word(tokens: list[Token], i: int) -> str | None:
    return tokens[i].value if len(tokens) > i and tokens[i].kind is TokenKind.WORD else None
