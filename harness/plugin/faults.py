"""Faults for the suites: the plain control operations, and any registered fault by name.

A planned failover promotes the new writer somewhere *inside* the call that asks for it (the
target's own, or a user's failover command), and the proxy may route to it before the call returns.  So that the history says when the promotion really
happened, a :class:`PromotionWatcher` polls the readers directly while the failover runs and
records ``new_writer`` the moment one of them stops being a replica; checkers take the first such
event in the failover window as the promotion instant.
"""

from __future__ import annotations

import threading
from typing import Any

from harness.history import Phase, Recorder
from harness.targets.base import Capability, Target

POLL_INTERVAL_S = 0.02


class PromotionWatcher:
    """Polls each reader on its own direct connection, in its engine's words
    (``Dialect.writer_check_sql``), until stopped."""

    def __init__(self, target: Target, recorder: Recorder, *, interval: float = POLL_INTERVAL_S) -> None:
        self.target = target
        self.recorder = recorder
        self.interval = interval
        self.seen: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PromotionWatcher:
        if self.target.supports(Capability.DIRECT):
            self._thread = threading.Thread(target=self._watch, name="promotion-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> bool:
        """Stop watching; True if the promotion was seen (and recorded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return self.seen is not None

    def _watch(self) -> None:
        # Imported here: the plugin loads in every pytest run, the drivers only when a failover runs.
        from harness.clients.address import Address
        from harness.clients.client import SYNC_DRIVERS
        from harness.clients.dialects import dialect_for

        engine = self.target.engine
        driver, sql = SYNC_DRIVERS[engine], dialect_for(engine).writer_check_sql
        readers = [i for i in self.target.direct_instances() if i.get("role") == "reader"]
        conns: dict[str, Any] = {}
        try:
            while not self._stop.is_set() and self.seen is None:
                for inst in readers:
                    try:
                        conn = conns.get(inst["id"])
                        if conn is None or not conn.connected:
                            conn = conns[inst["id"]] = driver(Address.of_instance(engine, inst), connect_timeout=2)
                            conn.open()
                        rows = conn.execute(sql)
                        if rows and rows[0][0]:
                            self.seen = inst["id"]
                            self.recorder.event("new_writer", inst["id"], extra={"seen_by": "direct poll"})
                            return
                    except Exception:  # noqa: BLE001 - an instance restarting for promotion is expected
                        dropped = conns.pop(inst["id"], None)
                        if dropped is not None:
                            dropped.close()
                self._stop.wait(self.interval)
        finally:
            for conn in conns.values():
                try:
                    conn.close()
                except Exception:  # noqa: BLE001, S110 - closing after an error may raise
                    pass


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


