"""The session state RDS Proxy tracks on Aurora MySQL: it partitions the pool instead of pinning.

AWS lists a few statements (``USE``, ``DROP DATABASE``/``DROP SCHEMA``) and system variables whose
session values the proxy follows itself: a backend connection is reused only for client sessions
with identical values of them.  This module holds that list as data (:data:`TRACKED_VARIABLES`)
and reads, without I/O, the tracked change a client makes:

* :func:`statement_changes` reads it from the client's SQL text: ``USE db``, ``DROP DATABASE``
  of the current schema, ``SET NAMES x [COLLATE y]``, ``SET CHARACTER SET x``, ``SET time_zone =
  ...``, ``SET SESSION sql_mode = ...``, ``SET @@session.x = ...``, ``SET SESSION TRANSACTION
  ISOLATION LEVEL ...``, several assignments in one ``SET``;
* :func:`reported_changes` reads it from the session-state block of the server's OK packet
  (:attr:`reference_proxy.protocol.mysql.responses.OkPacket.session_state_changes`), which reports
  the schema and the system variables the server tracks (by default autocommit, the
  ``character_set_client/connection/results`` trio and time_zone) with the values the server
  really took.  Where both are available the server's report is the truth: a statement's value
  may be an expression (``SET time_zone = @@global.time_zone``), which the text alone cannot tell
  (such names are listed in :attr:`TrackedChange.unresolved`).

Values are normalised so that equal settings compare equal, whichever way they were spelled:
booleans as ``ON``/``OFF``, integers in decimal, isolation levels as the server prints them
(``READ-COMMITTED``), character sets and collations in lower case, ``sql_mode`` upper-cased with
its modes sorted, ``time_zone`` offsets as ``+HH:MM`` and ``SYSTEM`` upper-cased.  A value of
None means "back to the default a fresh or reset session has": ``SET x = DEFAULT``, and the
variables a statement sets as a side effect (``SET NAMES x`` without ``COLLATE`` gives the
connection collation the character set's default, so the key stops carrying an older one).

What the pool key carries (:func:`pool_variant`): the session's tracked variables that the client
has set and that differ from a reset session's, as a tuple of ``(name, value)`` pairs sorted by
name, in :attr:`reference_proxy.contracts.PoolKey.variant`; the schema goes in
:attr:`~reference_proxy.contracts.PoolKey.database`, not in the variant.  Sorting makes the key
independent of the order the client set things in, and the backend's restore statement then sets
``character_set_*`` before ``collation_*``, which is the order MySQL needs for both to hold.

This module also parses ``SET`` statements into :class:`Assignment` items, which the pin
classifier (:mod:`.pinning`) reads too: a session-scope ``SET`` of an untracked variable pins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reference_proxy.engines.mysql.lexer import Token, TokenKind, split_statements, tokenize
from reference_proxy.protocol.mysql.wire import PayloadReader

__all__ = [
    "TRACKED_STATEMENTS",
    "TRACKED_VARIABLES",
    "VARIABLE_ALIASES",
    "Assignment",
    "TrackedChange",
    "apply_change",
    "canonical_name",
    "merge_changes",
    "pool_variant",
    "reported_changes",
    "set_assignments",
    "statement_changes",
]

TRACKED_VARIABLES: frozenset[str] = frozenset({
    "autocommit",
    "auto_increment_increment",
    "character_set_client",
    "character_set_connection",
    "character_set_database",
    "character_set_filesystem",
    "character_set_results",
    "character_set_server",
    "collation_connection",
    "collation_database",
    "collation_server",
    "interactive_timeout",
    "net_write_timeout",
    "query_cache_type",
    "session_track_schema",
    "sql_mode",
    "time_zone",
    "transaction_isolation",
    "transaction_read_only",
    "wait_timeout",
})
"""System variables whose session values RDS Proxy tracks on Aurora MySQL, by their server names.
``SET NAMES`` and ``SET CHARACTER SET`` are tracked too, through the variables they set.  Other
``session_track_*`` variables are not tracked (setting them pins)."""

VARIABLE_ALIASES: Mapping[str, str] = {
    "tx_isolation": "transaction_isolation",
    "tx_read_only": "transaction_read_only",
}
"""Older names of tracked variables, still accepted by MariaDB and MySQL 5.7."""

TRACKED_STATEMENTS: frozenset[str] = frozenset({"use", "drop database", "drop schema"})
"""Statements whose effect on the session (the default schema) RDS Proxy tracks."""

_SCOPES = {"global": "global", "session": "session", "local": "session", "persist": "persist",
           "persist_only": "persist"}
_BOOLEAN = {"autocommit", "session_track_schema", "transaction_read_only"}
_INTEGER = {"auto_increment_increment", "interactive_timeout", "net_write_timeout", "wait_timeout"}
_TRUE = {"on", "1", "true", "yes"}
_FALSE = {"off", "0", "false", "no"}
_QUERY_CACHE_TYPES = {"0": "OFF", "off": "OFF", "1": "ON", "on": "ON", "2": "DEMAND", "demand": "DEMAND"}
_ISOLATION_LEVELS = {"READ-UNCOMMITTED", "READ-COMMITTED", "REPEATABLE-READ", "SERIALIZABLE"}
_PAIRED = {  # setting one of a character set / collation pair resets the other to match it
    "character_set_connection": "collation_connection", "collation_connection": "character_set_connection",
    "character_set_database": "collation_database", "collation_database": "character_set_database",
    "character_set_server": "collation_server", "collation_server": "character_set_server",
}
_TIME_OFFSET = re.compile(r"^([+-])(\d{1,2}):(\d{2})$")
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_BACKSLASH_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}

SESSION_TRACK_SYSTEM_VARIABLES = 0
SESSION_TRACK_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Assignment:
    """One thing a ``SET`` statement assigns.

    ``target``: ``system`` (a system variable; ``name`` is its canonical server name), ``user`` (a
    user variable; ``name`` without the ``@``), ``transaction`` (``SET TRANSACTION ...`` without a
    scope: characteristics of the next transaction only), ``role`` (``SET ROLE``), ``password`` and
    ``default_role`` (account changes, no session state), or ``unknown`` (text this parser does
    not understand).  ``scope``: ``session``, ``global`` or ``persist``.  ``value``: the literal
    as text (unquoted), None for ``DEFAULT``; ``resolved`` is False when the value is an
    expression the text does not reveal.
    """

    target: str
    name: str = ""
    scope: str = "session"
    value: str | None = None
    resolved: bool = True

    @property
    def tracked(self) -> bool:
        """A session-scope change of a tracked variable: it partitions the pool, it does not pin."""
        return self.target == "system" and self.scope == "session" and self.name in TRACKED_VARIABLES


@dataclass(frozen=True)
class TrackedChange:
    """The tracked session state one statement (or one OK packet) changes.

    ``variables`` maps canonical names to normalised values (None: back to a reset session's
    value); ``schema`` is the new default schema ("" when none is selected any more), None when
    it does not change; ``unresolved`` names tracked variables set to a value the text does not
    reveal (ask the server: its session-state report, or ``SELECT @@session.x``).
    """

    variables: Mapping[str, str | None] = field(default_factory=dict)
    schema: str | None = None
    unresolved: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.variables) or self.schema is not None or bool(self.unresolved)


def statement_changes(sql: str, *, current_schema: str | None = None, ansi_quotes: bool = False,
                      backslash_escapes: bool = True) -> TrackedChange:
    """The tracked change the statements of ``sql`` make, in order, if they all succeed.

    ``current_schema``: the session's schema, so that ``DROP DATABASE`` of it is seen to leave
    the session without one.  The lexing flags follow the session's ``sql_mode``.
    """
    variables: dict[str, str | None] = {}
    unresolved: set[str] = set()
    schema: str | None = None
    tokens = tokenize(sql, ansi_quotes=ansi_quotes, backslash_escapes=backslash_escapes)
    for statement in split_statements(tokens):
        first = _word(statement, 0)
        if first == "use" and len(statement) > 1 and _is_name(statement[1]):
            schema = _name(statement[1])
        elif first == "drop" and _word(statement, 1) in ("database", "schema"):
            i = 4 if _word(statement, 2) == "if" and _word(statement, 3) == "exists" else 2
            dropped = _name(statement[i]) if i < len(statement) and _is_name(statement[i]) else None
            now = schema if schema is not None else current_schema
            if dropped is not None and now is not None and dropped == now:
                schema = ""
        elif first == "set" and _word(statement, 1) != "statement":
            for item in set_assignments(statement, backslash_escapes=backslash_escapes):
                if not item.tracked:
                    continue
                if not item.resolved:
                    unresolved.add(item.name)
                    variables.pop(item.name, None)
                    continue
                value = None if item.value is None else _normalised(item.name, item.value)
                if item.value is not None and value is None:
                    unresolved.add(item.name)  # not a value the server accepts: it decides
                    variables.pop(item.name, None)
                    continue
                unresolved.discard(item.name)
                variables[item.name] = value
    return TrackedChange(variables, schema, frozenset(unresolved))


def reported_changes(session_state: bytes) -> TrackedChange:
    """The tracked change in an OK packet's session-state block: its ``SESSION_TRACK_SCHEMA`` entry
    and the ``SESSION_TRACK_SYSTEM_VARIABLES`` entries of tracked variables (others are ignored).
    Raises :class:`~reference_proxy.protocol.mysql.errors.ProtocolViolation` on a malformed block."""
    variables: dict[str, str | None] = {}
    schema: str | None = None
    block = PayloadReader(session_state, "session state block")
    while block.remaining():
        kind = block.u8()
        data = PayloadReader(block.lenenc_bytes(), "session state entry")
        if kind == SESSION_TRACK_SYSTEM_VARIABLES:
            while data.remaining():
                name = canonical_name(data.lenenc_text())
                value = data.lenenc_text()
                if name in TRACKED_VARIABLES:
                    variables[name] = _normalised(name, value) or value
        elif kind == SESSION_TRACK_SCHEMA:
            schema = data.lenenc_text()
    return TrackedChange(variables, schema)


def apply_change(settings: Mapping[str, str], change: TrackedChange) -> dict[str, str]:
    """``settings`` (tracked name → value) after ``change``; a None value removes the name."""
    out = dict(settings)
    for name, value in change.variables.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def pool_variant(settings: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The pool key's variant for a session's tracked settings: ``(name, value)`` pairs sorted by name."""
    return tuple(sorted(settings.items()))


