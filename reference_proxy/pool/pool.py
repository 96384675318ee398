"""The engine-agnostic backend connection pool: caps, fair borrowing with a timeout, reset, reaping.

How it imitates RDS Proxy
-------------------------
* Backend connections are opened lazily, one per borrow that finds nothing idle, and are only
  interchangeable within one :class:`PoolKey` (instance, user, database, engine variant).
* Each instance has a cap on open connections, ``floor(max_connections × MaxConnectionsPercent /
  100)``, shared by all keys of that instance, and a cap on idle ones from
  ``MaxIdleConnectionsPercent``.  ``max_connections`` is read from the server at start and handed to
  :meth:`Pool.set_instance_max_connections`; until then :data:`DEFAULT_MAX_CONNECTIONS` (PostgreSQL's
  own default) is assumed.
* A borrower that cannot be served at once queues behind the earlier ones of the same instance and
  waits at most ConnectionBorrowTimeout, then gets :class:`BorrowTimeout` with RDS's exact text.  A
  timeout of 0 fails at once whenever no idle connection of the key is pooled, even below the cap,
  as RDS documents.
* When an instance is at its cap and the head waiter's key has nothing idle, the oldest idle
  connection of another key is closed to make room: a busy key cannot starve another one.
* Idle connections beyond ``floor(max_connections × MaxIdleConnectionsPercent / 100)`` are closed
  as they come back, oldest first.  :meth:`Pool.reap` closes idle connections unused for 24 hours
  whatever the cap, and connections idle for five minutes or more (RDS's idea of "idle") beyond
  the cap, which matters after the cap was lowered.
* A released connection carrying session state (DIRTY, i.e. it was pinned) is reset before anyone
  else gets it, and closed if the reset fails; what RDS runs there is not documented.

Slots and accounting
--------------------
``_Instance.open`` counts every slot in use: connections being opened, idle, lent, being reset and
being closed.  A slot is freed only after the close finished, so the backend never sees more than
the cap.  Every change of a slot calls :meth:`Pool._dispatch`, the one place that hands idle
connections and free slots to waiters, in FIFO order.

Time
----
The injected clock dates idle connections (reaping) and measures borrow latency; waiting itself
uses the event loop's timers, because a waiter must wake up even when nobody advances a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from reference_proxy.contracts import (
    BackendConnectFailed,
    BackendConnection,
    BackendFactory,
    BorrowTimeout,
    Clock,
    InstanceAddress,
    PoolKey,
    ProxyError,
    ReleaseState,
)
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.pool.errors import NotBorrowed, PoolClosed, PoolError
from reference_proxy.pool.settings import PoolSettings

DEFAULT_MAX_CONNECTIONS = 100
"""max_connections assumed for an instance until the server reports the real value."""

BACKEND_IDLE_AFTER = 300.0
"""Seconds without activity after which RDS counts a backend connection as idle (reaping candidate)."""

BACKEND_UNUSED_LIMIT = 86400.0
"""Seconds after which an unused backend connection is closed whatever the idle cap says."""

CLOSE_TIMEOUT = 5.0
"""Seconds allowed for one polite backend close before the pool stops waiting for it."""

_OPEN_SLOT = object()
"""What a waiter is granted when it may open a new connection itself (a reserved slot)."""


@dataclass(eq=False)
class _Tracked:
    """The pool's bookkeeping for one open backend connection."""

    conn: BackendConnection
    key: PoolKey
    opened_at: float
    last_used: float
    generation: int
    borrowed: bool = False
    pinned: bool = False
    in_transaction: bool = False
    doomed: bool = False  # close instead of pooling when it comes back (close_instance, shutdown)


@dataclass(eq=False)
class _Waiter:
    key: PoolKey
    future: asyncio.Future[Any]


@dataclass(eq=False)
class _Instance:
    """Everything the pool knows about one database instance."""

    id: str
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    open: int = 0
    closing: int = 0
    generation: int = 0
    idle: dict[PoolKey, deque[_Tracked]] = field(default_factory=dict)
    idle_count: int = 0
    tracked: set[_Tracked] = field(default_factory=set)
    waiters: deque[_Waiter] = field(default_factory=deque)
    borrowed_gauge: Any = None   # series moved on every borrow and release, bound once
    borrow_latency: Any = None


