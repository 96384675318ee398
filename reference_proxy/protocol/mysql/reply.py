"""Following a command's reply: which packet is which, when the reply is complete, and the server
status it ends with.

A pooling proxy may hand a backend to another client only between complete replies, and only when
the last status says no transaction is open and no further result follows.  MySQL has no
ReadyForQuery: the end of a reply is told by the command and the packet sequence (a result set ends
with its terminator, a multi-statement query with the first OK or terminator without
MORE_RESULTS_EXISTS, a COM_STMT_CLOSE has no reply at all).  :class:`ResponseTracker` follows those
rules over logical payloads; :class:`ResponseReader` feeds it from raw server bytes, joining
continuation packets and checking sequence ids.

ERR carries no status flags: after an error the last status seen still holds, and
:attr:`ResponseTracker.status_flags` stays None when the reply carried none (the caller keeps what
it knew).  A LOCAL INFILE request, an AuthSwitchRequest or an AuthMoreData needs the client to speak
before the server goes on: :attr:`ResponseTracker.awaiting_client` says so.
"""

from __future__ import annotations

import enum

from reference_proxy.protocol.mysql.auth import AuthMoreData, AuthSwitchRequest
from reference_proxy.protocol.mysql.binary import BinaryRow, StmtPrepareOk
from reference_proxy.protocol.mysql.commands import Command
from reference_proxy.protocol.mysql.errors import ProtocolViolation
from reference_proxy.protocol.mysql.flags import Capability, ServerStatus
from reference_proxy.protocol.mysql.framing import (
    DEFAULT_MAX_PAYLOAD,
    NEED_DATA,
    Packet,
    PacketReader,
    _NeedData,
)
from reference_proxy.protocol.mysql.responses import (
    EOF_HEADER,
    ERR_HEADER,
    LOCAL_INFILE_HEADER,
    OK_HEADER,
    EofPacket,
    ErrPacket,
    LocalInfileRequest,
    OkPacket,
    is_eof_packet,
    is_result_set_terminator,
)
from reference_proxy.protocol.mysql.resultset import ColumnCount, ColumnDefinition41, TextRow

__all__ = [
    "PacketRole",
    "ReplyShape",
    "ResponseReader",
    "ResponseTracker",
    "reply_shape",
]


class ReplyShape(enum.Enum):
    """What a command's reply looks like."""

    RESULTS = "results"        # COM_QUERY, COM_STMT_EXECUTE: OK | ERR | result sets, maybe several
    PREPARE = "prepare"        # COM_STMT_PREPARE: PREPARE_OK, parameter and column definitions
    FIELD_LIST = "field_list"  # COM_FIELD_LIST: column definitions, then a terminator
    ROWS = "rows"              # COM_STMT_FETCH: binary rows, then a terminator
    STATUS = "status"          # one OK / ERR (EOF for COM_SET_OPTION)
    AUTH = "auth"              # COM_CHANGE_USER: an auth exchange ending in OK / ERR
    TEXT = "text"              # COM_STATISTICS: one human-readable string packet
    NONE = "none"              # COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA: no reply


_SHAPES = {
    Command.QUERY: ReplyShape.RESULTS,
    Command.STMT_EXECUTE: ReplyShape.RESULTS,
    Command.STMT_PREPARE: ReplyShape.PREPARE,
    Command.FIELD_LIST: ReplyShape.FIELD_LIST,
    Command.STMT_FETCH: ReplyShape.ROWS,
    Command.CHANGE_USER: ReplyShape.AUTH,
    Command.STATISTICS: ReplyShape.TEXT,
    Command.QUIT: ReplyShape.NONE,
    Command.STMT_CLOSE: ReplyShape.NONE,
    Command.STMT_SEND_LONG_DATA: ReplyShape.NONE,
}


def reply_shape(command: int) -> ReplyShape:
    """The shape of the reply to ``command`` (a command byte); other commands answer OK or ERR."""
    return _SHAPES.get(command, ReplyShape.STATUS)  # type: ignore[call-overload]


