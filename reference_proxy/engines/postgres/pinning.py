"""Which PostgreSQL SQL text pins a client session to its backend connection, as RDS Proxy decides.

RDS Proxy multiplexes a client over many backend connections only while the client keeps no
session state the proxy cannot carry over.  For Aurora PostgreSQL, AWS lists what makes it give up
and pin the session until the client disconnects; :func:`classify` implements that list:

* any ``SET`` (``SET x``, ``SET SESSION x``, ``SET x TO DEFAULT``, ``SET ROLE``, ``SET TIME ZONE``,
  ``SET SESSION CHARACTERISTICS``...), any ``RESET``, any call of ``set_config()``;
* SQL-level prepared statements: ``PREPARE``, ``EXECUTE``, ``DEALLOCATE``; and ``DISCARD``;
* ``CREATE TEMP``/``TEMPORARY`` tables, sequences and views (also ``... AS``, and
  ``SELECT ... INTO TEMP``), and any object created in the ``pg_temp`` schema (``CREATE FUNCTION
  pg_temp.f()``, ``CREATE TYPE pg_temp.t``...): it too lives as long as the session;
* ``DECLARE ... CURSOR`` (only ``WITH HOLD`` cursors outlive a transaction, but RDS pins on any
  ``DECLARE``, so this does too);
* ``LISTEN``; ``LOAD``;
* calls of ``nextval`` and ``setval``;
* session-level advisory locks ``pg_advisory_lock``, ``pg_advisory_lock_shared``,
  ``pg_try_advisory_lock``, ``pg_try_advisory_lock_shared`` (never the ``_xact_`` variants, whose
  locks end with the transaction);
* any text longer than 16 KB (16,384 bytes), which RDS does not inspect.

Deliberately *not* pinning, because the state they set dies with the transaction: ``SET LOCAL``,
``SET TRANSACTION`` (including ``SET TRANSACTION SNAPSHOT``) and ``SET CONSTRAINTS``.  AWS's
PostgreSQL list is silent on ``SET LOCAL``; its MySQL list says it does not pin, and a
transaction-scoped setting cannot leak to another client, so it is treated the same here.
``PREPARE TRANSACTION`` (two-phase commit) is not a prepared statement and does not pin either.
Function bodies (``DO $$ ... $$``, ``CREATE FUNCTION``) are string literals to the proxy: what they
do inside the server is invisible, exactly as AWS warns.

A leading ``EXPLAIN [ANALYZE] [VERBOSE]`` or ``EXPLAIN (options)`` is looked through: ``EXPLAIN
ANALYZE`` runs its statement, so ``EXPLAIN ANALYZE CREATE TEMP TABLE t AS ...`` creates the table.
(A plain ``EXPLAIN`` does not run it; pinning on it anyway errs on the safe side.)

A text holding several statements pins if any of its statements does; keywords are found on tokens
(see :mod:`.lexer`), case-insensitively, never inside literals, quoted identifiers or comments.

The triggers a :class:`~reference_proxy.pinning.PinDecision` names: ``set``, ``reset``,
``set_config``, ``prepare``, ``execute``, ``deallocate``, ``discard``, ``temp_table``,
``temp_sequence``, ``temp_view`` (and ``temp_<kind>`` for other objects created in ``pg_temp``,
e.g. ``temp_function``, ``temp_type``), ``cursor``, ``listen``, ``load``, ``sequence``,
``advisory_lock``, ``statement_too_large``.
"""

from __future__ import annotations

from reference_proxy.engines.postgres.lexer import Token, TokenKind, split_statements, tokenize
from reference_proxy.pinning import PinDecision

MAX_INSPECTED_BYTES = 16384
"""RDS Proxy pins on any statement text larger than 16 KB."""

REASON_SETTINGS = ("SQL changed session settings that the proxy doesn't track. "
                   "Consider moving session configuration to the proxy's initialization query.")
REASON_PREPARED = "SQL-level prepared statements keep session state that the proxy doesn't track."
REASON_DISCARD = "SQL discarded session state, which the proxy manages itself."
REASON_TEMP = "SQL created a temporary object, which lives as long as the database session."
REASON_CURSOR = "SQL declared a cursor, which can outlive the transaction."
REASON_LISTEN = "SQL subscribed the session to notifications with LISTEN."
REASON_LOAD = "SQL loaded a library module into the database session."
REASON_SEQUENCE = "SQL called a sequence function, whose session state the proxy doesn't track."
REASON_ADVISORY = "SQL took a session-level advisory lock."
REASON_TOO_LARGE = "The statement text is larger than 16 KB, so the proxy didn't inspect it."

