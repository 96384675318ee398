"""Failover routing: where each session's next transaction goes while the topology changes.

RDS Proxy's behaviour, which :class:`FailoverRouting` reproduces on top of the router, the pool
and the topology monitor:

* Every borrow is routed afresh (:meth:`FailoverRouting.acquire`), so an idle multiplexed client
  simply runs its next transaction on whichever instance is the writer then.  While there is no
  writer, new connections and new transactions wait for one, up to ConnectionBorrowTimeout (one
  deadline covers the wait for an instance and the wait for the pool).
* A failed connect may be the first sign of a failover: the monitor is asked to poll at once, and
  when the instance turns out to have lost its role the borrow is routed again instead of failing.
* When the monitor demotes a writer (:meth:`FailoverRouting.on_topology`), its idle backend
  connections close and the lent ones are cut: the clients in a transaction or pinned there get a
  FATAL naming the failover and are disconnected (their session state cannot move).
* On a read-only endpoint a session stays on its reader while it is one.  A session whose reader
  is lost moves, between transactions, to a reader the monitor has seen at or past the old
  reader's last known replay position (no stale reads); pinned ones are cut; the writer is never
  used for reads.

The steady state costs nothing extra: :meth:`FailoverRouting.acquire_now` lends an idle
connection of the session's own instance synchronously when its role still fits and nobody
waits in line; everything else goes through the asynchronous :meth:`FailoverRouting.acquire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reference_proxy.config import EndpointRole
from reference_proxy.contracts import (
    BackendConnectFailed,
    BorrowTimeout,
    InstanceAddress,
    NoReader,
    NoWriter,
    PoolKey,
    ProxyError,
    ReleaseState,
    Role,
)
from reference_proxy.pool import Pool
from reference_proxy.routing import Router, RoutingError
from reference_proxy.topology import RoundOutcome, TopologyMonitor

__all__ = ["DEMOTED_WRITER_MESSAGE", "LOST_READER_MESSAGE", "ROUTED_FAILPOINTS", "FailoverRouting"]

log = logging.getLogger("reference_proxy.failover")

DEMOTED_WRITER_MESSAGE = ("terminating connection because of a failover: instance {instance} is no longer "
                          "the writer; reconnect to reach the new writer")
LOST_READER_MESSAGE = ("terminating connection because of a failover: reader instance {instance} is no longer "
                       "available to this pinned session; reconnect to reach another reader")

# Failpoints whose site is here (reference_proxy.failpoints).  Unsafe on purpose, test only.
WRITER_SPILLS_TO_READERS = "writer_spills_to_readers"
READER_FALLS_BACK_TO_WRITER = "reader_falls_back_to_writer"
READER_STAYS_ON_PROMOTED = "reader_stays_on_promoted"
REFUSE_READER_SESSIONS = "refuse_reader_sessions"
SLOW_BORROW = "slow_borrow"
ROUTED_FAILPOINTS = (WRITER_SPILLS_TO_READERS, READER_FALLS_BACK_TO_WRITER, READER_STAYS_ON_PROMOTED, SLOW_BORROW)
"""Failpoints that misroute or delay a borrow: with one on, every borrow takes :meth:`FailoverRouting.acquire`."""
SPILL_EVERY = 3
"""writer_spills_to_readers: one writer-endpoint borrow in this many goes to a reader."""
REFUSE_EVERY = 10
"""refuse_reader_sessions: one new reader-endpoint session in this many is refused."""
SLOW_BORROW_S = 0.010
"""slow_borrow: what every borrow waits before it looks at the pool."""


class FailoverRouting:
    """Routes sessions and borrows across failovers; see the module docstring.

    ``endpoint_roles`` maps each endpoint's name to its role.  The session services call
    :meth:`wait_for_instance`, :meth:`acquire_now`, :meth:`acquire` and :meth:`backend_lost`;
    the monitor calls :meth:`on_topology` after every round that changed something.
    """

    def __init__(self, router: Router, pool: Pool, monitor: TopologyMonitor,
                 endpoint_roles: Mapping[str, EndpointRole], *, failpoint: str | None = None) -> None:
        self.router = router
        self.failpoint = failpoint  # unsafe on purpose: reference_proxy.failpoints
        self._every_borrow_routed = failpoint in ROUTED_FAILPOINTS
        self._misbehaviours = itertools.count(1)
        self._write_doubts: set[str] = set()
        self.pool = pool
        self.monitor = monitor
        self._roles = dict(endpoint_roles)
        self._reader_positions: dict[str, int] = {}  # last replay position the monitor saw per reader

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.pool.settings.connection_borrow_timeout

    @staticmethod
    def _remaining(deadline: float) -> float:
        return max(0.0, deadline - asyncio.get_running_loop().time())

    def _expected_role(self, endpoint: str) -> Role:
        return Role.READER if self._roles[endpoint] is EndpointRole.READ_ONLY else Role.WRITER

    # ------------------------------------------------------------------------- new sessions

    async def wait_for_instance(self, endpoint: str) -> InstanceAddress:
        """The instance for a new session; during a failover wait for one up to the borrow timeout."""
        deadline = self._deadline()
        if self._roles[endpoint] is EndpointRole.READ_ONLY:
            if self.failpoint == REFUSE_READER_SESSIONS and next(self._misbehaviours) % REFUSE_EVERY == 0:
                raise NoReader(f"endpoint {endpoint!r} has no reader instance available")  # failpoint, unsafe
            return await self._reader_for(endpoint, None, deadline)
        while True:
            try:
                return self.router.choose_writer()
            except NoWriter:
                await self._writer_or_timeout(deadline)

    async def _writer_or_timeout(self, deadline: float) -> None:
        remaining = self._remaining(deadline)
        if remaining <= 0 or await self.monitor.wait_for_writer(remaining) is None:
            raise BorrowTimeout("no writer instance became available in time (failover)")

    # ---------------------------------------------------------------------------- borrowing

    async def _route(self, endpoint: str, current: InstanceAddress, deadline: float) -> InstanceAddress:
        """Where a session's next transaction goes; moves the session's count when that changes."""
        if self._roles[endpoint] is EndpointRole.READ_ONLY:
            return await self._reader_for(endpoint, current, deadline)
        while True:
            try:
                writer = self.router.writer()
            except NoWriter:
                await self._writer_or_timeout(deadline)
                continue
            self.router.move_session(current.id, writer.id)
            return writer

    async def _reader_for(self, endpoint: str, current: InstanceAddress | None,
                          deadline: float) -> InstanceAddress:
        """A reader for a new session (``current`` None) or the next transaction of one.

        A session stays on its reader while it is one.  Moving off a lost reader, only readers the
        monitor has seen replayed at least as far as the lost one are eligible; readers that exist
        but are not available are waited for, a cluster without readers fails at once.
        """
        if self.failpoint == "reads_fail_in_doubt" and self.monitor.core.fast:  # unsafe on purpose: reference_proxy.failpoints
            raise NoReader(f"endpoint {endpoint!r}: the topology is in doubt (a failover may be under way)")
        if current is not None and self.router.role(current.id) is Role.READER:
            self._note_position(current.id)
            return current
        required = self._reader_positions.get(current.id) if current is not None else None

        def eligible() -> list[str]:
            views = self.monitor.core.views
            return [i for i in self.router.readers_of(endpoint)
                    if required is None or (views[i].wal_position is not None
                                            and views[i].wal_position >= required)]
        while True:
            if not self.router.could_serve_reads(endpoint):
                raise NoReader(f"endpoint {endpoint!r} has no reader instance in the cluster")
            candidates = eligible()
            if candidates:
                chosen = self.router.choose_reader(endpoint, candidates)
                if current is not None:
                    self.router.session_ended(current.id)
                self._note_position(chosen.id)
                return chosen
            remaining = self._remaining(deadline)
            if remaining <= 0:
                raise BorrowTimeout(f"no reader of endpoint {endpoint!r} was available in time")
            await self.monitor.wait_for(lambda core: bool(eligible()) or
                                        not self.router.could_serve_reads(endpoint), remaining)

    def _note_position(self, instance_id: str) -> None:
        position = self.monitor.core.views[instance_id].wal_position
        if position is not None and position > self._reader_positions.get(instance_id, -1):
            self._reader_positions[instance_id] = position

    def acquire_now(self, endpoint: str, key: PoolKey, current: InstanceAddress) -> Any:
        """The backend for a session's next transaction when nothing needs waiting for, else None.

        Steady state: the session's instance still has the role its endpoint needs and an idle
        connection of its key is pooled with nobody waiting in line.  Anything else (a failover,
        a move between readers, an empty pool, a queue) is :meth:`acquire`'s business.
        """
        if self._every_borrow_routed:
            return None
        if key.instance_id != current.id or self.router.role(current.id) is not self._expected_role(endpoint):
            return None
        if self.failpoint == "reads_fail_in_doubt" and self.monitor.core.fast:  # the failpoint's reads go through acquire
            return None
        backend = self.pool.try_borrow_now(key)
        if backend is not None and self._roles[endpoint] is EndpointRole.READ_ONLY:
            self._note_position(current.id)
        return backend

    async def acquire(self, endpoint: str, key: PoolKey, current: InstanceAddress) -> tuple[InstanceAddress, Any]:
        """Route, then borrow; a connection failure that turns out to be a failover is waited out.

        One ConnectionBorrowTimeout covers the whole wait: for a writer, a reader and the pool.
        """
        deadline = self._deadline()
        if self.failpoint is not None:
            misrouted = await self._misbehave(endpoint, key, current, deadline)
            if misrouted is not None:
                return misrouted
        original = current
        try:
            while True:
                try:
                    target = await self._route(endpoint, current, deadline)
                except NoReader as e:
                    raise BackendConnectFailed(str(e)) from None
                current = target
                try:
                    if key.instance_id != target.id:
                        key = replace(key, instance_id=target.id)
                    backend = await self.pool.borrow(key, target, timeout=self._remaining(deadline))
                except BackendConnectFailed as e:
                    if not await self._role_changed(target.id, endpoint, str(e), deadline):
                        raise
                    continue
                if self._expected_role(endpoint) is self.router.role(target.id):
                    return target, backend
                self.pool.release(backend, ReleaseState.BROKEN)  # demoted while we were connecting
        except BaseException:
            # The session keeps its old instance when nothing was lent: keep the router's count there.
            if current.id != original.id:
                with contextlib.suppress(ProxyError):
                    self.router.move_session(current.id, original.id)
            raise

    async def _misbehave(self, endpoint: str, key: PoolKey, current: InstanceAddress,
                         deadline: float) -> tuple[InstanceAddress, Any] | None:
        """Unsafe on purpose (reference_proxy.failpoints): a borrow as the failpoint turned on makes it,
        or None to borrow as a correct proxy does.  A misrouted borrow leaves the session counted
        where it was: only this transaction runs elsewhere."""
        read_only = self._roles[endpoint] is EndpointRole.READ_ONLY
        if self.failpoint == SLOW_BORROW:
            await asyncio.sleep(SLOW_BORROW_S)
        elif self.failpoint == WRITER_SPILLS_TO_READERS and not read_only:
            readers = self.router.readers_of(endpoint)
            turn = next(self._misbehaviours)
            if readers and turn % SPILL_EVERY == 0:
                reader = self.router.address(readers[(turn // SPILL_EVERY) % len(readers)])
                return current, await self.pool.borrow(replace(key, instance_id=reader.id), reader,
                                                       timeout=self._remaining(deadline))
        elif (self.failpoint == READER_STAYS_ON_PROMOTED and read_only
              and self.router.role(current.id) is Role.WRITER):
            return current, await self.pool.borrow(key, current, timeout=self._remaining(deadline))
        elif (self.failpoint == READER_FALLS_BACK_TO_WRITER and read_only
              and self.router.role(current.id) is Role.READER):
            backend = self.pool.try_borrow_now(key)
            if backend is not None:
                return current, backend
            with contextlib.suppress(NoWriter):  # the reader's pool is busy: take a writer connection
                writer = self.router.writer()
                return current, await self.pool.borrow(replace(key, instance_id=writer.id), writer,
                                                       timeout=self._remaining(deadline))
        return None

    async def _role_changed(self, instance_id: str, endpoint: str, why: str, deadline: float) -> bool:
        """After a failed connect: poll now; True when the instance no longer has the role we needed.

        The round is not cancelled when the borrow deadline comes first (cutting a round short
        would cost the monitor its connections); it just finishes without us.
        """
        if not self.monitor.takes_hints:  # the slow_topology_monitor failpoint: wait for its own rounds
            return self.router.role(instance_id) is not self._expected_role(endpoint)
        self.monitor.report_backend_error(instance_id, why)
        round_ = asyncio.ensure_future(self.monitor.poll_now())
        round_.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception not retrieved"
        await asyncio.wait({round_}, timeout=self._remaining(deadline))
        return self.router.role(instance_id) is not self._expected_role(endpoint)

    # --------------------------------------------------------------------- topology changes

    def backend_lost(self, instance_id: str, why: str) -> None:
        """A backend connection died under its client: maybe a failover, so the monitor looks now."""
        self.monitor.report_backend_error(instance_id, why)

    def write_refused(self, instance_id: str, why: str) -> None:
        """The instance taken for the writer refused a write as read-only: it was demoted (a failover
        the monitor has not seen yet, since a demoted writer keeps running), so the monitor looks
        now instead of at its next poll, and writes stop failing sooner."""
        try:
            role = self.router.role(instance_id)
        except RoutingError:
            return  # no longer part of the topology
        if role is not Role.WRITER:  # a write sent to a reader is refused as it should be: nothing to learn
            return
        if instance_id not in self._write_doubts:  # once per monitor round, however many writes fail
            self._write_doubts.add(instance_id)
            self.monitor.report_backend_error(instance_id, why)

    def on_topology(self, outcome: RoundOutcome) -> None:
        """Nothing opened to a demoted writer or a lost reader is lent again; pinned/in-flight users are cut."""
        self._write_doubts.clear()
        for instance_id in outcome.demoted:
            closed = self.pool.close_instance(
                instance_id, cut_lent=DEMOTED_WRITER_MESSAGE.format(instance=instance_id))
            log.warning("failover: %s is no longer the writer; closed %d idle backend connections and cut the lent "
                        "ones", instance_id, closed)
        for instance_id in outcome.readers_lost:
            if instance_id in outcome.demoted:
                continue
            closed = self.pool.close_instance(
                instance_id, cut_lent=LOST_READER_MESSAGE.format(instance=instance_id), only_pinned=True)
            log.warning("reader %s is no longer available; closed %d idle backend connections", instance_id, closed)
