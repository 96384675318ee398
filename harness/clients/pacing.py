"""Paced repetition: run an action at a fixed rate from a few threads until stopped.

New logins at a steady rate (50 a second while a secret rotates, say) are how a rotation's window is
measured: each attempt is one recorded ``connect``, and the rate decides how finely the window is
resolved.  Attempts are scheduled at ``start + k / rate``; a free worker takes the next slot, waits for
its time and runs it, so a slow attempt delays only its own worker, and a run that cannot keep up
says so in :attr:`Paced.late` instead of silently lowering the rate.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from harness.clients.plans import ClientError


class Paced:
    """Calls ``action()`` ``rate`` times a second on ``workers`` threads between :meth:`start` and :meth:`stop`.

    ``action`` records what it does itself; an exception it raises stops nothing but is counted in
    :attr:`errors` (a recording client turns driver errors into history, so this is for bugs)."""

    def __init__(self, action: Callable[[], object], rate: float, *, workers: int = 4, name: str = "paced") -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 10_000:
            raise ClientError(f"rate must be a number of actions per second in (0, 10000], got {rate!r}")
        if not isinstance(workers, int) or not 1 <= workers <= 256:
            raise ClientError(f"workers must be an integer from 1 to 256, got {workers!r}")
        self.action = action
        self.interval = 1.0 / rate
        self.workers = workers
        self.name = name
        self.done = 0
        self.late = 0
        """Attempts that started more than one interval after their slot (the workers could not keep up)."""
        self.errors = 0
        self._slots = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start = 0.0

    def start(self) -> Paced:
        self._start = time.monotonic()
        self._threads = [threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking slots and wait for the attempts in progress."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                slot = next(self._slots)
            due = self._start + slot * self.interval
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            late = time.monotonic() - due > self.interval
            try:
                self.action()
            except Exception:  # noqa: BLE001 - counted; the recording client already kept the outcome
                with self._lock:
                    self.errors += 1
            with self._lock:
                self.done += 1
                self.late += late
