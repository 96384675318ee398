"""Following MySQL replies: when a command's reply is complete and the status it leaves, plus the
codec-wide fuzz and the no-I/O rule."""

from __future__ import annotations

import ast
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_proxy.protocol.mysql as my
from reference_proxy.protocol.mysql import (
    NEED_DATA,
    Capability,
    Command,
    PacketRole,
    ProtocolViolation,
    ResponseReader,
    ResponseTracker,
    ServerStatus,
)

R = PacketRole
CLASSIC = Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION | Capability.MULTI_RESULTS
DEPRECATE = CLASSIC | Capability.DEPRECATE_EOF
AUTOCOMMIT = ServerStatus.AUTOCOMMIT
MORE = ServerStatus.MORE_RESULTS_EXISTS
IN_TRANS = ServerStatus.IN_TRANS

COLUMNS = [my.ColumnDefinition41("id", my.ColumnType.LONGLONG),
           my.ColumnDefinition41("v", my.ColumnType.VAR_STRING)]


def _text_result(caps: int, rows: int, status: int) -> list[bytes]:
    out = [my.ColumnCount(len(COLUMNS)).encode()] + [c.encode() for c in COLUMNS]
    if not caps & Capability.DEPRECATE_EOF:
        out.append(my.EofPacket(0, status & ~MORE).encode())
    out += [my.TextRow((str(i).encode(), None)).encode() for i in range(rows)]
    if caps & Capability.DEPRECATE_EOF:
        out.append(my.OkPacket(status_flags=status, header=0xFE).encode(caps))
    else:
        out.append(my.EofPacket(0, status).encode())
    return out


def _feed_all(tracker: ResponseTracker, payloads: list[bytes]) -> list[PacketRole]:
    roles = []
    for p in payloads:
        assert not tracker.done
        roles.append(tracker.feed(p))
    return roles


@pytest.mark.parametrize("caps", [CLASSIC, DEPRECATE], ids=["classic", "deprecate_eof"])
def test_text_result_set(caps):
    t = ResponseTracker(Command.QUERY, caps)
    roles = _feed_all(t, _text_result(caps, 2, AUTOCOMMIT))
    expected_meta = [] if caps & Capability.DEPRECATE_EOF else [R.METADATA_EOF]
    assert roles == [R.COLUMN_COUNT, R.COLUMN_DEFINITION, R.COLUMN_DEFINITION, *expected_meta, R.ROW, R.ROW,
                     R.TERMINATOR]
    assert t.done and t.status_flags == AUTOCOMMIT and t.in_transaction is False and t.result_sets == 1
    assert t.column_types == (my.ColumnType.LONGLONG, my.ColumnType.VAR_STRING)
    with pytest.raises(ProtocolViolation, match="after the complete reply"):
        t.feed(my.OkPacket().encode())


def test_simple_ok_and_transaction_status():
    t = ResponseTracker(Command.QUERY, CLASSIC)
    assert t.in_transaction is None
    assert t.feed(my.OkPacket(status_flags=IN_TRANS | AUTOCOMMIT).encode()) is R.OK
    assert t.done and t.in_transaction is True
    ro = ResponseTracker(Command.QUERY, CLASSIC)
    ro.feed(my.OkPacket(status_flags=0x2003).encode())
    assert ro.status_flags & ServerStatus.IN_TRANS_READONLY


@pytest.mark.parametrize("caps", [CLASSIC, DEPRECATE], ids=["classic", "deprecate_eof"])
def test_multi_statement_reply_ends_at_the_first_status_without_more_results(caps):
    t = ResponseTracker(Command.QUERY, caps)
    payloads = ([my.OkPacket(1, status_flags=AUTOCOMMIT | MORE).encode(caps)]
                + _text_result(caps, 1, AUTOCOMMIT | IN_TRANS | MORE)
                + _text_result(caps, 0, AUTOCOMMIT | IN_TRANS | MORE)
                + [my.OkPacket(status_flags=AUTOCOMMIT).encode(caps)])
    roles = _feed_all(t, payloads)
    assert roles[0] is R.OK and roles[-1] is R.OK and roles.count(R.COLUMN_COUNT) == 2
    assert t.done and t.result_sets == 2 and t.status_flags == AUTOCOMMIT


