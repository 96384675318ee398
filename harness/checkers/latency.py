"""Latency the proxy adds: a percentile of request latency through the proxy minus the same through a
direct connection, in microseconds, counting only what the samples show beyond their own spread.

Latencies are completion time minus invocation time of ok requests of the chosen kinds (default
``read``).  Requests through the proxy are those addressed to the ``writer`` or ``reader``
endpoint; the baseline is either ``context.baseline`` (a history of the same workload run
directly) or, when the same history holds both, requests whose endpoint starts with ``direct``.

Why the figure is not simply "proxied p99 minus direct p99".  On a small shared machine the direct
baseline has a wide spread of its own: its p99 moves by milliseconds from one run to the next, so a
plain difference either fails a sound proxy on a noisy run or, with a bound loose enough to
survive the noise (the old 20 ms), passes a proxy that adds a constant 10 ms to every request.  Two
things make the comparison fair:

* the suite interleaves the samples (one direct request, one proxied request, and so on, from one
  thread), so a burst of load from elsewhere on the machine lands on both series alike instead of
  on whichever ran during it;
* each percentile is taken with its uncertainty.  Whatever the shape of the distribution, the
  number of samples below its true ``q``-quantile is Binomial(n, q), so the true quantile lies
  between the order statistics of ranks ``n·q ∓ z·√(n·q·(1−q))`` (one-sided 95 % each, ``z`` =
  1.645): a distribution-free band that is wide exactly where the baseline is noisy.  The figure
  is the lower end of the proxied band minus the upper end of the direct band, floored at zero:
  the latency the proxy adds that the samples prove, beyond the baseline's own spread.

A proxy that adds a constant ``c`` shifts every proxied order statistic by ``c``, so its figure
is ``c`` less the two bands' widths, which shrink as the samples grow; ``min_samples`` keeps at
least ten samples expected beyond a p99 (1,000 samples) so its band is narrow where the tail is
dense.  A sound proxy's figure is zero unless its own cost stands out of the noise.  The reason
also gives the plain percentiles (HdrHistogram, 3 significant digits, as load tools report them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import NormalDist

from hdrh.histogram import HdrHistogram

from harness.checkers.base import CheckContext, Verdict, judge, unknown
from harness.history import History, OpType

PROXY_ENDPOINTS = ("writer", "reader")
LOWEST_US, HIGHEST_US = 1, 3_600_000_000
CONFIDENCE = 0.95
"""One-sided confidence of each percentile's band (so both hold together at least 90 % of the time)."""


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


def quantile_band_us(values: Sequence[int], percentile: float,
                     confidence: float = CONFIDENCE) -> tuple[int, int]:
    """(lower, upper) distribution-free confidence bounds of the ``percentile`` of the population
    ``values`` were drawn from: order statistics around rank ``n·q``, each bound one-sided at
    ``confidence`` (normal approximation of the binomial count of samples below the quantile)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("no values")
    q = percentile / 100.0
    z = NormalDist().inv_cdf(confidence)
    half = z * math.sqrt(n * q * (1.0 - q))
    lo = min(max(math.floor(n * q - half), 1), n)   # 1-based ranks
    hi = min(max(math.ceil(n * q + half), 1), n)
    return ordered[lo - 1], ordered[hi - 1]


class _AddedLatencyChecker:
    guarantee_id = ""
    percentile = 50.0

    min_samples = 100

    def __init__(self, fs: Iterable[str] = ("read",), min_samples: int | None = None) -> None:
        self.fs = tuple(fs)
        if min_samples is not None:
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
        proxy_lo, proxy_hi = quantile_band_us(proxied, self.percentile)
        direct_lo, direct_hi = quantile_band_us(direct, self.percentile)
        shown = float(max(0, proxy_lo - direct_hi))
        reason = (f"p{self.percentile:g} {p_proxy} µs through the proxy ({len(proxied)} requests, band "
                  f"{proxy_lo}-{proxy_hi} µs) vs {p_direct} µs direct ({len(direct)} requests, band "
                  f"{direct_lo}-{direct_hi} µs): added {p_proxy - p_direct} µs, of which {shown:g} µs stand "
                  f"out of the baseline's spread")
        return judge(g, shown, reason)


class AddedLatencyP50Checker(_AddedLatencyChecker):
    """LATENCY-ADDED-P50: median latency added by the proxy."""

    guarantee_id = "LATENCY-ADDED-P50"
    percentile = 50.0


class AddedLatencyP99Checker(_AddedLatencyChecker):
    """LATENCY-ADDED-P99: tail latency added by the proxy."""

    guarantee_id = "LATENCY-ADDED-P99"
    percentile = 99.0
    min_samples = 1000
