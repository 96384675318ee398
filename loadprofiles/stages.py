"""Load shapes as data: how many users when, and which fault starts or heals when.

Locust asks a shape's ``tick()`` about once a second for ``(users, spawn rate)`` and stops the run
when it answers ``None``.  Everything a shape decides is worked out here, without Locust and without
a clock of its own: a :class:`Schedule` of :class:`Stage` rows answers "what load at second t", a
:class:`FaultPlan` says when a registered harness fault starts and when it is healed, and
:class:`ShapeDriver` turns successive run times into :class:`Tick` answers, each fault action
handed out exactly once.  ``shapes.py`` wraps a driver in a ``LoadTestShape``; the unit tests feed a
driver hand-picked times and check the exact sequence.

The named shapes (:data:`SHAPES`) are functions of the run's common options (``--users``,
``--spawn-rate``, ``--run-time``), so one profile scales from a smoke test to a long soak:

* ``steady`` - every user from the start to the end;
* ``step``   - four equal steps up to the full count;
* ``spike``  - a fifth of the users, all of them at once for a fifth of the run, then a fifth again;
* ``churn``  - the count swings between all and half every few seconds: users come and go, and
  every one that goes closes its connection;
* ``storm``  - every user spawned in the same second (a connection storm), then held.

A chaos profile is a shape plus a :class:`FaultPlan` (``steady`` load, one fault at 40 % of the run).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

from harness.errors import HarnessError


class ShapeError(HarnessError):
    """A shape or fault plan that makes no sense (negative users, stages out of order...)."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """``users`` users, spawned at ``spawn_rate`` per second, until ``until_s`` seconds into the run."""

    until_s: float
    users: int
    spawn_rate: float

    def __post_init__(self) -> None:
        if isinstance(self.users, bool) or not isinstance(self.users, int) or self.users < 0:
            raise ShapeError(f"a stage's users must be a non-negative integer, got {self.users!r}")
        if not self.spawn_rate > 0:
            raise ShapeError(f"a stage's spawn rate must be positive, got {self.spawn_rate!r}")
        if not self.until_s > 0:
            raise ShapeError(f"a stage must end after the start of the run, got until {self.until_s!r} s")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Stages in time order; past the last one the run is over."""

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ShapeError("a schedule needs at least one stage")
        ends = [s.until_s for s in self.stages]
        if ends != sorted(ends) or len(set(ends)) != len(ends):
            raise ShapeError(f"stages must end at increasing times, got {ends}")

    @property
    def duration_s(self) -> float:
        return self.stages[-1].until_s

    def at(self, t: float) -> tuple[int, float] | None:
        """(users, spawn rate) at ``t`` seconds, or None once the run is over."""
        for stage in self.stages:
            if t < stage.until_s:
                return stage.users, stage.spawn_rate
        return None


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    """Start the registered fault ``spec`` (``{"name": "failover", ...}``) at ``at_s`` seconds; heal it
    ``hold_s`` seconds later (an instantaneous fault such as a failover ends by itself)."""

    at_s: float
    spec: dict[str, Any]
    hold_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.spec, dict) or not isinstance(self.spec.get("name"), str):
            raise ShapeError(f"a fault plan needs a fault spec with a 'name', got {self.spec!r}")
        if self.at_s < 0 or self.hold_s < 0:
            raise ShapeError(f"fault times must be >= 0 s, got at {self.at_s!r}, hold {self.hold_s!r}")

    @property
    def heal_s(self) -> float:
        return self.at_s + self.hold_s


@dataclasses.dataclass(frozen=True)
class FaultAction:
    """One thing to do to the target now: ``start`` or ``heal`` the fault of ``plan`` (number ``index``)."""

    kind: str
    index: int
    plan: FaultPlan


@dataclasses.dataclass(frozen=True)
class Tick:
    """A driver's answer: the load now (None: stop the run), and the fault actions now due."""

    load: tuple[int, float] | None
    actions: tuple[FaultAction, ...] = ()


