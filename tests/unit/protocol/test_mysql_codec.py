"""The MySQL codec: byte-exact fixtures, round trips, handshake and auth, commands and result rows."""

from __future__ import annotations

import datetime

import pytest

import reference_proxy.protocol.mysql as my
from reference_proxy.protocol.mysql import Capability, ProtocolViolation, ServerStatus

CLIENT_CAPS = (Capability.LONG_PASSWORD | Capability.LONG_FLAG | Capability.PROTOCOL_41
               | Capability.TRANSACTIONS | Capability.SECURE_CONNECTION | Capability.MULTI_RESULTS
               | Capability.PLUGIN_AUTH | Capability.CONNECT_ATTRS
               | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA)

SCRAMBLE = b"abcdefghijklmnopqrst"

# The greeting of MariaDB 10.11 started with --no-defaults (charset 8, capability bit 0 clear, so the
# last 4 reserved bytes carry MariaDB's extended capabilities 0x1d), written out field by field.
MARIADB_GREETING = bytes.fromhex(
    "0a" + b"5.5.5-10.11.19-MariaDB-0+deb12u1".hex() + "00"
    "05000000" + b"abcdefgh".hex() + "00" "fef7" "08" "0200" "ff81" "15" "000000000000" "1d000000"
    + b"ijklmnopqrst".hex() + "00" + b"mysql_native_password".hex() + "00")


def test_mariadb_greeting_fixture_decodes():
    assert len(MARIADB_GREETING) == 100
    hello = my.HandshakeV10.decode(MARIADB_GREETING)
    assert hello.server_version == "5.5.5-10.11.19-MariaDB-0+deb12u1"
    assert hello.connection_id == 5
    assert hello.auth_plugin_data == SCRAMBLE
    assert hello.capabilities == 0x81FFF7FE
    assert hello.capabilities & Capability.PLUGIN_AUTH and not hello.capabilities & Capability.LONG_PASSWORD
    assert hello.character_set == 8
    assert hello.status_flags == ServerStatus.AUTOCOMMIT
    assert hello.auth_plugin_name == "mysql_native_password"
    assert hello.mariadb_capabilities == 0x1D
    assert hello.encode() == MARIADB_GREETING
    assert my.decode_greeting(MARIADB_GREETING) == hello


def test_greeting_may_be_an_error():
    err = my.ErrPacket(1040, "Too many connections", "08004")
    assert my.decode_greeting(err.encode()) == err


@pytest.mark.parametrize("caps", [
    0x81FFF7FE | Capability.LONG_PASSWORD,
    Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION,
    Capability.PROTOCOL_41 | Capability.PLUGIN_AUTH | Capability.SECURE_CONNECTION,
])
def test_greeting_round_trip(caps):
    hello = my.HandshakeV10("8.0.32", 77, SCRAMBLE, caps, 255, 2,
                            "caching_sha2_password" if caps & Capability.PLUGIN_AUTH else "")
    assert my.HandshakeV10.decode(hello.encode()) == hello


def test_handshake_response_round_trips_and_fields():
    full = my.HandshakeResponse41(
        CLIENT_CAPS | Capability.CONNECT_WITH_DB, "app", my.native_password_scramble("pw", SCRAMBLE), "shop",
        "mysql_native_password", (("_client_name", "pymysql"), ("program_name", "é")), 1 << 24, 45)
    assert my.decode_client_handshake(full.encode()) == full
    assert full.attribute("program_name") == "é" and full.attribute("nope") is None
    short = my.HandshakeResponse41(
        Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION | Capability.LONG_PASSWORD, "root",
        b"\x01" * 20)
    assert my.HandshakeResponse41.decode(short.encode()) == short
    old = my.HandshakeResponse41(Capability.PROTOCOL_41 | Capability.LONG_PASSWORD, "u", b"secret")
    assert my.HandshakeResponse41.decode(old.encode()) == old
    mariadb = my.HandshakeResponse41(Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION, "u",
                                     mariadb_capabilities=0x1D)
    assert my.HandshakeResponse41.decode(mariadb.encode()).mariadb_capabilities == 0x1D


