"""The MySQL session's callback relay with fake transports: the fast path, hand-overs, flow control."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from reference_proxy.engines import TappableStreamProtocol
from reference_proxy.engines.mysql.relay import FastCommand, Handover, Relay
from reference_proxy.engines.mysql.tracking import ReplyRelay
from reference_proxy.protocol.mysql import Capability, Command, OkPacket, PacketReader, encode_packet

CAPS = Capability.PROTOCOL_41 | Capability.TRANSACTIONS


class FakeTransport:
    def __init__(self, protocol=None) -> None:
        self.protocol = protocol
        self.written: list[bytes] = []
        self.reading = True
        self.closing = False

    def get_protocol(self):
        return self.protocol

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str, default=None):
        return default


class Original:
    """Stands in for a StreamReaderProtocol: records what reaches it."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.ended = False

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.ended = True
        return False

    def connection_lost(self, exc) -> None:
        self.ended = True

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class FakeSession:
    def __init__(self) -> None:
        self.writer = SimpleNamespace(transport=FakeTransport(Original()))
        self.reader = SimpleNamespace(_buffer=bytearray(), _eof=False)
        self._client_packets = PacketReader(what="client", expected_sequence=0)
        self.s = SimpleNamespace(pool=SimpleNamespace(settings=SimpleNamespace(idle_client_timeout=60)))
        self.tracker = SimpleNamespace(in_transaction=False)
        self._drain_requested = False
        self.backend = SimpleNamespace(transport=FakeTransport(Original()))
        self.done: list[FastCommand] = []
        self.relay: Relay | None = None

    def _start_fast(self, packet, wire=None) -> bool:
        if packet.payload[0] != Command.QUERY:
            return False
        fast = FastCommand(self.backend, Command.QUERY, ReplyRelay(Command.QUERY, CAPS, 1 << 24), None, 0, 0)
        self.relay.send(fast, encode_packet(packet.payload, 0)[0])
        return True

    def _command_done(self, fast: FastCommand) -> None:
        self.done.append(fast)

    def _idle_too_long(self) -> None:
        pass


def command(payload: bytes) -> bytes:
    return encode_packet(payload, 0)[0]


OK = encode_packet(OkPacket().encode(CAPS), 1)[0]


def started() -> tuple[FakeSession, Relay]:
    session = FakeSession()
    session.relay = relay = Relay(session)
    relay.start()
    return session, relay


def test_a_fast_command_runs_from_callbacks_alone():
    async def scenario():
        session, relay = started()
        waiter = asyncio.ensure_future(relay.next_work())
        await asyncio.sleep(0)  # the coroutine waits at a command boundary
        client = session.writer.transport.protocol
        client.data_received(command(b"\x03SELECT 1"))
        backend = session.backend.transport
        assert backend.written == [command(b"\x03SELECT 1")] and relay.fast is not None
        backend.protocol.data_received(OK)
        assert session.writer.transport.written == [OK]
        assert len(session.done) == 1 and relay.fast is None
        assert not isinstance(backend.protocol, Original)  # kept while the session holds the backend
        backend.protocol.data_received(b"unasked")  # nothing awaited: straight to its own protocol
        assert isinstance(backend.protocol, Original) and backend.protocol.data == [b"unasked"]
        client.data_received(command(b"\x03SELECT 2"))
        backend.protocol.data_received(OK)
        assert len(session.done) == 2
        relay.release_backend(session.backend)
        assert isinstance(backend.protocol, Original)  # its own protocol back for the pool
        assert not waiter.done()  # no coroutine switch needed
        client.data_received(command(b"\x0e"))  # not a fast command: the coroutine gets it
        packet = await waiter
        assert packet.payload == b"\x0e"
        relay.stop()
    asyncio.run(scenario())


def test_bytes_during_a_reply_wait_for_it_and_a_lost_backend_is_handed_over():
    async def scenario():
        session, relay = started()
        waiter = asyncio.ensure_future(relay.next_work())
        await asyncio.sleep(0)
        client = session.writer.transport.protocol
        client.data_received(command(b"\x03SELECT 1"))
        client.data_received(command(b"\x01"))  # pipelined: queued behind the reply
        assert len(session.backend.transport.written) == 1
        session.backend.transport.protocol.eof_received()
        handover = await waiter
        assert isinstance(handover, Handover) and "closed the connection" in handover.lost
        assert isinstance(session.backend.transport.protocol, Original)
        session._client_packets.expected_sequence = 0
        assert (await relay.next_work()).payload == b"\x01"
        relay.stop()
    asyncio.run(scenario())


def test_a_congested_client_pauses_the_backend_until_it_drains():
    async def scenario():
        session, relay = started()
        waiter = asyncio.ensure_future(relay.next_work())
        await asyncio.sleep(0)
        client = session.writer.transport.protocol
        client.data_received(command(b"\x03SELECT 1"))
        client.pause_writing()
        assert not session.backend.transport.reading
        client.resume_writing()
        assert session.backend.transport.reading
        client.eof_received()
        session.backend.transport.protocol.data_received(OK)
        assert await waiter is None  # the client left: once the reply is done, the session ends
        relay.stop()
    asyncio.run(scenario())


def test_a_tappable_backend_lends_its_bytes_without_a_protocol_switch():
    async def scenario():
        session, relay = started()
        reader = asyncio.StreamReader()
        tappable = TappableStreamProtocol(reader)
        session.backend = SimpleNamespace(transport=FakeTransport(tappable))
        tappable.connection_made(session.backend.transport)
        waiter = asyncio.ensure_future(relay.next_work())
        await asyncio.sleep(0)
        client = session.writer.transport.protocol
        client.data_received(command(b"\x03SELECT 1"))
        backend = session.backend.transport
        assert backend.protocol is tappable and tappable.tap is not None
        tappable.data_received(OK)
        assert session.writer.transport.written == [OK] and len(session.done) == 1
        assert tappable.tap is not None and not reader._buffer  # still lent while the session holds it
        tappable.data_received(b"unasked")  # nothing awaited: the backend's own reader gets it
        assert tappable.tap is None and bytes(reader._buffer) == b"unasked"
        client.data_received(command(b"\x03SELECT 2"))
        tappable.eof_received()  # the end reaches the reader and the relay alike
        handover = await waiter
        assert isinstance(handover, Handover) and "closed the connection" in handover.lost
        assert reader._eof and tappable.tap is None
        relay.stop()
    asyncio.run(scenario())


def test_releasing_a_tappable_backend_takes_the_tap_back():
    async def scenario():
        session, relay = started()
        tappable = TappableStreamProtocol(asyncio.StreamReader())
        session.backend = SimpleNamespace(transport=FakeTransport(tappable))
        waiter = asyncio.ensure_future(relay.next_work())
        await asyncio.sleep(0)
        session.writer.transport.protocol.data_received(command(b"\x03SELECT 1"))
        tappable.data_received(OK)
        relay.release_backend(session.backend)
        assert tappable.tap is None and session.backend.transport.protocol is tappable
        waiter.cancel()
        relay.stop()
    asyncio.run(scenario())
