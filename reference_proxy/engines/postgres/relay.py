"""The relay phase of a PostgreSQL client session, driven by transport callbacks.

Why callbacks
-------------
Profiling the proxy under ``pgbench -S`` showed most of its own time spent in the waiting
machinery, not in the work: every round trip started two tasks (one read per side), ran an
``asyncio.wait`` over them and went through two StreamReaders.  While a client holds a backend
the work is small and never needs to wait: split the bytes into messages, show them to the
transaction tracker, write them to the other side.  So while the relay runs, both sockets' bytes
arrive in :meth:`Relay.client_bytes` / :meth:`Relay.backend_bytes` straight from the event loop,
which do that work on the spot (the *fast path*).

A transaction's first bytes take a backend on the spot as well when one of the session's key is
pooled idle and nobody waits in line (``session._borrow_now``): in steady state a transaction
costs no coroutine switch at all.

Anything that must wait (a borrow that must wait, answering an unserved request, telling a client
its backend was lost, a protocol violation, the end of either stream, shutdown) becomes an event
in a queue worked off in order by :meth:`Relay.run`, the session's coroutine, using the
session's own async handlers (the *slow path*).  Once an event is queued, later bytes queue
behind it, so order is kept.

The transports are borrowed, not owned: the relay installs its protocol objects on the client's
transport for the duration of :meth:`Relay.run`, and on a backend's transport from the moment
the session holds it until :meth:`Relay.backend_released`, then puts the original stream
protocols back.  End of stream, connection loss and write flow control are passed on to the
original protocols as well, so the session's StreamWriters (drain, close) and the pool's view of
an idle connection (unread bytes, end of stream) stay true.

Flow control
------------
A transport whose write buffer is over :data:`WRITE_HIGH_WATER` pauses reading on the *other*
side until it drains; reading from its own side continues (a pipelined client and a streaming
result must not deadlock).  Queued slow-path bytes over :data:`QUEUE_HIGH_WATER` pause both
sides until the queue is worked off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

__all__ = ["QUEUE_HIGH_WATER", "WRITE_HIGH_WATER", "Relay"]

log = logging.getLogger("reference_proxy.engines.postgres.session")

WRITE_HIGH_WATER = 256 * 1024
"""Bytes queued towards one peer above which the relay stops reading from the other peer."""

QUEUE_HIGH_WATER = 256 * 1024
"""Bytes waiting for the slow path above which the relay stops reading from both peers."""

# Slow-path event kinds.
_CLIENT, _CLIENT_EOF, _BACKEND, _BACKEND_EOF, _BACKEND_LOST, _RAISE = range(6)


def _take_stream_buffer(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """Bytes a StreamReader received but nobody read yet, and whether it saw the end of stream.

    Needed when the relay takes a transport over: what arrived before belongs to the relay now.
    StreamReader has no public way to say this, hence the careful attribute access.
    """
    buffer = getattr(reader, "_buffer", None)
    data = b""
    if buffer:
        data = bytes(buffer)
        buffer.clear()
    if getattr(reader, "_paused", False):  # the reader had paused its transport for a full buffer
        reader._paused = False
        transport = getattr(reader, "_transport", None)
        if transport is not None:
            transport.resume_reading()
    return data, bool(getattr(reader, "_eof", False))


class _Side(asyncio.Protocol):
    """Protocol installed on one transport while the relay owns it; forwards to the relay."""

    def __init__(self, relay: Relay, original: Any, backend: Any = None) -> None:
        self.relay = relay
        self.original = original
        self.backend = backend  # None for the client side
        self.detached = False

    def data_received(self, data: bytes) -> None:
        if self.detached:  # bytes for a backend already handed back: they stay unread, as before
            self.original.data_received(data)
        elif self.backend is None:
            self.relay.client_bytes(data)
        else:
            self.relay.backend_bytes(self.backend, data)

    def eof_received(self) -> bool | None:
        keep_open = self.original.eof_received()
        if not self.detached:
            self.relay.end_of_stream(self.backend, None)
        return keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.detached:
            self.relay.end_of_stream(self.backend, exc)
        self.original.connection_lost(exc)

    def pause_writing(self) -> None:
        self.original.pause_writing()
        if not self.detached:
            self.relay.congestion(self.backend, True)

    def resume_writing(self) -> None:
        self.original.resume_writing()
        if not self.detached:
            self.relay.congestion(self.backend, False)


class Relay:
    """Relays one session's traffic until the session closes; see the module docstring.

    ``session`` is the :class:`PostgresClientSession`; the relay uses its splitters, tracker and
    the sync and async handlers it offers for this (``_forward_client_frames``,
    ``_forward_backend_data``, ``_on_client_data``, ``_on_backend_data``, ``_backend_lost``).
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self._client_transport: asyncio.Transport = session.writer.transport
        self._client_side: _Side | None = None
        self._backend_side: _Side | None = None
        self._backend_transport: asyncio.Transport | None = None
        self._events: deque[tuple[int, Any, Any]] = deque()
        self._queued_bytes = 0
        self._wake: asyncio.Future[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._running = False
        self._busy = False
        self._client_congested = False   # the client's write buffer is full: stop reading the backend
        self._backend_congested = False  # the backend's write buffer is full: stop reading the client
        self._client_paused = False
        self._backend_paused = False
        self.last_activity = self.loop.time()

    # ---------------------------------------------------------------------------- coroutine

    async def run(self, leftover: bytes) -> None:
        """Relay until the session closes, is idle too long, or the proxy drains it."""
        s = self.session
        original = self._client_transport.get_protocol()
        self._client_side = _Side(self, original)
        self._running = True
        self._client_transport.set_protocol(self._client_side)
        self._client_transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        draining = s._drain_requested.is_set  # request_drain() wakes the relay up
        try:
            pending, eof = _take_stream_buffer(s.reader)
            if leftover or pending:
                self._queue(_CLIENT, leftover + pending)
            if eof:
                self._queue(_CLIENT_EOF, None)
            while True:
                while self._events:
                    if await self._work_off_one() or s._closing:
                        return
                    self._follow_backend()
                if s._closing:
                    return
                self._follow_backend()
                self._apply_reading()
                if draining() and (s.backend is None or s.tracker.at_release_point):
                    await s._say_shutting_down()
                    return
                if not self._events and not await self._wait():
                    log.info("[proxyEndpoint=%s] [clientConnection=%s] closing idle client connection",
                             s.endpoint, s.client_id)
                    return
        finally:
            self._running = False
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            if self._wake is not None and not self._wake.done():
                self._wake.cancel()
            self._client_side.detached = True
            if not self._client_transport.is_closing():
                self._client_transport.set_protocol(original)
                if self._client_paused:
                    self._client_transport.resume_reading()
            side = self._backend_side
            if side is not None:
                # The session's end releases the held backend (backend_released restores its
                # protocol); until then its bytes stay unread on it, as do queued ones: an idle
                # connection with unread bytes is what the pool refuses to lend again.
                side.detached = True
                for kind, backend, payload in self._events:
                    if kind == _BACKEND and backend is side.backend:
                        side.original.data_received(payload)
            self._events.clear()

    async def _wait(self) -> bool:
        """Sleep until an event is queued or a drain is requested; False when idle for too long.

        Idle means no backend held, or a pinned one at a release point; the idle clock counts
        from the last bytes seen on either side.  One timer serves many waits (arming a timer
        per transaction showed in the profile): when it fires early it is armed again for the
        time left.
        """
        s = self.session
        timeout = s.s.pool.settings.idle_client_timeout
        while True:
            idle = s.backend is None or s.tracker.at_release_point
            quiet_for = self.loop.time() - self.last_activity
            if idle and quiet_for >= timeout:
                return False
            if self._idle_timer is None:
                self._idle_timer = self.loop.call_later(timeout - quiet_for if idle else timeout,
                                                        self._idle_timer_fired)
            self._wake = self.loop.create_future()
            try:
                await self._wake
            finally:
                self._wake = None
            if self._events or s._drain_requested.is_set() or s._closing:
                return True

    def _idle_timer_fired(self) -> None:
        self._idle_timer = None
        self._wakeup()

    async def _work_off_one(self) -> bool:
        """Handle the oldest slow-path event with the session's async handlers; True: the end."""
        kind, backend, payload = self._events.popleft()
        self._busy = True  # bytes arriving while a handler waits must queue behind it
        try:
            return await self._handle(kind, backend, payload)
        finally:
            self._busy = False

    async def _handle(self, kind: int, backend: Any, payload: Any) -> bool:
        s = self.session
        if kind == _CLIENT:
            self._queued_bytes -= len(payload)
            await s._on_client_data(payload)
        elif kind == _CLIENT_EOF:
            if payload is not None:
                raise payload
            return True
        elif kind == _RAISE:
            raise payload
        elif backend is not s.backend:
            pass  # about a backend already given back; its leftovers were handed back with it
        elif kind == _BACKEND:
            self._queued_bytes -= len(payload)
            await s._on_backend_data(payload)
        elif kind == _BACKEND_EOF:
            await s._on_backend_data(b"")
        elif kind == _BACKEND_LOST:
            await s._backend_lost(payload)
        return False

    def _queue(self, kind: int, payload: Any, backend: Any = None) -> None:
        self._events.append((kind, backend, payload))
        if kind == _CLIENT or kind == _BACKEND:
            self._queued_bytes += len(payload)
        self._wakeup()

    def wakeup(self) -> None:
        """Make :meth:`run` look at the session again (the proxy asked it to drain)."""
        self._wakeup()

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # ---------------------------------------------------------------------- backend hand-over

    def _follow_backend(self) -> None:
        """Take over the transport of a backend the session now holds (after a slow-path borrow)."""
        backend = self.session.backend
        if backend is None or (self._backend_side is not None and self._backend_side.backend is backend):
            return
        if self._backend_side is not None:  # should have been handed back by backend_released
            self.backend_released(self._backend_side.backend)
        transport = backend.writer.transport
        side = _Side(self, transport.get_protocol(), backend)
        self._backend_side, self._backend_transport = side, transport
        self._backend_congested = self._backend_paused = False
        transport.set_protocol(side)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        pending, eof = _take_stream_buffer(backend.reader)
        if pending:
            self.backend_bytes(backend, pending)
        if eof:
            self.end_of_stream(backend, None)

    def backend_released(self, backend: Any) -> None:
        """The session gave ``backend`` back: restore its transport's own protocol, synchronously,
        before anyone else can borrow it."""
        side = self._backend_side
        if side is None or side.backend is not backend:
            return
        side.detached = True
        self._backend_side = None
        transport, self._backend_transport = self._backend_transport, None
        if transport is not None and not transport.is_closing():
            transport.set_protocol(side.original)
            if self._backend_paused:
                transport.resume_reading()
        self._backend_paused = self._backend_congested = False
        if self._events:
            kept: deque[tuple[int, Any, Any]] = deque()
            for event in self._events:
                if event[1] is backend:
                    if event[0] == _BACKEND:
                        self._queued_bytes -= len(event[2])
                        side.original.data_received(event[2])
                else:
                    kept.append(event)
            self._events = kept
        if self._client_paused:
            self._apply_reading()

    # --------------------------------------------------------------------- transport callbacks

    def client_bytes(self, data: bytes) -> None:
        s = self.session
        self.last_activity = self.loop.time()
        backend = s.backend
        if backend is None and self._may_borrow_now(data):
            try:
                if s._borrow_now():
                    self._follow_backend()
                    backend = s.backend
            except Exception as e:  # noqa: BLE001 - a bug: the session's coroutine reports it
                self._queue(_RAISE, e)
                return
        side = self._backend_side
        if (self._events or self._busy or backend is None or side is None or side.backend is not backend
                or s._discarding_until_sync or s._closing):
            self._queue(_CLIENT, data)
            self._apply_reading()
            return
        try:
            arrived = s.s.clock.monotonic()
            frames = s._client_splitter.feed(data)
            if frames.spans and not s._forward_client_frames(frames, arrived):
                self._queue(_BACKEND_LOST, "the database connection closed while sending a request", backend)
        except Exception as e:  # noqa: BLE001 - the session's coroutine reports it as it always did
            self._queue(_RAISE, e)
        if s._closing:
            self._wakeup()

    def _may_borrow_now(self, data: bytes) -> bool:
        """Whether these client bytes may borrow a backend on the spot: nothing is queued, the
        session is in its plain state, and they start with one whole message that is not a
        Terminate (what the slow path would borrow for, nothing it would handle differently)."""
        s = self.session
        if (self._events or self._busy or s._discarding_until_sync or s._closing
                or s._drain_requested.is_set() or s._client_splitter.buffered or len(data) < 5
                or data[0] == 0x58):
            return False
        return len(data) > int.from_bytes(data[1:5], "big")

    def backend_bytes(self, backend: Any, data: bytes) -> None:
        s = self.session
        self.last_activity = self.loop.time()
        if self._events or self._busy or s._drain_requested.is_set():
            self._queue(_BACKEND, data, backend)
            self._apply_reading()
            return
        try:
            lost = s._forward_backend_data(data)
        except Exception as e:  # noqa: BLE001 - see client_bytes
            self._queue(_RAISE, e)
            return
        if lost is not None:
            self._queue(_BACKEND_LOST, lost, backend)

    def end_of_stream(self, backend: Any, exc: Exception | None) -> None:
        """One side's stream ended (``exc`` set if it failed)."""
        if backend is None:
            if not any(kind == _CLIENT_EOF for kind, _, _ in self._events):
                self._queue(_CLIENT_EOF, exc)
        else:
            self._queue(_BACKEND_EOF, None, backend)

    def congestion(self, backend: Any, congested: bool) -> None:
        if backend is None:
            self._client_congested = congested
        else:
            self._backend_congested = congested
        self._apply_reading()

    # ------------------------------------------------------------------------------ reading

    def _apply_reading(self) -> None:
        """Pause or resume each side's reading to match congestion and the slow-path queue."""
        if not self._running:
            return
        flooded = self._queued_bytes > QUEUE_HIGH_WATER
        want_client_paused = flooded or self._backend_congested
        if want_client_paused != self._client_paused and not self._client_transport.is_closing():
            self._client_paused = want_client_paused
            if want_client_paused:
                self._client_transport.pause_reading()
            else:
                self._client_transport.resume_reading()
        transport = self._backend_transport
        if transport is not None:
            want_backend_paused = flooded or self._client_congested
            if want_backend_paused != self._backend_paused and not transport.is_closing():
                self._backend_paused = want_backend_paused
                if want_backend_paused:
                    transport.pause_reading()
                else:
                    transport.resume_reading()
