"""Failover routing without I/O: the router's failover helpers, the pool's cut of lent connections, and
the failover routing's choice of a reader for a session whose reader was lost (no stale reads)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from reference_proxy.config import EndpointRole
from reference_proxy.contracts import BorrowTimeout, InstanceAddress, NoReader, NoWriter, ReleaseState, Role
from reference_proxy.failover import FailoverRouting
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.pool import Pool, PoolSettings
from reference_proxy.routing import Router
from reference_proxy.topology import TopologyMonitor

W = InstanceAddress("w", "127.0.0.1", 5432)
R1 = InstanceAddress("r1", "127.0.0.1", 5433)
R2 = InstanceAddress("r2", "127.0.0.1", 5434)


def router() -> Router:
    return Router([(W, Role.WRITER), (R1, Role.READER), (R2, Role.READER)])


# ------------------------------------------------------------------------------------ router

def test_writer_lookup_does_not_count_and_moves_keep_counts_balanced():
    r = router()
    assert r.choose_writer() == W
    assert r.writer() == W
    assert r.snapshot()["instances"]["w"]["sessions"] == 1
    r.update({"w": Role.UNKNOWN, "r1": Role.WRITER})
    assert r.writer() == R1
    r.move_session("w", "r1")
    counts = {i: v["sessions"] for i, v in r.snapshot()["instances"].items()}
    assert counts == {"w": 0, "r1": 1, "r2": 0}
    r.update({"r1": Role.UNKNOWN})
    with pytest.raises(NoWriter):
        r.writer()


def test_reader_helpers_see_only_available_readers_and_eligible_narrows():
    r = router()
    assert r.readers_of("reader") == ["r1", "r2"]
    assert r.choose_reader("reader", eligible=["r2"]) == R2
    with pytest.raises(NoReader):
        r.choose_reader("reader", eligible=[])
    r.update({"r1": Role.UNKNOWN, "r2": Role.UNKNOWN})
    assert r.readers_of("reader") == []
    assert r.could_serve_reads("reader")  # readers exist, just not available: wait for them
    alone = Router([(W, Role.WRITER)])
    assert not alone.could_serve_reads("reader")  # no reader at all: fail at once


def test_an_unweighted_reader_counts_as_an_average_one():
    r = router()
    r.set_weight("r1", 100)  # r2 not weighed yet
    chosen = [r.choose_reader("reader").id for _ in range(4)]
    assert sorted(chosen) == ["r1", "r1", "r2", "r2"]


# ---------------------------------------------------------------------- failover: reader moves

@dataclasses.dataclass
class View:
    wal_position: int | None


class FakeCore:
    def __init__(self, positions: dict[str, int | None]) -> None:
        self.views = {i: View(p) for i, p in positions.items()}


class FakeMonitor:
    """Stands in for the topology monitor: positions by instance; wait_for applies scripted rounds."""

    def __init__(self, router: Router, positions: dict[str, int | None], rounds=()) -> None:
        self.router, self.core, self.rounds = router, FakeCore(positions), list(rounds)

    async def wait_for(self, predicate, timeout: float) -> bool:
        if self.rounds:
            roles, positions = self.rounds.pop(0)
            self.router.update(roles)
            for i, p in positions.items():
                self.core.views[i].wal_position = p
        else:
            await asyncio.sleep(min(timeout, 0.01))
        return predicate(self.core)


class ZeroClock:
    def monotonic(self) -> float:
        return 0.0


def make_failover(borrow_timeout: float = 0.2, positions: dict[str, int | None] | None = None,
                  rounds=(), backends=None) -> FailoverRouting:
    """Failover routing over writer w and readers r1, r2; the real monitor unless positions are scripted."""
    routes = Router([(W, Role.WRITER), (R1, Role.READER), (R2, Role.READER)], reader_endpoints={"reader": None})

    async def no_backends(key, address):
        raise AssertionError("nothing is borrowed here")
    pool = Pool(backends or no_backends, PoolSettings(connection_borrow_timeout=borrow_timeout), ZeroClock())
    if positions is None:
        monitor = TopologyMonitor([W, R1, R2], lambda address: None, routes, ProxyMetrics())
    else:
        monitor = FakeMonitor(routes, positions, rounds)
    return FailoverRouting(routes, pool, monitor,
                           {"default": EndpointRole.READ_WRITE, "reader": EndpointRole.READ_ONLY})


def test_a_session_moves_only_to_a_reader_not_behind_the_lost_one():
    async def scenario() -> None:
        failover = make_failover(positions={"w": 500, "r1": 300, "r2": 200},
                                 rounds=[({}, {"r2": 250}), ({}, {"r2": 300})])
        first = await failover.wait_for_instance("reader")
        assert first.id == "r1"
        assert failover._reader_positions["r1"] == 300
        failover.router.update({"r1": Role.UNKNOWN})  # r1 lost; r2 has replayed less than r1 had
        loop = asyncio.get_running_loop()
        moved = await failover._reader_for("reader", first, loop.time() + 5)
        assert moved.id == "r2"
        assert failover.monitor.core.views["r2"].wal_position == 300  # it waited for r2 to catch up
        assert failover.router.snapshot()["instances"]["r1"]["sessions"] == 0
        assert failover.router.snapshot()["instances"]["r2"]["sessions"] == 1
    asyncio.run(scenario())


def test_a_reader_that_never_catches_up_ends_in_the_borrow_timeout_never_the_writer():
    async def scenario() -> None:
        failover = make_failover(borrow_timeout=0.1, positions={"w": 500, "r1": 300, "r2": 100})
        first = await failover.wait_for_instance("reader")
        failover.router.update({"r1": Role.UNKNOWN})
        with pytest.raises(BorrowTimeout):
            await failover._reader_for("reader", first, failover._deadline())
        failover.router.update({"r2": Role.UNKNOWN})
        with pytest.raises(BorrowTimeout):  # readers exist but none available: wait, then time out
            await failover.wait_for_instance("reader")
    asyncio.run(scenario())


def test_the_writer_endpoint_waits_for_a_writer_within_the_borrow_timeout():
    async def scenario() -> None:
        failover = make_failover(borrow_timeout=0.1)
        failover.router.update({"w": Role.UNKNOWN})
        with pytest.raises(BorrowTimeout):
            await failover.wait_for_instance("default")
    asyncio.run(scenario())


class Backend:
    """A backend connection of the fake factory: where it was opened, and whether it was cut."""

    def __init__(self, key, address: InstanceAddress) -> None:
        self.key, self.address, self.backend_id = key, address, address.id
        self.aborted: str | None = None
        self.closed = False

    def is_usable(self) -> bool:
        return self.aborted is None and not self.closed

    async def reset(self) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True

    def abort(self, reason: str) -> None:
        self.aborted = reason


async def open_backend(key, address: InstanceAddress) -> Backend:
    return Backend(key, address)


def test_a_borrow_after_a_failover_goes_to_the_new_writer_and_moves_the_session():
    from reference_proxy.contracts import PoolKey

    async def scenario() -> None:
        failover = make_failover(backends=open_backend)
        current = failover.router.choose_writer()
        key = PoolKey(current.id, "app", "db")
        failover.router.update({"w": Role.UNKNOWN, "r1": Role.WRITER})  # the monitor saw a failover
        address, backend = await failover.acquire("default", key, current)
        assert address == R1 and backend.address == R1 and backend.key.instance_id == "r1"
        counts = {i: v["sessions"] for i, v in failover.router.snapshot()["instances"].items()}
        assert counts == {"w": 0, "r1": 1, "r2": 0}
        await failover.pool.close()
    asyncio.run(scenario())


def test_the_synchronous_shortcut_lends_only_while_the_instance_keeps_its_role():
    from reference_proxy.contracts import PoolKey

    async def scenario() -> None:
        failover = make_failover(backends=open_backend)
        key = PoolKey("w", "app", "db")
        assert failover.acquire_now("default", key, W) is None  # nothing pooled yet: the async path opens one
        _, backend = await failover.acquire("default", key, failover.router.choose_writer())
        failover.pool.release(backend, ReleaseState.CLEAN)
        assert failover.acquire_now("default", key, W) is backend
        failover.pool.release(backend, ReleaseState.CLEAN)
        assert failover.acquire_now("reader", key, W) is None  # a writer never serves a read-only endpoint
        failover.router.update({"w": Role.READER, "r1": Role.WRITER})
        assert failover.acquire_now("default", key, W) is None  # demoted: acquire routes to the new writer
        await failover.pool.close()
    asyncio.run(scenario())


def test_a_topology_round_cuts_what_a_demoted_writer_lent_and_only_pinned_users_of_a_lost_reader():
    from reference_proxy.contracts import PoolKey
    from reference_proxy.failover import DEMOTED_WRITER_MESSAGE, LOST_READER_MESSAGE
    from reference_proxy.topology import RoundOutcome

    async def scenario() -> None:
        failover = make_failover(backends=open_backend)
        pool = failover.pool
        on_writer = await pool.borrow(PoolKey("w", "app", "db"), W)
        reader_key = PoolKey("r1", "app", "db")
        multiplexed, pinned = await pool.borrow(reader_key, R1), await pool.borrow(reader_key, R1)
        pool.mark_pinned(pinned)
        before = {"w": Role.WRITER, "r1": Role.READER, "r2": Role.READER}
        after = {"w": Role.UNKNOWN, "r1": Role.UNKNOWN, "r2": Role.WRITER}
        failover.on_topology(RoundOutcome(after, before, "r2", "w", events=()))
        assert on_writer.aborted == DEMOTED_WRITER_MESSAGE.format(instance="w")
        assert pinned.aborted == LOST_READER_MESSAGE.format(instance="r1")
        assert multiplexed.aborted is None  # it moves to another reader between transactions
        for backend in (on_writer, multiplexed, pinned):
            pool.release(backend, ReleaseState.BROKEN)
        await pool.close()
    asyncio.run(scenario())


# --------------------------------------------------------------------------------- pool: cut

class Abortable:
    def __init__(self) -> None:
        self.aborted: str | None = None
        self.closed = False

    def is_usable(self) -> bool:
        return self.aborted is None and not self.closed

    async def reset(self) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True

    def abort(self, reason: str) -> None:
        self.aborted = reason


def test_close_instance_cuts_lent_connections_pinned_only_when_asked():
    from reference_proxy.contracts import PoolKey

    async def scenario() -> None:
        async def factory(key, address):
            return Abortable()
        pool = Pool(factory, PoolSettings(), ZeroClock())
        key = PoolKey("r1", "app", "db", ())
        plain, pinned = await pool.borrow(key, R1), await pool.borrow(key, R1)
        pool.mark_pinned(pinned)
        pool.close_instance("r1", cut_lent="reader lost", only_pinned=True)
        assert plain.aborted is None and pinned.aborted == "reader lost"
        pool.close_instance("r1", cut_lent="writer demoted")
        assert plain.aborted == "writer demoted"
        pool.release(plain, ReleaseState.CLEAN)
        pool.release(pinned, ReleaseState.DIRTY)
        await pool.close()
        assert plain.closed and pinned.closed
    asyncio.run(scenario())


def test_a_write_refused_by_the_writer_makes_the_monitor_look_now_once_per_round():
    failover = make_failover()
    reports = []
    failover.monitor.report_backend_error = lambda instance_id, why: reports.append((instance_id, why))
    failover.write_refused("r1", "refused as read-only (1290)")  # a write sent to a reader: expected
    assert reports == []
    for _ in range(3):
        failover.write_refused("w", "refused as read-only (1290)")
    assert reports == [("w", "refused as read-only (1290)")]
    failover.on_topology(dataclasses.make_dataclass("Outcome", ["demoted", "readers_lost"])((), ()))
    failover.write_refused("w", "refused as read-only (1836)")
    assert len(reports) == 2
    failover.write_refused("gone", "refused")  # an instance the topology no longer has: ignored
    assert len(reports) == 2
