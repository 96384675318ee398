"""MySQL packet framing: headers, sequence ids, 16 MiB continuation packets, the splitter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_proxy.protocol.mysql as my
from reference_proxy.protocol.mysql import (
    MAX_PACKET_PAYLOAD,
    NEED_DATA,
    PacketReader,
    PacketSplitter,
    ProtocolViolation,
)


def test_small_packet_bytes():
    assert my.encode_packet(my.ComPing().encode(), 0) == (b"\x01\x00\x00\x00\x0e", 1)
    assert my.encode_packet(b"", 7) == (b"\x00\x00\x00\x07", 8)
    assert my.encode_packet(b"x", 255) == (b"\x01\x00\x00\xffx", 0)
    assert my.next_sequence_id(255) == 0
    with pytest.raises(my.LocalProtocolError):
        my.encode_packet(b"", 256)


@pytest.mark.parametrize("size, chunks", [
    (MAX_PACKET_PAYLOAD - 1, [MAX_PACKET_PAYLOAD - 1]),
    (MAX_PACKET_PAYLOAD, [MAX_PACKET_PAYLOAD, 0]),
    (MAX_PACKET_PAYLOAD + 10, [MAX_PACKET_PAYLOAD, 10]),
    (2 * MAX_PACKET_PAYLOAD, [MAX_PACKET_PAYLOAD, MAX_PACKET_PAYLOAD, 0]),
])
def test_continuation_split_and_join(size, chunks):
    payload = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    wire, next_seq = my.encode_packet(payload, 254)
    assert next_seq == (254 + len(chunks)) & 0xFF
    pos, seqs = 0, []
    for n in chunks:
        assert int.from_bytes(wire[pos:pos + 3], "little") == n
        seqs.append(wire[pos + 3])
        pos += 4 + n
    assert pos == len(wire) and seqs == [(254 + i) & 0xFF for i in range(len(chunks))]
    reader = PacketReader(max_payload=1 << 26, expected_sequence=254)
    reader.receive_data(wire[:-1])
    assert reader.next_packet() is NEED_DATA
    reader.receive_data(wire[-1:] + b"\x00\x00\x00" + bytes([next_seq]))
    assert reader.next_packet() == my.Packet(254, payload)
    assert reader.next_packet() == my.Packet(next_seq, b"")
    splitter = PacketSplitter(max_payload=1 << 26)
    frames = splitter.feed(wire)
    assert [end - start - 4 for _, start, end in frames.spans] == chunks
    assert [frames.is_continued(i) for i in range(len(chunks))] == [n == MAX_PACKET_PAYLOAD for n in chunks]
    assert not splitter.in_continuation
    assert b"".join(frames.payload(i) for i in range(len(chunks))) == payload


def test_reader_checks_sequence_ids_and_size():
    reader = PacketReader(expected_sequence=1, what="server")
    reader.receive_data(b"\x01\x00\x00\x02\x00")
    with pytest.raises(ProtocolViolation, match="expected 1") as e:
        reader.next_packet()
    assert (e.value.error_code, e.value.sqlstate) == (my.ER_NET_PACKETS_OUT_OF_ORDER, "08S01")
    with pytest.raises(ProtocolViolation):  # stays broken
        reader.next_packet()
    small = PacketReader(max_payload=10)
    small.receive_data(b"\x0b\x00\x00\x00")
    with pytest.raises(ProtocolViolation, match="over the limit") as e:
        small.next_packet()
    assert e.value.error_code == my.ER_NET_PACKET_TOO_LARGE


def test_reader_follows_on_and_resets_per_command():
    reader = PacketReader(expected_sequence=0, what="client")
    first, _ = my.encode_packet(my.ComQuery.from_sql("select 1").encode(), 0)
    reader.receive_data(first)
    assert reader.next_packet() == my.Packet(0, b"\x03select 1")
    assert reader.expected_sequence == 1
    reader.expected_sequence = 0  # a new command
    reader.receive_data(my.encode_packet(b"\x0e", 0)[0])
    assert reader.next_packet().payload == b"\x0e"
    loose = PacketReader()
    loose.receive_data(b"\x00\x00\x00\x09\x00\x00\x00\x0a")
    assert [loose.next_packet().sequence_id for _ in range(2)] == [9, 10]
    assert loose.take_buffered() == b"" and loose.buffered == 0


def test_splitter_keeps_partial_packets():
    stream = b"".join(my.encode_packet(p, i + 1)[0] for i, p in enumerate([b"\x01", b"abc", b"", b"xyz"]))
    s = PacketSplitter()
    frames = s.feed(stream[:-2])
    assert [seq for seq, _, _ in frames.spans] == [1, 2, 3]
    assert frames.data == stream[:len(frames.data)]
    assert s.buffered == len(stream) - 2 - len(frames.data)
    frames = s.feed(stream[-2:])
    assert frames.payload(0) == b"xyz" and s.buffered == 0
    assert s.feed(b"").spans == []


def test_splitter_tracks_continuations_and_limits():
    s = PacketSplitter(max_payload=MAX_PACKET_PAYLOAD + 5)
    s.feed(b"\xff\xff\xff\x00" + bytes(MAX_PACKET_PAYLOAD))
    assert s.in_continuation
    with pytest.raises(ProtocolViolation, match="over the limit") as e:
        s.feed(b"\x06\x00\x00\x01" + bytes(6))
    assert e.value.error_code == my.ER_NET_PACKET_TOO_LARGE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(min_value=1, max_value=50),
       st.integers(min_value=0, max_value=255))
def test_fuzz_splitter_matches_reader(payloads, chunk, first_seq):
    stream, seq = b"", first_seq
    for p in payloads:
        wire, seq = my.encode_packet(p, seq)
        stream += wire
    s = PacketSplitter()
    r = PacketReader(expected_sequence=first_seq)
    split, read = [], []
    for i in range(0, len(stream), chunk):
        frames = s.feed(stream[i:i + chunk])
        split += [frames.payload(k) for k in range(len(frames.spans))]
        r.receive_data(stream[i:i + chunk])
        while (packet := r.next_packet()) is not NEED_DATA:
            read.append(packet.payload)
    assert split == read == payloads


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(0, 255)), st.booleans())
def test_fuzz_reader_raises_only_protocol_violation(data, expected, split):
    r = PacketReader(max_payload=4096, expected_sequence=expected)
    s = PacketSplitter(max_payload=4096)
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)] if split else [data]
    try:
        for c in chunks:
            s.feed(c)
            r.receive_data(c)
            while r.next_packet() is not NEED_DATA:
                pass
    except ProtocolViolation:
        pass


def test_a_whole_packet_in_one_read_is_taken_as_it_is_and_anything_else_is_left_to_next_packet():
    reader = PacketReader(expected_sequence=0)
    data = my.encode_packet(b"\x03SELECT 1", 0)[0]
    assert reader.whole_packet(data) == my.Packet(0, b"\x03SELECT 1")
    assert reader.expected_sequence == 1 and reader.buffered == 0
    reader.expected_sequence = 0
    assert reader.whole_packet(data[:5]) is None                 # not whole yet
    assert reader.whole_packet(data + data) is None              # two packets
    assert reader.whole_packet(my.encode_packet(b"\x01", 3)[0]) is None  # out of sequence
    with pytest.raises(ProtocolViolation):
        reader.receive_data(my.encode_packet(b"\x01", 3)[0])
        reader.next_packet()
    small = PacketReader(max_payload=4, expected_sequence=0)
    assert small.whole_packet(data) is None                      # over the limit: next_packet refuses it
    buffered = PacketReader(expected_sequence=0)
    buffered.receive_data(data[:2])
    assert buffered.whole_packet(data[2:]) is None               # bytes held from before
