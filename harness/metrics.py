"""A proxy metric as the harness sees it: a named, dimensioned figure read at a known time.

Targets read their proxy's metrics from wherever the proxy reports them (the reference proxy's
Prometheus text, a CloudWatch namespace for an RDS Proxy) and hand them over in this one shape, so
the plugin samples them and the checkers judge them without knowing the source.  Names and
dimensions follow CloudWatch's for RDS Proxy: ``DatabaseConnections`` with ``{"Target": <instance>}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class MetricSample:
    """One reading of a proxy metric (CloudWatch name, e.g. ``DatabaseConnections``) at a time.

    ``time`` is the reader's monotonic clock in nanoseconds (comparable with history timestamps);
    ``dimensions`` follow CloudWatch's: ``{"Target": "instance-1"}`` for per-instance figures.
    """

    time: int
    name: str
    value: float
    dimensions: Mapping[str, str] = dataclasses.field(default_factory=dict)
