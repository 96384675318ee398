"""The topology decision core on hand-made rounds and a fake clock: no sockets, no sleeping."""

from __future__ import annotations

import asyncio
import logging

import pytest

from reference_proxy.contracts import InstanceAddress, NoWriter, Role
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.routing import Router
from reference_proxy.topology import (
    EventKind,
    Observation,
    ProbeFailed,
    ProbeResult,
    TopologyCore,
    TopologyError,
    TopologyMonitor,
)
from reference_proxy.topology.availability import AvailabilityWindow

IDS = ("i1", "i2", "i3")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


def writer(instance_id: str, position: int = 1000) -> Observation:
    return Observation.ok(instance_id, ProbeResult(instance_id, in_recovery=False, wal_position=position))


def reader(instance_id: str, position: int = 1000, age: float | None = 0.5) -> Observation:
    return Observation.ok(instance_id, ProbeResult(instance_id, in_recovery=True, wal_position=position,
                                                   replay_age=age))


def down(instance_id: str) -> Observation:
    return Observation.failed(instance_id, "connection refused")


class Driver:
    """A core plus a fake clock that advances by the delay the core asks for."""

    def __init__(self, **kwargs) -> None:
        self.clock = FakeClock()
        self.core = TopologyCore(IDS, **kwargs)
        self.delays: list[float] = []

    def round(self, *observations: Observation):
        outcome = self.core.observe(observations, self.clock.now, self.clock.wall())
        delay = self.core.next_delay()
        self.delays.append(delay)
        self.clock.now += delay
        return outcome

    def healthy(self, writer_id: str = "i1", times: int = 1):
        outcome = None
        for _ in range(times):
            outcome = self.round(*(writer(i) if i == writer_id else reader(i) for i in IDS))
        return outcome


def kinds(outcome) -> list[EventKind]:
    return [e.kind for e in outcome.events]


def test_first_rounds_poll_fast_then_steady():
    d = Driver(interval=1.0, fast_interval=0.1, stable_rounds=3)
    first = d.healthy()
    assert first.roles == {"i1": Role.WRITER, "i2": Role.READER, "i3": Role.READER}
    assert EventKind.WRITER_ACCEPTED in kinds(first)
    d.healthy(times=4)
    # round 1 changed roles (unknown -> known); rounds 2, 3, 4 are stable: steady from round 4 on
    assert d.delays == [0.1, 0.1, 0.1, 1.0, 1.0]
    assert d.core.snapshot(d.clock.now)["polling"] == "steady"
    assert [e.kind for e in d.core.events].count(EventKind.STEADY_POLLING) == 1


def test_failover_is_one_role_change_event_per_instance_with_both_timestamps():
    d = Driver(stable_rounds=1)
    d.healthy(times=2)
    assert not d.core.fast
    lost = d.round(reader("i1"), reader("i2"), reader("i3"))  # old writer demoted, new not promoted yet
    assert lost.writer is None and lost.demoted == ("i1",)
    assert EventKind.WRITER_LOST in kinds(lost) and EventKind.FAST_POLLING in kinds(lost)
    assert d.core.next_delay() == d.core.fast_interval
    promoted = d.round(reader("i1"), writer("i2"), reader("i3"))
    assert promoted.roles == {"i1": Role.READER, "i2": Role.WRITER, "i3": Role.READER}
    change = next(e for e in promoted.events if e.kind is EventKind.ROLE_CHANGED)
    assert (change.instance_id, change.old_role, change.new_role) == ("i2", Role.READER, Role.WRITER)
    assert change.monotonic == pytest.approx(d.clock.now - d.core.next_delay())
    assert change.wall - change.monotonic == pytest.approx(1_700_000_000.0)
    accepted = next(e for e in promoted.events if e.kind is EventKind.WRITER_ACCEPTED)
    assert accepted.instance_id == "i2" and accepted.detail == "previous writer: i1"


def test_direct_swap_reports_old_and_new_writer_in_one_round():
    d = Driver()
    d.healthy(times=3)
    swap = d.round(reader("i1"), writer("i2"), reader("i3"))
    assert swap.demoted == ("i1",) and swap.writer == "i2"
    router = Router([InstanceAddress(i, "127.0.0.1", 5432) for i in IDS],
                    roles={"i1": Role.WRITER, "i2": Role.READER, "i3": Role.READER})
    router.update(swap.roles)  # the router rejects two writers; one update carries both changes
    assert router.choose_writer().id == "i2"


