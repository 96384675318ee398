"""free_port: ports a server binds seconds later are drawn below the kernel's ephemeral range, where
no outgoing connection can take them in the meantime."""

from __future__ import annotations

import itertools
import socket

import pytest

from harness import process


def test_a_free_port_lies_below_the_ephemeral_range_and_can_be_bound():
    low, _ = process.ephemeral_port_range()
    for _ in range(20):
        port = process.free_port()
        assert process.LISTENING_PORTS_LOW <= port < low
        with socket.socket() as s:
            s.bind((process.LOOPBACK, port))


def test_a_drawn_port_in_use_is_passed_over():
    with socket.socket() as held:
        held.bind((process.LOOPBACK, process.LISTENING_PORTS_LOW + 17))
        draws = iter([process.LISTENING_PORTS_LOW + 17, process.LISTENING_PORTS_LOW + 17,
                      process.LISTENING_PORTS_LOW + 23])
        assert process.free_port(draw=lambda low, high: next(draws)) == process.LISTENING_PORTS_LOW + 23


def test_the_ephemeral_range_is_read_from_the_kernel_file_with_a_default(tmp_path):
    f = tmp_path / "range"
    f.write_text("40000\t50000\n")
    assert process.ephemeral_port_range(str(f)) == (40000, 50000)
    assert process.ephemeral_port_range(str(tmp_path / "missing")) == (32768, 60999)


def test_a_port_just_handed_out_is_not_handed_out_again():
    first = process.free_port()
    draws = iter([first, first, process.LISTENING_PORTS_LOW + 29])
    assert process.free_port(draw=lambda low, high: next(draws)) == process.LISTENING_PORTS_LOW + 29


def test_port_slices_are_disjoint_and_lie_inside_the_range():
    slices = [process.port_slice(10000, 32767, f"{k}/4") for k in range(4)]
    assert slices[0][0] == 10000 and slices[-1][1] <= 32767
    for (_, high), (next_low, _) in itertools.pairwise(slices):
        assert high < next_low
    assert all(high - low > 5000 for low, high in slices)
    assert process.port_slice(10000, 32767, "") == (10000, 32767)


@pytest.mark.parametrize("spec", ["4/4", "-1/4", "1", "a/b", "1/0", "1/2/3"])
def test_a_malformed_port_slice_is_a_clear_error(spec):
    with pytest.raises(process.ProcessError, match=r"AURORA_HARNESS_PORT_SLICE must be K/N"):
        process.port_slice(10000, 32767, spec)


def test_free_port_draws_only_from_the_slice_in_the_environment(monkeypatch):
    monkeypatch.setenv(process.PORT_SLICE_ENV, "2/3")
    low, high = process.port_slice(process.LISTENING_PORTS_LOW, process.ephemeral_port_range()[0] - 1)
    bounds = []

    def draw(a, b):
        bounds.append((a, b))
        return a + len(bounds)

    port = process.free_port(draw=draw)
    assert bounds[0] == (low, high) and low < port <= high
    assert low > process.LISTENING_PORTS_LOW

