"""The hot-path splitter: whole messages returned without copying, any chunking gives the same split."""

from __future__ import annotations

import random
import struct

import pytest

from reference_proxy.protocol.postgres import Parse, Query, decode_frontend
from reference_proxy.protocol.postgres.errors import ProtocolViolation
from reference_proxy.protocol.postgres.framing import BACKEND_TYPES, MessageSplitter, peek_parse, peek_query


def _msg(t: bytes, body: bytes) -> bytes:
    return t + struct.pack("!i", len(body) + 4) + body


def test_a_read_ending_on_a_boundary_is_returned_as_is():
    data = _msg(b"C", b"SELECT 1\x00") + _msg(b"Z", b"I")
    frames = MessageSplitter(BACKEND_TYPES).feed(data)
    assert frames.data is data
    assert [t for t, _, _ in frames.spans] == [ord("C"), ord("Z")]


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking_splits_the_same_messages(seed):
    rng = random.Random(seed)
    messages = [_msg(bytes([rng.choice(b"TDCZEN")]), rng.randbytes(rng.choice([0, 1, 4, 300, 70000])))
                for _ in range(rng.randint(1, 15))]
    stream = b"".join(messages)
    splitter = MessageSplitter(BACKEND_TYPES)
    seen, pos = [], 0
    while pos < len(stream):
        step = rng.choice([1, 2, 3, 5, 6, 7, 100, 4096, 65536])
        frames = splitter.feed(stream[pos:pos + step])
        pos += step
        assert sum(end - start for _, start, end in frames.spans) == len(frames.data)
        seen += [bytes(frames.data[start:end]) for _, start, end in frames.spans]
    assert seen == messages
    assert splitter.buffered == 0


def test_a_long_message_is_held_until_whole_and_bad_headers_still_raise():
    big = _msg(b"D", b"x" * 200_000)
    splitter = MessageSplitter(BACKEND_TYPES)
    chunks = [big[i:i + 1000] for i in range(0, len(big), 1000)]
    for chunk in chunks[:-1]:
        assert splitter.feed(chunk).spans == []
    frames = splitter.feed(chunks[-1])
    assert bytes(frames.data) == big and len(frames.spans) == 1 and splitter.buffered == 0
    with pytest.raises(ProtocolViolation, match="unknown message type"):
        MessageSplitter(BACKEND_TYPES).feed(b"\x01\x00\x00\x00\x04")
    with pytest.raises(ProtocolViolation, match="over the limit"):
        MessageSplitter(BACKEND_TYPES, max_message_size=100).feed(_msg(b"D", b"x" * 200))


def _peek_cases():
    return [Query("SELECT 1").encode(), Query("").encode(), Query("SELECT 'é'").encode(),
            Parse("", "SELECT $1", (23,)).encode(), Parse("_pg3_1", "SELECT 2").encode(),
            Parse("s", "SELECT $1, $2", (23, 25)).encode()]


@pytest.mark.parametrize("message", _peek_cases())
def test_peeking_reads_what_the_decoder_reads(message):
    full = decode_frontend(message[:1], message[5:])
    padded = b"junk" + message + b"more"
    start, end = 4, 4 + len(message)
    if message[:1] == b"Q":
        assert peek_query(padded, start, end) == full.sql
    else:
        assert peek_parse(padded, start, end) == (full.name, full.sql)


@pytest.mark.parametrize("body", [b"SELECT 1", b"SEL\x00ECT\x00", b"\xff\xfe\x00"])
def test_peeking_at_a_malformed_query_leaves_it_to_the_decoder(body):
    message = _msg(b"Q", body)
    assert peek_query(message, 0, len(message)) is None


@pytest.mark.parametrize("body", [b"name\x00SELECT 1\x00\x00\x01", b"name\x00SELECT 1\x00\xff\xff",
                                  b"name\x00SELECT 1", b"\xff\x00SELECT\x00\x00\x00", b"n\x00s\x00\x00\x00x"])
def test_peeking_at_a_malformed_parse_leaves_it_to_the_decoder(body):
    message = _msg(b"P", body)
    assert peek_parse(message, 0, len(message)) is None
