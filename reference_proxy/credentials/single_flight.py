"""Concurrent requests for the same thing share one run of the work that produces it.

When a secret expires or a backend login fails, hundreds of logins may want the same secret read
again at the same moment; one read must serve them all, or a rotation would turn every new connection
into a call to AWS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Runs at most one ``work`` per key at a time; callers that arrive meanwhile await its result.

    A caller that is cancelled stops waiting without cancelling the shared work, which the others
    still need.  A failure reaches every caller of that run; the next call starts afresh.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}
        self.started = 0
        """How many runs were started (for status and tests)."""

    def in_flight(self, key: K) -> bool:
        return key in self._running

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self.started += 1
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved here too, so a run whose callers all left is not reported as lost
