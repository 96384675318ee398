"""Connection storm: many clients connect at once, run one query and leave; all must be served.

1,000 clients in the quick profile, 10,000 in full.  Each attempt is one recorded ``connect``
request (connect, ``SELECT``, disconnect) inside a ``storm`` fault window; the checker counts the
fraction served within ConnectionBorrowTimeout.
"""

from __future__ import annotations

import asyncio

import pytest

from harness import process
from harness.clients.address import Address
from harness.clients.client import AsyncClient
from harness.history import Phase, Recorder

CONCURRENCY_CAP = 2000
"""At most this many attempts in flight from this one process (file descriptors, memory)."""


async def _storm(recorder: Recorder, address: Address, clients: int, connect_timeout: float) -> None:
    gate = asyncio.Semaphore(CONCURRENCY_CAP)

    async def attempt(i: int) -> None:
        async with gate:
            client = AsyncClient(recorder, f"storm-{i}", address, identify_connect=True,
                                 connect_timeout=connect_timeout)
            try:
                await client.connect()
            finally:
                await client.close()

    await asyncio.gather(*(attempt(i) for i in range(clients)))


@pytest.mark.guarantee("STORM-SERVED")
@pytest.mark.timeout(900)
def test_connection_storm_is_served(target, recorder, profile, check_context):
    clients = 1000 if profile == "quick" else 10000
    process.raise_fd_limit()
    check_context.setdefault("borrow_timeout_s", 120.0)
    recorder.fault("storm", Phase.START, {"clients": clients})
    try:
        asyncio.run(_storm(recorder, Address.of(target, "writer"), clients, connect_timeout=130))
    finally:
        recorder.fault("storm", Phase.END, {"clients": clients})
