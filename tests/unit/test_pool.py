"""The pool on a fake backend factory and a fake clock: caps, fairness, timeouts, reset, reaping."""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
from collections import Counter

import pytest

from reference_proxy.contracts import (
    BackendConnectFailed,
    BorrowTimeout,
    ConfigError,
    InstanceAddress,
    PoolKey,
    ReleaseState,
)
from reference_proxy.leaking import LeakingPool
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.pool import (
    BACKEND_IDLE_AFTER,
    BACKEND_UNUSED_LIMIT,
    NotBorrowed,
    Pool,
    PoolClosed,
    PoolError,
    PoolSettings,
)

A = InstanceAddress("inst-a", "127.0.0.1", 1)
B = InstanceAddress("inst-b", "127.0.0.1", 2)
KEY_A1 = PoolKey("inst-a", "app", "db1")
KEY_A2 = PoolKey("inst-a", "app", "db2")
KEY_B1 = PoolKey("inst-b", "app", "db1")


def asynctest(fn):
    """Run an async test on a fresh event loop, bounded so a hang fails instead of stalling CI."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))
    return run


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeConn:
    def __init__(self, key: PoolKey, backend_id: str, backend: FakeBackend) -> None:
        self.key = key
        self.backend_id = backend_id
        self.backend = backend
        self.usable = True
        self.closed = False
        self.resets = 0

    def is_usable(self) -> bool:
        return self.usable and not self.closed

    async def reset(self) -> bool:
        self.resets += 1
        await asyncio.sleep(0)
        return self.backend.reset_ok

    async def close(self) -> None:
        await asyncio.sleep(0)
        if not self.closed:
            self.closed = True
            self.backend.open_now[self.key.instance_id] -= 1


class FakeBackend:
    """A factory that counts connections per instance, like the server would."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.open_now: dict[str, int] = {}
        self.most_open: dict[str, int] = {}
        self.fail_next = 0
        self.reset_ok = True
        self.hang = False
        self.made: list[FakeConn] = []

    async def __call__(self, key: PoolKey, address: InstanceAddress) -> FakeConn:
        await asyncio.sleep(0)
        if self.hang:
            await asyncio.Event().wait()
        if self.fail_next:
            self.fail_next -= 1
            raise BackendConnectFailed("connection refused")
        n = self.open_now[address.id] = self.open_now.get(address.id, 0) + 1
        self.most_open[address.id] = max(n, self.most_open.get(address.id, 0))
        conn = FakeConn(key, f"pid-{next(self.ids)}", self)
        self.made.append(conn)
        return conn


def make_pool(pool_class: type[Pool] = Pool, **settings) -> tuple[Pool, FakeBackend, FakeClock]:
    backend, clock = FakeBackend(), FakeClock()
    pool = pool_class(backend, PoolSettings(**settings), clock, ProxyMetrics())
    return pool, backend, clock


async def settle(pool: Pool) -> None:
    """Let background closes and resets run to completion."""
    for _ in range(50):
        if not pool._tasks:
            return
        await asyncio.gather(*list(pool._tasks), return_exceptions=True)


