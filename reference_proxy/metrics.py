"""The proxy's metrics, named and meant as RDS Proxy's CloudWatch metrics.

Every metric the proxy may emit is declared once in :data:`METRICS`, with its kind, its labels and
the meaning RDS Proxy documents for it, so that a harness reading ``/metrics`` from the reference
proxy and a harness reading CloudWatch for a real proxy compare the same quantities.  Emitting a
name that is not declared, or with other labels than declared, raises :class:`MetricsError`: a
typo must fail a test, not create a new silent series.

Kinds follow the meaning: current amounts (connections open, borrowed, pinned) are gauges, things
that happen (requests, failures) are counters, latencies are histograms in seconds (CloudWatch
reports microseconds; :meth:`ProxyMetrics.snapshot` adds milliseconds for people).

All series live in a private ``CollectorRegistry`` owned by one :class:`ProxyMetrics`, never in
prometheus_client's global registry, so that several proxies (or tests) in one process do not mix.

The series themselves are plain Python numbers (:class:`BoundCounter`, :class:`BoundGauge`,
:class:`BoundHistogram`) that the
registry reads through one collector when it is scraped.  prometheus_client's own metric objects
take a lock on every update and walk every bucket of a histogram; a query updates four series, and
that showed in the per-query profile.  The proxy updates its metrics from one event loop thread only.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from reference_proxy.contracts import ProxyError

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets in seconds: from well below a millisecond (a pooled borrow) up to the
# 300-second maximum ConnectionBorrowTimeout.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class MetricsError(ProxyError):
    """A metric name that is not declared, or labels that do not match its declaration."""


class Kind(str, enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class MetricSpec:
    """One declared metric: its CloudWatch name, kind, label names and documented meaning."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    meaning: str


_ENDPOINT = ("endpoint",)
_INSTANCE = ("instance",)
_TARGET_ROLE = ("target_role",)  # READ_WRITE or READ_ONLY, as RDS's TargetRole dimension


