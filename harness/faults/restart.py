"""Instance restart: kill an instance and start it again at once (an unplanned reboot).

Instantaneous: the end event is written when the instance answers again.  Without promotion the
writer endpoint is unavailable for the restart's duration; clients' connections to the instance
are all broken.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.faults.base import Fault, check_instance, pick_instance
from harness.faults.registry import register
from harness.history import Recorder
from harness.targets.base import Capability, Target


@register("restart")
@dataclasses.dataclass
class Restart(Fault):
    """Restart ``instance`` (default: the current writer)."""

    requires = Capability.RESTART
    instance: str | None = None

    def validate(self) -> None:
        check_instance(self.name, self.instance)

    def choose(self, target: Target) -> dict[str, Any]:
        return {"instance": pick_instance(target, self.instance, "writer")}

    def apply(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> dict[str, Any]:
        target.require(Capability.CRASH)
        target.crash(chosen["instance"])
        recorder.event("instance_down", chosen["instance"], node=chosen["instance"])
        target.restart(chosen["instance"])
        return {"restarted": True}