def canonical_name(name: str) -> str:
    """A system variable's server name: lower-cased, older aliases replaced."""
    low = name.lower()
    return VARIABLE_ALIASES.get(low, low)


def set_assignments(tokens: list[Token], *, backslash_escapes: bool = True) -> list[Assignment]:
    """What the ``SET`` statement ``tokens`` (its first token is ``SET``) assigns, in order.

    ``SET NAMES`` and ``SET CHARACTER SET`` come out as the system variables they set; ``SET
    [SESSION] TRANSACTION`` as ``transaction_isolation`` / ``transaction_read_only``.  A scope
    keyword holds for the assignments after it, as in MySQL.
    """
    out: list[Assignment] = []
    scope = "session"
    groups = _comma_groups(tokens[1:])
    for index, group in enumerate(groups):
        if not group:
            out.append(Assignment("unknown"))
            continue
        explicit_scope = None
        word = _word(group, 0)
        if word in _SCOPES and len(group) > 1 and group[1].kind is not TokenKind.OPERATOR:
            scope = explicit_scope = _SCOPES[word]
            group = group[1:]
            word = _word(group, 0)
        if word == "transaction":
            characteristics = [group[1:], *groups[index + 1:]]
            tx_scope = explicit_scope or "next_transaction"
            out.extend(_transaction(characteristics, tx_scope))
            break
        if word == "names":
            out.extend(_names(group[1:], scope, backslash_escapes))
        elif word == "charset" or (word == "character" and _word(group, 1) == "set"):
            out.extend(_character_set(group[2 if word == "character" else 1:], scope, backslash_escapes))
        elif word == "password":
            out.append(Assignment("password", scope=scope))
            break
        elif word == "role":
            out.append(Assignment("role", scope=scope))
            break
        elif word == "default" and _word(group, 1) == "role":
            out.append(Assignment("default_role", scope="global"))
            break
        else:
            out.extend(_assignment(group, scope, backslash_escapes))
    return out