@asynctest
async def test_borrow_opens_lazily_and_reuses_a_clean_connection():
    pool, backend, _ = make_pool()
    assert backend.made == []
    conn = await pool.borrow(KEY_A1, A)
    pool.release(conn, ReleaseState.CLEAN)
    again = await pool.borrow(KEY_A1, A)
    assert again is conn
    assert len(backend.made) == 1
    other_db = await pool.borrow(KEY_A2, A)
    assert other_db is not conn  # keys never share connections
    for c in (again, other_db):
        pool.release(c, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_cap_per_instance_holds_under_many_concurrent_borrowers():
    pool, backend, _ = make_pool(max_connections_percent=50, connection_borrow_timeout=10)
    pool.set_instance_max_connections("inst-a", 10)  # cap 5 across both keys of inst-a
    served = []

    async def client(n: int) -> None:
        key = KEY_A1 if n % 2 else KEY_A2
        conn = await pool.borrow(key, A)
        served.append(n)
        await asyncio.sleep(0)
        pool.release(conn, ReleaseState.CLEAN)

    await asyncio.gather(*(client(n) for n in range(200)))
    await settle(pool)
    assert len(served) == 200
    assert backend.most_open["inst-a"] == 5
    assert pool.metrics.value("MaxDatabaseConnectionsAllowed", instance="inst-a") == 5
    await pool.close()
    assert backend.open_now["inst-a"] == 0


@asynctest
async def test_waiters_are_served_first_in_first_out():
    pool, _, _ = make_pool(connection_borrow_timeout=10)
    pool.set_instance_max_connections("inst-a", 1)
    held = await pool.borrow(KEY_A1, A)
    order = []

    async def waiter(n: int) -> None:
        conn = await pool.borrow(KEY_A1, A)
        order.append(n)
        pool.release(conn, ReleaseState.CLEAN)

    tasks = []
    for n in range(5):
        tasks.append(asyncio.create_task(waiter(n)))
        await asyncio.sleep(0)  # queue them in a known order
    await asyncio.sleep(0)
    assert pool.snapshot()["instances"]["inst-a"]["waiting"] == 5
    pool.release(held, ReleaseState.CLEAN)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    await pool.close()


@asynctest
async def test_a_waiter_for_another_key_gets_room_by_closing_an_idle_connection():
    pool, backend, _ = make_pool(connection_borrow_timeout=10)
    pool.set_instance_max_connections("inst-a", 2)
    first, second = await pool.borrow(KEY_A1, A), await pool.borrow(KEY_A1, A)
    pool.release(first, ReleaseState.CLEAN)  # idle, but for db1 only; the instance is at its cap
    conn = await asyncio.wait_for(pool.borrow(KEY_A2, A), 5)
    assert conn.key == KEY_A2
    assert first.closed
    assert backend.most_open["inst-a"] == 2
    pool.release(conn, ReleaseState.CLEAN)
    pool.release(second, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_caps_are_per_instance():
    pool, _, _ = make_pool(connection_borrow_timeout=0.05)
    pool.set_instance_max_connections("inst-a", 1)
    pool.set_instance_max_connections("inst-b", 1)
    on_a = await pool.borrow(KEY_A1, A)
    on_b = await pool.borrow(KEY_B1, B)  # inst-a being full does not matter
    with pytest.raises(BorrowTimeout):
        await pool.borrow(KEY_A1, A)
    pool.release(on_a, ReleaseState.CLEAN)
    pool.release(on_b, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_timeout_raises_rds_text_and_counts_no_connection():
    pool, _, _ = make_pool(connection_borrow_timeout=0.05, max_idle_connections_percent=100)
    pool.set_instance_max_connections("inst-a", 1)
    held = await pool.borrow(KEY_A1, A)
    with pytest.raises(BorrowTimeout) as caught:
        await pool.borrow(KEY_A1, A)
    assert str(caught.value) == "Timed-out waiting to acquire database connection."
    assert pool.snapshot()["instances"]["inst-a"]["waiting"] == 0
    pool.release(held, ReleaseState.CLEAN)
    assert (await pool.borrow(KEY_A1, A)) is held  # the line is not jammed by the timed-out waiter
    pool.release(held, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_explicit_timeout_overrides_the_setting():
    pool, _, _ = make_pool(connection_borrow_timeout=300)
    pool.set_instance_max_connections("inst-a", 1)
    held = await pool.borrow(KEY_A1, A)
    with pytest.raises(BorrowTimeout):
        await asyncio.wait_for(pool.borrow(KEY_A1, A, timeout=0.05), 5)
    pool.release(held, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_timeout_zero_fails_at_once_without_idle_even_below_the_cap():
    pool, backend, _ = make_pool(connection_borrow_timeout=0)
    with pytest.raises(BorrowTimeout, match="Timed-out waiting to acquire database connection."):
        await pool.borrow(KEY_A1, A)
    assert backend.made == []  # the pool could not grow
    # With an idle connection of the key pooled, timeout 0 is served from it.
    warm = await pool.borrow(KEY_A1, A, timeout=1)
    pool.release(warm, ReleaseState.CLEAN)
    assert (await pool.borrow(KEY_A1, A)) is warm
    pool.release(warm, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_dirty_release_resets_before_reuse():
    pool, _, _ = make_pool()
    conn = await pool.borrow(KEY_A1, A)
    pool.release(conn, ReleaseState.DIRTY)
    await settle(pool)
    assert conn.resets == 1 and not conn.closed
    assert (await pool.borrow(KEY_A1, A)) is conn
    pool.release(conn, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_the_leaking_pool_lends_a_dirty_connection_again_without_a_reset():
    pool, _, _ = make_pool(LeakingPool)
    conn = await pool.borrow(KEY_A1, A)
    pool.release(conn, ReleaseState.DIRTY)
    await settle(pool)
    assert conn.resets == 0 and not conn.closed
    assert (await pool.borrow(KEY_A1, A)) is conn
    pool.release(conn, ReleaseState.BROKEN)  # what cannot be used again is still closed
    await settle(pool)
    assert conn.closed
    await pool.close()


@asynctest
async def test_dirty_release_closes_when_reset_fails():
    pool, backend, _ = make_pool()
    backend.reset_ok = False
    conn = await pool.borrow(KEY_A1, A)
    pool.release(conn, ReleaseState.DIRTY)
    await settle(pool)
    assert conn.closed
    fresh = await pool.borrow(KEY_A1, A)
    assert fresh is not conn
    pool.release(fresh, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_broken_release_closes_and_frees_the_slot():
    pool, backend, _ = make_pool(connection_borrow_timeout=5)
    pool.set_instance_max_connections("inst-a", 1)
    conn = await pool.borrow(KEY_A1, A)
    waiting = asyncio.create_task(pool.borrow(KEY_A1, A))
    await asyncio.sleep(0)
    pool.release(conn, ReleaseState.BROKEN)
    replacement = await asyncio.wait_for(waiting, 5)
    assert conn.closed and replacement is not conn
    assert backend.most_open["inst-a"] == 1
    pool.release(replacement, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_unusable_idle_connection_is_not_lent():
    pool, _, _ = make_pool()
    conn = await pool.borrow(KEY_A1, A)
    pool.release(conn, ReleaseState.CLEAN)
    conn.usable = False  # the server closed it while idle
    fresh = await pool.borrow(KEY_A1, A)
    assert fresh is not conn
    pool.release(fresh, ReleaseState.CLEAN)
    await pool.close()
    assert conn.closed


@asynctest
async def test_factory_failure_propagates_and_frees_the_slot():
    pool, backend, _ = make_pool(connection_borrow_timeout=1)
    pool.set_instance_max_connections("inst-a", 1)
    backend.fail_next = 1
    with pytest.raises(BackendConnectFailed):
        await pool.borrow(KEY_A1, A)
    assert pool.snapshot()["instances"]["inst-a"]["open"] == 0
    conn = await pool.borrow(KEY_A1, A)  # the one slot is usable again
    assert pool.metrics.value("DatabaseConnectionsSetupFailed", instance="inst-a") == 1
    assert pool.metrics.value("DatabaseConnectionRequests", instance="inst-a") == 2
    pool.release(conn, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_factory_that_hangs_is_bounded_by_the_borrow_timeout():
    pool, backend, _ = make_pool(connection_borrow_timeout=0.05)
    backend.hang = True
    with pytest.raises(BorrowTimeout):
        await pool.borrow(KEY_A1, A)
    assert pool.snapshot()["instances"]["inst-a"]["open"] == 0
    await pool.close()


@asynctest
async def test_idle_cap_keeps_recently_used_connections_and_reap_trims_the_long_idle():
    """Returning connections never closes them (no churn under steady load); after five idle
    minutes reap() trims the pool down to MaxIdleConnectionsPercent."""
    pool, backend, clock = make_pool(max_idle_connections_percent=20)
    pool.set_instance_max_connections("inst-a", 10)  # idle cap 2
    conns = [await pool.borrow(KEY_A1, A) for _ in range(5)]
    for conn in conns:
        pool.release(conn, ReleaseState.CLEAN)
    await settle(pool)
    assert pool.snapshot()["instances"]["inst-a"]["idle"] == 5
    assert pool.reap() == 0  # all used just now
    clock.now += BACKEND_IDLE_AFTER + 1
    assert pool.reap() == 3
    await settle(pool)
    snap = pool.snapshot()["instances"]["inst-a"]
    assert snap["idle"] == 2 and snap["open"] == 2
    assert backend.open_now["inst-a"] == 2
    assert pool.metrics.value("DatabaseConnections", instance="inst-a") == 2
    await pool.close()


@asynctest
async def test_reap_closes_day_old_connections_even_within_the_cap():
    pool, backend, clock = make_pool()
    pool.set_instance_max_connections("inst-a", 4)  # idle cap 2
    conns = [await pool.borrow(KEY_A1, A) for _ in range(2)]
    for conn in conns:
        pool.release(conn, ReleaseState.CLEAN)
    await settle(pool)
    clock.now += BACKEND_IDLE_AFTER + 1
    assert pool.reap() == 0  # within the idle cap
    clock.now += BACKEND_UNUSED_LIMIT
    assert pool.reap() == 2
    await settle(pool)
    assert backend.open_now["inst-a"] == 0
    await pool.close()


@asynctest
async def test_reap_spares_recent_idle_connections_beyond_the_cap():
    pool, _, clock = make_pool()
    pool.set_instance_max_connections("inst-a", 4)
    conns = [await pool.borrow(KEY_A1, A) for _ in range(2)]
    for conn in conns:
        pool.release(conn, ReleaseState.CLEAN)
    # Lower the cap behind the pool's back so two idle exceed an idle cap of 1 without a trim.
    pool._instances["inst-a"].max_connections = 2
    assert pool.reap() == 0  # both idle for less than five minutes
    clock.now += BACKEND_IDLE_AFTER
    assert pool.reap() == 1
    await pool.close()


@asynctest
async def test_close_instance_closes_idle_now_and_lent_on_release():
    pool, _, _ = make_pool()
    idle = await pool.borrow(KEY_A1, A)
    lent = await pool.borrow(KEY_A1, A)
    other = await pool.borrow(KEY_B1, B)
    pool.release(idle, ReleaseState.CLEAN)
    assert pool.close_instance("inst-a") == 1
    await settle(pool)
    assert idle.closed and not lent.closed
    pool.release(lent, ReleaseState.CLEAN)
    await settle(pool)
    assert lent.closed
    pool.release(other, ReleaseState.CLEAN)
    assert not other.closed  # other instances untouched
    await pool.close()


@asynctest
async def test_gauges_follow_borrow_pin_and_transaction_state():
    pool, _, _ = make_pool()
    conn = await pool.borrow(KEY_A1, A)
    m = pool.metrics
    assert m.value("DatabaseConnectionsCurrentlyBorrowed", instance="inst-a") == 1
    pool.mark_pinned(conn)
    pool.mark_pinned(conn)  # idempotent
    pool.mark_in_transaction(conn, True)
    assert m.value("DatabaseConnectionsCurrentlySessionPinned", instance="inst-a") == 1
    assert m.value("DatabaseConnectionsCurrentlyInTransaction", instance="inst-a") == 1
    assert pool.snapshot()["instances"]["inst-a"]["pinned"] == 1
    pool.release(conn, ReleaseState.DIRTY)
    await settle(pool)
    for name in ("DatabaseConnectionsCurrentlyBorrowed", "DatabaseConnectionsCurrentlySessionPinned",
                 "DatabaseConnectionsCurrentlyInTransaction"):
        assert m.value(name, instance="inst-a") == 0, name
    assert m.value("DatabaseConnectionsBorrowLatency", instance="inst-a") == 1
    await pool.close()


@asynctest
async def test_bad_calls_get_clear_errors():
    pool, _, _ = make_pool()
    conn = await pool.borrow(KEY_A1, A)
    pool.release(conn, ReleaseState.CLEAN)
    with pytest.raises(NotBorrowed):
        pool.release(conn, ReleaseState.CLEAN)  # twice
    with pytest.raises(NotBorrowed):
        pool.mark_pinned(conn)
    with pytest.raises(PoolError, match="inst-b"):
        await pool.borrow(KEY_A1, B)
    with pytest.raises(PoolError):
        pool.set_instance_max_connections("inst-a", 0)
    with pytest.raises(ValueError):
        pool.release(conn, "sticky")
    await pool.close()


@asynctest
async def test_close_fails_waiters_and_refuses_new_borrows():
    pool, backend, _ = make_pool(connection_borrow_timeout=10)
    pool.set_instance_max_connections("inst-a", 1)
    held = await pool.borrow(KEY_A1, A)
    waiting = asyncio.create_task(pool.borrow(KEY_A1, A))
    await asyncio.sleep(0)
    await pool.close()
    with pytest.raises(PoolClosed):
        await waiting
    with pytest.raises(PoolClosed):
        await pool.borrow(KEY_A1, A)
    pool.release(held, ReleaseState.CLEAN)  # comes back after shutdown: closed, not pooled
    await settle(pool)
    assert held.closed and backend.open_now["inst-a"] == 0


@asynctest
async def test_drain_waits_for_lent_connections():
    pool, backend, _ = make_pool()
    conn = await pool.borrow(KEY_A1, A)
    draining = asyncio.create_task(pool.drain(timeout=5))
    await asyncio.sleep(0.01)
    assert not draining.done()
    pool.release(conn, ReleaseState.CLEAN)
    assert await asyncio.wait_for(draining, 5) is True
    assert backend.open_now["inst-a"] == 0
    assert pool.snapshot()["state"] == "closed"


@asynctest
async def test_drain_gives_up_after_its_timeout():
    pool, _, _ = make_pool()
    conn = await pool.borrow(KEY_A1, A)
    assert await pool.drain(timeout=0.05) is False
    pool.release(conn, ReleaseState.CLEAN)
    await settle(pool)
    assert conn.closed


@asynctest
async def test_cancelled_borrower_does_not_leak_its_place():
    pool, _, _ = make_pool(connection_borrow_timeout=10, max_idle_connections_percent=100)
    pool.set_instance_max_connections("inst-a", 1)
    held = await pool.borrow(KEY_A1, A)
    waiting = asyncio.create_task(pool.borrow(KEY_A1, A))
    await asyncio.sleep(0)
    pool.release(held, ReleaseState.CLEAN)  # granted to the waiter ...
    waiting.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await pool.borrow(KEY_A1, A, timeout=0)) is held  # handed back to the pool
    pool.release(held, ReleaseState.CLEAN)
    await pool.close()


def test_settings_defaults_and_ranges():
    s = PoolSettings()
    assert (s.max_connections_percent, s.max_idle_connections_percent, s.connection_borrow_timeout,
            s.init_query, s.idle_client_timeout) == (100, 50, 120.0, None, 1800.0)
    assert PoolSettings(max_connections_percent=95).connection_cap(1000) == 950
    assert PoolSettings(max_connections_percent=50).connection_cap(45) == 22
    # Not given, MaxIdleConnectionsPercent is half of MaxConnectionsPercent (RDS's default).
    assert PoolSettings(max_connections_percent=20).max_idle_connections_percent == 10
    for bad in ({"max_connections_percent": 0}, {"max_connections_percent": 101},
                {"max_idle_connections_percent": -1}, {"connection_borrow_timeout": 301},
                {"idle_client_timeout": 0},
                {"max_connections_percent": 40, "max_idle_connections_percent": 50},
                {"connection_borrow_timeout": float("nan")}, {"max_connections_percent": "50"}):
        with pytest.raises(ConfigError):
            PoolSettings(**bad)


@pytest.mark.parametrize("seed", range(5))
@asynctest
async def test_random_mixed_load_keeps_every_invariant(seed):
    """Many borrowers on two instances and three keys, with failures, cancellations and resets."""
    rng = random.Random(seed)
    # The borrow timeout runs on the event loop's real clock: generous, so that a loaded machine
    # cannot turn this invariant check into a count of timeouts.
    pool, backend, clock = make_pool(connection_borrow_timeout=2.0, max_idle_connections_percent=30)
    pool.set_instance_max_connections("inst-a", 8)  # cap 8, idle cap 2
    pool.set_instance_max_connections("inst-b", 3)
    keys = [(KEY_A1, A), (KEY_A2, A), (KEY_B1, B)]
    outcomes = Counter()

    async def client() -> None:
        key, address = rng.choice(keys)
        if rng.random() < 0.05:
            backend.fail_next += 1
        try:
            conn = await pool.borrow(key, address)
        except (BorrowTimeout, BackendConnectFailed) as exc:
            outcomes[type(exc).__name__] += 1
            return
        assert conn.key == key and not conn.closed
        if rng.random() < 0.3:
            pool.mark_pinned(conn)
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        clock.now += rng.random()
        pool.release(conn, rng.choice([ReleaseState.CLEAN, ReleaseState.CLEAN, ReleaseState.DIRTY,
                                       ReleaseState.BROKEN]))
        outcomes["ok"] += 1

    async def canceller(task: asyncio.Task) -> None:
        await asyncio.sleep(0)
        task.cancel()

    tasks = [asyncio.create_task(client()) for _ in range(300)]
    for task in rng.sample(tasks, 20):
        asyncio.create_task(canceller(task))
    await asyncio.gather(*tasks, return_exceptions=True)
    await settle(pool)
    assert outcomes["ok"] > 100
    assert backend.most_open["inst-a"] <= 8 and backend.most_open.get("inst-b", 0) <= 3
    for instance_id in ("inst-a", "inst-b"):
        snap = pool.snapshot()["instances"][instance_id]
        assert snap["borrowed"] == snap["pinned"] == snap["waiting"] == snap["closing"] == 0
        assert snap["open"] == snap["idle"] == backend.open_now.get(instance_id, 0)
        assert pool.metrics.value("DatabaseConnections", instance=instance_id) == snap["open"]
        assert pool.metrics.value("DatabaseConnectionsCurrentlyBorrowed", instance=instance_id) == 0
        assert pool.metrics.value("DatabaseConnectionsCurrentlySessionPinned", instance=instance_id) == 0
    await pool.close()
    assert all(conn.closed for conn in backend.made)


@asynctest
async def test_update_settings_raises_the_cap_for_waiters():
    pool, _, _ = make_pool(max_connections_percent=10, max_idle_connections_percent=10,
                           connection_borrow_timeout=10)
    pool.set_instance_max_connections("inst-a", 10)  # cap 1
    held = await pool.borrow(KEY_A1, A)
    waiting = asyncio.create_task(pool.borrow(KEY_A1, A))
    await asyncio.sleep(0)
    assert not waiting.done()
    pool.update_settings(PoolSettings(max_connections_percent=20, max_idle_connections_percent=10,
                                      connection_borrow_timeout=10))
    second = await asyncio.wait_for(waiting, 5)
    assert pool.metrics.value("MaxDatabaseConnectionsAllowed", instance="inst-a") == 2
    pool.release(held, ReleaseState.CLEAN)
    pool.release(second, ReleaseState.CLEAN)
    await pool.close()


@asynctest
async def test_unexpected_factory_errors_become_backend_connect_failed():
    async def refusing(key, address):
        raise ConnectionRefusedError(111, "Connection refused")

    pool = Pool(refusing, PoolSettings(), FakeClock(), ProxyMetrics())
    with pytest.raises(BackendConnectFailed, match="Connection refused") as caught:
        await pool.borrow(KEY_A1, A)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert pool.snapshot()["instances"]["inst-a"]["open"] == 0
    await pool.close()


@asynctest
async def test_try_borrow_now_lends_an_idle_connection_or_says_none():
    pool, backend, _ = make_pool()
    assert pool.try_borrow_now(KEY_A1) is None  # nothing pooled yet: never opens one itself
    conn = await pool.borrow(KEY_A1, A)
    assert pool.try_borrow_now(KEY_A1) is None  # the only one is lent
    pool.release(conn, ReleaseState.CLEAN)
    assert pool.try_borrow_now(KEY_A2) is None  # keys never share
    again = pool.try_borrow_now(KEY_A1)
    assert again is conn and len(backend.made) == 1
    assert pool.snapshot()["instances"]["inst-a"]["borrowed"] == 1
    pool.release(again, ReleaseState.CLEAN)
    await pool.close()
    assert pool.try_borrow_now(KEY_A1) is None


@asynctest
async def test_try_borrow_now_never_jumps_ahead_of_waiters():
    pool, _, _ = make_pool(connection_borrow_timeout=10)
    pool.set_instance_max_connections("inst-a", 3)
    held = [await pool.borrow(KEY_A1, A) for _ in range(3)]
    waiters = [asyncio.create_task(pool.borrow(KEY_A2, A)) for _ in range(2)]
    await asyncio.sleep(0)
    assert pool.snapshot()["instances"]["inst-a"]["waiting"] == 2
    for conn in held:  # two are closed to make room for the waiters; the third stays idle
        pool.release(conn, ReleaseState.CLEAN)
    assert pool.try_borrow_now(KEY_A1) is None  # an idle connection, but people are waiting
    granted = await asyncio.gather(*waiters)
    assert {c.key for c in granted} == {KEY_A2}
    assert pool.try_borrow_now(KEY_A1) is not None  # nobody waits any more
    await pool.close()
