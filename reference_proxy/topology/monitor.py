"""The topology monitor's asyncio side: polls every instance in rounds and applies the core's decisions.

One :class:`TopologyMonitor` per target cluster.  Each round polls every instance at once, each on
its own reserved connection (a :class:`Probe`), bounded by ``poll_timeout``; the round's
observations go to :class:`~reference_proxy.topology.core.TopologyCore`, and its decision is
applied: the router gets the new roles (all of them in one call, so the old writer's demotion and
the new writer's promotion land together), the ``AvailabilityPercentage`` gauges are set, every
event is logged (split brain and identity mismatches at ERROR), and listeners are told.

How the rest of the proxy plugs in:

* ``await monitor.start()`` runs the first round before returning (so roles are verified before
  the first client is served), then keeps polling in a background task; ``await monitor.stop()``
  ends it and closes the monitoring connections.
* ``monitor.add_listener(fn)``: ``fn(outcome)`` runs after every round that produced events (role
  changes always do).  :class:`~reference_proxy.topology.core.RoundOutcome` names the instances
  ``demoted`` from writer (close their backend connections) and ``readers_lost``.  ``fn`` may be a
  coroutine function; its exceptions are logged, never propagated into the monitor.
* ``monitor.writer_available`` is an :class:`asyncio.Event` set while a writer is accepted:
  borrowers waiting for a writer ``await`` it (or :meth:`TopologyMonitor.wait_for_writer`).
* ``monitor.report_backend_error(instance_id, reason)``: a session or the pool saw a backend error
  or a lost connection; the monitor polls at once and then fast until the topology is stable.
* ``monitor.snapshot()`` is the ``topology`` part of the ``/status`` document.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, Self

from reference_proxy.contracts import Clock, InstanceAddress, ProxyError, Role, SystemClock
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.routing import Router
from reference_proxy.topology.core import (
    DEFAULT_FAST_INTERVAL,
    DEFAULT_INTERVAL,
    DEFAULT_STABLE_ROUNDS,
    TARGET_ROLES,
    RoundOutcome,
    TopologyCore,
)
from reference_proxy.topology.events import (
    EventKind,
    Observation,
    ProbeFailed,
    ProbeResult,
    TopologyError,
    TopologyEvent,
)

log = logging.getLogger("reference_proxy.topology")

DEFAULT_POLL_TIMEOUT = 2.0
UNREACHABLE_POLL_TIMEOUT = 0.5
"""The budget of a poll of an instance the last round found unreachable.  A round waits for its
slowest poll, so an instance gone silent (no packets, no reset) would otherwise hold every round for
the whole poll timeout and delay seeing a new writer by as much; an instance that answers again
answers a loopback or in-region poll well within this."""

_EVENT_LEVELS = {
    EventKind.SPLIT_BRAIN_STARTED: logging.ERROR,
    EventKind.SPLIT_BRAIN_ENDED: logging.ERROR,
    EventKind.IDENTITY_MISMATCH: logging.ERROR,
    EventKind.WRITER_LOST: logging.WARNING,
    EventKind.UNREACHABLE: logging.WARNING,
    EventKind.ROLE_CHANGED: logging.WARNING,
    EventKind.WRITER_ACCEPTED: logging.WARNING,
    EventKind.REACHABLE: logging.INFO,
    EventKind.DOUBT_REPORTED: logging.INFO,
    EventKind.FAST_POLLING: logging.INFO,
    EventKind.STEADY_POLLING: logging.INFO,
}


class Probe(Protocol):
    """Polls one instance over a connection it owns; each engine implements it (``engines/<name>/probe.py``)."""

    async def poll(self) -> ProbeResult:
        """One poll. Raise :class:`ProbeFailed` on failure; reconnect on the next call."""
        ...

    async def close(self) -> None:
        """Close the monitoring connection; never raise."""
        ...


ProbeFactory = Callable[[InstanceAddress], Probe]


class ProbeConstructor(Protocol):
    """How an engine opens its probe of one instance, given the ``[monitor]`` settings."""

    def __call__(self, address: InstanceAddress, *, user: str, password: str, database: str,
                 connect_timeout: float, query_timeout: float) -> Probe: ...


Listener = Callable[[RoundOutcome], Any]


def describe_event(event: TopologyEvent) -> str:
    """One log line for an event."""
    parts = [event.kind.value.replace("_", " ")]
    if event.instance_id:
        parts.append(event.instance_id)
    if event.old_role or event.new_role:
        parts.append(f"{event.old_role.value if event.old_role else '?'} -> "
                     f"{event.new_role.value if event.new_role else '?'}")
    if event.detail:
        parts.append(f"({event.detail})")
    text = " ".join(parts)
    return ("SPLIT BRAIN: " + text) if event.kind in (EventKind.SPLIT_BRAIN_STARTED,
                                                     EventKind.SPLIT_BRAIN_ENDED) else text


class TopologyMonitor:
    """Watches every instance of the target cluster and keeps the router's roles true."""

    def __init__(self, instances: Sequence[InstanceAddress], probe_factory: ProbeFactory,
                 router: Router | None = None, metrics: ProxyMetrics | None = None,
                 clock: Clock | None = None, *, interval: float = DEFAULT_INTERVAL,
                 fast_interval: float = DEFAULT_FAST_INTERVAL, poll_timeout: float = DEFAULT_POLL_TIMEOUT,
                 stable_rounds: int = DEFAULT_STABLE_ROUNDS,
                 wall_clock: Callable[[], float] = time.time, takes_hints: bool = True,
                 one_round_late: bool = False) -> None:
        self.instances = list(instances)
        if not (isinstance(poll_timeout, (int, float)) and poll_timeout > 0):
            raise TopologyError(f"poll_timeout must be a positive number of seconds, got {poll_timeout!r}")
        self.core = TopologyCore([i.id for i in self.instances], interval=interval,
                                 fast_interval=fast_interval, stable_rounds=stable_rounds)
        self.router = router
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.wall_clock = wall_clock
        self.poll_timeout = float(poll_timeout)
        self.takes_hints = takes_hints
        """Whether a backend error reported from outside makes the monitor look at once (always, but
        for the ``slow_topology_monitor`` failpoint)."""
        self._one_round_late = one_round_late
        self._held: list[Observation] | None = None
        self._abandoned: set[asyncio.Task] = set()  # probes that ran out of time, closing in the background
        self.writer_available = asyncio.Event()
        self._probe_factory = probe_factory
        self._probes: dict[str, Probe] = {}
        self._listeners: list[Listener] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._round_lock = asyncio.Lock()
        self._changed = asyncio.Condition()

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the probes, run the first round, then keep polling in the background."""
        if self._task is not None:
            raise TopologyError("the topology monitor is already running")
        self._probes = {i.id: self._probe_factory(i) for i in self.instances}
        await self.poll_now()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop polling and close every monitoring connection. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        probes, self._probes = self._probes, {}
        await asyncio.gather(*(p.close() for p in probes.values()), return_exceptions=True)
        abandoned, self._abandoned = set(self._abandoned), set()
        for task in abandoned:
            task.cancel()
        await asyncio.gather(*abandoned, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------ plugging in

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(outcome)`` after every round that produced events."""
        self._listeners.append(listener)

    def report_backend_error(self, instance_id: str | None, reason: str) -> None:
        """A backend error or lost connection seen by the pool or a session: re-check now, then fast."""
        if not self.takes_hints:
            return
        now = self.clock.monotonic()
        try:
            events = self.core.report_doubt(instance_id, reason, now, self.wall_clock())
        except TopologyError as e:
            log.warning("ignored a backend error report: %s", e)
            return
        for event in events:
            log.log(_EVENT_LEVELS[event.kind], "topology: %s", describe_event(event))
        self._wake.set()

    async def wait_for_writer(self, timeout: float | None = None) -> str | None:
        """The accepted writer's id, waiting up to ``timeout`` seconds for one; None if none came."""
        if self.core.writer is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.writer_available.wait(), timeout)
        return self.core.writer

    async def wait_for(self, predicate: Callable[[TopologyCore], bool], timeout: float) -> bool:
        """Wait until ``predicate(core)`` holds after some round, up to ``timeout`` seconds."""
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.core))
        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            return predicate(self.core)
        return True

    @property
    def roles(self) -> dict[str, Role]:
        return self.core.roles

    @property
    def writer(self) -> str | None:
        return self.core.writer

    def snapshot(self, events: int = 20) -> dict[str, Any]:
        """The ``topology`` section of the JSON status: roles, reachability, lag, recent events."""
        return self.core.snapshot(self.clock.monotonic(), events)

    # ------------------------------------------------------------------------------ rounds

    async def poll_now(self) -> RoundOutcome:
        """Run one round right away (rounds never overlap) and apply it."""
        async with self._round_lock:
            observations = await asyncio.gather(*(self._poll_one(i) for i in self.instances))
            if self._one_round_late:  # unsafe on purpose: failpoint slow_topology_monitor
                observations, self._held = (self._held or observations), observations
            outcome = self.core.observe(observations, self.clock.monotonic(), self.wall_clock())
            await self._apply(outcome)
            return outcome

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.core.next_delay())
            try:
                await self.poll_now()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("topology monitor round failed; retrying")

    async def _poll_one(self, instance: InstanceAddress) -> Observation:
        probe = self._probes.get(instance.id)
        if probe is None:
            return Observation.failed(instance.id, "monitor stopped")
        budget = self.poll_timeout
        if self.core.views[instance.id].reachable is False:
            budget = min(budget, UNREACHABLE_POLL_TIMEOUT)
        poll = asyncio.ensure_future(probe.poll())
        try:
            done, _ = await asyncio.wait({poll}, timeout=budget)
        except asyncio.CancelledError:  # the monitor stops: the poll goes with it
            poll.cancel()
            raise
        if not done:
            # Not asyncio.wait_for: it waits for the cancelled poll to end, and a driver cancels a
            # query by asking the server first (psycopg waits seconds for a silent one), which held
            # the round, and the news of a silent writer, for ten seconds more than the budget.
            self._probes[instance.id] = self._probe_factory(instance)
            self._abandon(poll, probe)
            return Observation.failed(instance.id, f"no answer within {budget:g}s")
        try:
            result = poll.result()
        except ProbeFailed as e:
            return Observation.failed(instance.id, str(e))
        except (ProxyError, OSError) as e:
            await probe.close()
            return Observation.failed(instance.id, f"{type(e).__name__}: {e}")
        return Observation.ok(instance.id, result)

    def _abandon(self, poll: asyncio.Future, probe: Probe) -> None:
        """Cancel a poll that ran out of time and close its probe in the background."""
        poll.cancel()

        async def close() -> None:
            with contextlib.suppress(BaseException):
                await poll
            await probe.close()
        task = asyncio.ensure_future(close())
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    async def _apply(self, outcome: RoundOutcome) -> None:
        for event in outcome.events:
            log.log(_EVENT_LEVELS[event.kind], "topology: %s", describe_event(event))
        if outcome.changed and self.router is not None:
            try:
                self.router.update(outcome.roles)
            except ProxyError as e:
                log.error("topology: the router refused the new roles %s: %s",
                          {i: r.value for i, r in outcome.roles.items()}, e)
        if self.core.writer is not None:
            self.writer_available.set()
        else:
            self.writer_available.clear()
        if self.metrics is not None:
            for instance_id in outcome.roles:
                if outcome.roles[instance_id] is not outcome.previous_roles[instance_id]:
                    self.metrics.inc("TopologyRoleChanges", instance=instance_id)
            now = self.clock.monotonic()
            for role, target_role in TARGET_ROLES.items():
                self.metrics.gauge_set("AvailabilityPercentage", self.core.availability_percentage(role, now),
                                       target_role=target_role)
        if outcome.events:
            for listener in list(self._listeners):
                try:
                    result = listener(outcome)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("topology listener %r failed", listener)
        async with self._changed:
            self._changed.notify_all()