def test_split_brain_fences_writes_until_one_claimant_remains(caplog):
    d = Driver(stable_rounds=1)
    d.healthy(times=2)
    brain = d.round(writer("i1"), writer("i2"), reader("i3"))
    assert brain.writer is None and d.core.fenced
    assert brain.roles == {"i1": Role.UNKNOWN, "i2": Role.UNKNOWN, "i3": Role.READER}
    assert EventKind.SPLIT_BRAIN_STARTED in kinds(brain)
    router = Router([InstanceAddress(i, "127.0.0.1", 5432) for i in IDS])
    router.update(brain.roles)
    with pytest.raises(NoWriter):
        router.choose_writer()
    still = d.round(writer("i1"), writer("i2"), reader("i3"))
    assert EventKind.SPLIT_BRAIN_STARTED not in kinds(still)  # once per split brain, not per round
    assert d.core.fast  # never stable while fenced
    resolved = d.round(down("i1"), writer("i2"), reader("i3"))
    assert resolved.writer == "i2" and not d.core.fenced
    assert EventKind.SPLIT_BRAIN_ENDED in kinds(resolved)
    assert d.core.snapshot(d.clock.now)["split_brain"] == []


def test_unreachable_writer_is_writer_lost_and_fast_polling():
    d = Driver(stable_rounds=2)
    d.healthy(times=4)
    assert not d.core.fast
    outcome = d.round(down("i1"), reader("i2"), reader("i3"))
    assert outcome.writer is None and outcome.newly_unreachable == ("i1",)
    assert {EventKind.UNREACHABLE, EventKind.WRITER_LOST, EventKind.FAST_POLLING} <= set(kinds(outcome))
    lost = next(e for e in outcome.events if e.kind is EventKind.WRITER_LOST)
    assert "unreachable" in lost.detail and "connection refused" in lost.detail
    view = d.core.snapshot(d.clock.now)["instances"]["i1"]
    assert view["reachable"] is False and view["role"] == "unknown"
    # No writer is never stable, however long it lasts.
    for _ in range(5):
        d.round(down("i1"), reader("i2"), reader("i3"))
    assert d.core.fast


def test_reader_lost_stops_being_reader_and_a_reader_that_stays_down_does_not_keep_fast_polling():
    d = Driver(stable_rounds=2)
    d.healthy(times=4)
    outcome = d.round(writer("i1"), reader("i2"), down("i3"))
    assert outcome.readers_lost == ("i3",) and outcome.roles["i3"] is Role.UNKNOWN
    assert d.core.fast
    d.round(writer("i1"), reader("i2"), down("i3"))
    d.round(writer("i1"), reader("i2"), down("i3"))
    assert not d.core.fast  # stable with i3 still down
    back = d.round(writer("i1"), reader("i2"), reader("i3"))
    assert EventKind.REACHABLE in kinds(back) and back.roles["i3"] is Role.READER


def test_identity_mismatch_is_never_used():
    d = Driver()
    wrong = Observation.ok("i1", ProbeResult("i9", in_recovery=False, wal_position=10))
    outcome = d.round(wrong, reader("i2"), reader("i3"))
    assert outcome.writer is None and outcome.roles["i1"] is Role.UNKNOWN
    mismatch = [e for e in outcome.events if e.kind is EventKind.IDENTITY_MISMATCH]
    assert len(mismatch) == 1 and "'i9'" in mismatch[0].detail
    again = d.round(wrong, reader("i2"), reader("i3"))
    assert EventKind.IDENTITY_MISMATCH not in kinds(again)


def test_lag_in_bytes_and_seconds_against_the_writer():
    d = Driver()
    d.round(writer("i1", 5000), reader("i2", 5000, age=42.0), reader("i3", 3000, age=1.5))
    instances = d.core.snapshot(d.clock.now)["instances"]
    assert (instances["i2"]["lag_bytes"], instances["i2"]["lag_seconds"]) == (0, 0.0)  # caught up, idle
    assert (instances["i3"]["lag_bytes"], instances["i3"]["lag_seconds"]) == (2000, 1.5)
    assert instances["i1"]["lag_bytes"] is None
    d.round(down("i1"), reader("i2"), reader("i3"))
    assert d.core.snapshot(d.clock.now)["instances"]["i3"]["lag_bytes"] is None  # no writer to compare


