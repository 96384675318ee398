"""Latency: the same sequential reads directly to the writer and through the writer endpoint.

The checkers compare p50 and p99 (HdrHistogram) of both.  One client each, one after the other, so
both see the same machine; the figure is the difference.
"""

from __future__ import annotations

import pytest

from harness.targets.base import Capability
from suites.workloads import serving_read


@pytest.mark.guarantee("LATENCY-ADDED-P50", "LATENCY-ADDED-P99")
def test_added_latency(target, clients, profile):
    target.require(Capability.DIRECT)
    samples = 400 if profile == "quick" else 2000
    writer = next(i for i in target.direct_instances() if i["role"] == "writer")
    with clients.direct(writer["id"]) as direct:
        for _ in range(samples):
            serving_read(clients, direct)
    proxied = clients("writer")
    for _ in range(samples):
        serving_read(clients, proxied)
    proxied.close()