class PacketRole(enum.Enum):
    """What one server packet was, within its reply."""

    OK = "ok"
    EOF = "eof"                            # a lone EOF reply (COM_SET_OPTION without DEPRECATE_EOF)
    ERR = "err"
    PROGRESS = "progress"                  # MariaDB progress report (an ERR with code 0xFFFF)
    LOCAL_INFILE = "local_infile"
    COLUMN_COUNT = "column_count"
    PREPARE_OK = "prepare_ok"
    PARAMETER_DEFINITION = "parameter_definition"
    COLUMN_DEFINITION = "column_definition"
    METADATA_EOF = "metadata_eof"          # the EOF after definitions (absent under DEPRECATE_EOF)
    ROW = "row"
    TERMINATOR = "terminator"              # end of rows: an EOF, or an OK with header 0xFE
    AUTH_SWITCH = "auth_switch"
    AUTH_MORE_DATA = "auth_more_data"
    TEXT = "text"                          # the string that answers COM_STATISTICS


class _State(enum.Enum):
    FIRST = enum.auto()
    PARAMETERS = enum.auto()
    PARAMETERS_EOF = enum.auto()
    COLUMNS = enum.auto()
    COLUMNS_EOF = enum.auto()
    ROWS = enum.auto()
    LOCAL_INFILE_DONE = enum.auto()
    DONE = enum.auto()