_SESSION_FUNCTIONS = {
    "set_config": ("set_config", REASON_SETTINGS),
    "nextval": ("sequence", REASON_SEQUENCE),
    "setval": ("sequence", REASON_SEQUENCE),
    "pg_advisory_lock": ("advisory_lock", REASON_ADVISORY),
    "pg_advisory_lock_shared": ("advisory_lock", REASON_ADVISORY),
    "pg_try_advisory_lock": ("advisory_lock", REASON_ADVISORY),
    "pg_try_advisory_lock_shared": ("advisory_lock", REASON_ADVISORY),
}

_LEADING_KEYWORDS = {
    "reset": ("reset", REASON_SETTINGS),
    "execute": ("execute", REASON_PREPARED),
    "deallocate": ("deallocate", REASON_PREPARED),
    "discard": ("discard", REASON_DISCARD),
    "declare": ("cursor", REASON_CURSOR),
    "listen": ("listen", REASON_LISTEN),
    "load": ("load", REASON_LOAD),
}

_TRANSACTION_SCOPED_SET = {"local", "transaction", "constraints"}
_TEMP_WORDS = {"temp", "temporary"}
_TEMP_OBJECTS = {"table": "temp_table", "sequence": "temp_sequence", "view": "temp_view"}

# Reserved words that can follow ``INTO TEMP`` only when TEMP is itself a table name
# (``INSERT INTO temp SELECT ...``, ``SELECT 1 INTO temp FROM t`` is not valid SQL anyway).
_NOT_A_TABLE_NAME = {"select", "values", "default", "from", "where", "as", "on", "with", "union",
                     "group", "order", "limit", "offset", "returning", "table"}


def classify(sql: str, *, failpoint: str | None = None) -> PinDecision | None:
    """The reason ``sql`` pins the session, or None if RDS Proxy would keep multiplexing.

    ``failpoint`` (test only, :mod:`reference_proxy.failpoints`): ``settings_do_not_pin`` lets a
    session-level ``SET`` through unpinned; ``every_set_pins`` pins on transaction-scoped ones too."""
    if len(sql.encode("utf-8", errors="surrogatepass")) > MAX_INSPECTED_BYTES:
        return PinDecision(REASON_TOO_LARGE, "statement_too_large")
    for statement in split_statements(tokenize(sql)):
        decision = _classify_statement(statement, failpoint)
        if decision is not None:
            return decision
    return None


def _without_explain(tokens: list[Token]) -> list[Token]:
    """The statement an ``EXPLAIN [ANALYZE|ANALYSE] [VERBOSE]`` or ``EXPLAIN (options)`` prefix wraps."""
    if _word_at(tokens, 0) != "explain":
        return tokens
    i = 1
    if i < len(tokens) and tokens[i].text == "(":
        depth = 0
        while i < len(tokens):
            if tokens[i].text == "(":
                depth += 1
            elif tokens[i].text == ")":
                depth -= 1
                if depth == 0:
                    return tokens[i + 1:]
            i += 1
        return tokens[i:]  # unbalanced: nothing left to classify
    if _word_at(tokens, i) in ("analyze", "analyse"):
        i += 1
    if _word_at(tokens, i) == "verbose":
        i += 1
    return tokens[i:]


def _classify_statement(tokens: list[Token], failpoint: str | None = None) -> PinDecision | None:
    tokens = _without_explain(tokens)
    if not tokens:
        return None
    words = [t.value if t.kind is TokenKind.WORD else None for t in tokens[:4]]
    first = words[0]
    second = words[1] if len(words) > 1 else None
    if first == "set":
        if failpoint == "every_set_pins":  # unsafe on purpose: SET LOCAL pins too
            return PinDecision(REASON_SETTINGS, "set")
        if second not in _TRANSACTION_SCOPED_SET and failpoint != "settings_do_not_pin":
            return PinDecision(REASON_SETTINGS, "set")
    elif first in _LEADING_KEYWORDS:
        return PinDecision(_LEADING_KEYWORDS[first][1], _LEADING_KEYWORDS[first][0])
    elif first == "prepare":
        if second != "transaction":
            return PinDecision(REASON_PREPARED, "prepare")
    elif first == "create":
        trigger = _created_temp_object(tokens)
        if trigger is not None:
            return PinDecision(REASON_TEMP, trigger)
    elif (first in ("select", "with") or tokens[0].text == "(") and _selects_into_temp(tokens):
        return PinDecision(REASON_TEMP, "temp_table")
    return _session_function_call(tokens)


