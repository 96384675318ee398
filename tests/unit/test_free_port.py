"""free_port: ports a server binds seconds later are drawn below the kernel's ephemeral range, where
no outgoing connection can take them in the meantime."""

from __future__ import annotations

import socket

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
