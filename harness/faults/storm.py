"""A connection storm: N clients connect at once, each runs one query, and disconnects.

This is the load that RDS Proxy exists for (serverless functions scaling out), and the one that
breaks a database reached directly.  The storm runs in one asyncio loop on the recording clients'
async driver adapter for the address's engine (psycopg for PostgreSQL, aiomysql for MySQL; see
:data:`harness.clients.client.ASYNC_DRIVERS`), so thousands of clients cost one process; each
client's outcome is recorded, grouped by error text, so a report can say *why* clients failed, not
only how many.  The drivers are imported when a storm runs, not when the fault registry loads.

Given a :class:`~harness.history.Recorder`, every client is also recorded as one ``connect``
request (connect, query, disconnect: the STORM-SERVED checker's convention), each client its own
process, classified like any other request.  :class:`StormFault` runs a storm as a registered fault
(``storm``) in a background thread, between its start and end events.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import threading
import time
from typing import Any

from harness.clients.address import Address
from harness.clients.outcomes import Recording, Stage
from harness.faults.base import Fault, FaultError, check_number
from harness.faults.registry import register
from harness.history import Recorder
from harness.targets.base import Target

_STORM_SERIAL = itertools.count(1)


@dataclasses.dataclass
class StormResult:
    """What happened to the storm's clients."""

    clients: int
    ok: int
    errors: dict[str, int]
    seconds: float
    connect_p50_ms: float | None
    connect_max_ms: float | None
    query_p50_ms: float | None
    query_max_ms: float | None

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["failed"] = self.failed
        return d


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def storm(address: Address, clients: int, *, query: str = "SELECT 1",
                hold_seconds: float = 0.0, connect_timeout: float = 130.0,
                ramp_seconds: float = 0.0, recorder: Recorder | None = None, endpoint: str | None = None,
                process_prefix: str = "storm") -> StormResult:
    """Run the storm against ``address`` (any engine) and return the outcome of every client.

    ``ramp_seconds`` spreads the connection attempts evenly over that time (0: all at once);
    ``hold_seconds`` keeps each connection open that long after its query, so the clients
    overlap even when the queries are fast.  With a ``recorder``, client ``i`` is recorded as
    process ``f"{process_prefix}-{i}"`` with one ``connect`` request addressed to ``endpoint``
    (by default the address's own label).
    """
    from harness.clients.client import ASYNC_DRIVERS
    from harness.clients.dialects import dialect_for

    dialect = dialect_for(address.engine)
    driver = ASYNC_DRIVERS[address.engine]
    label = endpoint or address.endpoint
    errors: collections.Counter[str] = collections.Counter()
    connect_ms: list[float] = []
    query_ms: list[float] = []
    ok = 0
    start_gate = asyncio.Event()

    async def one(i: int) -> None:
        nonlocal ok
        await start_gate.wait()
        if ramp_seconds:
            await asyncio.sleep(ramp_seconds * i / clients)
        recording = Recording(recorder, f"{process_prefix}-{i}", label) if recorder is not None else None
        inv = recording.invoke("connect") if recording is not None else None

        def failed(e: Exception, stage: Stage) -> None:
            """Count the failure under the driver's own words and record it (idempotent: never info)."""
            error = dialect.classify(e, stage)
            step = "connect" if stage is Stage.CONNECT else "query"
            errors[f"{step}: {error.text or type(e).__name__}"] += 1
            if inv is not None and recording is not None:
                recording.error(inv, error, idempotent=True)

        connection = driver(address, connect_timeout=connect_timeout, **driver.plaintext_options)
        t0 = time.perf_counter()
        try:
            await connection.open()
        except Exception as e:  # noqa: BLE001 - every failure is data, classified by the dialect
            failed(e, Stage.CONNECT)
            return
        t1 = time.perf_counter()
        connect_ms.append((t1 - t0) * 1000)
        try:
            await connection.execute(query)
            query_ms.append((time.perf_counter() - t1) * 1000)
            if inv is not None and recording is not None:
                recording.ok(inv, None)
                inv = None
            if hold_seconds:
                await asyncio.sleep(hold_seconds)
            ok += 1
        except Exception as e:  # noqa: BLE001 - likewise
            failed(e, Stage.COMMIT)
        finally:
            await connection.close()

    tasks = [asyncio.create_task(one(i)) for i in range(clients)]
    started = time.perf_counter()
    start_gate.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return StormResult(clients, ok, dict(errors), elapsed, _pct(connect_ms, 0.5), _pct(connect_ms, 1.0),
                       _pct(query_ms, 0.5), _pct(query_ms, 1.0))


def run_storm(address: Address, clients: int, **kwargs: Any) -> StormResult:
    """Synchronous wrapper of :func:`storm` (any engine), with a raised descriptor limit."""
    from harness.process import raise_fd_limit

    raise_fd_limit(clients * 2 + 1024)
    return asyncio.run(storm(address, clients, **kwargs))


@register("storm")
@dataclasses.dataclass
class StormFault(Fault):
    """``clients`` simultaneous connect-query-disconnect clients against an endpoint (any engine).

    The storm runs in a background thread from :meth:`start`; :meth:`stop` waits for every client
    to finish and writes the end event with the outcome counts.  It needs no control capability:
    any target with endpoints can be stormed.
    """

    requires = None
    clients: int = 100
    endpoint: str = "writer"
    query: str = "SELECT 1"
    hold_seconds: float = 0.0
    connect_timeout: float = 130.0
    ramp_seconds: float = 0.0

    def validate(self) -> None:
        check_number(self.name, "clients", self.clients, low=1, high=10_000, integer=True)
        check_number(self.name, "hold_seconds", self.hold_seconds, high=3600)
        check_number(self.name, "connect_timeout", self.connect_timeout, low=1, high=3600)
        check_number(self.name, "ramp_seconds", self.ramp_seconds, high=3600)
        if self.endpoint not in ("writer", "reader"):
            raise FaultError(f"{self.name}: endpoint must be 'writer' or 'reader', got {self.endpoint!r}")
        if not isinstance(self.query, str) or not self.query.strip():
            raise FaultError(f"{self.name}: query must be a non-empty SQL string")
        self.result: StormResult | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def apply(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> None:
        from harness.process import raise_fd_limit

        address = Address.of(target, self.endpoint)
        raise_fd_limit(self.clients * 2 + 1024)
        prefix = f"storm{next(_STORM_SERIAL)}"

        def run() -> None:
            try:
                self.result = asyncio.run(storm(
                    address, self.clients, query=self.query, hold_seconds=self.hold_seconds,
                    connect_timeout=self.connect_timeout, ramp_seconds=self.ramp_seconds,
                    recorder=recorder, endpoint=self.endpoint, process_prefix=prefix))
            except BaseException as e:  # noqa: BLE001 - reported by stop()
                self._failure = e

        self._thread = threading.Thread(target=run, name=prefix, daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every storm client to finish; True if they did within ``timeout``."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def heal(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> dict[str, Any]:
        limit = self.ramp_seconds + self.connect_timeout + self.hold_seconds + 60
        if not self.wait(limit):
            raise FaultError(f"storm clients still running after {limit:.0f} s")
        if self._failure is not None:
            raise FaultError(f"the storm failed: {self._failure!r}") from self._failure
        assert self.result is not None
        return {"ok": self.result.ok, "failed": self.result.failed}
