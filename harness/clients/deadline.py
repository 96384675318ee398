"""Request deadlines: give up on a request that gets no answer by shutting its socket down.

A silent network fault (a blackhole) leaves a request waiting forever: no byte and no reset
arrives.  Cancelling through the database is no help, since the cancel request would travel the
same dead path.  Shutting the socket down makes the driver raise at once; the client records the
request with the code ``timeout`` (Jepsen's ``client/timeout``) and the connection is finished.

One watcher thread serves every deadline of the process: arming a deadline creates no thread, so
the synchronous clients stay cheap per request and work unchanged where threads are green
(gevent, as Locust uses it).  The watcher acts while the calling thread is blocked in the driver.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable

from harness.clients.plans import ClientError


class _Watcher:
    """Fires due deadlines in the order they fall due; started on first use."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, SocketDeadline, int, Callable[[], int | None]]] = []
        self._serial = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, at: float, deadline: SocketDeadline, generation: int,
                 fileno: Callable[[], int | None]) -> None:
        with self._cond:
            heapq.heappush(self._due, (at, next(self._serial), deadline, generation, fileno))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="request-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, deadline, generation, fileno = heapq.heappop(self._due)
            deadline._fire(generation, fileno)


_WATCHER = _Watcher()


class SocketDeadline:
    """Gives up on a request that takes longer than ``seconds`` (``None``: never).

    ``arm`` and ``disarm`` bracket one request; ``fired`` says whether the last armed request was
    cut off, so the client can record it as a timeout.
    """

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not 0 < seconds <= 86400):
            raise ClientError(f"a request timeout must be a positive number of seconds, got {seconds!r}")
        self.seconds = seconds
        self._lock = threading.Lock()
        self._generation = 0
        self._armed = False
        self.fired = False

    def arm(self, fileno: Callable[[], int | None]) -> None:
        self.fired = False
        if self.seconds is None:
            return
        with self._lock:
            self._generation += 1
            self._armed = True
            generation = self._generation
        _WATCHER.schedule(time.monotonic() + self.seconds, self, generation, fileno)

    def disarm(self) -> None:
        with self._lock:
            self._armed = False

    def _fire(self, generation: int, fileno: Callable[[], int | None]) -> None:
        with self._lock:
            if not self._armed or generation != self._generation:
                return
            fd = fileno()
            if fd is None or fd < 0:
                return
            self.fired = True
            shutdown_socket(fd)


def shutdown_socket(fd: int) -> None:
    """Shut down the socket behind ``fd`` in both directions without closing the owner's fd."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()
