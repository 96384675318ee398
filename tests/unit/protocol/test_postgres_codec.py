"""The PostgreSQL codec: byte-exact fixtures, round trips, framing, and malformed input."""

from __future__ import annotations

import ast
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_proxy.protocol.postgres as pg
from reference_proxy.protocol.postgres import NEED_DATA, Decoder, Direction, ProtocolViolation

FRONTEND_MESSAGES = [
    pg.Query("select 1"),
    pg.Query(""),
    pg.Terminate(),
    pg.Parse("", "select $1::int", (23,)),
    pg.Parse("_pg3_0", "select 'é'", ()),
    pg.Bind("", "_pg3_0", (1,), (b"\x00\x00\x00\x01", None), (0, 1)),
    pg.Describe("S", "_pg3_0"),
    pg.Describe("P", ""),
    pg.Execute("", 0),
    pg.Execute("portal", 100),
    pg.Close("S", "_pg3_0"),
    pg.Close("P", ""),
    pg.Sync(),
    pg.Flush(),
    pg.CopyData(b"1\tone\n"),
    pg.CopyDone(),
    pg.CopyFail("client gave up"),
    pg.PasswordMessage.from_password("secret"),
    pg.FunctionCall(1234, b"\x00\x00"),
]

BACKEND_MESSAGES = [
    pg.AuthenticationOk(),
    pg.AuthenticationCleartextPassword(),
    pg.AuthenticationMD5Password(b"abcd"),
    pg.AuthenticationSASL(("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")),
    pg.AuthenticationSASLContinue(b"r=abc,s=xyz,i=4096"),
    pg.AuthenticationSASLFinal(b"v=xyz"),
    pg.ParameterStatus("server_version", "15.18"),
    pg.BackendKeyData.from_ints(4242, -17),
    pg.ReadyForQuery("I"),
    pg.ReadyForQuery("T"),
    pg.ReadyForQuery("E"),
    pg.NotificationResponse(7, "chan", "payload"),
    pg.RowDescription((pg.FieldDescription("id", 16384, 1, 23, 4, -1, 0),
                       pg.FieldDescription("name", 0, 0, 25, -1, -1, 0))),
    pg.DataRow((b"1", None, b"")),
    pg.CommandComplete("SELECT 1"),
    pg.EmptyQueryResponse(),
    pg.FunctionCallResponse(None),
    pg.ErrorResponse.build("ERROR", "42P01", 'relation "x" does not exist', P="15"),
    pg.NoticeResponse.build("NOTICE", "00000", "hello"),
    pg.ParseComplete(), pg.BindComplete(), pg.CloseComplete(), pg.NoData(), pg.PortalSuspended(),
    pg.ParameterDescription((23, 25)),
    pg.CopyInResponse(0, (0, 0)),
    pg.CopyOutResponse(1, (1,)),
    pg.CopyBothResponse(0, ()),
    pg.CopyData(b"x"),
    pg.CopyDone(),
    pg.NegotiateProtocolVersion(0, ("_pq_.foo",)),
]


def _frontend_after_startup() -> Decoder:
    d = Decoder(Direction.FRONTEND)
    d.receive_data(pg.StartupMessage(pg.PROTOCOL_3_0, (("user", "u"),)).encode())
    assert isinstance(d.next_event(), pg.StartupMessage)
    return d


@pytest.mark.parametrize("msg", FRONTEND_MESSAGES, ids=lambda m: type(m).__name__)
def test_frontend_round_trip(msg):
    d = _frontend_after_startup()
    d.receive_data(msg.encode())
    assert d.next_event() == msg
    assert d.next_event() is NEED_DATA


@pytest.mark.parametrize("msg", BACKEND_MESSAGES, ids=lambda m: type(m).__name__)
def test_backend_round_trip(msg):
    d = Decoder(Direction.BACKEND)
    d.receive_data(msg.encode())
    assert d.next_event() == msg
    assert d.next_event() is NEED_DATA


