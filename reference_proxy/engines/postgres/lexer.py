"""A small lexer for PostgreSQL SQL text: just enough to find keywords and calls reliably.

The pin classifier must never be fooled by a keyword that sits inside a string literal, a quoted
identifier, a dollar-quoted body or a comment, so it works on tokens rather than on raw text.  This
lexer follows PostgreSQL's own lexical rules where they matter for that:

* ``'...'`` strings with ``''`` escapes (``standard_conforming_strings`` on, the default since 9.1),
  ``E'...'`` strings where a backslash escapes the next character, ``B'..'``, ``X'..'``, ``N'..'``
  and ``U&'..'`` prefixes;
* ``"..."`` quoted identifiers with ``""`` escapes (also ``U&"..."``);
* dollar quoting ``$tag$ ... $tag$`` (``$1`` is a parameter, and ``$`` inside an identifier is part
  of it);
* ``--`` line comments and ``/* */`` block comments, which nest in PostgreSQL.

Unterminated strings and comments run to the end of the text; the lexer never raises.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from reference_proxy.pinning import end_of_quoted


class TokenKind(enum.Enum):
    WORD = "word"                  # keyword or unquoted identifier; ``value`` is lower-cased
    QUOTED_IDENT = "quoted_ident"  # "Name"; ``value`` is the name, unescaped, case kept
    STRING = "string"              # any string literal, dollar-quoted bodies included
    NUMBER = "number"
    PARAM = "param"                # $1
    OPERATOR = "operator"          # + - * / < > = ~ ! @ # % ^ & | ` ? and runs of them, ::
    PUNCT = "punct"                # ( ) [ ] , . : 
    SEMICOLON = "semicolon"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str   # exactly as written
    value: str  # normalised: lower-cased word, unescaped quoted identifier, else the text


_IDENT_START = re.compile(r"[A-Za-z_\u0080-\U0010ffff]")
_IDENT_REST = re.compile(r"[A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+"
                     r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?")
_PARAM = re.compile(r"\$\d+")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_WHITESPACE = re.compile(r"\s+")
_OPERATOR_CHARS = set("+-*/<>=~!@#%^&|`?")
_PUNCT_CHARS = set("()[],.:")
_STRING_PREFIXES = {"e", "b", "x", "n"}


def tokenize(sql: str) -> list[Token]:
    """Split SQL text into tokens, dropping whitespace and comments."""
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            m = _WHITESPACE.match(sql, i)
            i = m.end() if m else i + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif ch == "'":
            end = end_of_quoted(sql, i, "'", backslash=False)
            tokens.append(Token(TokenKind.STRING, sql[i:end], sql[i:end]))
            i = end
        elif ch == '"':
            end = end_of_quoted(sql, i, '"', backslash=False)
            text = sql[i:end]
            tokens.append(Token(TokenKind.QUOTED_IDENT, text, _unquote_ident(text)))
            i = end
        elif ch == "$":
            i = _dollar(sql, i, tokens)
        elif ch.isdigit() or (ch == "." and i + 1 < n and sql[i + 1].isdigit()):
            m = _NUMBER.match(sql, i)
            end = m.end() if m and m.end() > i else i + 1
            tokens.append(Token(TokenKind.NUMBER, sql[i:end], sql[i:end]))
            i = end
        elif _IDENT_START.match(ch):
            i = _word(sql, i, tokens)
        elif ch == ";":
            tokens.append(Token(TokenKind.SEMICOLON, ";", ";"))
            i += 1
        elif ch == ":" and sql.startswith("::", i):
            tokens.append(Token(TokenKind.OPERATOR, "::", "::"))
            i += 2
        elif ch in _PUNCT_CHARS:
            tokens.append(Token(TokenKind.PUNCT, ch, ch))
            i += 1
        elif ch in _OPERATOR_CHARS:
            end = i + 1
            while (end < n and sql[end] in _OPERATOR_CHARS
                   and not sql.startswith("--", end) and not sql.startswith("/*", end)):
                end += 1
            tokens.append(Token(TokenKind.OPERATOR, sql[i:end], sql[i:end]))
            i = end
        else:  # anything else (stray backslash, control characters): one opaque character
            tokens.append(Token(TokenKind.OPERATOR, ch, ch))
            i += 1
    return tokens


def split_statements(tokens: list[Token]) -> list[list[Token]]:
    """Group tokens into statements at top-level semicolons; empty statements are dropped."""
    statements: list[list[Token]] = []
    current: list[Token] = []
    for token in tokens:
        if token.kind is TokenKind.SEMICOLON:
            if current:
                statements.append(current)
            current = []
        else:
            current.append(token)
    if current:
        statements.append(current)
    return statements


def _skip_block_comment(sql: str, i: int) -> int:
    depth, n = 0, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _unquote_ident(text: str) -> str:
    body = text[1:-1] if len(text) >= 2 and text.endswith('"') else text[1:]
    return body.replace('""', '"')


def _dollar(sql: str, i: int, tokens: list[Token]) -> int:
    param = _PARAM.match(sql, i)
    if param:
        tokens.append(Token(TokenKind.PARAM, param.group(), param.group()))
        return param.end()
    tag = _DOLLAR_TAG.match(sql, i)
    if tag:
        close = sql.find(tag.group(), tag.end())
        end = len(sql) if close < 0 else close + len(tag.group())
        tokens.append(Token(TokenKind.STRING, sql[i:end], sql[i:end]))
        return end
    tokens.append(Token(TokenKind.OPERATOR, "$", "$"))
    return i + 1


def _word(sql: str, i: int, tokens: list[Token]) -> int:
    m = _IDENT_REST.match(sql, i + 1)
    end = m.end() if m else i + 1
    word = sql[i:end]
    low = word.lower()
    n = len(sql)
    if low in _STRING_PREFIXES and end < n and sql[end] == "'":
        close = end_of_quoted(sql, end, "'", backslash=low == "e")
        tokens.append(Token(TokenKind.STRING, sql[i:close], sql[i:close]))
        return close
    if low == "u" and sql.startswith("&'", end):
        close = end_of_quoted(sql, end + 1, "'", backslash=False)
        tokens.append(Token(TokenKind.STRING, sql[i:close], sql[i:close]))
        return close
    if low == "u" and sql.startswith('&"', end):
        close = end_of_quoted(sql, end + 1, '"', backslash=False)
        text = sql[i:close]
        tokens.append(Token(TokenKind.QUOTED_IDENT, text, _unquote_ident(text[2:])))
        return close
    tokens.append(Token(TokenKind.WORD, word, low))
    return end
