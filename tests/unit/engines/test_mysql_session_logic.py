"""The MySQL session's decisions without sockets: following replies, the release rule, pins, tracked state."""

from __future__ import annotations

import pytest

from reference_proxy.contracts import ReleaseState
from reference_proxy.engines.mysql.tracking import (
    BINARY_PREPARE_REASON,
    RESET_SESSION_SETTINGS,
    SET_OPTION_REASON,
    UNRESOLVED_SETTING_REASON,
    ReplyRelay,
    SessionTracker,
)
from reference_proxy.pinning import PinDecision
from reference_proxy.protocol.mysql import (
    Capability,
    ColumnDefinition41,
    Command,
    EofPacket,
    ErrPacket,
    OkPacket,
    ProtocolViolation,
    ServerStatus,
    encode_packet,
)

CAPS = (Capability.PROTOCOL_41 | Capability.SECURE_CONNECTION | Capability.TRANSACTIONS
        | Capability.MULTI_RESULTS | Capability.PLUGIN_AUTH)
AUTOCOMMIT = int(ServerStatus.AUTOCOMMIT)
IN_TRANS = int(ServerStatus.IN_TRANS)
MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
MAX = 16 * 1024 * 1024


def packets(*payloads: bytes, first: int = 1) -> bytes:
    out, sequence = b"", first
    for payload in payloads:
        data, sequence = encode_packet(payload, sequence)
        out += data
    return out


def result_set(value: bytes, status: int = AUTOCOMMIT) -> list[bytes]:
    column = ColumnDefinition41("v", 253).encode(CAPS)
    return [b"\x01", column, EofPacket(status_flags=status).encode(CAPS),
            bytes([len(value)]) + value, EofPacket(status_flags=status).encode(CAPS)]


def pin_user_variables(sql: str) -> PinDecision | None:
    return PinDecision("A user variable was set.", "user_variable") if "@" in sql else None


# -- ReplyRelay --------------------------------------------------------------------------------
def test_a_result_set_is_forwarded_byte_for_byte_even_when_split_anywhere():
    data = packets(*result_set(b"hello"))
    for cut in range(1, len(data)):
        relay = ReplyRelay(Command.QUERY, CAPS, MAX)
        out = relay.feed(data[:cut])
        assert not relay.done
        out += relay.feed(data[cut:])
        assert out == data and relay.done
        assert relay.status_flags == AUTOCOMMIT
        assert relay.next_sequence == 6


def test_whole_packets_and_split_ones_are_followed_alike():
    # Rows that start like an EOF but are longer, two results in one reply: the whole-packet scan
    # and the splitter it hands over to must agree wherever the reads end.
    long_fe_row = b"\xfe" + b"r" * 20
    first = result_set(b"a", status=AUTOCOMMIT | MORE)
    first[3] = long_fe_row
    second = result_set(b"b")
    data = packets(*first, *second)
    for cut in range(1, len(data), 3):
        for cut2 in range(cut, len(data), 7):
            relay = ReplyRelay(Command.QUERY, CAPS, MAX)
            out = relay.feed(data[:cut]) + relay.feed(data[cut:cut2]) + relay.feed(data[cut2:])
            assert out == data and relay.done and relay.status_flags == AUTOCOMMIT
            assert relay.next_sequence == 11


def test_a_multi_statement_reply_ends_only_without_more_results():
    relay = ReplyRelay(Command.QUERY, CAPS, MAX)
    relay.feed(packets(OkPacket(status_flags=AUTOCOMMIT | MORE).encode(CAPS)))
    assert not relay.done
    relay.feed(packets(*result_set(b"x"), first=2))
    assert relay.done and relay.status_flags == AUTOCOMMIT


def test_an_err_ends_the_reply_without_a_status():
    relay = ReplyRelay(Command.QUERY, CAPS, MAX)
    relay.feed(packets(ErrPacket(1064, "syntax").encode(CAPS)))
    assert relay.done and relay.status_flags is None and relay.error.error_code == 1064


def test_bytes_after_a_complete_reply_break_the_protocol():
    relay = ReplyRelay(Command.PING, CAPS, MAX)
    ok = OkPacket().encode(CAPS)
    with pytest.raises(ProtocolViolation):
        relay.feed(packets(ok, ok))


def test_a_local_infile_request_is_held_back_and_so_is_the_rest_of_the_reply():
    relay = ReplyRelay(Command.QUERY, CAPS, MAX)
    assert relay.feed(packets(b"\xfb/etc/passwd")) == b""
    assert relay.local_infile and relay.infile_sequence == 1 and not relay.done
    assert relay.feed(packets(OkPacket().encode(CAPS), first=3)) == b""
    assert relay.done