class ShapeDriver:
    """Turns run times into ticks: the schedule's load, and every fault action once, in time order.

    Times must not go backwards.  A run that ends (the schedule is over) before a planned heal gets
    the heal in its last tick, so no fault outlives the load that was meant to show its effect.
    """

    def __init__(self, schedule: Schedule, faults: Iterable[FaultPlan] = ()) -> None:
        self.schedule = schedule
        self.faults = tuple(sorted(faults, key=lambda p: p.at_s))
        late = [p for p in self.faults if p.at_s >= schedule.duration_s]
        if late:
            raise ShapeError(f"fault {late[0].spec['name']!r} at {late[0].at_s:g} s starts after the run "
                             f"ends ({schedule.duration_s:g} s)")
        pending = [FaultAction("start", i, p) for i, p in enumerate(self.faults)]
        pending += [FaultAction("heal", i, p) for i, p in enumerate(self.faults) if p.hold_s > 0]
        self._pending = sorted(pending, key=lambda a: (a.plan.at_s if a.kind == "start" else a.plan.heal_s,
                                                        a.kind == "start"))
        self._last_t = -math.inf

    def tick(self, t: float) -> Tick:
        if t < self._last_t:
            raise ShapeError(f"run time went backwards: {t} after {self._last_t}")
        self._last_t = t
        load = self.schedule.at(t)
        due = [a for a in self._pending
               if load is None or (a.plan.at_s if a.kind == "start" else a.plan.heal_s) <= t]
        if load is None:  # the run is over: heal what is still active, start nothing new
            due = [a for a in due if a.kind == "heal" and not self._waiting_start(a.index)]
        self._pending = [a for a in self._pending if a not in due and load is not None]
        return Tick(load, tuple(due))

    def _waiting_start(self, index: int) -> bool:
        return any(a.kind == "start" and a.index == index for a in self._pending)


# -- the named shapes ---------------------------------------------------------------------------------
ShapeFactory = Callable[[int, float, float], Schedule]
"""(users, spawn rate, run time in seconds) -> schedule."""


def steady(users: int, spawn_rate: float, run_time: float) -> Schedule:
    return Schedule((Stage(run_time, users, spawn_rate),))


def step(users: int, spawn_rate: float, run_time: float, steps: int = 4) -> Schedule:
    counts = [max(1, math.ceil(users * (n + 1) / steps)) for n in range(steps)]
    return Schedule(tuple(Stage(run_time * (n + 1) / steps, c, spawn_rate) for n, c in enumerate(counts)))


def spike(users: int, spawn_rate: float, run_time: float) -> Schedule:
    base = max(1, users // 5)
    burst = max(users, base)
    return Schedule((Stage(run_time * 0.4, base, spawn_rate), Stage(run_time * 0.6, burst, float(burst)),
                     Stage(run_time, base, float(burst))))


CHURN_PERIOD_S = 4.0


def churn(users: int, spawn_rate: float, run_time: float) -> Schedule:
    """All users, then half, alternating every :data:`CHURN_PERIOD_S` / 2 seconds."""
    low = max(1, users // 2)
    half = CHURN_PERIOD_S / 2
    stages, t, high_now = [], 0.0, True
    while t < run_time:
        t = min(run_time, t + half)
        stages.append(Stage(t, users if high_now else low, max(spawn_rate, float(users))))
        high_now = not high_now
    return Schedule(tuple(stages))


def storm(users: int, spawn_rate: float, run_time: float) -> Schedule:
    """Every user in the first second, whatever the spawn rate asked: a storm is all at once."""
    return Schedule((Stage(run_time, users, float(max(users, 1))),))


SHAPES: dict[str, ShapeFactory] = {"steady": steady, "step": step, "spike": spike, "churn": churn, "storm": storm}


def chaos(fault: dict[str, Any], *, at_fraction: float = 0.4, hold_fraction: float = 0.0,
          shape: str = "steady") -> Callable[[int, float, float], tuple[Schedule, tuple[FaultPlan, ...]]]:
    """A chaos shape: ``shape``'s load with ``fault`` started at ``at_fraction`` of the run and healed
    ``hold_fraction`` of the run later (0: the fault ends by itself)."""
    if not 0 <= at_fraction < 1 or not 0 <= hold_fraction < 1 - at_fraction:
        raise ShapeError(f"fault fractions out of range: at {at_fraction}, hold {hold_fraction}")

    def build(users: int, spawn_rate: float, run_time: float) -> tuple[Schedule, tuple[FaultPlan, ...]]:
        return SHAPES[shape](users, spawn_rate, run_time), (
            FaultPlan(run_time * at_fraction, dict(fault), run_time * hold_fraction),)

    return build


def parse_duration(text: str | float | None, default: float) -> float:
    """Seconds from Locust's run-time spelling (``90``, ``90s``, ``2m``, ``1h30m``); None gives ``default``."""
    if text is None or text == "":
        return default
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        import re

        s = str(text).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", s):
            seconds = float(s)
        else:
            parts = re.findall(r"(\d+)\s*([hms])", s)
            if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", s):
                raise ShapeError(f"cannot read a duration from {text!r} (like 30s, 2m, 1h30m)")
            seconds = float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))
    if seconds <= 0:
        raise ShapeError(f"a run time must be positive, got {text!r}")
    return seconds
