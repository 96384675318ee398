"""Latency: the same sequential reads directly to the writer and through the writer endpoint.

The checkers compare p50 and p99 (HdrHistogram) of both.  One client each, one after the other, so
both see the same machine; the figure is the difference.
"""

from __future__ import annotations

import pytest

from harness.plugin.recording import PgSession
from harness.targets.base import Capability


@pytest.mark.guarantee("LATENCY-ADDED-P50", "LATENCY-ADDED-P99")
def test_added_latency(target, pg_clients, recorder, profile):
    target.require(Capability.DIRECT)
    samples = 400 if profile == "quick" else 2000
    writer = next(i for i in target.direct_instances() if i["role"] == "writer")
    direct_info = {"host": writer["host"], "port": writer["port"], "user": writer["user"],
                   "password": writer["password"], "dbname": writer["database"]}
    with PgSession(recorder, direct_info, f"direct:{writer['id']}") as direct:
        direct.connect()
        for _ in range(samples):
            direct.read()
    proxied = pg_clients("writer")
    for _ in range(samples):
        proxied.read()
    proxied.close()
