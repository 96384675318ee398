"""Workload helpers shared by the suites: run many recorded clients at once, note the topology."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, Self

from harness.history import Recorder
from harness.targets.base import Capability, Target


def run_clients(count: int, body: Callable[[int], Any], *, max_workers: int | None = None,
                timeout: float = 240.0) -> list[Any]:
    """Run ``body(i)`` for ``i`` in ``range(count)`` on threads; re-raise the first error.

    Threads, not processes: the clients mostly wait on sockets, and they share one recorder.
    """
    results: list[Any] = [None] * count
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers or count,
                                               thread_name_prefix="client") as pool:
        futures = {pool.submit(body, i): i for i in range(count)}
        done, not_done = concurrent.futures.wait(futures, timeout=timeout)
        for f in not_done:
            f.cancel()
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {count} clients were still running after {timeout:.0f}s")
        for f in done:
            results[futures[f]] = f.result()
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
    """Clients that keep the pool busy until stopped, so unpinned sessions really move between backends."""

    def __init__(self, make_session: Callable[[], Any], clients: int) -> None:
        self._make = make_session
        self._count = clients
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _loop(self) -> None:
        session = self._make()
        try:
            while not self._stop.is_set():
                if session.read().type.value != "ok" and session.conn is None:
                    session.connect()
                    self._stop.wait(0.05)
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
