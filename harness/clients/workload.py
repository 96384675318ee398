"""Workloads built on the recording clients: the one request loop, and idle clients.

A :class:`Loop` runs ``workers`` threads; each keeps one client (one history process) for as long
as its connection lives and takes a fresh client - a new process id - when the connection breaks,
so the history shows both the failed request and every reconnect attempt.  Loops wait on their
stop event between requests (never a bare sleep), so stopping is immediate.  Suites' background
clients, the failover bench, the connection samplers and the tests all run this one loop; what
differs is the request, the pace, and what is done with each result.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from typing import Any, Self

from harness.clients.address import Address, ProcessIds
from harness.clients.client import AsyncClient, Client
from harness.clients.outcomes import Result
from harness.clients.plans import ClientError
from harness.history import Recorder

RECONNECT_PAUSE = 0.05
"""Seconds between reconnect attempts, so a refusing endpoint does not spin a core."""


class ClientFactory:
    """Makes recording clients for one address, each with a new process id.

    ``options`` go to the client's constructor (``op_timeout``, ``table``, ``worker``, driver options).
    """

    def __init__(self, recorder: Recorder, address: Address, *, process_ids: ProcessIds | None = None,
                 **options: Any) -> None:
        self.recorder = recorder
        self.address = address
        self.process_ids = process_ids or ProcessIds()
        self.options = options

    def new(self, **options: Any) -> Client:
        """A blocking client, not yet connected (``options`` add to the factory's)."""
        return Client(self.recorder, self.process_ids.next(), self.address, **{**self.options, **options})

    def new_async(self, **options: Any) -> AsyncClient:
        """An asynchronous client, not yet connected."""
        return AsyncClient(self.recorder, self.process_ids.next(), self.address, **{**self.options, **options})


class Loop:
    """``workers`` client threads repeating ``request(client)`` until stopped.

    ``new_client()`` returns a client not yet connected; the loop connects it, and replaces it by a
    new one when its connection is gone.  After each request the thread waits ``interval``, after a
    failed one ``failure_pause`` (default: ``interval``), and after a failed connect ``pause``, so
    a target that keeps refusing is not hammered.  ``on_result(result)`` sees every request's
    result.  ``stop_event`` lets several loops stop together.
    """

    def __init__(self, new_client: Callable[[], Any], request: Callable[[Any], Result], *,
                 workers: int = 1, interval: float = 0.0, pause: float = RECONNECT_PAUSE,
                 failure_pause: float | None = None, on_result: Callable[[Result], None] | None = None,
                 stop_event: threading.Event | None = None, name: str = "loop") -> None:
        if interval < 0 or pause < 0 or (failure_pause or 0) < 0:
            raise ClientError(f"interval and pauses must be >= 0 seconds, got {interval!r}, {pause!r}, "
                              f"{failure_pause!r}")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ClientError(f"a loop needs at least one worker, got {workers!r}")
        self.new_client = new_client
        self.request = request
        self.interval = interval
        self.pause = pause
        self.failure_pause = interval if failure_pause is None else failure_pause
        self.on_result = on_result
        self.name = name
        self.counts: collections.Counter[str] = collections.Counter()
        self.stop_event = stop_event or threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{n}" if workers > 1 else name,
                                          daemon=True) for n in range(workers)]

    def start(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 60.0) -> dict[str, int]:
        """Ask the loop to finish its current requests and end; returns counts by outcome."""
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                raise ClientError(f"{t.name} did not stop within {timeout} s")
        if self.error is not None:
            raise ClientError(f"{self.name} failed: {self.error!r}") from self.error
        return dict(self.counts)

    def join(self, timeout: float = 60.0) -> None:
        """Wait for the threads to end once the stop event is set (without judging how they ended)."""
        for t in self._threads:
            t.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.join()

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _pause(self, seconds: float) -> None:
        if seconds:
            self.stop_event.wait(seconds)

    def _run(self) -> None:
        client = None
        try:
            while not self.stop_event.is_set():
                if client is None or not client.connected:
                    if client is not None:
                        client.close()
                    client = self.new_client()
                    connected = client.connect()
                    self._count("connect:" + connected.type.value)
                    if not client.connected:
                        self._pause(self.pause)
                        continue
                result = self.request(client)
                self._count(result.type.value)
                if self.on_result is not None:
                    self.on_result(result)
                self._pause(self.interval if result.ok else self.failure_pause)
        except BaseException as e:  # noqa: BLE001 - reported by stop(); a thread must not die silently
            self.error = e
        finally:
            if client is not None:
                client.close()


class UniqueIds:
    """Unique write ids shared by every loop of a run."""

    def __init__(self, start: int = 1) -> None:
        self._ids = ProcessIds(start)

    def next(self) -> int:
        n = self._ids.next()
        assert isinstance(n, int)
        return n


def write_loop(factory: ClientFactory, ids: UniqueIds, *, interval: float = 0.0, workers: int = 1) -> Loop:
    """A loop writing a new unique id per request (op ``write``); call ``start()`` or use ``with``."""
    return Loop(factory.new, lambda c: c.write(ids.next()), interval=interval, workers=workers,
                name="write-loop")


def read_loop(factory: ClientFactory, *, interval: float = 0.0, workers: int = 1) -> Loop:
    """A loop reading the writes table (op ``read``)."""
    return Loop(factory.new, lambda c: c.read(), interval=interval, workers=workers, name="read-loop")


async def async_write_loop(factory: ClientFactory, ids: UniqueIds, stop: asyncio.Event, *,
                           interval: float = 0.0) -> dict[str, int]:
    """The write loop as an asyncio task (PostgreSQL); returns counts by outcome when ``stop`` is set."""
    counts: collections.Counter[str] = collections.Counter()
    client = None
    try:
        while not stop.is_set():
            if client is None or not client.connected:
                if client is not None:
                    await client.close()
                client = factory.new_async()
                counts["connect:" + (await client.connect()).type.value] += 1
                if not client.connected:
                    await _wait(stop, RECONNECT_PAUSE)
                    continue
            counts[(await client.write(ids.next())).type.value] += 1
            if interval:
                await _wait(stop, interval)
    finally:
        if client is not None:
            await client.close()
    return dict(counts)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


class IdleClients:
    """N connections opened before a fault that stay silent through it, then probe once each.

    This is the FAILOVER-IDLE-SURVIVAL workload: :meth:`connect` before the fault, :meth:`probe`
    after it (op ``idle_probe`` on the same connection).  Probes that fail are not retried.
    """

    def __init__(self, factory: ClientFactory, count: int) -> None:
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10000:
            raise ClientError(f"idle client count must be from 1 to 10000, got {count!r}")
        self.factory = factory
        self.count = count
        self.clients: list[Client] = []

    def connect(self) -> int:
        """Open every connection; returns how many opened."""
        for _ in range(self.count):
            client = self.factory.new()
            client.connect()
            self.clients.append(client)
        return sum(1 for c in self.clients if c.connected)

    def probe(self) -> dict[str, int]:
        """One ``idle_probe`` per connection that opened; counts by outcome."""
        counts: collections.Counter[str] = collections.Counter()
        for client in self.clients:
            if client.opened:
                counts[client.idle_probe().type.value] += 1
        return dict(counts)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ClientFactory", "IdleClients", "Loop", "UniqueIds", "async_write_loop", "read_loop",
           "write_loop"]