@pytest.mark.parametrize("caps", [CLASSIC, DEPRECATE], ids=["classic", "deprecate_eof"])
def test_error_mid_result_set_ends_the_reply(caps):
    # KILL QUERY mid-result: column count, definitions, (EOF), a row, then ERR 1317.
    t = ResponseTracker(Command.QUERY, caps)
    payloads = _text_result(caps, 1, AUTOCOMMIT | IN_TRANS)[:-1]
    _feed_all(t, payloads)
    assert not t.done
    err = my.ErrPacket(1317, "Query execution was interrupted", "70100")
    assert t.feed(err.encode()) is R.ERR
    assert t.done and t.error == err
    # ERR carries no status: the last one seen stands (the metadata EOF's, or none at all).
    assert t.status_flags == (None if caps & Capability.DEPRECATE_EOF else AUTOCOMMIT | IN_TRANS)


def test_error_in_a_multi_statement_reply_ends_it():
    t = ResponseTracker(Command.QUERY, CLASSIC)
    t.feed(my.OkPacket(status_flags=AUTOCOMMIT | IN_TRANS | MORE).encode())
    t.feed(my.ErrPacket(1062, "Duplicate entry", "23000").encode())
    assert t.done and t.status_flags == AUTOCOMMIT | IN_TRANS | MORE and t.in_transaction


def test_mariadb_progress_reports_are_skipped():
    t = ResponseTracker(Command.QUERY, CLASSIC)
    assert t.feed(b"\xff\xff\xff\x01\x01\x02\x00\x00\x00\x00") is R.PROGRESS
    assert not t.done and t.error is None
    assert t.feed(my.OkPacket().encode()) is R.OK and t.done


def test_local_infile_request_is_recognised():
    t = ResponseTracker(Command.QUERY, CLASSIC | Capability.LOCAL_FILES)
    assert t.feed(my.LocalInfileRequest("/etc/passwd").encode()) is R.LOCAL_INFILE
    assert t.local_infile == my.LocalInfileRequest("/etc/passwd") and t.awaiting_client and not t.done
    assert t.feed(my.OkPacket(info="Records: 0  Deleted: 0  Skipped: 0  Warnings: 0").encode()) is R.OK
    assert t.done and not t.awaiting_client
    execute = ResponseTracker(Command.STMT_EXECUTE, CLASSIC)
    with pytest.raises(ProtocolViolation):
        execute.feed(my.LocalInfileRequest("x").encode())


@pytest.mark.parametrize("caps", [CLASSIC, DEPRECATE], ids=["classic", "deprecate_eof"])
@pytest.mark.parametrize("params, columns", [(2, 1), (0, 1), (2, 0), (0, 0)])
def test_prepare_reply(caps, params, columns):
    t = ResponseTracker(Command.STMT_PREPARE, caps)
    defs = [my.ColumnDefinition41("?", my.ColumnType.VAR_STRING).encode()]
    eof = [] if caps & Capability.DEPRECATE_EOF else [my.EofPacket().encode()]
    payloads = ([my.StmtPrepareOk(9, columns, params).encode()] + (defs * params + eof if params else [])
                + (defs * columns + eof if columns else []))
    roles = _feed_all(t, payloads)
    assert t.done and t.prepare_ok == my.StmtPrepareOk(9, columns, params)
    assert roles.count(R.PARAMETER_DEFINITION) == params and roles.count(R.COLUMN_DEFINITION) == columns


@pytest.mark.parametrize("caps", [CLASSIC, DEPRECATE], ids=["classic", "deprecate_eof"])
def test_binary_result_set(caps):
    types = (my.ColumnType.LONGLONG, my.ColumnType.VAR_STRING)
    out = [b"\x02"] + [c.encode() for c in COLUMNS]
    if not caps & Capability.DEPRECATE_EOF:
        out.append(my.EofPacket().encode())
    out.append(my.BinaryRow(((42).to_bytes(8, "little"), None)).encode(types))
    deprecated = caps & Capability.DEPRECATE_EOF
    out.append(my.OkPacket(header=0xFE).encode() if deprecated else my.EofPacket().encode())
    t = ResponseTracker(Command.STMT_EXECUTE, caps)
    assert _feed_all(t, out)[-2:] == [R.ROW, R.TERMINATOR] and t.done
    bad = ResponseTracker(Command.STMT_EXECUTE, caps)
    _feed_all(bad, out[:-2])
    with pytest.raises(ProtocolViolation):
        bad.feed(b"\x00\x00\x01")  # the LONGLONG value is cut short


