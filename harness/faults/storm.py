"""A connection storm: N clients connect at once, each runs one query, and disconnects.

This is the load that RDS Proxy exists for (serverless functions scaling out), and the one that
breaks a database reached directly.  The storm runs in one asyncio loop with psycopg's async
connections, so thousands of clients cost one process; each client's outcome is recorded, grouped
by error text, so a report can say *why* clients failed, not only how many.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from typing import Any


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


async def storm(conninfo: dict[str, Any], clients: int, *, query: str = "SELECT 1",
                hold_seconds: float = 0.0, connect_timeout: float = 130.0,
                ramp_seconds: float = 0.0) -> StormResult:
    """Run the storm against a PostgreSQL endpoint and return the outcome of every client.

    ``ramp_seconds`` spreads the connection attempts evenly over that time (0: all at once);
    ``hold_seconds`` keeps each connection open that long after its query, so the clients
    overlap even when the queries are fast.
    """
    import psycopg

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
        t0 = time.perf_counter()
        try:
            conn = await psycopg.AsyncConnection.connect(
                **conninfo, autocommit=True, connect_timeout=int(connect_timeout), sslmode="disable")
        except Exception as e:  # every failure is data; classify it by its first line
            errors[f"connect: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"] += 1
            return
        t1 = time.perf_counter()
        connect_ms.append((t1 - t0) * 1000)
        try:
            async with conn:
                await (await conn.execute(query)).fetchall()
                query_ms.append((time.perf_counter() - t1) * 1000)
                if hold_seconds:
                    await asyncio.sleep(hold_seconds)
            ok += 1
        except Exception as e:
            errors[f"query: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"] += 1

    tasks = [asyncio.create_task(one(i)) for i in range(clients)]
    started = time.perf_counter()
    start_gate.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return StormResult(clients, ok, dict(errors), elapsed, _pct(connect_ms, 0.5), _pct(connect_ms, 1.0),
                       _pct(query_ms, 0.5), _pct(query_ms, 1.0))


def run_storm(conninfo: dict[str, Any], clients: int, **kwargs: Any) -> StormResult:
    """Synchronous wrapper of :func:`storm` with a raised descriptor limit."""
    from harness.standins.process import raise_fd_limit

    raise_fd_limit(clients * 2 + 1024)
    return asyncio.run(storm(conninfo, clients, **kwargs))