def _assignment(group: list[Token], scope: str, backslash_escapes: bool) -> list[Assignment]:
    target = group[0]
    i = 1
    if target.kind is TokenKind.USER_VAR:
        kind, name = "user", target.value
    elif target.kind is TokenKind.SYSTEM_VAR:
        kind = "system"
        qualifier, _, rest = target.value.partition(".")
        if rest and qualifier in _SCOPES:
            scope, name = _SCOPES[qualifier], rest
        else:
            scope, name = "session", target.value
    elif target.kind in (TokenKind.WORD, TokenKind.QUOTED_IDENT):
        kind, name = "system", target.value
        while i + 1 < len(group) and group[i].text == "." and _is_name(group[i + 1]):
            name = f"{name}.{group[i + 1].value}"  # component variables: validate_password.length
            i += 2
    else:
        return [Assignment("unknown", scope=scope)]
    if i >= len(group) or group[i].text not in ("=", ":="):
        return [Assignment("unknown", scope=scope)]
    name = canonical_name(name) if kind == "system" else name
    value, resolved = _literal(group[i + 1:], backslash_escapes)
    item = Assignment(kind, name, scope, value, resolved)
    partner = _PAIRED.get(name)
    if kind == "system" and partner is not None:
        return [item, Assignment("system", partner, scope, None)]
    return [item]


