"""Planned failover: promote a reader to writer, as ``aws rds failover-db-cluster`` does.

The fault is instantaneous from the harness's point of view: ``start`` returns once the target
says the new writer is promoted.  Its start event names the writer before, its end event carries
``new_writer`` (which the routing and availability checkers read), and a ``new_writer`` event marks
the promotion instant.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.faults.base import Fault, check_instance
from harness.faults.registry import register
from harness.history import Recorder
from harness.targets.base import Capability, Target, TargetError


@register("failover")
@dataclasses.dataclass
class Failover(Fault):
    """Promote ``target_instance`` (or the target's choice of reader)."""

    requires = Capability.FAILOVER
    target_instance: str | None = None

    def validate(self) -> None:
        check_instance(self.name, self.target_instance)

    def choose(self, target: Target) -> dict[str, Any]:
        try:
            return {"old_writer": target.roles()["writer"]}
        except (TargetError, NotImplementedError):  # a target that cannot name its writer can still fail over
            return {}

    def apply(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> dict[str, Any]:
        new_writer = target.failover(self.target_instance)
        recorder.event("new_writer", new_writer)
        return {"new_writer": new_writer}
