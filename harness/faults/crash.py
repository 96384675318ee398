"""Instance crashes: SIGKILL the writer or a reader with no promotion; healing restarts it.

A crashed writer with nobody promoting a reader is Aurora's "writer down" window; with the
stand-in's supervisor running, a reader is promoted after the grace period, which the history shows
as the supervisor's doing, not the fault's.  The instance is chosen when the fault starts (the
writer *then*) and named in the events; an ``instance_down`` event marks the kill.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.faults.base import Fault, check_instance, pick_instance
from harness.faults.registry import register
from harness.history import Recorder
from harness.targets.base import Capability, Target


@dataclasses.dataclass
class _Crash(Fault):
    requires = Capability.CRASH
    role = "writer"
    instance: str | None = None
    restart_on_heal: bool = True

    def validate(self) -> None:
        check_instance(self.name, self.instance)

    def choose(self, target: Target) -> dict[str, Any]:
        return {"instance": pick_instance(target, self.instance, self.role), "role": self.role}

    def apply(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> None:
        target.crash(chosen["instance"])
        recorder.event("instance_down", chosen["instance"], node=chosen["instance"])

    def heal(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> dict[str, Any]:
        if not self.restart_on_heal:
            return {"restarted": False}
        target.require(Capability.RESTART)
        target.restart(chosen["instance"])
        return {"restarted": True}


@register("writer_crash")
@dataclasses.dataclass
class WriterCrash(_Crash):
    """Kill the current writer (or ``instance``); heal restarts it in whatever role it has then."""

    role = "writer"


@register("reader_crash")
@dataclasses.dataclass
class ReaderCrash(_Crash):
    """Kill a reader (the first, or ``instance``); heal restarts it."""

    role = "reader"
