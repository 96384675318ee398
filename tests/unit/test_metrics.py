"""CloudWatch-named metrics: declared once, strict about names and labels, exported two ways."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reference_proxy.metrics import METRICS, Kind, MetricsError, ProxyMetrics

REQUIRED = ["ClientConnections", "ClientConnectionsReceived", "ClientConnectionsSetupSucceeded",
            "ClientConnectionsSetupFailedAuth", "ClientConnectionsTLS", "DatabaseConnections",
            "DatabaseConnectionRequests", "DatabaseConnectionsSetupFailed",
            "DatabaseConnectionsCurrentlyBorrowed", "DatabaseConnectionsCurrentlyInTransaction",
            "DatabaseConnectionsCurrentlySessionPinned", "DatabaseConnectionsBorrowLatency",
            "MaxDatabaseConnectionsAllowed", "QueryRequests", "QueryResponseLatency",
            "QueryDatabaseResponseLatency"]


def test_every_rds_metric_is_declared_with_a_meaning():
    for name in REQUIRED:
        assert name in METRICS, name
        assert METRICS[name].meaning.endswith(".")
    assert METRICS["DatabaseConnections"].kind is Kind.GAUGE
    assert METRICS["DatabaseConnectionRequests"].kind is Kind.COUNTER
    assert METRICS["QueryResponseLatency"].kind is Kind.HISTOGRAM
    assert METRICS["DatabaseConnectionsBorrowLatency"].labels == ("instance",)
    assert METRICS["ClientConnections"].labels == ("endpoint",)


def test_unknown_names_wrong_kinds_and_labels_raise():
    m = ProxyMetrics()
    with pytest.raises(MetricsError, match="unknown metric"):
        m.inc("ClientConnectionz", endpoint="default")
    with pytest.raises(MetricsError, match="is a gauge"):
        m.inc("ClientConnections", endpoint="default")
    with pytest.raises(MetricsError, match="labels"):
        m.inc("QueryRequests", instance="i1")
    with pytest.raises(MetricsError):
        m.inc("QueryRequests", -1, endpoint="default")


def test_values_and_prometheus_text():
    m = ProxyMetrics()
    m.inc("QueryRequests", endpoint="default")
    m.inc("QueryRequests", 2, endpoint="default")
    m.gauge_add("ClientConnections", 3, endpoint="reader")
    m.gauge_add("ClientConnections", -1, endpoint="reader")
    m.gauge_set("MaxDatabaseConnectionsAllowed", 45, instance="i1")
    m.observe("QueryResponseLatency", 0.004, endpoint="default")
    assert m.value("QueryRequests", endpoint="default") == 3
    assert m.value("ClientConnections", endpoint="reader") == 2
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(m.prometheus_text().decode())
               for s in family.samples}
    assert samples[("QueryRequests_total", (("endpoint", "default"),))] == 3
    assert samples[("MaxDatabaseConnectionsAllowed", (("instance", "i1"),))] == 45
    assert samples[("QueryResponseLatency_count", (("endpoint", "default"),))] == 1


def test_snapshot_is_plain_data_with_milliseconds():
    m = ProxyMetrics()
    m.observe("DatabaseConnectionsBorrowLatency", 0.002, instance="i1")
    m.observe("DatabaseConnectionsBorrowLatency", 0.004, instance="i1")
    m.gauge_set("DatabaseConnections", 7, instance="i1")
    snap = m.snapshot()
    assert set(snap) == set(METRICS)
    [series] = snap["DatabaseConnectionsBorrowLatency"]["series"]
    assert series["count"] == 2 and series["average_ms"] == pytest.approx(3.0)
    assert snap["DatabaseConnections"]["series"] == [{"labels": {"instance": "i1"}, "value": 7.0}]


def test_two_proxies_do_not_share_series():
    first, second = ProxyMetrics(), ProxyMetrics()
    first.inc("QueryRequests", endpoint="default")
    assert second.value("QueryRequests", endpoint="default") == 0


def test_bound_series_are_the_same_series_and_still_strict():
    m = ProxyMetrics()
    queries = m.counter("QueryRequests", endpoint="default")
    latency = m.histogram("QueryResponseLatency", endpoint="default")
    queries.inc()
    queries.inc(2)
    m.inc("QueryRequests", endpoint="default")
    latency.observe(0.002)
    latency.observe(-1.0)  # a clock step backwards counts as zero, never as a negative latency
    assert m.value("QueryRequests", endpoint="default") == 4
    assert m.value("QueryResponseLatency", endpoint="default") == 2
    with pytest.raises(MetricsError):
        queries.inc(-1)
    with pytest.raises(MetricsError, match="is a counter"):
        m.histogram("QueryRequests", endpoint="default")
    with pytest.raises(MetricsError, match="labels"):
        m.counter("QueryRequests", instance="i1")
