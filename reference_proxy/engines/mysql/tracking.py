"""What one MySQL client session's commands and replies mean for its backend, without I/O.

Two small machines the session drives:

* :class:`ReplyRelay` follows one command's reply in the raw server stream.  It splits whole
  physical packets (forwarded as they are, so replies reach clients byte for byte), hands each
  logical payload to a follower (:class:`ResultsFollower`, which reads headers and status flags
  only, for queries; the codec's :class:`ResponseTracker` for the rarer replies) and says when the
  reply is complete.  A LOCAL INFILE
  request is held back: the proxy never lets a server read files through it.
* :class:`SessionTracker` keeps the session's last server status, its pin and its tracked
  settings.  It answers the release rule: a backend goes back to the pool after a complete reply
  whose status has no open transaction and no further result, unless the session is pinned.  A
  backend whose session changed tracked state (schema, tracked variables) goes back DIRTY, so the
  pool resets it to its own key before anyone else gets it.

Autocommit is tracked state (it partitions the pool, as RDS Proxy does).  If the server's autocommit
flag ever disagrees with the tracked settings (the client changed it in a way the statement text
did not show), the session keeps its backend rather than hand one client's setting to another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reference_proxy.contracts import ReleaseState
from reference_proxy.engines.mysql.lexer import lexing_options
from reference_proxy.engines.mysql.screen import Remembered, could_change_tracked
from reference_proxy.engines.mysql.tracked import TrackedChange, apply_change, pool_variant, statement_changes
from reference_proxy.protocol.mysql import (
    HEADER_SIZE,
    MAX_PACKET_PAYLOAD,
    Capability,
    ColumnCount,
    Command,
    ErrPacket,
    PacketRole,
    PacketSplitter,
    ProtocolViolation,
    ResponseTracker,
    ServerStatus,
    text,
)

__all__ = ["BINARY_PREPARE_REASON", "RESET_SESSION_SETTINGS", "SET_OPTION_REASON", "UNRESOLVED_SETTING_REASON", "Pin", "ReplyRelay",
           "ResultsFollower", "SessionTracker"]

BINARY_PREPARE_REASON = "A prepared statement was created with the binary protocol (COM_STMT_PREPARE)."
SET_OPTION_REASON = ("The client switched multi-statement support (COM_SET_OPTION), which the proxy "
                     "doesn't track.")
RESET_SESSION_SETTINGS = {
    "autocommit": "ON",
    "character_set_client": "utf8mb4",
    "character_set_connection": "utf8mb4",
    "character_set_results": "utf8mb4",
    "collation_connection": "utf8mb4_general_ci",
}
"""Tracked settings every pooled backend session has after its login or a COM_RESET_CONNECTION while
no InitQuery changes them: autocommit on, and the character set of the backend handshake
(utf8mb4_general_ci, :data:`reference_proxy.engines.mysql.backend.UTF8MB4_GENERAL_CI`)."""
UNRESOLVED_SETTING_REASON = ("SQL set a tracked session setting to a value the proxy can't read from the "
                             "statement text.")


@dataclass(frozen=True)
class Pin:
    """Why a session pinned, and the statement that did it (for the RDS-style log line)."""

    reason: str
    sql: str


_RESULTS_COMMANDS = (Command.QUERY, Command.STMT_EXECUTE)
_FIRST, _COLUMNS, _COLUMNS_EOF, _ROWS, _DONE = range(5)
# Plain ints: flag tests run for every command, and IntFlag arithmetic costs more than the rest.
_AUTOCOMMIT = int(ServerStatus.AUTOCOMMIT)
_IN_TRANS = int(ServerStatus.IN_TRANS)
_MORE_RESULTS = int(ServerStatus.MORE_RESULTS_EXISTS)
_CURSOR_EXISTS = int(ServerStatus.CURSOR_EXISTS)
_DEPRECATE_EOF = int(Capability.DEPRECATE_EOF)
_LEXING_FLAGS = int(ServerStatus.ANSI_QUOTES | ServerStatus.NO_BACKSLASH_ESCAPES)
_PROGRESS_REPORT = 0xFFFF


_statement_changes = Remembered(statement_changes)
"""Drivers send the same few SET statements on every connection: read each once."""


def _after_lenenc(buf: bytes, pos: int, end: int) -> int:
    """The offset just past the length-encoded integer at ``pos`` (a packet ending at ``end``)."""
    if pos >= end:
        raise ProtocolViolation("packet too short for its length-encoded integer")
    first = buf[pos]
    if first < 0xFB:
        return pos + 1
    if first == 0xFC:
        return pos + 3
    if first == 0xFD:
        return pos + 4
    if first == 0xFE:
        return pos + 9
    raise ProtocolViolation(f"malformed length-encoded integer starting {first:#04x}")


class ResultsFollower:
    """Follows the reply to COM_QUERY or COM_STMT_EXECUTE over the classic protocol (EOF packets,
    as the proxy's backends speak it), reading only what the release rule needs: packet headers,
    the column count and status flags.  Column definitions and rows are counted, never decoded;
    that is most of a point select's reply, and :class:`ResponseTracker` would decode it all.

    :meth:`feed` takes one logical payload as ``buf[start:end]`` (no copy) and returns True for a
    LOCAL INFILE request.  ``status_flags`` is the last status seen (None: none yet), ``error``
    the ERR that ended the reply.
    """

    __slots__ = ("_binary", "_capabilities", "_columns_left", "_state", "error", "status_flags")

    def __init__(self, command: int, capabilities: int) -> None:
        self._binary = command == Command.STMT_EXECUTE
        self._capabilities = capabilities
        self._state = _FIRST
        self._columns_left = 0
        self.status_flags: int | None = None
        self.error: ErrPacket | None = None

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, buf: bytes, start: int, end: int) -> bool:
        state = self._state
        if end <= start:
            raise ProtocolViolation("server sent an empty packet")
        header = buf[start]
        if state == _ROWS:
            if header == 0xFE and end - start < 9:
                self._ended(buf[start + 3] | buf[start + 4] << 8)
            elif header == 0xFF:
                self._failed(buf, start, end)
            return False
        if state == _COLUMNS:
            if header == 0xFF:
                self._failed(buf, start, end)
                return False
            self._columns_left -= 1
            if not self._columns_left:
                self._state = _COLUMNS_EOF
            return False
        if state == _COLUMNS_EOF:
            if header != 0xFE or end - start >= 9:
                raise ProtocolViolation("expected an EOF after the column definitions")
            flags = self.status_flags = buf[start + 3] | buf[start + 4] << 8
            self._state = _DONE if self._binary and flags & _CURSOR_EXISTS else _ROWS
            return False
        if state == _DONE:
            raise ProtocolViolation("the database sent a packet after the complete reply")
        # _FIRST: OK, ERR, LOCAL INFILE request or a result set's column count
        if header == 0x00:
            pos = _after_lenenc(buf, _after_lenenc(buf, start + 1, end), end)
            if pos + 2 > end:
                raise ProtocolViolation("OK packet too short for its status flags")
            self._ended(buf[pos] | buf[pos + 1] << 8)
            return False
        if header == 0xFF:
            self._failed(buf, start, end)
            return False
        if header == 0xFB:
            if self._binary:
                raise ProtocolViolation("LOCAL INFILE request in reply to COM_STMT_EXECUTE")
            return True  # the OK or ERR that ends it comes after the client's (empty) file
        if header == 0xFE:
            raise ProtocolViolation("server began a reply with a 0xfe packet")
        count = header if header < 0xFB and end - start == 1 else ColumnCount.decode(
            buf[start:end], self._capabilities).count
        if count == 0:
            raise ProtocolViolation("result set without columns")
        self._columns_left = count
        self._state = _COLUMNS
        return False

    def scan(self, buf: bytes, max_payload: int) -> tuple[int, int]:
        """Follow the plain whole packets at the start of ``buf`` without splitting it first.

        Returns the offset just past the last packet followed and that packet's sequence id (-1
        when none was).  Stops before anything that needs :class:`ReplyRelay`'s general path: a
        packet not whole yet, a full-size or oversized one, a LOCAL INFILE request, or a packet
        after the complete reply (the general path raises for it)."""
        pos, size, sequence_id = 0, len(buf), -1
        while size - pos >= HEADER_SIZE:
            state = self._state
            if state == _DONE:
                break
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            end = pos + HEADER_SIZE + length
            if end > size or length >= MAX_PACKET_PAYLOAD or length > max_payload:
                break
            header = buf[pos + HEADER_SIZE] if length else -1
            if state == _ROWS and header != 0xFE and header != 0xFF and length:
                pass  # a row: the bulk of most replies, and nothing to follow in it
            elif state == _COLUMNS and header != 0xFF and length:
                self._columns_left -= 1
                if not self._columns_left:
                    self._state = _COLUMNS_EOF
            elif state == _FIRST and header == 0xFB:
                break
            else:
                self.feed(buf, pos + HEADER_SIZE, end)
            sequence_id = buf[pos + 3]
            pos = end
        return pos, sequence_id

    def _ended(self, flags: int) -> None:
        self.status_flags = flags
        self._state = _FIRST if flags & _MORE_RESULTS else _DONE

    def _failed(self, buf: bytes, start: int, end: int) -> None:
        if end - start >= 3 and (buf[start + 1] | buf[start + 2] << 8) == _PROGRESS_REPORT:
            return  # a MariaDB progress report: the reply goes on
        self.error = ErrPacket.decode(buf[start:end], self._capabilities)
        self._state = _DONE


class _TrackerFollower:
    """:class:`ResponseTracker` behind :class:`ResultsFollower`'s interface, for every other reply
    shape (prepared statement metadata, field lists, statistics...), which are rare enough to decode."""

    __slots__ = ("_tracker",)

    def __init__(self, command: int, capabilities: int) -> None:
        self._tracker = ResponseTracker(command, capabilities, validate_rows=False)

    @property
    def done(self) -> bool:
        return self._tracker.done

    @property
    def status_flags(self) -> int | None:
        return self._tracker.status_flags

    @property
    def error(self) -> ErrPacket | None:
        return self._tracker.error

    def feed(self, buf: bytes, start: int, end: int) -> bool:
        return self._tracker.feed(bytes(buf[start:end])) is PacketRole.LOCAL_INFILE


class ReplyRelay:
    """Follows one command's reply; :meth:`feed` returns the server bytes to pass to the client.

    Packets are forwarded whole (a read that ends inside a packet keeps its tail for the next one),
    so if the server vanishes mid-reply the client can still be told so in a packet of its own, at
    :attr:`next_sequence`.  Raises ProtocolViolation when the server breaks the protocol.
    """

    __slots__ = ("_continued", "_follower", "_max_payload", "_results", "_splitter", "infile_sequence",
                 "local_infile", "next_sequence")

    def __init__(self, command: int, capabilities: int, max_payload: int) -> None:
        # One of these per query: plain ints and no splitter until one is needed keep it cheap.
        self._results: ResultsFollower | None = None
        if command in _RESULTS_COMMANDS and not capabilities & _DEPRECATE_EOF:
            self._follower: ResultsFollower | _TrackerFollower = ResultsFollower(command, capabilities)
            self._results = self._follower
        else:
            self._follower = _TrackerFollower(command, capabilities)
        self._max_payload = max_payload
        self._splitter: PacketSplitter | None = None
        self._continued = bytearray()
        self.next_sequence = 1
        self.local_infile = False
        self.infile_sequence = 0

    @property
    def done(self) -> bool:
        return self._follower.done

    @property
    def status_flags(self) -> int | None:
        """The status the reply ended with (None: it carried none, as an ERR alone)."""
        return self._follower.status_flags

    @property
    def error(self) -> ErrPacket | None:
        """The ERR that ended the reply, if one did."""
        return self._follower.error

    @property
    def buffered(self) -> int:
        return 0 if self._splitter is None else self._splitter.buffered

    def feed(self, data: bytes) -> bytes:
        """Take server bytes; return the whole packets to forward.  After a LOCAL INFILE request
        (:attr:`local_infile`, at :attr:`infile_sequence`) nothing more is for the client.

        A query's reply usually arrives in whole packets: :meth:`ResultsFollower.scan` follows
        them where they lie, and only what it stops at goes through the splitter."""
        results, splitter = self._results, self._splitter
        if results is not None and not self.local_infile and (
                splitter is None or not (splitter.buffered or splitter.in_continuation)):
            pos, sequence_id = results.scan(data, self._max_payload)
            if sequence_id >= 0:
                self.next_sequence = (sequence_id + 1) & 0xFF
            if pos == len(data):
                return data
            if pos:
                return data[:pos] + self._split(data[pos:])
        return self._split(data)

    def _split(self, data: bytes) -> bytes:
        splitter = self._splitter
        if splitter is None:
            splitter = self._splitter = PacketSplitter(self._max_payload, what="server")
        frames = splitter.feed(data)
        follower = self._follower
        out = frames.data
        for sequence_id, start, end in frames.spans:
            self.next_sequence = (sequence_id + 1) & 0xFF
            if end - start - HEADER_SIZE == MAX_PACKET_PAYLOAD:
                self._continued += out[start + HEADER_SIZE:end]
                continue
            if self._continued:
                payload = bytes(self._continued) + out[start + HEADER_SIZE:end]
                self._continued.clear()
                request = follower.feed(payload, 0, len(payload))
            else:
                request = follower.feed(out, start + HEADER_SIZE, end)
            if request and not self.local_infile:
                self.local_infile = True
                self.infile_sequence = sequence_id
                return out[:start]  # what came before the request; the server now waits for the file
        return b"" if self.local_infile else out


class SessionTracker:
    """The pin, status and tracked settings of one client session; see the module docstring.

    ``classify(sql, **lexing)`` is the engine's pin classifier (a decision with ``.reason`` or
    None); the lexing keywords follow the session's last server status and are passed only when
    they differ from the defaults; ``exclude_variable_sets()`` says whether SessionPinningFilters
    keeps SET statements from pinning (asked per statement: a reload may change it).  ``settings``
    are the session's tracked variables (canonical
    name to normalised value), as :mod:`.tracked` reads them from the client's statements.
    """

    def __init__(self, classify: Callable[..., Any], *,
                 exclude_variable_sets: Callable[[], bool] = lambda: False,
                 binary_prepare_pins: bool = True) -> None:
        """``binary_prepare_pins`` is False only under failpoint ``named_statements_unpinned``
        (reference_proxy.failpoints): COM_STMT_PREPARE then leaves the session multiplexed."""
        self._classify = classify
        self._binary_prepare_pins = binary_prepare_pins
        self._exclude_variable_sets = exclude_variable_sets
        self.pin: Pin | None = None
        self.status_flags = _AUTOCOMMIT
        self.settings: dict[str, str] = {}
        self.state_changed = False

    @property
    def pinned(self) -> bool:
        return self.pin is not None

    @property
    def in_transaction(self) -> bool:
        return bool(self.status_flags & _IN_TRANS)

    def variant(self, baseline: dict[str, str]) -> tuple[tuple[str, str], ...]:
        """The pool key's variant for the session's tracked settings, leaving out those equal to
        ``baseline``, what every pooled backend session has anyway (so that a client that sets
        what it already has, as ``SET NAMES utf8mb4`` from most drivers, shares the plain pool)."""
        settings = self.settings
        if baseline:
            settings = {name: value for name, value in settings.items() if baseline.get(name) != value}
        return pool_variant(settings)

    def inspect(self, command: int, payload: bytes, schema: str) -> tuple[Pin | None, TrackedChange | None]:
        """What a command does to the session before it runs: the pin it adds (None when none, or
        when the session is pinned already) and the tracked change it makes if it succeeds.

        ``schema`` is the session's current one (``DROP DATABASE`` of it leaves none).  A tracked
        variable set to a value the text does not reveal pins, as an untracked one would.
        """
        if command == Command.INIT_DB:
            return None, TrackedChange(schema=text(payload[1:]))
        if command == Command.STMT_PREPARE:
            pins = self.pin is None and self._binary_prepare_pins
            return (Pin(BINARY_PREPARE_REASON, text(payload[1:])) if pins else None), None
        if command == Command.SET_OPTION:
            return (Pin(SET_OPTION_REASON, "COM_SET_OPTION") if self.pin is None else None), None
        if command != Command.QUERY:
            return None, None
        sql = text(payload[1:])
        lexing = self.status_flags & _LEXING_FLAGS
        options = lexing_options(status_flags=lexing) if lexing else {}
        pin = None
        exclude_sets = self._exclude_variable_sets()
        if self.pin is None:
            decision = self._classify(sql, exclude_variable_sets=True, **options) if exclude_sets \
                else self._classify(sql, **options)
            if decision is not None:
                pin = Pin(decision.reason, sql)
        change = None
        if could_change_tracked(sql):
            change = _statement_changes(sql, current_schema=schema, **options) or None
            if change is not None and change.unresolved and pin is None and self.pin is None \
                    and not exclude_sets:
                pin = Pin(UNRESOLVED_SETTING_REASON, sql)
        return pin, change

    def pinned_by(self, pin: Pin) -> None:
        self.pin = pin

    def reply_done(self, status_flags: int | None) -> None:
        """A reply is complete; its final status (None: it carried none, as an ERR) holds now."""
        if status_flags is not None:
            self.status_flags = status_flags

    def apply(self, change: TrackedChange) -> None:
        """A command that makes ``change`` succeeded: its tracked settings hold now."""
        self.settings = apply_change(self.settings, change)

    @property
    def at_release_point(self) -> bool:
        """The backend may go back to the pool: nothing open, nothing pinned, and the server's
        autocommit flag what the tracked settings say (otherwise the session changed autocommit
        in a way the proxy did not follow, and keeps its backend)."""
        flags = self.status_flags
        if self.pin is not None or flags & (_IN_TRANS | _MORE_RESULTS):
            return False
        return bool(flags & _AUTOCOMMIT) == (self.settings.get("autocommit") != "OFF")

    @property
    def between_statements_of_a_transaction(self) -> bool:
        """A complete reply inside an open transaction of an unpinned session, with no further
        result to come: where only the ``split_transactions`` failpoint gives the backend up."""
        flags = self.status_flags
        return self.pin is None and bool(flags & _IN_TRANS) and not flags & _MORE_RESULTS

    def release_state(self) -> ReleaseState:
        """How a backend released at a release point goes back: reset first if the session changed
        tracked state, so that the backend matches its own pool key again."""
        return ReleaseState.DIRTY if self.state_changed else ReleaseState.CLEAN

    def release_state_if_client_leaves(self, mid_reply: bool) -> ReleaseState:
        """A client left while its session held a backend: an open transaction or an unfinished
        reply costs the connection; a pinned or changed session is reset before reuse."""
        if mid_reply or self.in_transaction:
            return ReleaseState.BROKEN
        if self.pin is not None or self.state_changed or not self.at_release_point:
            return ReleaseState.DIRTY
        return ReleaseState.CLEAN

    def backend_released(self) -> None:
        self.state_changed = False

    def reset(self) -> None:
        """The session was reset (COM_RESET_CONNECTION, COM_CHANGE_USER): back to a fresh one's state."""
        self.pin = None
        self.status_flags = _AUTOCOMMIT
        self.settings = {}
        self.state_changed = False