def test_execute_with_cursor_ends_after_metadata_and_fetch_reads_rows():
    t = ResponseTracker(Command.STMT_EXECUTE, CLASSIC)
    cursor_open = my.EofPacket(0, AUTOCOMMIT | ServerStatus.CURSOR_EXISTS).encode()
    _feed_all(t, [b"\x01", COLUMNS[0].encode(), cursor_open])
    assert t.done
    fetch = ResponseTracker(Command.STMT_FETCH, CLASSIC, column_types=(my.ColumnType.LONGLONG,))
    row = my.BinaryRow(((1).to_bytes(8, "little"),)).encode((my.ColumnType.LONGLONG,))
    last = my.EofPacket(0, AUTOCOMMIT | ServerStatus.LAST_ROW_SENT).encode()
    assert _feed_all(fetch, [row, row, last])[-1] is R.TERMINATOR
    assert fetch.done


@pytest.mark.parametrize("command", [Command.QUIT, Command.STMT_CLOSE, Command.STMT_SEND_LONG_DATA])
def test_commands_without_reply_are_done_at_once(command):
    t = ResponseTracker(command, CLASSIC)
    assert t.done and my.reply_shape(command) is my.ReplyShape.NONE
    with pytest.raises(ProtocolViolation):
        t.feed(my.OkPacket().encode())


@pytest.mark.parametrize("command", [Command.PING, Command.INIT_DB, Command.RESET_CONNECTION,
                                     Command.STMT_RESET, Command.SET_OPTION])
def test_status_replies(command):
    t = ResponseTracker(command, CLASSIC)
    assert t.feed(my.OkPacket().encode()) is R.OK and t.done
    err = ResponseTracker(command, CLASSIC)
    assert err.feed(my.ErrPacket(1049, "Unknown database 'x'", "42000").encode()) is R.ERR and err.done
    with pytest.raises(ProtocolViolation):
        ResponseTracker(command, CLASSIC).feed(b"\x02")


def test_statistics_answers_one_string():
    t = ResponseTracker(Command.STATISTICS, CLASSIC)
    assert t.feed(b"Uptime: 5  Threads: 1  Questions: 2") is R.TEXT and t.done and t.status_flags is None


def test_set_option_answers_eof_or_its_ok():
    t = ResponseTracker(Command.SET_OPTION, CLASSIC)
    assert t.feed(my.EofPacket().encode()) is R.EOF and t.done
    t = ResponseTracker(Command.SET_OPTION, DEPRECATE)
    assert t.feed(my.OkPacket(header=0xFE).encode()) is R.OK and t.done


def test_field_list_reply():
    t = ResponseTracker(Command.FIELD_LIST, CLASSIC)
    col = my.ColumnDefinition41("c", my.ColumnType.LONG, default_value=b"0").encode()
    assert _feed_all(t, [col, col, my.EofPacket().encode()]) == [R.COLUMN_DEFINITION] * 2 + [R.TERMINATOR]
    assert t.done


def test_change_user_auth_exchange():
    t = ResponseTracker(Command.CHANGE_USER, CLASSIC)
    assert t.feed(my.AuthSwitchRequest("mysql_native_password", b"x" * 20 + b"\0").encode()) is R.AUTH_SWITCH
    assert t.awaiting_client and not t.done
    assert t.feed(my.OkPacket().encode()) is R.OK and t.done
    sha = ResponseTracker(Command.CHANGE_USER, CLASSIC)
    assert sha.feed(b"\x01\x03") is R.AUTH_MORE_DATA and not sha.awaiting_client
    assert sha.feed(my.ErrPacket(1045, "Access denied", "28000").encode()) is R.ERR and sha.done


def test_reader_from_bytes_byte_at_a_time():
    caps = CLASSIC
    payloads = [my.OkPacket(status_flags=AUTOCOMMIT | MORE).encode()] + _text_result(caps, 3, AUTOCOMMIT)
    stream, seq = b"", 1
    for p in payloads:
        wire, seq = my.encode_packet(p, seq)
        stream += wire
    reader = ResponseReader(Command.QUERY, caps)
    got = []
    for i in range(len(stream)):
        reader.receive_data(stream[i:i + 1])
        while (item := reader.next_packet()) is not NEED_DATA:
            got.append(item)
    assert [p.payload for p, _ in got] == payloads and reader.done and reader.status_flags == AUTOCOMMIT
    assert [p.sequence_id for p, _ in got] == list(range(1, len(payloads) + 1))
    assert reader.next_packet() is NEED_DATA and reader.buffered == 0