class ResponseTracker:
    """Classifies each server payload of one command's reply; see the module docstring.

    ``validate_rows=False`` skips decoding rows (the hot path forwards them unread); definitions and
    status packets are always decoded, since the state depends on them.
    """

    def __init__(self, command: int, capabilities: int, *, validate_rows: bool = True,
                 column_types: tuple[int, ...] | None = None) -> None:
        self.command = command
        self.shape = reply_shape(command)
        self.capabilities = capabilities
        self.validate_rows = validate_rows
        self.status_flags: int | None = None
        self.error: ErrPacket | None = None
        self.local_infile: LocalInfileRequest | None = None
        self.prepare_ok: StmtPrepareOk | None = None
        self.awaiting_client = False
        self.result_sets = 0
        self._deprecate_eof = bool(capabilities & Capability.DEPRECATE_EOF)
        self._binary = command in (Command.STMT_EXECUTE, Command.STMT_FETCH)
        self._columns_left = 0
        self._params_left = 0
        self._column_types: list[int] = list(column_types or ())
        self._state = _State.DONE if self.shape is ReplyShape.NONE else (
            _State.ROWS if self.shape is ReplyShape.ROWS else
            _State.COLUMNS if self.shape is ReplyShape.FIELD_LIST else _State.FIRST)

    @property
    def done(self) -> bool:
        """The reply is complete: the next server packet would belong to another command."""
        return self._state is _State.DONE

    @property
    def in_transaction(self) -> bool | None:
        """Whether the final status says a transaction is open (None: this reply carried no status)."""
        if self.status_flags is None:
            return None
        return bool(self.status_flags & ServerStatus.IN_TRANS)

    @property
    def column_types(self) -> tuple[int, ...]:
        """Types of the current (or last) result set's columns."""
        return tuple(self._column_types)

    def feed(self, payload: bytes) -> PacketRole:
        """Account for the next server payload; returns what it was. Raises ProtocolViolation."""
        if self._state is _State.DONE:
            raise ProtocolViolation(f"server sent a packet after the complete reply to command "
                                    f"{self.command:#04x}")
        if not payload:
            raise ProtocolViolation("server sent an empty packet")
        self.awaiting_client = False
        header = payload[0]
        if header == ERR_HEADER:
            err = ErrPacket.decode(payload, self.capabilities)
            if err.is_progress_report:
                return PacketRole.PROGRESS
            self.error = err
            self._state = _State.DONE
            return PacketRole.ERR
        state = self._state
        if self.shape is ReplyShape.TEXT:
            self._state = _State.DONE
            return PacketRole.TEXT
        if self.shape is ReplyShape.AUTH:
            return self._auth(payload)
        if state is _State.FIRST or state is _State.LOCAL_INFILE_DONE:
            return self._first(payload)
        if state is _State.PARAMETERS:
            ColumnDefinition41.decode(payload, self.capabilities)
            self._params_left -= 1
            if not self._params_left:
                self._state = _State.PARAMETERS_EOF if not self._deprecate_eof else self._after_parameters()
            return PacketRole.PARAMETER_DEFINITION
        if state is _State.PARAMETERS_EOF:
            self._metadata_eof(payload)
            self._state = self._after_parameters()
            return PacketRole.METADATA_EOF
        if state is _State.COLUMNS:
            if self.shape is ReplyShape.FIELD_LIST and is_result_set_terminator(payload, self.capabilities):
                return self._terminator(payload)
            column = ColumnDefinition41.decode(payload, self.capabilities)
            self._column_types.append(column.column_type)
            if self.shape is not ReplyShape.FIELD_LIST:
                self._columns_left -= 1
                if not self._columns_left:
                    self._state = self._after_columns()
            return PacketRole.COLUMN_DEFINITION
        if state is _State.COLUMNS_EOF:
            eof = self._metadata_eof(payload)
            if self.shape is ReplyShape.PREPARE:
                self._state = _State.DONE
            elif self._binary and eof.status_flags & ServerStatus.CURSOR_EXISTS:
                self._state = _State.DONE  # rows come later, through COM_STMT_FETCH
            else:
                self._state = _State.ROWS
            return PacketRole.METADATA_EOF
        # _State.ROWS
        if is_result_set_terminator(payload, self.capabilities):
            return self._terminator(payload)
        if self.validate_rows:
            if self._binary:
                if self._column_types:
                    BinaryRow.decode(payload, tuple(self._column_types))
                elif header != OK_HEADER:
                    raise ProtocolViolation(f"binary row: header {header:#04x} is not 0x00")
            else:
                TextRow.decode(payload, len(self._column_types))
        return PacketRole.ROW

    def _first(self, payload: bytes) -> PacketRole:
        header = payload[0]
        local_infile_done = self._state is _State.LOCAL_INFILE_DONE
        if self.shape is ReplyShape.PREPARE:
            self.prepare_ok = ok = StmtPrepareOk.decode(payload, self.capabilities)
            self._params_left, self._columns_left = ok.num_params, ok.num_columns
            self._state = _State.PARAMETERS if ok.num_params else self._after_parameters()
            return PacketRole.PREPARE_OK
        if header == OK_HEADER:
            self._status(OkPacket.decode(payload, self.capabilities).status_flags)
            return PacketRole.OK
        if self.shape is ReplyShape.STATUS:
            if header != EOF_HEADER:
                raise ProtocolViolation(f"unexpected reply packet starting {header:#04x}")
            if self._deprecate_eof:
                self._status(OkPacket.decode(payload, self.capabilities).status_flags)
                return PacketRole.OK
            self._status(EofPacket.decode(payload, self.capabilities).status_flags)
            return PacketRole.EOF
        if local_infile_done:
            raise ProtocolViolation(f"server answered LOCAL INFILE data with a packet starting {header:#04x}")
        if header == LOCAL_INFILE_HEADER and self.command == Command.QUERY:
            self.local_infile = LocalInfileRequest.decode(payload, self.capabilities)
            self._state = _State.LOCAL_INFILE_DONE
            self.awaiting_client = True
            return PacketRole.LOCAL_INFILE
        if header == EOF_HEADER:
            raise ProtocolViolation("server began a reply with a 0xfe packet")
        count = ColumnCount.decode(payload, self.capabilities).count
        self._columns_left = count
        self._column_types = []
        self.result_sets += 1
        self._state = _State.COLUMNS
        return PacketRole.COLUMN_COUNT

    def _auth(self, payload: bytes) -> PacketRole:
        header = payload[0]
        if header == OK_HEADER:
            self._status(OkPacket.decode(payload, self.capabilities).status_flags)
            return PacketRole.OK
        if header == AuthSwitchRequest.HEADER:
            AuthSwitchRequest.decode(payload)
            self.awaiting_client = True
            return PacketRole.AUTH_SWITCH
        if header == AuthMoreData.HEADER:
            self.awaiting_client = not AuthMoreData.decode(payload).is_fast_auth_success
            return PacketRole.AUTH_MORE_DATA
        raise ProtocolViolation(f"unexpected packet starting {header:#04x} in the reply to COM_CHANGE_USER")

    def _after_parameters(self) -> _State:
        if self._columns_left:
            return _State.COLUMNS
        return _State.DONE

    def _after_columns(self) -> _State:
        if not self._deprecate_eof:
            return _State.COLUMNS_EOF
        if self.shape is ReplyShape.PREPARE:
            return _State.DONE
        return _State.ROWS

    def _metadata_eof(self, payload: bytes) -> EofPacket:
        if not is_eof_packet(payload):
            raise ProtocolViolation("expected an EOF after the definitions")
        eof = EofPacket.decode(payload, self.capabilities)
        self.status_flags = eof.status_flags
        return eof

    def _terminator(self, payload: bytes) -> PacketRole:
        if is_eof_packet(payload) and not self._deprecate_eof:
            flags = EofPacket.decode(payload, self.capabilities).status_flags
        elif self._deprecate_eof:
            flags = OkPacket.decode(payload, self.capabilities).status_flags
        else:
            raise ProtocolViolation("malformed result set terminator")
        self._status(flags)
        return PacketRole.TERMINATOR

    def _status(self, flags: int) -> None:
        """A reply-ending status: done unless more results follow (which only results replies have)."""
        self.status_flags = flags
        more = flags & ServerStatus.MORE_RESULTS_EXISTS and self.shape is ReplyShape.RESULTS
        self._state = _State.FIRST if more else _State.DONE


