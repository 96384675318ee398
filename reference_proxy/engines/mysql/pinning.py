"""Which MySQL SQL text pins a client session to its backend connection, as RDS Proxy decides.

RDS Proxy multiplexes a client over many backend connections only while the client keeps no
session state the proxy cannot carry over.  For Aurora MySQL, AWS lists what makes it give up and
pin the session until the client disconnects; :func:`classify` implements that list:

* user variables: ``SET @x = ...``, ``SELECT ... INTO @x``, ``@x := ...`` anywhere;
* ``SET`` of a system variable the proxy does not track (see :mod:`.tracked`), ``SET ROLE``, and
  ``SET TRANSACTION ...`` without ``SESSION``, which sets the *next* transaction's isolation or
  access mode (the session-scope form is tracked);
* SQL prepared statements: ``PREPARE``, ``EXECUTE`` (also MariaDB's ``EXECUTE IMMEDIATE``, whose
  text the proxy cannot see), ``DEALLOCATE PREPARE`` / ``DROP PREPARE``;
* ``CREATE [OR REPLACE] TEMPORARY TABLE``;
* named locks: ``GET_LOCK``, ``RELEASE_LOCK``, ``RELEASE_ALL_LOCKS``, ``IS_USED_LOCK``,
  ``IS_FREE_LOCK`` (held by, or asked about, one database session);
* ``LOCK TABLE(S)``; ``FLUSH TABLES ... WITH READ LOCK`` and ``FLUSH TABLES ... FOR EXPORT``;
* ``ROW_COUNT()`` and ``FOUND_ROWS()``, which read what the session's previous statement did (AWS
  says "sometimes"; always here.  ``LAST_INSERT_ID()``, on AWS's 2023 list only, does not pin:
  clients mostly read the insert id from the OK packet);
* executable comments ``/*! ... */``, ``/*!80000 ... */`` and ``/*M! ... */``, which the proxy
  does not look inside;
* any text longer than 16 KB (16,384 bytes), which RDS does not inspect.

Not pinning: plain queries and DML, ``CALL`` (what a procedure does inside is invisible, as AWS
warns), ``BEGIN``/``COMMIT``/``ROLLBACK``/``START TRANSACTION``, ``USE``, ``SET autocommit``,
``SET NAMES`` and every other session-scope ``SET`` of a tracked variable (those partition the
pool instead), ``SET GLOBAL``/``SET PERSIST`` (no session state), ``SET PASSWORD``, ``SET DEFAULT
ROLE``, and MariaDB's ``SET STATEMENT ... FOR stmt`` (its settings last one statement; ``stmt``
itself is classified).  Reading a user variable (``SELECT @x``) does not pin: it can only hold
something if setting it pinned first.

``exclude_variable_sets`` is RDS's ``SessionPinningFilters = ["EXCLUDE_VARIABLE_SETS"]``: every
``SET`` statement is then ignored when deciding to pin (user variables, untracked variables, ``SET
TRANSACTION``...); the statements still run and their state can leak to other clients, as AWS
warns.  Calls inside a ``SET`` (``SET @l = GET_LOCK('a', 0)``) still pin, and so do ``SELECT ...
INTO @x`` and ``@x :=``, which are not ``SET`` statements.

Binary-protocol prepared statements (``COM_STMT_PREPARE``) pin too, but they are commands, not
SQL text: the session pins on the command itself, not through this classifier.

A text holding several statements pins if any of its statements does; keywords are found on tokens
(see :mod:`.lexer`), case-insensitively, never inside literals, quoted identifiers or comments.

The triggers a :class:`~reference_proxy.pinning.PinDecision` names: ``user_variable``,
``set_variable``, ``set_transaction``, ``set_role``, ``prepare``, ``execute``, ``deallocate``,
``temp_table``, ``named_lock``, ``lock_tables``, ``flush_read_lock``, ``session_function``,
``executable_comment``, ``statement_too_large``.
"""

from __future__ import annotations

from reference_proxy.engines.mysql.lexer import Token, TokenKind, split_statements, tokenize
from reference_proxy.engines.mysql.tracked import set_assignments
from reference_proxy.pinning import PinDecision

__all__ = ["MAX_INSPECTED_BYTES", "classify", "digest"]

MAX_INSPECTED_BYTES = 16384
"""RDS Proxy pins on any statement text larger than 16 KB."""

REASON_SETTINGS = ("SQL changed session settings that the proxy doesn't track. "
                   "Consider moving session configuration to the proxy's initialization query.")
