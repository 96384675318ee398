"""Client commands: the first payload byte names the command; each command starts a new sequence
(its packet has sequence id 0).

The proxy reads commands to route and pin (COM_QUERY's SQL, prepared-statement ids to remap) and
writes a few of its own toward backends (COM_RESET_CONNECTION before reuse, COM_PING to probe).
Commands this module does not model decode as :class:`OtherCommand`, so the caller decides whether to
refuse them rather than the codec failing the connection.

COM_QUERY is read without CLIENT_QUERY_ATTRIBUTES, which the proxy never offers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Self

from reference_proxy.protocol.mysql.binary import ExecuteParameters
from reference_proxy.protocol.mysql.errors import ProtocolViolation
from reference_proxy.protocol.mysql.flags import Capability
from reference_proxy.protocol.mysql.wire import (
    PayloadReader,
    encode_text,
    fixed_int,
    lenenc_bytes,
    lenenc_int,
    nul_string,
    text,
)

__all__ = [
    "CURSOR_TYPE_NO_CURSOR",
    "LAST_PREPARED_STATEMENT",
    "ClientCommand",
    "ComChangeUser",
    "ComFieldList",
    "ComInitDb",
    "ComPing",
    "ComQuery",
    "ComQuit",
    "ComResetConnection",
    "ComSetOption",
    "ComStmtClose",
    "ComStmtExecute",
    "ComStmtFetch",
    "ComStmtPrepare",
    "ComStmtReset",
    "ComStmtSendLongData",
    "Command",
    "OtherCommand",
    "SetOption",
    "decode_command",
]

CURSOR_TYPE_NO_CURSOR = 0x00
LAST_PREPARED_STATEMENT = 0xFFFFFFFF
"""A statement id MariaDB reads as "the statement prepared last" on this connection."""


class Command(enum.IntEnum):
    """Command bytes."""

    SLEEP = 0x00
    QUIT = 0x01
    INIT_DB = 0x02
    QUERY = 0x03
    FIELD_LIST = 0x04
    STATISTICS = 0x09
    PROCESS_KILL = 0x0C
    PING = 0x0E
    CHANGE_USER = 0x11
    STMT_PREPARE = 0x16
    STMT_EXECUTE = 0x17
    STMT_SEND_LONG_DATA = 0x18
    STMT_CLOSE = 0x19
    STMT_RESET = 0x1A
    SET_OPTION = 0x1B
    STMT_FETCH = 0x1C
    RESET_CONNECTION = 0x1F


class SetOption(enum.IntEnum):
    """COM_SET_OPTION's argument."""

    MULTI_STATEMENTS_ON = 0
    MULTI_STATEMENTS_OFF = 1


def _reader(payload: bytes, command: Command) -> PayloadReader:
    r = PayloadReader(payload, f"COM_{command.name}")
    if r.u8() != command:
        raise ProtocolViolation(f"COM_{command.name}: command byte is not {command:#04x}")
    return r


def _no_arguments(payload: bytes, command: Command) -> None:
    _reader(payload, command).end()


@dataclass(frozen=True)
class ComQuit:
    """Client: I am closing the connection (no reply)."""

    COMMAND: ClassVar[Command] = Command.QUIT

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComQuit:
        _no_arguments(payload, cls.COMMAND)
        return cls()

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,))


@dataclass(frozen=True)
class ComPing:
    """Client: are you alive? (OK)"""

    COMMAND: ClassVar[Command] = Command.PING

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComPing:
        _no_arguments(payload, cls.COMMAND)
        return cls()

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,))


@dataclass(frozen=True)
class ComResetConnection:
    """Client: drop all session state but keep the login and schema (OK)."""

    COMMAND: ClassVar[Command] = Command.RESET_CONNECTION

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComResetConnection:
        _no_arguments(payload, cls.COMMAND)
        return cls()

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,))


@dataclass(frozen=True)
class ComQuery:
    """Client: run this SQL text with the text protocol.  ``query`` is the raw bytes, in the client's
    character set; :attr:`sql` reads it as UTF-8, keeping undecodable bytes as surrogate escapes."""

    COMMAND: ClassVar[Command] = Command.QUERY
    query: bytes

    @property
    def sql(self) -> str:
        return text(self.query)

    @classmethod
    def from_sql(cls, sql: str) -> ComQuery:
        return cls(encode_text(sql))

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComQuery:
        return cls(_reader(payload, cls.COMMAND).rest())

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,)) + self.query


