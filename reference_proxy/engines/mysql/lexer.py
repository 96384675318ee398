"""A small lexer for MySQL SQL text: just enough to find keywords, variables and calls reliably.

The pin classifier and the tracked-settings reader must never be fooled by a keyword inside a
string literal, a quoted identifier or a comment, so they work on tokens rather than raw text.
This lexer follows MySQL's (and MariaDB's) lexical rules where they matter for that:

* ``'...'`` strings, and ``"..."`` strings too unless the session runs with ``ANSI_QUOTES`` (then
  ``"..."`` quotes an identifier); a doubled quote escapes the quote, and a backslash escapes the
  next character unless ``NO_BACKSLASH_ESCAPES`` is on; ``X'..'``, ``B'..'`` and ``N'..'``;
* ```...``` quoted identifiers with doubled backticks;
* ``#`` and ``-- `` line comments (``--`` starts a comment only before whitespace, a control
  character or the end: ``1--1`` is one minus minus one), and ``/* */`` block comments, which do
  not nest;
* executable comments ``/*! ... */``, ``/*!80000 ... */`` and MariaDB's ``/*M! ... */``: the
  server runs their body as SQL, so the body is lexed as SQL, between an
  :attr:`TokenKind.EXECUTABLE_COMMENT` token (the opening, version included) and the ``*/`` that
  closes it, which yields no token.  Optimizer hints ``/*+ ... */`` are plain comments here;
* user variables ``@x``, ``@'x'``, ``@"x"``, ```@`x```` and system variables ``@@x``,
  ``@@session.x``, ``@@global.x``; ``?`` placeholders; ``:=`` and the other multi-character
  operators.

Unterminated strings and comments run to the end of the text; the lexer never raises.

Two of those rules depend on the session's ``sql_mode``; :func:`lexing_options` reads them from
the mode or from the status flags the server sends with every OK packet.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from reference_proxy.pinning import end_of_quoted
from reference_proxy.protocol.mysql.flags import ServerStatus

__all__ = ["Token", "TokenKind", "lexing_options", "split_statements", "tokenize"]


class TokenKind(enum.Enum):
    WORD = "word"                  # keyword or unquoted identifier; ``value`` is lower-cased
    QUOTED_IDENT = "quoted_ident"  # `Name` (or "Name" under ANSI_QUOTES); ``value`` unescaped, case kept
    STRING = "string"              # any string literal, X'..', B'..', N'..' included
    NUMBER = "number"              # 12, 1.5e3, 0x1F, 0b101
    PARAM = "param"                # ? placeholder
    USER_VAR = "user_var"          # @x; ``value`` is the name, lower-cased (user variables ignore case)
    SYSTEM_VAR = "system_var"      # @@x, @@session.x; ``value`` is lower-cased, without the @@
    OPERATOR = "operator"
    PUNCT = "punct"                # ( ) , . { }
    SEMICOLON = "semicolon"
    EXECUTABLE_COMMENT = "executable_comment"  # the opening of /*! ... */; ``value`` is its version


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str   # exactly as written
    value: str  # normalised: lower-cased word or variable name, unescaped quoted identifier, else the text


_IDENT_CHARS = re.compile(r"[A-Za-z0-9_$\u0080-\U0010ffff]+")
_USER_VAR_NAME = re.compile(r"[A-Za-z0-9_$.\u0080-\U0010ffff]+")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|0[bB][01]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WHITESPACE = re.compile(r"\s+")
_EXECUTABLE_OPENING = re.compile(r"/\*[mM]?!\d*")
_VARIABLE_SCOPES = ("global", "session", "local", "persist", "persist_only")
_OPERATORS = ("<=>", "->>", ":=", "<=", ">=", "<>", "!=", "<<", ">>", "&&", "||", "->")
_OPERATOR_CHARS = set("+-*/<>=~!%^&|:")
_PUNCT_CHARS = set("(),.{}")
_STRING_PREFIXES = {"x", "b", "n"}
_ANSI_QUOTES_MODES = {"ANSI_QUOTES", "ANSI", "DB2", "MAXDB", "MSSQL", "ORACLE", "POSTGRESQL"}
"""sql_mode values that turn ANSI_QUOTES on (the combination modes include it)."""


def tokenize(sql: str, *, ansi_quotes: bool = False, backslash_escapes: bool = True) -> list[Token]:
    """Split SQL text into tokens, dropping whitespace and comments (but not executable comments).

    ``ansi_quotes``: the session's sql_mode has ANSI_QUOTES, so ``"..."`` is an identifier.
    ``backslash_escapes``: false when sql_mode has NO_BACKSLASH_ESCAPES.
    """
    return _Lexer(sql, ansi_quotes, backslash_escapes).run()


def lexing_options(*, sql_mode: str | None = None, status_flags: int | None = None) -> dict[str, bool]:
    """The :func:`tokenize` keywords for a session's ``sql_mode`` and/or last server status.

    The status flags are the server's word: NO_BACKSLASH_ESCAPES (both servers) and ANSI_QUOTES
    (MariaDB only, so a MySQL server's status cannot say that ANSI_QUOTES is off).
    """
    modes = {mode.strip().upper() for mode in (sql_mode or "").split(",")}
    ansi_quotes = bool(modes & _ANSI_QUOTES_MODES)
    backslash_escapes = "NO_BACKSLASH_ESCAPES" not in modes
    if status_flags is not None:
        ansi_quotes = ansi_quotes or bool(status_flags & ServerStatus.ANSI_QUOTES)
        backslash_escapes = not status_flags & ServerStatus.NO_BACKSLASH_ESCAPES
    return {"ansi_quotes": ansi_quotes, "backslash_escapes": backslash_escapes}


def split_statements(tokens: list[Token]) -> list[list[Token]]:
    """Group tokens into statements at semicolons; empty statements and executable-comment openings
    are dropped (a statement's own tokens are all that the classifiers read)."""
    statements: list[list[Token]] = []
    current: list[Token] = []
    for token in tokens:
        if token.kind is TokenKind.SEMICOLON:
            if current:
                statements.append(current)
            current = []
        elif token.kind is not TokenKind.EXECUTABLE_COMMENT:
            current.append(token)
    if current:
        statements.append(current)
    return statements


class _Lexer:
    __slots__ = ("ansi_quotes", "backslash", "in_executable", "n", "sql", "tokens")

    def __init__(self, sql: str, ansi_quotes: bool, backslash: bool) -> None:
        self.sql = sql
        self.n = len(sql)
        self.ansi_quotes = ansi_quotes
        self.backslash = backslash
        self.in_executable = False
        self.tokens: list[Token] = []

    def add(self, kind: TokenKind, start: int, end: int, value: str | None = None) -> int:
        text = self.sql[start:end]
        self.tokens.append(Token(kind, text, text if value is None else value))
        return end

    def run(self) -> list[Token]:
        sql, n = self.sql, self.n
        i = 0
        while i < n:
            ch = sql[i]
            if ch.isspace():
                m = _WHITESPACE.match(sql, i)
                i = m.end() if m else i + 1
            elif ch == "#" or (sql.startswith("--", i) and (i + 2 == n or sql[i + 2].isspace()
                                                             or ord(sql[i + 2]) < 32)):
                end = sql.find("\n", i)
                i = n if end < 0 else end + 1
            elif sql.startswith("/*", i):
                i = self._comment(i)
            elif self.in_executable and sql.startswith("*/", i):
                self.in_executable = False
                i += 2
            elif ch == "'" or (ch == '"' and not self.ansi_quotes):
                i = self.add(TokenKind.STRING, i, end_of_quoted(self.sql, i, ch, backslash=self.backslash))
            elif ch == '"' or ch == "`":
                end = end_of_quoted(self.sql, i, ch, backslash=False)
                i = self.add(TokenKind.QUOTED_IDENT, i, end, _unquote(sql[i:end], ch))
            elif ch == "@":
                i = self._variable(i)
            elif ch.isdigit() or (ch == "." and i + 1 < n and sql[i + 1].isdigit()):
                i = self._number(i)
            elif _IDENT_CHARS.match(ch):
                i = self._word(i)
            elif ch == ";":
                i = self.add(TokenKind.SEMICOLON, i, i + 1)
            elif ch == "?":
                i = self.add(TokenKind.PARAM, i, i + 1)
            elif ch in _PUNCT_CHARS:
                i = self.add(TokenKind.PUNCT, i, i + 1)
            else:  # operators, and anything else (stray backslash, control characters) as one character
                end = i + 1
                for op in _OPERATORS:
                    if sql.startswith(op, i):
                        end = i + len(op)
                        break
                i = self.add(TokenKind.OPERATOR, i, end)
        return self.tokens

    def _comment(self, i: int) -> int:
        opening = _EXECUTABLE_OPENING.match(self.sql, i)
        if opening and not self.in_executable:
            self.in_executable = True
            version = opening.group().lstrip("/*mM!")
            return self.add(TokenKind.EXECUTABLE_COMMENT, i, opening.end(), version)
        end = self.sql.find("*/", i + 2)
        return self.n if end < 0 else end + 2

    def _variable(self, i: int) -> int:
        sql, n = self.sql, self.n
        if sql.startswith("@@", i):
            j = i + 2
            name = self._name_at(j)
            if name is None:
                return self.add(TokenKind.OPERATOR, i, j)
            value, j = name
            if value in _VARIABLE_SCOPES and j < n and sql[j] == ".":
                qualified = self._name_at(j + 1)
                if qualified is not None:
                    value, j = f"{value}.{qualified[0]}", qualified[1]
            return self.add(TokenKind.SYSTEM_VAR, i, j, value)
        j = i + 1
        if j < n and sql[j] in "'\"`":
            end = end_of_quoted(self.sql, j, sql[j], backslash=sql[j] != "`" and self.backslash)
            return self.add(TokenKind.USER_VAR, i, end, _unquote(sql[j:end], sql[j]).lower())
        m = _USER_VAR_NAME.match(sql, j)
        if not m:
            return self.add(TokenKind.OPERATOR, i, j)
        return self.add(TokenKind.USER_VAR, i, m.end(), m.group().lower())

    def _name_at(self, j: int) -> tuple[str, int] | None:
        """A plain or backquoted name at ``j``: (lower-cased name, index past it), or None."""
        if j < self.n and self.sql[j] == "`":
            end = end_of_quoted(self.sql, j, "`", backslash=False)
            return _unquote(self.sql[j:end], "`").lower(), end
        m = _IDENT_CHARS.match(self.sql, j)
        return (m.group().lower(), m.end()) if m else None

    def _number(self, i: int) -> int:
        m = _NUMBER.match(self.sql, i)
        end = m.end() if m and m.end() > i else i + 1
        rest = _IDENT_CHARS.match(self.sql, end)
        if rest and not self.sql[i:end].startswith(".") and "." not in self.sql[i:end]:
            # MySQL names may begin with digits (``1abc``): a word, not a number.
            return self.add(TokenKind.WORD, i, rest.end(), self.sql[i:rest.end()].lower())
        return self.add(TokenKind.NUMBER, i, end)

    def _word(self, i: int) -> int:
        sql, n = self.sql, self.n
        m = _IDENT_CHARS.match(sql, i)
        end = m.end() if m else i + 1
        low = sql[i:end].lower()
        if low in _STRING_PREFIXES and end < n and sql[end] == "'":
            close = end_of_quoted(self.sql, end, "'", backslash=low == "n" and self.backslash)
            return self.add(TokenKind.STRING, i, close)
        return self.add(TokenKind.WORD, i, end, low)


def _unquote(text: str, quote: str) -> str:
    body = text[1:-1] if len(text) >= 2 and text.endswith(quote) else text[1:]
    return body.replace(quote * 2, quote)
