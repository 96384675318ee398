"""Workload helpers shared by the suites: run many recorded clients at once, note the topology."""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from harness.checkers.served import EXPECT_SERVED
from harness.clients.address import DIRECT_PROGRAM
from harness.clients.workload import Loop
from harness.history import Recorder
from harness.plugin.targets import pool_caps
from harness.targets.base import Capability, Target

CLIENT_REQUEST_TIMEOUT_S = 60.0
"""Default ``request_timeout`` for the suites' clients: far above any healthy answer, but finite, so a
client stuck on a dead socket ends by itself instead of outliving its test."""


def run_clients(count: int, body: Callable[[int], Any], *, max_workers: int | None = None,
                timeout: float = 240.0) -> list[Any]:
    """Run ``body(i)`` for ``i`` in ``range(count)`` on threads; re-raise the first error.

    Threads, not processes: the clients mostly wait on sockets, and they share one recorder.
    ``timeout`` bounds the wait: clients still running then are abandoned (the executor is shut
    down without waiting) and :class:`TimeoutError` is raised.  Python cannot kill a thread, so the
    clients need a ``request_timeout`` (:data:`CLIENT_REQUEST_TIMEOUT_S`) for abandoned
    threads to finish on their own.
    """
    results: list[Any] = [None] * count
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers or count, thread_name_prefix="client")
    try:
        futures = {pool.submit(body, i): i for i in range(count)}
        done, not_done = concurrent.futures.wait(futures, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {count} clients were still running after {timeout:.0f}s")
        for f in done:
            results[futures[f]] = f.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results


def serving_read(clients: Any, client: Any, *, must_serve: bool = False) -> Any:
    """A plain read that only says who served it (op ``read``); ``must_serve`` marks it as one a
    healthy proxy must answer (:data:`~harness.checkers.served.EXPECT_SERVED`), so that its failure
    counts against the guarantee judged."""
    if must_serve:
        return client.request("read", f"SELECT {clients.who}", extra={"expect": EXPECT_SERVED})
    return client.request("read", f"SELECT {clients.who}")


MUST_SERVE = {"expect": EXPECT_SERVED}
"""``connect_extra`` of a client whose connect a healthy proxy must serve."""

SERVE_WAIT_S = 30.0
"""How long a suite's client waits to be served when the proxy's borrow timeout is not stated: far
above a healthy answer even with hundreds of clients on a small machine, and far below the 120 s a
session-mode pooler keeps a client queued for a backend (PgBouncer's query_wait_timeout)."""
SERVE_MARGIN_S = 10.0


def serve_wait_s(target: Target) -> float:
    """How long a client waits to be connected or answered before it gives up: the stated borrow
    timeout (``--borrow-timeout``) plus a margin, since a proxy must give up on a borrow by then;
    else :data:`SERVE_WAIT_S`."""
    stated = (target.pool_settings or {}).get("connection_borrow_timeout") \
        if target.supports(Capability.POOL_SETTINGS) else None
    return float(stated) + SERVE_MARGIN_S if stated else SERVE_WAIT_S


def held_at_once(target: Target, instances: list[str], wanted: int) -> int:
    """How many of ``wanted`` sessions to hold open at once on ``instances``: all of them, or at most
    the instances' known pool caps added up (a pooler that gives each session a backend of its own
    can serve no more at once; a multiplexing one is not hindered by waves of that size)."""
    caps = pool_caps(target) if instances else None
    total = sum((caps or {}).get(i, 0) for i in instances)
    return min(wanted, total) if total else wanted


def note_roles(target: Target, recorder: Recorder) -> dict[str, Any] | None:
    """Record who is writer and who are readers now (an ``event`` the routing checkers read)."""
    if not target.supports(Capability.DIRECT):
        return None
    instances = target.direct_instances()
    roles = {"writer": next((i["id"] for i in instances if i["role"] == "writer"), None),
             "readers": [i["id"] for i in instances if i["role"] == "reader"]}
    recorder.event("roles", roles)
    return roles


def background_reads(clients: Any, endpoint: str = "writer", *, workers: int,
                     retry_s: float = 0.05, options: dict[str, Any] | None = None) -> Loop:
    """Clients that keep the pool busy until stopped, so unpinned sessions really move between backends.

    A broken connection is replaced by a new client (a new history process, as the history model
    wants one process per connection), never reopened under the old process id.  After a failed
    read or connect a worker pauses ``retry_s``, so a proxy that keeps refusing is not hammered.
    ``options`` are the workers' driver options: a proxy pools MySQL backends apart by the tracked
    settings each driver's login leaves (character set, collation...), so load meant to share a
    session's backends must come from clients of the same kind.  Use as a context manager.
    """
    return Loop(lambda: clients(endpoint, connect=False, request_timeout=CLIENT_REQUEST_TIMEOUT_S,
                                **(options or {})),
                lambda c: serving_read(clients, c), workers=workers, pause=retry_s,
                failure_pause=retry_s, name="background")


# Connections that are not the proxy's client backends, by program (application) name: the proxy's
# own health monitor (the reference proxy names it so), the stand-in's control sessions, and the
# harness's own connections straight to an instance (role and max_connections look-ups, samplers).
NOT_PROXY_BACKENDS = ("reference-proxy-monitor", "standin-control", "aurora-harness-supervisor", DIRECT_PROGRAM)


def proxy_users(target: Target) -> list[str]:
    """The database users the proxy's clients log in as (each endpoint's DSN may name its own)."""
    return sorted({target.credentials_for(e).user for e in [target.writer_endpoint, *target.reader_endpoints]})


def backend_count_sampler(clients: Any, instance_id: str, *, interval_s: float = 0.2) -> Loop:
    """Counts the proxy's backend connections on one instance straight from the server.

    Each sample is an ok ``backend_count`` op (``node`` = the instance, ``value`` = the count), so
    POOL-BACKEND-CAP can hold a count the proxy did not report against a cap it did not report.

    What is counted: every session on the instance of a user the proxy's clients log in as
    (:func:`proxy_users`), except the sampling connection itself and sessions whose program
    (application) name is in :data:`NOT_PROXY_BACKENDS`.  Why so: the reference proxy names its
    own monitor, but a foreign proxy (PgBouncer, pgpool-II) names nothing, and its backends log in
    as the users its clients gave; so a backend is told apart by who it logs in as, and the
    sessions known not to be backends (the harness's direct connections, which all carry
    :data:`~harness.clients.address.DIRECT_PROGRAM`, and the stand-in's control sessions) are left
    out by name.  Anything else logged in to the instance as the same users (an application that
    bypasses the proxy) is counted too: the count can only overstate, so certify where no one else
    uses those users directly.  A server that cannot tell programs apart answers no count: the
    sample's value is then None, an absent sample the checker names, never a number that includes
    connections that are not the proxy's (:meth:`~harness.clients.dialects.base.Dialect.backend_count_sql`).
    ``loop.counts["ok"]`` is the number of samples taken.  Use as a context manager.
    """
    clients.target.require(Capability.DIRECT)
    if not any(i["id"] == instance_id for i in clients.target.direct_instances()):
        raise ValueError(f"no instance {instance_id!r} in the target")
    sql = clients.dialect.backend_count_sql(clients.who, NOT_PROXY_BACKENDS, proxy_users(clients.target))
    return Loop(lambda: clients.direct(instance_id, connect=False, request_timeout=10.0),
                lambda c: c.request("backend_count", sql, result=_count),
                interval=interval_s, pause=interval_s, name="backend-count")


def _count(row: tuple[Any, ...]) -> int | None:
    return None if row[0] is None else int(row[0])


def write_identified(clients: Any, client: Any, table: str, write_id: int) -> Any:
    """Insert one id into ``table`` (op ``write``), learning who served it in the same request."""
    return client.request("write", clients.dialect.insert_identified_sql(table, clients.who), (write_id,),
                          value=write_id, idempotent=False)


REFUSED_ID = -1
"""An id the run tables refuse (their CHECK wants ids >= 0, :meth:`~harness.clients.dialects.base.Dialect.create_ledger_sql`),
so that a write carrying it beside a new id is refused by the server, the new id with it."""


def write_refused(clients: Any, client: Any, table: str, write_id: int) -> Any:
    """A write (op ``write``) of ``write_id`` that fails definitely: one statement inserting it beside
    :data:`REFUSED_ID`, which breaks the table's CHECK, so the server refuses the whole statement (a
    definite failure, :mod:`harness.clients.outcomes`).  ``write_id`` must then never be visible:
    DURABILITY-NO-FAILED-VISIBLE judges these writes."""
    return client.request("write", clients.dialect.insert_identified_sql(table, clients.who, rows=2),
                          (write_id, REFUSED_ID), value=write_id, idempotent=False, extra={"expect": "refused"})


LINGER_S = 0.4
"""How long a lingering write keeps its server session busy: long enough that a fault striking a
writer loop at a random moment most likely finds such a write in flight."""


def write_lingering(clients: Any, client: Any, table: str, write_id: int, *, commit_first: bool,
                    seconds: float = LINGER_S) -> Any:
    """A write (op ``write``) of ``write_id`` that keeps the server busy for ``seconds``, after its
    COMMIT (``commit_first``: a fault then cuts a write that took effect, whose reply is lost) or
    before it (a fault cuts a write that must not take effect).  Either way a fault landing in it
    leaves the client unsure (an indeterminate write), and a proxy that sends it again on another
    backend applies a committed one twice: what DURABILITY-NO-DUPLICATE catches."""
    sql = clients.dialect.lingering_write_sql(table, clients.who, write_id, seconds, commit_first=commit_first)
    return client.request("write", sql, value=write_id, idempotent=False,
                          extra={"linger": "after_commit" if commit_first else "before_commit"})


def read_all_ids(clients: Any, client: Any, table: str) -> Any:
    """Every id in ``table`` as one sorted list (op ``final_read``), with who served it; an id
    written twice is there twice."""
    dialect = clients.dialect
    return client.request("final_read", f"SELECT {dialect.array_agg('id')}, {clients.who} FROM {dialect.quote(table)}",
                          result=lambda row: sorted(int(i) for i in dialect.decode_array(row[0])))


SETUP_DEADLINE_S = 60.0
"""How long :func:`run_table` keeps trying to create its table through the writer endpoint."""


class RunTableError(RuntimeError):
    """The writer endpoint never took a run's table: the test cannot run its workload."""


@contextlib.contextmanager
def run_table(clients, prefix: str) -> Iterator[str]:
    """A table of write ids private to this run, dropped afterwards (best effort).

    The name carries a random suffix, so a second run against the same persistent cluster (or a
    run that died before its cleanup) never collides with earlier rows, and ids can start at 1.
    The table keeps every copy of an id (:meth:`~harness.clients.dialects.base.Dialect.create_ledger_sql`),
    so a write applied twice is seen.  The table is created through the writer endpoint, again every
    half second while it refuses (a proxy still sending writes to a demoted writer after an earlier
    failover), for up to :data:`SETUP_DEADLINE_S`; then :class:`RunTableError`.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    sql = f"{clients.dialect.create_ledger_sql(clients.dialect.quote(name))}; SELECT {clients.who}"
    deadline = time.monotonic() + SETUP_DEADLINE_S
    while True:  # an earlier failover may still be settling: the writer endpoint must take the table
        s = clients("writer")
        created = s.request("setup", sql, idempotent=False).ok
        s.close()
        if created:
            break
        if time.monotonic() >= deadline:
            raise RunTableError(f"the writer endpoint did not create table {name} within {SETUP_DEADLINE_S:g} s")
        time.sleep(0.5)
    try:
        yield name
    finally:
        s = clients("writer", connect_timeout=5.0, request_timeout=10.0)
        s.request("teardown", f"DROP TABLE IF EXISTS {clients.dialect.quote(name)}; SELECT {clients.who}",
                  idempotent=False)
        s.close()