REASON_USER_VARIABLE = "SQL set a user variable, which the proxy doesn't track."
REASON_NEXT_TRANSACTION = "SQL set characteristics of the next transaction only, which the proxy doesn't track."
REASON_ROLE = "SQL changed the session's active roles, which the proxy doesn't track."
REASON_PREPARED = "SQL-level prepared statements keep session state that the proxy doesn't track."
REASON_TEMP = "SQL created a temporary table, which lives as long as the database session."
REASON_NAMED_LOCK = "SQL used a named lock, which belongs to the database session."
REASON_LOCK_TABLES = "SQL locked tables, which stay locked until UNLOCK TABLES or the end of the session."
REASON_FLUSH_LOCK = "SQL took a read lock with FLUSH TABLES, which stays until UNLOCK TABLES."
REASON_SESSION_FUNCTION = "SQL called a function that reports on the database session's previous statement."
REASON_EXECUTABLE_COMMENT = "SQL contains an executable comment, which the proxy doesn't inspect."
REASON_TOO_LARGE = "The statement text is larger than 16 KB, so the proxy didn't inspect it."

_SESSION_FUNCTIONS = {
    "get_lock": ("named_lock", REASON_NAMED_LOCK),
    "release_lock": ("named_lock", REASON_NAMED_LOCK),
    "release_all_locks": ("named_lock", REASON_NAMED_LOCK),
    "is_used_lock": ("named_lock", REASON_NAMED_LOCK),
    "is_free_lock": ("named_lock", REASON_NAMED_LOCK),
    "row_count": ("session_function", REASON_SESSION_FUNCTION),
    "found_rows": ("session_function", REASON_SESSION_FUNCTION),
}

_LEADING_KEYWORDS = {
    "prepare": ("prepare", REASON_PREPARED),
    "execute": ("execute", REASON_PREPARED),
    "deallocate": ("deallocate", REASON_PREPARED),
}

_SET_PINS = {
    "user": ("user_variable", REASON_USER_VARIABLE),
    "transaction": ("set_transaction", REASON_NEXT_TRANSACTION),
    "role": ("set_role", REASON_ROLE),
    "unknown": ("set_variable", REASON_SETTINGS),
}


def classify(sql: str, *, exclude_variable_sets: bool = False, ansi_quotes: bool = False,
             backslash_escapes: bool = True, failpoint: str | None = None) -> PinDecision | None:
    """The reason ``sql`` pins the session, or None if RDS Proxy would keep multiplexing.

    ``exclude_variable_sets``: the proxy's ``EXCLUDE_VARIABLE_SETS`` pinning filter.  The lexing
    flags follow the session's ``sql_mode`` (``ANSI_QUOTES``, ``NO_BACKSLASH_ESCAPES``).
    ``failpoint`` (test only, :mod:`reference_proxy.failpoints`): ``settings_do_not_pin`` lets a
    ``SET`` of an untracked system variable through unpinned; ``every_set_pins`` pins on tracked ones too.
    """
    if len(sql.encode("utf-8", errors="surrogatepass")) > MAX_INSPECTED_BYTES:
        return PinDecision(REASON_TOO_LARGE, "statement_too_large")
    tokens = tokenize(sql, ansi_quotes=ansi_quotes, backslash_escapes=backslash_escapes)
    for token in tokens:
        if token.kind is TokenKind.EXECUTABLE_COMMENT:
            return PinDecision(REASON_EXECUTABLE_COMMENT, "executable_comment")
    for statement in split_statements(tokens):
        decision = _classify_statement(statement, exclude_variable_sets, backslash_escapes, failpoint)
        if decision is not None:
            return decision
    return None


def _classify_statement(tokens: list[Token], exclude_variable_sets: bool,
                        backslash_escapes: bool, failpoint: str | None = None) -> PinDecision | None:
    start = 0
    while start < len(tokens) and tokens[start].text == "(":
        start += 1
    tokens = tokens[start:]
    if not tokens:
        return None
    first, second = _word_at(tokens, 0), _word_at(tokens, 1)
    if first == "set":
        if second == "statement":
            return _classify_statement(_after_for(tokens), exclude_variable_sets, backslash_escapes, failpoint)
        if failpoint == "every_set_pins":  # unsafe on purpose: tracked variables (SET NAMES...) pin too
            return PinDecision(REASON_SETTINGS, "set_variable")
        if not exclude_variable_sets:
            decision = _set_decision(tokens, backslash_escapes, failpoint)
            if decision is not None:
                return decision
        return _session_function_call(tokens)
    if first in _LEADING_KEYWORDS:
        trigger, reason = _LEADING_KEYWORDS[first]
        return PinDecision(reason, trigger)
    if first == "drop" and second == "prepare":
        return PinDecision(REASON_PREPARED, "deallocate")
    if first == "create" and _creates_temporary_table(tokens):
        return PinDecision(REASON_TEMP, "temp_table")
    if first == "lock" and second in ("table", "tables"):
        return PinDecision(REASON_LOCK_TABLES, "lock_tables")
    if first == "flush" and _flush_takes_lock(tokens):
        return PinDecision(REASON_FLUSH_LOCK, "flush_read_lock")
    if _sets_user_variable(tokens):
        return PinDecision(REASON_USER_VARIABLE, "user_variable")
    return _session_function_call(tokens)