def test_byte_exact_fixtures():
    assert pg.Query("select 1").encode() == b"Q\x00\x00\x00\x0dselect 1\x00"
    assert pg.ReadyForQuery("I").encode() == b"Z\x00\x00\x00\x05I"
    assert pg.Sync().encode() == b"S\x00\x00\x00\x04"
    assert pg.AuthenticationOk().encode() == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert pg.SSLRequest().encode() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert pg.GSSENCRequest().encode() == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    assert pg.CancelRequest(1, 2).encode() == (b"\x00\x00\x00\x10\x04\xd2\x16\x2e"
                                               b"\x00\x00\x00\x01\x00\x00\x00\x02")
    assert pg.StartupMessage(pg.PROTOCOL_3_0, (("user", "bob"),)).encode() == (
        b"\x00\x00\x00\x12\x00\x03\x00\x00user\x00bob\x00\x00")
    assert pg.ErrorResponse.build("FATAL", "08P01", "bad").encode() == (
        b"E\x00\x00\x00\x1fSFATAL\x00VFATAL\x00C08P01\x00Mbad\x00\x00")


def test_startup_sequence_ssl_then_startup_then_typed():
    d = Decoder(Direction.FRONTEND)
    d.receive_data(pg.SSLRequest().encode())
    assert d.next_event() == pg.SSLRequest()
    assert d.in_startup
    d.receive_data(pg.GSSENCRequest().encode())
    assert d.next_event() == pg.GSSENCRequest()
    start = pg.StartupMessage(pg.PROTOCOL_3_0, (("user", "u"), ("database", "d"),
                                                ("application_name", "app")))
    d.receive_data(start.encode())
    msg = d.next_event()
    assert msg == start and msg.get("database") == "d" and msg.major == 3 and msg.minor == 0
    assert not d.in_startup


def test_cancel_request_and_old_protocol():
    d = Decoder(Direction.FRONTEND)
    d.receive_data(pg.CancelRequest(10, -5).encode())
    assert d.next_event() == pg.CancelRequest(10, -5)
    d = Decoder(Direction.FRONTEND)
    d.receive_data(struct.pack("!ii", 8, 2 << 16))
    msg = d.next_event()
    assert isinstance(msg, pg.StartupMessage) and msg.major == 2 and msg.parameters == ()


def test_byte_at_a_time_feeding():
    stream = b"".join(m.encode() for m in BACKEND_MESSAGES)
    d = Decoder(Direction.BACKEND)
    got = []
    for i in range(len(stream)):
        d.receive_data(stream[i:i + 1])
        while (m := d.next_event()) is not NEED_DATA:
            got.append(m)
    assert got == BACKEND_MESSAGES


def test_sasl_initial_response_and_password_views():
    init = pg.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc")
    d = _frontend_after_startup()
    d.receive_data(init.encode())
    raw = d.next_event()
    assert isinstance(raw, pg.PasswordMessage)
    assert pg.SASLInitialResponse.from_password_message(raw) == init
    assert pg.SASLInitialResponse.from_password_message(
        pg.PasswordMessage(pg.SASLInitialResponse("X", None).encode()[5:])).data is None
    assert pg.PasswordMessage.from_password("pw").password() == "pw"
    with pytest.raises(ProtocolViolation):
        pg.SASLInitialResponse.from_password_message(pg.PasswordMessage(b"SCRAM\x00\x00\x00\x00\x09ab"))


def test_backend_key_data_secret():
    k = pg.BackendKeyData.from_ints(1, -2)
    assert k.secret_int == -2 and len(k.secret_key) == 4


def test_splitter_returns_whole_messages_and_keeps_partial():
    msgs = [pg.ParseComplete(), pg.BindComplete(), pg.DataRow((b"1",)), pg.CommandComplete("SELECT 1"),
            pg.ReadyForQuery("I")]
    stream = b"".join(m.encode() for m in msgs)
    s = pg.MessageSplitter(pg.BACKEND_TYPES)
    frames = s.feed(stream[:-3])
    assert [chr(t) for t, _, _ in frames.spans] == ["1", "2", "D", "C"]
    assert frames.data == stream[:len(frames.data)]
    assert s.buffered == 6 - 3
    frames2 = s.feed(stream[-3:])
    assert [chr(t) for t, _, _ in frames2.spans] == ["Z"]
    assert pg.ReadyForQuery.decode(frames2.body(0)).status == "I"
    assert s.buffered == 0
    assert s.feed(b"").spans == []


@pytest.mark.parametrize("data, why", [
    (b"Q\x00\x00\x00\x02", "invalid length"),
    (b"@\x00\x00\x00\x04", "unknown message type"),
    (b"Q" + struct.pack("!i", 2 ** 30), "over the limit"),
])
def test_splitter_rejects_bad_frames(data, why):
    with pytest.raises(ProtocolViolation, match=why):
        pg.MessageSplitter(pg.FRONTEND_TYPES, max_message_size=1 << 20).feed(data)