class Pool:
    """Backend connections of every instance, lent to client sessions and taken back.

    ``borrow`` and ``release`` are the hot path; ``reap`` is called periodically by the server,
    ``close_instance`` on failover, ``drain``/``close`` at shutdown, ``snapshot`` for ``/status``.
    """

    def __init__(self, factory: BackendFactory, settings: PoolSettings, clock: Clock,
                 metrics: ProxyMetrics | None = None, *, failpoint: str | None = None) -> None:
        self._factory = factory
        # Unsafe on purpose (reference_proxy.failpoints): backend_cap_off_by_one opens one connection
        # beyond the cap, the comparison a hurried author writes as <= instead of <.
        self._beyond_cap = 1 if failpoint == "backend_cap_off_by_one" else 0
        # Unsafe on purpose: backend_setup_retried_at_once tries a failed setup again at once, until the
        # borrow's deadline, where a failed setup must reach its client (see _open).
        self._retry_setups = failpoint == "backend_setup_retried_at_once"
        self.settings = settings
        self._clock = clock
        self.metrics = metrics if metrics is not None else ProxyMetrics()
        self._instances: dict[str, _Instance] = {}
        self._by_conn: dict[int, _Tracked] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False
        self._closed = False
        self._quiet = asyncio.Event()  # set whenever nothing is lent, being reset or being closed

    # ----------------------------------------------------------------------------- borrowing

    async def borrow(self, key: PoolKey, address: InstanceAddress,
                     timeout: float | None = None) -> BackendConnection:
        """Lend a backend connection for ``key`` on the instance at ``address``.

        ``timeout`` defaults to the settings' ConnectionBorrowTimeout; 0 means: only an idle pooled
        connection will do.  Raises :class:`BorrowTimeout`, :class:`BackendConnectFailed` (the slot
        is freed) or :class:`PoolClosed`.
        """
        if key.instance_id != address.id:
            raise PoolError(f"pool key is for instance {key.instance_id!r} but the address is of {address.id!r}")
        if timeout is None:
            timeout = self.settings.connection_borrow_timeout
        if timeout < 0:
            raise PoolError(f"borrow timeout must not be negative, got {timeout!r}")
        self._check_open()
        inst = self._instance(key.instance_id)
        started = self._clock.monotonic()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        grant: Any = self._take_idle(inst, key) if (timeout == 0 or not self._waiting(inst)) else None
        if grant is None:
            if timeout == 0:
                raise BorrowTimeout("ConnectionBorrowTimeout is 0 and no idle connection is pooled")
            if not self._waiting(inst) and inst.open < self._open_limit(inst):
                inst.open += 1
                grant = _OPEN_SLOT
            else:
                grant = await self._wait_in_line(inst, key, deadline)
        if grant is _OPEN_SLOT:
            grant = await self._open(inst, key, address, deadline)
        return self._lend(inst, grant, started)

    def try_borrow_now(self, key: PoolKey) -> BackendConnection | None:
        """An idle pooled connection of ``key``, lent at once, or None when that would mean waiting.

        The steady-state shortcut of :meth:`borrow`: no coroutine, no deadline.  It never jumps
        ahead of a waiter (None while anyone waits on the instance) and never opens a connection;
        the caller falls back to :meth:`borrow`, which keeps every other rule.
        """
        if self._closed or self._draining:
            return None
        inst = self._instances.get(key.instance_id)
        if inst is None or not inst.idle_count or (inst.waiters and self._waiting(inst)):
            return None
        rec = self._take_idle(inst, key)
        if rec is None:
            return None
        return self._lend(inst, rec, self._clock.monotonic())

    async def _wait_in_line(self, inst: _Instance, key: PoolKey, deadline: float) -> Any:
        waiter = _Waiter(key, asyncio.get_running_loop().create_future())
        inst.waiters.append(waiter)
        self._dispatch(inst)
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter.future
        except BaseException as exc:
            fut = waiter.future
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._give_back(inst, fut.result())  # granted just as we gave up: do not leak it
            else:
                fut.cancel()
            with contextlib.suppress(ValueError):
                inst.waiters.remove(waiter)
            self._dispatch(inst)
            if isinstance(exc, TimeoutError):
                raise BorrowTimeout(f"waited in line for instance {inst.id!r} at its cap") from None
            raise

    async def _open(self, inst: _Instance, key: PoolKey, address: InstanceAddress,
                    deadline: float) -> _Tracked:
        """Open a connection in a slot already reserved; on any failure free the slot."""
        generation = inst.generation
        try:
            conn = await self._set_up(inst, key, address, deadline)
        except BaseException as exc:
            inst.open -= 1
            self._dispatch(inst)
            self._update_quiet()
            if isinstance(exc, TimeoutError):
                raise BorrowTimeout(f"opening a connection to {inst.id!r} did not finish in time") from None
            if isinstance(exc, Exception) and not isinstance(exc, ProxyError):
                raise BackendConnectFailed(f"opening a connection to {inst.id!r} failed: {exc}") from exc
            raise
        now = self._clock.monotonic()
        rec = _Tracked(conn=conn, key=key, opened_at=now, last_used=now, generation=generation,
                       doomed=generation != inst.generation)
        inst.tracked.add(rec)
        self._by_conn[id(conn)] = rec
        self.metrics.inc("DatabaseConnectionsSetupSucceeded", instance=inst.id)
        self.metrics.gauge_add("DatabaseConnections", 1, instance=inst.id)
        if self._closed or self._draining:
            self._discard(inst, rec)
            raise PoolClosed("the pool is shutting down")
        return rec

    async def _set_up(self, inst: _Instance, key: PoolKey, address: InstanceAddress,
                      deadline: float) -> BackendConnection:
        """One connection from the factory, each attempt counted as a setup requested and, when it
        fails, as a setup failed.  A failure reaches the borrower, whose client hears of it: trying
        again here would turn a database that refuses logins (a rotation's window) into a storm."""
        while True:
            self.metrics.inc("DatabaseConnectionRequests", instance=inst.id)
            try:
                async with asyncio.timeout_at(deadline):
                    return await self._factory(key, address)
            except BaseException as exc:
                self.metrics.inc("DatabaseConnectionsSetupFailed", instance=inst.id)
                if not self._retry_setups or self._closed or not isinstance(exc, Exception) \
                        or isinstance(exc, (TimeoutError, PoolClosed)):
                    raise
            # Unsafe on purpose: failpoint backend_setup_retried_at_once (reference_proxy.failpoints).
            await asyncio.sleep(0)

    def _lend(self, inst: _Instance, rec: _Tracked, started: float) -> BackendConnection:
        rec.borrowed = True
        rec.last_used = self._clock.monotonic()
        self._quiet.clear()
        inst.borrowed_gauge.add(1)
        inst.borrow_latency.observe(rec.last_used - started)
        return rec.conn

    # ------------------------------------------------------------------------------ returning

    def release(self, conn: BackendConnection, state: ReleaseState) -> None:
        """Take back a lent connection: CLEAN pools it, DIRTY resets it first, BROKEN closes it."""
        if state.__class__ is not ReleaseState:
            state = ReleaseState(state)
        rec = self._lent(conn)
        inst = self._instances[rec.key.instance_id]
        rec.borrowed = False
        rec.last_used = self._clock.monotonic()
        inst.borrowed_gauge.add(-1)
        if rec.pinned:
            rec.pinned = False
            self.metrics.gauge_add("DatabaseConnectionsCurrentlySessionPinned", -1, instance=inst.id)
        if rec.in_transaction:
            rec.in_transaction = False
            self.metrics.gauge_add("DatabaseConnectionsCurrentlyInTransaction", -1, instance=inst.id)
        if state is ReleaseState.BROKEN or not self._poolable(inst, rec):
            self._discard(inst, rec)
        elif state is ReleaseState.DIRTY:
            self._spawn(self._reset_then_pool(inst, rec))
        else:
            self._pool_idle(inst, rec)
        self._update_quiet()

    async def _reset_then_pool(self, inst: _Instance, rec: _Tracked) -> None:
        try:
            ok = await rec.conn.reset()
        except Exception:  # noqa: BLE001 - a reset that blows up is a reset that failed
            ok = False
        if ok and self._poolable(inst, rec):
            self._pool_idle(inst, rec)
        else:
            self._discard(inst, rec)
        self._update_quiet()

    def _poolable(self, inst: _Instance, rec: _Tracked) -> bool:
        return (not rec.doomed and not self._closed and not self._draining
                and rec.generation == inst.generation and _usable(rec.conn))

    def _pool_idle(self, inst: _Instance, rec: _Tracked) -> None:
        queue = inst.idle.get(rec.key)
        if queue is None:
            queue = inst.idle[rec.key] = deque()
        queue.append(rec)
        inst.idle_count += 1
        self._dispatch(inst)
        # No trimming here: RDS counts a backend connection as idle only after 5 minutes without
        # use, so the idle cap is enforced by reap(), never on the busy path (closing on return
        # would turn a steady load into connection churn).

    def _give_back(self, inst: _Instance, grant: Any) -> None:
        if grant is _OPEN_SLOT:
            inst.open -= 1
            self._dispatch(inst)
        elif self._poolable(inst, grant):
            self._pool_idle(inst, grant)
        else:
            self._discard(inst, grant)

    # --------------------------------------------------------------------------- dispatching

    def _dispatch(self, inst: _Instance) -> None:
        """Hand idle connections and free slots to waiters, oldest first; make room if needed."""
        if not inst.waiters:
            return  # the usual case on every release: nobody to serve, no room to make
        cap = self._open_limit(inst)
        while inst.waiters:
            head = inst.waiters[0]
            if head.future.done():
                inst.waiters.popleft()
                continue
            rec = self._take_idle(inst, head.key)
            if rec is not None:
                inst.waiters.popleft()
                head.future.set_result(rec)
            elif inst.open < cap:
                inst.open += 1
                inst.waiters.popleft()
                head.future.set_result(_OPEN_SLOT)
            else:
                break
        # At the cap: close idle connections of other keys, one per waiter not already covered by
        # a close in flight, so the waiters get slots as the closes finish.
        uncovered = sum(1 for w in inst.waiters if not w.future.done()) - inst.closing
        while uncovered > 0 and inst.open >= cap and inst.idle_count:
            victim = self._oldest_idle(inst)
            self._remove_idle(inst, victim)
            self._discard(inst, victim)
            uncovered -= 1

    def _waiting(self, inst: _Instance) -> bool:
        return any(not w.future.done() for w in inst.waiters)

    def _take_idle(self, inst: _Instance, key: PoolKey) -> _Tracked | None:
        """The most recently pooled usable idle connection of ``key``, removed from the idle list."""
        queue = inst.idle.get(key)
        while queue:
            rec = queue.pop()
            inst.idle_count -= 1
            if _usable(rec.conn):
                if not queue:
                    del inst.idle[key]
                return rec
            self._discard(inst, rec)
        inst.idle.pop(key, None)
        return None

    def _oldest_idle(self, inst: _Instance) -> _Tracked:
        return min((q[0] for q in inst.idle.values() if q), key=lambda r: r.last_used)

    def _remove_idle(self, inst: _Instance, rec: _Tracked) -> None:
        queue = inst.idle[rec.key]
        queue.remove(rec)
        inst.idle_count -= 1
        if not queue:
            del inst.idle[rec.key]

    def _trim_idle(self, inst: _Instance, limit: int, older_than: float | None = None) -> int:
        """Close the oldest idle connections while more than ``limit`` are idle."""
        closed = 0
        while inst.idle_count > limit:
            victim = self._oldest_idle(inst)
            if older_than is not None and victim.last_used > older_than:
                break
            self._remove_idle(inst, victim)
            self._discard(inst, victim)
            closed += 1
        return closed

    # ------------------------------------------------------------------------------- closing

    def _discard(self, inst: _Instance, rec: _Tracked) -> None:
        """Close a connection that is neither idle nor lent any more; its slot frees when closed."""
        inst.tracked.discard(rec)
        self._by_conn.pop(id(rec.conn), None)
        inst.closing += 1
        self._quiet.clear()
        self._spawn(self._close(inst, rec))

    async def _close(self, inst: _Instance, rec: _Tracked) -> None:
        try:
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await rec.conn.close()
        finally:
            inst.closing -= 1
            inst.open -= 1
            self.metrics.gauge_add("DatabaseConnections", -1, instance=inst.id)
            self._dispatch(inst)
            self._update_quiet()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close_instance(self, instance_id: str, cut_lent: str | None = None, only_pinned: bool = False) -> int:
        """Close every idle connection of an instance now and lent ones when they come back.

        For failover: nothing opened before this call is pooled again.  With ``cut_lent`` (the
        reason, e.g. "the writer was demoted by a failover") lent connections are cut at once
        too, through the connection's ``abort(reason)`` when it has one: a session in the middle
        of a transaction on a demoted writer must fail now rather than write to an instance that
        is no longer the writer.  ``only_pinned`` limits the cut to pinned sessions (a lost reader:
        a multiplexed read in flight may still finish).  Returns how many idle connections were closed.
        """
        inst = self._instances.get(instance_id)
        if inst is None:
            return 0
        inst.generation += 1
        for rec in inst.tracked:
            rec.doomed = True
            if cut_lent is not None and rec.borrowed and (rec.pinned or not only_pinned):
                abort = getattr(rec.conn, "abort", None)
                if abort is not None:
                    with contextlib.suppress(Exception):
                        abort(cut_lent)
        return self._trim_idle(inst, 0)

    def reap(self) -> int:
        """Close idle connections the pool should not keep; returns how many.

        Connections unused for 24 hours go regardless; beyond the idle cap, connections idle for
        five minutes or more go, oldest first.  The server calls this periodically.
        """
        now = self._clock.monotonic()
        closed = 0
        for inst in self._instances.values():
            for queue in list(inst.idle.values()):
                for rec in [r for r in queue if now - r.last_used >= BACKEND_UNUSED_LIMIT]:
                    self._remove_idle(inst, rec)
                    self._discard(inst, rec)
                    closed += 1
            closed += self._trim_idle(inst, self._idle_cap(inst), older_than=now - BACKEND_IDLE_AFTER)
        return closed

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop lending, wait for lent connections to come back (up to ``timeout``), then close.

        Returns True when everything came back in time.
        """
        self._draining = True
        self._fail_waiters()
        for inst in self._instances.values():
            self._trim_idle(inst, 0)
        self._update_quiet()
        drained = True
        try:
            async with asyncio.timeout(timeout):
                await self._quiet.wait()
        except TimeoutError:
            drained = False
        await self.close()
        return drained

    async def close(self) -> None:
        """Close everything now: waiters fail, idle connections close, lent ones close on return."""
        self._closed = True
        self._fail_waiters()
        for inst in self._instances.values():
            for rec in inst.tracked:
                rec.doomed = True
            self._trim_idle(inst, 0)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _fail_waiters(self) -> None:
        for inst in self._instances.values():
            while inst.waiters:
                waiter = inst.waiters.popleft()
                if not waiter.future.done():
                    waiter.future.set_exception(PoolClosed("the pool is shutting down"))

    def _update_quiet(self) -> None:
        for inst in self._instances.values():  # a plain loop: runs on every release
            if inst.closing or len(inst.tracked) > inst.idle_count:
                self._quiet.clear()
                return
        self._quiet.set()

    # ----------------------------------------------------------------- session-reported state

    def mark_pinned(self, conn: BackendConnection) -> None:
        """Record that the lent connection is pinned to its client session until release."""
        rec = self._lent(conn)
        if not rec.pinned:
            rec.pinned = True
            self.metrics.gauge_add("DatabaseConnectionsCurrentlySessionPinned", 1,
                                   instance=rec.key.instance_id)

    def mark_in_transaction(self, conn: BackendConnection, in_transaction: bool) -> None:
        """Record whether the lent connection is inside a transaction (for the metric)."""
        rec = self._lent(conn)
        if rec.in_transaction != bool(in_transaction):
            rec.in_transaction = bool(in_transaction)
            self.metrics.gauge_add("DatabaseConnectionsCurrentlyInTransaction",
                                   1 if in_transaction else -1, instance=rec.key.instance_id)

    def _lent(self, conn: BackendConnection) -> _Tracked:
        rec = self._by_conn.get(id(conn))
        if rec is None or rec.conn is not conn or not rec.borrowed:
            raise NotBorrowed(f"connection {getattr(conn, 'backend_id', conn)!r} is not lent by this pool")
        return rec

    # ------------------------------------------------------------------------- instance caps

    def set_instance_max_connections(self, instance_id: str, max_connections: int) -> None:
        """Tell the pool an instance's ``max_connections``; caps follow from the percentages."""
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise PoolError(f"max_connections of {instance_id!r} must be a whole number ≥ 1, "
                            f"got {max_connections!r}")
        inst = self._instance(instance_id)
        inst.max_connections = max_connections
        self.metrics.gauge_set("MaxDatabaseConnectionsAllowed", self._cap(inst), instance=instance_id)
        self._dispatch(inst)
        self._trim_idle(inst, self._idle_cap(inst), older_than=self._clock.monotonic() - BACKEND_IDLE_AFTER)

    def update_settings(self, settings: PoolSettings) -> None:
        """Apply new pool settings (a configuration reload) to every instance at once.

        A higher cap serves waiters at once; a lower idle cap closes the excess idle connections;
        a lower connection cap closes nothing that is lent (it takes effect as connections return).
        """
        self.settings = settings
        for inst in self._instances.values():
            self.metrics.gauge_set("MaxDatabaseConnectionsAllowed", self._cap(inst), instance=inst.id)
            self._dispatch(inst)
            self._trim_idle(inst, self._idle_cap(inst), older_than=self._clock.monotonic() - BACKEND_IDLE_AFTER)

    def _instance(self, instance_id: str) -> _Instance:
        inst = self._instances.get(instance_id)
        if inst is None:
            inst = self._instances[instance_id] = _Instance(
                instance_id,
                borrowed_gauge=self.metrics.gauge("DatabaseConnectionsCurrentlyBorrowed", instance=instance_id),
                borrow_latency=self.metrics.histogram("DatabaseConnectionsBorrowLatency", instance=instance_id))
            self.metrics.gauge_set("MaxDatabaseConnectionsAllowed", self._cap(inst), instance=instance_id)
        return inst

    def _cap(self, inst: _Instance) -> int:
        return self.settings.connection_cap(inst.max_connections)

    def _open_limit(self, inst: _Instance) -> int:
        """How many connections the pool lets itself open to ``inst``: its cap (unless a failpoint is on)."""
        return self._cap(inst) + self._beyond_cap

    def _idle_cap(self, inst: _Instance) -> int:
        return self.settings.idle_cap(inst.max_connections)

    def _check_open(self) -> None:
        if self._closed or self._draining:
            raise PoolClosed("the pool is shutting down")

    # -------------------------------------------------------------------------------- status

    def snapshot(self) -> dict[str, Any]:
        """The pool's state as plain data for the status document."""
        now = self._clock.monotonic()
        instances = {}
        for inst in self._instances.values():
            keys: dict[tuple[Any, ...], dict[str, Any]] = {}
            for rec in inst.tracked:
                entry = keys.setdefault(_key_id(rec.key), {
                    "user": rec.key.user, "database": rec.key.database,
                    "variant": dict(rec.key.variant), "idle": 0, "borrowed": 0, "pinned": 0})
                entry["borrowed"] += rec.borrowed
                entry["pinned"] += rec.pinned
            for key, queue in inst.idle.items():
                keys[_key_id(key)]["idle"] = len(queue)
            instances[inst.id] = {
                "max_connections": inst.max_connections,
                "connection_cap": self._cap(inst),
                "idle_cap": self._idle_cap(inst),
                "open": inst.open,
                "idle": inst.idle_count,
                "borrowed": sum(r.borrowed for r in inst.tracked),
                "pinned": sum(r.pinned for r in inst.tracked),
                "in_transaction": sum(r.in_transaction for r in inst.tracked),
                "closing": inst.closing,
                "waiting": sum(1 for w in inst.waiters if not w.future.done()),
                "oldest_idle_seconds": (now - self._oldest_idle(inst).last_used) if inst.idle_count else 0.0,
                "keys": list(keys.values()),
            }
        return {"state": "closed" if self._closed else "draining" if self._draining else "open",
                "instances": instances}


def _key_id(key: PoolKey) -> tuple[Any, ...]:
    return (key.user, key.database, key.variant)


def _usable(conn: BackendConnection) -> bool:
    try:
        return bool(conn.is_usable())
    except Exception:  # noqa: BLE001 - a connection that cannot answer is not usable
        return False
