"""Planned failover: promote a reader to writer, as ``aws rds failover-db-cluster`` does.

The fault is instantaneous from the harness's point of view: ``start`` returns once the new writer is
promoted.  Its start event names the writer before, its end event carries ``new_writer`` (which the
routing and availability checkers read), and a ``new_writer`` event marks the promotion instant.

A planned failover promotes the new writer somewhere *inside* the call that asks for it (the target's
own, or a user's failover command), and the proxy may route to it before the call returns.  So that
the history says when the promotion really happened, a :class:`PromotionWatcher` polls the readers
directly while the failover runs and records ``new_writer`` the moment one of them stops being a
replica; checkers take the first such event in the failover window as the promotion instant.  Only
when it saw nothing (no direct access, or a promotion quicker than its poll) does the fault record the
event itself, after the call.

:func:`carry_out` is the one way a failover is done and its new writer found, for this fault and for
the suites' ``faults.failover()``.  A target that acts itself names the new writer.  A target whose
failover is a user's command (:mod:`harness.targets.hooks`) names it too when it has direct access
to the instances; without that, the harness watches the writer endpoint - its identity and role
query, the same columns every request reads - until it reports another writable instance, within a
deadline.  The promotion instant cannot be seen that way (the endpoint shows only when the proxy
followed), so the end event says ``promotion_observed: false`` and the write gap is measured from
the fault's start, as an upper bound.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from harness.faults.base import Fault, check_instance
from harness.faults.registry import register
from harness.history import Recorder
from harness.targets.base import Capability, ControlFailed, Target, TargetError

WATCH_DEADLINE_S = 120.0
"""How long the writer endpoint may take to report a new writer after the failover command returned."""
WATCH_INTERVAL_S = 0.1
POLL_INTERVAL_S = 0.02
"""How often :class:`PromotionWatcher` asks each reader whether it was promoted."""


def writer_before(target: Target) -> str | None:
    """The writer now: from the target when it can say, else as the writer endpoint reports it."""
    if target.supports(Capability.DIRECT):
        try:
            return target.roles()["writer"]
        except (TargetError, NotImplementedError):  # a target that cannot name its writer can still fail over
            return None
    try:
        identity, role = writer_endpoint_reports(target)
    except Exception:  # noqa: BLE001 - an endpoint that does not answer now is for the workload to judge
        return None
    return identity if role == "writer" else None


def writer_endpoint_reports(target: Target) -> tuple[str, str | None]:
    """(instance id, ``writer``/``reader``) as the writer endpoint's serving instance reports itself,
    on a connection of its own that no history records."""
    # Imported here: the drivers load only when a failover runs.
    from harness.clients.address import Address
    from harness.clients.client import SYNC_DRIVERS
    from harness.clients.dialects import dialect_for
    from harness.clients.plans import role_of

    connection = SYNC_DRIVERS[target.engine](Address.of(target, "writer"), connect_timeout=5)
    try:
        connection.open()
        rows = connection.execute(dialect_for(target.engine).identity_sql(target.identity_query))
    finally:
        connection.close()
    identity, _, writable = rows[0][:3]
    return str(identity), role_of(writable)


def watch_for_new_writer(target: Target, before: str | None, *, deadline_s: float = WATCH_DEADLINE_S) -> str:
    """The instance the writer endpoint reports once it is writable and not ``before``; ControlFailed
    when that does not happen within ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while True:
        try:
            identity, role = writer_endpoint_reports(target)
            if role == "writer" and identity != before:
                return identity
            last = f"{identity} ({role or 'role unknown'})"
        except Exception as e:  # noqa: BLE001 - the endpoint may refuse while the cluster fails over
            last = f"an error: {type(e).__name__}"
        if time.monotonic() >= deadline:
            raise ControlFailed(
                f"after the failover command the writer endpoint still reported {last} {deadline_s:g} s later "
                f"(was {before or 'unknown'}); without direct access the harness cannot tell whether the "
                "cluster failed over and the proxy did not follow, or the command did not fail over",
                dict(target.last_control or {}))
        time.sleep(WATCH_INTERVAL_S)


def carry_out(target: Target, to: str | None, before: str | None) -> dict[str, Any]:
    """Fail ``target`` over (to ``to`` if given) and find the new writer: the end event's params.

    ``before`` is the writer before (:func:`writer_before`).  ``control`` is what the user's command
    came to, when the target's failover is one; ``promotion_observed`` is false when the new writer
    was only seen through the writer endpoint."""
    named = target.failover(to)
    params: dict[str, Any] = {}
    if target.last_control is not None:
        params["control"] = target.last_control
    if named is None:
        named = watch_for_new_writer(target, before)
        params.update(promotion_observed=False, seen_by="writer endpoint")
    params["new_writer"] = named
    return params


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
        try:
            readers = [i for i in self.target.direct_instances() if i.get("role") == "reader"]
        except (TargetError, NotImplementedError):  # nothing to watch: the fault records the event after
            return
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


@register("failover")
@dataclasses.dataclass
class Failover(Fault):
    """Promote ``target_instance`` (or the target's choice of reader)."""

    requires = Capability.FAILOVER
    target_instance: str | None = None

    def validate(self) -> None:
        check_instance(self.name, self.target_instance)

    def choose(self, target: Target) -> dict[str, Any]:
        before = writer_before(target)
        return {"old_writer": before} if before is not None else {}

    def apply(self, target: Target, recorder: Recorder, chosen: dict[str, Any]) -> dict[str, Any]:
        watcher = PromotionWatcher(target, recorder).start()
        try:
            end = carry_out(target, self.target_instance, chosen.get("old_writer"))
        finally:
            seen = watcher.stop()
        if not seen and end.get("promotion_observed", True):
            recorder.event("new_writer", end["new_writer"])
        return end