def _declare(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {spec.name: spec for spec in specs}


METRICS: dict[str, MetricSpec] = _declare(
    # Client side, per proxy endpoint.
    MetricSpec("ClientConnections", Kind.GAUGE, _ENDPOINT,
               "The current number of client connections."),
    MetricSpec("ClientConnectionsReceived", Kind.COUNTER, _ENDPOINT,
               "The number of client connection requests received."),
    MetricSpec("ClientConnectionsSetupSucceeded", Kind.COUNTER, _ENDPOINT,
               "The number of client connections successfully established with any authentication "
               "mechanism, with or without TLS."),
    MetricSpec("ClientConnectionsSetupFailedAuth", Kind.COUNTER, _ENDPOINT,
               "The number of client connection attempts that failed because of misconfigured "
               "authentication or TLS."),
    MetricSpec("ClientConnectionsClosed", Kind.COUNTER, _ENDPOINT,
               "The number of client connections closed."),
    MetricSpec("ClientConnectionsTLS", Kind.GAUGE, _ENDPOINT,
               "The current number of client connections that use TLS."),
    MetricSpec("ClientConnectionsNoTLS", Kind.GAUGE, _ENDPOINT,
               "The current number of client connections that do not use TLS."),
    MetricSpec("ClientConnectionsRefused", Kind.COUNTER, ("endpoint", "reason"),
               "Reference proxy only, not an RDS Proxy metric: the number of client connections turned "
               "away before login, by reason: unauthenticated_limit (proxy.max_unauthenticated_clients "
               "were setting up already), descriptors (the process ran out of file descriptors) or "
               "accept_error (accepting failed for another reason)."),
    MetricSpec("QueryRequests", Kind.COUNTER, _ENDPOINT,
               "The number of queries received; a query holding several statements counts once."),
    MetricSpec("QueryRequestsTLS", Kind.COUNTER, _ENDPOINT,
               "The number of queries received over TLS connections."),
    MetricSpec("QueryRequestsNoTLS", Kind.COUNTER, _ENDPOINT,
               "The number of queries received over non-TLS connections."),
    MetricSpec("QueryResponseLatency", Kind.HISTOGRAM, _ENDPOINT,
               "Seconds from receiving a query request to the proxy answering it."),
    MetricSpec("QueryDatabaseResponseLatency", Kind.HISTOGRAM, _INSTANCE,
               "Seconds the database took to answer a query."),
    # Database side, per target instance (owned by the pool).
    MetricSpec("DatabaseConnections", Kind.GAUGE, _INSTANCE,
               "The current number of database connections."),
    MetricSpec("DatabaseConnectionRequests", Kind.COUNTER, _INSTANCE,
               "The number of requests to create a database connection."),
    MetricSpec("DatabaseConnectionsSetupSucceeded", Kind.COUNTER, _INSTANCE,
               "The number of database connections successfully established."),
    MetricSpec("DatabaseConnectionsSetupFailed", Kind.COUNTER, _INSTANCE,
               "The number of database connection requests that failed."),
    MetricSpec("DatabaseConnectionsCurrentlyBorrowed", Kind.GAUGE, _INSTANCE,
               "The current number of database connections in the borrow state."),
    MetricSpec("DatabaseConnectionsCurrentlyInTransaction", Kind.GAUGE, _INSTANCE,
               "The current number of database connections in a transaction."),
    MetricSpec("DatabaseConnectionsCurrentlySessionPinned", Kind.GAUGE, _INSTANCE,
               "The current number of database connections pinned because of operations in client "
               "requests that change session state."),
    MetricSpec("DatabaseConnectionsBorrowLatency", Kind.HISTOGRAM, _INSTANCE,
               "Seconds it takes the proxy to obtain a database connection for a client."),
    MetricSpec("MaxDatabaseConnectionsAllowed", Kind.GAUGE, _INSTANCE,
               "The maximum number of database connections allowed."),
    # Target group, per target role (owned by the topology monitor).
    MetricSpec("AvailabilityPercentage", Kind.GAUGE, _TARGET_ROLE,
               "The percentage of time in the last minute the target group was available in the role "
               "of the dimension (READ_WRITE: one accepted writer; READ_ONLY: at least one reader)."),
    MetricSpec("TopologyRoleChanges", Kind.COUNTER, _INSTANCE,
               "Reference proxy only, not an RDS Proxy metric: the number of times the topology monitor "
               "changed this instance's role (writer, reader, unknown)."),
)


class BoundCounter:
    """One counter series: a plain number, checked once when it was bound."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, value: float = 1) -> None:
        if value < 0:
            raise MetricsError(f"a counter cannot decrease (got {value})")
        self.value += value


class BoundGauge:
    """One gauge series: a plain number, checked once when it was bound."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def add(self, delta: float) -> None:
        self.value += delta

    def set(self, value: float) -> None:
        self.value = float(value)


class BoundHistogram:
    """One latency histogram series: a count per bucket (not cumulative; the exposition sums
    them) and the sum of the observations."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        if seconds < 0:
            seconds = 0.0  # a clock step backwards counts as zero, never as a negative latency
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # bucket ``le`` holds seconds <= le
        self.total += seconds


_BUCKET_BOUNDS = tuple(floatToGoString(b) for b in LATENCY_BUCKETS) + ("+Inf",)


class _SeriesCollector:
    """Shows every declared metric's series to the registry, in prometheus_client's families."""

    def __init__(self, series: dict[str, dict[tuple[str, ...], Any]]) -> None:
        self._series = series

    def collect(self) -> Iterator[Metric]:
        for spec in METRICS.values():
            children = self._series[spec.name]
            family: Any
            if spec.kind is Kind.HISTOGRAM:
                family = HistogramMetricFamily(spec.name, spec.meaning, labels=spec.labels)
                for values, child in list(children.items()):
                    cumulative, buckets = 0, []
                    for bound, count in zip(_BUCKET_BOUNDS, child.counts, strict=True):
                        cumulative += count
                        buckets.append((bound, cumulative))
                    family.add_metric(list(values), buckets, child.total)
            else:
                family = (CounterMetricFamily if spec.kind is Kind.COUNTER else GaugeMetricFamily)(
                    spec.name, spec.meaning, labels=spec.labels)
                for values, child in list(children.items()):
                    family.add_metric(list(values), child.value)
            yield family


class ProxyMetrics:
    """All metric series of one proxy, over its own registry.

    Use :meth:`inc` for counters, :meth:`gauge_add` / :meth:`gauge_set` for gauges and
    :meth:`observe` for latency histograms; labels are keyword arguments and must be exactly the
    declared ones (values are turned into strings).  Code that counts on every query binds its
    series once with :meth:`counter` / :meth:`histogram` and skips the lookups.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Every metric's series by label values, in the declared label order.
        self._series: dict[str, dict[tuple[str, ...], Any]] = {name: {} for name in METRICS}
        self.registry.register(_SeriesCollector(self._series))
        # Validated series by (name, kind, label items as passed): a series is validated once and
        # then found with one dict lookup.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, name: str, kind: Kind, labels: dict[str, object]) -> Any:
        cache_key = (name, kind, *labels.items())
        try:
            return self._children[cache_key]
        except KeyError:
            pass
        except TypeError:  # an unhashable label value: validate and convert it the slow way
            return self._validated_child(name, kind, labels)
        child = self._children[cache_key] = self._validated_child(name, kind, labels)
        return child

    def _validated_child(self, name: str, kind: Kind, labels: dict[str, object]) -> Any:
        spec = METRICS.get(name)
        if spec is None:
            raise MetricsError(f"unknown metric {name!r}; declared metrics are: {', '.join(sorted(METRICS))}")
        if spec.kind is not kind:
            raise MetricsError(f"metric {name!r} is a {spec.kind.value}, not a {kind.value}")
        if set(labels) != set(spec.labels):
            raise MetricsError(f"metric {name!r} takes labels {list(spec.labels)}, got {sorted(labels)}")
        values = tuple(str(labels[label]) for label in spec.labels)
        children = self._series[name]
        child = children.get(values)
        if child is None:
            child = children[values] = {Kind.COUNTER: BoundCounter, Kind.GAUGE: BoundGauge,
                                        Kind.HISTOGRAM: BoundHistogram}[kind]()
        return child

    def inc(self, name: str, value: float = 1, **labels: object) -> None:
        """Add ``value`` (≥ 0) to a counter."""
        if value < 0:
            raise MetricsError(f"counter {name!r} cannot decrease (got {value})")
        self._child(name, Kind.COUNTER, labels).inc(value)

    def observe(self, name: str, seconds: float, **labels: object) -> None:
        """Record one latency, in seconds, in a histogram."""
        self._child(name, Kind.HISTOGRAM, labels).observe(seconds)

    def gauge_add(self, name: str, delta: float, **labels: object) -> None:
        """Move a gauge up (positive ``delta``) or down (negative)."""
        self._child(name, Kind.GAUGE, labels).add(delta)

    def gauge_set(self, name: str, value: float, **labels: object) -> None:
        """Set a gauge to an absolute value."""
        self._child(name, Kind.GAUGE, labels).set(value)

    def counter(self, name: str, **labels: object) -> BoundCounter:
        """A counter series checked once, for code that counts on every query."""
        return self._child(name, Kind.COUNTER, labels)

    def gauge(self, name: str, **labels: object) -> BoundGauge:
        """A gauge series checked once, for code that moves it on every transaction."""
        return self._child(name, Kind.GAUGE, labels)

    def histogram(self, name: str, **labels: object) -> BoundHistogram:
        """A latency histogram series checked once, for code that observes on every query."""
        return self._child(name, Kind.HISTOGRAM, labels)

    def value(self, name: str, **labels: object) -> float:
        """The current value of a counter or gauge, or the observation count of a histogram.

        Meant for tests and the status document; a series never touched reads as 0.
        """
        spec = METRICS.get(name)
        if spec is None:
            raise MetricsError(f"unknown metric {name!r}")
        wanted = {k: str(v) for k, v in labels.items()}
        sample_name = {Kind.COUNTER: name + "_total", Kind.GAUGE: name,
                       Kind.HISTOGRAM: name + "_count"}[spec.kind]
        total = 0.0
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                    total += sample.value
        return total

    def prometheus_text(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every declared metric as plain JSON-able data.

        ``{name: {"kind", "meaning", "series": [{"labels": {...}, ...}]}}`` where a counter or gauge
        series has ``value`` and a histogram series has ``count``, ``sum_seconds`` and
        ``average_ms``.
        """
        result: dict[str, dict[str, Any]] = {
            spec.name: {"kind": spec.kind.value, "meaning": spec.meaning, "series": []}
            for spec in METRICS.values()}
        histograms: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
        for family in self.registry.collect():
            spec = METRICS.get(family.name)
            if spec is None:
                continue
            for sample in family.samples:
                labels = dict(sample.labels)
                if spec.kind is Kind.HISTOGRAM:
                    if sample.name.endswith("_bucket") or sample.name.endswith("_created"):
                        continue
                    key = (spec.name, tuple(sorted(labels.items())))
                    entry = histograms.setdefault(key, {"labels": labels, "count": 0, "sum_seconds": 0.0})
                    if sample.name.endswith("_count"):
                        entry["count"] = int(sample.value)
                    elif sample.name.endswith("_sum"):
                        entry["sum_seconds"] = sample.value
                elif sample.name in (spec.name, spec.name + "_total"):
                    result[spec.name]["series"].append({"labels": labels, "value": sample.value})
        for (name, _), entry in histograms.items():
            entry["average_ms"] = (entry["sum_seconds"] / entry["count"] * 1000.0) if entry["count"] else 0.0
            result[name]["series"].append(entry)
        return result
