"""Small reusable workloads built on the recording clients: write loops, read loops, idle clients.

Suites and the failover timeline combine these with faults.  A loop keeps one client (one history
process) for as long as its connection lives and takes a fresh client - a new process id - when the
connection breaks, so the history shows both the failed request and every reconnect attempt.
Loops wait on their stop event between requests (never a bare sleep), so stopping is immediate.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from typing import Any, Self

from harness.clients.base import Address, ClientError, ProcessIds, Result
from harness.history import Recorder

RECONNECT_PAUSE = 0.05
"""Seconds between reconnect attempts, so a refusing endpoint does not spin a core."""


class ClientFactory:
    """Makes recording clients for one address, each with a new process id.

    ``options`` go to the client's constructor (``op_timeout``, ``table``, driver options).
    """

    def __init__(self, recorder: Recorder, address: Address, *, process_ids: ProcessIds | None = None,
                 **options: Any) -> None:
        self.recorder = recorder
        self.address = address
        self.process_ids = process_ids or ProcessIds()
        self.options = options

    def new(self) -> Any:
        """A sync client (PgClient or MySQLClient), not yet connected."""
        if self.address.engine == "postgres":
            from harness.clients.postgres import PgClient
            return PgClient(self.recorder, self.process_ids.next(), self.address, **self.options)
        from harness.clients.mysql import MySQLClient
        return MySQLClient(self.recorder, self.process_ids.next(), self.address, **self.options)

    def new_async(self) -> Any:
        """An AsyncPgClient (PostgreSQL only), not yet connected."""
        if self.address.engine != "postgres":
            raise ClientError("asynchronous clients exist for PostgreSQL only")
        from harness.clients.postgres import AsyncPgClient
        return AsyncPgClient(self.recorder, self.process_ids.next(), self.address, **self.options)


class Loop:
    """One client thread repeating a request until stopped; see :func:`write_loop` / :func:`read_loop`.

    ``request(client)`` performs one recorded request and returns its :class:`Result`.
    """

    def __init__(self, factory: ClientFactory, request: Callable[[Any], Result], *, interval: float = 0.0,
                 name: str = "loop") -> None:
        if interval < 0:
            raise ClientError(f"interval must be >= 0 seconds, got {interval!r}")
        self.factory = factory
        self.request = request
        self.interval = interval
        self.counts: collections.Counter[str] = collections.Counter()
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Loop:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> dict[str, int]:
        """Ask the loop to finish its current request and end; returns counts by outcome."""
        self.stop_event.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ClientError(f"{self._thread.name} did not stop within {timeout} s")
        if self.error is not None:
            raise ClientError(f"{self._thread.name} failed: {self.error!r}") from self.error
        return dict(self.counts)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self._thread.join(60.0)

    def _run(self) -> None:
        client = None
        try:
            while not self.stop_event.is_set():
                if client is None or not client.connected:
                    if client is not None:
                        client.close()
                    client = self.factory.new()
                    self.counts["connect:" + client.connect().type.value] += 1
                    if not client.connected:
                        self.stop_event.wait(RECONNECT_PAUSE)
                        continue
                self.counts[self.request(client).type.value] += 1
                if self.interval:
                    self.stop_event.wait(self.interval)
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
        return self._ids.next()


def write_loop(factory: ClientFactory, ids: UniqueIds, *, interval: float = 0.0) -> Loop:
    """A loop writing a new unique id per request (op ``write``); call ``start()`` or use ``with``."""
    return Loop(factory, lambda c: c.write(ids.next()), interval=interval, name="write-loop")


def read_loop(factory: ClientFactory, *, interval: float = 0.0) -> Loop:
    """A loop reading the writes table (op ``read``)."""
    return Loop(factory, lambda c: c.read(), interval=interval, name="read-loop")


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
        self.clients: list[Any] = []

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
            if client.conn is not None:
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
