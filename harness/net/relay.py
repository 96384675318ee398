"""A user-space TCP relay with toxics: network faults between a client and one database instance.

::

    client --> [listener 127.0.0.1:port] --upstream pipe-->   upstream host:port
           <--                         <--downstream pipe--

Each accepted connection opens its own connection upstream and runs two *pipes*, one per
direction.  A pipe is two tasks joined by a bounded queue: a reader that stamps each chunk with its
arrival time, and a writer that passes the chunk through the toxics present *at that moment*
(:mod:`harness.net.toxics`), waits until each resulting piece is due, waits while a holding toxic
is present, and writes.  Because one writer per direction handles chunks strictly in order, adding,
removing or replacing a toxic mid-stream never drops or reorders a byte: chunks already shaped keep
their schedule, later chunks see the new configuration.  The bounded queue gives back-pressure, so a
held direction stops reading from its source and TCP flow control pushes back on the sender.

:class:`Relay` is the asyncio object (use it from inside a running loop); :class:`RelayServer`
runs one in its own thread and event loop behind a blocking API, so synchronous harness code and
tests can drive it.  Randomness (latency jitter, slice sizes) comes from an injected
``random.Random``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import random
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Self

from harness.net.toxics import Blackhole, Down, Piece, RelayError, ResetPeer, Stream, Toxic, ToxicError

LOOPBACK = "127.0.0.1"
CHUNK_SIZE = 65536
QUEUE_CHUNKS = 16


@dataclasses.dataclass(frozen=True)
class RelayStats:
    """Counters since the relay started; bytes are those delivered to the far side."""

    connections_total: int
    connections_open: int
    bytes_upstream: int
    bytes_downstream: int
    upstream_failures: int
    resets: int


@dataclasses.dataclass(frozen=True)
class _Installed:
    """A toxic as installed: ``serial`` tells re-added toxics of the same name apart."""

    toxic: Toxic
    serial: int


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise RelayError(f"the relay listens on loopback addresses only, not {host!r}")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort a connection with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _EndOfStream:
    pass


_EOF = _EndOfStream()


class _Pipe:
    """One direction of one connection: read, shape with toxics, hold if told to, write."""

    def __init__(self, link: _Link, direction: Stream, source: asyncio.StreamReader,
                 sink: asyncio.StreamWriter) -> None:
        self.link = link
        self.direction = direction
        self.source = source
        self.sink = sink
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self.states: dict[int, Any] = {}

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await self.source.read(CHUNK_SIZE)
            if not data:
                await self.queue.put(_EOF)
                return
            await self.queue.put((data, loop.time()))

    async def write_loop(self) -> None:
        relay = self.link.relay
        loop = asyncio.get_running_loop()
        while True:
            item = await self.queue.get()
            if item is _EOF:
                await relay.wait_released(self.direction)
                if self.sink.can_write_eof():
                    with contextlib.suppress(OSError):
                        self.sink.write_eof()
                return
            data, arrival = item
            pieces = [Piece(data, arrival, arrival)]
            for inst in relay.shaping_toxics(self.direction):
                state = self.states.get(inst.serial)
                if state is None and inst.serial not in self.states:
                    state = self.states[inst.serial] = inst.toxic.new_state()
                shaped: list[Piece] = []
                for p in pieces:
                    shaped.extend(inst.toxic.shape(p, state, relay.rng))
                pieces = shaped
            for p in pieces:
                delay = p.not_before - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await relay.wait_released(self.direction)
                if p.data:
                    self.sink.write(p.data)
                    await self.sink.drain()
                    relay.count_bytes(self.direction, len(p.data))
                if p.close_after:
                    self.link.request_close()
                    return


class _Link:
    """One client connection and its upstream connection, with their two pipes."""

    def __init__(self, relay: Relay, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.relay = relay
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        self.pipes = (_Pipe(self, Stream.UPSTREAM, client[0], upstream[1]),
                      _Pipe(self, Stream.DOWNSTREAM, upstream[0], client[1]))
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self._closing = asyncio.Event()
        self._reset = False

    def request_close(self, *, reset: bool = False) -> None:
        """Ask :meth:`run` to end the connection (with RST if ``reset``)."""
        self._reset = self._reset or reset
        self._closing.set()

    def arm(self, inst: _Installed, delay_s: float, *, reset: bool) -> None:
        """Close (or reset) this connection ``delay_s`` from now unless :meth:`disarm` is called first."""
        loop = asyncio.get_running_loop()
        self.timers[inst.serial] = loop.call_later(delay_s, lambda: self.request_close(reset=reset))

    def disarm(self, serial: int) -> None:
        timer = self.timers.pop(serial, None)
        if timer is not None:
            timer.cancel()

    async def run(self) -> None:
        """Relay until both directions ended, a side failed (then reset both), or a close was asked."""
        tasks = [asyncio.create_task(coro) for p in self.pipes for coro in (p.read_loop(), p.write_loop())]
        closing = asyncio.create_task(self._closing.wait())
        failed = False
        try:
            while not closing.done():
                if any(t.done() and not t.cancelled() and t.exception() is not None for t in tasks):
                    failed = True
                    break
                if tasks[1].done() and tasks[3].done():
                    break
                await asyncio.wait([t for t in (*tasks, closing) if not t.done()],
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (*tasks, closing):
                t.cancel()
            await asyncio.gather(*tasks, closing, return_exceptions=True)
            for timer in self.timers.values():
                timer.cancel()
            await self._close(reset=self._reset or failed)

    async def _close(self, *, reset: bool) -> None:
        for w in (self.client_writer, self.upstream_writer):
            if reset:
                _reset(w)
            else:
                w.close()
        if reset:
            self.relay.note_reset()
        for w in (self.client_writer, self.upstream_writer):
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await w.wait_closed()


class Relay:
    """The relay itself, bound to the running event loop; see the module docstring.

    Use ``async with Relay(...)`` or :meth:`start` / :meth:`stop`.  Toxic changes take effect for
    every open connection and every new one.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = LOOPBACK,
                 listen_port: int = 0, rng: random.Random | None = None,
                 connect_timeout: float = 5.0) -> None:
        _check_loopback(listen_host)
        if not (0 <= listen_port <= 65535) or not (0 < upstream_port <= 65535):
            raise RelayError(f"bad port: listen {listen_port}, upstream {upstream_port}")
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.rng = rng if rng is not None else random.Random()
        self.connect_timeout = connect_timeout
        self._server: asyncio.AbstractServer | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._toxics: dict[str, _Installed] = {}
        self._serial = 0
        self._changed = asyncio.Event()
        self._started = False
        self._counts = {"total": 0, "up": 0, "down": 0, "failures": 0, "resets": 0}

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        """Start listening; returns the (host, port) clients should connect to."""
        if self._started:
            raise RelayError("relay already started")
        await self._listen()
        self._started = True
        return self.address

    async def stop(self) -> None:
        """Stop listening and close every connection; safe to call twice."""
        self._started = False
        for link in list(self._links):
            link.request_close()
        await self._unlisten()
        handlers = list(self._handlers)
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=5.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self.listen_port)

    # -- toxics ----------------------------------------------------------------------------------
    async def add_toxic(self, toxic: Toxic) -> Toxic:
        """Install ``toxic``; its name must not be in use (use :meth:`update_toxic` to replace)."""
        if not isinstance(toxic, Toxic):
            raise ToxicError(f"not a toxic: {toxic!r}")
        if toxic.name in self._toxics:
            raise ToxicError(f"a toxic named {toxic.name!r} is already installed")
        await self._install(toxic)
        return toxic

    async def update_toxic(self, toxic: Toxic) -> Toxic:
        """Replace the toxic of the same name in one step (no moment without either)."""
        old = self._toxics.get(toxic.name)
        if old is None:
            raise ToxicError(f"no toxic named {toxic.name!r}; installed: {', '.join(self._toxics) or 'none'}")
        await self._install(toxic, replacing=old)
        return toxic

    async def remove_toxic(self, name: str) -> None:
        inst = self._toxics.pop(name, None)
        if inst is None:
            raise ToxicError(f"no toxic named {name!r}; installed: {', '.join(self._toxics) or 'none'}")
        await self._uninstall(inst)
        self._notify()

    async def clear_toxics(self) -> None:
        for name in list(self._toxics):
            await self.remove_toxic(name)

    def toxics(self) -> list[Toxic]:
        return [i.toxic for i in self._toxics.values()]

    async def _install(self, toxic: Toxic, replacing: _Installed | None = None) -> None:
        self._serial += 1
        inst = _Installed(toxic, self._serial)
        self._toxics[toxic.name] = inst
        if replacing is not None:
            await self._uninstall(replacing)
        if isinstance(toxic, Down) and not self._down(excluding=inst):
            for link in list(self._links):
                link.request_close()
            await self._unlisten()
        for link in self._links:
            self._arm(link, inst)
        self._notify()

    async def _uninstall(self, inst: _Installed) -> None:
        for link in self._links:
            link.disarm(inst.serial)
        if isinstance(inst.toxic, Down) and self._started and not self._down():
            await self._listen()

    def _arm(self, link: _Link, inst: _Installed) -> None:
        t = inst.toxic
        if isinstance(t, ResetPeer):
            link.arm(inst, t.timeout_ms / 1000.0, reset=True)
        elif isinstance(t, Blackhole) and t.timeout_ms > 0:
            link.arm(inst, t.timeout_ms / 1000.0, reset=False)

    def _down(self, excluding: _Installed | None = None) -> bool:
        return any(isinstance(i.toxic, Down) and i is not excluding for i in self._toxics.values())

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- used by pipes ---------------------------------------------------------------------------
    def shaping_toxics(self, direction: Stream) -> list[_Installed]:
        return [i for i in self._toxics.values()
                if i.toxic.stream.covers(direction) and not isinstance(i.toxic, (Blackhole, ResetPeer, Down))]

    async def wait_released(self, direction: Stream) -> None:
        """Return once no holding toxic applies to ``direction``."""
        while any(i.toxic.holds() and i.toxic.stream.covers(direction) for i in self._toxics.values()):
            await self._changed.wait()

    def count_bytes(self, direction: Stream, n: int) -> None:
        self._counts["up" if direction is Stream.UPSTREAM else "down"] += n

    def note_reset(self) -> None:
        self._counts["resets"] += 1

    def stats(self) -> RelayStats:
        c = self._counts
        return RelayStats(c["total"], len(self._links), c["up"], c["down"], c["failures"], c["resets"])

    # -- connections -----------------------------------------------------------------------------
    async def _listen(self) -> None:
        try:
            self._server = await asyncio.start_server(self._on_connect, self.listen_host, self.listen_port,
                                                      reuse_address=True)
        except OSError as e:
            raise RelayError(f"cannot listen on {self.listen_host}:{self.listen_port}: {e.strerror}") from e
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._counts["total"] += 1
        if self._down() or not self._started:
            writer.close()
            return
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.upstream), self.connect_timeout)
        except (TimeoutError, OSError):
            self._counts["failures"] += 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        link = _Link(self, (reader, writer), upstream)
        self._links.add(link)
        try:
            for inst in self._toxics.values():
                self._arm(link, inst)
            await link.run()
        finally:
            self._links.discard(link)