def test_reader_rejects_wrong_sequence_and_allows_the_client_turn():
    reader = ResponseReader(Command.QUERY, CLASSIC)
    reader.receive_data(my.encode_packet(my.OkPacket().encode(), 2)[0])
    with pytest.raises(ProtocolViolation) as e:
        reader.next_packet()
    assert e.value.error_code == my.ER_NET_PACKETS_OUT_OF_ORDER
    with pytest.raises(ProtocolViolation):
        reader.next_packet()
    # LOCAL INFILE: server fb at 1, client's empty packet at 2, server OK at 3.
    reader = ResponseReader(Command.QUERY, CLASSIC | Capability.LOCAL_FILES)
    reader.receive_data(my.encode_packet(my.LocalInfileRequest("f").encode(), 1)[0])
    assert reader.next_packet()[1] is R.LOCAL_INFILE
    reader.receive_data(my.encode_packet(my.OkPacket().encode(), 3)[0])
    assert reader.next_packet()[1] is R.OK and reader.done


def test_reader_joins_a_row_over_16_mib_and_does_not_take_it_for_a_terminator():
    caps = DEPRECATE
    big = my.TextRow((b"v" * (1 << 24), None)).encode()
    assert big[0] == 0xFE and len(big) > my.MAX_PACKET_PAYLOAD
    payloads = [b"\x02", COLUMNS[0].encode(), COLUMNS[1].encode(), big,
                my.OkPacket(status_flags=AUTOCOMMIT, header=0xFE).encode()]
    stream, seq = b"", 1
    for p in payloads:
        wire, seq = my.encode_packet(p, seq)
        stream += wire
    reader = ResponseReader(Command.QUERY, caps, validate_rows=False)
    reader.receive_data(stream)
    roles = []
    while (item := reader.next_packet()) is not NEED_DATA:
        roles.append(item[1])
    assert roles == [R.COLUMN_COUNT, R.COLUMN_DEFINITION, R.COLUMN_DEFINITION, R.ROW, R.TERMINATOR]
    assert reader.done


_HEADERS = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0xFB, 0xFC, 0xFE, 0xFF])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(Command)), st.sampled_from([CLASSIC, DEPRECATE]),
       st.lists(st.tuples(_HEADERS, st.binary(max_size=30)) | st.binary(max_size=30).map(lambda b: (None, b)),
                max_size=10))
def test_fuzz_tracker_raises_only_protocol_violation(command, caps, packets):
    t = ResponseTracker(command, caps)
    try:
        for header, body in packets:
            t.feed(body if header is None else bytes((header,)) + body)
    except ProtocolViolation:
        pass


_DECODERS = [
    my.decode_greeting, my.decode_client_handshake, my.HandshakeV10.decode, my.SSLRequest.decode,
    lambda p: my.decode_auth_reply(p, DEPRECATE | Capability.SESSION_TRACK),
    lambda p: my.decode_response(p, DEPRECATE | Capability.SESSION_TRACK),
    lambda p: my.decode_response(p, CLASSIC),
    lambda p: my.decode_command(p, CLASSIC | Capability.PLUGIN_AUTH | Capability.CONNECT_ATTRS),
    lambda p: my.decode_command(p, 0),
    my.ColumnDefinition41.decode, my.ColumnCount.decode, my.StmtPrepareOk.decode, my.TextRow.decode,
    lambda p: my.BinaryRow.decode(p, (my.ColumnType.LONG, my.ColumnType.DATETIME, my.ColumnType.BLOB)),
    lambda p: my.ExecuteParameters.decode(p, 3),
    lambda p: [my.decode_binary_value(t, p) for t in my.ColumnType],
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(_DECODERS))), st.binary(max_size=120),
       st.sampled_from([b"", b"\x0a", b"\x11", b"\x17", b"\x00", b"\xfe"]))
def test_fuzz_decoders_raise_only_protocol_violation(which, data, prefix):
    try:
        _DECODERS[which](prefix + data)
    except ProtocolViolation:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(sorted(Command)), st.booleans())
def test_fuzz_reader_bytes_raise_only_protocol_violation(data, command, split):
    reader = ResponseReader(command, DEPRECATE, max_payload=4096)
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)] if split else [data]
    try:
        for c in chunks:
            reader.receive_data(c)
            while reader.next_packet() is not NEED_DATA:
                pass
    except ProtocolViolation:
        pass


_FORBIDDEN = {"asyncio", "socket", "ssl", "selectors"}


def test_codec_package_does_no_io():
    package_dir = pathlib.Path(my.__file__).parent
    offenders = []
    for path in sorted(package_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in _FORBIDDEN]
    assert len(list(package_dir.glob("*.py"))) >= 10
    assert offenders == []
