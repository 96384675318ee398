"""AvailabilityPercentage: the share of the last minute a role was available, as RDS Proxy reports it.

RDS Proxy publishes ``AvailabilityPercentage`` per target role (``READ_WRITE``, ``READ_ONLY``) as
"the percentage of time the target group was available in its role" over one-minute periods.  We
compute it from the monitor's rounds, weighted by time rather than by count, so that the burst of
fast polls during a failover does not outweigh the steady polls around it: each round's verdict
holds until the next round, and the percentage is the share of the window ``[now - 60 s, now]``
covered by "available" verdicts.  Before the first round there is nothing to report (0 %).
"""

from __future__ import annotations

import collections

DEFAULT_WINDOW_SECONDS = 60.0


class AvailabilityWindow:
    """Time-weighted availability of one role over a sliding window, on an injected clock."""

    def __init__(self, window: float = DEFAULT_WINDOW_SECONDS) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive, got {window!r}")
        self.window = window
        self._samples: collections.deque[tuple[float, bool]] = collections.deque()

    def record(self, monotonic: float, available: bool) -> None:
        """The role was (or was not) available from ``monotonic`` until the next record."""
        if self._samples and monotonic < self._samples[-1][0]:
            raise ValueError("availability samples must come in time order")
        self._samples.append((monotonic, available))
        # Keep the last sample that starts before the window: it covers the window's beginning.
        while len(self._samples) >= 2 and self._samples[1][0] <= monotonic - self.window:
            self._samples.popleft()

    def percentage(self, now: float) -> float:
        """Share of the window (or of the time since the first record, if shorter) available, 0..100."""
        if not self._samples:
            return 0.0
        start = max(now - self.window, self._samples[0][0])
        if now <= start:
            return 100.0 if self._samples[-1][1] else 0.0
        available = 0.0
        samples = list(self._samples)
        for n, (at, ok) in enumerate(samples):
            until = samples[n + 1][0] if n + 1 < len(samples) else now
            begin, end = max(at, start), min(until, now)
            if ok and end > begin:
                available += end - begin
        return 100.0 * available / (now - start)
