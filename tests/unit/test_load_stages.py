"""Load shapes as data: schedules, fault plans, and the exact tick sequences a driver hands Locust."""

from __future__ import annotations

import pytest

from loadprofiles.profiles import PROFILES, profile
from loadprofiles.stages import (
    SHAPES,
    FaultPlan,
    Schedule,
    ShapeDriver,
    ShapeError,
    Stage,
    chaos,
    parse_duration,
    steady,
)


class FakeClock:
    """Run times in seconds, moved by hand: what ``LoadTestShape.get_run_time`` would return."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def ticks(driver: ShapeDriver, times: list[float]) -> list[tuple]:
    """(time, load, [(action, fault)]) for each tick at ``times``."""
    clock = FakeClock()
    out = []
    for t in times:
        clock.t = t
        answer = driver.tick(clock())
        out.append((t, answer.load, [(a.kind, a.plan.spec["name"]) for a in answer.actions]))
    return out


def test_steady_holds_every_user_until_the_run_time_then_stops() -> None:
    driver = ShapeDriver(steady(10, 5.0, 3.0))
    assert ticks(driver, [0.0, 1.0, 2.9, 3.0]) == [
        (0.0, (10, 5.0), []), (1.0, (10, 5.0), []), (2.9, (10, 5.0), []), (3.0, None, [])]


def test_step_rises_in_four_equal_steps() -> None:
    schedule = SHAPES["step"](8, 2.0, 8.0)
    assert [schedule.at(t) for t in (0, 1.9, 2, 4, 6, 7.9, 8)] == [
        (2, 2.0), (2, 2.0), (4, 2.0), (6, 2.0), (8, 2.0), (8, 2.0), None]


def test_spike_bursts_every_user_at_once_in_the_middle_fifth() -> None:
    schedule = SHAPES["spike"](50, 5.0, 10.0)
    assert schedule.at(0) == (10, 5.0)
    assert schedule.at(4.0) == (50, 50.0)  # spawned in one second, whatever rate was asked
    assert schedule.at(6.0) == (10, 50.0)
    assert schedule.at(10.0) is None


def test_churn_alternates_between_all_and_half() -> None:
    schedule = SHAPES["churn"](10, 1.0, 9.0)
    assert [schedule.at(t)[0] for t in (0, 2, 4, 6, 8.9)] == [10, 5, 10, 5, 10]
    assert schedule.at(9.0) is None


def test_storm_spawns_every_user_in_the_first_second() -> None:
    assert SHAPES["storm"](2000, 3.0, 5.0).at(0) == (2000, 2000.0)


def test_a_failover_plan_starts_once_at_its_time_and_never_again() -> None:
    schedule, plans = chaos({"name": "failover"})(4, 4.0, 10.0)
    driver = ShapeDriver(schedule, plans)
    assert ticks(driver, [0.0, 1.0, 3.9, 4.0, 5.0, 9.0, 10.0]) == [
        (0.0, (4, 4.0), []), (1.0, (4, 4.0), []), (3.9, (4, 4.0), []), (4.0, (4, 4.0), [("start", "failover")]),
        (5.0, (4, 4.0), []), (9.0, (4, 4.0), []), (10.0, None, [])]


def test_a_held_fault_is_healed_at_its_time() -> None:
    schedule, plans = chaos({"name": "writer_crash"}, at_fraction=0.3, hold_fraction=0.3)(4, 4.0, 10.0)
    assert ticks(ShapeDriver(schedule, plans), [0.0, 3.0, 4.0, 6.0, 7.0]) == [
        (0.0, (4, 4.0), []), (3.0, (4, 4.0), [("start", "writer_crash")]), (4.0, (4, 4.0), []),
        (6.0, (4, 4.0), [("heal", "writer_crash")]), (7.0, (4, 4.0), [])]


def test_a_late_tick_gets_start_then_heal_in_order() -> None:
    """Ticks come about once a second but may be late (a busy master): both actions, start first."""
    driver = ShapeDriver(steady(2, 2.0, 10.0), [FaultPlan(2.0, {"name": "blackhole"}, 1.0)])
    assert ticks(driver, [0.0, 5.0]) == [(0.0, (2, 2.0), []), (5.0, (2, 2.0), [("start", "blackhole"),
                                                                            ("heal", "blackhole")])]


def test_the_run_ending_before_a_heal_still_heals_the_fault() -> None:
    driver = ShapeDriver(steady(2, 2.0, 5.0), [FaultPlan(4.0, {"name": "blackhole"}, 4.0)])
    assert ticks(driver, [0.0, 4.0, 5.0, 6.0]) == [
        (0.0, (2, 2.0), []), (4.0, (2, 2.0), [("start", "blackhole")]), (5.0, None, [("heal", "blackhole")]),
        (6.0, None, [])]


def test_a_fault_never_started_is_not_healed_when_the_run_ends() -> None:
    driver = ShapeDriver(steady(2, 2.0, 5.0), [FaultPlan(4.5, {"name": "blackhole"}, 4.0)])
    assert ticks(driver, [0.0, 6.0]) == [(0.0, (2, 2.0), []), (6.0, None, [])]


def test_time_going_backwards_is_refused() -> None:
    driver = ShapeDriver(steady(1, 1.0, 5.0))
    driver.tick(2.0)
    with pytest.raises(ShapeError, match="backwards"):
        driver.tick(1.0)


@pytest.mark.parametrize("build", [
    lambda: Stage(1.0, -1, 1.0), lambda: Stage(1.0, 1, 0.0), lambda: Stage(0.0, 1, 1.0),
    lambda: Schedule(()), lambda: Schedule((Stage(2.0, 1, 1.0), Stage(1.0, 1, 1.0))),
    lambda: FaultPlan(1.0, {"no": "name"}), lambda: FaultPlan(-1.0, {"name": "failover"}),
    lambda: ShapeDriver(steady(1, 1.0, 5.0), [FaultPlan(5.0, {"name": "failover"})]),
    lambda: chaos({"name": "failover"}, at_fraction=0.8, hold_fraction=0.3),
])
def test_nonsense_shapes_are_refused_with_a_shape_error(build) -> None:
    with pytest.raises(ShapeError):
        build()


@pytest.mark.parametrize("text, seconds", [(None, 60.0), ("", 60.0), (90, 90.0), ("45", 45.0), ("30s", 30.0),
                                           ("2m", 120.0), ("1h30m", 5400.0), ("1m 5s", 65.0)])
def test_run_times_are_read_as_locust_spells_them(text, seconds) -> None:
    assert parse_duration(text, 60.0) == seconds


@pytest.mark.parametrize("text", ["soon", "10x", "0", "-5", "5m soon"])
def test_unreadable_run_times_are_refused(text) -> None:
    with pytest.raises(ShapeError):
        parse_duration(text, 60.0)


def test_every_profile_plans_a_schedule_and_names_known_guarantees() -> None:
    from harness.faults.registry import registered
    from harness.guarantees import CATALOGUE

    for p in PROFILES.values():
        schedule, faults = p.plan(p.default_users, 5.0, 30.0)
        assert schedule.duration_s == 30.0
        assert set(p.guarantees) <= set(CATALOGUE), p.name
        assert set(p.fault_guarantees) <= set(p.guarantees), p.name
        assert all(f.spec["name"] in registered() for f in faults), p.name
        assert (p.fault is None) == (not faults), p.name
    with pytest.raises(ShapeError, match="unknown load profile"):
        profile("nope")


def test_every_profile_has_its_locustfile() -> None:
    import pathlib

    import loadprofiles

    here = pathlib.Path(loadprofiles.__file__).parent
    for name in PROFILES:
        text = (here / f"{name}.py").read_text()
        assert f'shape_for("{name}")' in text, name


def test_a_profile_is_refused_by_a_target_without_what_its_fault_needs() -> None:
    from harness.targets.base import Capability

    class Offering:
        kind = "fake"

        def __init__(self, *capabilities: Capability) -> None:
            self.capabilities = set(capabilities)

        def supports(self, capability: Capability) -> bool:
            return capability in self.capabilities

    bare = Offering()
    assert {name for name, p in PROFILES.items() if p.refusal(bare) is not None} == {
        "failover_under_load", "crash_under_load", "network_fault_under_load", "rotation_under_load"}
    assert "needs network faults" in (profile("network_fault_under_load").refusal(bare) or "")
    assert "needs the failover capability" in (profile("failover_under_load").refusal(bare) or "")
    every = Offering(*Capability)
    assert [name for name, p in PROFILES.items() if p.refusal(every) is not None] == []
    assert profile("network_fault_under_load").needs() is Capability.NETWORK_FAULTS
    assert profile("steady").needs() is None


def test_secret_logins_follow_awscurrent_and_keep_the_first_as_old() -> None:
    import json

    import pytest

    from harness.faults.base import FaultError
    from loadprofiles.secret_logins import SecretLogins

    class Secrets:
        def __init__(self) -> None:
            self.value = {"username": "app", "password": "first"}

        def get_secret_value(self, SecretId: str, VersionStage: str) -> dict:
            assert (SecretId, VersionStage) == ("db-secret", "AWSCURRENT")
            if self.value is None:
                raise RuntimeError("AccessDeniedException")
            return {"VersionId": "v", "SecretString": json.dumps(self.value)}

    client = Secrets()
    logins = SecretLogins(client, "db-secret")
    client.value = {"username": "app", "password": "second"}
    assert (logins.first.pair, logins.first.generation) == (("app", "first"), "old")
    assert (logins.current().pair, logins.current().generation) == (("app", "second"), "new")
    assert "second" not in repr(logins.current()), "a login's repr never shows its password"
    client.value = None
    with pytest.raises(FaultError, match="cannot read secret db-secret"):
        logins.current()
