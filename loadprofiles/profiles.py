"""The load profiles by name: shape, fault plan, user mix, and the guarantees their histories judge.

A profile is a locustfile of this package (``loadprofiles/<name>.py``) and an entry here.  The entry is
what the harness needs without Locust - ``aurora-harness load`` reads it to check ``--profile`` and to
know which checkers to run - and the locustfile builds its shape from it (``shapes.shape_for``).  So
what a profile loads and what is judged of it are written once.

Guarantees are those whose workload conventions the users follow: writes through the writer
endpoint with unique ids and one final read after the load (durability), requests that read who
served them (routing), and the session-state probes' reads on fresh connections (isolation).  A
chaos profile adds the guarantees of its fault.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.targets.base import Capability, Target
from loadprofiles.stages import SHAPES, FaultPlan, Schedule, ShapeError, chaos

ROUTING = ("ROUTE-WRITER-ENDPOINT", "ROUTE-READER-ONLY")
DURABILITY = ("DURABILITY-NO-LOST-ACK", "DURABILITY-NO-FAILED-VISIBLE", "DURABILITY-NO-DUPLICATE")
ISOLATION = ("ISOLATION-NO-SESSION-LEAK",)
BASE = ROUTING + ("DURABILITY-NO-LOST-ACK",) + ISOLATION
"""What every profile with the full user mix judges.  The other two durability guarantees need writes
that failed or were in flight during a fault (without one they are unknown by design), so only the
chaos profiles whose fault cuts writes judge them."""


@dataclasses.dataclass(frozen=True)
class Profile:
    """One load profile.

    ``shape`` names a schedule of :data:`loadprofiles.stages.SHAPES`; ``fault`` (a registered fault's
    spec) starts at ``fault_at`` of the run time and is healed ``fault_hold`` of it later;
    ``default_users`` and ``default_run_time_s`` apply when ``--users`` / ``--run-time`` are not given.
    """

    name: str
    summary: str
    shape: str = "steady"
    guarantees: tuple[str, ...] = BASE
    fault: dict[str, Any] | None = None
    fault_at: float = 0.4
    fault_hold: float = 0.0
    default_users: int = 12
    default_run_time_s: float = 60.0
    fault_guarantees: tuple[str, ...] = ()
    """The guarantees that judge the fault: unknown when the fault could not be carried out."""
    follows_secret: bool = False
    """Whether some of its users log in with what the target's secret holds (a rotation profile)."""

    def needs(self) -> Capability | None:
        """The target capability the profile's fault needs (None: no fault, or one every target can do)."""
        if self.fault is None:
            return None
        from harness.faults.registry import fault_from_spec

        return fault_from_spec(dict(self.fault)).requires

    def refusal(self, target: Target) -> str | None:
        """Why this profile cannot run against ``target`` (None when it can).

        Rather than carry out a run whose fault cannot happen, leaving the fault's guarantees unknown,
        the run is refused up front.  The network faults are the case in point: they need the TCP
        relays between the proxy and the instances, which only ``aurora-harness load`` starting a
        reference target puts there (and serves to the Locust master through the relay desk)."""
        needs = self.needs()
        if needs is None or target.supports(needs):
            return None
        if needs is Capability.NETWORK_FAULTS:
            return (f"profile {self.name!r} needs network faults between the proxy and the instances, which "
                    f"this {target.kind} target does not offer: run it with 'aurora-harness load --target "
                    "reference', which puts TCP relays on that path")
        return (f"profile {self.name!r}: its fault {self.fault['name']!r} needs the {needs.value} capability, "
                f"which this {target.kind} target does not offer")

    def plan(self, users: int, spawn_rate: float, run_time_s: float) -> tuple[Schedule, tuple[FaultPlan, ...]]:
        """The schedule and fault plan for the run's common options."""
        if self.shape not in SHAPES:
            raise ShapeError(f"profile {self.name!r}: unknown shape {self.shape!r}")
        if self.fault is None:
            return SHAPES[self.shape](users, spawn_rate, run_time_s), ()
        return chaos(self.fault, at_fraction=self.fault_at, hold_fraction=self.fault_hold,
                     shape=self.shape)(users, spawn_rate, run_time_s)


_FAILOVER = ("FAILOVER-WRITE-GAP", "FAILOVER-READ-ERRORS")
_ROTATION = ("ROTATION-SESSIONS-KEPT", "ROTATION-NEW-LOGINS", "ROTATION-OLD-PASSWORD")
"""ROTATION-BACKEND-AUTH is left to the suite: it needs statements started the instant the database's
password changes, which only the process carrying out the rotation sees."""

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("steady", "every task set at a constant user count"),
    Profile("step", "every task set, the user count rising in four steps", shape="step"),
    Profile("spike", "every task set; all users at once for a fifth of the run", shape="spike"),
    Profile("churn", "connect-query-disconnect users and short transactions, the count swinging", shape="churn"),
    Profile("storm", "connect-query-disconnect users all spawned in the first second", shape="storm",
            guarantees=("ROUTE-WRITER-ENDPOINT",), default_users=200),
    Profile("failover_under_load", "every task set; a planned failover at 40 % of the run",
            guarantees=BASE + _FAILOVER, fault={"name": "failover"}, fault_guarantees=_FAILOVER),
    Profile("crash_under_load", "every task set; the writer killed at 30 % and restarted at 60 % of the run",
            guarantees=BASE + DURABILITY[1:], fault={"name": "writer_crash"}, fault_at=0.3, fault_hold=0.3),
    Profile("rotation_under_load", "every task set, plus sessions held open and logins that follow the "
            "secret; a single-user rotation of the secret at 40 % of the run", guarantees=BASE + _ROTATION,
            fault={"name": "rotate_secret", "strategy": "single_user", "window_seconds": 1.0}, fault_hold=0.3,
            fault_guarantees=_ROTATION, follows_secret=True),
    Profile("network_fault_under_load", "every task set; the writer's path blackholed from 30 % to 50 % of the run",
            guarantees=BASE + ("NETFAULT-SILENT-DETECTED",), fault={"name": "blackhole"}, fault_at=0.3,
            fault_hold=0.2, fault_guarantees=("NETFAULT-SILENT-DETECTED",)),
)}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ShapeError(f"unknown load profile {name!r}; known: {', '.join(PROFILES)}") from None