class RelayServer:
    """A :class:`Relay` in its own thread and event loop, driven by blocking calls.

    ``with RelayServer("127.0.0.1", db_port) as relay:`` then connect clients to ``relay.port``
    and call ``relay.add_toxic(Latency(latency_ms=100))`` while they run.  Leaving the block (also
    on an exception or Ctrl-C) closes every connection and ends the thread.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = LOOPBACK,
                 listen_port: int = 0, rng: random.Random | None = None, connect_timeout: float = 5.0,
                 call_timeout: float = 10.0) -> None:
        _check_loopback(listen_host)
        self._args = {"listen_host": listen_host, "listen_port": listen_port, "rng": rng,
                      "connect_timeout": connect_timeout}
        self._upstream = (upstream_host, upstream_port)
        self._call_timeout = call_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._relay: Relay | None = None
        self.host, self.port = listen_host, listen_port

    def start(self) -> tuple[str, int]:
        """Start the thread and listen; returns (host, port)."""
        if self._thread is not None:
            raise RelayError("relay already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"relay-to-{self._upstream[1]}", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._relay = self._call(self._make_relay())
            self.host, self.port = self._call(self._relay.start())
        except BaseException:
            self.stop()
            raise
        return self.host, self.port

    async def _make_relay(self) -> Relay:
        return Relay(*self._upstream, **self._args)

    def stop(self) -> None:
        """Close everything and end the thread; safe to call twice or after a failed start."""
        loop, thread, relay = self._loop, self._thread, self._relay
        if loop is None or thread is None:
            return
        try:
            if relay is not None and thread.is_alive():
                self._call(relay.stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=self._call_timeout)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = self._relay = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def add_toxic(self, toxic: Toxic) -> Toxic:
        return self._call(self._live().add_toxic(toxic))

    def update_toxic(self, toxic: Toxic) -> Toxic:
        return self._call(self._live().update_toxic(toxic))

    def remove_toxic(self, name: str) -> None:
        self._call(self._live().remove_toxic(name))

    def clear_toxics(self) -> None:
        self._call(self._live().clear_toxics())

    def toxics(self) -> list[Toxic]:
        return self._call(self._sync(lambda r: r.toxics()))

    def stats(self) -> RelayStats:
        return self._call(self._sync(lambda r: r.stats()))

    async def _sync(self, fn: Any) -> Any:
        return fn(self._live())

    def _live(self) -> Relay:
        if self._relay is None:
            raise RelayError("relay is not running")
        return self._relay

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._loop is None:
            coro.close()
            raise RelayError("relay is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=self._call_timeout)
        except TimeoutError:
            future.cancel()
            raise RelayError(f"relay did not answer within {self._call_timeout} s") from None
