"""Reading a proxy's Prometheus text exposition into :class:`~harness.metrics.MetricSample` values.

The reference proxy (and many other proxies, through an exporter) publish their metrics as
Prometheus text.  Each sample line is parsed on its own with prometheus_client's parser, so that one
malformed line - the text is another program's - costs that line only, not the whole reading.  The
proxy's ``instance`` label becomes CloudWatch's ``Target`` dimension, the name RDS Proxy gives it;
other labels are kept as they are.  A counter's ``_total`` suffix (Prometheus's naming rule) is
dropped, so a counter reads under its CloudWatch name (``DatabaseConnectionsSetupFailed``).
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client.parser import text_string_to_metric_families

from harness.metrics import MetricSample

COUNTER_SUFFIX = "_total"
INSTANCE_LABEL = "instance"
TARGET_DIMENSION = "Target"


def _line_name(line: str) -> str:
    """The metric name a sample line starts with (up to its labels or its value)."""
    end = len(line)
    for stop in ("{", " ", "\t"):
        i = line.find(stop)
        if i != -1:
            end = min(end, i)
    return line[:end]


def _cloudwatch_name(name: str) -> str:
    return name.removesuffix(COUNTER_SUFFIX)


def samples_from_text(text: str, time_ns: int, names: Collection[str] | None = None) -> list[MetricSample]:
    """The samples of ``text`` (of the metrics in ``names``, or all), each stamped ``time_ns``.

    Only labelled samples are kept: the per-instance and per-endpoint figures the checkers judge.
    """
    out: list[MetricSample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "{" not in line:
            continue
        if names is not None and _cloudwatch_name(_line_name(line)) not in names:
            continue
        try:
            parsed = [s for family in text_string_to_metric_families(line + "\n") for s in family.samples]
        except ValueError:
            continue
        for s in parsed:
            name = _cloudwatch_name(s.name)
            if names is not None and name not in names:
                continue
            labels = dict(s.labels)
            dims = {TARGET_DIMENSION: labels[INSTANCE_LABEL]} if INSTANCE_LABEL in labels else labels
            out.append(MetricSample(time_ns, name, float(s.value), dims))
    return out