@dataclass(frozen=True)
class ComInitDb:
    """Client: make this the default schema (like USE)."""

    COMMAND: ClassVar[Command] = Command.INIT_DB
    schema: str

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComInitDb:
        return cls(text(_reader(payload, cls.COMMAND).rest()))

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,)) + encode_text(self.schema)


@dataclass(frozen=True)
class ComFieldList:
    """Client: describe the columns of a table (deprecated; replies column definitions then EOF)."""

    COMMAND: ClassVar[Command] = Command.FIELD_LIST
    table: str
    wildcard: str = ""

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComFieldList:
        r = _reader(payload, cls.COMMAND)
        return cls(r.nul_text(), text(r.rest()))

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,)) + nul_string(self.table) + encode_text(self.wildcard)


@dataclass(frozen=True)
class ComSetOption:
    """Client: switch multi-statement support on or off (EOF, or OK under DEPRECATE_EOF)."""

    COMMAND: ClassVar[Command] = Command.SET_OPTION
    option: int

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComSetOption:
        r = _reader(payload, cls.COMMAND)
        option = r.u16()
        r.end()
        return cls(option)

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,)) + fixed_int(self.option, 2)


@dataclass(frozen=True)
class ComChangeUser:
    """Client: log in again as another user on this connection; the server resets the session,
    then answers with an auth exchange (MariaDB always starts it with an AuthSwitchRequest)."""

    COMMAND: ClassVar[Command] = Command.CHANGE_USER
    username: str
    auth_response: bytes = b""
    schema: str = ""
    character_set: int | None = None
    auth_plugin_name: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComChangeUser:
        r = _reader(payload, cls.COMMAND)
        username = r.nul_text()
        auth = r.raw(r.u8()) if capabilities & Capability.SECURE_CONNECTION else r.nul_bytes()
        schema = r.nul_text()
        charset = plugin = None
        attributes: list[tuple[str, str]] = []
        if r.remaining():
            charset = r.u16()
            if capabilities & Capability.PLUGIN_AUTH and r.remaining():
                plugin = r.nul_text()
            if capabilities & Capability.CONNECT_ATTRS and r.remaining():
                block = PayloadReader(r.lenenc_bytes(), "COM_CHANGE_USER attributes")
                while block.remaining():
                    attributes.append((block.lenenc_text(), block.lenenc_text()))
        r.end()
        return cls(username, auth, schema, charset, plugin, tuple(attributes))

    def encode(self, capabilities: int = 0) -> bytes:
        out = bytes((self.COMMAND,)) + nul_string(self.username)
        if capabilities & Capability.SECURE_CONNECTION:
            out += fixed_int(len(self.auth_response), 1) + self.auth_response
        else:
            out += nul_string(self.auth_response)
        out += nul_string(self.schema)
        if self.character_set is None:
            return out
        out += fixed_int(self.character_set, 2)
        if capabilities & Capability.PLUGIN_AUTH and self.auth_plugin_name is not None:
            out += nul_string(self.auth_plugin_name)
        if capabilities & Capability.CONNECT_ATTRS and self.attributes:
            block = b"".join(lenenc_bytes(k) + lenenc_bytes(v) for k, v in self.attributes)
            out += lenenc_int(len(block)) + block
        return out


@dataclass(frozen=True)
class ComStmtPrepare:
    """Client: prepare this SQL for the binary protocol."""

    COMMAND: ClassVar[Command] = Command.STMT_PREPARE
    query: bytes

    @property
    def sql(self) -> str:
        return text(self.query)

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComStmtPrepare:
        return cls(_reader(payload, cls.COMMAND).rest())

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,)) + self.query