def _names(rest: list[Token], scope: str, backslash_escapes: bool) -> list[Assignment]:
    """``SET NAMES charset [COLLATE collation]`` or ``SET NAMES DEFAULT``."""
    collate = next((i for i, t in enumerate(rest) if t.kind is TokenKind.WORD and t.value == "collate"), None)
    charset, resolved = _literal(rest if collate is None else rest[:collate], backslash_escapes)
    collation, collation_resolved = (None, True) if collate is None else \
        _literal(rest[collate + 1:], backslash_escapes)
    out = [Assignment("system", name, scope, charset, resolved)
           for name in ("character_set_client", "character_set_connection", "character_set_results")]
    out.append(Assignment("system", "collation_connection", scope,
                          collation if charset is not None else None, resolved and collation_resolved))
    return out


def _character_set(rest: list[Token], scope: str, backslash_escapes: bool) -> list[Assignment]:
    """``SET CHARACTER SET x``: client and results take ``x``; the connection's character set and
    collation go back to the database's (taken here as a reset session's)."""
    charset, resolved = _literal(rest, backslash_escapes)
    return [Assignment("system", "character_set_client", scope, charset, resolved),
            Assignment("system", "character_set_results", scope, charset, resolved),
            Assignment("system", "character_set_connection", scope, None),
            Assignment("system", "collation_connection", scope, None)]


def _transaction(characteristics: list[list[Token]], scope: str) -> list[Assignment]:
    if scope == "next_transaction":
        return [Assignment("transaction", scope=scope)]
    out: list[Assignment] = []
    for group in characteristics:
        words = [t.value if t.kind is TokenKind.WORD else "?" for t in group]
        if words[:2] == ["isolation", "level"]:
            level = "-".join(words[2:]).upper()
            out.append(Assignment("system", "transaction_isolation", scope, level, level in _ISOLATION_LEVELS))
        elif words == ["read", "only"]:
            out.append(Assignment("system", "transaction_read_only", scope, "ON"))
        elif words == ["read", "write"]:
            out.append(Assignment("system", "transaction_read_only", scope, "OFF"))
        else:
            out.append(Assignment("unknown", scope=scope))
    return out