class ResponseReader:
    """Reads one command's reply from raw server bytes: :meth:`next_packet` gives each logical packet
    with its role until :attr:`done`.  Sequence ids must follow on from the command's (0, so the
    reply starts at 1); after a packet that hands the turn to the client, the next id is taken as
    it comes (the client's own packets used the ones between)."""

    def __init__(self, command: int, capabilities: int, *, max_payload: int = DEFAULT_MAX_PAYLOAD,
                 command_sequence_id: int = 0, validate_rows: bool = True) -> None:
        self.tracker = ResponseTracker(command, capabilities, validate_rows=validate_rows)
        self._reader = PacketReader(max_payload, what="server",
                                    expected_sequence=(command_sequence_id + 1) & 0xFF)
        self._broken: ProtocolViolation | None = None

    @property
    def done(self) -> bool:
        return self.tracker.done

    @property
    def status_flags(self) -> int | None:
        return self.tracker.status_flags

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    def receive_data(self, data: bytes) -> None:
        self._reader.receive_data(data)

    def take_buffered(self) -> bytes:
        """Bytes after the reply (there should be none: a server does not speak unasked)."""
        return self._reader.take_buffered()

    def next_packet(self) -> tuple[Packet, PacketRole] | _NeedData:
        """The next packet of the reply and its role, or NEED_DATA. Raises ProtocolViolation."""
        if self._broken is not None:
            raise self._broken
        if self.tracker.done:
            return NEED_DATA
        try:
            packet = self._reader.next_packet()
            if isinstance(packet, _NeedData):
                return NEED_DATA
            role = self.tracker.feed(packet.payload)
        except ProtocolViolation as e:
            self._broken = e
            raise
        if self.tracker.awaiting_client:
            self._reader.expected_sequence = None
        return packet, role
