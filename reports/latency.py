"""Request latencies read back from a run's histories: what the plots draw and ``compare`` sets side
by side.  One definition of "a client request" and of a percentile, so the two always agree."""

from __future__ import annotations

import math
from collections import defaultdict

from harness.history import History, Op, OpType

HARNESS_PROCESSES = frozenset({"nemesis", "harness"})
"""The processes of fault and observation records: not clients."""


def client_pairs(history: History) -> list[tuple[Op, Op]]:
    """Completed client requests (invocation, completion) of a history."""
    return [(inv, comp) for inv, comp in history.pairs()
            if comp is not None and inv.process not in HARNESS_PROCESSES]


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def request_latencies_ms(histories: list[History]) -> dict[str, list[float]]:
    """Latency in ms of every successful request per endpoint, over several histories.  Connects are
    left out: a connection storm would drown the requests' latency in login time."""
    out: dict[str, list[float]] = defaultdict(list)
    for history in histories:
        for inv, comp in client_pairs(history):
            if comp.type is OpType.OK and inv.f != "connect":
                out[inv.endpoint or "-"].append((comp.time - inv.time) / 1e6)
    return dict(out)