@dataclass(frozen=True)
class ComStmtExecute:
    """Client: run a prepared statement.  The parameter block is kept raw, because reading it needs
    the statement's parameter count (and maybe its previous types): see :meth:`parameters`."""

    COMMAND: ClassVar[Command] = Command.STMT_EXECUTE
    statement_id: int
    flags: int = CURSOR_TYPE_NO_CURSOR
    iteration_count: int = 1
    parameter_block: bytes = b""

    def parameters(self, count: int,
                   previous_types: tuple[tuple[int, bool], ...] | None = None) -> ExecuteParameters:
        return ExecuteParameters.decode(self.parameter_block, count, previous_types)

    def with_statement_id(self, statement_id: int) -> ComStmtExecute:
        """The same execution aimed at another id (the proxy remaps ids per backend)."""
        return ComStmtExecute(statement_id, self.flags, self.iteration_count, self.parameter_block)

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComStmtExecute:
        r = _reader(payload, cls.COMMAND)
        return cls(r.u32(), r.u8(), r.u32(), r.rest())

    def encode(self, capabilities: int = 0) -> bytes:
        return (bytes((self.COMMAND,)) + fixed_int(self.statement_id, 4) + fixed_int(self.flags, 1)
                + fixed_int(self.iteration_count, 4) + self.parameter_block)


@dataclass(frozen=True)
class ComStmtSendLongData:
    """Client: append data to one parameter before execution (no reply)."""

    COMMAND: ClassVar[Command] = Command.STMT_SEND_LONG_DATA
    statement_id: int
    parameter_id: int
    data: bytes

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComStmtSendLongData:
        r = _reader(payload, cls.COMMAND)
        return cls(r.u32(), r.u16(), r.rest())

    def encode(self, capabilities: int = 0) -> bytes:
        return (bytes((self.COMMAND,)) + fixed_int(self.statement_id, 4) + fixed_int(self.parameter_id, 2)
                + self.data)


@dataclass(frozen=True)
class _StatementIdCommand:
    COMMAND: ClassVar[Command]
    statement_id: int

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> Self:
        r = _reader(payload, cls.COMMAND)
        statement_id = r.u32()
        r.end()
        return cls(statement_id)

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,)) + fixed_int(self.statement_id, 4)


@dataclass(frozen=True)
class ComStmtClose(_StatementIdCommand):
    """Client: forget a prepared statement (no reply, even for an unknown id)."""

    COMMAND: ClassVar[Command] = Command.STMT_CLOSE


@dataclass(frozen=True)
class ComStmtReset(_StatementIdCommand):
    """Client: discard long data and an open cursor of a prepared statement (OK)."""

    COMMAND: ClassVar[Command] = Command.STMT_RESET


@dataclass(frozen=True)
class ComStmtFetch:
    """Client: fetch rows from a statement's open cursor."""

    COMMAND: ClassVar[Command] = Command.STMT_FETCH
    statement_id: int
    num_rows: int

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> ComStmtFetch:
        r = _reader(payload, cls.COMMAND)
        out = cls(r.u32(), r.u32())
        r.end()
        return out

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.COMMAND,)) + fixed_int(self.statement_id, 4) + fixed_int(self.num_rows, 4)


@dataclass(frozen=True)
class OtherCommand:
    """Client: a command this codec does not model, kept raw for the caller to refuse or forward."""

    command: int
    body: bytes = b""

    def encode(self, capabilities: int = 0) -> bytes:
        return bytes((self.command,)) + self.body


ClientCommand = (ComQuit | ComPing | ComResetConnection | ComQuery | ComInitDb | ComFieldList | ComSetOption
                 | ComChangeUser | ComStmtPrepare | ComStmtExecute | ComStmtSendLongData | ComStmtClose
                 | ComStmtReset | ComStmtFetch | OtherCommand)
"""Anything :func:`decode_command` returns."""

_COMMANDS: dict[int, type[ClientCommand]] = {c.COMMAND: c for c in (
    ComQuit, ComPing, ComResetConnection, ComQuery, ComInitDb, ComFieldList, ComSetOption, ComChangeUser,
    ComStmtPrepare, ComStmtExecute, ComStmtSendLongData, ComStmtClose, ComStmtReset, ComStmtFetch)}


def decode_command(payload: bytes, capabilities: int = 0) -> ClientCommand:
    """Decode one command packet's payload; an unmodelled command byte gives :class:`OtherCommand`."""
    if not payload:
        raise ProtocolViolation("empty command packet")
    cls = _COMMANDS.get(payload[0])
    if cls is None:
        return OtherCommand(payload[0], bytes(payload[1:]))
    return cls.decode(payload, capabilities)