def test_reported_doubt_switches_to_fast_polling_until_stable_again():
    d = Driver(stable_rounds=2)
    d.healthy(times=4)
    assert d.core.next_delay() == 1.0
    events = d.core.report_doubt("i1", "backend connection lost", d.clock.now, d.clock.wall())
    assert [e.kind for e in events] == [EventKind.DOUBT_REPORTED, EventKind.FAST_POLLING]
    assert d.core.next_delay() == 0.1
    d.healthy()  # the doubt is consumed by this round: not yet stable
    d.healthy()
    assert d.core.fast
    d.healthy()
    assert not d.core.fast
    with pytest.raises(TopologyError):
        d.core.report_doubt("nope", "x", 0.0, 0.0)


def test_bad_rounds_and_settings_are_clear_errors():
    core = TopologyCore(IDS)
    with pytest.raises(TopologyError, match="missing"):
        core.observe([writer("i1")], 0.0, 0.0)
    with pytest.raises(TopologyError, match="unknown instance"):
        core.observe([writer("i1"), reader("i2"), reader("i3"), reader("i4")], 0.0, 0.0)
    with pytest.raises(TopologyError, match="two observations"):
        core.observe([writer("i1"), reader("i2"), reader("i3"), reader("i3")], 0.0, 0.0)
    with pytest.raises(TopologyError, match="fast_interval"):
        TopologyCore(IDS, interval=0.1, fast_interval=1.0)
    with pytest.raises(TopologyError, match="unique"):
        TopologyCore(["a", "a"])
    with pytest.raises(TopologyError, match="at least one"):
        TopologyCore([])


def test_availability_is_time_weighted_over_the_last_minute():
    window = AvailabilityWindow(60.0)
    assert window.percentage(0.0) == 0.0
    window.record(0.0, True)
    window.record(30.0, False)   # 30 s available, then 10 s not
    window.record(40.0, True)
    assert window.percentage(40.0) == pytest.approx(75.0)
    assert window.percentage(70.0) == pytest.approx(100.0 * 50 / 60)  # [10, 70]: down during [30, 40]
    assert window.percentage(100.0) == pytest.approx(100.0)  # [40, 100]: the outage left the window
    # many fast samples in an outage weigh by time, not by count
    window = AvailabilityWindow(60.0)
    window.record(0.0, True)
    for n in range(100):
        window.record(50.0 + n * 0.01, False)
    window.record(51.0, True)
    assert window.percentage(60.0) == pytest.approx(100.0 * 59 / 60)


def test_core_availability_per_target_role():
    d = Driver()
    d.healthy(times=10)  # ~ (3 fast + 7 steady) seconds available
    d.round(down("i1"), down("i2"), down("i3"))
    snap = d.core.snapshot(d.clock.now)
    assert 0 < snap["availability_percentage"]["READ_WRITE"] < 100
    assert snap["availability_percentage"]["READ_WRITE"] == snap["availability_percentage"]["READ_ONLY"]


# ---------------------------------------------------------------------------------- the asyncio loop

class ScriptedProbe:
    """A probe whose answers the test sets; counts polls."""

    def __init__(self, address: InstanceAddress, script: dict[str, object]) -> None:
        self.id = address.id
        self.script = script
        self.polls = 0
        self.closed = 0

    async def poll(self) -> ProbeResult:
        self.polls += 1
        answer = self.script[self.id]
        if isinstance(answer, Exception):
            raise answer
        if answer == "hang":
            await asyncio.sleep(10)
        return answer  # type: ignore[return-value]

    async def close(self) -> None:
        self.closed += 1


