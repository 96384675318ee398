"""The TCP relay against a real asyncio echo server on 127.0.0.1.

Timing checks only bound an effect loosely (a 100 ms latency makes a round trip take at least
about 200 ms); none asserts speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import threading
import time

import pytest

from harness.net.relay import Relay, RelayError, RelayServer
from harness.net.toxics import (
    Bandwidth,
    Blackhole,
    Down,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    Stream,
    ToxicError,
)


class EchoServer:
    """An asyncio echo server in its own thread; remembers how each connection ended."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.endings: list[str] = []
        self.server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            self.endings.append("eof")
        except ConnectionResetError:
            self.endings.append("reset")
        finally:
            writer.close()

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            await self.server.wait_closed()

        self._call(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def relay(echo):
    with RelayServer("127.0.0.1", echo.port, rng=random.Random(42)) as r:
        yield r


def connect(relay: RelayServer, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(relay.address, timeout=timeout)


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def round_trip(s: socket.socket, payload: bytes = b"ping") -> float:
    t = time.monotonic()
    s.sendall(payload)
    assert recv_exactly(s, len(payload)) == payload
    return time.monotonic() - t


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_passes_bytes_through_and_counts_them(relay):
    with connect(relay) as s:
        assert round_trip(s, b"hello world") >= 0
        assert wait_for(lambda: relay.stats().bytes_downstream == 11)
        stats = relay.stats()
    assert (stats.connections_total, stats.bytes_upstream, stats.bytes_downstream) == (1, 11, 11)
    assert wait_for(lambda: relay.stats().connections_open == 0)
    assert relay.address[0] == "127.0.0.1" and relay.port > 0


def test_latency_delays_each_direction(relay):
    with connect(relay) as s:
        round_trip(s)
        relay.add_toxic(Latency(latency_ms=100, stream="downstream"))
        assert round_trip(s) >= 0.095
        relay.add_toxic(Latency(latency_ms=100, stream="upstream"))
        assert 0.19 <= round_trip(s) < 3.0
        relay.remove_toxic("latency_upstream")
        relay.remove_toxic("latency_downstream")
        assert round_trip(s) < 3.0
        assert relay.toxics() == []


def test_reset_peer_resets_client_and_server(relay, echo):
    with connect(relay) as s:
        round_trip(s)
        t = time.monotonic()
        relay.add_toxic(ResetPeer(timeout_ms=200))
        with pytest.raises(ConnectionResetError):
            while s.recv(10):
                pass
        assert time.monotonic() - t >= 0.19
    assert wait_for(lambda: echo.endings == ["reset"])
    assert relay.stats().resets == 1
    # New connections are reset too while the toxic is in place.
    with connect(relay) as s2, pytest.raises(ConnectionResetError):
        s2.sendall(b"x")
        while s2.recv(10):
            pass


def test_blackhole_holds_silently_and_releases_without_loss(relay):
    with connect(relay) as s:
        round_trip(s)
        relay.add_toxic(Blackhole())
        s.sendall(b"held bytes")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(100)  # nothing arrives ...
        assert relay.stats().connections_open == 1  # ... and nothing was closed
        relay.remove_toxic("blackhole_both")
        s.settimeout(5)
        assert recv_exactly(s, 10) == b"held bytes"


def test_blackhole_with_timeout_closes_the_connection(relay):
    with connect(relay) as s:
        relay.add_toxic(Blackhole(timeout_ms=300))
        t = time.monotonic()
        s.sendall(b"x")
        assert s.recv(10) == b""
        assert time.monotonic() - t >= 0.25


def test_limit_data_closes_after_n_bytes(relay):
    relay.add_toxic(LimitData(bytes=10, stream="downstream"))
    with connect(relay) as s:
        s.sendall(b"0123456789abcdefghij")
        assert recv_exactly(s, 100) == b"0123456789"


def test_slicer_delivers_in_small_pieces(relay):
    relay.add_toxic(Slicer(average_size=10, size_variation=2, delay_us=5000, stream="downstream"))
    data = os.urandom(1000)
    with connect(relay) as s:
        s.sendall(data)
        sizes = []
        got = bytearray()
        while len(got) < len(data):
            chunk = s.recv(4096)
            assert chunk
            sizes.append(len(chunk))
            got += chunk
    assert bytes(got) == data
    assert len(sizes) >= 20  # 100 pieces 5 ms apart: even a slow reader sees many of them


def test_bandwidth_is_roughly_respected(relay):
    relay.add_toxic(Bandwidth(rate_kbps=30, stream="downstream"))
    data = os.urandom(60_000)
    with connect(relay, timeout=30) as s:
        sender = threading.Thread(target=s.sendall, args=(data,))
        t = time.monotonic()
        sender.start()
        assert recv_exactly(s, len(data)) == data
        elapsed = time.monotonic() - t
        sender.join()
    assert elapsed >= 1.5  # 60 KB at 30 KB/s takes 2 s; a generous lower bound only


def test_down_refuses_new_connections_closes_old_and_comes_back(relay):
    with connect(relay) as s:
        round_trip(s)
        relay.add_toxic(Down())
        s.settimeout(5)
        assert s.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        connect(relay, timeout=2)
    relay.remove_toxic("down_both")
    with connect(relay) as s:
        assert round_trip(s, b"back") < 5


def hold(relay: RelayServer, toxic, seconds: float) -> None:
    """Keep a holding toxic in place for a while (a fault of that duration), then heal it."""
    relay.add_toxic(toxic)
    time.sleep(seconds)
    relay.remove_toxic(toxic.name)


def test_reconfiguring_under_a_continuous_stream_loses_and_reorders_nothing(relay):
    data = os.urandom(4 * 1024 * 1024)
    received = hashlib.sha256()
    total = 0
    with connect(relay, timeout=30) as s:
        sender = threading.Thread(target=s.sendall, args=(data,))
        sender.start()
        schedule = [
            lambda: relay.add_toxic(Latency(latency_ms=20, jitter_ms=10)),
            lambda: relay.add_toxic(Slicer(average_size=3000, size_variation=1000, delay_us=100,
                                           stream="upstream")),
            lambda: relay.update_toxic(Latency(latency_ms=5)),
            lambda: hold(relay, Blackhole(stream="downstream"), 0.2),
            lambda: relay.add_toxic(Bandwidth(rate_kbps=20_000)),
            lambda: relay.remove_toxic("latency_both"),
            lambda: relay.remove_toxic("slicer_upstream"),
            lambda: relay.remove_toxic("bandwidth_both"),
        ]
        step = len(data) // (len(schedule) + 1)
        while total < len(data):
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {total} bytes"
            received.update(chunk)
            total += len(chunk)
            while schedule and total >= step * (9 - len(schedule)):
                schedule.pop(0)()
        sender.join(30)
    assert not schedule
    assert total == len(data)
    assert received.hexdigest() == hashlib.sha256(data).hexdigest()


def test_stop_closes_connections_and_the_listener(echo):
    r = RelayServer("127.0.0.1", echo.port)
    host, port = r.start()
    s = socket.create_connection((host, port), timeout=5)
    round_trip(s)
    r.stop()
    r.stop()  # twice is fine
    assert s.recv(10) == b""
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2)
    assert not any(t.name == f"relay-to-{echo.port}" for t in threading.enumerate())


def test_unreachable_upstream_closes_the_client_and_counts_it():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with RelayServer("127.0.0.1", dead_port) as r, connect(r) as s:
        assert s.recv(10) == b""
        assert wait_for(lambda: r.stats().upstream_failures == 1)


def test_misuse_is_rejected_clearly(relay, echo):
    with pytest.raises(RelayError, match="loopback addresses only"):
        RelayServer("127.0.0.1", echo.port, listen_host="0.0.0.0")
    with pytest.raises(RelayError, match="bad port"):
        Relay("127.0.0.1", 0)
    relay.add_toxic(Latency(latency_ms=1))
    with pytest.raises(ToxicError, match="already installed"):
        relay.add_toxic(Latency(latency_ms=2))
    with pytest.raises(ToxicError, match="no toxic named 'nope'; installed: latency_both"):
        relay.remove_toxic("nope")
    with pytest.raises(ToxicError, match="no toxic named"):
        relay.update_toxic(Slicer(average_size=3))
    with pytest.raises(ToxicError, match="not a toxic"):
        relay.add_toxic("latency")  # type: ignore[arg-type]
    with pytest.raises(RelayError, match="already started"):
        relay.start()
    idle = RelayServer("127.0.0.1", echo.port)
    with pytest.raises(RelayError, match="not running"):
        idle.add_toxic(Latency(latency_ms=1))


def test_async_api_inside_a_running_loop():
    async def scenario() -> tuple[bytes, float]:
        async def echo_handler(reader, writer):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with Relay("127.0.0.1", port, rng=random.Random(1)) as r:
                await r.add_toxic(Latency(latency_ms=50, stream=Stream.UPSTREAM))
                reader, writer = await asyncio.open_connection(*r.address)
                t = time.monotonic()
                writer.write(b"async")
                data = await asyncio.wait_for(reader.readexactly(5), 5)
                elapsed = time.monotonic() - t
                writer.close()
                return data, elapsed
        finally:
            server.close()
            await server.wait_closed()

    data, elapsed = asyncio.run(scenario())
    assert data == b"async" and elapsed >= 0.045


def test_listening_on_a_taken_port_is_a_clear_error(echo):
    relay = RelayServer("127.0.0.1", echo.port, listen_port=echo.port)
    with pytest.raises(RelayError, match=f"cannot listen on 127.0.0.1:{echo.port}"):
        relay.start()
    assert not any(t.name == f"relay-to-{echo.port}" for t in threading.enumerate())
