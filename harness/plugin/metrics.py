"""Sampling the target's proxy metrics during a test, for the checkers.

The target reads its metrics from wherever its proxy reports them and returns
:class:`~harness.metrics.MetricSample` values (``Target.metrics``); this module only decides which
to keep and how often to ask.  Only the per-instance gauges and counters the checkers use are kept
(``DatabaseConnections`` and friends; the backend connection setups requested and failed).  A
background sampler polls during a test so that a peak in backend connections is seen even if it
lasts a fraction of a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from harness.metrics import MetricSample

SAMPLED = frozenset({"DatabaseConnections", "DatabaseConnectionsCurrentlyBorrowed",
                     "DatabaseConnectionsCurrentlySessionPinned", "MaxDatabaseConnectionsAllowed",
                     "DatabaseConnectionsSetupFailed", "DatabaseConnectionRequests"})


class MetricsSampler:
    """Calls ``read(names)`` every ``interval`` seconds on a thread until stopped; keeps every sample.

    ``read`` is a target's :meth:`~harness.targets.base.Target.metrics`.  Errors while reading are
    counted, not raised: a proxy that stops answering its metrics source is something the checkers
    should see as missing samples, not a crash of the test.
    """

    def __init__(self, read: Callable[[Collection[str]], list[MetricSample]], *,
                 names: Collection[str] = SAMPLED, interval: float = 0.25) -> None:
        self._read = read
        self._names = names
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.samples: list[MetricSample] = []
        self.errors = 0

    def sample_once(self) -> None:
        try:
            got = self._read(self._names)
        except Exception:  # noqa: BLE001 - any failure to read metrics is just a missed sample
            self.errors += 1
            return
        with self._lock:
            self.samples.extend(got)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample_once()

    def start(self) -> MetricsSampler:
        self.sample_once()
        self._thread = threading.Thread(target=self._loop, name="metrics-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[MetricSample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample_once()
        with self._lock:
            return list(self.samples)