def test_monitor_applies_rounds_to_router_metrics_and_listeners(caplog):
    script: dict[str, object] = {"i1": ProbeResult("i1", False, 10), "i2": ProbeResult("i2", True, 10),
                                 "i3": ProbeResult("i3", True, 10)}
    probes: dict[str, ScriptedProbe] = {}

    def factory(address: InstanceAddress) -> ScriptedProbe:
        probes[address.id] = ScriptedProbe(address, script)
        return probes[address.id]

    addresses = [InstanceAddress(i, "127.0.0.1", 5432 + n) for n, i in enumerate(IDS)]
    router = Router(addresses)
    metrics = ProxyMetrics()
    seen = []

    async def scenario() -> None:
        monitor = TopologyMonitor(addresses, factory, router, metrics, interval=0.05, fast_interval=0.01,
                                  poll_timeout=0.2, stable_rounds=2)
        monitor.add_listener(lambda outcome: seen.append(outcome))

        async def async_listener(outcome) -> None:
            raise RuntimeError("listener bug")  # logged, not fatal

        monitor.add_listener(async_listener)
        async with monitor:
            assert monitor.writer == "i1" and monitor.writer_available.is_set()
            assert router.choose_writer().id == "i1"
            script["i1"] = ProbeFailed("gone")
            assert await monitor.wait_for(lambda core: core.writer is None, 2.0)
            assert not monitor.writer_available.is_set()
            with pytest.raises(NoWriter):
                router.choose_writer()
            script["i2"] = ProbeResult("i2", False, 20)
            assert await monitor.wait_for_writer(2.0) == "i2"
            assert router.choose_writer().id == "i2"
            script["i1"] = "hang"  # a hung instance counts as unreachable after poll_timeout
            assert await monitor.wait_for(lambda core: core.views["i1"].error is not None
                                          and "no answer" in core.views["i1"].error, 2.0)
            script["i1"] = ProbeResult("i1", False, 5)  # the old writer comes back claiming: split brain
            assert await monitor.wait_for(lambda core: core.fenced, 2.0)
            status = monitor.snapshot()
            assert status["fenced"] and status["writer"] is None
            script["i1"] = ProbeResult("i1", True, 5)
            assert await monitor.wait_for(lambda core: core.writer == "i2" and not core.fenced, 2.0)
            before = probes["i2"].polls
            monitor.report_backend_error("i2", "server closed the connection")
            assert await monitor.wait_for(lambda core: probes["i2"].polls > before, 1.0)
        assert all(p.closed >= 1 for p in probes.values())

    with caplog.at_level(logging.WARNING, logger="reference_proxy.topology"):
        asyncio.run(scenario())
    assert any(o.demoted == ("i1",) for o in seen)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum("SPLIT BRAIN" in m and "started" in m for m in errors) == 1
    assert sum("SPLIT BRAIN" in m and "ended" in m for m in errors) == 1
    assert any("listener" in r.getMessage() for r in caplog.records)
    assert 0 < metrics.value("AvailabilityPercentage", target_role="READ_WRITE") < 100
    assert metrics.value("AvailabilityPercentage", target_role="READ_ONLY") == pytest.approx(100.0)
    # i2: unknown -> reader -> writer -> unknown (split brain) -> writer
    assert metrics.value("TopologyRoleChanges", instance="i2") == 4
    assert metrics.value("TopologyRoleChanges", instance="i3") == 1  # unknown -> reader, never again


# ---------------------------------------------------------------------------------- configuration

def _config(**monitor):
    from reference_proxy.config import ProxyConfig

    data = {"engine": "postgres", "endpoints": [{"name": "default", "port": 0}],
            "instances": [{"id": "i1", "port": 5432}, {"id": "i2", "port": 5433}],
            "auth": {"users": [{"name": "app", "password": "pw", "backend_user": "db_app",
                                "backend_password": "db_pw"}]}}
    if monitor:
        data["monitor"] = monitor
    return ProxyConfig.from_dict(data)


def test_monitor_settings_defaults_and_credentials():
    from reference_proxy.engines import engine_for
    from reference_proxy.topology import monitor_for_config

    config = _config()
    assert (config.monitor.interval, config.monitor.fast_interval) == (1.0, 0.1)
    assert config.monitor_credentials() == ("db_app", "db_pw")
    assert _config(user="mon", password="secret").monitor_credentials() == ("mon", "secret")
    monitor = monitor_for_config(_config(interval=2, fast_interval=0.5), engine_for(config).probe, Router([]),
                                 ProxyMetrics())
    assert [i.id for i in monitor.instances] == ["i1", "i2"]
    assert (monitor.core.interval, monitor.core.fast_interval) == (2.0, 0.5)


@pytest.mark.parametrize(("monitor", "key"), [
    ({"fast_interval": 2.0}, "monitor.fast_interval"),
    ({"interval": 0}, "monitor.interval"),
    ({"user": "mon"}, "monitor.password"),
    ({"every": 1}, "monitor.every"),
])
def test_bad_monitor_settings_name_the_key(monitor, key):
    from reference_proxy.contracts import ConfigError

    with pytest.raises(ConfigError) as info:
        _config(**monitor)
    assert info.value.key == key


def test_monitor_without_any_credentials_is_a_config_error():
    from reference_proxy.config import ProxyConfig
    from reference_proxy.contracts import ConfigError

    config = ProxyConfig.from_dict({"engine": "postgres", "endpoints": [{"name": "default", "port": 0}],
                                    "instances": [{"id": "i1", "port": 5432}]})
    with pytest.raises(ConfigError, match="credentials"):
        config.monitor_credentials()