@pytest.mark.parametrize("data, why", [
    (b"Q\x00\x00\x00\x02", "invalid length"),
    (b"\x01\x00\x00\x00\x04", "unknown message type"),
    (b"Q\x00\x00\x00\x08abcd", "not NUL-terminated"),
    (b"Q\x00\x00\x00\x0aab\x00cd\x00", "trailing"),
    (b"P\x00\x00\x00\x08a\x00b\x00", "truncated"),
    (b"B\x00\x00\x00\x0ea\x00b\x00\x00\x00\xff\xff\xff\xfe", "negative"),
    (b"D\x00\x00\x00\x06Xa\x00", "'S' or 'P'"),
    (b"Q\x00\x00\x00\x06\xff\x00", "UTF-8"),
    (b"Q" + struct.pack("!i", 2 ** 30), "over the limit"),
])
def test_frontend_malformed(data, why):
    d = _frontend_after_startup()
    d.max_message_size = 1 << 20
    d.receive_data(data)
    with pytest.raises(ProtocolViolation, match=why):
        d.next_event()
    with pytest.raises(ProtocolViolation):  # stays broken
        d.next_event()


@pytest.mark.parametrize("data, why", [
    (b"R\x00\x00\x00\x08\x00\x00\x00\x63", "unknown request code"),
    (b"Z\x00\x00\x00\x05X", "transaction status"),
    (b"D\x00\x00\x00\x0a\x00\x01\xff\xff\xff\xfd", "bad column length"),
    (b"K\x00\x00\x00\x09\x00\x00\x00\x01\x02", "secret key"),
    (b"G\x00\x00\x00\x07\x05\x00\x00", "overall format"),
])
def test_backend_malformed(data, why):
    d = Decoder(Direction.BACKEND)
    d.receive_data(data)
    with pytest.raises(ProtocolViolation, match=why):
        d.next_event()


@pytest.mark.parametrize("packet", [
    struct.pack("!i", 3),
    struct.pack("!ii", 20000, pg.PROTOCOL_3_0),
    struct.pack("!iii", 12, pg.SSL_REQUEST_CODE, 0),
    struct.pack("!ii", 13, pg.PROTOCOL_3_0) + b"user",
])
def test_startup_malformed(packet):
    d = Decoder(Direction.FRONTEND)
    d.receive_data(packet + b"\x00" * 8)
    with pytest.raises(ProtocolViolation):
        d.next_event()


def test_encoding_impossible_values_is_a_local_error():
    with pytest.raises(pg.LocalProtocolError):
        pg.Query("a\0b").encode()
    with pytest.raises(pg.LocalProtocolError):
        pg.Execute("", 2 ** 40).encode()
    assert issubclass(ProtocolViolation, pg.PostgresProtocolError)
    assert not issubclass(pg.LocalProtocolError, ProtocolViolation)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(list(Direction)), st.booleans())
def test_fuzz_decoder_never_raises_anything_but_protocol_violation(data, direction, split):
    d = Decoder(direction, max_message_size=4096)
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)] if split else [data]
    try:
        for chunk in chunks:
            d.receive_data(chunk)
            for _ in range(len(data) + 2):
                if d.next_event() is NEED_DATA:
                    break
    except ProtocolViolation:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(pg.BACKEND_TYPES)), st.binary(max_size=40)), max_size=8),
       st.integers(min_value=1, max_value=50))
def test_fuzz_splitter_matches_decoder_framing(raw_messages, chunk):
    stream = b"".join(bytes([t]) + struct.pack("!i", len(b) + 4) + b for t, b in raw_messages)
    s = pg.MessageSplitter(pg.BACKEND_TYPES)
    spans = []
    for i in range(0, len(stream), chunk):
        frames = s.feed(stream[i:i + chunk])
        spans += [(t, frames.data[a + 5:e]) for t, a, e in frames.spans]
    assert spans == [(t, b) for t, b in raw_messages]


_FORBIDDEN = {"asyncio", "socket", "ssl", "selectors"}


def test_codec_package_does_no_io():
    package_dir = pathlib.Path(pg.__file__).parent
    offenders = []
    for path in sorted(package_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in _FORBIDDEN]
    assert len(list(package_dir.glob("*.py"))) >= 8
    assert offenders == []
