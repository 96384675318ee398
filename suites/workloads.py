"""Workload helpers shared by the suites: run many recorded clients at once, note the topology."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, Self

from harness.history import OpType, Recorder
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
    clients' sessions need a ``request_timeout`` (:data:`CLIENT_REQUEST_TIMEOUT_S`) for abandoned
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


def note_roles(target: Target, recorder: Recorder) -> dict[str, Any] | None:
    """Record who is writer and who are readers now (an ``event`` the routing checkers read)."""
    if not target.supports(Capability.DIRECT):
        return None
    instances = target.direct_instances()
    roles = {"writer": next((i["id"] for i in instances if i["role"] == "writer"), None),
             "readers": [i["id"] for i in instances if i["role"] == "reader"]}
    recorder.event("roles", roles)
    return roles


class Background:
    """Clients that keep the pool busy until stopped, so unpinned sessions really move between backends.

    ``make_session`` must return a new, connected session each call: a broken connection is
    replaced by a new session (a new history process, as the history model wants one process per
    connection), never reopened under the old process id.  After a failed read or connect the
    client pauses ``retry_s``, so a proxy that keeps refusing is not hammered by a spinning loop.
    """

    def __init__(self, make_session: Callable[[], Any], clients: int, *, retry_s: float = 0.05) -> None:
        self._make = make_session
        self._count = clients
        self.retry_s = retry_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _pause(self) -> None:
        self._stop.wait(self.retry_s)

    def _loop(self) -> None:
        session = self._make()
        try:
            while not self._stop.is_set():
                if session.conn is None:
                    session.close()
                    session = self._make()
                    if session.conn is None:
                        self._pause()
                        continue
                if session.read().type.value != "ok":
                    self._pause()
        finally:
            session.close()

    def __enter__(self) -> Self:
        for n in range(self._count):
            t = threading.Thread(target=self._loop, name=f"background-{n}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


# Connections that are not the proxy's client backends: the proxy's own health monitor (the
# reference proxy names it so) and the stand-in's control sessions.
NOT_PROXY_BACKENDS = ("reference-proxy-monitor", "standin-control", "aurora-harness-supervisor")

BACKEND_COUNT_SQL = (
    "SELECT count(*), {who} FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "AND usename = current_user AND pid <> pg_backend_pid() "
    "AND coalesce(application_name, '') NOT IN ({names})")


class BackendCountSampler:
    """Counts the proxy's backend connections on one instance straight from ``pg_stat_activity``.

    Each sample is an ok ``backend_count`` op (``node`` = the instance, ``value`` = the count), so
    POOL-BACKEND-CAP can hold a count the proxy did not report against a cap it did not report.
    The sampling connection goes directly to the instance and leaves itself out of the count.
    """

    def __init__(self, target: Target, recorder: Recorder, instance_id: str, *, interval_s: float = 0.2) -> None:
        from harness.plugin.recording import WHO

        target.require(Capability.DIRECT)
        inst = next((i for i in target.direct_instances() if i["id"] == instance_id), None)
        if inst is None:
            raise ValueError(f"no instance {instance_id!r} in the target")
        self._conninfo = {"host": inst["host"], "port": inst["port"], "user": inst["user"],
                          "password": inst["password"], "dbname": inst["database"]}
        self._recorder = recorder
        self._endpoint = f"direct:{instance_id}"
        self._interval = interval_s
        names = ", ".join(f"'{n}'" for n in NOT_PROXY_BACKENDS)
        self._sql = BACKEND_COUNT_SQL.format(who=WHO, names=names)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0

    def _loop(self) -> None:
        from harness.plugin.recording import PgSession

        session = PgSession(self._recorder, self._conninfo, self._endpoint, request_timeout=10.0)
        try:
            while not self._stop.is_set():
                if session.conn is None:
                    session.close()
                    session = PgSession(self._recorder, self._conninfo, self._endpoint, request_timeout=10.0)
                    session.connect()
                    if session.conn is None:
                        self._stop.wait(self._interval)
                        continue
                op = session.request("backend_count", self._sql, result=lambda row: int(row[0]))
                if op.type is OpType.OK:
                    self.samples += 1
                self._stop.wait(self._interval)
        finally:
            session.close()

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._loop, name="backend-count", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
