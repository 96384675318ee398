"""The command phase of a MySQL client session, driven by transport callbacks where it can be.

Why callbacks
-------------
A point select through the proxy is one command packet one way and a handful of reply packets the
other.  Served by the session's coroutine, each one costs two task wake-ups (the client's command
arriving, the backend's reply arriving), which the profile showed as the larger part of the
proxy's time per query.  So while the relay runs, the client's bytes arrive in
:meth:`Relay.client_bytes` straight from the event loop, and a plain command (a query, a
prepared-statement execution, a schema change...) is handled on the spot when nothing has to wait
(the *fast path*): the session inspects it, takes an idle backend of its key if it holds none,
writes it, and the reply arrives in :meth:`Relay.backend_bytes`, which forwards it packet by packet
and, once it is complete, lets the session apply the release rule, all without a coroutine switch.

Everything else goes to the session's coroutine, which waits in :meth:`Relay.next_work` (the
*slow path*): commands the proxy answers itself or that must wait (a borrow that must wait, a
change of user), pipelined commands, a client's bytes while a reply is in flight, the end of the
client's stream, shutdown.  A fast command that cannot finish on the spot (its backend vanished
or broke the protocol, the server asked for a LOCAL INFILE) is handed over to the coroutine with
its reply state, and finished there.

The transports are borrowed: the relay installs its protocol on the client's transport for the
rest of the session.  A backend's incoming bytes are lent to the relay through its
:class:`~reference_proxy.engines.TappableStreamProtocol` (or, on any other transport, by installing
the relay's protocol) from its first fast command until the session gives the backend back (or
reads it on the coroutine), so that the session's and the pool's StreamReaders see everything else
as before; bytes a backend sends while no reply is awaited go straight back to its own protocol.
Switching protocols would cost uvloop a stop and restart of reading each time, two system calls
each way, which is why the backend's protocol is lent rather than replaced, and kept between the
commands of a session that holds its backend.  End of stream,
loss and write flow control are passed on to the original protocols.  When the client stops
reading (its transport's write buffer fills), reading from the backend pauses until it drains.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from reference_proxy.engines import TappableStreamProtocol
from reference_proxy.engines.mysql.tracked import TrackedChange
from reference_proxy.engines.mysql.tracking import ReplyRelay
from reference_proxy.protocol.mysql import NEED_DATA, Packet, ProtocolViolation

__all__ = ["WRITE_HIGH_WATER", "FastCommand", "Handover", "Relay"]

WRITE_HIGH_WATER = 256 * 1024
"""Bytes queued towards the client above which the relay stops reading from the backend."""


@dataclass(slots=True)
class FastCommand:
    """A command sent on the fast path whose reply is being relayed."""

    backend: Any
    command: int
    reply: ReplyRelay
    change: TrackedChange | None
    arrived: float
    sent: float


@dataclass(frozen=True)
class Handover:
    """A fast command the coroutine must finish: ``lost`` says why its backend counts as lost
    (None: the reply goes on, as after a LOCAL INFILE request)."""

    fast: FastCommand
    lost: str | None


class _Side(asyncio.Protocol):
    """Protocol installed on one transport while the relay borrows it; forwards to the relay and
    keeps the original protocol informed of what it must know (end of stream, flow control)."""

    __slots__ = ("backend", "detached", "original", "relay")

    def __init__(self, relay: Relay, original: Any, backend: Any = None) -> None:
        self.relay = relay
        self.original = original
        self.backend = backend  # None for the client side
        self.detached = False

    def data_received(self, data: bytes) -> None:
        if self.detached:
            self.original.data_received(data)
        elif self.backend is None:
            self.relay.client_bytes(data)
        else:
            self.relay.backend_bytes(data)

    def eof_received(self) -> bool | None:
        keep_open = self.original.eof_received()
        if not self.detached:
            self.relay.stream_ended(self.backend)
        return keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.detached:
            self.relay.stream_ended(self.backend)
        self.original.connection_lost(exc)

    def pause_writing(self) -> None:
        self.original.pause_writing()
        if self.backend is None and not self.detached:
            self.relay.client_congested(True)

    def resume_writing(self) -> None:
        self.original.resume_writing()
        if self.backend is None and not self.detached:
            self.relay.client_congested(False)


class _BackendTap:
    """What the relay lends a backend's :class:`TappableStreamProtocol` (the usual case) instead of
    installing a :class:`_Side` on its transport; ``original`` is that protocol."""

    __slots__ = ("backend", "original", "relay")

    def __init__(self, relay: Relay, original: TappableStreamProtocol, backend: Any) -> None:
        self.relay = relay
        self.original = original
        self.backend = backend

    def data_received(self, data: bytes) -> None:
        self.relay.backend_bytes(data)

    def stream_ended(self) -> None:
        self.relay.stream_ended(self.backend)


def _take_stream_buffer(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """Bytes a StreamReader received that nobody read, and whether it saw the end of the stream:
    when the relay takes the client's transport over, they belong to the relay.  StreamReader has
    no public way to say this, hence the careful attribute access."""
    buffer = getattr(reader, "_buffer", None)
    data = b""
    if buffer:
        data = bytes(buffer)
        buffer.clear()
    return data, bool(getattr(reader, "_eof", False))


class Relay:
    """Serves one session's commands until it ends; see the module docstring.

    ``session`` is the :class:`~reference_proxy.engines.mysql.session.MySQLClientSession`; the
    relay uses its client packet reader and the handlers it offers for this: ``_start_fast(packet,
    wire)`` (True: the command is under way, or answered; ``wire`` is the packet as it came, when
    known, so that it need not be framed again), ``_command_done(fast)`` and, on the coroutine,
    whatever :meth:`next_work` returns.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.fast: FastCommand | None = None
        self.last_activity = self.loop.time()
        self._client_transport: asyncio.Transport = session.writer.transport
        self._client_side: _Side | None = None
        self._backend_side: _Side | _BackendTap | None = None
        self._inbox: deque[bytes] = deque()
        self._pending: Packet | None = None
        self._handover: Handover | None = None
        self._failure: BaseException | None = None
        self._client_ended = False
        self._at_command_boundary = False
        self._wake: asyncio.Future[None] | None = None
        self._client_congested = False
        self._backend_paused = False

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Take the client's transport over (once, after the login)."""
        s = self.session
        transport = self._client_transport
        self._client_side = _Side(self, transport.get_protocol())
        transport.set_protocol(self._client_side)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        pending, eof = _take_stream_buffer(s.reader)
        if pending:
            s._client_packets.receive_data(pending)
        self._client_ended = eof

    def stop(self) -> None:
        """The session ends: hand every borrowed transport back."""
        self.detach_backend()
        side = self._client_side
        if side is not None:
            side.detached = True
            if not self._client_transport.is_closing():
                self._client_transport.set_protocol(side.original)
        if self._wake is not None and not self._wake.done():
            self._wake.cancel()

    def wakeup(self) -> None:
        """Make the coroutine look at the session again (a drain was requested...)."""
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # ------------------------------------------------------------------------- the coroutine

    async def next_work(self, *, command: bool = True) -> Packet | Handover | None:
        """The next thing the coroutine must do: a client packet, a fast command to finish, or
        None when the session is over (the client left, was idle too long, or a drain found it
        idle).  ``command=False`` reads a packet in the middle of an exchange (an auth answer):
        no fast path meanwhile.  Raises what the fast path could not handle itself."""
        s = self.session
        packets = s._client_packets
        timeout = s.s.pool.settings.idle_client_timeout
        while True:
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            if self._handover is not None:
                handover, self._handover = self._handover, None
                return handover
            if self._pending is not None:
                packet, self._pending = self._pending, None
                return packet
            if self.fast is None:
                while self._inbox:
                    packets.receive_data(self._inbox.popleft())
                packet = packets.next_packet()
                if packet is not NEED_DATA:
                    if command and not packets.buffered and not self._inbox and s._start_fast(packet, None):
                        # A command that arrived before the relay took the transport over (the
                        # first one after the login, typically) takes the fast path too.
                        packets.expected_sequence = 0
                        continue
                    return packet
                if self._client_ended:
                    return None
                if command and s._drain_requested and not s.tracker.in_transaction:
                    return None
            waiting_in_transaction = self.fast is not None or s.tracker.in_transaction
            quiet_for = self.loop.time() - self.last_activity
            if not waiting_in_transaction and quiet_for >= timeout:
                s._idle_too_long()
                return None
            self._wake = self.loop.create_future()
            self._at_command_boundary = command
            try:
                async with asyncio.timeout(None if waiting_in_transaction else timeout - quiet_for):
                    await self._wake
            except TimeoutError:
                pass  # the loop looks at the idle clock again
            finally:
                self._wake = None
                self._at_command_boundary = False

    # --------------------------------------------------------------------- transport callbacks

    def client_bytes(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if not self._at_command_boundary or self.fast is not None or self._inbox or self._pending is not None:
            self._inbox.append(data)
            self.wakeup()
            return
        s = self.session
        packets = s._client_packets
        try:
            # One whole packet in one read (the usual command): ``data`` is its wire form.
            packet = packets.whole_packet(data)
            wire = data
            if packet is None:
                wire = None
                packets.receive_data(data)
                packet = packets.next_packet()
                if packet is NEED_DATA:
                    return
            if packets.buffered or not s._start_fast(packet, wire):
                self._pending = packet
                self.wakeup()
                return
            packets.expected_sequence = 0  # the next command starts a new exchange
        except ProtocolViolation:
            self.wakeup()  # the coroutine reads the same violation from the packet reader
        except Exception as e:  # noqa: BLE001 - a bug: the session's coroutine reports it
            self._failure = e
            self.wakeup()

    def send(self, fast: FastCommand, data: bytes) -> None:
        """Write a fast command to its backend and follow the reply on the backend's transport.

        The backend stays lent to the relay from one command to the next for as long as the
        session holds it (:meth:`release_backend` hands it back); see the module docstring."""
        backend = fast.backend
        side = self._backend_side
        if side is None or side.backend is not backend:
            if side is not None:
                self.detach_backend()
            transport = backend.transport
            protocol = transport.get_protocol()
            if isinstance(protocol, TappableStreamProtocol):
                side = _BackendTap(self, protocol, backend)
                protocol.tap = side
            else:
                side = _Side(self, protocol, backend)
                transport.set_protocol(side)
            self._backend_side = side
        self.fast = fast
        backend.transport.write(data)

    def backend_bytes(self, data: bytes) -> None:
        fast = self.fast
        if fast is None:  # nothing asked: leave the bytes where the pool will see them
            side = self._backend_side
            self.detach_backend()
            if side is not None:
                side.original.data_received(data)
            return
        reply = fast.reply
        try:
            out = reply.feed(data)
        except ProtocolViolation as e:
            self._hand_over(fast, f"the database broke the protocol: {e}")
            return
        if out:
            self._client_transport.write(out)
        if reply.local_infile:
            self._hand_over(fast, None)
        elif reply.done:
            if reply.buffered:
                self._hand_over(fast, "the database broke the protocol: bytes after a complete reply")
                return
            self.fast = None  # the side stays until the session gives the backend back
            self.last_activity = self.loop.time()
            try:
                self.session._command_done(fast)
            except Exception as e:  # noqa: BLE001 - a bug: the session's coroutine reports it
                self._failure = e
            if self._inbox or self._client_ended or self._failure is not None or self.session._drain_requested:
                self.wakeup()

    def stream_ended(self, backend: Any) -> None:
        """One side's stream ended or was lost."""
        if backend is None:
            self._client_ended = True
            self.wakeup()
            return
        fast = self.fast
        if fast is not None and fast.backend is backend:
            self._hand_over(fast, "the database closed the connection")

    def client_congested(self, congested: bool) -> None:
        self._client_congested = congested
        self._apply_backend_reading()

    # ----------------------------------------------------------------------------- helpers

    def _hand_over(self, fast: FastCommand, lost: str | None) -> None:
        self.detach_backend()
        self._handover = Handover(fast, lost)
        self.wakeup()

    def release_backend(self, backend: Any) -> None:
        """The session gives ``backend`` back (to the pool, or to its own coroutine)."""
        side = self._backend_side
        if side is not None and side.backend is backend:
            self.detach_backend()

    def detach_backend(self) -> None:
        """Give the backend's transport its own protocol back (the backend is released, its reply
        handed over, or the coroutine reads it), and forget any fast command on it."""
        self.fast = None
        side, self._backend_side = self._backend_side, None
        if side is None:
            return
        transport = side.backend.transport
        if isinstance(side, _BackendTap):
            if side.original.tap is side:
                side.original.tap = None
        else:
            side.detached = True
            if not transport.is_closing():
                transport.set_protocol(side.original)
        if self._backend_paused and not transport.is_closing():
            transport.resume_reading()
        self._backend_paused = False

    def _apply_backend_reading(self) -> None:
        side = self._backend_side
        if side is None:
            return
        transport = side.backend.transport
        if transport.is_closing() or self._client_congested == self._backend_paused:
            return
        self._backend_paused = self._client_congested
        if self._backend_paused:
            transport.pause_reading()
        else:
            transport.resume_reading()
