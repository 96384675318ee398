"""The routing, availability, latency, backend-cap and backend-setup failpoints do exactly their one wrong thing,
and with none on the same calls behave: each misbehaviour is shown at its site, without I/O."""

from __future__ import annotations

import asyncio

import pytest
from test_failover_routing import R1, R2, FakeMonitor, W, ZeroClock, open_backend
from test_pool import FakeBackend, settle

from reference_proxy.config import EndpointRole
from reference_proxy.contracts import (
    BackendConnectFailed,
    BorrowTimeout,
    NoReader,
    PoolKey,
    ReleaseState,
    Role,
)
from reference_proxy.failover import REFUSE_EVERY, SPILL_EVERY, FailoverRouting
from reference_proxy.failpoints import FAILPOINTS
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.pool import Pool, PoolSettings
from reference_proxy.routing import Router

ROLES = {"default": EndpointRole.READ_WRITE, "reader": EndpointRole.READ_ONLY}


def routing(failpoint: str | None) -> FailoverRouting:
    routes = Router([(W, Role.WRITER), (R1, Role.READER), (R2, Role.READER)], reader_endpoints={"reader": None})
    pool = Pool(open_backend, PoolSettings(connection_borrow_timeout=1), ZeroClock(), failpoint=failpoint)
    return FailoverRouting(routes, pool, FakeMonitor(routes, {"w": 9, "r1": 9, "r2": 9}), ROLES,
                           failpoint=failpoint)


def served_by(failpoint: str | None, endpoint: str, borrows: int) -> list[str]:
    """The instances ``borrows`` transactions of one session on ``endpoint`` ran on."""
    async def scenario() -> list[str]:
        f = routing(failpoint)
        current = await f.wait_for_instance(endpoint)
        key = PoolKey(current.id, "app", "db")
        seen = []
        for _ in range(borrows):
            backend = f.acquire_now(endpoint, key, current)
            if backend is None:
                current, backend = await f.acquire(endpoint, key, current)
                key = PoolKey(current.id, "app", "db")
            seen.append(backend.address.id)
            f.pool.release(backend, ReleaseState.CLEAN)
        await f.pool.close()
        return seen
    return asyncio.run(scenario())


def test_every_failpoint_here_is_in_the_catalogue_of_failpoints():
    for name in ("writer_spills_to_readers", "reader_falls_back_to_writer", "reader_stays_on_promoted",
                 "refuse_reader_sessions", "slow_borrow", "backend_cap_off_by_one", "backend_setup_retried_at_once"):
        assert name in FAILPOINTS and FAILPOINTS[name].misbehaviour


@pytest.mark.parametrize("failpoint", [None, "slow_borrow", "refuse_reader_sessions"])
def test_without_a_routing_failpoint_the_writer_endpoint_serves_on_the_writer(failpoint):
    assert set(served_by(failpoint, "default", 9)) == {"w"}
    assert set(served_by(failpoint, "reader", 9)) <= {"r1", "r2"}


def test_writer_spills_to_readers_sends_one_writer_transaction_in_three_to_a_reader():
    seen = served_by("writer_spills_to_readers", "default", 3 * SPILL_EVERY)
    assert sum(1 for i in seen if i != "w") == 3 and set(seen) <= {"w", "r1", "r2"}


def test_reader_falls_back_to_writer_when_its_reader_has_no_idle_connection():
    assert set(served_by("reader_falls_back_to_writer", "reader", 5)) == {"w"}


def test_reader_stays_on_promoted_keeps_reading_on_the_new_writer():
    async def scenario(failpoint: str | None) -> str:
        f = routing(failpoint)
        current = await f.wait_for_instance("reader")
        f.router.update({"w": Role.UNKNOWN, current.id: Role.WRITER})  # its reader is promoted
        _, backend = await f.acquire("reader", PoolKey(current.id, "app", "db"), current)
        await f.pool.close()
        return f"{current.id}->{backend.address.id}"
    stayed = asyncio.run(scenario("reader_stays_on_promoted"))
    assert stayed in ("r1->r1", "r2->r2")
    moved = asyncio.run(scenario(None))
    assert moved in ("r1->r2", "r2->r1")


def test_refuse_reader_sessions_refuses_one_new_reader_session_in_ten():
    async def scenario() -> int:
        f = routing("refuse_reader_sessions")
        refused = 0
        for _ in range(3 * REFUSE_EVERY):
            try:
                await f.wait_for_instance("reader")
            except NoReader:
                refused += 1
        await f.pool.close()
        return refused
    assert asyncio.run(scenario()) == 3


def test_slow_borrow_waits_before_every_borrow(monkeypatch):
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def noted_sleep(delay, *args, **kwargs):
        waits.append(delay)
        return await real_sleep(0)
    monkeypatch.setattr(asyncio, "sleep", noted_sleep)
    served_by("slow_borrow", "default", 4)
    assert waits.count(0.010) == 4


@pytest.mark.parametrize(("failpoint", "most"), [(None, 5), ("backend_cap_off_by_one", 6)])
def test_backend_cap_off_by_one_opens_one_connection_beyond_the_cap(failpoint, most):
    async def scenario() -> int:
        backend = FakeBackend()
        pool = Pool(backend, PoolSettings(max_connections_percent=50, connection_borrow_timeout=10),
                    ZeroClock(), ProxyMetrics(), failpoint=failpoint)
        pool.set_instance_max_connections("w", 10)  # cap 5
        key = PoolKey("w", "app", "db")

        async def client(n: int) -> None:
            conn = await pool.borrow(key, W)
            await asyncio.sleep(0)
            pool.release(conn, ReleaseState.CLEAN)
        await asyncio.gather(*(client(n) for n in range(50)))
        await settle(pool)
        await pool.close()
        return backend.most_open["w"]
    assert asyncio.run(scenario()) == most




def test_backend_setup_retried_at_once_tries_a_refused_setup_again_until_it_works():
    async def scenario(failpoint: str | None) -> tuple[str, float, float]:
        backend = FakeBackend()
        backend.fail_next = 7  # the database refuses seven logins in a row (a rotation's window)
        pool = Pool(backend, PoolSettings(connection_borrow_timeout=10), ZeroClock(), ProxyMetrics(),
                    failpoint=failpoint)
        try:
            conn = await pool.borrow(PoolKey("w", "app", "db"), W)
            pool.release(conn, ReleaseState.CLEAN)
            outcome = "lent"
        except BackendConnectFailed:
            outcome = "refused"
        await pool.close()
        return (outcome, pool.metrics.value("DatabaseConnectionsSetupFailed", instance="w"),
                pool.metrics.value("DatabaseConnectionRequests", instance="w"))
    assert asyncio.run(scenario(None)) == ("refused", 1, 1)  # the client hears of it; one failed setup
    assert asyncio.run(scenario("backend_setup_retried_at_once")) == ("lent", 7, 8)


def test_backend_setup_retried_at_once_still_ends_at_the_borrow_timeout():
    async def scenario() -> float:
        backend = FakeBackend()
        backend.fail_next = 10**9
        pool = Pool(backend, PoolSettings(connection_borrow_timeout=0.05), ZeroClock(), ProxyMetrics(),
                    failpoint="backend_setup_retried_at_once")
        with pytest.raises(BorrowTimeout):
            await pool.borrow(PoolKey("w", "app", "db"), W)
        assert pool.snapshot()["instances"]["w"]["open"] == 0
        await pool.close()
        return pool.metrics.value("DatabaseConnectionsSetupFailed", instance="w")
    assert asyncio.run(scenario()) > 1
