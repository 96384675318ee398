"""The psycopg driver lets go of a failed connection attempt's socket at once.

A listener on loopback accepts and never answers, so the driver's open times out.  psycopg's error
and its ``connect`` frame refer to each other, so without the driver's care the half-made
connection (and its socket) lives until the garbage collector runs; the listener would see no end
of stream.  The collector is held off for the test, as it is between collections in a busy run.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator

import psycopg
import pytest

from harness.clients.address import Address
from harness.clients.drivers.psycopg import AsyncPsycopgConnection, PsycopgConnection


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def no_collector() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def address(port: int) -> Address:
    return Address("postgres", "writer", "127.0.0.1", port, "u", "pw", "d", "SELECT 1")


def closed_by_client(srv: socket.socket) -> bool:
    peer, _ = srv.accept()
    with peer:
        peer.settimeout(5)
        peer.recv(65536)  # the startup packet (or SSLRequest)
        try:
            while True:
                if peer.recv(65536) == b"":
                    return True
        except TimeoutError:
            return False


def test_a_timed_out_open_closes_its_socket(silent_server, no_collector):
    conn = PsycopgConnection(address(silent_server.getsockname()[1]), connect_timeout=1)
    with pytest.raises(psycopg.OperationalError):
        conn.open()
    assert closed_by_client(silent_server)


def test_a_timed_out_async_open_closes_its_socket(silent_server, no_collector):
    conn = AsyncPsycopgConnection(address(silent_server.getsockname()[1]), connect_timeout=1)

    async def attempt() -> None:
        with pytest.raises(psycopg.OperationalError):
            await conn.open()

    asyncio.run(attempt())
    assert closed_by_client(silent_server)