def test_a_continued_payload_is_joined_before_the_tracker_reads_it():
    # A row one byte over a packet whose continuation looks like an EOF on its own.
    size = MAX + 5
    tail = EofPacket(status_flags=AUTOCOMMIT).encode(CAPS)
    big_row = b"\xfe" + (size - 9).to_bytes(8, "little") + b"a" * (size - 9 - len(tail)) + tail
    payloads = result_set(b"x")
    payloads[3] = big_row
    data = packets(*payloads)
    for cut in (100, MAX + 4, MAX + 10):
        relay = ReplyRelay(Command.QUERY, CAPS, 64 * 1024 * 1024)
        out = relay.feed(data[:cut])
        assert not relay.done
        assert out + relay.feed(data[cut:]) == data and relay.done
    relay = ReplyRelay(Command.QUERY, CAPS, 64 * 1024 * 1024)
    assert relay.feed(data) == data and relay.done
    assert relay.status_flags == AUTOCOMMIT


def test_rows_end_at_an_err_and_progress_reports_do_not_end_anything():
    relay = ReplyRelay(Command.QUERY, CAPS, MAX)
    payloads = result_set(b"x")[:4]
    progress = b"\xff\xff\xff" + b"\x01\x01\x00\x00\x00\x00\x00"
    relay.feed(packets(*payloads, progress))
    assert not relay.done
    relay.feed(packets(ErrPacket(1317, "Query execution was interrupted", "70100").encode(CAPS), first=7))
    assert relay.done and relay.error.error_code == 1317 and relay.status_flags == AUTOCOMMIT


def test_a_binary_result_with_a_cursor_ends_after_its_metadata():
    column = ColumnDefinition41("v", 3).encode(CAPS)
    eof = EofPacket(status_flags=AUTOCOMMIT | int(ServerStatus.CURSOR_EXISTS)).encode(CAPS)
    relay = ReplyRelay(Command.STMT_EXECUTE, CAPS, MAX)
    relay.feed(packets(b"\x01", column, eof))
    assert relay.done


def test_other_replies_and_deprecate_eof_go_through_the_codec_tracker():
    prepare_ok = b"\x00" + (7).to_bytes(4, "little") + (0).to_bytes(2, "little") + (0).to_bytes(2, "little") \
        + b"\x00" + (0).to_bytes(2, "little")
    relay = ReplyRelay(Command.STMT_PREPARE, CAPS, MAX)
    assert relay.feed(packets(prepare_ok)) and relay.done
    caps = CAPS | Capability.DEPRECATE_EOF
    relay = ReplyRelay(Command.QUERY, caps, MAX)
    column = ColumnDefinition41("v", 253).encode(caps)
    relay.feed(packets(b"\x01", column, b"\x01x", OkPacket(header=0xFE).encode(caps)))
    assert relay.done


@pytest.mark.parametrize("reply", [
    [b"\xfe\x00\x00\x02\x00"],                                  # an EOF where nothing began
    [b"\x01", ColumnDefinition41("v", 253).encode(CAPS), b"\x01x"],  # a row where the EOF belongs
    [b"\x00\xfc"],                                                # an OK cut short
])
def test_malformed_replies_break_the_protocol(reply):
    with pytest.raises(ProtocolViolation):
        ReplyRelay(Command.QUERY, CAPS, MAX).feed(packets(*reply))


# -- SessionTracker --------------------------------------------------------------------------
def test_release_rule_follows_the_status_flags():
    tracker = SessionTracker(lambda sql: None)
    assert tracker.at_release_point
    tracker.reply_done(AUTOCOMMIT | IN_TRANS)
    assert not tracker.at_release_point and tracker.in_transaction
    tracker.reply_done(None)  # an ERR inside the transaction: still open
    assert not tracker.at_release_point
    tracker.reply_done(AUTOCOMMIT)
    assert tracker.at_release_point and tracker.release_state() is ReleaseState.CLEAN
    tracker.reply_done(AUTOCOMMIT | MORE)
    assert not tracker.at_release_point


def test_autocommit_off_is_tracked_and_an_untracked_change_keeps_the_backend():
    tracker = SessionTracker(lambda sql: None)
    pin, change = tracker.inspect(Command.QUERY, b"\x03SET autocommit = 0", "app")
    assert pin is None and change.variables == {"autocommit": "OFF"}
    tracker.apply(change)
    tracker.reply_done(0)
    assert tracker.at_release_point and tracker.variant({}) == (("autocommit", "OFF"),)
    assert tracker.variant(RESET_SESSION_SETTINGS) == (("autocommit", "OFF"),)
    other = SessionTracker(lambda sql: None)
    other.reply_done(0)  # the server says autocommit is off, the statements never did
    assert not other.at_release_point


