"""Faults for the suites: the plain control operations, and any registered fault by name.

A planned failover promotes the new writer somewhere *inside* the call that asks for it, so
:meth:`Faults.failover` runs a :class:`~harness.faults.failover.PromotionWatcher` around it, as the
registered ``failover`` fault does, and the history says when the promotion really happened.
"""

from __future__ import annotations

from typing import Any

from harness.faults.failover import PromotionWatcher
from harness.history import Phase, Recorder
from harness.targets.base import Capability, Target

__all__ = ["Faults", "PromotionWatcher"]


class Faults:
    """Faults against the target, each written into the history as a start and an end event.

    :meth:`start` builds any registered fault by name (``harness.faults``: ``blackhole``,
    ``reset_peer``, ``latency``, ``writer_crash``...) and heals it at the end of the test at the
    latest; :meth:`failover`, :meth:`crash` and :meth:`restart` are the plain control operations.
    """

    def __init__(self, target: Target, recorder: Recorder) -> None:
        self.target = target
        self.recorder = recorder
        self.started: list[Any] = []

    def start(self, name: str, **params: Any) -> Any:
        """Start fault ``name`` with ``params``; returns it (``fault.stop()`` heals it early)."""
        from harness.faults.registry import fault_from_spec

        fault = fault_from_spec({"name": name, **params})
        fault.start(self.target, self.recorder)
        self.started.append(fault)
        return fault

    def heal_all(self) -> None:
        for fault in reversed(self.started):
            fault.stop()

    def failover(self, to: str | None = None) -> str:
        """Fail over (:func:`harness.faults.failover.carry_out`); a failover that was not done (a
        user's command that failed) ends its window with ``outcome: failed`` and raises."""
        from harness.faults.base import failure_params
        from harness.faults.failover import carry_out, writer_before

        self.target.require(Capability.FAILOVER)
        before = writer_before(self.target)
        self.recorder.fault("failover", Phase.START, {"to": to, **({"old_writer": before} if before else {})})
        end: dict[str, Any] = {"new_writer": None}
        watcher = PromotionWatcher(self.target, self.recorder).start()
        try:
            end = carry_out(self.target, to, before)
            if not watcher.stop() and end.get("promotion_observed", True):
                self.recorder.event("new_writer", end["new_writer"])
            return end["new_writer"]
        except BaseException as e:
            end = {"new_writer": None, **failure_params(e)}
            raise
        finally:
            watcher.stop()
            self.recorder.fault("failover", Phase.END, end)

    def crash(self, instance_id: str) -> None:
        self.target.require(Capability.CRASH)
        self.recorder.fault("crash", Phase.START, {"instance": instance_id})
        self.target.crash(instance_id)

    def restart(self, instance_id: str) -> None:
        self.target.require(Capability.RESTART)
        try:
            self.target.restart(instance_id)
        finally:
            self.recorder.fault("crash", Phase.END, {"instance": instance_id})