def test_handshake_response_byte_fixture():
    caps = (Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION | Capability.CONNECT_WITH_DB
            | Capability.PLUGIN_AUTH)
    wire = my.HandshakeResponse41(caps, "bob", b"\xaa\xbb", "db", "mysql_native_password", (), 0x01000000,
                                  33).encode()
    assert wire == (bytes.fromhex("08820800" "00000001" "21") + b"\0" * 23 + b"bob\0" + b"\x02\xaa\xbb"
                    + b"db\0" + b"mysql_native_password\0")


def test_ssl_request_is_32_bytes_and_told_apart():
    req = my.SSLRequest(CLIENT_CAPS | Capability.SSL, 1 << 24, 45)
    wire = req.encode()
    assert len(wire) == 32 and wire[:4] == int(CLIENT_CAPS | Capability.SSL).to_bytes(4, "little")
    assert wire[9:] == b"\0" * 23
    assert my.decode_client_handshake(wire) == req
    no_ssl = my.HandshakeResponse41(CLIENT_CAPS, "", b"")
    assert isinstance(my.decode_client_handshake(no_ssl.encode()), my.HandshakeResponse41)


@pytest.mark.parametrize("payload, code", [
    (b"\x09" + MARIADB_GREETING[1:], 1043),
    (MARIADB_GREETING[:40], 1043),
    (bytes(32), 1043),                                   # no PROTOCOL_41
    (int(CLIENT_CAPS).to_bytes(4, "little") + bytes(28) + b"user", 1043),   # user not NUL-terminated
])
def test_bad_handshakes_are_1043(payload, code):
    with pytest.raises(ProtocolViolation) as e:
        if payload[:1] in (b"\x09", b"\x0a"):
            my.HandshakeV10.decode(payload)
        else:
            my.decode_client_handshake(payload)
    assert e.value.error_code == code and e.value.sqlstate == "08S01"


def test_scrambles_match_known_vectors():
    nonce = b"12345678901234567890"
    assert my.native_password_scramble(b"secret", nonce).hex() == "0f8b9033e0897c0a8338ebe3dea9010dda47ab56"
    with_nul = my.native_password_scramble("secret", nonce + b"\0")
    assert with_nul == my.native_password_scramble("secret", nonce)
    assert my.caching_sha2_scramble(b"secret", nonce).hex() == (
        "51ecd6dedbd34d5445c0a190d4f51acf0d23b94db66c91f3f789faa9193751cd")
    assert my.native_password_scramble("", nonce) == b"" == my.caching_sha2_scramble("", nonce)


def test_scrambles_verify_against_stored_hashes():
    stored = my.native_password_hash("pw")
    assert my.native_password_verify(my.native_password_scramble("pw", SCRAMBLE), SCRAMBLE, stored)
    assert not my.native_password_verify(my.native_password_scramble("px", SCRAMBLE), SCRAMBLE, stored)
    assert not my.native_password_verify(b"short", SCRAMBLE, stored)
    assert my.native_password_verify(b"", SCRAMBLE, b"")
    stored2 = my.caching_sha2_password_hash("pw")
    assert my.caching_sha2_verify(my.caching_sha2_scramble("pw", SCRAMBLE), SCRAMBLE, stored2)
    assert not my.caching_sha2_verify(my.caching_sha2_scramble("pw", SCRAMBLE[::-1]), SCRAMBLE, stored2)


def test_auth_packets():
    switch = my.AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\0")
    assert switch.encode() == b"\xfemysql_native_password\0" + SCRAMBLE + b"\0"
    assert switch.nonce == SCRAMBLE
    assert my.decode_auth_reply(switch.encode()) == switch
    assert my.AuthSwitchResponse.decode(b"token\0").encode() == b"token\0"
    fast = my.decode_auth_reply(b"\x01\x03")
    assert fast == my.AuthMoreData(my.FAST_AUTH_SUCCESS) and fast.is_fast_auth_success
    full = my.decode_auth_reply(b"\x01\x04")
    assert full.is_perform_full_authentication and not full.is_fast_auth_success
    assert my.decode_auth_reply(b"\x00\x00\x00\x02\x00\x00\x00") == my.OkPacket()
    assert isinstance(my.decode_auth_reply(my.ErrPacket(1045, "Access denied").encode()), my.ErrPacket)
    with pytest.raises(ProtocolViolation):
        my.decode_auth_reply(b"\x05")