def _word_at(tokens: list[Token], i: int) -> str | None:
    if 0 <= i < len(tokens) and tokens[i].kind is TokenKind.WORD:
        return tokens[i].value
    return None


def _created_temp_object(tokens: list[Token]) -> str | None:
    """``CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP|TEMPORARY [UNLOGGED] [RECURSIVE] TABLE|SEQUENCE|VIEW``,
    or any object whose name is qualified by the ``pg_temp`` schema (``temp_<kind>``)."""
    i = 1
    temporary = False
    while True:
        word = _word_at(tokens, i)
        if word in ("or", "replace", "global", "local", "unlogged", "recursive"):
            i += 1
        elif word in _TEMP_WORDS:
            temporary = True
            i += 1
        else:
            break
    kind = _word_at(tokens, i)
    trigger = _TEMP_OBJECTS.get(kind or "")
    if temporary and trigger is not None:
        return trigger
    # The created object's name is the first qualified name after the leading words
    # (CREATE [UNIQUE] INDEX, CREATE MATERIALIZED VIEW, CREATE TEXT SEARCH DICTIONARY ...).
    j = i
    while j < len(tokens) and tokens[j].kind in (TokenKind.WORD, TokenKind.QUOTED_IDENT):
        if _in_pg_temp(tokens, j):
            if trigger is None and kind == "materialized":
                return "temp_materialized_view"
            return trigger or f"temp_{kind or 'object'}"
        j += 1
    return None


def _in_pg_temp(tokens: list[Token], i: int) -> bool:
    """Whether the name starting at ``i`` is qualified by the ``pg_temp`` schema."""
    if i + 1 >= len(tokens) or tokens[i + 1].text != ".":
        return False
    schema = tokens[i]
    if schema.kind is TokenKind.WORD:
        return schema.value == "pg_temp"
    return schema.kind is TokenKind.QUOTED_IDENT and schema.value == "pg_temp"


def _selects_into_temp(tokens: list[Token]) -> bool:
    """``SELECT ... INTO [GLOBAL|LOCAL] TEMP|TEMPORARY [TABLE] name`` or ``INTO pg_temp.name``."""
    for i, token in enumerate(tokens):
        if token.kind is not TokenKind.WORD or token.value != "into":
            continue
        j = i + 1
        if _word_at(tokens, j) in ("global", "local"):
            j += 1
        if _word_at(tokens, j) in _TEMP_WORDS:
            j += 1
            if _word_at(tokens, j) == "table":
                j += 1
            if j < len(tokens) and (
                    tokens[j].kind is TokenKind.QUOTED_IDENT
                    or (tokens[j].kind is TokenKind.WORD and tokens[j].value not in _NOT_A_TABLE_NAME)):
                return True
        elif _in_pg_temp(tokens, j):
            return True
    return False


def _session_function_call(tokens: list[Token]) -> PinDecision | None:
    for i in range(len(tokens) - 1):
        token = tokens[i]
        if token.kind is TokenKind.WORD:
            name = token.value
        elif token.kind is TokenKind.QUOTED_IDENT:
            name = token.value  # quoted names are case-sensitive: "NEXTVAL" is another function
        else:
            continue
        if name in _SESSION_FUNCTIONS and tokens[i + 1].text == "(":
            trigger, reason = _SESSION_FUNCTIONS[name]
            return PinDecision(reason, trigger)
    return None


def digest(sql: str) -> str:
    """The statement text with literals replaced by ``$1``, ``$2``... and whitespace collapsed.

    For logs, like RDS Proxy's pinning digests: the shape of the statement without its data.
    Numbering continues after any ``$n`` parameter already in the text; comments are dropped.
    """
    tokens = tokenize(sql)
    params = [int(t.text[1:]) for t in tokens if t.kind is TokenKind.PARAM and t.text[1:].isdigit()]
    counter = max(params, default=0)
    parts: list[str] = []
    previous = ""
    for token in tokens:
        if token.kind in (TokenKind.STRING, TokenKind.NUMBER):
            counter += 1
            text = f"${counter}"
        else:
            text = token.text
        if parts and not _glued(previous, text):
            parts.append(" ")
        parts.append(text)
        previous = text
    return "".join(parts)


def _glued(previous: str, current: str) -> bool:
    return previous in ("(", ".", ",", "::", "[") or current in (")", ",", ".", ";", "::", "]", "[")