def test_binary_prepare_and_classified_sql_pin_once():
    tracker = SessionTracker(pin_user_variables)
    assert tracker.inspect(Command.QUERY, b"\x03SELECT 1", "app") == (None, None)
    pin, change = tracker.inspect(Command.QUERY, b"\x03SET @a = 1", "app")
    assert pin is not None and pin.reason == "A user variable was set." and pin.sql == "SET @a = 1"
    assert change is None
    tracker.pinned_by(pin)
    assert tracker.inspect(Command.STMT_PREPARE, b"\x16SELECT ?", "app") == (None, None)  # pinned already
    assert not tracker.at_release_point
    other = SessionTracker(lambda sql: None)
    assert other.inspect(Command.STMT_PREPARE, b"\x16SELECT ?", "app")[0].reason == BINARY_PREPARE_REASON
    assert SessionTracker(lambda sql: None).inspect(Command.SET_OPTION, b"\x1b\x01\x00", "app")[0].reason \
        == SET_OPTION_REASON


def test_a_tracked_setting_the_text_cannot_reveal_pins():
    tracker = SessionTracker(lambda sql: None)
    pin, _ = tracker.inspect(Command.QUERY, b"\x03SET time_zone = @@global.time_zone", "app")
    assert pin is not None and pin.reason == UNRESOLVED_SETTING_REASON


def test_exclude_variable_sets_reaches_the_classifier_and_spares_unresolved_settings():
    """SessionPinningFilters = EXCLUDE_VARIABLE_SETS: asked per statement, so a reload takes effect."""
    from reference_proxy.engines.mysql.pinning import classify

    excluding = [True]
    tracker = SessionTracker(classify, exclude_variable_sets=lambda: excluding[0])
    assert tracker.inspect(Command.QUERY, b"\x03SET @a = 1", "app")[0] is None
    assert tracker.inspect(Command.QUERY, b"\x03SET time_zone = @@global.time_zone", "app")[0] is None
    assert tracker.inspect(Command.QUERY, b"\x03SELECT GET_LOCK('x', 1)", "app")[0] is not None
    excluding[0] = False
    assert tracker.inspect(Command.QUERY, b"\x03SET @a = 1", "app")[0] is not None


def test_schema_changes_are_tracked_changes():
    tracker = SessionTracker(lambda sql: None)
    assert tracker.inspect(Command.INIT_DB, b"\x02other", "app")[1].schema == "other"
    assert tracker.inspect(Command.QUERY, b"\x03USE `my db`", "app")[1].schema == "my db"
    assert tracker.inspect(Command.QUERY, b"\x03DROP DATABASE app", "app")[1].schema == ""
    assert tracker.inspect(Command.QUERY, b"\x03SELECT 'USE a'", "app") == (None, None)


def test_the_lexing_follows_the_server_status():
    seen: list[dict] = []
    tracker = SessionTracker(lambda sql, **options: seen.append(options))
    tracker.inspect(Command.QUERY, b"\x03SELECT 1", "app")
    tracker.reply_done(AUTOCOMMIT | int(ServerStatus.ANSI_QUOTES))
    tracker.inspect(Command.QUERY, b"\x03SELECT 1", "app")
    assert seen[0] == {} and seen[1]["ansi_quotes"] is True


def test_what_a_leaving_client_costs_its_backend():
    tracker = SessionTracker(lambda sql: None)
    assert tracker.release_state_if_client_leaves(mid_reply=False) is ReleaseState.CLEAN
    assert tracker.release_state_if_client_leaves(mid_reply=True) is ReleaseState.BROKEN
    tracker.state_changed = True
    assert tracker.release_state_if_client_leaves(mid_reply=False) is ReleaseState.DIRTY
    assert tracker.release_state() is ReleaseState.DIRTY
    tracker.backend_released()
    tracker.reply_done(AUTOCOMMIT | IN_TRANS)
    assert tracker.release_state_if_client_leaves(mid_reply=False) is ReleaseState.BROKEN
    tracker.reset()
    tracker.pinned_by(SessionTracker(pin_user_variables).inspect(Command.QUERY, b"\x03SET @x = 1", "a")[0])
    assert tracker.release_state_if_client_leaves(mid_reply=False) is ReleaseState.DIRTY
    tracker.reset()
    assert not tracker.pinned and tracker.at_release_point and tracker.variant({}) == ()


def test_settings_a_reset_session_has_anyway_do_not_split_the_pool():
    tracker = SessionTracker(lambda sql: None)
    _, change = tracker.inspect(Command.QUERY, b"\x03SET NAMES utf8mb4", "app")
    tracker.apply(change)
    assert tracker.variant(RESET_SESSION_SETTINGS) == ()
    assert tracker.variant({}) != ()  # with an InitQuery the proxy cannot know the baseline
    _, change = tracker.inspect(Command.QUERY, b"\x03SET NAMES latin1", "app")
    tracker.apply(change)
    assert ("character_set_client", "latin1") in tracker.variant(RESET_SESSION_SETTINGS)