def test_ok_err_eof_byte_fixtures():
    assert my.OkPacket().encode() == bytes.fromhex("00 00 00 0200 0000")
    assert my.OkPacket.decode(bytes.fromhex("00 00 00 0200 0000")) == my.OkPacket()
    ok = my.OkPacket(3, 70000, ServerStatus.IN_TRANS | ServerStatus.AUTOCOMMIT, 1, "Rows matched: 3")
    assert ok.encode() == bytes.fromhex("00 03 fd701101 0300 0100") + b"\x0fRows matched: 3"
    assert my.decode_response(ok.encode()) == ok
    assert my.OkPacket.decode(b"\x00\x01\x00\x02\x00\x00\x00legacy info") .info == "legacy info"
    assert my.EofPacket().encode() == bytes.fromhex("fe 0000 0200")
    assert my.decode_response(bytes.fromhex("fe 0000 0200")) == my.EofPacket(0, 2)
    assert my.decode_response(b"\xfe") == my.EofPacket(0, 0)
    err = my.ErrPacket(1045, "Access denied for user 'u'@'localhost'", "28000")
    assert err.encode() == b"\xff\x15\x04#28000Access denied for user 'u'@'localhost'"
    assert my.decode_response(err.encode()) == err
    assert my.ErrPacket.decode(b"\xff\x15\x04no state") == my.ErrPacket(1045, "no state", "")
    assert my.ErrPacket(0xFFFF, "").is_progress_report


def test_ok_with_session_tracking():
    caps = CLIENT_CAPS | Capability.SESSION_TRACK
    state = b"\x00\x11\x09time_zone\x06+02:00"
    ok = my.OkPacket(0, 0, ServerStatus.AUTOCOMMIT | ServerStatus.SESSION_STATE_CHANGED, 0, "", state)
    assert ok.encode(caps) == bytes.fromhex("00 00 00 0240 0000 00 13") + state
    assert my.OkPacket.decode(ok.encode(caps), caps) == ok
    with pytest.raises(my.LocalProtocolError):
        ok.encode(CLIENT_CAPS)


def test_deprecate_eof_terminator_is_an_ok():
    wire = bytes.fromhex("fe 00 00 0200 0000")
    assert my.is_result_set_terminator(wire, Capability.DEPRECATE_EOF)
    assert my.decode_response(wire, Capability.DEPRECATE_EOF) == my.OkPacket(header=0xFE)
    assert my.OkPacket(header=0xFE).encode() == wire
    assert my.is_eof_packet(wire)  # short enough to pass for an EOF: the capability decides
    with pytest.raises(ProtocolViolation, match="trailing"):
        my.decode_response(wire, 0)
    long_ok = my.OkPacket(info="Records: 1000  Duplicates: 0  Warnings: 0", header=0xFE).encode()
    assert my.is_result_set_terminator(long_ok, Capability.DEPRECATE_EOF)
    assert not my.is_result_set_terminator(long_ok, 0)
    with pytest.raises(ProtocolViolation, match="too long"):
        my.decode_response(long_ok, 0)


def test_local_infile_request():
    req = my.LocalInfileRequest("/tmp/data.csv")
    assert req.encode() == b"\xfb/tmp/data.csv"
    assert my.decode_response(req.encode()) == req