def _literal(tokens: list[Token], backslash_escapes: bool) -> tuple[str | None, bool]:
    """(value, resolved) of a value expression: a string, number, bare word or ``DEFAULT``."""
    if len(tokens) == 2 and tokens[0].text in ("-", "+") and tokens[1].kind is TokenKind.NUMBER:
        return tokens[0].text.replace("+", "") + tokens[1].text, True
    if len(tokens) != 1:
        return None, False
    token = tokens[0]
    if token.kind is TokenKind.WORD:
        return (None, True) if token.value == "default" else (token.text, True)
    if token.kind is TokenKind.QUOTED_IDENT:
        return token.value, True
    if token.kind is TokenKind.NUMBER:
        return token.text, True
    if token.kind is TokenKind.STRING and token.text[:1] in ("'", '"'):
        return _unquote_string(token.text, backslash_escapes), True
    return None, False


def _unquote_string(text: str, backslash_escapes: bool) -> str:
    quote = text[0]
    body = text[1:-1] if len(text) >= 2 and text.endswith(quote) else text[1:]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if backslash_escapes and ch == "\\" and i + 1 < len(body):
            out.append(_BACKSLASH_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        elif ch == quote and body.startswith(quote * 2, i):
            out.append(quote)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _normalised(name: str, value: str) -> str | None:
    """``value`` in the form the pool keys on, or None when it is not a valid value of ``name``."""
    low = value.strip().lower()
    if name in _BOOLEAN:
        return "ON" if low in _TRUE else "OFF" if low in _FALSE else None
    if name in _INTEGER:
        return str(int(low)) if _INTEGER_TEXT.match(low) else None
    if name == "query_cache_type":
        return _QUERY_CACHE_TYPES.get(low)
    if name == "transaction_isolation":
        level = low.upper().replace(" ", "-")
        return level if level in _ISOLATION_LEVELS else None
    if name == "sql_mode":
        modes = sorted({mode.strip().upper() for mode in value.split(",") if mode.strip()})
        return ",".join(modes)
    if name == "time_zone":
        if low == "system":
            return "SYSTEM"
        offset = _TIME_OFFSET.match(low)
        if offset:
            sign, hours, minutes = offset.groups()
            return f"{sign}{int(hours):02d}:{minutes}"
        return value.strip()
    if name.startswith(("character_set_", "collation_")):
        return low or None
    return value


def _comma_groups(tokens: list[Token]) -> list[list[Token]]:
    groups: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        if token.text == "," and token.kind is TokenKind.PUNCT and depth == 0:
            groups.append([])
        else:
            groups[-1].append(token)
    return groups


def _word(tokens: list[Token], i: int) -> str | None:
    if 0 <= i < len(tokens) and tokens[i].kind is TokenKind.WORD:
        return tokens[i].value
    return None


def _is_name(token: Token) -> bool:
    return token.kind in (TokenKind.WORD, TokenKind.QUOTED_IDENT)


def _name(token: Token) -> str:
    """An identifier as the server stores it: unquoted, case kept (schema names are case-sensitive)."""
    return token.text if token.kind is TokenKind.WORD else token.value


def merge_changes(changes: Iterable[TrackedChange]) -> TrackedChange:
    """Several changes in the order they happened as one (a statement's, then the server's report)."""
    variables: dict[str, str | None] = {}
    schema: str | None = None
    unresolved: set[str] = set()
    for change in changes:
        variables.update(change.variables)
        unresolved.difference_update(change.variables)
        unresolved.update(change.unresolved)
        if change.schema is not None:
            schema = change.schema
    return TrackedChange(variables, schema, frozenset(unresolved))
