"""Throughput and latency of a load run before, during and after its faults, from the merged history.

Locust's own numbers cover the whole run in rounded buckets; what a chaos run is about is how the
requests fared around the fault.  :func:`phases` cuts the history at each fault window's start and end
(``before`` / ``during <fault>`` / ``after``; one ``whole run`` phase without a fault) and gives each
phase its client requests completed (the harness's final read left out), failures (``fail`` or
``info``), requests per second, and p50/p99 latency from the recorded nanoseconds.  Pure: a history in,
rows out.
"""

from __future__ import annotations

import dataclasses
import math

from harness.history import History, Op, OpType


@dataclasses.dataclass(frozen=True)
class PhaseStats:
    name: str
    seconds: float
    requests: int
    failures: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[rank]


def phases(history: History, *, exclude_prefix: str = "final-read") -> list[PhaseStats]:
    """The run cut at every fault window's start and end (see the module docstring)."""
    pairs = [(i, c) for i, c in history.pairs()
             if c is not None and not str(i.process).startswith(exclude_prefix)]
    if not pairs:
        return []
    first, last = min(i.time for i, _ in pairs), max(c.time for _, c in pairs)
    cuts: list[tuple[int, str]] = []
    for w in history.fault_windows():
        cuts.append((w.start, f"during {w.name}"))
        cuts.append((w.end if w.end is not None else last, "after"))
    bounds = [(first, "before" if cuts else "whole run"), *sorted(cuts)]
    out = []
    for n, (start, name) in enumerate(bounds):
        end = bounds[n + 1][0] if n + 1 < len(bounds) else last
        out.append(_stats(name, start, end, [(i, c) for i, c in pairs if start <= c.time < end
                                             or (n + 1 == len(bounds) and c.time == end)]))
    return out


def _stats(name: str, start: int, end: int, pairs: list[tuple[Op, Op]]) -> PhaseStats:
    seconds = max(end - start, 0) / 1e9
    latencies = sorted((c.time - i.time) / 1e6 for i, c in pairs)
    failures = sum(1 for _, c in pairs if c.type is not OpType.OK)
    return PhaseStats(name, round(seconds, 3), len(pairs), failures,
                      round(len(pairs) / seconds, 1) if seconds > 0 else 0.0,
                      _round(_percentile(latencies, 0.5)), _round(_percentile(latencies, 0.99)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def render(rows: list[PhaseStats]) -> str:
    header = f"{'phase':<18} {'seconds':>8} {'requests':>9} {'failed':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        p50 = "-" if r.p50_ms is None else f"{r.p50_ms:.2f}"
        p99 = "-" if r.p99_ms is None else f"{r.p99_ms:.2f}"
        lines.append(f"{r.name:<18} {r.seconds:>8.2f} {r.requests:>9} {r.failures:>7} {r.rps:>8.1f} {p50:>8} {p99:>8}")
    return "\n".join(lines)