def _set_decision(tokens: list[Token], backslash_escapes: bool, failpoint: str | None = None) -> PinDecision | None:
    for item in set_assignments(tokens, backslash_escapes=backslash_escapes):
        if item.target in _SET_PINS:
            trigger, reason = _SET_PINS[item.target]
            return PinDecision(reason, trigger)
        if (item.target == "system" and item.scope == "session" and not item.tracked
                and failpoint != "settings_do_not_pin"):  # unsafe on purpose when it is that failpoint
            return PinDecision(REASON_SETTINGS, "set_variable")
    return None


def _after_for(tokens: list[Token]) -> list[Token]:
    """The statement a MariaDB ``SET STATEMENT var = value [, ...] FOR statement`` wraps."""
    depth = 0
    for i, token in enumerate(tokens):
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        elif depth == 0 and token.kind is TokenKind.WORD and token.value == "for":
            return tokens[i + 1:]
    return []


def _word_at(tokens: list[Token], i: int) -> str | None:
    if 0 <= i < len(tokens) and tokens[i].kind is TokenKind.WORD:
        return tokens[i].value
    return None


def _creates_temporary_table(tokens: list[Token]) -> bool:
    """``CREATE [OR REPLACE] TEMPORARY TABLE``."""
    i = 1
    while _word_at(tokens, i) in ("or", "replace"):
        i += 1
    return _word_at(tokens, i) == "temporary" and _word_at(tokens, i + 1) == "table"


def _flush_takes_lock(tokens: list[Token]) -> bool:
    """``FLUSH TABLES [names] WITH READ LOCK`` or ``FLUSH TABLES names FOR EXPORT``."""
    words = [t.value if t.kind is TokenKind.WORD else "" for t in tokens]
    for i in range(1, len(words)):
        if words[i:i + 3] == ["with", "read", "lock"] or words[i:i + 2] == ["for", "export"]:
            return True
    return False


def _sets_user_variable(tokens: list[Token]) -> bool:
    """``@x := value`` anywhere, or ``INTO @x`` (``SELECT ... INTO @a, @b``)."""
    for i, token in enumerate(tokens[:-1]):
        following = tokens[i + 1]
        if token.kind is TokenKind.USER_VAR and following.text == ":=":
            return True
        if token.kind is TokenKind.WORD and token.value == "into" and following.kind is TokenKind.USER_VAR:
            return True
    return False


def _session_function_call(tokens: list[Token]) -> PinDecision | None:
    for i in range(len(tokens) - 1):
        token = tokens[i]
        if (token.kind is TokenKind.WORD and token.value in _SESSION_FUNCTIONS and tokens[i + 1].text == "("
                and (i == 0 or tokens[i - 1].text != ".")):  # db.get_lock() is a stored function
            trigger, reason = _SESSION_FUNCTIONS[token.value]
            return PinDecision(reason, trigger)
    return None


def digest(sql: str) -> str:
    """The statement text with literals replaced by ``?`` and whitespace collapsed.

    For logs, like RDS Proxy's pinning digests: the shape of the statement without its data.
    ``?`` is MySQL's own placeholder (and its performance-schema digests' mark); comments are
    dropped, the body of an executable comment is kept as the SQL it is.
    """
    parts: list[str] = []
    previous = ""
    for token in tokenize(sql):
        if token.kind is TokenKind.EXECUTABLE_COMMENT:
            continue
        text = "?" if token.kind in (TokenKind.STRING, TokenKind.NUMBER) else token.text
        if parts and not _glued(previous, text):
            parts.append(" ")
        parts.append(text)
        previous = text
    return "".join(parts)


def _glued(previous: str, current: str) -> bool:
    return previous in ("(", ".", ",") or current in (")", ",", ".", ";")
