"""Toxics without sockets: shaping is pure, so schedules and pieces are checked exactly."""

from __future__ import annotations

import random

import pytest

from harness.net.toxics import (
    TOXIC_TYPES,
    Bandwidth,
    Blackhole,
    Down,
    Latency,
    LimitData,
    Piece,
    ResetPeer,
    Slicer,
    Stream,
    ToxicError,
    toxic_from_dict,
)


def piece(data: bytes, at: float = 10.0) -> Piece:
    return Piece(data, at, at)


def test_latency_counts_from_arrival_and_jitter_uses_the_injected_rng():
    p = Latency(latency_ms=100).shape(piece(b"x"), None, random.Random(0))[0]
    assert p.not_before == pytest.approx(10.1)
    late = Piece(b"y", arrival=10.0, not_before=10.5)  # already held longer by an earlier toxic
    assert Latency(latency_ms=100).shape(late, None, random.Random(0))[0].not_before == 10.5
    jitter = Latency(latency_ms=100, jitter_ms=50)
    a = [jitter.shape(piece(b"x"), None, random.Random(7))[0].not_before for _ in range(3)]
    b = [jitter.shape(piece(b"x"), None, random.Random(7))[0].not_before for _ in range(3)]
    assert a == b and all(10.05 <= t <= 10.15 for t in a)


def test_bandwidth_spreads_bytes_over_time_at_the_rate():
    bw = Bandwidth(rate_kbps=10)  # 10,000 bytes/s, pieces of 500 bytes
    state = bw.new_state()
    out = bw.shape(piece(b"a" * 2000), state, random.Random())
    assert [len(p.data) for p in out] == [500] * 4
    assert [p.not_before for p in out] == pytest.approx([10.05, 10.1, 10.15, 10.2])
    more = bw.shape(piece(b"b" * 500, at=10.0), state, random.Random())  # queued behind the first
    assert more[0].not_before == pytest.approx(10.25)
    assert b"".join(p.data for p in out) == b"a" * 2000
    assert Bandwidth(rate_kbps=0).holds() and not bw.holds()


def test_slicer_keeps_content_and_order_with_spaced_pieces():
    sl = Slicer(average_size=10, size_variation=3, delay_us=1000)
    data = bytes(range(256)) * 4
    out = sl.shape(piece(data), None, random.Random(3))
    assert b"".join(p.data for p in out) == data
    assert all(7 <= len(p.data) <= 13 for p in out[:-1])
    assert [p.not_before for p in out] == pytest.approx([10.0 + i * 0.001 for i in range(len(out))])


def test_limit_data_trims_and_asks_to_close():
    lim = LimitData(bytes=10)
    state = lim.new_state()
    first = lim.shape(piece(b"123456"), state, random.Random())
    assert [p.data for p in first] == [b"123456"] and not first[0].close_after
    second = lim.shape(piece(b"7890abc"), state, random.Random())
    assert [p.data for p in second] == [b"7890"] and second[0].close_after
    third = lim.shape(piece(b"zzz"), state, random.Random())
    assert third[0].data == b"" and third[0].close_after


def test_defaults_names_and_streams():
    assert Latency(latency_ms=1).name == "latency_both"
    assert Latency(latency_ms=1, stream="downstream").name == "latency_downstream"
    assert Stream.BOTH.covers(Stream.UPSTREAM) and not Stream.DOWNSTREAM.covers(Stream.UPSTREAM)
    assert Blackhole().holds() and not ResetPeer().holds() and not Down().holds()
    assert set(TOXIC_TYPES) == {"latency", "bandwidth", "slicer", "limit_data", "blackhole", "reset_peer", "down"}


@pytest.mark.parametrize("make, message", [
    (lambda: Latency(latency_ms=-1), "latency_ms must be a non-negative number"),
    (lambda: Latency(latency_ms=float("nan")), "non-negative number"),
    (lambda: Bandwidth(rate_kbps="fast"), "rate_kbps"),
    (lambda: Slicer(average_size=0), "at least 1"),
    (lambda: Slicer(average_size=5, size_variation=5), "smaller than average_size"),
    (lambda: Slicer(average_size=2.5), "non-negative integer"),
    (lambda: LimitData(bytes=-3), "non-negative integer"),
    (lambda: ResetPeer(timeout_ms=True), "non-negative number"),
    (lambda: Blackhole(stream="sideways"), "stream must be upstream, downstream or both"),
])
def test_bad_parameters_are_rejected(make, message):
    with pytest.raises(ToxicError, match=message):
        make()


def test_toxic_from_dict_round_trip_and_errors():
    t = toxic_from_dict({"type": "latency", "latency_ms": 50, "stream": "upstream"})
    assert t == Latency(latency_ms=50, stream=Stream.UPSTREAM)
    assert toxic_from_dict(t.to_dict()) == t
    with pytest.raises(ToxicError, match="unknown toxic type 'lag'"):
        toxic_from_dict({"type": "lag"})
    with pytest.raises(ToxicError, match="unknown parameter.*delay"):
        toxic_from_dict({"type": "latency", "delay": 5})
    with pytest.raises(ToxicError, match="needs a 'type'"):
        toxic_from_dict({"latency_ms": 5})
