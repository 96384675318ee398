"""Latency: the same sequential reads directly to the writer and through the writer endpoint, interleaved.

The checkers compare p50 and p99 of both, each with its distribution-free confidence band, and count
only what stands out of the baseline's own spread (:mod:`harness.checkers.latency`).  One thread
alternates a direct read and a proxied read, so load from elsewhere on the machine falls on both
series alike.  The p99 needs at least 1,000 samples of each to be stable (ten or more expected
beyond it); the quick profile takes 2,000, which keeps the p99's band narrow enough, on a shared
2-core machine whose direct p99 is 5-7 ms, for a proxy that adds a constant 10 ms to stand out of
it (a few seconds of reads); the full profile takes more.
"""

from __future__ import annotations

import pytest

from harness.targets.base import Capability
from suites.workloads import serving_read

WARM_UP = 20
"""Reads of each kind before the measured ones (opens the pooled backend and the direct session's caches)."""


@pytest.mark.guarantee("LATENCY-ADDED-P50", "LATENCY-ADDED-P99")
def test_added_latency(target, clients, profile):
    target.require(Capability.DIRECT)
    samples = 2000 if profile == "quick" else 5000
    writer = next(i for i in target.direct_instances() if i["role"] == "writer")
    with clients.direct(writer["id"]) as direct:
        proxied = clients("writer")
        try:
            for _ in range(WARM_UP):
                direct.request("warm_up", f"SELECT {clients.who}")  # not a "read": the checkers skip it
                proxied.request("warm_up", f"SELECT {clients.who}")
            for _ in range(samples):
                serving_read(clients, direct)
                serving_read(clients, proxied)
        finally:
            proxied.close()
