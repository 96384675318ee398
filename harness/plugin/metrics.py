"""Reading the proxy's Prometheus text into :class:`~harness.checkers.MetricSample` values.

Only the per-instance gauges the checkers use are kept (``DatabaseConnections`` and friends); the
instance label becomes CloudWatch's ``Target`` dimension.  A background sampler polls during a test
so that a peak in backend connections is seen even if it lasts a fraction of a second.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from harness.checkers import MetricSample

SAMPLED = frozenset({"DatabaseConnections", "DatabaseConnectionsCurrentlyBorrowed",
                     "DatabaseConnectionsCurrentlySessionPinned", "MaxDatabaseConnectionsAllowed"})
_LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str, now_ns: int, names: frozenset[str] = SAMPLED) -> list[MetricSample]:
    """Samples of the wanted metrics; malformed lines are skipped (the text is another program's)."""
    out: list[MetricSample] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or m.group(1) not in names:
            continue
        labels = dict(_LABEL.findall(m.group(2)))
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        dims = {"Target": labels["instance"]} if "instance" in labels else dict(labels)
        out.append(MetricSample(now_ns, m.group(1), value, dims))
    return out


class MetricsSampler:
    """Polls ``fetch()`` every ``interval`` seconds on a thread until stopped; keeps every sample.

    Errors while fetching are counted, not raised: a proxy that stops answering its admin port is
    something the checkers should see as missing samples, not a crash of the test.
    """

    def __init__(self, fetch: Callable[[], str], *, interval: float = 0.25,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._fetch = fetch
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.samples: list[MetricSample] = []
        self.errors = 0

    def sample_once(self) -> None:
        try:
            text = self._fetch()
        except Exception:  # noqa: BLE001 - any failure to read metrics is just a missed sample
            self.errors += 1
            return
        got = parse_samples(text, self._clock())
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
