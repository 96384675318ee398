"""Latency the proxy adds: p50 and p99 of request latency through the proxy minus the same through a
direct connection, in microseconds.

Latencies are completion time minus invocation time of ok requests of the chosen kinds (default
``read``).  Requests through the proxy are those addressed to the ``writer`` or ``reader``
endpoint; the baseline is either ``context.baseline`` (a history of the same workload run
directly) or, when the same history holds both, requests whose endpoint starts with ``direct``.
Percentiles come from HdrHistogram (3 significant digits), the way load tools report them.

These checks need a quiet machine to mean much; a suite runs them in a dedicated phase and keeps
concurrency equal in both runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from harness.checkers.base import CheckContext, Verdict, judge, unknown
from harness.history import History, OpType

PROXY_ENDPOINTS = ("writer", "reader")
LOWEST_US, HIGHEST_US = 1, 3_600_000_000


def latencies_us(history: History, fs: Iterable[str], *, direct: bool | None) -> list[int]:
    """Microsecond latencies of ok requests of kinds ``fs``: through the proxy (``direct=False``),
    direct (``True``) or whatever their endpoint (``None``, for a baseline history)."""
    wanted = set(fs)
    out: list[int] = []
    for inv, comp in history.pairs():
        if comp is None or comp.type is not OpType.OK or inv.f not in wanted:
            continue
        endpoint = inv.endpoint or ""
        if direct is True and not endpoint.startswith("direct"):
            continue
        if direct is False and endpoint not in PROXY_ENDPOINTS:
            continue
        out.append((comp.time - inv.time) // 1000)
    return out


def percentile_us(values: Iterable[int], percentile: float) -> int:
    """The ``percentile`` of ``values`` (clamped to HdrHistogram's range) in microseconds."""
    h = HdrHistogram(LOWEST_US, HIGHEST_US, 3)
    for v in values:
        h.record_value(min(max(int(v), LOWEST_US), HIGHEST_US))
    return int(h.get_value_at_percentile(percentile))


class _AddedLatencyChecker:
    guarantee_id = ""
    percentile = 50.0

    def __init__(self, fs: Iterable[str] = ("read",), min_samples: int = 100) -> None:
        self.fs = tuple(fs)
        self.min_samples = min_samples

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        proxied = latencies_us(history, self.fs, direct=False)
        if context.baseline is not None:
            direct = latencies_us(context.baseline, self.fs, direct=None)
        else:
            direct = latencies_us(history, self.fs, direct=True)
        if not direct:
            return unknown(g, "no direct-connection baseline (context.baseline or direct:* requests)")
        if len(proxied) < self.min_samples or len(direct) < self.min_samples:
            return unknown(g, f"too few samples: {len(proxied)} through the proxy, {len(direct)} direct; "
                              f"need {self.min_samples} of each")
        p_proxy = percentile_us(proxied, self.percentile)
        p_direct = percentile_us(direct, self.percentile)
        added = float(p_proxy - p_direct)
        reason = (f"p{self.percentile:g} {p_proxy} µs through the proxy ({len(proxied)} requests) vs "
                  f"{p_direct} µs direct ({len(direct)} requests)")
        return judge(g, added, reason)


class AddedLatencyP50Checker(_AddedLatencyChecker):
    """LATENCY-ADDED-P50: median latency added by the proxy."""

    guarantee_id = "LATENCY-ADDED-P50"
    percentile = 50.0


class AddedLatencyP99Checker(_AddedLatencyChecker):
    """LATENCY-ADDED-P99: tail latency added by the proxy."""

    guarantee_id = "LATENCY-ADDED-P99"
    percentile = 99.0