COMMANDS = [
    my.ComQuit(), my.ComPing(), my.ComResetConnection(),
    my.ComQuery.from_sql("SELECT 'é'"), my.ComQuery(b"SELECT '\xe9'"),
    my.ComInitDb("shop"), my.ComFieldList("t", "c%"), my.ComSetOption(my.SetOption.MULTI_STATEMENTS_OFF),
    my.ComChangeUser("u2", b"\x01" * 20, "db", 45, "mysql_native_password", (("a", "b"),)),
    my.ComChangeUser("u3", b"", "", None),
    my.ComStmtPrepare(b"SELECT ?"), my.ComStmtExecute(7, 0, 1, b"\x00\x01\x08\x00" + b"\x05" + bytes(7)),
    my.ComStmtSendLongData(7, 0, b"chunk"), my.ComStmtClose(7), my.ComStmtReset(my.LAST_PREPARED_STATEMENT),
    my.ComStmtFetch(7, 100), my.OtherCommand(0x09),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_command_round_trip(command):
    assert my.decode_command(command.encode(CLIENT_CAPS), CLIENT_CAPS) == command


def test_command_byte_fixtures():
    assert my.ComQuery.from_sql("select 1").encode() == b"\x03select 1"
    assert my.ComQuery(b"select 1").sql == "select 1"
    assert my.ComQuery(b"\xe9").sql.encode("utf-8", "surrogateescape") == b"\xe9"
    assert my.ComPing().encode() == b"\x0e"
    assert my.ComQuit().encode() == b"\x01"
    assert my.ComResetConnection().encode() == b"\x1f"
    assert my.ComInitDb("db").encode() == b"\x02db"
    assert my.ComStmtClose(1).encode() == b"\x19\x01\x00\x00\x00"
    assert my.ComStmtReset(1).encode() == b"\x1a\x01\x00\x00\x00"
    assert my.ComSetOption(0).encode() == b"\x1b\x00\x00"
    assert my.ComStmtExecute(9).with_statement_id(3).encode() == b"\x17\x03\x00\x00\x00\x00\x01\x00\x00\x00"


@pytest.mark.parametrize("payload, why", [
    (b"", "empty"),
    (b"\x0eX", "trailing"),
    (b"\x19\x01\x00", "truncated"),
    (b"\x04table", "NUL"),
    (b"\x11user\x00\x05ab", "truncated"),
])
def test_malformed_commands(payload, why):
    with pytest.raises(ProtocolViolation, match=why):
        my.decode_command(payload, CLIENT_CAPS)


def test_column_definition_and_text_rows():
    col = my.ColumnDefinition41("id", my.ColumnType.LONG, "shop", "t", "t", "id", 63, 11, 0x4203, 0)
    assert my.ColumnDefinition41.decode(col.encode()) == col
    assert col.encode().startswith(b"\x03def\x04shop\x01t\x01t\x02id\x02id\x0c\x3f\x00\x0b\x00\x00\x00\x03")
    listed = my.ColumnDefinition41("c", my.ColumnType.VAR_STRING, default_value=b"")
    assert my.ColumnDefinition41.decode(listed.encode()) == listed
    row = my.TextRow((b"1", None, b"", b"x" * 300))
    assert row.encode()[:4] == b"\x011\xfb\x00"
    assert my.TextRow.decode(row.encode(), 4) == row
    with pytest.raises(ProtocolViolation, match="3 columns"):
        my.TextRow.decode(row.encode(), 3)
    assert my.ColumnCount.decode(b"\x03") == my.ColumnCount(3)
    assert my.ColumnCount.decode(b"\x03\x01") == my.ColumnCount(3)
    with pytest.raises(ProtocolViolation):
        my.ColumnCount.decode(b"\x00")


def test_prepare_ok_and_binary_rows():
    ok = my.StmtPrepareOk(5, 2, 1, 0)
    assert ok.encode() == bytes.fromhex("00 05000000 0200 0100 00 0000")
    assert my.StmtPrepareOk.decode(ok.encode()) == ok
    types = (my.ColumnType.LONGLONG, my.ColumnType.VAR_STRING, my.ColumnType.DOUBLE, my.ColumnType.DATETIME,
             my.ColumnType.TINY)
    values = (my.encode_binary_value(types[0], -5), None, my.encode_binary_value(types[2], 1.5),
              my.encode_binary_value(types[3], datetime.datetime(2026, 11, 30, 23, 1, 2, 3)), None)
    row = my.BinaryRow(values)
    wire = row.encode(types)
    assert wire[:2] == b"\x00\x48"  # NULLs at columns 1 and 4: bits 3 and 6, after the 2-bit offset
    assert my.BinaryRow.decode(wire, types) == row
    decoded = [None if v is None else my.decode_binary_value(t, v) for t, v in zip(types, values)]
    assert decoded == [-5, None, 1.5, datetime.datetime(2026, 11, 30, 23, 1, 2, 3), None]
    with pytest.raises(ProtocolViolation):
        my.BinaryRow.decode(wire[:-1], types)


@pytest.mark.parametrize("column_type, value, unsigned", [
    (my.ColumnType.TINY, -1, False), (my.ColumnType.TINY, 255, True), (my.ColumnType.SHORT, -300, False),
    (my.ColumnType.LONG, 2 ** 31 - 1, False), (my.ColumnType.LONGLONG, 2 ** 64 - 1, True),
    (my.ColumnType.FLOAT, 0.5, False), (my.ColumnType.DOUBLE, -2.25, False),
    (my.ColumnType.VAR_STRING, "héllo", False), (my.ColumnType.BLOB, b"\x00\xff", False),
    (my.ColumnType.NEWDECIMAL, "12.50", False), (my.ColumnType.DATE, datetime.date(2024, 2, 29), False),
    (my.ColumnType.DATETIME, datetime.datetime(2024, 2, 29, 0, 0), False),
    (my.ColumnType.TIME, datetime.timedelta(days=-1, hours=3), False),
    (my.ColumnType.TIME, datetime.timedelta(hours=838, microseconds=5), False),
])
def test_binary_value_round_trip(column_type, value, unsigned):
    raw = my.encode_binary_value(column_type, value, unsigned)
    assert my.decode_binary_value(column_type, raw, unsigned) == value


def test_binary_value_errors():
    with pytest.raises(my.LocalProtocolError):
        my.encode_binary_value(my.ColumnType.TINY, 300)
    with pytest.raises(ProtocolViolation):
        my.decode_binary_value(my.ColumnType.DATE, b"\x00\x00\x0d\x01")
    with pytest.raises(ProtocolViolation):
        my.decode_binary_value(my.ColumnType.LONG, b"\x00")
    assert my.decode_binary_value(my.ColumnType.DATETIME, b"") is None


def test_execute_parameters():
    types = ((my.ColumnType.LONGLONG, True), (my.ColumnType.VAR_STRING, False), (my.ColumnType.NULL, False))
    seven = my.encode_binary_value(my.ColumnType.LONGLONG, 7, True)
    params = my.ExecuteParameters(types, (seven, b"abc", None))
    block = params.encode()
    assert block == bytes.fromhex("04 01 0880 fd00 0600") + (7).to_bytes(8, "little") + b"\x03abc"
    execute = my.ComStmtExecute(1, 0, 1, block)
    assert my.decode_command(execute.encode()).parameters(3) == params
    again = my.ExecuteParameters(types, (None, b"x", None), types_sent=False)
    assert again.encode() == b"\x05\x00\x01x"
    assert my.ExecuteParameters.decode(again.encode(), 3, types) == again
    with pytest.raises(ProtocolViolation, match="never sent"):
        my.ExecuteParameters.decode(again.encode(), 3)
    assert my.ComStmtExecute(1).parameters(0) == my.ExecuteParameters((), ())


def test_errors_carry_the_err_to_answer_with():
    e = ProtocolViolation("x")
    assert (e.error_code, e.sqlstate) == (my.ER_MALFORMED_PACKET, "08S01")
    assert issubclass(ProtocolViolation, my.MySQLProtocolError)
    assert not issubclass(my.LocalProtocolError, ProtocolViolation)
    with pytest.raises(my.LocalProtocolError):
        my.ErrPacket(1, "x", "toolong").encode()
    with pytest.raises(my.LocalProtocolError):
        my.ComInitDb("a").encode() and my.ComFieldList("a\0b").encode()
